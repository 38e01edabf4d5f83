"""Split a streamed protocol step into what a UI shows where (think, tool call, answer).

The policy streams raw step text (``<think>…</think><answer>…</answer>``) in
pieces that may cut a tag in two. A chat pane should show only the answer as
it grows, and the memory pane the reasoning; ``StepStream`` tracks the open
tag across pieces and hands each run of text to its channel.
"""

from __future__ import annotations

from . import protocol

#: tag -> channel it opens; closing tags return to "none"
_OPEN = {protocol.THINK_OPEN: "think", protocol.CALL_OPEN: "call", protocol.ANSWER_OPEN: "answer"}
_CLOSE = (protocol.THINK_CLOSE, protocol.CALL_CLOSE, protocol.ANSWER_CLOSE)
_TAGS = tuple(_OPEN) + _CLOSE


class StepStream:
    """Feed pieces of one or more steps; get ``[(channel, text), ...]`` back.

    Channels: "think", "call", "answer", "none" (between blocks). Text that
    might be the start of a tag is held back until the next piece decides it.
    """

    def __init__(self) -> None:
        self.channel = "none"
        self._held = ""

    def feed(self, piece: str) -> list[tuple[str, str]]:
        text, out = self._held + piece, []
        self._held = ""
        while text:
            i = text.find("<")
            if i < 0:
                out.append((self.channel, text))
                break
            if i:
                out.append((self.channel, text[:i]))
                text = text[i:]
            tag = next((t for t in _TAGS if text.startswith(t)), None)
            if tag:
                self.channel = _OPEN.get(tag, "none")
                text = text[len(tag):]
            elif any(t.startswith(text) for t in _TAGS):
                self._held = text      # a tag may be arriving in the next piece
                break
            else:
                out.append((self.channel, "<"))
                text = text[1:]
        return [(c, t) for c, t in out if t]

    def flush(self) -> list[tuple[str, str]]:
        """Whatever was held back (the stream ended inside something tag-like)."""
        held, self._held = self._held, ""
        return [(self.channel, held)] if held else []
