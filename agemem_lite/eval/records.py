"""The episode file that ``agemem eval`` writes, one per (bench, method, task): its format
tag and the header every kind of record shares (QA episodes, environment episodes and
Mem0-peer episodes), so the three builders cannot drift apart."""

from __future__ import annotations

RECORD_FORMAT = "agemem-eval-episode/1"

#: How the answer of a QA record is scored (the offline judges, ``eval.judges``).
JUDGE_NAMES = {"em": "EM vs gold (SQuAD-normalised answer; an abstention item: the reply says it is not known)",
               "f1": "token F1 vs gold (SQuAD-normalised; an abstention item: the reply says it is not known)"}


def record_header(bench: str, method: str, task_id: str, *, seed: int, policy: str) -> dict:
    """The fields that identify a record (the resumable harness matches on them)."""
    return {"format": RECORD_FORMAT, "bench": bench, "method": method, "task_id": task_id, "seed": seed,
            "policy": policy}


__all__ = ["JUDGE_NAMES", "RECORD_FORMAT", "record_header"]
