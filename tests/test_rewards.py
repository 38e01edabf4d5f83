"""SPEC §5 reward terms against hand-computed values, and trajectory_reward on Step lists."""

from __future__ import annotations

import dataclasses

import pytest

from agemem_lite.records import Step
from agemem_lite.rewards import (
    RewardBreakdown, RewardConfig, answer_score, coverage, exact_match, normalize_answer, penalty,
    r_compression, r_context, r_maintenance, r_memory, r_preservation, r_preventive,
    r_relevance, r_storage, r_task, says_not_known, token_f1, trajectory_reward,
)

T = pytest.approx


# -- judges ---------------------------------------------------------------------------

def test_normalize_answer_drops_case_punctuation_articles_and_extra_spaces():
    assert normalize_answer("  The  Eiffel Tower, in Paris!  ") == "eiffel tower in paris"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("theatre") == "theatre"      # articles only as whole words


def test_exact_match_compares_normalised_strings_and_aliases():
    assert exact_match("the Paris.", "paris") == 1.0
    assert exact_match("Paris France", "Paris") == 0.0
    assert exact_match("NYC", ["New York City", "nyc"]) == 1.0


def test_token_f1_matches_hand_computed_value():
    # pred tokens {barack, obama}, gold {obama}: P = 1/2, R = 1, F1 = 2/3
    assert token_f1("Barack Obama", "Obama") == T(2 / 3)
    assert token_f1("red apple", "green pear") == 0.0
    assert token_f1("", "") == 1.0
    assert token_f1("", "x") == 0.0
    assert token_f1("Obama", ["Barack Obama", "Obama"]) == 1.0


def test_coverage_counts_facts_with_token_recall_above_threshold():
    facts = ["Alice was born in Paris in 1990",   # tokens: alice was born in paris 1990 (6)
             "Bob plays the violin"]              # bob plays violin (3)
    texts = ["alice born in paris", "nothing about music"]
    # fact 1: alice, born, in, paris = 4/6 ≥ 0.6 → covered; fact 2: 0/3
    assert coverage(texts, facts) == T(0.5)
    assert coverage(texts, facts, threshold=0.7) == 0.0   # 4/6 < 0.7
    assert coverage(["Bob plays violin; Alice was born in Paris, 1990"], facts) == 1.0
    assert coverage([], facts) == 0.0
    assert coverage(["anything"], []) == 0.0


# -- R_task ---------------------------------------------------------------------------

def test_no_answer_scores_minus_one():
    assert r_task(None, "Paris") == -1.0
    assert r_task(None, "Paris", judge="em") == -1.0


def test_r_task_uses_the_named_judge():
    assert r_task("Barack Obama", "Obama", judge="f1") == T(2 / 3)
    assert r_task("Barack Obama", "Obama", judge="em") == 0.0
    assert r_task("obama", "Obama", judge="em") == 1.0
    with pytest.raises(ValueError, match="judge='llm'"):
        r_task("x", "x", judge="llm")


# Replies seen from policies here (the gold sentence, v7's rounds, the prompted 1.5B) and others.
NOT_KNOWN = ["The information provided is not enough. You never mentioned your dog.",
             "You have not told me that yet.", "Sorry, I don\u2019t know your dog's name.",
             "Sorry, I don't have any information about the car you bought.", "Nothing about that.",
             "I have no record of a dog.", "I can't tell from what you told me.", "It is not in my memory."]
CLAIMS = ["Skyrnzyl Fitness", "No, your dog is Rex.", "That is not Rex, it is Max.", "What is my dog's name?",
          "Noted: your landlord's name is Griothmour Fernvernquoum.", "There is no doubt it's Rex.", ""]


@pytest.mark.parametrize("reply", NOT_KNOWN)
def test_a_reply_that_says_it_was_not_told_is_recognised(reply):
    assert says_not_known(reply)


@pytest.mark.parametrize("reply", CLAIMS)
def test_a_reply_that_claims_an_answer_is_not_an_abstention(reply):
    assert not says_not_known(reply)


def test_an_unanswerable_question_credits_any_wording_of_not_known():
    gold = "The information provided is not enough. You never mentioned your dog."
    for judge in ("em", "f1"):
        assert answer_score("You have not told me that yet.", gold, judge, unanswerable=True) == 1.0
        assert answer_score("Rex", gold, judge, unanswerable=True) == 0.0
        assert answer_score("You have not told me that yet.", "Rex", judge) == 0.0   # answerable: a miss
    assert exact_match("You have not told me that yet.", gold) == 0.0   # what EM alone gave
    assert r_task("I don't know.", gold, "em", unanswerable=True) == 1.0
    assert r_task(None, gold, "em", unanswerable=True) == -1.0


