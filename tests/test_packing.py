"""train.packing: rows that share the system prompt run as one sequence, with the same loss
and LoRA gradients as the rows one by one (SmolLM2, real torch gradients)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from agemem_lite import model_files  # noqa: E402
from train.base import load_model, materialise  # noqa: E402
from train.packing import common_prefix, install_tree_attention, pack_rows, tree_mask  # noqa: E402
from train.warm_start import build_turns, tokenize_turn  # noqa: E402


def _row(ids, first_loss):
    return {"input_ids": list(ids), "completion_mask": [0] * first_loss + [1] * (len(ids) - first_loss)}


def _unpack(pack):
    """The rows of a pack, rebuilt from its position ids (prefix + each branch)."""
    ids, pos = pack["input_ids"], pack["position_ids"]
    starts = [0] + [i for i in range(1, len(pos)) if pos[i] <= pos[i - 1]]
    if len(starts) == 1:
        return [ids]
    p = pos[starts[1]]
    bounds = [p] + starts[1:] + [len(ids)]
    return [ids[:p] + ids[a:b] for a, b in zip(bounds, bounds[1:])]


def test_pack_rows_shares_the_prefix_and_keeps_every_row():
    prefix = list(range(100, 160))
    rows = [_row(prefix + [7, 8, 9, 10], 62), _row(prefix + [5, 6, 7], 61), _row(prefix + [4, 4, 4, 4, 4], 63),
            _row([1] * 80, 70), _row(prefix + [3, 3], 61)]
    packs = pack_rows(rows, max_rows=4, max_tokens=10_000)
    # the unrelated row cuts the run: [0, 1, 2], [3], [4]
    assert [p["rows"] for p in packs] == [3, 1, 1]
    assert [r for p in packs for r in _unpack(p)] == [r["input_ids"] for r in rows]
    first = packs[0]
    assert first["position_ids"][:60] == list(range(60)) and first["position_ids"][60:64] == [60, 61, 62, 63]
    assert first["position_ids"][64:67] == [60, 61, 62]
    # the loss tokens are all still there, none inside the shared prefix
    assert sum(first["completion_mask"]) == sum(sum(r["completion_mask"]) for r in rows[:3])
    assert not any(first["completion_mask"][:60])
    assert len(first["input_ids"]) == 60 + 4 + 3 + 5


def test_pack_rows_limits_and_the_loss_boundary():
    prefix = list(range(200, 260))
    rows = [_row(prefix + [i] * 10, 62) for i in range(6)]
    assert [p["rows"] for p in pack_rows(rows, max_rows=4, max_tokens=10_000)] == [4, 2]
    assert [p["rows"] for p in pack_rows(rows, max_rows=4, max_tokens=60 + 2 * 10)] == [2, 2, 2]
    assert pack_rows(rows, max_rows=1, max_tokens=10_000) == [
        {**r, "position_ids": list(range(70)), "rows": 1} for r in rows]
    # a row whose loss starts inside the common prefix shrinks it: no loss token is ever shared
    early = _row(prefix + [9] * 10, 40)
    packs = pack_rows([rows[0], early], max_rows=4, max_tokens=10_000)
    assert packs[0]["rows"] == 2 and packs[0]["position_ids"].index(39, 40) > 0
    assert not any(packs[0]["completion_mask"][:39])
    # too short a common prefix is not worth a pack
    assert [p["rows"] for p in pack_rows([rows[0], _row(prefix[:10] + [1] * 60, 62)], max_rows=4,
                                         max_tokens=10_000)] == [1, 1]


def test_tree_mask_lets_each_branch_see_the_prefix_and_itself():
    pos = torch.tensor([[0, 1, 2, 3, 4, 3, 4, 5]])          # prefix 0-2, branch A 3-4, branch B 3-5
    m = tree_mask(pos)[0, 0]
    assert m.shape == (8, 8)
    assert m[4, :5].all() and not m[4, 5:].any()             # A's last token: prefix + A
    assert m[7, :3].all() and not m[7, 3:5].any() and m[7, 5:8].all()   # B: prefix + B, never A
    assert tree_mask(torch.arange(6)[None]) is None          # one row: the model's own causal mask


@pytest.fixture(scope="module")
def smol_folder(settings, data_dir):
    cache = Path(os.environ.get("AGEMEM_TRAIN_CACHE") or data_dir / "cache" / "train")
    return materialise(model_files.resolve(settings, "smollm2-135m"), cache)


def _lora(folder):
    torch.manual_seed(0)
    model = load_model(folder)
    model = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                       target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():   # B = 0 would hide the adapter from the gradients of A
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    return model


def _loss(model, rows):
    """Summed next-token NLL over the loss tokens / their count, as TRL's completion-only loss."""
    total, count = 0.0, 0
    for r in rows:
        ids = torch.tensor([r["input_ids"]])
        kw = {"position_ids": torch.tensor([r["position_ids"]])} if "position_ids" in r else {}
        logits = model(input_ids=ids, use_cache=False, **kw).logits[0, :-1].float()
        target = ids[0, 1:]
        keep = torch.tensor(r["completion_mask"][1:], dtype=torch.bool)
        nll = torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum")
        total, count = total + nll, count + int(keep.sum())
    return total / count


