"""Agent.turn (SPEC §1-§4): the step loop, errors back to the model, the step limit,
automatic retrieval and think dropping.

Control flow is tested with ``ScriptedPolicy``, a deterministic policy that
writes given steps (the same idea as a scripted oracle in episodes); the store
and the embedder are real. The last test runs the real SmolLM2 GGUF end to end
and asserts only on plumbing: it is too weak to choose tools well.
"""

from __future__ import annotations

import dataclasses

import pytest

from agemem_lite import prompts
from agemem_lite.agent import Agent
from agemem_lite.memory.sessions import describe_operation
from agemem_lite.protocol import render_step
from scripted import ScriptedPolicy

NS = "default"


def call_step(name: str, think: str = "act", **arguments) -> str:
    return render_step(think, calls=[{"name": name, "arguments": arguments}])


def answer_step(text: str, think: str = "reply") -> str:
    return render_step(think, answer=text)


@pytest.fixture
def make_agent(store, embedder, settings):
    def make(script, *, demonstrations=False, tools=None, context_usage=False, **overrides):
        s = dataclasses.replace(settings, **overrides)
        policy = ScriptedPolicy(script)
        return Agent(policy, store, embedder, s, today="2025-01-01", demonstrations=demonstrations,
                     context_usage=context_usage, tools=tools), policy

    return make


def tool_messages(agent) -> list[str]:
    return [m.content for m in agent.context.messages if m.role == "tool"]


# -- the loop --------------------------------------------------------------------------

def test_add_then_answer_stores_the_fact_and_ends_the_turn(make_agent, store):
    agent, policy = make_agent([
        call_step("Add_memory", content="The user's cat Tom is four.", memory_type="fact"),
        answer_step("Noted: Tom is four."),
    ])
    turn = agent.turn("My cat Tom is four years old.")
    assert turn.answer == "Noted: Tom is four."
    assert [s.kind for s in turn.steps] == ["tool_call", "answer"]
    assert [m["content"] for m in store.export(NS)] == ["The user's cat Tom is four."]
    assert tool_messages(agent) == ["Add_memory: stored as mem_1"]
    assert [op["name"] for op in turn.operations] == ["Add_memory"]
    # the second step saw the tool result
    second_prompt, _ = policy.calls[1]
    assert second_prompt[-1] == {"role": "tool", "content": "Add_memory: stored as mem_1"}
    assert agent.turns == [turn]


def test_steps_record_prompt_completion_and_costs(make_agent):
    agent, _ = make_agent([call_step("Retrieve_memory", query="cat"), answer_step("No idea.")])
    streamed: list[str] = []
    seen_steps = []
    turn = agent.turn("How old is my cat?", on_text=streamed.append, on_step=seen_steps.append)
    first, second = turn.steps
    assert seen_steps == turn.steps
    assert "".join(streamed) == first.completion + second.completion
    assert first.index == 0 and second.index == 1
    assert first.prompt[-1] == {"role": "user", "content": prompts.render_user_turn("How old is my cat?",
                                                                                    prompts.NO_RELATED)}
    assert len(second.prompt) == len(first.prompt) + 2  # + the step + its tool result
    assert first.calls == [{"name": "Retrieve_memory", "arguments": {"query": "cat"}}]
    assert first.results[0]["ok"] is True and first.results[0]["text"] == "no memories found"
    assert first.context_tokens > 0 and second.context_tokens > first.context_tokens
    assert first.prompt_tokens > 0 and first.completion_tokens > 0 and first.generate_s > 0
    assert first.tools_s >= 0
    assert turn.to_dict()["steps"][1]["answer"] == "No idea."


def test_invalid_step_goes_back_into_the_context_and_the_loop_continues(make_agent, store):
    agent, policy = make_agent(["I think I should store this.", answer_step("Sorry, done now.")])
    turn = agent.turn("My cat Tom is four years old.")
    bad, good = turn.steps
    assert bad.kind == "invalid" and bad.error
    assert bad.results == [{"name": "protocol", "ok": False, "text": bad.error, "data": {}}]
    assert turn.answer == "Sorry, done now."
    err = prompts.render_tool_result("protocol", False, bad.error)
    assert policy.calls[1][0][-1] == {"role": "tool", "content": err}
    assert policy.calls[1][0][-2] == {"role": "assistant", "content": "I think I should store this."}
    assert store.count(NS) == 0


