"""Help: every key binding of the app, and what the panes show."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# agemem-lite

A private assistant that manages its own memory. Everything runs on this
machine: the model (llama.cpp), the memory database (SQLite) and this app.
No account, no API key, no network.

## Keys

| Key | Action |
|---|---|
| Enter | send the message (queued while a reply is written) |
| Shift+Enter, Alt+Enter, Ctrl+J | new line in the message |
| Up / Down | earlier messages (on the first / last line) |
| Esc | cancel the reply; queued messages return to the box |
| Ctrl+R | regenerate the last reply (its memory changes are undone) |
| Ctrl+N | new session |
| F2 | memory browser: search, edit, delete, undo, export |
| F3 | sessions: resume, rename, delete, export transcript |
| F4 | models: switch the policy |
| F5 | approval mode: automatic / ask before each memory change |
| Ctrl+B | show / hide the memory pane |
| Ctrl+P | command palette |
| F1 | this help |
| Ctrl+Q | quit |

## The memory pane

Every memory operation appears as it happens: `+` stored, `~` updated (old
and new text), `-` deleted, `?` retrieved (hits with similarity), `Σ`/`⊘`
context summarised / filtered (tokens saved). Dim lines are the model's
reasoning and the memories shown to it with your message.

The context meter shows the tokens in the model's context against the
budget, and what Summary/Filter saved in this session.
"""


class HelpScreen(ModalScreen[None]):
    """Key bindings and a short guide; Esc or F1 closes it."""

    BINDINGS = [Binding("escape,f1,q", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Markdown(HELP)

    def action_close(self) -> None:
        self.dismiss(None)