# -- R_context ------------------------------------------------------------------------

def test_compression_is_one_minus_used_over_budget_clipped_at_zero():
    assert r_compression(2048, 8192) == T(0.75)
    assert r_compression(0, 8192) == 1.0
    assert r_compression(9000, 8192) == 0.0
    with pytest.raises(ValueError, match="t_max=0"):
        r_compression(10, 0)


def test_preventive_and_context_mean():
    assert r_preventive(True) == 1.0 and r_preventive(False) == 0.0
    assert r_context(0.75, 1.0, 0.5) == T(0.75)


def test_preservation_is_share_of_key_items_in_context_case_insensitive():
    ctx = "Summary: alice moved to PARIS in 1990."
    assert r_preservation(["Alice", "Paris", "1990", "Berlin"], ctx) == T(0.75)
    assert r_preservation([], ctx) == 1.0
    assert r_preservation(["The Louvre"], "we visited louvre") == 1.0   # via normalisation


# -- R_memory -------------------------------------------------------------------------

def test_storage_is_share_of_adds_covering_a_gold_fact():
    facts = ["Alice was born in Paris", "Bob plays violin"]
    adds = ["Alice born in Paris", "I like pizza", "Bob plays the violin", "weather is nice"]
    assert r_storage(adds, facts) == T(0.5)
    assert r_storage([], facts) == 0.0


def test_maintenance_needs_an_update_or_delete():
    assert r_maintenance(0, 0) == 0.0
    assert r_maintenance(1, 0) == 1.0
    assert r_maintenance(0, 3) == 1.0


def test_relevance_is_gold_fact_coverage_of_retrieved_memories():
    facts = ["Alice was born in Paris", "Bob plays violin"]
    assert r_relevance(["Bob plays violin"], facts) == T(0.5)
    assert r_relevance([], facts) == 0.0
    assert r_memory(0.5, 1.0, 0.0) == T(0.5)


# -- penalties ------------------------------------------------------------------------

def test_penalties_for_rounds_and_budget_add_up():
    assert penalty(False, 100, 200) == 0.0
    assert penalty(True, 100, 200) == -1.0
    assert penalty(False, 201, 200) == -0.5
    assert penalty(False, 200, 200) == 0.0
    assert penalty(True, 201, 200) == -1.5


# -- config ---------------------------------------------------------------------------

def test_every_reward_config_field_has_help_and_spec():
    for f in dataclasses.fields(RewardConfig):
        assert f.metadata.get("help"), f.name
        assert f.metadata.get("spec") == "§5", f.name


def test_reward_config_defaults_are_one_third_each():
    cfg = RewardConfig()
    assert (cfg.w_task, cfg.w_context, cfg.w_memory) == (T(1 / 3),) * 3
    assert cfg.judge == "f1" and cfg.coverage_threshold == 0.6 and not cfg.answer_only


@pytest.mark.parametrize("kw, needle", [
    ({"w_task": -0.1}, "w_task=-0.1"),
    ({"w_memory": -1}, "w_memory=-1"),
    ({"judge": "qwen-max"}, "judge='qwen-max'"),
    ({"coverage_threshold": 0.0}, "coverage_threshold=0.0"),
])
def test_reward_config_rejects_bad_values_naming_them(kw, needle):
    with pytest.raises(ValueError, match=needle):
        RewardConfig(**kw)


# -- trajectory_reward ----------------------------------------------------------------

FACTS = ["Alice was born in Paris", "Alice works as a violinist"]


def _ok(name, data=None):
    return {"name": name, "ok": True, "text": "", "data": data or {}}


def _mem(content):
    return {"memory": {"id": "mem_1", "content": content}}


