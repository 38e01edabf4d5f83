"""Chat probes: whole assistant turns on a scratch memory database, checked by what the user
would see afterwards (the memories stored, the reply).

The decision set (``decisions``) scores one step of a generated item. These are hand-written
messages of the kinds where the shipped policy was seen to fail in real chats (stop 36): two
facts in one message, a change that must keep the rest of the fact, "what do you know about
me?", plus recall and "not told" questions as a check that nothing else got worse. Each runs
as ``Agent.turn`` with all six tools on a fresh namespace that holds only the probe's
memories, so a probe measures the runtime and the policy together, as a chat would.

None of these wordings is in any training data (the warm start's templates are in
``decisions``); keep it so.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .decisions import TODAY, carries_value
from .prompts import addressed_to_user
from .rewards import says_not_known

KINDS = ("two facts", "whole update", "about me", "recall", "not told")


@dataclass(frozen=True)
class Probe:
    """One message and what must hold after its turn. A "words" string is carried by a text when
    each of its words is a word of the text, case-insensitively (``decisions.carries_value``)."""

    id: str
    kind: str
    user: str
    memories: tuple[str, ...] = ()     # stored before the turn, in this order
    stored: tuple[str, ...] = ()       # each is carried by one memory afterwards
    replaced: tuple[int, ...] = ()     # these seeded memories no longer exist unchanged
    reply: tuple[str, ...] = ()        # the reply carries each
    not_reply: tuple[str, ...] = ()    # the reply carries none of these
    unknown: bool = False              # the reply says it was not told


PROBES: tuple[Probe, ...] = (
    Probe("two-1", "two facts", "Hi! I'm Priya and I live in Bristol.", stored=("priya", "bristol")),
    Probe("two-2", "two facts", "I'm a nurse, and my daughter Zoe just turned six.", stored=("nurse", "zoe")),
    Probe("two-3", "two facts", "My name's Tomasz and I drive a Skoda.", stored=("tomasz", "skoda")),
    Probe("two-4", "two facts", "I'm vegetarian and I'm allergic to peanuts.", stored=("vegetarian", "peanuts")),
    Probe("upd-1", "whole update", "Actually Anika quit nursing, she's a teacher now.",
          ("The user's sister Anika is a nurse in Cardiff.",), stored=("anika teacher",), replaced=(0,)),
    Probe("upd-2", "whole update", "Dr. Patel retired, so my dentist is Dr. Okafor now.",
          ("My dentist is Dr. Patel in Leeds.",), stored=("dentist okafor",), replaced=(0,)),
    Probe("upd-3", "whole update", "Good news, I got promoted to shift manager at Lidl.",
          ("The user works at Lidl as a cashier.",), stored=("manager lidl",), replaced=(0,)),
    Probe("upd-4", "whole update", "Leo switched from football to swimming.",
          ("My son Leo plays football on Saturdays.",), stored=("leo swimming",), replaced=(0,)),
    Probe("me-1", "about me", "What do you know about me?",
          ("I live in Oxford.", "My cat is called Miso.", "The user is allergic to peanuts."),
          reply=("oxford", "miso", "peanuts")),
    Probe("me-2", "about me", "Tell me everything you remember about me.",
          ("The user works as a pharmacist.", "The user's partner is Sam.", "I drive a blue Golf."),
          reply=("pharmacist", "sam", "golf")),
    Probe("me-3", "about me", "what have I told you so far?",
          ("The user's birthday is on March 3.", "My favourite food is ramen."), reply=("march 3", "ramen")),
    Probe("me-4", "about me", "Can you list what you've saved about me?",
          ("The user is learning Welsh.", "I go to the gym on Tuesdays."), reply=("welsh", "tuesdays")),
    Probe("rec-1", "recall", "Where do I live now?", ("I live in Oxford.",), reply=("oxford",)),
    Probe("rec-2", "recall", "what do I prefer to drink", ("I prefer tea over coffee.",), reply=("tea",)),
    Probe("rec-3", "recall", "Which town is Ana in?",
          ("The user's sister Ana lives in Leeds.", "The user's dentist is Dr. Patel."), reply=("leeds",)),
    Probe("rec-4", "recall", "remind me what my cat is called", ("My cat is called Miso.",), reply=("miso",)),
    Probe("unk-1", "not told", "What is my dog's name?", ("My dentist is Dr. Patel in Leeds.",),
          unknown=True, not_reply=("patel",)),
    Probe("unk-2", "not told", "Where does my brother live?", ("I live in Oxford.",),
          unknown=True, not_reply=("oxford",)),
    Probe("unk-3", "not told", "What's my partner called?", ("The user works as a pharmacist.",),
          unknown=True, not_reply=("pharmacist",)),
    Probe("unk-4", "not told", "When is my birthday?", unknown=True),
)


def check(probe: Probe, memories: Sequence[str], reply: str | None) -> dict[str, bool]:
    """Each of the probe's conditions → whether it holds, given the memories that exist after
    the turn (their contents) and the raw reply (None: the turn gave none)."""
    out: dict[str, bool] = {}
    for w in probe.stored:
        out[f"stored {w}"] = any(carries_value(m, w) for m in memories)
    for i in probe.replaced:
        out[f"changed {probe.memories[i]!r}"] = probe.memories[i] not in memories
    for w in probe.reply:
        out[f"reply names {w}"] = carries_value(reply, w)
    for w in probe.not_reply:
        out[f"reply avoids {w}"] = not carries_value(reply, w)
    if probe.unknown:
        out["reply says not told"] = says_not_known(reply or "")
    return out


def run_probe(probe: Probe, make_agent: Callable[[str], object], store, embed, namespace: str) -> dict:
    """Seed ``namespace`` with the probe's memories, run its message as one turn of a fresh agent
    (``make_agent(namespace)``), and check the outcome."""
    for content in probe.memories:
        store.add(namespace, content, embed(content), source="probe", actor="probe")
    agent = make_agent(namespace)
    turn = agent.turn(probe.user)
    after = [m.content for m in store.list(namespace, limit=1000)]
    checks = check(probe, after, turn.answer)
    calls = [c["name"] for s in turn.steps for c in s.calls]
    return {"id": probe.id, "kind": probe.kind, "user": probe.user, "memories_before": list(probe.memories),
            "memories_after": after, "reply": turn.answer,
            "shown": addressed_to_user(turn.answer) if turn.answer else None,
            "calls": calls, "checks": checks, "passed": all(checks.values()),
            "steps": [{"completion": s.completion, "results": s.results} for s in turn.steps]}


def first(n: int, probes: Sequence[Probe] = PROBES) -> tuple[Probe, ...]:
    """The first ``n`` probes taking one of each kind in turn, so that a short run (``--n 5``)
    still covers every kind; ``n`` at or above the set's size gives the whole set in its order."""
    if n >= len(probes):
        return tuple(probes)
    by_kind = [[p for p in probes if p.kind == k] for k in dict.fromkeys(p.kind for p in probes)]
    taken = [q for row in itertools.zip_longest(*by_kind) for q in row if q is not None][:n]
    return tuple(p for p in probes if p in taken)