def test_failed_tool_call_is_reported_to_the_model_and_the_loop_continues(make_agent, store):
    agent, policy = make_agent([
        call_step("Update_memory", memory_id="sister_birthday", content="x"),
        answer_step("I could not update that."),
    ])
    turn = agent.turn("Anna's birthday moved.")
    assert turn.steps[0].kind == "tool_call"
    assert turn.steps[0].results[0]["ok"] is False
    assert policy.calls[1][0][-1]["content"].startswith("Update_memory ERROR: 'sister_birthday' is not a memory id")
    assert turn.answer == "I could not update that." and store.count(NS) == 0


def test_several_calls_in_one_step_all_run_in_order(make_agent, store):
    step = render_step("two facts", calls=[
        {"name": "Add_memory", "arguments": {"content": "Tom is four."}},
        {"name": "Add_memory", "arguments": {"content": "Tom is a tabby."}},
    ])
    agent, _ = make_agent([step, answer_step("ok")])
    agent.turn("Tom is four and a tabby.")
    assert [m["content"] for m in store.export(NS)] == ["Tom is four.", "Tom is a tabby."]
    assert tool_messages(agent) == ["Add_memory: stored as mem_1", "Add_memory: stored as mem_2"]


def test_step_limit_forces_an_answer_only_last_step(make_agent):
    def tools_while_allowed(messages, allow_tools):
        return call_step("Retrieve_memory", query="cat") if allow_tools else answer_step("Best I can do.")

    agent, policy = make_agent([tools_while_allowed] * 3, max_steps_per_turn=3)
    turn = agent.turn("Tell me about my cat.")
    assert [allow for _, allow in policy.calls] == [True, True, False]
    assert [s.kind for s in turn.steps] == ["tool_call", "tool_call", "answer"]
    assert turn.answer == "Best I can do."


def test_turn_stops_at_the_step_limit_even_without_an_answer(make_agent):
    agent, policy = make_agent([call_step("Retrieve_memory", query="cat")] * 2, max_steps_per_turn=2)
    turn = agent.turn("Tell me about my cat.")
    assert len(turn.steps) == 2 and turn.answer is None
    assert policy.script == []


def test_single_step_limit_never_allows_tools(make_agent):
    agent, policy = make_agent([answer_step("Hi.")], max_steps_per_turn=1)
    assert agent.turn("Hello").answer == "Hi."
    assert policy.calls[0][1] is False


def test_empty_user_message_is_refused(make_agent):
    agent, policy = make_agent([])
    with pytest.raises(ValueError):
        agent.turn("   ")
    assert policy.calls == []


# -- automatic retrieval (SPEC §4) ---------------------------------------------------------

def test_auto_retrieval_shows_a_stored_memory_and_marks_its_id_seen(make_agent, store, embedder):
    text = "The user's sister Anna was born on March 3rd."
    mid = store.add(NS, text, embedder.embed_one(text)).id
    agent, policy = make_agent([
        call_step("Update_memory", memory_id=mid, content="The user's sister Anna was born on March 4th."),
        answer_step("Updated."),
    ])
    turn = agent.turn("Correction: Anna's birthday is March 4th, not the 3rd.")
    user_msg = policy.calls[0][0][-1]
    assert user_msg["role"] == "user"
    assert f"{prompts.RELATED_HEADER}\n[{mid}] {text}" in user_msg["content"]
    assert [r["id"] for r in turn.related] == [mid]
    assert mid in agent.env.seen_ids
    # seen through auto-retrieval, so the update is allowed without a Retrieve_memory call
    assert turn.steps[0].results[0]["ok"] is True
    assert store.export(NS)[0]["content"] == "The user's sister Anna was born on March 4th."


def test_auto_retrieval_on_an_empty_store_shows_none(make_agent):
    agent, policy = make_agent([answer_step("Hi!")])
    turn = agent.turn("Hello there")
    assert policy.calls[0][0][-1]["content"] == prompts.render_user_turn("Hello there", prompts.NO_RELATED)
    assert prompts.NO_RELATED in policy.calls[0][0][-1]["content"]
    assert turn.related == [] and agent.env.seen_ids == set()


