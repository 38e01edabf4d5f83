"""The message box: multi-line, Enter sends, input history on Up/Down."""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea


class PromptInput(TextArea):
    """A TextArea where Enter submits; Shift+Enter, Alt+Enter or Ctrl+J start a new line.

    Up on the first line and Down on the last line walk the input history (as in
    a shell), so multi-line editing still works inside the box.
    """

    BINDINGS = [Binding("ctrl+j", "newline", "New line", show=False)]

    class Submitted(Message):
        """The user pressed Enter on a non-empty message."""

        def __init__(self, text: str) -> None:
            self.text = text
            super().__init__()

    def __init__(self, **kw) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, highlight_cursor_line=False,
                         placeholder="Message (Enter sends, Shift+Enter new line, F1 help)", **kw)
        self.sent: list[str] = []
        self._pos: int | None = None      # index into history while browsing it
        self._draft = ""

    async def _on_key(self, event: events.Key) -> None:
        """Enter sends; the newline keys insert; Up/Down at the edges browse the history."""
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.submit()
            return
        if event.key in ("shift+enter", "alt+enter"):
            event.stop()
            event.prevent_default()
            self.insert("\n")
            return
        row, _ = self.cursor_location
        if event.key == "up" and row == 0 and self.sent:
            event.stop()
            event.prevent_default()
            self._browse(-1)
            return
        if event.key == "down" and row == self.document.line_count - 1 and self._pos is not None:
            event.stop()
            event.prevent_default()
            self._browse(+1)
            return
        await super()._on_key(event)

    def action_newline(self) -> None:
        """Insert a line break (Ctrl+J, for terminals that cannot send Shift+Enter)."""
        self.insert("\n")

    def submit(self) -> None:
        """Post the text as Submitted, remember it, clear the box."""
        text = self.text.strip()
        if not text:
            return
        if not self.sent or self.sent[-1] != text:
            self.sent.append(text)
        self._pos = None
        self.clear()
        self.post_message(self.Submitted(text))

    def _browse(self, delta: int) -> None:
        if self._pos is None:
            self._draft, self._pos = self.text, len(self.sent)
        self._pos = max(0, min(len(self.sent), self._pos + delta))
        text = self._draft if self._pos == len(self.sent) else self.sent[self._pos]
        if self._pos == len(self.sent):
            self._pos = None
        self.load_text(text)
        self.move_cursor(self.document.end)
