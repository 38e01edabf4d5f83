"""Step and turn records: one design for live traces, evaluation logs and training samples.

A ``Step`` holds exactly what GRPO needs as a sample (SPEC §6: the prompt is the
full context at that step, which may have been rewritten by Summary/Filter, and
the completion) plus what an evaluation report or a UI shows (tool results,
token counts, timings). Everything is plain data and JSON-serialisable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Step:
    """One policy step: context in, completion out, tools run."""

    index: int
    prompt: list[dict]                 # the context messages the policy saw
    completion: str                    # raw text, exactly as generated
    kind: str                          # "tool_call" | "answer" | "invalid"
    think: str = ""
    calls: list[dict] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)
    answer: str | None = None
    error: str | None = None
    stage: str = ""                    # SPEC §4 stage ("ltm", "stm", "reason") in episodes
    prompt_tokens: int = 0
    completion_tokens: int = 0
    context_tokens: int = 0            # content tokens of the context (T_used)
    reused_prompt_tokens: int = 0      # prefix served from llama.cpp's KV cache
    generate_s: float = 0.0
    first_token_s: float | None = None
    tools_s: float = 0.0
    #: The completion as [text, generated] pieces: ``generated`` False for text the runtime
    #: wrote (fixed tags, the forced "Kind:" prefix), which training masks out of the loss.
    #: Empty when the policy does not report pieces (then all of it counts as generated).
    segments: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_completion(cls, index: int, prompt: list[dict], comp, parsed, **extra) -> "Step":
        """The step a ``policy.Completion`` and its ``protocol.ParsedStep`` make (``extra``: the
        caller's own fields, e.g. tool results and timings)."""
        return cls(index=index, prompt=prompt, completion=comp.text, kind=parsed.kind, think=parsed.think,
                   calls=[c.to_dict() for c in parsed.calls], answer=parsed.answer, error=parsed.error,
                   prompt_tokens=comp.prompt_tokens, completion_tokens=comp.completion_tokens,
                   reused_prompt_tokens=comp.reused_prompt_tokens, generate_s=comp.seconds,
                   first_token_s=comp.first_token_s,
                   segments=[list(x) for x in comp.extra.get("segments", [])], **extra)


@dataclass
class Turn:
    """One user turn in assistant mode: the steps it took and the final answer."""

    user: str
    related: list[dict] = field(default_factory=list)   # memories shown by auto-retrieval
    steps: list[Step] = field(default_factory=list)
    answer: str | None = None
    cancelled: bool = False                             # stopped by the user (Agent.turn cancel)

    @property
    def operations(self) -> list[dict]:
        """Every successful tool result of the turn, in order (what the UI lists)."""
        return [r for s in self.steps for r in s.results if r.get("ok")]

    @classmethod
    def from_dict(cls, d: dict) -> "Turn":
        """Inverse of ``to_dict`` (episode traces read back from JSON)."""
        return cls(**{**d, "steps": [Step(**s) for s in d["steps"]]})

    def to_dict(self) -> dict:
        return {"user": self.user, "related": self.related, "answer": self.answer,
                "cancelled": self.cancelled, "steps": [s.to_dict() for s in self.steps]}
