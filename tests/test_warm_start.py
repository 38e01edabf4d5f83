"""Warm start (train.warm_start): oracle turns, their token masks, and one tiny SFT run.

The oracle turns are checked on their content (what a right policy does after a tool
result); the masks on real tokens of the small model (llama.cpp's tokenizer, as the
rollouts use); the run on SmolLM2 through the trainer with the `default` recipe's warm
start (steps = 0): real TRL SFT, real gradients, a GGUF adapter that llama.cpp loads.
"""

from __future__ import annotations

import json
import random
import re

import pytest

from agemem_lite import decisions as D
from agemem_lite import prompts
from agemem_lite.errors import ConfigError
from agemem_lite.protocol import parse_step, render_step

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("trl")

from train.config import TrainConfig  # noqa: E402
from train.warm_start import (OPEN_PROMPTS, build_turns, edit_reply_turns,  # noqa: E402
                              info_turns, overview_turns, question_turns, replay_turns, retrieve_turn,
                              stage2_prompts, step_pieces, tokenize_turn, turns_of, two_fact_turns,
                              with_context_usage)


def _item(label: str, split: str = "train") -> D.DecisionItem:
    return next(it for it in D.generate(21, 3, split) if it.label == label)


def test_write_turns_end_with_a_reply_after_the_tool_result():
    r = random.Random(0)
    for label, result in (("add", "stored as mem_"), ("update", "updated"), ("delete", "deleted")):
        it = _item(label)
        (turn,) = turns_of(it, r)
        assert len(turn.steps) == 2 and len(turn.tool_results) == 1
        first, second = (parse_step(s) for s in turn.steps)
        assert first.error is None and first.calls[0].name == D.oracle_call(it)["name"]
        assert result in turn.tool_results[0]
        if label != "add":
            assert it.target_id in turn.tool_results[0]
        assert second.error is None and second.answer and not second.calls


def test_filter_summary_and_answer_are_single_steps():
    r = random.Random(0)
    for label in ("filter", "summary", "answer"):
        (turn,) = turns_of(_item(label), r)
        assert len(turn.steps) == 1 and not turn.tool_results


def test_retrieve_item_learns_to_abstain_and_retrieve_turn_finds_the_hidden_memory():
    (turn,) = turns_of(_item("retrieve"), random.Random(0))
    assert "no memories found" in turn.tool_results[0]
    assert "not told me" in parse_step(turn.steps[1]).answer
    it = next(x for x in D.generate(70, 0, "train") if x.label == "answer" and x.basis == "memory")
    ret = retrieve_turn(it)
    hidden = dict(it.shown)[it.target_id]
    assert hidden not in ret.context[-1]["content"]          # not shown with the user turn...
    assert hidden in ret.tool_results[0]                     # ...but found by the search
    assert parse_step(ret.steps[0]).calls[0].name == "Retrieve_memory"
    assert parse_step(ret.steps[1]).answer == it.gold


def test_retrieve_turn_lists_near_misses_in_a_random_order():
    items = [x for x in D.generate(140, 0, "train") if x.label == "answer" and x.basis == "memory"
             and len(x.shown) > 1]
    r = random.Random(0)
    firsts, extra = set(), 0
    for it in items:
        ret = retrieve_turn(it, r)
        listed = re.findall(r"\[(mem_\d+)\]", ret.tool_results[0])
        assert it.target_id in listed and len(set(listed)) == len(listed)
        assert set(listed) <= {m for m, _ in it.shown}                  # only what is stored
        assert f"{it.target_id} answers it." in parse_step(ret.steps[1]).think
        firsts.add(listed[0] == it.target_id)
        extra += len(listed) - 1
    assert firsts == {True, False} and extra > 0        # the answering hit is not always first, nor alone


def test_build_turns_keeps_classes_and_the_long_share():
    turns = build_turns(70, 0, long_share=0.0)
    labels = {t.label for t in turns}
    assert {"add", "update", "delete", "retrieve", "answer"} <= labels
    assert not labels & {"filter", "summary"}
    assert {t.label for t in build_turns(70, 0, long_share=1.0)} >= {"filter", "summary"}