def test_auto_retrieval_can_be_switched_off(make_agent, store, embedder):
    text = "The user's sister Anna was born on March 3rd."
    store.add(NS, text, embedder.embed_one(text))
    agent, policy = make_agent([answer_step("ok")], auto_retrieve_k=0)
    turn = agent.turn("When was Anna born?")
    assert turn.related == [] and agent.env.seen_ids == set()
    assert text not in policy.calls[0][0][-1]["content"]


def test_retrieve_memory_results_enter_the_context(make_agent, store, embedder):
    text = "The user's cat Tom is four years old."
    mid = store.add(NS, text, embedder.embed_one(text)).id
    agent, policy = make_agent([call_step("Retrieve_memory", query="cat age"), answer_step("Four.")],
                               auto_retrieve_k=0)
    agent.turn("How old is Tom?")
    assert policy.calls[1][0][-1] == {"role": "tool", "content": f"Retrieve_memory: \n[{mid}] {text}"}
    assert mid in agent.env.seen_ids


def test_a_search_for_all_searches_the_users_message(make_agent, store, embedder):
    text = "I live in Oxford"
    mid = store.add(NS, text, embedder.embed_one(text)).id
    agent, policy = make_agent([call_step("Retrieve_memory", query="all"), answer_step("Oxford.")],
                               auto_retrieve_k=0)
    turn = agent.turn("Where do I live now?")
    assert policy.calls[1][0][-1] == {"role": "tool", "content": f"Retrieve_memory: \n[{mid}] {text}"}
    [op] = turn.operations
    assert describe_operation(op) == (f"retrieved for 'all' (searched the message: 'Where do I live now?'): "
                                      f"{mid} ({op['data']['hits'][0]['similarity']:.2f})")


def test_a_question_that_names_nothing_is_shown_the_newest_memories(make_agent, store, embedder):
    """"What do you know about me?" is similar to no memory past the floor; it is shown the newest."""
    texts = ["I live in Oxford.", "My cat is called Miso.", "The user is allergic to peanuts."]
    ids = [store.add(NS, t, embedder.embed_one(t)).id for t in texts]
    agent, policy = make_agent([answer_step("You live in Oxford.")], auto_retrieve_k=3)
    turn = agent.turn("What do you know about me?")
    assert [r["id"] for r in turn.related] == ids[::-1]
    assert all(r["similarity"] is None for r in turn.related)
    assert set(ids) <= agent.env.seen_ids
    # a question that names something is ranked by similarity, with the floor
    agent2, _ = make_agent([answer_step("Miso.")], auto_retrieve_k=3)
    assert [r["id"] for r in agent2.turn("What is my cat called?").related][0] == ids[1]
    # a search for "all" in such a turn lists the newest too, and the REPL line says so
    agent3, _ = make_agent([call_step("Retrieve_memory", query="all", top_k=2), answer_step("Peanuts.")],
                           auto_retrieve_k=0)
    [op] = agent3.turn("Tell me everything you remember about me.").operations
    assert describe_operation(op) == (f"retrieved for 'all' (the query and the message name nothing: the newest "
                                      f"memories): {ids[2]}, {ids[1]}")
    # the policy's own phrase for it found nothing: the line says that, not that the query named nothing
    agent4, _ = make_agent([call_step("Retrieve_memory", query="your knowledge about me"), answer_step("Tea.")],
                           auto_retrieve_k=0)
    [op] = agent4.turn("What do you know about me?").operations
    assert describe_operation(op).startswith("retrieved for 'your knowledge about me' (found nothing for "
                                             "'your knowledge about me', and the message names nothing: "
                                             "the newest memories): ")


def test_retrieve_memory_applies_the_settings_relevance_floor(make_agent, store, embedder):
    text = "The user's cat Tom is four years old."
    store.add(NS, text, embedder.embed_one(text))
    agent, policy = make_agent([call_step("Retrieve_memory", query="my dentist's name"), answer_step("?")],
                               auto_retrieve_k=0)
    assert agent.env.min_similarity == agent.settings.retrieve_min_similarity == 0.2
    agent.turn("What is my dentist called?")
    assert policy.calls[1][0][-1] == {"role": "tool", "content": "Retrieve_memory: no memories found"}
    assert agent.env.seen_ids == set()


