"""Context meter: tokens in the context against the budget T_max, and what Summary/Filter saved."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static


class ContextMeter(Static):
    """``context 812/4096 tok ▕███░░░░░░░▏ saved 230``; turns warning/red near the budget."""

    tokens: reactive[int] = reactive(0)
    budget: reactive[int] = reactive(4096)
    saved: reactive[int] = reactive(0)

    def set_stats(self, tokens: int, budget: int, saved: int) -> None:
        """Show new numbers (one refresh)."""
        self.set_reactive(ContextMeter.tokens, tokens)
        self.set_reactive(ContextMeter.budget, budget)
        self.saved = saved
        self.refresh()

    def render(self) -> Text:
        share = self.tokens / self.budget if self.budget else 0.0
        width = 10
        full = min(width, round(share * width))
        style = "green" if share < 0.7 else "yellow" if share < 1.0 else "bold red"
        text = Text("context ")
        text.append(f"{self.tokens}/{self.budget}", style="bold")
        text.append(" tok ")
        text.append("█" * full, style=style)
        text.append("░" * (width - full), style="dim")
        text.append(f"\nsaved by Summary/Filter: {self.saved} tok", style="dim")
        return text