def test_variant_turns_add_beside_a_look_alike_and_say_so_after_a_search_of_other_things():
    turns = build_turns(8, 0, classes=("add_shared", "answer_unknown"), fact_think="value_end")
    assert [t.label for t in turns] == ["add", "answer"] * 4
    for t in turns:
        if t.label == "add":     # the Add, its result, the short reply
            assert len(t.steps) == 2 and D.classify(t.steps[0]).action == "add" and "Store " in t.steps[0]
        else:                    # the answer after the search the context already holds
            assert t.context[-1]["role"] == "tool" and t.context[-1]["content"].startswith("Retrieve_memory: ")
            assert t.context[-2]["role"] == "assistant" and "Retrieve_memory" in t.context[-2]["content"]
            assert t.steps == [render_step("Kind: question. No memory answers it, so say so.",
                                           answer=D.UNKNOWN_REPLY)]

def test_wide_long_turns_name_the_subject_then_whether_the_user_asks_about_it():
    """``wide_long``: Filter/Summary thinks compare the context's subject with the user's turn
    before the call; short turns and the v6 data (``wide_long`` off) keep their thinks."""
    wide, v6 = build_turns(42, 3, long_share=1.0, wide_long=True), build_turns(42, 3, long_share=1.0)
    items = {it.id: it for it in D.generate(42, 3, "train", wide=True)}
    long = [t for t in wide if t.label in ("filter", "summary")]
    assert {t.label for t in long} == {"filter", "summary"}
    for t in long:
        basis, step = items[t.item_id].basis, t.steps[0]
        asked = basis if t.label == "summary" else "something else"
        assert f"about {basis}; the user asks about {asked}, so" in step
        assert D.classify(step).action == t.label
    assert not any("the user asks about" in t.steps[0] for t in v6)
    assert [t.steps for t in wide if t.label not in ("filter", "summary")] == \
        [t.steps for t in v6 if t.label not in ("filter", "summary")]


def test_quote_turns_quote_the_user_then_answer_yes_for_summary_and_no_for_filter():
    """``long_think="quote"``: the think names the subject, quotes the user's turn verbatim and
    asks whether it is about the subject; Yes goes with Summary, No with Filter, and the call
    follows. Only Filter/Summary thinks change."""
    quote = build_turns(42, 3, long_share=1.0, wide_long=True, long_think="quote")
    subject = build_turns(42, 3, long_share=1.0, wide_long=True)
    items = {it.id: it for it in D.generate(42, 3, "train", budget=2048, wide=True)}   # build_turns' long_budget
    long = [t for t in quote if t.label in ("filter", "summary")]
    assert {t.label for t in long} == {"filter", "summary"}
    for t in long:
        it, step = items[t.item_id], t.steps[0]
        verdict = "Yes, so summarise it." if t.label == "summary" else "No, so filter it out."
        assert f'The user writes: "{it.user}" Is that about {it.basis}? {verdict}' in step
        assert t.context[-1]["content"].endswith(it.user)          # the quote is the turn the model sees
        assert D.classify(step).action == t.label
    assert [t.steps for t in quote if t.label not in ("filter", "summary")] == \
        [t.steps for t in subject if t.label not in ("filter", "summary")]
    with pytest.raises(ValueError, match="long_think"):
        D.oracle_completion(items[long[0].item_id], long_think="guess")


def test_value_thinks_write_the_new_value_before_the_call():
    """``fact_think="value"``: an Add/Update think writes the user's new value down, and the call's
    content keeps it; every other turn is v6's turn."""
    value = build_turns(42, 3, fact_think="value")
    plain = build_turns(42, 3)
    items = {it.id: it for it in D.generate(42, 3, "train")}
    writes = [t for t in value if t.label in ("add", "update")]
    assert {t.label for t in writes} == {"add", "update"}
    for t in writes:
        it, step = items[t.item_id], t.steps[0]
        assert it.value and (f"The new fact: {it.value}." in step or f"the new value is {it.value}," in step)
        d = D.classify(step)
        assert d.action == t.label and D.carries_value(d.content, it.value)
    assert not any("The new fact" in t.steps[0] or "new value" in t.steps[0] for t in plain)
    assert [t.steps for t in value if t.label not in ("add", "update")] == \
        [t.steps for t in plain if t.label not in ("add", "update")]
    assert [t.context for t in value] == [t.context for t in plain]
    with pytest.raises(ValueError, match="fact_think"):
        D.oracle_completion(items[writes[0].item_id], fact_think="guess")
    for t in build_turns(42, 3, fact_think="value_end"):   # the value ends the think
        if t.label in ("add", "update"):
            it, d = items[t.item_id], D.classify(t.steps[0])
            assert t.steps[0].startswith("<think>") and f" {it.value}.</think>" in t.steps[0]
            assert d.action == t.label and D.carries_value(d.content, it.value)


