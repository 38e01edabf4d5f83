"""Decision-level GRPO (train.decision_rollouts): the reward follows the item's label, and a
group of sampled steps becomes samples whose prompt is the item's serving context."""

from __future__ import annotations

import math

import pytest

from agemem_lite.decisions import generate, messages, oracle_completion
from agemem_lite.errors import ConfigError
from agemem_lite.protocol import render_step
from train.config import TrainConfig
from train.decision_rollouts import (LOST_VALUE_FACTOR, WRONG_ID_REWARD, DecisionRollout, DecisionScore,
                                     decision_reward)
from train.samples import build_samples

ITEMS = {it.label: it for it in generate(7, seed=3, split="train")}


def test_the_oracle_step_earns_full_reward_for_every_class():
    for label, it in ITEMS.items():
        assert decision_reward(it, oracle_completion(it)).total == 1.0, label


def test_wrong_action_wrong_id_and_unparsable_text():
    upd, filt = ITEMS["update"], ITEMS["filter"]
    wrong_id = "mem_99" if upd.target_id != "mem_99" else "mem_98"
    text = render_step("Kind: fact. Old.", calls=[{"name": "Update_memory",
                                                   "arguments": {"memory_id": wrong_id, "content": upd.gold}}])
    assert decision_reward(upd, text).total == WRONG_ID_REWARD and decision_reward(upd, text).r_task == 1.0
    # the right class that stores the old line (the target's own content) loses the value: halved again
    old = dict(upd.shown)[upd.target_id]
    stale = render_step("Kind: fact. Old.", calls=[{"name": "Update_memory",
                                                    "arguments": {"memory_id": wrong_id, "content": old}}])
    assert decision_reward(upd, stale).total == WRONG_ID_REWARD * LOST_VALUE_FACTOR
    add = ITEMS["add"]
    copied = render_step("Kind: new fact. Store it.", calls=[{"name": "Add_memory", "arguments": {
        "content": "The user's partner is Reinmou."}}])
    assert add.value and decision_reward(add, copied).total == LOST_VALUE_FACTOR
    assert decision_reward(add, copied).r_task == 1.0
    # Summary where Filter was right, an answer, and text that is not a step all earn nothing
    summary = render_step("Kind: chat. Long.", calls=[{"name": "Summary_context", "arguments": {"span": "all"}}])
    assert decision_reward(filt, summary).total == 0.0
    assert decision_reward(filt, render_step("Kind: chat. Hm.", answer="Sure.")).total == 0.0
    assert decision_reward(filt, "Filter_context please").total == 0.0
    # after a search that found only other things, answering with one of them earns nothing
    unk = generate(2, seed=3, split="train", classes=["add_shared", "answer_unknown"])[1]
    assert decision_reward(unk, oracle_completion(unk)).total == 1.0
    made_up = render_step("Kind: question. mem_3 answers it.", answer="It is " + unk.after[-1]["content"][-30:])
    assert decision_reward(unk, made_up) == DecisionScore(0.0, 1.0)


class CharTokenizer:
    def render(self, msgs):
        return "|".join(m["content"] for m in msgs)

    def tokenize(self, text, special=True):
        return [ord(c) for c in text]


def _rollout(item, text, generated):
    from agemem_lite.records import Step

    step = Step(index=0, prompt=messages(item, guided=False), completion=text, kind="tool_call", stage="decision",
                segments=[[text[:7], False], [text[7:], generated]])
    return DecisionRollout(item, [step], decision_reward(item, text), "")


def test_a_group_of_sampled_steps_becomes_samples_with_group_advantages():
    it = ITEMS["summary"]
    right = oracle_completion(it, long_think="quote")
    wrong = right.replace("Summary_context", "Filter_context").replace('"span"', '"criteria"')
    groups = {it.id: [_rollout(it, right, True), _rollout(it, wrong, True)],
              "flat": [_rollout(ITEMS["add"], oracle_completion(ITEMS["add"]), True)] * 2}
    samples, stats = build_samples(groups, CharTokenizer(), eps=0.0)
    assert [s.skipped for s in stats] == ["", "no reward variance (std below min_group_std)"]
    a = 0.5 / math.sqrt(0.5)
    assert [s.advantage for s in samples] == pytest.approx([a, -a])
    prompt = CharTokenizer().tokenize(CharTokenizer().render(messages(it, guided=False)))
    assert samples[0].prompt_ids == prompt and samples[0].stage == "decision"
    assert samples[0].mask[:7] == [False] * 7 and all(samples[0].mask[7:])


def test_config_rejects_unknown_rollouts_and_classes():
    cfg = TrainConfig.load("decision-grpo")
    assert cfg.rollouts == "decisions" and cfg.warm_start and cfg.init_adapter
    with pytest.raises(ConfigError, match="rollouts"):
        TrainConfig.load("tiny", ["rollouts=trajectories"])
    with pytest.raises(ConfigError, match="decision_classes"):
        TrainConfig.load("tiny", ['decision_classes=["filter", "sumary"]'])
    with pytest.raises(ConfigError, match="decision_budget"):
        TrainConfig.load("tiny", ["decision_budget=100"])
    with pytest.raises(ConfigError, match="n_ctx"):
        TrainConfig.load("tiny", ["rollouts=decisions"])   # tiny's n_ctx 2048 cannot hold a long item


def test_a_sampled_step_sees_the_context_usage_line_when_the_episode_config_asks():
    from scripted import ScriptedPolicy
    from train.decision_rollouts import sample_step

    item = next(it for it in generate(14, 0, "train") if it.label == "filter")
    policy = ScriptedPolicy([oracle_completion(item)] * 2)
    plain = sample_step(policy, item, guided=False)
    lined = sample_step(policy, item, guided=False, context_usage=True)
    assert plain.action == lined.action == "filter"
    first, second = (c[0][-1]["content"] for c in policy.calls)
    assert first == messages(item, guided=False)[-1]["content"]
    assert second.startswith("[Context: ") and second.endswith(first)