def _episode(*, answer="Paris", t_answer=2048, summary_tokens=3000, extra_steps=()):
    ltm = [
        Step(0, [{"role": "user", "content": "hi"}], "", "tool_call", stage="ltm",
             calls=[{"name": "Add_memory", "arguments": {"content": "Alice was born in Paris"}},
                    {"name": "Add_memory", "arguments": {"content": "I had pizza"}},
                    {"name": "Add_memory", "arguments": {"content": "rejected"}}],
             results=[_ok("Add_memory", _mem("Alice was born in Paris")),
                      _ok("Add_memory"),                      # no data: falls back to arguments
                      {"name": "Add_memory", "ok": False, "text": "error", "data": {}}],
             context_tokens=500),
        Step(1, [], "", "tool_call", stage="ltm",
             calls=[{"name": "Update_memory", "arguments": {"memory_id": "mem_1", "content": "x"}}],
             results=[_ok("Update_memory", _mem("x"))], context_tokens=600),
    ]
    stm = [
        Step(2, [], "", "tool_call", stage="stm",
             calls=[{"name": "Summary_context", "arguments": {"span": "all"}}],
             results=[_ok("Summary_context")], context_tokens=summary_tokens),
    ]
    reason = [
        Step(3, [], "", "tool_call", stage="reason",
             calls=[{"name": "Retrieve_memory", "arguments": {"query": "where was Alice born"}}],
             results=[_ok("Retrieve_memory", {"query": "q", "hits": [
                 {"memory": {"content": "Alice was born in Paris"}, "score": 0.9},
                 {"memory": {"content": "I had pizza"}, "score": 0.1}]})],
             context_tokens=1500),
        *extra_steps,
        Step(4, [{"role": "system", "content": "You are an agent."},
                 {"role": "user", "content": "Summary: Alice, born 1990."},
                 {"role": "user", "content": "Where was Alice born?"}],
             f"<answer>{answer}</answer>", "answer", stage="reason", answer=answer,
             context_tokens=t_answer),
    ]
    return ltm + stm + reason


def _reward(steps, cfg=None, t_max=8192, exceeded=False):
    return trajectory_reward(steps, gold_answer="Paris", gold_facts=FACTS,
                             key_items=["Alice", "1990", "Paris"], t_max=t_max,
                             n_max_exceeded=exceeded, cfg=cfg or RewardConfig())


def test_trajectory_reward_derives_every_term_from_three_stages():
    b = _reward(_episode())
    assert b.r_task == 1.0
    assert b.r_compression == T(0.75)                 # 1 − 2048/8192
    assert b.r_preventive == 1.0                      # Summary at 3000 ≤ 8192
    assert b.r_preservation == T(2 / 3)               # Alice, 1990 present; Paris not in the prompt
    assert b.r_context == T((0.75 + 1 + 2 / 3) / 3)
    assert b.r_storage == T(0.5)                      # 2 successful ADDs, 1 covers a fact
    assert b.r_maintenance == 1.0
    assert b.r_relevance == T(0.5)                    # retrieved covers 1 of 2 gold facts
    assert b.r_memory == T((0.5 + 1 + 0.5) / 3)
    assert b.penalty == 0.0
    assert b.total == T((1.0 + b.r_context + b.r_memory) / 3)
    assert b.judge == "f1" and b.memory_judge == "coverage@0.6"
    assert isinstance(b, RewardBreakdown) and b.to_dict()["total"] == T(b.total)


def test_trajectory_without_answer_gets_task_minus_one():
    steps = _episode()
    steps[-1].answer = None
    assert _reward(steps).r_task == -1.0


def test_trajectory_reward_uses_weights_from_config():
    steps = _episode()
    b = _reward(steps, RewardConfig(w_task=1.0, w_context=0.0, w_memory=2.0))
    assert b.total == T(1.0 + 2.0 * b.r_memory)


def test_answer_only_ablation_is_task_plus_penalty():
    b = _reward(_episode(answer="London", t_answer=9000), RewardConfig(answer_only=True),
                exceeded=True)
    assert b.r_task == 0.0
    assert b.penalty == -1.5
    assert b.total == T(-1.5)
    assert b.answer_only


def test_overflow_at_answer_costs_compression_and_half_point():
    b = _reward(_episode(t_answer=9000))
    assert b.r_compression == 0.0 and b.penalty == -0.5


def test_reduction_only_after_overflow_is_not_preventive():
    assert _reward(_episode(summary_tokens=9000)).r_preventive == 0.0


def test_adds_outside_stage_one_and_failed_tools_do_not_count():
    late_add = Step(9, [], "", "tool_call", stage="reason",
                    calls=[{"name": "Add_memory", "arguments": {"content": "Alice works as a violinist"}}],
                    results=[_ok("Add_memory", _mem("Alice works as a violinist"))])
    steps = _episode(extra_steps=[late_add])
    assert _reward(steps).r_storage == T(0.5)
    for s in steps:                                    # every tool fails
        for r in s.results:
            r["ok"] = False
    b = _reward(steps)
    assert (b.r_storage, b.r_maintenance, b.r_relevance, b.r_preventive) == (0.0, 0.0, 0.0, 0.0)


def test_em_judge_is_named_in_the_breakdown():
    b = _reward(_episode(answer="in Paris"), RewardConfig(judge="em"))
    assert b.judge == "em" and b.r_task == 0.0