def test_topic_thinks_name_the_subjects_then_the_value():
    """``fact_think="topic"``: an Add names what the fact and each shown memory are about, an Update
    names the fact's subject and the target as about it too; the value ends the think."""
    cycle = ("add", "update", "add_shared")
    items = {it.id: it for it in D.generate(60, 5, "train", classes=cycle)}
    writes = [t for t in build_turns(60, 5, classes=cycle, fact_think="topic") if t.label in ("add", "update")]
    assert {t.label for t in writes} == {"add", "update"}
    for t in writes:
        it, step = items[t.item_id], t.steps[0]
        think = step.split("</think>")[0]
        d = D.classify(step)
        assert d.action == t.label and D.carries_value(d.content, it.value)
        assert think.endswith(f" {it.value}.")
        if t.label == "update":
            assert f"This is about {D.memory_topic(it.gold)}; {it.target_id} is about it too" in think
        elif it.shown:
            assert think.split(". ", 1)[1].startswith(f"This is about {D.memory_topic(it.gold)};")
            for mid, content in it.shown:
                assert f"{mid} is about {D.memory_topic(content)}" in think
            assert think.endswith(("so it is not. Store " + it.value + ".", "so none is about it. Store " + it.value + "."))
    # a look-alike holding the same town is named for what it is about, not taken for the fact
    shared = next(it for it in items.values() if it.template.startswith("add_shared.old") and it.fact == "city")
    step = D.oracle_completion(shared, fact_think="topic")
    assert "about the user's home city;" in step and "is about where the user's" in step
    assert step.startswith("<think>Kind: changed fact.")   # the kind follows the wording; no match makes it an Add


def test_question_turns_answer_the_episode_question_in_its_short_form():
    from agemem_lite import prompts
    from agemem_lite.eval.harness import build_tasks

    turns = question_turns(8, 1000)
    tasks = {t.question: t for b in ("hotpot", "longmemeval") for t in build_tasks(b, 4, 1000, n_distractors=0)}
    assert len(turns) == 8 and {t.label for t in turns} == {"answer", "retrieve"}
    eval_questions = {t.question for b in ("hotpot", "longmemeval") for t in build_tasks(b, 8, 0, n_distractors=0)}
    for turn in turns:
        user = turn.context[-1]["content"]
        question = user.split("User: ")[-1].split("\n" + prompts.QUESTION_INSTRUCTION)[0]
        task = tasks[question]
        assert question not in eval_questions                    # other tasks than `agemem eval --seed 0`
        assert user.endswith(prompts.QUESTION_INSTRUCTION)
        assert parse_step(turn.steps[-1]).answer == task.answers[0]     # the gold short answer, nothing else
        if turn.label == "retrieve":                              # stage 3: no retrieval shown, search first
            assert "Related memories" not in user and user == prompts.render_question(task.question)
            assert parse_step(turn.steps[0]).calls[0].name == "Retrieve_memory"
            assert all(info in turn.tool_results[0] for info in task.information)
        else:
            assert all(info in user for info in task.information)


def test_question_turns_name_the_memory_that_holds_the_answer_wherever_it_stands():
    from agemem_lite.eval.harness import build_tasks

    tasks = {t.question.split("] ", 1)[-1]: t for b in ("hotpot", "longmemeval")
             for t in build_tasks(b, 16, 1000, n_distractors=0)}
    positions, unrelated = set(), 0
    for turn in question_turns(32, 1000):
        text = turn.tool_results[0] if turn.tool_results else turn.context[-1]["content"]
        mems = dict(re.findall(r"\[(mem_\d+)\] (.*)", text))
        task = next(t for q, t in tasks.items() if q in turn.context[-1]["content"] or q in turn.steps[0])
        own = {m for m, c in mems.items() if c in task.information}
        unrelated += len(mems) - len(own)
        think = parse_step(turn.steps[-1]).think
        named = re.findall(r"mem_\d+", think)
        gold = task.answers[0]
        if gold.startswith("The information provided is not enough"):
            assert not named
            continue
        assert named and set(named) <= own                   # never an unrelated memory
        holding = [m for m in named if gold.lower() in mems[m].lower()]
        if any(gold.lower() in mems[m].lower() for m in own):
            assert holding == named                          # the one that states the answer
            positions.add(list(mems).index(named[0]))
    assert len(positions) >= 3 and unrelated > 0        # not learnable by position; other tasks' memories too


