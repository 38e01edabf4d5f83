"""Policies: what turns a context into the next step's text.

``Policy`` is the protocol the agent loop needs; ``policy.llama.LlamaPolicy`` is
the llama-cpp-python implementation, and tests or training may provide others
(e.g. a scripted oracle) without touching the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol


@dataclass
class Completion:
    """A generated step and its costs."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    first_token_s: float | None = None
    reused_prompt_tokens: int = 0
    finish_reason: str = "stop"
    extra: dict = field(default_factory=dict)


class Policy(Protocol):
    """The interface the agent loop uses."""

    name: str

    def count_tokens(self, text: str) -> int: ...

    def step(self, messages: list[dict], *, allow_tools: bool = True,
             on_text: Callable[[str], None] | None = None) -> Completion: ...

    def summarise(self, instruction: str) -> str: ...

    def close(self) -> None: ...


__all__ = ["Completion", "Policy"]
