"""Model switcher: every policy in the registry (trained ones included) and the embedder in use."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static

from agemem_lite.model_files import list_models


def _size(n: int | None) -> str:
    return f"{n / 1e6:.0f} MB" if n else "-"


class ModelsScreen(ModalScreen["str | None"]):
    """Dismisses with the name of the policy to switch to (or None)."""

    BINDINGS = [Binding("enter", "choose", "Use this policy", priority=True),
                Binding("escape", "close", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="models"):
            yield Static("Policies", classes="dialog-title")
            yield DataTable(id="model-table", cursor_type="row", zebra_stripes=True)
            yield Static(id="embedder-line")
            yield Footer()

    def on_mount(self) -> None:
        settings = self.app.settings
        table = self.query_one(DataTable)
        table.add_columns("policy", "state", "size", "about")
        rows = list_models(settings)
        for m in rows:
            if m.spec.role != "policy":
                continue
            mark = "● " if m.spec.name == settings.policy else ""
            state = m.state if not m.missing_packages else "needs " + ", ".join(m.missing_packages)
            table.add_row(mark + m.spec.name, state, _size(m.size), m.spec.description, key=m.spec.name)
        emb = next((m for m in rows if m.spec.name == settings.embedder), None)
        self.query_one("#embedder-line", Static).update(
            f"embedder: {settings.embedder} ({emb.state if emb else 'unknown'}) · "
            "missing policies are prepared on first use")
        table.focus()

    @on(DataTable.RowSelected)
    def action_choose(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count:
            key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
            self.dismiss(key.value)

    def action_close(self) -> None:
        self.dismiss(None)