def test_show_related_off_sends_the_bare_message_and_retrieves_nothing(make_agent, store, embedder):
    text = "The user's sister Anna was born on March 3rd."
    store.add(NS, text, embedder.embed_one(text))
    agent, policy = make_agent([answer_step("ok")])
    seen = []
    turn = agent.turn("  When was Anna born?  ", on_related=seen.append, show_related=False)
    assert policy.calls[0][0][-1] == {"role": "user", "content": "When was Anna born?"}
    assert turn.related == [] and agent.env.seen_ids == set() and seen == []


def test_rewind_returns_the_user_text_with_or_without_the_related_header(make_agent, store, embedder):
    text = "The user's sister Anna was born on March 3rd."
    store.add(NS, text, embedder.embed_one(text))
    agent, _ = make_agent([answer_step("ok")] * 3)
    agent.turn("When was Anna born?")
    agent.turn("Hello", show_related=False)
    agent.turn("Two lines:\n\nUser: quoted", show_related=False)
    assert prompts.RELATED_HEADER in [m for m in agent.context.messages if m.role == "user"][0].content
    assert agent.rewind_last_turn() == "Two lines:\n\nUser: quoted"
    assert agent.rewind_last_turn() == "Hello"
    assert agent.rewind_last_turn() == "When was Anna born?"
    assert agent.rewind_last_turn() is None and agent.turns == []


def test_context_usage_line_says_how_full_the_context_was_when_the_turn_came(make_agent, store, embedder):
    text = "The user's sister Anna was born on March 3rd."
    store.add(NS, text, embedder.embed_one(text))
    agent, policy = make_agent([answer_step("ok " * 300), answer_step("ok")], context_usage=True,
                               context_budget=1000)
    before = agent.context.tokens
    agent.turn("When was Anna born?")
    between = agent.context.tokens
    agent.turn("Hello", show_related=False)
    first, second = [m["content"] for m in policy.calls[1][0] if m["role"] == "user"]
    assert first.startswith(f"[Context: {10 * round(before / 100)} % full]\n{prompts.RELATED_HEADER}")
    assert second == f"[Context: {10 * round(between / 100)} % full]\n\nUser: Hello"
    assert round(between / 100) > round(before / 100)   # the long reply filled it
    assert agent.rewind_last_turn() == "Hello" and agent.rewind_last_turn() == "When was Anna born?"


def test_no_context_usage_line_unless_asked(make_agent):
    agent, policy = make_agent([answer_step("ok")])
    agent.turn("Hello", show_related=False)
    assert policy.calls[0][0][-1]["content"] == "Hello"


# -- tool subsets ------------------------------------------------------------------------------

def test_tool_subset_is_all_the_system_prompt_lists_and_others_are_refused(make_agent, store):
    script = [call_step("Summary_context", span="all"), call_step("Add_memory", content="Tom is four."),
              answer_step("ok")]
    agent, policy = make_agent(script, tools=["Retrieve_memory", "Add_memory"])
    turn = agent.turn("My cat Tom is four.")
    listed = policy.calls[0][0][0]["content"].split("Tools:")[-1]
    assert [line.split("(")[0] for line in listed.strip().splitlines()] == \
        ["- Add_memory", "- Retrieve_memory"]             # TOOLS order, whatever order was given
    assert [r["ok"] for s in turn.steps for r in s.results] == [False, True]
    assert turn.steps[0].results[0]["text"] == \
        "Summary_context is not available here; tools: Add_memory, Retrieve_memory"
    assert policy.summaries == [] and store.count(NS) == 1
    assert [allow for _, allow in policy.calls] == [True, True, True]


def test_answer_only_agent_decodes_every_step_without_tools(make_agent, store):
    agent, policy = make_agent([call_step("Add_memory", content="Tom is four."), answer_step("Noted.")],
                               tools=())
    turn = agent.turn("My cat Tom is four.")
    assert [allow for _, allow in policy.calls] == [False, False]
    assert turn.steps[0].results[0]["ok"] is False and store.count(NS) == 0
    assert turn.answer == "Noted."
    assert policy.calls[0][0][0]["content"].split("Tools:")[-1].strip() == ""


