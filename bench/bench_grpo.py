"""Seconds per GRPO step and peak memory on this machine, for the small and the default policy.

Each model runs in its own process (peak RSS is per process): a fresh run of
``--steps`` GRPO steps with K rollouts of one short three-stage episode, no
held-out evaluation. The table splits a step into rollouts (llama.cpp) and the
update (torch: reference pass + training pass over the step samples).

    python bench/bench_grpo.py --data-dir DIR [--models smollm2-135m,qwen2.5-coder-0.5b]
                               [--steps 2] [--k 4] [--samples 16] [--guided]

Run by hand on a quiet machine (other processes on 2 cores distort every number).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(args) -> None:
    sys.path.insert(0, str(ROOT))
    from agemem_lite.config import Settings
    from train.config import TrainConfig
    from train.trainer import GRPOTrainer

    cfg = TrainConfig.load("default", {
        "base": args.model, "steps": args.steps, "k": args.k, "tasks_per_step": 1, "benches": ["hotpot"],
        "n_train_tasks": 8, "max_samples_per_step": args.samples, "eval_every": 0, "save_every": 1000,
        "guided": args.guided, "threads": args.threads, "bf16": not args.fp32,
        "episode": {"n_max": 2, "n_distractors": 2, "max_steps_per_turn": 3}})
    t = GRPOTrainer(cfg, Settings.load(args.data_dir), args.out, progress=False)
    try:
        t.run()
    finally:
        t.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--models", default="smollm2-135m,qwen2.5-coder-0.5b")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--samples", type=int, default=16, help="max_samples_per_step")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--guided", action="store_true", help="demonstrations in the prompt, as chat serves the prompted policy")
    ap.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    rows = []
    for model in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            cmd = [sys.executable, __file__, "--child", "--model", model, "--out", str(out),
                   "--data-dir", args.data_dir, "--steps", str(args.steps), "--k", str(args.k),
                   "--samples", str(args.samples), "--threads", str(args.threads)]
            cmd += ["--guided"] * args.guided + ["--fp32"] * args.fp32
            subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
        steps = [r for r in log if r["type"] == "step"]
        per_sample = [r["update_s"] / r["n_samples"] for r in steps if r["n_samples"]]
        rows.append((model, len(steps), statistics.median(r["step_s"] for r in steps),
                     statistics.median(r["rollout_s"] for r in steps), statistics.median(r["update_s"] for r in steps),
                     statistics.median(per_sample) if per_sample else float("nan"),
                     statistics.median(r["n_samples"] for r in steps),
                     statistics.median(r["loss_tokens"] / max(r["n_samples"], 1) for r in steps if r["n_samples"])
                     if per_sample else float("nan"),
                     max(r["peak_rss_mb"] for r in steps)))
    print(f"\nGRPO on CPU: K={args.k}, max {args.samples} samples/step, guided={args.guided}, "
          f"bf16={not args.fp32}, cores={os.cpu_count()}\n")
    print("| model | steps | s/step | rollouts s | update s | update s/sample | samples | loss tokens/sample | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.1f} | {r[3]:.1f} | {r[4]:.1f} | {r[5]:.2f} | {r[6]:.0f} | {r[7]:.0f} | {r[8]:.0f} |")


if __name__ == "__main__":
    main()
