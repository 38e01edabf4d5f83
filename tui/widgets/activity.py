"""Memory activity: every tool call of the policy as it happens, and its reasoning."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from agemem_lite.memory.sessions import newest_reason

#: (symbol, style) per tool
_LOOK = {
    "Add_memory": ("+", "green"), "Update_memory": ("~", "yellow"), "Delete_memory": ("-", "red"),
    "Retrieve_memory": ("?", "cyan"), "Summary_context": ("Σ", "magenta"), "Filter_context": ("⊘", "magenta"),
}


def render_result(result: dict) -> Text:
    """A tool result as the user should see it: text, before/after, hits and scores, tokens saved."""
    name, data = result["name"], result.get("data") or {}
    sym, style = _LOOK.get(name, ("!", "red"))
    if not result.get("ok"):
        t = Text(f"! {name}: ", style="bold red")
        t.append(result.get("text", ""))
        return t
    t = Text(f"{sym} {name.replace('_', ' ')}", style=f"bold {style}")
    mem = data.get("memory") or {}
    if name == "Add_memory":
        t.append(f" {mem.get('id')}\n  {mem.get('content')}")
    elif name == "Update_memory":
        t.append(f" {mem.get('id')}\n")
        t.append(f"  - {(data.get('before') or {}).get('content')}\n", style="red")
        t.append(f"  + {mem.get('content')}", style="green")
    elif name == "Delete_memory":
        t.append(f" {mem.get('id')}\n")
        t.append(f"  {mem.get('content')}", style="strike")
    elif name == "Retrieve_memory":
        t.append(f" {data.get('query')!r}")
        if data.get("newest"):
            t.append(f"\n  {newest_reason(data)}: the newest memories", style="dim")
        elif data.get("searched", data.get("query")) != data.get("query"):
            t.append(f"\n  searched the message instead: {data['searched']!r}", style="dim")
        hits = data.get("hits") or []
        if not hits:
            t.append("\n  nothing found", style="dim")
        for h in hits:
            sim = h.get("similarity")
            t.append(f"\n  {h['memory']['id']} ", style="bold")
            t.append(f"{sim:.2f} " if sim is not None else "", style="dim")
            t.append(h["memory"]["content"])
    elif name == "Summary_context":
        saved = data.get("tokens_before", 0) - data.get("tokens_after", 0)
        t.append(f"\n  {data.get('messages')} messages -> summary, {saved} tokens saved")
    elif name == "Filter_context":
        t.append(f"\n  removed {data.get('messages')} messages, {data.get('tokens')} tokens")
    if data.get("edited"):
        t.append("\n  (edited by you before it was stored)", style="italic")
    return t


class ActivityEntry(Static):
    """One line group in the activity pane; ``result`` keeps the raw tool result for tests/UIs."""

    def __init__(self, renderable, result: dict | None = None, **kw) -> None:
        super().__init__(renderable, **kw)
        self.result = result


class ActivityPane(VerticalScroll):
    """The memory activity log of the session."""

    def add_result(self, result: dict) -> ActivityEntry:
        """Show one tool result."""
        return self._mount(ActivityEntry(render_result(result), result, classes="entry"))

    def add_related(self, related: list[dict]) -> None:
        """The memories the environment retrieved for a user turn (before any tool call)."""
        if not related:
            return
        t = Text("· related memories shown", style="dim")
        for r in related:
            t.append(f"\n  {r['id']} {r['content']}", style="dim")
        self._mount(ActivityEntry(t, classes="entry related"))

    def add_note(self, text: str, style: str = "dim") -> ActivityEntry:
        return self._mount(ActivityEntry(Text(text, style=style), classes="entry note"))

    def _mount(self, entry: ActivityEntry) -> ActivityEntry:
        self.mount(entry)
        self.scroll_end(animate=False)
        return entry