def test_unknown_tool_names_are_refused_when_the_agent_is_made(make_agent):
    with pytest.raises(ValueError, match="'Forget_memory'.*Add_memory"):
        make_agent([], tools=["Add_memory", "Forget_memory"])
    with pytest.raises(TypeError, match="sequence of tool names"):
        make_agent([], tools="Add_memory")


# -- context management through the loop ----------------------------------------------------

def test_think_blocks_are_dropped_from_finished_turns(make_agent):
    agent, _ = make_agent([
        call_step("Add_memory", think="SECRET REASONING ONE", content="Tom is four."),
        answer_step("Noted.", think="SECRET REASONING TWO"),
    ], demonstrations=True)
    agent.turn("My cat Tom is four.")
    own = [m for m in agent.context.messages if m.role == "assistant" and m.kind != "demo"]
    assert len(own) == 2
    assert all("<think>" not in m.content and "SECRET" not in m.content for m in own)
    assert own[0].content.startswith("<tool_call>") and own[1].content == "<answer>Noted.</answer>"
    assert all(m.tokens == len(m.content.split()) for m in own)  # recounted with the policy's counter
    demos = [m for m in agent.context.messages if m.kind == "demo" and m.role == "assistant"]
    assert demos and all(m.content.startswith("<think>") for m in demos)  # the fixed prefix stays


def test_think_blocks_are_kept_while_the_turn_runs(make_agent):
    agent, policy = make_agent([call_step("Retrieve_memory", think="KEEP ME", query="x"), answer_step("ok")])
    agent.turn("question")
    assert "<think>KEEP ME</think>" in policy.calls[1][0][-2]["content"]


def test_summary_context_in_a_turn_uses_the_policy_with_the_fixed_prompt(make_agent):
    agent, policy = make_agent([answer_step("First."), call_step("Summary_context", span="all"),
                                answer_step("Second.")])
    agent.turn("Tell me a joke about cats.")
    agent.turn("Now summarise please.")
    assert len(policy.summaries) == 1
    assert policy.summaries[0].startswith(prompts.SUMMARY_INSTRUCTION.split("{transcript}")[0])
    assert "Tell me a joke about cats." in policy.summaries[0]
    kinds = [m.kind for m in agent.context.messages]
    assert kinds.count("summary") == 1
    assert agent.context.messages[0].role == "system"
    pending = [m for m in agent.context.messages if m.role == "user"][-1]
    assert pending.content == prompts.render_user_turn("Now summarise please.", prompts.NO_RELATED)


@pytest.mark.parametrize("written, kept", [
    ("Ana moves to Porto in May; Tom is four.", True),       # keeps every name and number: the policy's
    ("Read it, go on.", False),                              # an acknowledgement, not a summary
    ("<think>Kind: fact.</think>", False),                   # protocol text
    ("I'm sorry, but I can't assist with that. Ana, Porto, May, Tom, four.", False),   # words not said
    ("Ana moves to Porto in May. Tom is four. Tom is four.", False),   # a loop
])
def test_the_summary_is_the_policys_unless_it_keeps_fewer_names_and_numbers(store, embedder, settings,
                                                                             written, kept):
    policy = ScriptedPolicy([answer_step("Noted."), answer_step("Noted."), call_step("Summary_context", span="all"),
                             answer_step("Done.")], summary=written)
    agent = Agent(policy, store, embedder, settings, today="2025-01-01", demonstrations=False)
    agent.turn("My sister Ana moves to Porto in May.")
    agent.turn("Her son Tom is four.")
    agent.turn("Please tidy up.")
    summary = next(m for m in agent.context.messages if m.kind == "summary").content
    text = summary.removeprefix(prompts.SUMMARY_HEADER + "\n")
    assert text == (written if kept else "My sister Ana moves to Porto in May. Her son Tom is four.")