def test_question_turns_retrieve_share():
    assert {t.label for t in question_turns(12, 1000, retrieve_share=1.0)} == {"retrieve"}
    assert {t.label for t in question_turns(12, 1000, retrieve_share=0.0)} == {"answer"}


def test_question_turns_with_demonstrations_for_a_prompted_policy():
    demos = prompts.render_demonstrations()
    plain, shown = question_turns(4, 1000), question_turns(4, 1000, demonstrations=True)
    for p, s in zip(plain, shown):
        assert s.context == p.context[:1] + demos + p.context[1:] and s.steps == p.steps


def test_info_turns_store_each_information_turn_and_update_the_changed_fact():
    """Hand-checked on seed 1000: the LongMemEval knowledge-update task (book club) stores the
    first pick, then updates that memory with the change of plan; the multi-session task's second
    turn is shown the first one's memory and is still an Add; HotpotQA paragraphs are stored
    without their "I was reading about" opening; LongMemEval turns verbatim (date and speaker)."""
    from agemem_lite.eval.harness import build_tasks

    turns = info_turns(12, 1000)
    tasks = [t for b in ("hotpot", "longmemeval") for t in build_tasks(b, 6, 1000, n_distractors=0)]
    assert len(turns) == sum(len(t.information) for t in tasks)     # one turn per information turn
    eval_info = {x for b in ("hotpot", "longmemeval") for t in build_tasks(b, 8, 0, n_distractors=0)
                 for x in t.information}
    stored: dict[str, str] = {}
    for turn in turns:
        user = turn.context[-1]["content"].split("User: ", 1)[1]
        assert user not in eval_info
        call = parse_step(turn.steps[0]).calls[0]
        assert parse_step(turn.steps[1]).answer                       # a reply after the tool result
        if turn.label == "add":
            assert call.name == "Add_memory"
            content = call.arguments["content"]
            if user.startswith("I was reading about"):
                assert not content.startswith("I was reading") and user.endswith(content)
            else:
                assert content == user and user.startswith("[")          # "[date] user: ..." verbatim
            stored[turn.tool_results[0].rsplit("stored as ", 1)[1]] = content
        else:
            assert turn.label == "update" and call.name == "Update_memory"
            assert call.arguments["content"] == user
    (update,) = [t for t in turns if t.label == "update"]
    call = parse_step(update.steps[0]).calls[0]
    assert "The Dythkroux Mirror" in stored[call.arguments["memory_id"]]      # the old pick's memory
    assert "The Trathkask Orchard" in call.arguments["content"]
    assert f"[{call.arguments['memory_id']}]" in update.context[-1]["content"]   # shown with the turn
    puppy = next(t for t in turns if "puppy" in t.context[-1]["content"].split("User: ", 1)[1])
    assert puppy.label == "add" and "tennis partner" in puppy.context[-1]["content"]   # related, still new


def test_stage2_prompts_are_packed_filler_turns_of_other_episodes_than_the_evaluations():
    from agemem_lite.eval.harness import build_tasks

    prompts = stage2_prompts(6, 1000)
    assert len(prompts) == len(set(prompts)) and 1 <= len(prompts) <= 6
    assert all(p.count("user: ") == 2 and "\n\n" in p for p in prompts)     # two filler turns per stage-2 turn
    eval_turns = {x for t in build_tasks("longmemeval", 8, 0, n_distractors=0) for x in t.distractors}
    assert not any(set(p.split("\n\n")) <= eval_turns for p in prompts)   # dates differ from the eval's


def test_replay_turns_keep_the_base_models_own_reply(small_policy, tmp_path):
    cache = tmp_path / "replay.json"
    extra = ["[2023/09/06 (Wed) 22:55] user: What is 2 plus 2?"]
    turns = replay_turns(small_policy.model_path, 3, 0, cache=cache, max_reply_tokens=48, extra=extra, n_extra=1)
    replies = json.loads(cache.read_text())
    assert set(replies) == {p for _, p in OPEN_PROMPTS[:3]} | set(extra)
    for turn in turns:                                            # truncated replies are left out
        prompt = next(p for p in replies if turn.context[-1]["content"].endswith(p))
        step = parse_step(turn.steps[0])
        assert step.answer == replies[prompt] and not step.calls and not turn.tool_results
        if prompt in extra:                                       # stage 2 shows no retrieval with the turn
            assert turn.context[-1]["content"] == prompt
        earlier = [m for m in turn.context if m["role"] == "assistant"]   # history of earlier replayed answers
        assert all(m["content"].startswith("<answer>") and "<think>" not in m["content"] for m in earlier)
    cache.write_text(json.dumps({p: f"cached {i}" for i, (_, p) in enumerate(OPEN_PROMPTS[:3])}))
    again = replay_turns(small_policy.model_path, 3, 0, cache=cache)   # from the cache, no generation
    assert [parse_step(t.steps[0]).answer for t in again] == ["cached 0", "cached 1", "cached 2"]


