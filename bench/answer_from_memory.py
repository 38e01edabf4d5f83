"""Stage-3 answers when the memories that hold them are in hand: the reason stage alone.

An episode's task score mixes what the policy stored (MQ) with how it reasons over what it
finds; two seeds of 4-6 episodes cannot tell the two apart. This bench gives the policy the
question exactly as an episode's stage 3 does, with the task's own memories (and up to two
unrelated ones, shuffled) either found by a Retrieve_memory it already made (``--form search``,
what episodes do: stage 3 shows no retrieval) or shown as related memories (``--form shown``),
and scores its next step against the gold answer, per question type (a step that calls a tool
instead is counted, and the answer scored is that of an answer-only step, as the runtime's
last step of a turn allows). For a HotpotQA
comparison it also counts answers that name the other entity of the two. A prompted policy gets
its demonstrations in the context, as in episodes.

The items are ``train.warm_start.question_turns`` at ``--seed`` (the warm start draws its own at
``question_seed + seed``, 1007 for the default recipe, so seed 0 is not trained on). A policy
served with the context-usage line is measured without it.

    python bench/answer_from_memory.py [--policy NAME] [--adapter FILE] [--bench hotpot] [--n 60] [--seed 0]
        [--form search] [--out rows.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy", default="", help="a registry policy (default: the configured one, agemem-0.5b)")
    ap.add_argument("--adapter", default="", help="a GGUF LoRA adapter in place of the policy's own")
    ap.add_argument("--bench", default="hotpot", choices=["hotpot", "longmemeval"])
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--form", default="search", choices=["search", "shown"])
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    from agemem_lite import protocol
    from agemem_lite.assistant import open_policy, wants_demonstrations
    from agemem_lite.config import Settings
    from agemem_lite.eval.harness import build_tasks
    from agemem_lite.rewards import exact_match, token_f1
    from train.warm_start import question_turns

    settings = Settings.load()
    if args.policy:
        settings = dataclasses.replace(settings, policy=args.policy)
    if args.adapter:
        settings = dataclasses.replace(settings, adapter=args.adapter)
    tasks = {f"q-{t.id}": t for t in build_tasks(args.bench, args.n, args.seed, n_distractors=0)}
    turns = question_turns(args.n, args.seed, benches=(args.bench,),
                           retrieve_share=1.0 if args.form == "search" else 0.0,
                           demonstrations=wants_demonstrations(settings))
    pol = open_policy(settings)
    rows = []
    try:
        for k, turn in enumerate(turns):
            msgs = list(turn.context)
            for step, result in zip(turn.steps[:-1], turn.tool_results):
                msgs += [{"role": "assistant", "content": step}, {"role": "tool", "content": result}]
            t = tasks[turn.item_id.removesuffix("+ret")]
            t0 = time.perf_counter()
            comp = pol.step(msgs)
            p = protocol.parse_step(comp.text)
            at_once = bool(p.answer)
            if not at_once:   # a tool call instead: the answer the runtime's answer-only step gets
                comp = pol.step(msgs, allow_tools=False)
                p = protocol.parse_step(comp.text)
            answer = p.answer or ""
            kind = t.metadata.get("type", "?")
            other = None
            if kind == "comparison" and answer:
                loser = [e for e in t.key_items if e != t.answers[0]]
                other = bool(loser) and exact_match(answer, loser) == 1.0
            rows.append({"id": t.id, "type": kind, "question": t.question, "gold": t.answers[0],
                         "completion": comp.text, "answered": at_once, "em": exact_match(answer, t.answers),
                         "f1": token_f1(answer, t.answers), "other_entity": other,
                         "seconds": round(time.perf_counter() - t0, 2)})
            print(f"[{k + 1}/{len(turns)}] {kind}: em {rows[-1]['em']:.0f}  {answer[:60]!r} (gold {t.answers[0]!r})",
                  file=sys.stderr)
    finally:
        pol.close()

    by = defaultdict(list)
    for r in rows:
        by[r["type"]].append(r)
    by["all"] = rows
    name = Path(args.adapter).name if args.adapter else settings.policy
    print(f"\nanswers from memory: {name}, {args.bench} seed {args.seed}, form {args.form}\n")
    print("| type | n | answered at once | EM | F1 | names the other entity |")
    print("|---|---|---|---|---|---|")
    for kind, rs in by.items():
        n = len(rs)
        other = [r["other_entity"] for r in rs if r["other_entity"] is not None]
        print(f"| {kind} | {n} | {sum(r['answered'] for r in rs)} | {100 * sum(r['em'] for r in rs) / n:.1f} | "
              f"{100 * sum(r['f1'] for r in rs) / n:.1f} | {f'{sum(other)}/{n}' if other else '-'} |")
    print(f"\n{sum(r['seconds'] for r in rows) / max(len(rows), 1):.1f} s per item")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
