"""Saved sessions: resume, rename, delete, export a transcript to Markdown."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static

from .dialogs import ConfirmDialog, TextDialog


class SessionsScreen(ModalScreen["int | None"]):
    """The session list of this namespace. Dismisses with the id to resume (or None)."""

    BINDINGS = [
        Binding("enter", "resume", "Resume", priority=True),
        Binding("r", "rename", "Rename"),
        Binding("d", "delete", "Delete"),
        Binding("x", "export", "Export .md"),
        Binding("n", "new", "New"),
        Binding("escape", "close", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="sessions"):
            yield Static("Sessions", classes="dialog-title")
            yield DataTable(id="session-table", cursor_type="row", zebra_stripes=True)
            yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("name", "turns", "last used", "policy")
        self.reload()
        table.focus()

    def reload(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for s in self.app.chat.sessions():
            current = self.app.chat.session is not None and self.app.chat.session.id == s.id
            table.add_row(("● " if current else "") + s.name, str(s.turns), s.updated_at[:16].replace("T", " "),
                          s.policy, key=str(s.id))
        if not table.row_count:
            self.query_one(".dialog-title", Static).update("Sessions (none saved yet: send a message)")

    def _selected(self) -> int | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return int(key.value)

    @on(DataTable.RowSelected)
    def action_resume(self) -> None:
        """Continue the selected session."""
        sid = self._selected()
        if sid is not None:
            self.dismiss(sid)

    def action_rename(self) -> None:
        sid = self._selected()
        if sid is None:
            return
        info = self.app.chat.log.get(sid)

        def done(name: str | None) -> None:
            if name:
                self.app.chat.log.rename(sid, name)
                if self.app.chat.session and self.app.chat.session.id == sid:
                    self.app.chat.session = self.app.chat.log.get(sid)
                self.reload()
                self.app.session_changed()

        self.app.push_screen(TextDialog("Rename session", info.name), done)

    def action_delete(self) -> None:
        sid = self._selected()
        if sid is None:
            return

        def done(yes: bool) -> None:
            if yes:
                current = self.app.chat.session is not None and self.app.chat.session.id == sid
                self.app.chat.delete_session(sid)
                if current:
                    self.app.session_reset()
                self.reload()

        self.app.push_screen(ConfirmDialog("Delete this session and its transcript? "
                                           "(The memories it created stay.)"), done)

    def action_export(self) -> None:
        sid = self._selected()
        if sid is not None:
            path = self.app.export_text(f"session-{sid}.md", self.app.chat.log.to_markdown(sid))
            self.notify(f"Transcript written to {path}")

    def action_new(self) -> None:
        self.app.action_new_session()
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
