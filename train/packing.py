"""Shared-prefix packing: training rows that start with the same tokens run as one sequence.

Why: every warm-start row begins with the same ~365-token system prompt (the serving
format), about half of all the tokens the supervised warm start pushes through the model.
On a 2-core CPU, where a forward and backward pass runs ~40 tokens/s, that prefix is
most of the bill. A pack holds the common prefix once, then each row's remainder; the
remainders attend to the prefix and to themselves only (a tree-shaped causal mask), and
each continues the prefix's positions, so every token sees exactly the context it would
see alone. The loss and the gradients are those of the rows one by one (up to float
rounding), for fewer tokens.

The layout lives in ``position_ids`` alone (a position that does not grow starts a new
branch), so the mask is derived where the model runs (``install_tree_attention``) and
nothing else in TRL's pipeline has to carry it. A pack's prefix never reaches a token in
the loss: the first token of every branch is a prompt token, so no loss is ever computed
across a branch boundary.
"""

from __future__ import annotations

from typing import Sequence


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _first_loss(mask: Sequence[int]) -> int:
    for i, m in enumerate(mask):
        if m:
            return i
    return len(mask)


def _packed(rows: list[dict], prefix: int) -> dict:
    ids = list(rows[0]["input_ids"][:prefix])
    mask = list(rows[0]["completion_mask"][:prefix])
    pos = list(range(prefix))
    for r in rows:
        ids += r["input_ids"][prefix:]
        mask += r["completion_mask"][prefix:]
        pos += range(prefix, len(r["input_ids"]))
    return {"input_ids": ids, "completion_mask": mask, "position_ids": pos, "rows": len(rows)}


#: Longest pack. Attention over a pack is not the fused causal kernel: it keeps an L x L
#: matrix per head and layer for the backward pass, so a 4,096-token pack pushed a warm start
#: past 20 GB of RSS. Rows longer than this run alone (plain causal attention).
PACK_TOKENS = 2048


def pack_rows(rows: Sequence[dict], *, max_rows: int, max_tokens: int = PACK_TOKENS,
              min_prefix: int = 32) -> list[dict]:
    """Consecutive rows (``input_ids`` + ``completion_mask``) → packs of at most ``max_rows``
    rows and ``max_tokens`` tokens whose shared prefix is at least ``min_prefix`` tokens and
    ends before each row's first loss token. Order is kept (shuffle before packing); a row
    that does not fit starts the next pack. ``max_rows=1`` returns the rows unchanged, with
    plain position ids."""
    packs: list[dict] = []
    group: list[dict] = []
    prefix = 0

    def close():
        if group:
            packs.append(_packed(group, prefix if len(group) > 1 else 0))

    for r in rows:
        if group and len(group) < max_rows:
            p = min(prefix, common_prefix(group[0]["input_ids"], r["input_ids"]),
                    _first_loss(r["completion_mask"]) - 1)
            size = p + sum(len(g["input_ids"]) - p for g in (*group, r))
            if p >= min_prefix and size <= max_tokens:
                group.append(r)
                prefix = p
                continue
        close()
        group = [r]
        prefix = min(len(r["input_ids"]), _first_loss(r["completion_mask"]) - 1)
    close()
    return packs


def tree_mask(position_ids):
    """Boolean attention mask ``[B, 1, L, L]`` for packs laid out by ``pack_rows``, or None
    when no row of the batch branches (the model's own causal mask is then the same)."""
    import torch

    pos = position_ids
    restart = torch.zeros_like(pos, dtype=torch.bool)
    restart[:, 1:] = pos[:, 1:] <= pos[:, :-1]
    if not bool(restart.any()):
        return None
    branch = restart.cumsum(-1)                                   # 0 for the prefix and the first branch
    L = pos.shape[1]
    idx = torch.arange(L, device=pos.device)
    # the shared prefix ends where the first branch's positions start again
    first = torch.where(restart, idx, L).min(-1).values           # index of the first restart
    prefix_len = pos.gather(1, first.clamp(max=L - 1)[:, None])   # = the prefix's length
    shared = idx[None, :] < prefix_len                             # [B, L]
    same = branch[:, :, None] == branch[:, None, :]
    causal = idx[None, :, None] >= idx[None, None, :]
    return (causal & (same | shared[:, None, :]))[:, None]


def _additive(mask, dtype):
    """0 where attending is allowed, the dtype's minimum elsewhere: on a CPU, torch's attention
    ran a 1,365-token pack in 29-35 s with this mask and 36-37 s with the boolean one."""
    import torch

    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


def install_tree_attention(model):
    """Give the decoder a tree mask whenever its ``position_ids`` describe a pack (and no
    attention mask was passed). Returns the hook handle (``.remove()`` undoes it)."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder()

    def hook(module, args, kwargs):
        pos = kwargs.get("position_ids")
        if pos is not None and kwargs.get("attention_mask") is None and kwargs.get("past_key_values") is None:
            mask = tree_mask(pos)
            if mask is not None:
                dev = pos.device.type
                dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else base.dtype
                kwargs["attention_mask"] = _additive(mask, dtype)
        return args, kwargs

    return decoder.register_forward_pre_hook(hook, with_kwargs=True)


def collate_packs(features: list[dict]) -> dict:
    """TRL collator for packed rows, one pack per batch: ids, labels (-100 outside the
    loss; TRL built them from ``completion_mask``), position ids; no padding, no 2-D mask."""
    import torch

    if len(features) != 1:
        raise ValueError("packed rows go one pack per batch (per_device_train_batch_size=1)")
    f = features[0]
    return {"input_ids": torch.tensor([f["input_ids"]]), "labels": torch.tensor([f["labels"]]),
            "position_ids": torch.tensor([f["position_ids"]])}


__all__ = ["PACK_TOKENS", "collate_packs", "common_prefix", "install_tree_attention", "pack_rows", "tree_mask"]
