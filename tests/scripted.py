"""A deterministic policy for control-flow tests (the same idea as a scripted oracle in episodes)."""

from __future__ import annotations

from typing import Callable

from agemem_lite.policy import Completion


class ScriptedPolicy:
    """Writes the scripted steps in order; records every context and ``allow_tools`` it got.

    A script item is a string, or a function of (messages, allow_tools) -> string.
    """

    name = "scripted"

    def __init__(self, script: list[str | Callable[[list[dict], bool], str]], summary: str = "a short summary"):
        self.script = list(script)
        self.summary = summary
        self.calls: list[tuple[list[dict], bool]] = []
        self.summaries: list[str] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def step(self, messages, *, allow_tools=True, on_text=None) -> Completion:
        self.calls.append(([dict(m) for m in messages], allow_tools))
        if not self.script:
            raise AssertionError("the agent asked for more steps than scripted")
        item = self.script.pop(0)
        text = item(messages, allow_tools) if callable(item) else item
        if on_text:
            on_text(text)
        return Completion(text=text, prompt_tokens=sum(len(m["content"].split()) for m in messages),
                          completion_tokens=len(text.split()), seconds=0.001, first_token_s=0.0005)

    def summarise(self, instruction: str) -> str:
        self.summaries.append(instruction)
        return self.summary

    def close(self) -> None:
        pass
