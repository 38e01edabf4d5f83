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
    out, first, _ = run
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if r["type"] == "step"]
    assert [r["step"] for r in steps] == [1, 2]
    s1 = steps[0]
    assert s1["n_samples"] > 0 and s1["loss_tokens"] > 0 and s1["optimizer_steps"] == 1
    assert s1["groups"][0]["skipped"] == ""          # two sampled rollouts differ in reward
    # PEFT starts B at zero: one optimizer step must have moved it
    b = [v for k, v in first.items() if "lora_B" in k]
    assert b and max(float(v.abs().max()) for v in b) > 0
    last = load_file(str(out / "checkpoints" / "step-000002" / "adapter.safetensors"))
    s2 = steps[1]
    if s2["optimizer_steps"]:
        assert any(not torch.equal(first[k], last[k]) for k in first)
    else:   # step 2's group drew equal rewards: the update is skipped and the weights stay put
        assert s2["groups"][0]["skipped"] and s2["n_samples"] == 0
        assert all(torch.equal(first[k], last[k]) for k in first)
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
