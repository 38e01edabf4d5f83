"""Short-term memory: the context as a message list with token counts (SPEC §1-§2).

Token counts come from the serving model's own tokenizer (``count_tokens``), so
the budget ``T_max`` means what llama.cpp will see. Two messages are protected
and never summarised or filtered away (our decision, SPEC §2): the system
message and the pending user message (the latest user turn). Demonstration
turns (kind "demo", part of the fixed prompt prefix) are protected too.

A "round" starts at a user message and runs to the next one (the assistant's
steps and tool results in between belong to it). ``Summary_context`` with span N
replaces the last N complete rounds before the pending user message; "all"
replaces every message between the system message and the pending user message.
The summary message takes the place of the span it replaces.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from ..prompts import SUMMARY_HEADER, USER_PREFIX, summary_transcript

ROLES = ("system", "user", "assistant", "tool")


def extractive_summary(transcript: str, max_sentences: int = 6) -> str:
    """A summary made without a model: the first sentence of each user message in a
    ``summary_transcript``, without a lead-in such as "Here's part of an article about S:".
    The fallback when the policy writes no usable summary, and the summary text of training
    data (train.warm_start), so a policy learns on the summaries it meets when serving."""
    out = []
    for line in transcript.splitlines():
        if not line.startswith(USER_PREFIX):
            continue
        line = line[len(USER_PREFIX):]
        if not line.strip() or line.startswith("["):
            continue
        head, sep, rest = line.partition(": ")
        text = rest if sep and len(head) < 80 else line
        out.append(re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0])
    return " ".join(out[:max_sentences])


#: numbers, and capitalised words that do not start a sentence or line (names, places, titles)
_FACT_RE = re.compile(r"(?<![.!?:]\s)(?<!^)\b[A-Z][a-z]+\b|\b\d[\d,.:]*\d\b|\b\d\b", re.M)


def fact_coverage(summary: str, transcript: str) -> float:
    """The share of the names and numbers in the user's lines of ``transcript`` that ``summary``
    keeps (what the summary request asks to keep), 1.0 when there are none."""
    said = "\n".join(line for line in transcript.splitlines() if line.startswith(USER_PREFIX))
    facts = set(_FACT_RE.findall(said))
    words = set(re.findall(r"[A-Za-z]+|\d[\d,.:]*\d|\d", summary))   # a kept name may start a sentence
    return len(facts & words) / len(facts) if facts else 1.0


#: the least share of a model summary's words (4+ letters) that the transcript has: the 0.5B's
#: refusals ("I'm sorry, but I can't assist with that.": 0.5) and a summary that turned a
#: disagreement into an agreement (0.72) fall below it; its faithful ones were 0.85-1.0
MIN_WORD_SUPPORT = 0.8


def word_support(summary: str, transcript: str) -> float:
    """The share of ``summary``'s words of four or more letters that occur in ``transcript``."""
    words = re.findall(r"[a-z]{4,}", summary.lower())
    have = set(re.findall(r"[a-z]{4,}", transcript.lower()))
    return sum(w in have for w in words) / len(words) if words else 1.0


def usable_summary(summary: str, transcript: str) -> bool:
    """Whether a model's summary of ``transcript`` may replace it: text, no protocol tags or nested
    summary header, no sentence said twice (a 0.5B loop), and words the transcript has."""
    sentences = [x.strip() for x in re.split(r"(?<=[.!?])\s+", summary) if x.strip()]
    return bool(summary.strip()) and "<" not in summary and SUMMARY_HEADER not in summary \
        and len(set(sentences)) == len(sentences) and word_support(summary, transcript) >= MIN_WORD_SUPPORT


def choose_summary(written: str, transcript: str) -> str:
    """The summary that replaces ``transcript``: the model's ``written`` one if it is usable and
    keeps at least as many of the user's names and numbers as ``extractive_summary``, else that
    (which is "" when no user line: ``Context.summarise`` then keeps the transcript's start)."""
    fallback = extractive_summary(transcript)
    if not usable_summary(written, transcript) or \
            fact_coverage(fallback, transcript) > fact_coverage(written, transcript):
        return fallback
    return written


