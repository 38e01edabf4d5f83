"""`agemem train` end to end on the small real model: GRPO steps, checkpoint, resume, export.

One run shared by the tests (SmolLM2-135M, the `tiny` recipe: two rollouts of one
short three-stage episode per step, real llama.cpp rollouts with the LoRA as a GGUF
adapter, real torch gradients). It proves the machinery, not learning: the reward
curve of a real run is in docs/training.md.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from safetensors.torch import load_file  # noqa: E402

from train.config import TrainConfig  # noqa: E402
from train.trainer import GRPOTrainer  # noqa: E402

pytestmark = pytest.mark.slow


def _tiny(**over) -> TrainConfig:
    return TrainConfig.load("tiny", {"eval_every": 0, "threads": 2, **over})


@pytest.fixture(scope="module")
def run(settings, tmp_path_factory):
    """Step 1 of a tiny run, then a resume to step 2 (the checkpoint is what carries it)."""
    out = tmp_path_factory.mktemp("run")
    t = GRPOTrainer(_tiny(steps=1), settings, out, progress=False)
    try:
        t.run()
        first = {k: v.clone() for k, v in load_file(str(out / "checkpoints" / "step-000001" / "adapter.safetensors")).items()}
    finally:
        t.close()
    t2 = GRPOTrainer(_tiny(steps=2), settings, out, resume=True, progress=False)
    try:
        t2._open()
        t2._restore()
        from train.lora import adapter_state

        restored = adapter_state(t2.model)
        t2.run()
    finally:
        t2.close()
    return out, first, restored


def test_grpo_steps_change_the_lora_weights(run):
    """A step whose group drew different rewards updates the LoRA; a step whose group drew equal
    rewards is skipped and leaves it as it was. Which step is which depends on the machine
    (llama.cpp's sampling): an Intel/AMX machine varied at step 1, an AMD EPYC only at step 2."""
    out, first, _ = run
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if r["type"] == "step"]
    assert [r["step"] for r in steps] == [1, 2]
    for s in steps:
        if s["optimizer_steps"]:
            assert s["optimizer_steps"] == 1 and s["n_samples"] > 0 and s["loss_tokens"] > 0
            assert s["groups"][0]["skipped"] == ""
        else:
            assert s["groups"][0]["skipped"] and s["n_samples"] == 0
    assert any(s["optimizer_steps"] for s in steps), "no step had a learning signal: the run proved nothing"
    # PEFT starts B at zero: only an optimizer step moves it
    b = [v for k, v in first.items() if "lora_B" in k]
    assert b and (max(float(v.abs().max()) for v in b) > 0) == bool(steps[0]["optimizer_steps"])
    last = load_file(str(out / "checkpoints" / "step-000002" / "adapter.safetensors"))
    assert any(not torch.equal(first[k], last[k]) for k in first) == bool(steps[1]["optimizer_steps"])
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-000002"


def test_resume_continues_from_the_checkpoint(run, settings):
    out, first, restored = run
    assert set(restored) == set(first)
    assert all(torch.equal(restored[k], first[k]) for k in first)
    with pytest.raises(Exception, match="different config"):
        GRPOTrainer(_tiny(steps=3, lr=0.5), settings, out, resume=True)
    with pytest.raises(Exception, match="already holds a training run"):
        GRPOTrainer(_tiny(), settings, out)


def test_export_registers_a_policy_that_answers(run, settings):
    from agemem_lite.assistant import open_policy
    from agemem_lite.model_files import get_spec
    from agemem_lite.protocol import parse_step
    from train.publish import export_run

    out, _, _ = run
    path = export_run(settings, out, "smol-grpo-test", checkpoint="latest", quantize="q8_0")
    assert path.is_file() and get_spec(settings, "smol-grpo-test").role == "policy"
    policy = open_policy(settings, "smol-grpo-test")
    try:
        comp = policy.step([{"role": "system", "content": "You are a helpful assistant."},
                            {"role": "user", "content": "Say hello."}], allow_tools=False)
    finally:
        policy.close()
    step = parse_step(comp.text)
    assert step.answer is not None and step.answer.strip()


