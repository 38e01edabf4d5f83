"""Approval mode: the user approves, edits or rejects a memory change before it is written."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static, TextArea

from agemem_lite.protocol import ToolCall


def describe_call(call: ToolCall, before: str | None) -> Text:
    """What the model wants to do, with the before/after of an update."""
    args = call.arguments
    t = Text(f"The assistant wants to {call.name.split('_')[0].lower()} a memory", style="bold")
    if call.name == "Add_memory":
        t.append(f"\n\n+ {args.get('content')}", style="green")
    elif call.name == "Update_memory":
        t.append(f" ({args.get('memory_id')})")
        t.append(f"\n\n- {before}", style="red")
        t.append(f"\n+ {args.get('content')}", style="green")
    elif call.name == "Delete_memory":
        t.append(f" ({args.get('memory_id')})")
        t.append(f"\n\n- {before}", style="red strike")
    return t


class ApprovalScreen(ModalScreen["bool | dict"]):
    """Dismisses with True (approve), False (reject) or edited arguments (a dict)."""

    BINDINGS = [
        Binding("y", "approve", "Approve"),
        Binding("n", "reject", "Reject"),
        Binding("escape", "reject", "Reject", show=False),
    ]

    def __init__(self, call: ToolCall, before: str | None = None) -> None:
        super().__init__()
        self.call = call
        self.before = before
        self.editable = call.name in ("Add_memory", "Update_memory")

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(describe_call(self.call, self.before), id="approval-text")
            if self.editable:
                yield TextArea(str(self.call.arguments.get("content", "")), id="approval-edit")
            with Horizontal(classes="buttons"):
                yield Button("Approve (y)", id="approve", variant="success")
                if self.editable:
                    yield Button("Save edit", id="edit", variant="primary")
                yield Button("Reject (n)", id="reject", variant="error")

    def on_mount(self) -> None:
        self.query_one("#approve", Button).focus()

    @on(Button.Pressed, "#approve")
    def action_approve(self) -> None:
        """Write the memory as the model proposed it."""
        self.dismiss(True)

    @on(Button.Pressed, "#reject")
    def action_reject(self) -> None:
        """Write nothing; the model is told the user rejected it."""
        self.dismiss(False)

    @on(Button.Pressed, "#edit")
    def save_edit(self) -> None:
        """Write the user's text instead of the model's."""
        text = self.query_one("#approval-edit", TextArea).text.strip()
        if not text:
            self.notify("The memory text cannot be empty; reject instead.", severity="warning")
            return
        self.dismiss({**self.call.arguments, "content": text})