@dataclass
class Message:
    """One context message. ``kind`` tags special messages (e.g. "summary", "distractor")."""

    role: str
    content: str
    tokens: int = 0
    kind: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Context:
    """The agent's context ``C_t``: messages, their token counts and the budget ``T_max``."""

    count_tokens: Callable[[str], int]
    budget: int
    messages: list[Message] = field(default_factory=list)

    # -- building ---------------------------------------------------------------
    def append(self, role: str, content: str, kind: str = "") -> Message:
        """Add a message, counting its tokens with the model's tokenizer."""
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of {ROLES}")
        m = Message(role, content, self.count_tokens(content), kind)
        self.messages.append(m)
        return m

    def reset(self, keep_system: bool = True) -> None:
        """Empty the context (SPEC §4 stage 2 reset); the system message may stay."""
        self.messages = [m for m in self.messages if keep_system and m.role == "system"][:1]

    @property
    def tokens(self) -> int:
        """Content tokens in the context (template overhead is measured by the policy)."""
        return sum(m.tokens for m in self.messages)

    @property
    def over_budget(self) -> bool:
        return self.tokens > self.budget

    def as_dicts(self) -> list[dict]:
        """``[{"role", "content"}]`` for chat templates and step records."""
        return [{"role": m.role, "content": m.content} for m in self.messages]

    # -- protection ---------------------------------------------------------------
    def _pending_user(self) -> int | None:
        for i in range(len(self.messages) - 1, -1, -1):
            if self.messages[i].role == "user":
                return i
        return None

    def protected(self) -> set[int]:
        """Indices never summarised or filtered: system messages, demonstrations, the pending user turn."""
        out = {i for i, m in enumerate(self.messages) if m.role == "system" or m.kind == "demo"}
        p = self._pending_user()
        if p is not None:
            out.add(p)
        return out

    def evict_oldest(self) -> Message | None:
        """Drop the oldest unprotected message (the runtime's last resort before the
        model's window overflows; the policy is expected to Summary/Filter first)."""
        prot = self.protected()
        for i in range(len(self.messages)):
            if i not in prot:
                return self.messages.pop(i)
        return None

    # -- SPEC §2 Summary_context ----------------------------------------------------
    def summarise(self, rounds: int | None, write_summary: Callable[[str], str]) -> dict | None:
        """Replace a span by one summary message; returns what was saved, or None if no span."""
        pending = self._pending_user()
        end = pending if pending is not None else len(self.messages)
        prot = self.protected()
        start = next((i for i in range(end) if i not in prot), end)
        if rounds is not None:
            starts = [i for i in range(start, end) if self.messages[i].role == "user"]
            if not starts:
                return None
            start = starts[-rounds] if rounds <= len(starts) else starts[0]
        # Protected messages inside the range stay where they are; only the rest is replaced.
        idx = [i for i in range(start, end) if i not in prot]
        if not idx:
            return None
        span = [self.messages[i] for i in idx]
        transcript = summary_transcript(span)
        text = write_summary(transcript).strip() or extractive_summary(transcript) or transcript[:200]
        summary = Message("user", f"{SUMMARY_HEADER}\n{text}", 0, "summary")
        summary.tokens = self.count_tokens(summary.content)
        before = sum(m.tokens for m in span)
        drop = set(idx)
        out = []
        for i, m in enumerate(self.messages):
            if i == idx[0]:
                out.append(summary)
            if i not in drop:
                out.append(m)
        self.messages = out
        return {"messages": len(span), "tokens_before": before, "tokens_after": summary.tokens,
                "summary": text}

    # -- SPEC §2 Filter_context -----------------------------------------------------
    def filter(self, criteria_vec: np.ndarray, embed: Callable[[str], np.ndarray],
               threshold: float) -> dict:
        """Drop every unprotected message whose embedding has cosine ≥ θ with the criteria."""
        keep, removed, tokens = [], [], 0
        prot = self.protected()
        c = np.asarray(criteria_vec, dtype=np.float32)
        c = c / (np.linalg.norm(c) or 1.0)
        for i, m in enumerate(self.messages):
            if i not in prot:
                v = np.asarray(embed(m.content), dtype=np.float32)
                cos = float(v @ c / (np.linalg.norm(v) or 1.0))
                if cos >= threshold:
                    removed.append({"role": m.role, "content": m.content[:200], "cosine": round(cos, 3)})
                    tokens += m.tokens
                    continue
            keep.append(m)
        self.messages = keep
        return {"messages": len(removed), "tokens": tokens, "removed": removed}