def test_init_adapter_takes_a_gguf_lora_as_the_start_and_the_kl_reference(run, settings, tmp_path):
    """``init_adapter=FILE.gguf`` (how GRPO continues from the shipped agemem-0.5b adapter):
    the run's step-2 LoRA, exported as a GGUF adapter, is what the next run starts from, and
    what a warm-start round starts from (at a learning rate too small to move it)."""
    from train.export import export_adapter
    from train.lora import adapter_state, load_adapter_state

    out, _, _ = run
    step2 = load_file(str(out / "checkpoints" / "step-000002" / "adapter.safetensors"))
    src = GRPOTrainer(_tiny(steps=1), settings, tmp_path / "src", progress=False)
    try:
        src._open()
        load_adapter_state(src.model, step2)
        gguf = export_adapter(src.model, src.base_gguf, tmp_path / "step2.lora.gguf")
    finally:
        src.close()
    t = GRPOTrainer(_tiny(steps=1, init_adapter=str(gguf)), settings, tmp_path / "next", progress=False)
    try:
        t._open()
        started = adapter_state(t.model)
        assert set(started) == set(step2)
        assert max(float((started[k] - step2[k]).abs().max()) for k in step2) < 1e-6
        assert all(torch.equal(t.reference[k], started[k]) for k in started)
    finally:
        t.close()
    from train.base import materialise, resolve_base
    from train.warm_start import run_sft

    cfg = _tiny(steps=1)
    folder = materialise(resolve_base(settings, cfg.base), settings.data_dir / "cache" / "train")
    sft = run_sft(t.base_gguf, folder, tmp_path / "ws", n_items=2, seed=0, epochs=1.0, lr=1e-12,
                  lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha, targets=list(cfg.lora_targets), long_share=0.0,
                  threads=2, bf16=False, log=lambda *a: None, progress=False, init_adapter=gguf)
    assert sft["init_adapter"] == str(gguf)
    again = GRPOTrainer(_tiny(steps=1, init_adapter=sft["adapter_gguf"]), settings, tmp_path / "again",
                        progress=False)
    try:
        again._open()
        kept = adapter_state(again.model)   # f16 in the round's export
        assert max(float((kept[k] - step2[k]).abs().max() / (step2[k].abs().max() + 1e-8)) for k in step2) < 2e-3
    finally:
        again.close()


def test_decision_rollouts_run_train_items_and_pick_on_heldout_items(settings, tmp_path):
    """rollouts = "decisions": one step per train-split item, K sampled steps a group, the held-out
    evaluation on held-out-split items; the log, the held-out completions and best/ are written."""
    cfg = _tiny(steps=1, rollouts="decisions", n_heldout=2, eval_every=1, n_ctx=8192, decision_budget=1024,
                tasks_per_step=2, decision_classes=["filter", "summary"])
    t = GRPOTrainer(cfg, settings, tmp_path / "dec", progress=False)
    try:
        t.run()
    finally:
        t.close()
    log = [json.loads(line) for line in (tmp_path / "dec" / "log.jsonl").read_text().splitlines()]
    evals = [r for r in log if r["type"] == "eval"]
    step = next(r for r in log if r["type"] == "step")
    assert [e["step"] for e in evals] == [0, 1] and all(e["n"] == 2 and e["parsed"] == 2 for e in evals)
    assert [g["task"].split("-")[0] for g in step["groups"]] == ["train", "train"]
    assert all(len(g["rewards"]) == 2 and set(g["rewards"]) <= {0.0, 0.5, 1.0} for g in step["groups"])
    assert step["steps_per_episode"] == 1.0
    held = json.loads((tmp_path / "dec" / "eval" / "step-000000" / "decisions.json").read_text())
    assert [h["id"].split("-")[0] for h in held] == ["heldout", "heldout"]
    assert [h["label"] for h in held] == ["add", "update"]
    assert (tmp_path / "dec" / "best" / "state.json").is_file()
