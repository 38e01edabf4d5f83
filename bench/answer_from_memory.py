"""Stage-3 answers when the memories that hold them are in hand: the reason stage alone.

An episode's task score mixes what the policy stored (MQ) with how it reasons over what it
finds; two seeds of 4-6 episodes cannot tell the two apart. This bench gives the policy the
question exactly as an episode's stage 3 does, with the task's own memories (and up to two
unrelated ones, shuffled) either found by a Retrieve_memory it already made (``--form search``,
what episodes do: stage 3 shows no retrieval) or shown as related memories (``--form shown``),
and scores its next step against the gold answer, per question type. A step that calls a tool
instead is counted, and the answer scored is then that of an answer-only step (the runtime
allows only an answer at a turn's last step). For a HotpotQA comparison it also counts which of
the two entities the answer names first (a sentence answer makes a choice too). A prompted policy
gets its demonstrations in the context, as in episodes.

The items are ``train.warm_start.question_turns`` at ``--seed`` (the warm start draws its own at
``question_seed + seed``: 1000 and 1007 in the default recipe's rounds, so the evaluation's seeds
0 and 1 are not trained on). A policy served with the context-usage line is measured without it.

    python bench/answer_from_memory.py [--policy NAME] [--adapter FILE] [--bench hotpot] [--n 60] [--seed 0]
        [--form search] [--prefill] [--out rows.json]
    python bench/answer_from_memory.py --rows rows.json ...     # the tables of saved runs

``--prefill`` (HotpotQA) writes the worked think (``train.warm_start.worked_reason``) up to the
decision and lets the policy go on: can it take the last step when the hop or both numbers are
already written out?
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


#: Where a worked think reaches its decision: a comparison's "The larger is ", a bridge's first arrow.
_DECISION = re.compile(r"The (?:larger|smaller) is |→")


def _go_on(pol, msgs: list[dict], worked_step: str) -> str | None:
    """The step with its worked think written up to the decision, then the policy's own greedy
    text from there; None where the step has no worked think (``worked_reason`` gave none)."""
    m = _DECISION.search(worked_step)
    if not m:
        return None
    prompt = pol.tokenize(pol.render(msgs)) + pol.tokenize(worked_step[:m.end()], special=False)
    out = pol.llm.create_completion(prompt, max_tokens=80, temperature=0.0, stop=["</answer>"])
    return worked_step[:m.end()] + out["choices"][0]["text"] + "</answer>"


def named_first(answer: str, gold: str, other: str) -> str | None:
    """Which of a comparison's two entities the answer names first ("gold" / "other"), or None:
    a sentence answer ("X is older than Y.") scores 0 EM but still makes a choice."""
    a = answer.lower()
    at = {k: a.find(e.lower().removeprefix("the ")) for k, e in (("gold", gold), ("other", other))}
    found = {k: i for k, i in at.items() if i >= 0}
    return min(found, key=found.get) if found else None


def print_table(rows: list[dict]) -> None:
    """Per question type: items, answered at once, EM, F1, replies that say "not known" (right only on
    abstentions); for comparisons, which entity is named first."""
    from agemem_lite import protocol
    from agemem_lite.rewards import says_not_known

    by = defaultdict(list)
    for r in rows:
        by[r["type"]].append(r)
    by["all"] = rows
    print("| type | n | answered at once | EM | F1 | says not known | comparisons: winner / other named first |")
    print("|---|---|---|---|---|---|---|")
    for kind, rs in by.items():
        n = len(rs)
        answers = [protocol.parse_step(r["completion"]).answer or "" for r in rs]
        picks = [named_first(a, r["gold"], r["other"]) for a, r in zip(answers, rs) if r.get("other")]
        pick = f"{picks.count('gold')} / {picks.count('other')}" if picks else "-"
        print(f"| {kind} | {n} | {sum(r['answered'] for r in rs)} | {100 * sum(r['em'] for r in rs) / n:.1f} | "
              f"{100 * sum(r['f1'] for r in rs) / n:.1f} | {sum(map(says_not_known, answers))} | {pick} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy", default="", help="a registry policy (default: the configured one, agemem-0.5b)")
    ap.add_argument("--adapter", default="", help="a GGUF LoRA adapter in place of the policy's own")
    ap.add_argument("--bench", default="hotpot", choices=["hotpot", "longmemeval"])
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--form", default="search", choices=["search", "shown"])
    ap.add_argument("--prefill", action="store_true",
                    help="HotpotQA: write the think out (train.warm_start.worked_reason) up to the decision "
                         "('... The larger is' / 'A →') and let the policy go on from there")
    ap.add_argument("--out", default="")
    ap.add_argument("--rows", nargs="+", default=[], help="print the tables of earlier --out files, run nothing")
    args = ap.parse_args()
    if args.rows:
        for f in args.rows:
            print(f"\n{f}\n")
            print_table(json.loads(Path(f).read_text()))
        return

    from agemem_lite import protocol
    from agemem_lite.assistant import open_policy, wants_demonstrations
    from agemem_lite.config import Settings
    from agemem_lite.eval.harness import build_tasks
    from agemem_lite.rewards import answer_score
    from train.warm_start import question_turns

    if args.prefill and args.bench != "hotpot":
        ap.error("--prefill is for --bench hotpot (the worked thinks are HotpotQA's)")

    settings = Settings.load()
    if args.policy:
        settings = dataclasses.replace(settings, policy=args.policy)
    if args.adapter:
        settings = dataclasses.replace(settings, adapter=args.adapter)
    tasks = {f"q-{t.id}": t for t in build_tasks(args.bench, args.n, args.seed, n_distractors=0)}
    turns = question_turns(args.n, args.seed, benches=(args.bench,),
                           retrieve_share=1.0 if args.form == "search" else 0.0,
                           demonstrations=wants_demonstrations(settings), worked_think=args.prefill)
    pol = open_policy(settings)
    rows = []
    try:
        for k, turn in enumerate(turns):
            msgs = turn.before_last_step()
            t = tasks[turn.item_id.removesuffix("+ret")]
            t0 = time.perf_counter()
            kind = t.metadata.get("type", "?")
            text = _go_on(pol, msgs, turn.steps[-1]) if args.prefill else None
            at_once = True
            if text is None:
                text = pol.step(msgs).text
                at_once = bool(protocol.parse_step(text).answer)
                if not at_once:   # a tool call instead: the answer the runtime's answer-only step gets
                    text = pol.step(msgs, allow_tools=False).text
            answer = protocol.parse_step(text).answer or ""
            other = next((e for e in t.key_items if e != t.answers[0]), None) if kind == "comparison" else None
            rows.append({"id": t.id, "type": kind, "question": t.question, "gold": t.answers[0], "other": other,
                         "completion": text, "answered": at_once,
                         "em": answer_score(answer, t.answers, "em", unanswerable=t.unanswerable),
                         "f1": answer_score(answer, t.answers, "f1", unanswerable=t.unanswerable),
                         "seconds": round(time.perf_counter() - t0, 2)})
            print(f"[{k + 1}/{len(turns)}] {kind}: em {rows[-1]['em']:.0f}  {answer[:60]!r} (gold {t.answers[0]!r})",
                  file=sys.stderr)
    finally:
        pol.close()

    name = Path(args.adapter).name if args.adapter else settings.policy
    how = f"form {args.form}" + (", think written out up to the decision" if args.prefill else "")
    print(f"\nanswers from memory: {name}, {args.bench} seed {args.seed}, {how}\n")
    print_table(rows)
    print(f"\n{sum(r['seconds'] for r in rows) / max(len(rows), 1):.1f} s per item")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
