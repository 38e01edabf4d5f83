"""The reward curve of a run (``log.jsonl`` -> PNG): training reward per step, held-out reward.

matplotlib is optional (the ``eval`` extra); without it ``plot_log`` returns None
and the run says the plot was skipped.
"""

from __future__ import annotations

import json
from pathlib import Path


def read_log(path: str | Path) -> list[dict]:
    """Every record of a run's log.jsonl (a torn last line from a kill is ignored)."""
    out = []
    p = Path(path)
    if not p.exists():
        return out
    for line in p.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def plot_log(log_path: str | Path, png: str | Path) -> Path | None:
    """Write the curve; None when matplotlib is missing or there is nothing to plot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    recs = read_log(log_path)
    steps = [r for r in recs if r.get("type") == "step" and r.get("reward_mean") is not None]
    evals = [r for r in recs if r.get("type") == "eval" and r.get("reward_mean") is not None]
    if not steps and not evals:
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if steps:
        ax.plot([r["step"] for r in steps], [r["reward_mean"] for r in steps], ".-", alpha=0.6,
                label="rollout reward (mean of K)")
    if evals:
        ax.plot([r["step"] for r in evals], [r["reward_mean"] for r in evals], "o-", lw=2,
                label="held-out reward (greedy)")
        if any(r.get("f1") is not None for r in evals):
            ax.plot([r["step"] for r in evals], [r.get("f1") or 0 for r in evals], "s--", label="held-out F1")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("reward (SPEC §5)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(png)
    fig.savefig(out)
    plt.close(fig)
    return out


__all__ = ["read_log", "plot_log"]
