"""Step-wise GRPO arithmetic (train.grpo, train.samples, train.config) against hand-computed values."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest

from agemem_lite.errors import ConfigError
from agemem_lite.records import Step
from train.config import TrainConfig, dump_toml
from train.grpo import group_advantages, sample_loss, token_losses
from train.samples import build_samples, curriculum_stages, step_tokens, subsample

torch = pytest.importorskip("torch")


# -- advantages -------------------------------------------------------------------------------

def test_two_rollouts_unbiased_std():
    # mean 0.5, unbiased var (0.25 + 0.25) / 1 = 0.5, std 0.70711
    a = group_advantages([1.0, 0.0], eps=1e-4)
    assert a == pytest.approx([0.5 / (math.sqrt(0.5) + 1e-4), -0.5 / (math.sqrt(0.5) + 1e-4)])


def test_four_rollouts_by_hand():
    # mean 2.5; var = (2.25 + .25 + .25 + 2.25) / 3 = 5/3; std = 1.290994
    a = group_advantages([1, 2, 3, 4], eps=0.0)
    assert a == pytest.approx([-1.161895, -0.387298, 0.387298, 1.161895], abs=1e-6)
    assert sum(a) == pytest.approx(0.0)


def test_zero_variance_and_single_rollout_are_skipped():
    assert group_advantages([0.3, 0.3, 0.3]) is None
    assert group_advantages([0.7]) is None
    # noise-level differences are skipped only when asked
    assert group_advantages([0.1930, 0.1938]) is not None
    assert group_advantages([0.1930, 0.1938], min_std=0.01) is None


# -- loss ---------------------------------------------------------------------------------------

def test_loss_at_ratio_one_with_kl_by_hand():
    logp = torch.tensor([-1.0, -2.0], requires_grad=True)
    ref = torch.tensor([-1.5, -2.0])
    loss, st = sample_loss(logp, logp.detach(), ref, torch.tensor([1, 1]), 2.0, clip_eps=0.2, beta=0.1)
    # policy term: -(1 * 2) per token; KL(k3) token 1: exp(-0.5) + 0.5 - 1 = 0.106531, token 2: 0
    assert float(loss.detach()) == pytest.approx((-2 + 0.1 * 0.106531 + -2 + 0) / 2, abs=1e-6)
    assert st.kl == pytest.approx(0.106531 / 2, abs=1e-6)
    assert st.tokens == 2 and st.clip_frac == 0.0
    loss.backward()
    # d/dlogp: -A/n + beta * (1 - exp(ref - logp)) / n
    assert logp.grad.tolist() == pytest.approx([-1 + 0.1 * (1 - math.exp(-0.5)) / 2, -1.0], abs=1e-6)


def test_mask_removes_tokens_from_loss_and_gradient():
    logp = torch.tensor([-1.0, -2.0, -3.0], requires_grad=True)
    loss, st = sample_loss(logp, logp.detach(), None, torch.tensor([1, 0, 1]), -1.0, beta=0.1)
    assert float(loss) == pytest.approx(1.0)          # -(-1) on each kept token, mean over 2
    assert st.tokens == 2
    loss.backward()
    assert logp.grad.tolist() == pytest.approx([0.5, 0.0, 0.5])


def test_clipping_picks_the_pessimistic_term():
    old = torch.tensor([0.0])
    logp = torch.log(torch.tensor([1.5]))             # ratio 1.5
    l_pos, pol, _, clipped = token_losses(logp, old, None, 1.0, clip_eps=0.2, beta=0.0)
    assert float(pol) == pytest.approx(-1.2) and float(clipped) == 1.0     # capped at 1 + eps
    l_neg, pol, _, clipped = token_losses(logp, old, None, -1.0, clip_eps=0.2, beta=0.0)
    assert float(pol) == pytest.approx(1.5) and float(clipped) == 0.0      # unclipped is the min


def test_a_sample_with_no_generated_token_contributes_zero():
    logp = torch.tensor([-1.0], requires_grad=True)
    loss, st = sample_loss(logp, logp.detach(), None, torch.tensor([0]), 3.0)
    assert float(loss) == 0.0 and st.tokens == 0


# -- samples ------------------------------------------------------------------------------------

class CharTokenizer:
    """One id per character; the prompt is the messages' contents joined (test tokenizer)."""

    def render(self, messages):
        return "|".join(m["content"] for m in messages)

    def tokenize(self, text, special=True):
        return [ord(c) for c in text]


