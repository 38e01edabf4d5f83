"""Markdown tables of a training run's ``log.jsonl``: its held-out evaluations and its GRPO steps.

The docs' run tables are printed by this script, so that no number is copied by hand.

    python bench/grpo_run_table.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _calls(d: dict) -> str:
    short = {k.replace("_memory", "").replace("_context", ""): v for k, v in sorted(d.items()) if v}
    return ", ".join(f"{k} {v:.2f}" for k, v in short.items()) or "none"


def _f(x, nd=3) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def tables(run: Path) -> str:
    recs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    evals = [r for r in recs if r["type"] == "eval"]
    steps = [r for r in recs if r["type"] == "step"]
    best = json.loads((run / "best" / "state.json").read_text()) if (run / "best" / "state.json").is_file() else {}
    out = [f"### {run}", "", f"best checkpoint by held-out reward: step {best.get('step', '?')}", ""]
    if evals:
        out += ["| held-out eval at step | n | reward | F1 | EM | MQ | F1 by bench | prompt tokens / episode | tool calls / episode | s |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in evals:
            by = ", ".join(f"{b} {v['f1']:.3f}" for b, v in sorted(r.get("by_bench", {}).items()))
            out.append(f"| {r['step']} | {r['n']} | {_f(r['reward_mean'])} | {_f(r['f1'])} | {_f(r['em'])} | "
                       f"{_f(r['mq'])} | {by} | {r['prompt_tokens']:,.0f} | {_calls(r['tool_calls_per_episode'])} | "
                       f"{r.get('eval_s', 0):.0f} |")
        out.append("")
    if steps:
        out += ["| step | rewards per group | mean | std | R_task mean | groups skipped | samples | KL | grad norm "
                "| tool calls / episode | rollouts s | update s |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in steps:
            groups = "; ".join(" ".join(f"{x:.3f}" for x in g["rewards"]) for g in r["groups"])
            skipped = sum(1 for g in r["groups"] if g.get("skipped"))
            out.append(f"| {r['step']} | {groups} | {_f(r['reward_mean'])} | {_f(r['reward_std'])} | "
                       f"{_f(r['task_score_mean'])} | {skipped}/{len(r['groups'])} | {r['n_samples']} | "
                       f"{_f(r.get('kl'))} | {_f(r.get('grad_norm'), 2)} | {_calls(r['tool_calls_per_episode'])} | "
                       f"{r.get('rollout_s', 0):.0f} | {r.get('update_s', 0):.0f} |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    for run in ap.parse_args().runs:
        print(tables(run))


if __name__ == "__main__":
    main()
