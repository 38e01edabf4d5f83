"""A weighted average of GGUF LoRA adapters, written as one adapter of a chosen rank.

Rounds trained from the same base adapter learn different things (one the
Filter/Summary triggers, another the episode answers); averaging their weight
deltas ("model soup", task arithmetic) is a cheap way to try to keep both
without another training run. Each adapter adds ``s * B @ A`` to a weight
(``s = alpha / r``); the average ``D = sum_i w_i s_i B_i A_i`` has rank at most
``sum r_i``, so it is factored exactly by QR of the stacked factors and an SVD of
the small core, and cut to ``rank`` (by default the first file's, so the result
is the same size as its inputs). The share of ``D``'s Frobenius norm that the cut
drops is reported (largest and mean over the matrices), so a lossy cut is visible, not silent.

Only numpy and the ``gguf`` package: no torch. The result is loaded back over
``base_gguf`` by llama.cpp before it is moved into place (``train.export``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agemem_lite.errors import ConfigError, ModelFileError
from train.export import _atomic, read_lora, write_lora


@dataclass(frozen=True)
class MergeReport:
    out: Path
    rank: int
    tensors: int
    dropped_share_max: float   # largest per-matrix share of ||D||_F lost by the rank cut
    dropped_share_mean: float


def _average_pair(factors: list[tuple[float, np.ndarray, np.ndarray]], rank: int, scale: float):
    """Rank-``rank`` factors (A, B) with ``scale * B @ A`` closest to ``sum w * B_i @ A_i``
    (``w`` already holds each file's weight times its own scale), and the dropped share."""
    b_cat = np.concatenate([w * b for w, _, b in factors], axis=1).astype(np.float64)   # (out, R)
    a_cat = np.concatenate([a for _, a, _ in factors], axis=0).astype(np.float64)       # (R, in)
    qb, rb = np.linalg.qr(b_cat)
    qa, ra = np.linalg.qr(a_cat.T)
    u, s, vt = np.linalg.svd(rb @ ra.T)
    total = float(np.sqrt(np.sum(s ** 2)))
    dropped = float(np.sqrt(np.sum(s[rank:] ** 2))) / total if total > 0 else 0.0
    root = np.sqrt(s[:rank] / scale)
    b = (qb @ u[:, :rank]) * root
    a = root[:, None] * (vt[:rank] @ qa.T)
    if a.shape[0] < rank:  # fewer directions than asked: pad with zeros so every pair has one rank
        a = np.vstack([a, np.zeros((rank - a.shape[0], a.shape[1]))])
        b = np.hstack([b, np.zeros((b.shape[0], rank - b.shape[1]))])
    return a, b, dropped


def merge_adapters(inputs: list[tuple[str | Path, float]], out: str | Path, base_gguf: str | Path, *,
                   rank: int | None = None, dtype: str = "f16", check: bool = True) -> MergeReport:
    """Write ``sum_i w_i * delta_i`` of the GGUF LoRA adapters ``inputs`` = [(path, w_i)] to ``out``.

    Weights need not sum to one (task arithmetic: ``[(v7, 1), (w, 1), (v6, -1)]``).
    Every input must adapt the same tensors with the same shapes (all trained over
    ``base_gguf``). ``rank`` defaults to the first input's rank; the alpha is the
    first input's (``rank`` where it has none: llama.cpp scales such a file by 1)."""
    if not inputs:
        raise ConfigError("merge_adapters: no adapters given")
    if dtype not in ("f32", "f16"):
        raise ConfigError(f"dtype={dtype!r}: choose 'f32' or 'f16'")
    files = [(read_lora(p), float(w)) for p, w in inputs]
    first = files[0][0]
    for f, _ in files[1:]:
        if f.arch != first.arch or set(f.pairs) != set(first.pairs):
            raise ModelFileError(f"{f.path} adapts other tensors than {first.path}; were both trained on one base?")
        for name, (a, b) in f.pairs.items():
            if a.shape[1] != first.pairs[name][0].shape[1] or b.shape[0] != first.pairs[name][1].shape[0]:
                raise ModelFileError(f"{f.path}: {name} is {b.shape[0]}x{a.shape[1]}, not as in {first.path}")
    rank = first.rank if rank is None else int(rank)
    if rank < 1:
        raise ConfigError(f"rank={rank}: must be at least 1")
    alpha = first.alpha or float(rank)     # no alpha in the first file: scale 1, as llama.cpp reads it
    scale = alpha / rank
    np_dtype = np.float16 if dtype == "f16" else np.float32
    tensors, dropped = [], []
    for name in first.pairs:
        factors = [(w * f.scale, *f.pairs[name]) for f, w in files]
        a, b, lost = _average_pair(factors, rank, scale)
        dropped.append(lost)
        tensors += [(name + ".lora_a", a.astype(np_dtype)), (name + ".lora_b", np.ascontiguousarray(b, np_dtype))]

    out = Path(out)
    with _atomic(out, lora_base=Path(base_gguf), check=check) as tmp:
        write_lora(tmp, first.arch, alpha, tensors)
    return MergeReport(out, rank, len(tensors), max(dropped), float(np.mean(dropped)))