def test_edit_reply_turns_run_the_tool_then_reply_after_the_edit(small_policy, embedder, tmp_path):
    """The reply after a Filter/Summary is learnt on the context the runtime leaves: fewer messages,
    the call and its result (with the new fill when the policy reads the line), the user turn
    keeping the line it came with."""
    turns = build_turns(14, 7, classes=["filter", "summary"], long_share=1.0, long_budget=1024)
    turns = with_context_usage(turns, small_policy.count_tokens)
    cache = tmp_path / "edits.json"
    out = edit_reply_turns(turns, small_policy, embedder.embed_one, usage=True, cache=cache, max_reply_tokens=48)
    by_id = {t.item_id: t for t in turns}
    assert out and {t.label for t in out} <= {"filter", "summary"}
    for t in out:
        first = by_id[t.item_id.removesuffix("+edit")]
        call = parse_step(first.steps[0]).calls[0]
        assert t.context[-2] == {"role": "assistant", "content": first.steps[0]}
        assert t.context[-1]["role"] == "tool" and t.context[-1]["content"].startswith(call.name + ": ")
        assert re.search(r"\[Context: \d+ % full\]$", t.context[-1]["content"])
        assert t.context[-3] == first.context[-1]                    # the user turn, its line as it came
        assert len(t.context) < len(first.context)                   # the edit removed or replaced messages
        step = parse_step(t.steps[0])
        assert step.answer and not step.calls and step.think.endswith(("Filtered, so reply.", "Summarised, so reply."))
        if call.name == "Summary_context":
            assert any(m["content"].startswith("[Summary of earlier conversation]") for m in t.context)
    assert json.loads(cache.read_text())
    # Filter runs with the θ it is given (serving's setting): at 1.0 nothing is near enough to go
    kept = edit_reply_turns(turns, small_policy, embedder.embed_one, filter_threshold=1.0, cache=cache,
                            max_reply_tokens=48)
    filtered = [t for t in kept if t.context[-1]["content"].startswith("Filter_context: ")]
    assert filtered and all("removed 0 messages" in t.context[-1]["content"] for t in filtered)


def test_mask_covers_exactly_the_oracle_steps(small_policy):
    turn = turns_of(_item("update"), random.Random(1))[0]
    ids, mask = tokenize_turn(small_policy, turn)
    assert len(ids) == len(mask) and 0 < sum(mask) < len(ids)
    llm = small_policy.llm
    learnt = llm.detokenize([i for i, m in zip(ids, mask) if m]).decode()
    assert learnt == "".join(turn.steps)
    context = llm.detokenize([i for i, m in zip(ids, mask) if not m], special=True).decode()
    assert turn.tool_results[0] in context and turn.context[-1]["content"] in context
    # the first step is followed by the tool result, which is not learnt
    n_step = sum(len(small_policy.tokenize(p, special=False)) for p in step_pieces(turn.steps[0]))
    first_end = len(small_policy.tokenize(small_policy.render(turn.context))) + n_step
    assert all(mask[first_end - n_step:first_end])
    assert mask[first_end] == 0


def test_two_fact_turns_store_each_fact_in_its_own_add_of_one_step():
    turns = two_fact_turns(30, 0)
    assert any("The user's name is" in t.steps[0] for t in turns)   # some name the user
    for t in turns:
        user = prompts.user_text_of(t.context[-1]["content"])
        first, done = (parse_step(s) for s in t.steps)
        assert first.error is None and [c.name for c in first.calls] == ["Add_memory", "Add_memory"]
        contents = [c.arguments["content"] for c in first.calls]
        assert contents[0] != contents[1] and all(c.startswith("The user") for c in contents)
        # the think names both values: each is what the user said and what one Add stores
        m = re.fullmatch(r"Kind: new fact\. Two new facts, so store both: (.+) and (.+)\.", first.think)
        assert m, first.think
        for value, content in zip(m.groups(), contents):
            assert value in user and value in content
        assert isinstance(t.tool_results[0], list) and len(t.tool_results[0]) == 2
        assert all(r.startswith("Add_memory: stored as mem_") for r in t.tool_results[0])
        shown = set(re.findall(r"\[(mem_\d+)\]", t.context[-1]["content"]))
        assert not shown & {r.rsplit(" ", 1)[-1] for r in t.tool_results[0]}   # new ids are not shown ones
        assert done.answer and not done.calls