def _episode(total, r_task=0.0, stages=("ltm", "stm", "reason")):
    steps = []
    for i, st in enumerate(stages):
        steps.append(Step(index=i, prompt=[{"role": "user", "content": f"p{i}"}], completion=f"<think>x</think>c{i}",
                          kind="answer", stage=st,
                          segments=[["<think>", False], ["x", True], ["</think>", False], [f"c{i}", True]]))
    return SimpleNamespace(reward=SimpleNamespace(total=total, r_task=r_task), steps=steps)


def test_step_tokens_mask_only_generated_pieces():
    step = _episode(0.0).steps[0]
    prompt, ids, mask = step_tokens(CharTokenizer(), step)
    assert prompt == [ord(c) for c in "p0"]
    text = "".join(chr(i) for i in ids)
    assert text == step.completion
    assert "".join(chr(i) for i, m in zip(ids, mask) if m) == "xc0"


def test_advantage_is_broadcast_to_every_step_of_all_stages():
    groups = {"t1": [_episode(1.0), _episode(0.0)], "t2": [_episode(0.5), _episode(0.5)]}
    samples, stats = build_samples(groups, CharTokenizer(), eps=0.0)
    assert [s.skipped for s in stats] == ["", "no reward variance (std below min_group_std)"]
    assert len(samples) == 6                         # t2 skipped; 2 rollouts x 3 stages
    a = 0.5 / math.sqrt(0.5)
    assert {(s.rollout, s.stage): s.advantage for s in samples} == pytest.approx(
        {(0, "ltm"): a, (0, "stm"): a, (0, "reason"): a, (1, "ltm"): -a, (1, "stm"): -a, (1, "reason"): -a})


def test_progressive_curriculum_filters_stages():
    assert curriculum_stages("paper", 1, 9, [0.34, 0.67]) is None
    assert curriculum_stages("progressive", 3, 9, [0.34, 0.67]) == {"ltm"}
    assert curriculum_stages("progressive", 5, 9, [0.34, 0.67]) == {"ltm", "stm"}
    assert curriculum_stages("progressive", 9, 9, [0.34, 0.67]) == {"ltm", "stm", "reason"}
    groups = {"t": [_episode(1.0), _episode(0.0)]}
    samples, _ = build_samples(groups, CharTokenizer(), stages={"ltm"})
    assert {s.stage for s in samples} == {"ltm"} and len(samples) == 2


def test_subsample_is_seeded_and_keeps_order():
    xs = list(range(20))
    a = subsample(xs, 5, random.Random("s"))
    assert a == subsample(xs, 5, random.Random("s")) and a == sorted(a) and len(a) == 5
    assert subsample(xs, 0, random.Random(0)) == xs


# -- config ----------------------------------------------------------------------------------------

def test_recipes_load_and_round_trip(tmp_path):
    for name in ("tiny", "cpu-small", "default", "gpu", "decision-grpo"):
        cfg = TrainConfig.load(name)
        p = tmp_path / f"{name}.toml"
        p.write_text(dump_toml(cfg))
        assert TrainConfig.load(p) == cfg


def test_overrides_and_clear_errors():
    cfg = TrainConfig.load("tiny", ["lr=3e-4", "episode.n_max=2", "reward=answer_only"])
    assert cfg.lr == 3e-4 and cfg.episode["n_max"] == 2
    assert cfg.episode_config().reward.answer_only is True
    with pytest.raises(ConfigError, match="unknown training setting"):
        TrainConfig.load("tiny", ["lrr=1"])
    with pytest.raises(ConfigError, match="k=1"):
        TrainConfig.load("tiny", ["k=1"])
    with pytest.raises(ConfigError, match="episode: unknown key"):
        TrainConfig.load("tiny", ["episode.nmax=2"])
    with pytest.raises(ConfigError, match="no recipe"):
        TrainConfig.load("nonexistent-recipe")


# -- CLI: bad input is one line -------------------------------------------------------------------

def test_train_cli_errors_are_one_line(tmp_path):
    from click.testing import CliRunner

    from agemem_lite.cli import main

    runner = CliRunner()
    r = runner.invoke(main, ["--data-dir", str(tmp_path), "train", "--recipe", "no-such-recipe"])
    assert r.exit_code == 1 and "no recipe or config file" in r.output and "Traceback" not in r.output
    r = runner.invoke(main, ["--data-dir", str(tmp_path), "train", "--recipe", "tiny", "--set", "k=1"])
    assert r.exit_code == 1 and "k=1" in r.output
    r = runner.invoke(main, ["--data-dir", str(tmp_path), "export", str(tmp_path / "nope"), "--name", "x"])
    assert r.exit_code == 1 and "not a training run folder" in r.output and "Traceback" not in r.output
