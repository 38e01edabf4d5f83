"""train.preference: pairs from a policy's wrong decisions, one packed pass per pair, the DPO loss,
and a short real DPO run on SmolLM2 (real torch gradients, a real GGUF adapter written)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from agemem_lite import decisions as D
from scripted import ScriptedPolicy

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from agemem_lite import model_files  # noqa: E402
from train.base import load_model, materialise  # noqa: E402
from train.lora import completion_logprobs  # noqa: E402
from train.packing import install_tree_attention  # noqa: E402
from train.warm_start import Turn, tokenize_turn  # noqa: E402
from train.preference import (anchor_pairs, confused_step, dpo_loss, is_mistake, mistake_pairs,  # noqa: E402
                              not_told_step, pair_logps, pair_tokens, reason_pairs, train_dpo)


def _other_class_step(item: D.DecisionItem, items) -> str:
    """The oracle step of an item of another class: a wrong step for ``item``."""
    return next(D.oracle_completion(o) for o in items if o.label != item.label)


def _scripted_run(items, wrong: set[int]):
    steps = [_other_class_step(it, items) if i in wrong else D.oracle_completion(it, fact_think="value_end")
             for i, it in enumerate(items)]
    return D.run_decisions(ScriptedPolicy(steps), items, guided=False)[1]


def test_pairs_are_the_wrong_steps_against_the_oracle_in_the_same_context():
    items = D.generate(9, 3, "train", classes=D.CYCLE)
    records = _scripted_run(items, wrong={1, 4, 8})
    assert [i for i, r in enumerate(records) if is_mistake(r)] == [1, 4, 8]
    pairs = mistake_pairs(items, records)
    assert [p.item_id for p in pairs] == [items[i].id for i in (1, 4, 8)]
    for p, i in zip(pairs, (1, 4, 8)):
        assert p.rejected == records[i]["completion"] and p.rejected != p.chosen
        assert p.chosen == D.oracle_completion(items[i], fact_think="value_end")
        assert p.context == D.messages(items[i], guided=False)
    with pytest.raises(ValueError, match="generated differently"):
        mistake_pairs(items[1:] + items[:1], records)


def test_anchor_pairs_set_each_right_step_against_its_neighbour_class():
    """Right steps of Add/Update/Delete/Retrieve get a pair whose rejected step is the class the
    policy confuses them with; mistakes and other classes get none here."""
    items = D.generate(14, 3, "train", classes=D.CYCLE)
    records = _scripted_run(items, wrong={0})
    pairs = anchor_pairs(items, records)
    labels = {it.id: it.label for it in items}
    expect = [it.id + "+anchor" for i, it in enumerate(items)
              if i != 0 and it.label in ("add", "update", "delete", "retrieve") and (it.label != "add" or it.shown)]
    assert [p.item_id for p in pairs] == expect and expect
    wrong_class = {"add": "update", "update": "add", "delete": "add", "retrieve": "answer"}
    for p in pairs:
        gold = labels[p.item_id.removesuffix("+anchor")]
        assert D.classify(p.chosen).action == gold
        assert D.classify(p.rejected).action == wrong_class[gold]
    assert confused_step(next(it for it in items if it.label == "filter")) is None


def test_reason_stage_pairs_set_wrong_answers_against_gold_and_right_ones_against_not_told():
    from agemem_lite.eval.harness import build_tasks
    from agemem_lite.protocol import render_step

    tasks = build_tasks("longmemeval", 6, 2000, n_distractors=0)
    abst = next(i for i, t in enumerate(tasks) if t.unanswerable)
    say = lambda text: render_step("Kind: question.", answer=text)  # noqa: E731
    script = [say(t.answers[0]) for t in tasks]                     # right, except:
    script[0] = say("Nobody")                                        # a wrong answer
    script[1] = render_step("Kind: question.", calls=[{"name": "Retrieve_memory", "arguments": {"query": "x"}}])
    script[abst] = say("You have not told me that yet.")             # a right abstention, in other words
    pairs, records = reason_pairs(ScriptedPolicy(script), 6, 2000, log=lambda m: None)
    assert [r["em"] for r in records] == [0.0, 0.0] + [1.0] * 4
    assert [r["pair"] for r in records] == ["mistake"] * 2 + [None if i == abst else "anchor" for i in range(2, 6)]
    assert [p.rejected for p in pairs[:2]] == script[:2]
    assert all("Retrieve_memory" in p.context[-2]["content"] for p in pairs)     # the memories were found
    for p in pairs[2:]:
        assert p.item_id.endswith("+anchor") and p.rejected == not_told_step() and p.chosen in script


def test_a_wrong_id_or_a_missing_abstention_is_a_mistake_with_the_right_action():
    base = {"correct": True, "id_correct": None, "value_correct": None, "abstain_correct": None}
    assert not is_mistake(base)
    assert is_mistake({**base, "id_correct": False})
    assert is_mistake({**base, "value_correct": False})
    assert is_mistake({**base, "abstain_correct": False})
    assert is_mistake({**base, "correct": False})


def test_dpo_loss_is_log2_at_the_reference_and_falls_as_the_chosen_step_gains():
    z = torch.tensor(0.0)
    loss, margin = dpo_loss(z - 5, z - 7, -5.0, -7.0, beta=0.1)
    assert float(margin) == 0.0 and float(loss) == pytest.approx(math.log(2))
    better, m2 = dpo_loss(z - 4, z - 8, -5.0, -7.0, beta=0.1)
    assert float(m2) == pytest.approx(0.2) and float(better) < float(loss)


@pytest.fixture(scope="module")
def smol_folder(settings, data_dir):
    cache = Path(os.environ.get("AGEMEM_TRAIN_CACHE") or data_dir / "cache" / "train")
    return materialise(model_files.resolve(settings, "smollm2-135m"), cache)


@pytest.fixture(scope="module")
def two_pairs():
    items = D.generate(4, 5, "train", classes=("add", "delete", "retrieve", "answer"))
    return mistake_pairs(items, _scripted_run(items, wrong={0, 2}))


def test_one_packed_pass_gives_each_steps_log_probs_alone(smol_folder, small_policy, two_pairs):
    """Chosen and rejected share the context in one sequence; each branch sees only the context
    and itself, so the sums equal two separate passes."""
    torch.set_num_threads(2)
    model = load_model(smol_folder)
    pair = two_pairs[0]
    prompt, chosen, rejected = pair_tokens(small_policy, pair)
    assert len(prompt) > 200 and chosen != rejected
    for step, ids in ((pair.chosen, chosen), (pair.rejected, rejected)):   # as the SFT data tokenises a turn
        assert tokenize_turn(small_policy, Turn(pair.item_id, pair.label, pair.context, [step], [])) == \
            (prompt + ids, [0] * len(prompt) + [1] * len(ids))
    with torch.no_grad():
        alone_c = float(completion_logprobs(model, prompt, chosen, device="cpu", bf16=False).sum())
        alone_r = float(completion_logprobs(model, prompt, rejected, device="cpu", bf16=False).sum())
        hook = install_tree_attention(model)
        try:
            lc, lr = pair_logps(model, prompt, chosen, rejected, device="cpu", bf16=False)
        finally:
            hook.remove()
    assert float(lc) == pytest.approx(alone_c, rel=1e-4, abs=1e-3)
    assert float(lr) == pytest.approx(alone_r, rel=1e-4, abs=1e-3)


def test_a_short_dpo_run_prefers_the_chosen_steps_and_writes_a_gguf_adapter(settings, smol_folder, two_pairs,
                                                                            tmp_path):
    gguf = model_files.resolve(settings, "smollm2-135m")
    summary = train_dpo(two_pairs, gguf, smol_folder, tmp_path, epochs=4, lr=2e-3, beta=0.1, accumulation=1,
                        lora_r=4, lora_alpha=8, targets=("q_proj", "v_proj"), bf16=False, threads=2, log=lambda m: None)
    saved = json.loads((tmp_path / "preference.json").read_text())
    assert saved["history"][0]["margin"] == pytest.approx(0.0, abs=1e-3)   # policy == reference at the start
    assert summary["last_epoch_prefers_chosen"] == 2 and summary["last_epoch_mean_margin"] > 0.1
    assert (tmp_path / "adapter.gguf").stat().st_size == summary["adapter_bytes"] > 0
    assert [p["item_id"] for p in saved["pairs_data"]] == [p.item_id for p in two_pairs]
    assert saved["left_out_long"] == []
    with pytest.raises(ValueError, match="over 100 tokens"):
        train_dpo(two_pairs, gguf, smol_folder, tmp_path / "short", max_tokens=100, log=lambda m: None)