def run_probes(policy, embedder, settings, *, probes: Sequence[Probe] = PROBES, judge=None,
               context_usage: bool = False, demonstrations: bool = False,
               progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Every probe on one scratch database (a temporary file, removed afterwards), one namespace
    each; the user's own database is never opened. The system prompt's date is the decision
    set's (``decisions.TODAY``), so a rerun on another day sees the same prompt."""
    from .agent import Agent
    from .memory.store import MemoryStore

    rows = []
    with tempfile.TemporaryDirectory(prefix="agemem-probes-") as tmp:
        store = MemoryStore(Path(tmp) / "probes.db")
        try:
            def make_agent(ns: str):
                s = dataclasses.replace(settings, namespace=ns)
                return Agent(policy, store, embedder, s, today=TODAY, demonstrations=demonstrations,
                             context_usage=context_usage, judge=judge)

            for i, p in enumerate(probes):
                rows.append(run_probe(p, make_agent, store, embedder.embed_one, f"probe-{p.id}"))
                if progress:
                    progress(i + 1, len(probes))
        finally:
            store.close()
    return rows


def summarise(rows: Sequence[dict]) -> dict:
    """Passes per kind and overall, and the tool calls made per kind."""
    by_kind: dict[str, dict] = {}
    for k in KINDS:
        mine = [r for r in rows if r["kind"] == k]
        if mine:
            by_kind[k] = {"n": len(mine), "passed": sum(r["passed"] for r in mine),
                          "calls": dict(Counter(c for r in mine for c in r["calls"]))}
    return {"n": len(rows), "passed": sum(r["passed"] for r in rows), "by_kind": by_kind}


def render_report(rows: Sequence[dict], title: str) -> str:
    """Markdown: the table of passes per kind, then each probe's reply, calls and failed checks."""
    s = summarise(rows)
    lines = [f"## Chat probes: {title}", "",
             "One whole turn per probe on a scratch database holding only the probe's memories.", "",
             "| kind | n | passed | tool calls |", "|---|---|---|---|"]
    for k, v in s["by_kind"].items():
        calls = ", ".join(f"{name} {c}" for name, c in sorted(v["calls"].items())) or "none"
        lines.append(f"| {k} | {v['n']} | {v['passed']} | {calls} |")
    lines += [f"| all | {s['n']} | {s['passed']} | |", ""]
    for r in rows:
        failed = [c for c, ok in r["checks"].items() if not ok]
        lines += [f"- **{r['id']}** {'pass' if r['passed'] else 'FAIL'}: {r['user']!r} → {r['shown']!r}",
                  f"  - calls: {', '.join(r['calls']) or 'none'}; memories after: {json.dumps(r['memories_after'])}"]
        if failed:
            lines.append(f"  - failed: {'; '.join(failed)}")
    return "\n".join(lines) + "\n"


__all__ = ["KINDS", "PROBES", "Probe", "check", "render_report", "run_probe", "run_probes", "summarise"]