def test_a_step_with_two_calls_is_followed_by_both_tool_results_and_neither_is_learnt(small_policy):
    t = two_fact_turns(1, 3)[0]
    ids, mask = tokenize_turn(small_policy, t)
    llm = small_policy.llm
    assert llm.detokenize([i for i, m in zip(ids, mask) if m]).decode() == "".join(t.steps)
    context = llm.detokenize([i for i, m in zip(ids, mask) if not m], special=True).decode()
    a, b = t.tool_results[0]
    assert context.index(a) < context.index(b)
    assert t.before_last_step()[-2:] == [{"role": "tool", "content": a}, {"role": "tool", "content": b}]


def test_overview_turns_state_every_shown_memory_to_the_user():
    for t in overview_turns(20, 0):
        shown = re.findall(r"\[(mem_\d+)\] (.*)", t.context[-1]["content"])
        assert 2 <= len(shown) <= 5
        (step,) = t.steps
        p = parse_step(step)
        assert all(m in p.think for m, _ in shown)
        for _, content in shown:
            fact = next(f for f in D.FACTS.values() if D._sentence_pattern(f).fullmatch(content))
            said = fact.answer.format(**D._sentence_pattern(fact).fullmatch(content).groupdict())
            assert said in p.answer
        assert "the user" not in p.answer.lower()


def test_config_rules_for_the_warm_start():
    with pytest.raises(ConfigError, match="trains nothing"):
        TrainConfig.load("tiny", {"steps": 0})
    with pytest.raises(ConfigError, match="init_adapter='x': no such file"):
        TrainConfig.load("tiny", {"warm_start": [{"items": 7}], "init_adapter": "x"})
    with pytest.raises(ConfigError, match="wide_long"):
        TrainConfig.load("tiny", {"warm_start": [{"items": 7, "wide_long": "yes"}]})
    with pytest.raises(ConfigError, match="edit_replies=1"):
        TrainConfig.load("tiny", {"warm_start": [{"items": 7, "edit_replies": 1}]})
    with pytest.raises(ConfigError, match="long_think='guess'"):
        TrainConfig.load("tiny", {"warm_start": [{"items": 7, "long_think": "guess"}]})
    thinks = [r["long_think"] for r in TrainConfig.load("tiny", {"warm_start": [
        {"items": 7}, {"items": 7, "wide_long": True}, {"items": 7, "long_think": "quote"}]}).warm_start_rounds()]
    assert thinks == ["plain", "subject", "quote"]
    with pytest.raises(ConfigError, match="fact_think='guess'"):
        TrainConfig.load("tiny", {"warm_start": [{"items": 7, "fact_think": "guess"}]})
    facts = [r["fact_think"] for r in TrainConfig.load("tiny", {"warm_start": [
        {"items": 7}, {"items": 7, "fact_think": "value"}]}).warm_start_rounds()]
    assert facts == ["plain", "value"]
    shipped = "models/adapters/agemem-0.5b.lora.gguf"   # a warm-start round may continue the shipped policy
    assert TrainConfig.load("tiny", {"warm_start": [{"items": 7}], "init_adapter": shipped}).init_adapter == shipped
    with pytest.raises(ConfigError, match="unknown key"):
        TrainConfig.load("tiny", {"warm_start": [{"items": 7, "itmes": 3}]})
    with pytest.raises(ConfigError, match="classes"):
        TrainConfig.load("tiny", {"warm_start": [{"items": 7, "classes": ["add", "sing"]}]})
    variants = ["add", "add_shared", "answer_unknown"]   # a cycle may name the decision set's variants
    assert TrainConfig.load("tiny", {"warm_start": [{"items": 7, "classes": variants}]}
                            ).warm_start_rounds()[0]["classes"] == variants
    with pytest.raises(ConfigError, match="question_retrieve"):
        TrainConfig.load("tiny", {"warm_start": [{"items": 7, "question_retrieve": 1.5}]})
    with pytest.raises(ConfigError, match="episodes"):
        TrainConfig.load("tiny", {"warm_start": [{"items": 7, "episodes": -1}]})
    with pytest.raises(ConfigError, match="worked_think='yes'"):
        TrainConfig.load("tiny", {"warm_start": [{"items": 7, "worked_think": "yes"}]})
    with pytest.raises(ConfigError, match="no turns to train on"):
        TrainConfig.load("tiny", {"warm_start": [{"items": 0}]})
    only = TrainConfig.load("tiny", {"warm_start": [{"items": 0, "overviews": 4}]}).warm_start_rounds()
    assert only[0]["items"] == 0 and only[0]["overviews"] == 4   # a round of only overview turns
    with pytest.raises(ConfigError, match="items=-1"):
        TrainConfig.load("tiny", {"warm_start": [{"items": -1, "overviews": 4}]})
    with pytest.raises(ConfigError, match="hotpot_questions=-2"):
        TrainConfig.load("tiny", {"warm_start": [{"items": 7, "hotpot_questions": -2}]})
    cfg = TrainConfig.load("default", {"steps": 0})
    rounds = cfg.warm_start_rounds()
    assert len(rounds) == 2 and rounds[0]["items"] > 0 and rounds[0]["epochs"] == 1.0 and cfg.lora_r == 8
    assert rounds[0]["classes"] == list(D.CLASSES) and rounds[0]["fact_think"] == "plain"   # v6
    # round G (v7): short classes only, the value-ending think, packed
    assert set(rounds[1]["classes"]) == {"add", "update", "delete", "retrieve", "answer"}
    assert rounds[1]["fact_think"] == "value_end" and rounds[1]["pack"] == 4 and rounds[1]["seed"] == 7
    assert not any(r["context_usage"] or r["edit_replies"] for r in rounds)   # v7: without the line or edit replies
    assert not any(r["worked_think"] or r["hotpot_questions"] for r in rounds)   # nor worked HotpotQA thinks


