"""The conversation: user messages and streamed assistant replies rendered as Markdown."""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.widgets import Markdown, Static

from agemem_lite.prompts import addressed_to_user


class MessageView(Markdown):
    """One message. Assistant replies grow with ``append`` while they stream."""

    def __init__(self, role: str, text: str = "", **kw) -> None:
        super().__init__(text, classes=f"message {role}", **kw)
        self.role = role
        self.text = text

    def append(self, more: str) -> None:
        """Add streamed text (the caller batches pieces, so this runs a few times a second). A reply
        is shown addressed to the user as it grows, as ``ChatSession.send`` saves it, so "The
        user's ..." does not flash up before the turn ends."""
        self.text += more
        self.update(addressed_to_user(self.text) if self.role == "assistant" else self.text)

    def finish(self, text: str | None, note: str | None = None) -> None:
        """Show the final answer (or a note in its place, e.g. cancelled)."""
        self.text = text if text is not None else ""
        shown = self.text if not note else (f"{self.text}\n\n*{note}*" if self.text else f"*{note}*")
        self.update(shown)
        self.remove_class("pending")


class ChatLog(VerticalScroll):
    """A scrolling column of MessageViews that follows the newest message."""

    def add(self, role: str, text: str = "", *, pending: bool = False, queued: bool = False,
            after: MessageView | None = None) -> MessageView:
        """Mount a message at the bottom (or right after ``after``) and scroll to the bottom."""
        view = MessageView(role, text)
        if pending:
            view.add_class("pending")
        if queued:
            view.add_class("queued")
        self.mount(view, after=after)
        self.scroll_end(animate=False)
        return view

    def add_notice(self, text: str) -> Static:
        """A one-line status notice in the conversation (errors, resumed session, ...)."""
        notice = Static(text, classes="notice", markup=False)
        self.mount(notice)
        self.scroll_end(animate=False)
        return notice

    def clear_messages(self) -> None:
        self.remove_children()

    def last_assistant(self) -> MessageView | None:
        views = [v for v in self.query(MessageView) if v.role == "assistant"]
        return views[-1] if views else None