def test_rejected_approval_reaches_the_model_and_stores_nothing(store, embedder, settings):
    policy = ScriptedPolicy([call_step("Add_memory", content="Tom is four."), answer_step("ok")])
    agent = Agent(policy, store, embedder, settings, today="2025-01-01", demonstrations=False,
                  approve=lambda call: False)
    agent.turn("My cat Tom is four.")
    assert store.count(NS) == 0
    assert "rejected" in policy.calls[1][0][-1]["content"]


def test_system_prompt_and_demonstrations_open_the_context(make_agent):
    agent, policy = make_agent([answer_step("Hi.")], demonstrations=True)
    agent.turn("Hello")
    msgs = policy.calls[0][0]
    assert msgs[0]["role"] == "system" and "Today is 2025-01-01" in msgs[0]["content"]
    demos = prompts.render_demonstrations()
    assert msgs[1:1 + len(demos)] == demos


# -- the real policy, end to end -------------------------------------------------------------

def test_smollm2_turns_run_end_to_end(small_policy, store, embedder, settings, monkeypatch):
    """SmolLM2-135M through the whole loop: grammar, parse, tools, records, prefix reuse.

    Only plumbing is asserted (the model is too weak to choose tools well). The step
    cap is lowered so that a rambling answer costs seconds, not minutes."""
    monkeypatch.setattr(small_policy, "max_new_tokens", 128)
    s = dataclasses.replace(settings, max_steps_per_turn=3)
    agent = Agent(small_policy, store, embedder, s, today="2025-01-01")
    prefix_tokens = sum(m.tokens for m in agent.context.messages)  # system + demonstrations
    turns = [agent.turn("My cat Tom is four years old."), agent.turn("Hello! Thanks for the help yesterday.")]
    for turn in turns:
        assert 1 <= len(turn.steps) <= s.max_steps_per_turn
        for step in turn.steps:
            assert step.kind != "invalid", step.completion
            assert step.prompt_tokens > prefix_tokens
            assert step.completion_tokens > 0
            assert step.generate_s > 0 and step.first_token_s is not None and step.first_token_s > 0
            assert step.context_tokens > 0
            for r in step.results:  # every call the model made went through dispatch
                assert set(r) == {"name", "ok", "text", "data"}
        assert turn.answer, [st.completion for st in turn.steps]
        assert turn.steps[-1].kind == "answer"
    second_first = turns[1].steps[0]
    assert second_first.reused_prompt_tokens >= prefix_tokens
    assert second_first.reused_prompt_tokens < second_first.prompt_tokens
    assert all("<think>" not in m.content for m in agent.context.messages
               if m.role == "assistant" and m.kind != "demo")
    stored = {m["id"] for m in store.export(NS)}
    for op in turns[0].operations:  # whatever it chose to store went through the real store
        if op["name"] == "Add_memory":
            assert op["data"]["memory"]["id"] in stored


def test_context_over_the_model_window_is_trimmed_oldest_first(make_agent):
    """The runtime's last resort: the prompt must fit n_ctx, so the oldest turns go first."""
    agent, policy = make_agent([answer_step("ok")] * 3, n_ctx=2048, context_budget=1024, max_new_tokens=256)
    agent.context.append("user", "very old turn " + "word " * 900)
    agent.context.append("assistant", "<answer>ok</answer>")
    agent.context.append("user", "recent turn " + "word " * 600)
    agent.context.append("assistant", "<answer>ok</answer>")
    turn = agent.turn("What now?")
    assert turn.answer == "ok"
    contents = [m["content"] for m in turn.steps[0].prompt]
    assert not any(c.startswith("very old turn") for c in contents)
    assert any(c.startswith("recent turn") for c in contents)
    assert sum(agent.policy.count_tokens(c) for c in contents) <= 2048 - 256 - 256