@pytest.mark.slow
def test_default_recipe_warm_start_then_a_grpo_step_on_the_small_model(settings, tmp_path):
    """The default recipe, shrunk, on SmolLM2: two warm-start rounds (7 and 6 items, the second
    packed on the shared system prompt, with the context-usage line and the replies after a
    Summary), then one
    GRPO step from the warm-started adapter with the recipe's serving (guided think, no
    demonstrations) on episodes cut to one short turn."""
    from safetensors.torch import load_file

    from agemem_lite.model_files import resolve
    from agemem_lite.policy.llama import LlamaPolicy
    from train.trainer import GRPOTrainer

    cfg = TrainConfig.load("default", {"base": "smollm2-135m", "steps": 1, "eval_every": 0, "threads": 2,
                                       "warm_start": [{"items": 7, "long_share": 0.0},
                                                      {"items": 6, "long_share": 1.0, "long_budget": 1024,
                                                       "classes": ["update", "update", "summary"],
                                                       "pack": 4, "context_usage": True, "edit_replies": True}],
                                       "benches": ["hotpot"], "n_train_tasks": 2, "k": 2, "min_group_std": 0.0,
                                       "max_samples_per_step": 4, "max_new_tokens": 48, "think_tokens": 16,
                                       "n_ctx": 2048, "episode.n_max": 1, "episode.n_distractors": 1,
                                       "episode.max_steps_per_turn": 2, "episode.t_max": 2048})
    assert cfg.guided and cfg.episode["demonstrations"] is False and cfg.lora_r == 8   # the recipe's own
    t = GRPOTrainer(cfg, settings, tmp_path / "run", progress=False)
    try:
        t.run()
    finally:
        t.close()
    out = tmp_path / "run"
    sft = json.loads((out / "warm_start" / "round-1" / "sft.json").read_text())
    assert sft["turns"] >= 5 and sft["loss_tokens"] > 0 and sft["train_loss"] > 0
    sft2 = json.loads((out / "warm_start" / "round-2" / "sft.json").read_text())
    assert sft2["init_adapter"].endswith("round-1/adapter") and sft2["by_class"]["update"] == 4
    assert sft2["context_usage"] and not sft["context_usage"]   # round 2's turns carry the usage line
    # round 2's Summary turns are learnt with the reply after the edit (one more turn each, where the
    # small model's reply has a full sentence)
    assert sft2["edit_replies"] and sft2["by_class"]["summary"] >= 2
    # round 2 packs its turns on their shared system prompt: fewer sequences, fewer tokens to run
    assert sft2["pack"] == 4 and sft2["sequences"] < sft2["turns"] and sft2["tokens_run"] < sft2["tokens"]
    assert sft["pack"] == 1 and sft["sequences"] == sft["turns"] and sft["tokens_run"] == sft["tokens"]
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["round"] for r in log if r["type"] == "warm_start"] == [1, 2]
    steps = [r for r in log if r["type"] == "step"]
    assert [r["step"] for r in steps] == [1] and len(steps[0]["groups"][0]["rewards"]) == 2
    if any(not g["skipped"] for g in steps[0]["groups"]):   # (two equal rewards give no sample)
        # the KL reference is the warm-started adapter, i.e. the policy at step 1 (not the base)
        assert steps[0]["n_samples"] > 0 and steps[0]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert (out / "checkpoints" / "step-000001" / "adapter.safetensors").is_file()
    state = load_file(str(out / "best" / "adapter.safetensors"))
    assert any(float(v.abs().max()) > 0 for k, v in state.items() if "lora_B" in k)   # SFT moved B off zero
    pol = LlamaPolicy(resolve(settings, "smollm2-135m"), n_ctx=2048, n_threads=2,
                      lora_path=str(out / "best" / "adapter.gguf"), max_new_tokens=64)
    try:
        assert pol.step(D.messages(_item("add"), guided=False)).text
    finally:
        pol.close()


