"""Three-stage episodes (SPEC §4), method variants (SPEC §7) and DistractorGen.

Control flow is tested with ``ScriptedPolicy``, which writes pre-written protocol
steps in order; the store (SQLite + sqlite-vec) and the embedder are real. The
last test runs SmolLM2-135M through a tiny episode and asserts only structure.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from agemem_lite import prompts
from agemem_lite.baselines import METHODS
from agemem_lite.episodes import (PARAGRAPH_TURN, SENTENCE_TURN, DistractorGen, Episode, EpisodeConfig,
                                  EpisodeTask, pack_turns, run_episode)
from agemem_lite.eval.hotpot import generate
from agemem_lite.policy import Completion
from agemem_lite.protocol import parse_step, render_step
from agemem_lite.rewards import trajectory_reward


class ScriptedPolicy:
    """Writes the scripted steps in order; records every context and ``allow_tools`` it got."""

    name = "scripted"

    def __init__(self, script: list[str]):
        self.script = list(script)
        self.calls: list[tuple[list[dict], bool]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def step(self, messages, *, allow_tools=True, on_text=None) -> Completion:
        self.calls.append(([dict(m) for m in messages], allow_tools))
        if not self.script:
            raise AssertionError("the episode asked for more steps than scripted")
        text = self.script.pop(0)
        return Completion(text=text, prompt_tokens=sum(len(m["content"].split()) for m in messages),
                          completion_tokens=len(text.split()), seconds=0.001)

    def summarise(self, instruction: str) -> str:
        return "a short summary"

    def close(self) -> None:
        pass


def call(name: str, **arguments) -> str:
    return render_step("Kind: new fact.", calls=[{"name": name, "arguments": arguments}])


def calls(*pairs) -> str:
    return render_step("Kind: chat.", calls=[{"name": n, "arguments": a} for n, a in pairs])


def answer(text: str = "Noted.") -> str:
    return render_step("Kind: chat.", answer=text)


INFO = ["Varnel Works is a glassware company. It was founded in 1901 by Ada Pellow.",
        "Ada Pellow is a chemist. Ada Pellow was born in Oskebury."]
DISTRACTORS = ["Tomas Quill is a painter. Tomas Quill was born in Brindle.",
               "The Harrow flows through the town of Lenton."]
QUESTION = "In which town was the founder of Varnel Works born?"


def make_task(**kw) -> EpisodeTask:
    base = dict(id="t1", question=QUESTION, answers=["Oskebury"], information=list(INFO),
                distractors=list(DISTRACTORS), gold_facts=["It was founded in 1901 by Ada Pellow.",
                                                           "Ada Pellow was born in Oskebury."],
                key_items=["Varnel Works", "Ada Pellow"], source="test")
    return EpisodeTask(**{**base, **kw})


# The AgeMem episode every stage-level test uses: 2 information turns, 2 distractors, the question.
AGEMEM_SCRIPT = [
    call("Add_memory", content="Varnel Works was founded in 1901 by Ada Pellow."), answer(),
    call("Add_memory", content="Ada Pellow was born in Oskebury."), answer(),
    answer("Interesting."),
    call("Filter_context", criteria="Tomas Quill is a painter born in Brindle."), answer("Ok."),
    call("Retrieve_memory", query="founder of Varnel Works birthplace"), answer("Oskebury"),
]


@pytest.fixture
def run(store, embedder, settings):
    def go(script, task=None, settings_overrides=None, **cfg):
        policy = ScriptedPolicy(script)
        config = EpisodeConfig(**{"today": "2025-01-01", "demonstrations": False, **cfg})
        s = dataclasses.replace(settings, **(settings_overrides or {}))
        seen = []
        ep = run_episode(policy, store, embedder, task or make_task(), config, settings=s,
                         on_step=lambda s: seen.append((s.stage, store.count(ep_ns(task, config)))))
        assert policy.script == [], "every scripted step was used"
        return ep, policy, seen

    return go


def ep_ns(task, config) -> str:
    return f"ep:{(task or make_task()).id}:{config.method}:{config.seed}"


def contents(messages) -> str:
    return "\n".join(m["content"] for m in messages)


# -- the three stages -----------------------------------------------------------------------

def test_stage3_asks_for_a_short_answer_unless_switched_off(run):
    ep, _, _ = run(AGEMEM_SCRIPT, short_answer=False)
    assert ep.stages["reason"][0].user == QUESTION and ep.question == QUESTION


def test_stages_run_in_order_and_every_step_is_labelled(run):
    ep, _, _ = run(AGEMEM_SCRIPT)
    assert [len(ep.stages[s]) for s in ("ltm", "stm", "reason")] == [2, 2, 1]
    assert [s.stage for s in ep.steps] == ["ltm"] * 4 + ["stm"] * 3 + ["reason"] * 2
    assert [t.user for t in ep.stages["ltm"]] == INFO
    assert ep.stages["reason"][0].user == f"{QUESTION}\n{prompts.QUESTION_INSTRUCTION}" and ep.answer == "Oskebury"
    assert ep.tool_calls == {"Add_memory": 2, "Filter_context": 1, "Retrieve_memory": 1}
    assert ep.failed_calls == 0 and not ep.n_max_exceeded
    assert ep.prompt_tokens == sum(s.prompt_tokens for s in ep.steps) > 0
    assert ep.t_used == ep.steps[-1].context_tokens and ep.wall_s > 0


def test_reset_drops_stage1_messages_but_keeps_the_memories(run):
    ep, policy, seen = run(AGEMEM_SCRIPT)
    stage2_prompt = policy.calls[4][0]
    assert stage2_prompt[0]["role"] == "system"
    assert [m["role"] for m in stage2_prompt] == ["system", "user"]
    assert not any(text in contents(stage2_prompt) for text in INFO)
    assert all(n == 2 for stage, n in seen if stage == "stm")  # LTM intact during stage 2
    assert [m["content"] for m in ep.memories] == ["Varnel Works was founded in 1901 by Ada Pellow.",
                                                   "Ada Pellow was born in Oskebury."]


def test_demonstrations_survive_the_reset(run):
    ep, policy, _ = run(AGEMEM_SCRIPT, demonstrations=True)
    demos = prompts.render_demonstrations()
    stage2_prompt = policy.calls[4][0]
    assert stage2_prompt[1:1 + len(demos)] == demos
    assert len(stage2_prompt) == 1 + len(demos) + 1


def test_ltm_persists_into_stage3_retrieval(run):
    ep, policy, _ = run(AGEMEM_SCRIPT)
    retrieve = ep.stages["reason"][0].steps[0].results[0]
    assert retrieve["ok"] and "Ada Pellow was born in Oskebury." in retrieve["text"]
    assert "Ada Pellow was born in Oskebury." in policy.calls[-1][0][-1]["content"]


def test_one_distractor_per_stage2_turn(run):
    ep, policy, _ = run(AGEMEM_SCRIPT)
    assert [t.user for t in ep.stages["stm"]] == DISTRACTORS
    first, second = policy.calls[4][0][-1]["content"], policy.calls[5][0][-1]["content"]
    assert first.endswith(DISTRACTORS[0]) and DISTRACTORS[1] not in first
    assert second.endswith(DISTRACTORS[1])


def test_n_distractors_and_distractors_per_turn(run):
    ep, _, _ = run([answer()] * 2 + [answer()] + [answer("Oskebury")], n_distractors=1,
                   max_steps_per_turn=1)
    assert [t.user for t in ep.stages["stm"]] == DISTRACTORS[:1]
    ep2, _, _ = run([answer()] * 2 + [answer()] + [answer("Oskebury")], task=make_task(id="t2"),
                    distractors_per_turn=2, max_steps_per_turn=1)
    assert [t.user for t in ep2.stages["stm"]] == ["\n\n".join(DISTRACTORS)]


def test_query_is_hidden_in_stages_1_and_2_and_shown_in_stage_3(run):
    ep, policy, _ = run(AGEMEM_SCRIPT)
    for messages, _ in policy.calls[:7]:
        assert "Varnel Works born" not in contents(messages)
    assert policy.calls[7][0][-1]["content"].endswith(f"{QUESTION}\n{prompts.QUESTION_INSTRUCTION}")


def test_stage1_shows_environment_retrieval_and_later_stages_do_not(run):
    ep, policy, _ = run(AGEMEM_SCRIPT)
    assert ep.stages["ltm"][0].related == []
    assert [r["content"] for r in ep.stages["ltm"][1].related][:1] == \
        ["Varnel Works was founded in 1901 by Ada Pellow."]
    assert prompts.RELATED_HEADER in policy.calls[2][0][-1]["content"]
    assert all(t.related == [] for s in ("stm", "reason") for t in ep.stages[s])
    # later turns are the bare user message, without a "[Related memories: none]" header
    assert policy.calls[4][0][-1]["content"] == DISTRACTORS[0]
    assert policy.calls[7][0][-1]["content"] == prompts.render_question(QUESTION)


def test_stage1_retrieval_can_be_switched_off(run):
    ep, _, _ = run(AGEMEM_SCRIPT, stage1_retrieval=False)
    assert all(t.related == [] for t in ep.stages["ltm"])


def test_ids_shown_in_stage1_must_be_retrieved_again_after_the_reset(run):
    script = [call("Add_memory", content="Ada Pellow was born in Oskebury."), answer(),
              call("Update_memory", memory_id="mem_1", content="Ada Pellow was born in Brindle."), answer(),
              answer("Oskebury")]
    ep, _, _ = run(script, task=make_task(information=INFO[1:]), n_distractors=1)
    result = ep.stages["stm"][0].steps[0].results[0]
    assert not result["ok"] and "has not been shown" in result["text"]
    assert ep.memories[0]["content"] == "Ada Pellow was born in Oskebury."


def test_more_information_than_n_max_is_merged_not_dropped(run):
    info = [f"Fact number {i} about the Varnel family." for i in range(5)]
    ep, _, _ = run([answer()] * 2 + [answer()] * 2 + [answer("Oskebury")], task=make_task(information=info),
                   n_max=2, max_steps_per_turn=1)
    assert len(ep.stages["ltm"]) == 2
    assert "\n\n".join(t.user for t in ep.stages["ltm"]) == "\n\n".join(info)


def test_pack_turns_groups_in_order():
    assert pack_turns(["a", "b", "c"], 5) == ["a", "b", "c"]
    assert pack_turns(["a", "b", "c", "d", "e"], 2) == ["a\n\nb\n\nc", "d\n\ne"]
    assert pack_turns(["a", "b", "c"], 5, per_turn=2) == ["a\n\nb", "c"]


# -- namespaces ---------------------------------------------------------------------------------

def test_each_episode_has_its_own_namespace(run, store):
    a, _, _ = run(AGEMEM_SCRIPT)
    b, _, _ = run(AGEMEM_SCRIPT, task=make_task(id="t2"))
    assert a.namespace != b.namespace
    assert b.stages["ltm"][0].related == []        # a's memories are not shown to b
    hits = b.stages["reason"][0].steps[0].results[0]["data"]["hits"]
    assert {h["memory"]["namespace"] for h in hits} == {b.namespace}
    assert store.count(a.namespace) == store.count(b.namespace) == 2


def test_a_used_namespace_is_refused_and_another_seed_runs(run):
    run(AGEMEM_SCRIPT)
    with pytest.raises(ValueError, match="empty LTM"):
        run(AGEMEM_SCRIPT)
    ep, _, _ = run(AGEMEM_SCRIPT, seed=1)
    assert ep.namespace == "ep:t1:agemem:1"


# -- method variants -----------------------------------------------------------------------------

def test_agemem_rag_refuses_stm_tools_and_shows_retrieval_every_turn(run):
    step = calls(("Summary_context", {"span": "all"}), ("Filter_context", {"criteria": "painters"}),
                 ("Retrieve_memory", {"query": "Ada"}),
                 ("Add_memory", {"content": "Ada Pellow was born in Oskebury."}))
    # no similarity floor: the point is WHERE the environment retrieves, not what passes the floor
    ep, policy, _ = run([step, answer(), answer(), answer(), answer(), answer("Oskebury")], method="agemem-rag",
                        settings_overrides={"auto_retrieve_min_similarity": -1.0})
    results = ep.stages["ltm"][0].steps[0].results
    assert [r["ok"] for r in results] == [False, False, False, True]
    assert all("is not available here; tools: Add_memory, Update_memory, Delete_memory" in r["text"]
               for r in results[:3])
    assert [m["content"] for m in ep.memories] == ["Ada Pellow was born in Oskebury."]
    assert all(t.related for s in ("stm", "reason") for t in ep.stages[s])  # shown every turn
    listed = policy.calls[0][0][0]["content"].split("Tools:")[-1]   # the rules above name all six
    assert "- Add_memory(" in listed and "Summary_context" not in listed and "Retrieve_memory" not in listed


def test_no_memory_stores_nothing_and_answers_from_stage3_context(run):
    ep, policy, _ = run([call("Add_memory", content="Ada Pellow was born in Oskebury."), answer(),
                         answer(), answer(), answer("Brindle")], method="no-memory")
    assert ep.memories == [] and ep.stages["ltm"][0].steps[0].results[0]["ok"] is False
    assert all(allow is False for _, allow in policy.calls)           # one answer-only step per turn
    assert all(t.related == [] for ts in ep.stages.values() for t in ts)
    final = contents(policy.calls[-1][0])
    assert DISTRACTORS[0] in final and not any(text in final for text in INFO)
    assert ep.n_max_exceeded and ep.reward.penalty == -1.0            # the tool-call turn gave no answer
    assert ep.memory_quality == 0.0


def test_full_context_keeps_stage1_in_the_context(run):
    ep, policy, _ = run([answer()] * 4 + [answer("Oskebury")], method="full-context")
    final = contents(policy.calls[-1][0])
    assert all(text in final for text in INFO + DISTRACTORS)
    assert all(allow is False for _, allow in policy.calls)
    assert ep.memories == [] and ep.reward.r_task == 1.0
    assert policy.calls[0][0][0]["content"].split("Tools:")[-1].strip() == ""


def test_add_only_stores_every_turn_and_shows_hits_with_the_question(run):
    ep, policy, _ = run([answer()] * 4 + [answer("Oskebury")], method="add-only",
                        settings_overrides={"auto_retrieve_min_similarity": -1.0})
    assert [m["content"] for m in ep.memories] == INFO + DISTRACTORS
    assert {m["source"] for m in ep.memories} == {"environment"}
    assert all(t.related == [] for s in ("ltm", "stm") for t in ep.stages[s])
    shown = [r["content"] for r in ep.stages["reason"][0].related]
    assert len(shown) == 3 and set(shown) <= set(INFO + DISTRACTORS)
    assert all(allow is False for _, allow in policy.calls) and ep.tool_calls == {}


def test_every_method_runs_the_same_turns(run):
    for i, name in enumerate(METHODS):
        script = AGEMEM_SCRIPT if name == "agemem" else [answer()] * 4 + [answer("Oskebury")]
        ep, _, _ = run(script, task=make_task(id=f"m{i}"), method=name)
        assert [len(ep.stages[s]) for s in ("ltm", "stm", "reason")] == [2, 2, 1], name
        assert ep.answer == "Oskebury" and ep.method == name


# -- reward and records ---------------------------------------------------------------------------

def test_reward_is_computed_from_the_episode_steps(run):
    ep, _, _ = run(AGEMEM_SCRIPT)
    task = make_task()
    again = trajectory_reward(ep.steps, gold_answer=task.answers, gold_facts=task.gold_facts,
                              key_items=task.key_items, t_max=8192, n_max_exceeded=False,
                              cfg=EpisodeConfig().reward)
    assert ep.reward == again
    assert ep.reward.r_task == 1.0 and ep.reward.r_storage == 1.0 and ep.reward.r_preventive == 1.0
    assert ep.reward.r_relevance == 1.0 and ep.reward.r_maintenance == 0.0 and ep.reward.penalty == 0.0
    assert ep.memory_quality == 1.0 and ep.reward.judge == "f1"


def test_episode_round_trips_through_json(run):
    ep, _, _ = run(AGEMEM_SCRIPT)
    back = Episode.from_dict(json.loads(json.dumps(ep.to_dict())))
    assert back == ep
    assert EpisodeConfig(**back.config) == EpisodeConfig(today="2025-01-01", demonstrations=False)


def test_every_config_field_has_help_and_bad_values_name_the_rule():
    for f in dataclasses.fields(EpisodeConfig):
        assert f.metadata.get("help"), f.name
    with pytest.raises(ValueError, match="unknown method"):
        EpisodeConfig(method="mem0")
    with pytest.raises(ValueError, match="n_max=0"):
        EpisodeConfig(n_max=0)


def test_task_validation():
    with pytest.raises(ValueError, match="information"):
        make_task(information=[])
    assert make_task(answers="Oskebury").answers == ["Oskebury"]


# -- HotpotQA adapter and DistractorGen --------------------------------------------------------

def test_task_from_hotpot_item():
    item = generate(1, seed=3)[0]
    task = EpisodeTask.from_hotpot(item)
    paras = dict(item.context)
    assert task.information == [PARAGRAPH_TURN.format(title=t, text=" ".join(paras[t]))
                                for t in item.gold_titles]
    assert len(task.distractors) == 8 and not set(task.distractors) & set(task.information)
    assert task.gold_facts == item.gold_sentences() and task.key_items == item.gold_titles
    assert all(any(f in x for x in task.information) for f in task.gold_facts)
    assert task.answers == [item.answer] and task.question == item.question and task.source == "hotpotqa"
    by_sentence = EpisodeTask.from_hotpot(item, unit="sentence")
    assert by_sentence.information[0] == SENTENCE_TURN.format(title=item.gold_titles[0],
                                                              text=paras[item.gold_titles[0]][0])
    assert len(by_sentence.information) == sum(len(paras[t]) for t in item.gold_titles)


def test_distractor_gen_uses_a_tasks_own_distractors():
    task = EpisodeTask.from_hotpot(generate(1, seed=3)[0])
    assert DistractorGen()(task, 3) == task.distractors[:3]


def test_distractor_gen_falls_back_to_similar_paragraphs_of_other_tasks(embedder):
    tasks = [dataclasses.replace(EpisodeTask.from_hotpot(i), distractors=[]) for i in generate(6, seed=4)]
    gen = DistractorGen(tasks, embedder, seed=7)
    task = tasks[0]
    picked = gen(task, 3)
    others = {x for t in tasks[1:] for x in t.information}
    assert len(picked) == 3 and set(picked) <= others
    assert not any(task.answers[0] in p for p in picked)
    assert DistractorGen(tasks, embedder, seed=7)(task, 3) == picked      # deterministic for a seed
    filled = gen.apply(tasks, 2)
    assert all(len(t.distractors) == 2 for t in filled)
    assert DistractorGen(tasks, embedder)(dataclasses.replace(task, source="other"), 3) == []
    with pytest.raises(ValueError, match="embedder"):
        DistractorGen(tasks)(task, 3)


# -- the real policy ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_smollm2_runs_a_tiny_episode_end_to_end(small_policy, store, embedder, settings, monkeypatch):
    """SmolLM2-135M through all three stages; only structure is asserted (it is too weak to
    choose tools well)."""
    monkeypatch.setattr(small_policy, "max_new_tokens", 128)
    task = make_task(distractors=DISTRACTORS[:1])
    ep = run_episode(small_policy, store, embedder, task,
                     EpisodeConfig(max_steps_per_turn=2, today="2025-01-01"), settings=settings)
    assert [len(ep.stages[s]) for s in ("ltm", "stm", "reason")] == [2, 1, 1]
    for stage, turns in ep.stages.items():
        for turn in turns:
            assert 1 <= len(turn.steps) <= 2
            for step in turn.steps:
                assert step.stage == stage
                assert parse_step(step.completion).kind == step.kind != "invalid", step.completion
    assert ep.answer is not None and ep.steps[-1].kind == "answer"
    assert ep.prompt_tokens > 0 and -2.0 <= ep.reward.total <= 1.0
    assert Episode.from_dict(json.loads(json.dumps(ep.to_dict()))) == ep