def _grads(model, rows):
    model.zero_grad()
    loss = _loss(model, rows)
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_a_pack_has_the_loss_and_gradients_of_its_rows(smol_folder, small_policy):
    torch.set_num_threads(2)
    turns = build_turns(7, 3, long_share=0.0)
    rows = []
    for t in turns[:3]:
        ids, mask = tokenize_turn(small_policy, t)
        rows.append({"input_ids": ids, "completion_mask": mask})
    packs = pack_rows(rows, max_rows=4, max_tokens=10_000)
    assert len(packs) == 1 and packs[0]["rows"] == 3
    shared = min(common_prefix(rows[0]["input_ids"], r["input_ids"]) for r in rows[1:])
    assert shared > 200                                       # the system prompt and the tool list
    assert len(packs[0]["input_ids"]) < sum(len(r["input_ids"]) for r in rows) - 2 * 200

    model = _lora(smol_folder)
    loss_rows, g_rows = _grads(model, rows)
    hook = install_tree_attention(model)
    try:
        loss_pack, g_pack = _grads(model, packs)
    finally:
        hook.remove()
    assert loss_pack == pytest.approx(loss_rows, rel=1e-4)
    worst = max(float((g_pack[n] - g).abs().max() / g.abs().max().clamp(min=1e-12)) for n, g in g_rows.items())
    assert worst < 1e-3
    # without the tree mask the branches would read each other: a different loss
    loss_leaky, _ = _grads(model, packs)
    assert abs(loss_leaky - loss_rows) > 1e-3


def test_pack_is_a_warm_start_setting():
    from agemem_lite.errors import ConfigError
    from train.config import TrainConfig

    cfg = TrainConfig.load("default", {"steps": 0})
    assert [r["pack"] for r in cfg.warm_start_rounds()] == [1, 4]   # v6 rows one by one; round G packed
    with pytest.raises(ConfigError, match="pack"):
        TrainConfig.load("tiny", {"warm_start": [{"items": 7, "pack": 0}]})


def test_set_reaches_every_warm_start_round():
    from agemem_lite.errors import ConfigError
    from train.config import TrainConfig

    cfg = TrainConfig.load("default", ["steps=0", "warm_start.pack=2"])
    assert [r["pack"] for r in cfg.warm_start_rounds()] == [2, 2]
    cfg = TrainConfig.load("tiny", {"warm_start": [{"items": 7}, {"items": 5}], "warm_start.pack": 2})
    assert [r["pack"] for r in cfg.warm_start_rounds()] == [2, 2]
    with pytest.raises(ConfigError, match="not a table"):
        TrainConfig.load("default", ["warm_start=[]", "warm_start.pack=4"])