def test_context_usage_turns_use_their_own_budget_and_only_change_user_turns():
    from train.warm_start import with_context_usage

    turns = build_turns(20, 3, long_share=1.0, long_budget=2048)
    lined = with_context_usage(turns, D.est_tokens)
    assert {prompts.budget_of(t.context[0]["content"]) for t in turns} == {2048, D.DEFAULT_BUDGET}
    for t, u in zip(turns, lined):
        assert (t.steps, t.tool_results, len(t.context)) == (u.steps, u.tool_results, len(u.context))
        pct = int(u.context[-1]["content"].split()[1]) if u.context[-1]["role"] == "user" else None
        if pct is not None:
            assert (pct >= 50) == (t.label in ("filter", "summary")), (t.label, pct)
        for a, b in zip(t.context, u.context):
            assert (a == b) == (a["role"] != "user")


def test_worked_reason_writes_the_hop_or_the_comparison_from_the_gold_facts():
    from agemem_lite.eval.harness import build_tasks
    from train.warm_start import worked_reason

    tasks = build_tasks("hotpot", 40, 1000, n_distractors=0)
    kinds, directions = set(), set()
    for t in tasks:
        reason = worked_reason(t)
        assert reason is not None, t.question
        a, b = t.key_items
        kinds.add(t.metadata["type"])
        if t.metadata["type"] == "bridge":
            assert reason == f"{a} → {b} → {t.answers[0]}." and a in t.question and b not in t.question
            continue
        m = re.fullmatch(r"(.+) (\d+), (.+) (\d+)\. The (larger|smaller) is (\d+), so (.+)\.", reason)
        assert m, reason
        ra, na, rb, nb, word, win_n, win = m.groups()
        assert [ra, rb] == [a, b] and win == t.answers[0]
        assert na in t.gold_facts[0] and nb in t.gold_facts[1]      # the numbers the memories state
        pick = max if word == "larger" else min
        assert int(win_n) == pick(int(na), int(nb)) and win == (a if int(win_n) == int(na) else b)
        directions.add(word)
    assert kinds == {"bridge", "comparison"} and directions == {"larger", "smaller"}
    assert all(worked_reason(t) is None for t in build_tasks("longmemeval", 6, 1000, n_distractors=0))


def test_question_turns_worked_think_names_both_memories_then_reasons():
    plain = question_turns(0, 1000, hotpot=8, retrieve_share=0.0)
    worked = question_turns(0, 1000, hotpot=8, retrieve_share=0.0, worked_think=True)
    assert len(plain) == len(worked) == 8
    for p, w in zip(plain, worked):
        assert p.context == w.context and parse_step(p.steps[-1]).answer == parse_step(w.steps[-1]).answer
        think = parse_step(w.steps[-1]).think
        assert re.fullmatch(r"Kind: question\. mem_\d+ and mem_\d+ answer it\. .+(→|The (larger|smaller) is).+\.",
                            think), think
        assert re.fullmatch(r"Kind: question\. mem_\d+ answers it\.", parse_step(p.steps[-1]).think)