def test_an_eviction_goes_down_to_the_budget_so_the_next_turns_keep_their_prefix(make_agent):
    """Evicting only to the window changed the conversation's start on every later turn, and
    llama.cpp then evaluated the whole prompt again each time (bench/long_chat.py)."""
    agent, policy = make_agent([answer_step("ok")] * 4, n_ctx=2048, context_budget=1024, max_new_tokens=256)
    for i in range(12):
        agent.context.append("user", f"old turn {i} " + "word " * 120)
        agent.context.append("assistant", "<answer>ok</answer>")
    assert agent._prompt_estimate() > 2048 - 256
    from agemem_lite.agent import TEMPLATE_TOKENS_PER_MESSAGE

    prompt = agent.turn("What now?").steps[0].prompt
    assert sum(policy.count_tokens(m["content"]) + TEMPLATE_TOKENS_PER_MESSAGE for m in prompt) + 64 <= 1024
    after = agent._prompt_estimate()
    first = [m.content for m in agent.context.messages if m.role != "system"][0]
    agent.turn("And then?")
    agent.turn("Anything else?")
    assert [m.content for m in agent.context.messages if m.role != "system"][0] == first
    assert agent._prompt_estimate() > after


def test_prefix_kv_cache_restores_in_a_new_policy_and_gives_the_same_step(settings, tmp_path):
    """A new process starts from the cached system+demo prefix instead of re-reading it."""
    from agemem_lite import prompts
    from agemem_lite.assistant import open_policy
    from agemem_lite.memory.tools import grammar_schemas

    fixed = [{"role": "system", "content": prompts.render_system(
        today="2025-01-01", budget=2048, tool_schemas=grammar_schemas())}] + prompts.render_demonstrations()
    turn = fixed + [{"role": "user", "content": prompts.render_user_turn("Hello!", prompts.render_related([]))}]
    cache = tmp_path / "cache"
    first = open_policy(settings, "smollm2-135m")
    try:
        assert first.warm_prefix(fixed, cache)["cache"] == "miss"
        a = first.step(turn)
    finally:
        first.close()
    files = list(cache.glob("prefix-*.kv"))
    assert len(files) == 1 and files[0].stat().st_mode & 0o777 == 0o600
    second = open_policy(settings, "smollm2-135m")
    try:
        info = second.warm_prefix(fixed, cache)
        assert info["cache"] == "hit" and info["prefix_tokens"] > 500
        b = second.step(turn)
    finally:
        second.close()
    assert b.reused_prompt_tokens >= info["prefix_tokens"]
    assert b.text == a.text
    files[0].write_bytes(b"AGKV" + b"\xff" * 16)  # corrupt: ignored and rebuilt
    third = open_policy(settings, "smollm2-135m")
    try:
        assert third.warm_prefix(fixed, cache)["cache"] == "miss"
    finally:
        third.close()


def test_many_short_messages_are_trimmed_with_their_template_overhead(make_agent):
    """Hundreds of short messages: their chat-template tokens count too, so the prompt still fits."""
    from agemem_lite.agent import TEMPLATE_TOKENS_PER_MESSAGE

    agent, policy = make_agent([answer_step("ok")], n_ctx=2048, context_budget=1024, max_new_tokens=256)
    for i in range(300):
        agent.context.append("user" if i % 2 == 0 else "assistant", f"note {i} ok")
    agent.turn("What now?")
    prompt = agent.turns[-1].steps[0].prompt
    content = sum(policy.count_tokens(m["content"]) for m in prompt)
    assert content + TEMPLATE_TOKENS_PER_MESSAGE * len(prompt) <= 2048 - 256
    assert len(prompt) < 300


def test_the_policy_grammar_offers_only_the_agents_tools(small_policy, store, embedder, settings):
    """A method without Retrieve_memory must not be offered it by the decoding grammar."""
    import dataclasses

    from agemem_lite.agent import Agent
    from agemem_lite.memory.tools import grammar_schemas

    s = dataclasses.replace(settings, max_steps_per_turn=2, max_new_tokens=64)
    try:
        agent = Agent(small_policy, store, embedder, s, demonstrations=False, tools=("Add_memory",))
        turn = agent.turn("My bike is red.")
        assert [t["name"] for t in small_policy.tool_schemas] == ["Add_memory"]
        assert all(c["name"] == "Add_memory" for st in turn.steps for c in st.calls)
        Agent(small_policy, store, embedder, s, demonstrations=False).turn("Hello")
        assert [t["name"] for t in small_policy.tool_schemas] == [t["name"] for t in grammar_schemas()]
    finally:
        small_policy.use_tools(grammar_schemas())
