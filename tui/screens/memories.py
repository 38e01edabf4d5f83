"""Memory browser: search, view, edit, delete and undo; filter by namespace, type and date; export."""

from __future__ import annotations

import datetime as dt

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Select, Static, TabbedContent, TabPane

from agemem_lite.errors import AgememError
from agemem_lite.memory.tools import MEMORY_TYPES
from agemem_lite.notes import export_json, export_markdown

from .dialogs import ConfirmDialog, TextDialog


def _when(stamp: str) -> str:
    return stamp[:16].replace("T", " ")


class MemoryBrowser(Screen):
    """Everything the assistant remembers, and every change it (or you) made."""

    BINDINGS = [
        Binding("escape", "close", "Back"),
        Binding("e", "edit", "Edit"),
        Binding("d", "delete", "Delete"),
        Binding("u", "undo", "Undo change"),
        Binding("x", "export_md", "Export .md"),
        Binding("j", "export_json", "Export .json"),
        Binding("slash", "focus_search", "Search"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.namespace: str | None = None

    def compose(self) -> ComposeResult:
        chat = self.app.chat
        self.namespace = chat.settings.namespace
        names = sorted(set(chat.store.namespaces()) | {self.namespace})
        yield Header()
        with Horizontal(id="filters"):
            yield Input(placeholder="search (hybrid) — Enter", id="search")
            yield Select([(n, n) for n in names], value=self.namespace, id="namespace", allow_blank=False)
            yield Select([(t, t) for t in MEMORY_TYPES], prompt="any type", id="type")
            yield Input(placeholder="since YYYY-MM-DD", id="since", max_length=10)
        with TabbedContent(id="tabs"):
            with TabPane("Memories", id="tab-memories"):
                yield DataTable(id="memory-table", cursor_type="row", zebra_stripes=True)
                yield Static(id="memory-detail")
            with TabPane("History", id="tab-history"):
                yield DataTable(id="history-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#memory-table", DataTable).add_columns("id", "type", "updated", "memory")
        self.query_one("#history-table", DataTable).add_columns("#", "when", "change", "by", "memory", "text")
        self.reload()
        self.query_one("#memory-table").focus()

    # -- loading ----------------------------------------------------------------------
    def _since(self) -> str | None:
        raw = self.query_one("#since", Input).value.strip()
        if not raw:
            return None
        try:
            return dt.date.fromisoformat(raw).isoformat()
        except ValueError:
            self.notify(f"'{raw}' is not a date like 2026-01-31; showing all dates", severity="warning")
            return None

    def reload(self) -> None:
        """Fill both tables from the store with the current filters."""
        chat = self.app.chat
        query = self.query_one("#search", Input).value.strip()
        mtype = self.query_one("#type", Select).value
        mtype = mtype if isinstance(mtype, str) else None     # the blank choice: any type
        since = self._since()
        if query:
            hits = chat.store.search(self.namespace, query, chat.assistant.embedder.embed_one(query), top_k=50)
            memories = [h.memory for h in hits]
            if mtype:
                memories = [m for m in memories if m.memory_type == mtype]
            if since:
                memories = [m for m in memories if m.created_at[:10] >= since]
        else:
            memories = chat.store.list(self.namespace, memory_type=mtype, since=since, limit=500)
        table = self.query_one("#memory-table", DataTable)
        table.clear()
        for m in memories:
            table.add_row(m.id, m.memory_type, _when(m.updated_at), m.content, key=m.id)
        self.sub_title = f"{self.namespace} · {len(memories)} shown · {chat.store.count(self.namespace)} stored"
        history = self.query_one("#history-table", DataTable)
        history.clear()
        for h in chat.store.history(self.namespace, limit=300):
            text = h.new_content if h.new_content is not None else h.old_content
            if h.redacted and text is None:
                text = "(forgotten)"
            op = h.op + (" (undone)" if h.undone else "") + (f" of #{h.undoes}" if h.undoes else "")
            history.add_row(str(h.id), _when(h.at), op, h.actor, h.memory_id, text or "", key=str(h.id))
        self._show_detail()

    @on(Input.Submitted, "#search")
    @on(Input.Submitted, "#since")
    @on(Select.Changed, "#type")
    def _filters_changed(self) -> None:
        self.reload()

    @on(Select.Changed, "#namespace")
    def _namespace_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value != self.namespace:
            self.namespace = event.value
            self.reload()

    @on(DataTable.RowHighlighted, "#memory-table")
    def _show_detail(self) -> None:
        mid = self._selected_memory()
        detail = self.query_one("#memory-detail", Static)
        if mid is None:
            detail.update("No memory selected." if self.query_one("#memory-table", DataTable).row_count
                          else "No memories match.")
            return
        m = self.app.chat.store.get(self.namespace, mid)
        meta = f" · metadata {m.metadata}" if m.metadata else ""
        detail.update(f"{m.id} · {m.memory_type} · source {m.source} · created {_when(m.created_at)}{meta}\n"
                      f"{m.content}")

    # -- selection ----------------------------------------------------------------------
    def _selected(self, table_id: str) -> str | None:
        table = self.query_one(table_id, DataTable)
        if not table.row_count:
            return None
        key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return key.value

    def _selected_memory(self) -> str | None:
        return self._selected("#memory-table")

    def _run(self, fn, done: str) -> None:
        """Do one store change; a store error is one notification, never a crash."""
        try:
            fn()
        except (AgememError, ValueError) as e:
            self.notify(str(e), severity="error")
            return
        self.notify(done)
        self.reload()
        self.app.memory_changed()

    # -- actions ---------------------------------------------------------------------------
    def action_focus_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_edit(self) -> None:
        """Edit the selected memory's text (its embedding is recomputed)."""
        mid = self._selected_memory()
        if mid is None:
            return
        chat = self.app.chat
        current = chat.store.get(self.namespace, mid).content

        def done(text: str | None) -> None:
            if text and text != current:
                self._run(lambda: chat.store.update(self.namespace, mid, text,
                                                    chat.assistant.embedder.embed_one(text), actor="user"),
                          f"{mid} updated")

        self.app.push_screen(TextDialog(f"Edit {mid}", current, multiline=True), done)

    def action_delete(self) -> None:
        """Delete the selected memory (its text is forgotten unless keep_deleted is set)."""
        mid = self._selected_memory()
        if mid is None:
            return
        chat = self.app.chat
        note = "" if chat.store.keep_deleted else " Its text is erased from the database; this cannot be undone."

        def done(yes: bool) -> None:
            if yes:
                self._run(lambda: chat.store.delete(self.namespace, mid, actor="user"), f"{mid} deleted")

        self.app.push_screen(ConfirmDialog(f"Delete {mid}?{note}"), done)

    def action_undo(self) -> None:
        """Undo the selected history entry (History tab), or the selected memory's latest change."""
        chat = self.app.chat
        tabs = self.query_one(TabbedContent)
        if tabs.active == "tab-history":
            hid = self._selected("#history-table")
        else:
            mid = self._selected_memory()
            live = [h for h in chat.store.history(self.namespace, mid, limit=50)
                    if h.op != "undo" and not h.undone] if mid else []
            hid = str(live[0].id) if live else None
        if hid is None:
            self.notify("Nothing to undo here.", severity="warning")
            return
        self._run(lambda: chat.store.undo(self.namespace, int(hid)), f"change #{hid} undone")

    def _export(self, suffix: str, render) -> None:
        memories = self.app.chat.store.export(self.namespace)
        path = self.app.export_text(f"memories-{self.namespace}.{suffix}", render(memories))
        self.notify(f"{len(memories)} memories written to {path}")

    def action_export_md(self) -> None:
        self._export("md", lambda ms: export_markdown(ms, self.namespace))

    def action_export_json(self) -> None:
        self._export("json", export_json)

    def action_close(self) -> None:
        self.app.pop_screen()
