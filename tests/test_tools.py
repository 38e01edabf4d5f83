"""The six memory tools (SPEC §2) on a real SQLite + sqlite-vec store and the real embedder.

Every invalid call must come back as ``ok=False`` with a message that tells the
model what to do, and must leave the store (rows and history) and the context
exactly as they were.
"""

from __future__ import annotations

import pytest

from agemem_lite import prompts
from agemem_lite.memory.stm import Context
from agemem_lite.memory.tools import TOOLS, ToolEnv, dispatch, grammar_schemas, tool_schemas
from agemem_lite.protocol import ToolCall

NS = "default"


def words(text: str) -> int:
    return len(text.split())


def make_env(store, embedder, **kw) -> ToolEnv:
    ctx = Context(words, 4096)
    ctx.append("system", "You are a memory assistant.")
    ctx.append("user", "first question")
    ctx.append("assistant", "first answer")
    ctx.append("user", "pending question")
    return ToolEnv(store=store, embed=embedder.embed_one, namespace=NS, context=ctx,
                   summarise=lambda transcript: "they talked", **kw)


@pytest.fixture
def env(store, embedder):
    return make_env(store, embedder)


def call(env, name, **arguments):
    return dispatch(env, ToolCall(name, arguments))


def snapshot(env):
    """Everything a tool could change: store rows, history, context messages, seen ids."""
    return (env.store.export(NS), [h.to_dict() for h in env.store.history(NS)],
            [m.to_dict() for m in env.context.messages], set(env.seen_ids))


def add(env, content, **kw):
    r = call(env, "Add_memory", content=content, **kw)
    assert r.ok, r.text
    return r.data["memory"]["id"]


def assert_rejected(env, name, arguments, *fragments):
    """The call fails with a message containing ``fragments`` and changes nothing."""
    before = snapshot(env)
    r = dispatch(env, ToolCall(name, arguments))
    assert r.ok is False
    assert r.name == name
    for f in fragments:
        assert f in r.text, r.text
    assert snapshot(env) == before
    return r


# -- the table -----------------------------------------------------------------------

def test_tool_table_has_the_six_paper_tools():
    assert set(TOOLS) == {"Add_memory", "Update_memory", "Delete_memory", "Retrieve_memory",
                          "Summary_context", "Filter_context"}
    assert [s["name"] for s in tool_schemas()] == list(TOOLS)


def test_grammar_schemas_leave_out_free_form_objects_but_keep_required():
    by_name = {s["name"]: s["parameters"] for s in grammar_schemas()}
    assert "metadata" not in by_name["Add_memory"]["properties"]
    assert "metadata_filter" not in by_name["Retrieve_memory"]["properties"]
    assert by_name["Delete_memory"]["required"] == ["memory_id", "confirmation"]


# -- Add_memory ------------------------------------------------------------------------

def test_add_memory_stores_a_row_and_marks_its_id_seen(env):
    r = call(env, "Add_memory", content="  The user's cat Tom is four.  ", memory_type="Preference",
             metadata={"tags": ["pets"]})
    assert r.ok and r.text == "stored as mem_1"
    [row] = env.store.export(NS)
    assert row["content"] == "The user's cat Tom is four."
    assert row["memory_type"] == "preference"
    assert row["metadata"] == {"tags": ["pets"]}
    assert row["source"] == "agent"
    assert "mem_1" in env.seen_ids
    assert [h.op for h in env.store.history(NS)] == ["add"]


def test_add_memory_with_unknown_type_stores_a_note(env):
    add(env, "Something odd.", memory_type="gossip")
    assert env.store.export(NS)[0]["memory_type"] == "note"


def test_add_memory_accepts_a_number_as_content(env):
    add(env, 42)
    assert env.store.export(NS)[0]["content"] == "42"


def test_add_memory_without_content_returns_error_to_model(env):
    assert_rejected(env, "Add_memory", {}, 'missing required argument "content"')
    assert_rejected(env, "Add_memory", {"content": None}, 'missing required argument "content"')


@pytest.mark.parametrize("content", ["", "   \n"])
def test_add_memory_with_blank_content_returns_error_to_model(env, content):
    assert_rejected(env, "Add_memory", {"content": content}, '"content" must not be empty')


@pytest.mark.parametrize("content", [["a fact"], {"text": "a fact"}, True])
def test_add_memory_with_non_string_content_returns_error_to_model(env, content):
    assert_rejected(env, "Add_memory", {"content": content}, '"content" must be a string')


def test_add_memory_with_non_object_metadata_returns_error_to_model(env):
    assert_rejected(env, "Add_memory", {"content": "x", "metadata": ["tag"]}, '"metadata" must be a JSON object')


def test_add_memory_with_non_string_type_returns_error_to_model(env):
    assert_rejected(env, "Add_memory", {"content": "x", "memory_type": ["fact"]}, '"memory_type" must be a string')


# -- Update_memory ---------------------------------------------------------------------

def test_update_memory_replaces_content_and_keeps_the_id(env):
    mid = add(env, "Tom lives in Oslo.")
    before = env.store.export(NS)[0]
    r = call(env, "Update_memory", memory_id=mid, content="Tom lives in Bergen.", metadata={"city": "Bergen"})
    assert r.ok and r.text == f"{mid} updated"
    [row] = env.store.export(NS)
    assert row["id"] == mid and row["content"] == "Tom lives in Bergen."
    assert row["metadata"] == {"city": "Bergen"}
    assert row["updated_at"] > before["updated_at"]
    assert r.data["before"]["content"] == "Tom lives in Oslo."
    assert [h.op for h in env.store.history(NS)] == ["update", "add"]
    # the new embedding is searchable
    hits = env.store.search(NS, "Bergen", env.embed("Where does Tom live? Bergen"), top_k=1)
    assert hits[0].memory.content == "Tom lives in Bergen."


@pytest.mark.parametrize("spelling", ["mem_1", "MEM_1", " mem_1 ", "1", 1])
def test_update_memory_forgives_loose_id_spellings(env, spelling):
    add(env, "Tom lives in Oslo.")
    r = call(env, "Update_memory", memory_id=spelling, content="Tom lives in Bergen.")
    assert r.ok, r.text
    assert env.store.export(NS)[0]["content"] == "Tom lives in Bergen."


def test_update_with_unknown_id_returns_error_to_model(env):
    add(env, "Tom lives in Oslo.")
    env.seen_ids.add("mem_7")  # even if it was somehow "seen"
    r = assert_rejected(env, "Update_memory", {"memory_id": "mem_7", "content": "x"}, "no memory mem_7")
    assert "Add_memory" in r.text and "Retrieve_memory" in r.text


def test_update_with_invented_id_returns_error_to_model(env):
    add(env, "Anna's birthday is March 3.")
    assert_rejected(env, "Update_memory", {"memory_id": "sister_birthday", "content": "x"},
                    "'sister_birthday' is not a memory id", "mem_3")


def test_update_needs_an_id_seen_in_this_context(store, embedder):
    writer = make_env(store, embedder)
    mid = add(writer, "Tom lives in Oslo.")
    fresh = make_env(store, embedder)  # a new conversation: nothing shown yet
    assert_rejected(fresh, "Update_memory", {"memory_id": mid, "content": "Tom lives in Bergen."},
                    "has not been shown in this conversation", "Retrieve_memory")
    r = call(fresh, "Retrieve_memory", query="Where does Tom live?")
    assert r.ok and mid in fresh.seen_ids
    assert call(fresh, "Update_memory", memory_id=mid, content="Tom lives in Bergen.").ok
    assert store.export(NS)[0]["content"] == "Tom lives in Bergen."


def test_update_without_content_returns_error_to_model(env):
    mid = add(env, "Tom lives in Oslo.")
    assert_rejected(env, "Update_memory", {"memory_id": mid}, 'missing required argument "content"')


def test_update_without_id_returns_error_to_model(env):
    add(env, "Tom lives in Oslo.")
    assert_rejected(env, "Update_memory", {"content": "x"}, 'missing required argument "memory_id"')


@pytest.mark.parametrize("memory_id", [["mem_1"], {"id": 1}, True, 1.5, "mem_0", "mem_-1"])
def test_update_with_malformed_id_returns_error_to_model(env, memory_id):
    add(env, "Tom lives in Oslo.")
    r = assert_rejected(env, "Update_memory", {"memory_id": memory_id, "content": "x"})
    assert "memory_id" in r.text or "not a memory id" in r.text


# -- Delete_memory ---------------------------------------------------------------------

def test_delete_memory_removes_the_row_and_forgets_the_id(env):
    mid = add(env, "The user plays the cello.")
    keep = add(env, "The user likes tea.")
    r = call(env, "Delete_memory", memory_id=mid, confirmation=True)
    assert r.ok and r.text == f"{mid} deleted"
    assert [m["id"] for m in env.store.export(NS)] == [keep]
    assert mid not in env.seen_ids
    assert env.store.history(NS)[0].op == "delete"
    # deleted means gone: deleting again is an error, not a crash
    env.seen_ids.add(mid)
    assert_rejected(env, "Delete_memory", {"memory_id": mid, "confirmation": True}, f"no memory {mid}")


@pytest.mark.parametrize("confirmation", [False, "no", "false", 0, 1, None])
def test_delete_without_true_confirmation_returns_error_to_model(env, confirmation):
    mid = add(env, "The user plays the cello.")
    assert_rejected(env, "Delete_memory", {"memory_id": mid, "confirmation": confirmation},
                    '"confirmation": true')


def test_delete_without_confirmation_argument_returns_error_to_model(env):
    mid = add(env, "The user plays the cello.")
    assert_rejected(env, "Delete_memory", {"memory_id": mid}, '"confirmation": true')


@pytest.mark.parametrize("arguments", [{"confirmed": True}, {"confirmation": "confirmed"},
                                       {"confirmation": "yes"}, {"confirmation": " True "}])
def test_delete_accepts_the_papers_confirmed_alias(env, arguments):
    mid = add(env, "The user plays the cello.")
    r = call(env, "Delete_memory", memory_id=mid, **arguments)
    assert r.ok, r.text
    assert env.store.count(NS) == 0


def test_delete_with_unseen_id_returns_error_to_model(store, embedder):
    mid = add(make_env(store, embedder), "The user plays the cello.")
    assert_rejected(make_env(store, embedder), "Delete_memory", {"memory_id": mid, "confirmation": True},
                    "has not been shown")
    assert store.count(NS) == 1


# -- Retrieve_memory -------------------------------------------------------------------

def test_retrieve_memory_lists_hits_with_ids_and_marks_them_seen(store, embedder):
    writer = make_env(store, embedder)
    cat = add(writer, "The user's cat Tom is four years old.")
    add(writer, "The user works as a nurse in Leeds.")
    add(writer, "The user's favourite food is ramen.", memory_type="preference")
    reader = make_env(store, embedder)
    before = store.export(NS)
    r = call(reader, "Retrieve_memory", query="How old is my cat?", top_k=1)
    assert r.ok
    assert r.text == f"\n[{cat}] The user's cat Tom is four years old."
    assert reader.seen_ids == {cat}
    [hit] = r.data["hits"]
    assert hit["memory"]["id"] == cat and hit["similarity"] > 0.5
    assert store.export(NS) == before  # retrieval writes nothing


def test_retrieve_memory_leaves_out_hits_under_the_relevance_floor(store, embedder):
    """The dentist case of docs/training.md: top_k=3 over three stored facts used to hand the
    policy the sister's birthday (cosine ~0.01) beside the dentist, and it answered with it."""
    writer = make_env(store, embedder)
    add(writer, "The user's sister Lena's birthday is on March 14.")
    dentist = add(writer, "The user's dentist is Dr. Okafor, whose office is in Leeds.")
    add(writer, "The user's cat Tom is four years old.")
    reader = make_env(store, embedder, min_similarity=0.2)
    r = call(reader, "Retrieve_memory", query="What is the name of my dentist?")
    assert r.ok and [h["memory"]["id"] for h in r.data["hits"]] == [dentist]
    assert r.text == f"\n[{dentist}] The user's dentist is Dr. Okafor, whose office is in Leeds."
    assert reader.seen_ids == {dentist}  # a dropped hit's id cannot be updated or deleted
    assert r.data["below_floor"] == 2
    # nothing stored is about food: the floor leaves nothing rather than three wrong lines
    r = call(reader, "Retrieve_memory", query="What is my favourite food?")
    assert r.ok and r.text == "no memories found" and r.data["hits"] == []
    # -1 turns the floor off: top_k fills with whatever is stored
    r = call(make_env(store, embedder, min_similarity=-1.0), "Retrieve_memory",
             query="What is the name of my dentist?")
    assert len(r.data["hits"]) == 3 and r.data["below_floor"] == 0


def test_retrieve_memory_defaults_to_top_3(env):
    for i in range(5):
        add(env, f"Fact number {i} about the garden.")
    r = call(env, "Retrieve_memory", query="garden")
    assert r.ok and len(r.data["hits"]) == 3
    assert r.text.count("[mem_") == 3


def test_retrieve_memory_accepts_top_k_as_digit_string(env):
    for i in range(3):
        add(env, f"Fact number {i} about the garden.")
    r = call(env, "Retrieve_memory", query="garden", top_k="2")
    assert r.ok and len(r.data["hits"]) == 2


def test_retrieve_memory_on_empty_store_says_nothing_found(env):
    r = call(env, "Retrieve_memory", query="the garden")
    assert r.ok and r.text == "no memories found" and r.data["hits"] == []


def test_retrieve_memory_applies_metadata_filter(env):
    add(env, "The user likes green tea.", memory_type="preference")
    fact = add(env, "The user drank tea in Kyoto.", memory_type="event")
    r = call(env, "Retrieve_memory", query="tea", metadata_filter={"memory_type": "event"})
    assert r.ok and [h["memory"]["id"] for h in r.data["hits"]] == [fact]


@pytest.mark.parametrize("top_k", [0, 21, -1, "three", 2.5, True, [3], "0"])
def test_retrieve_with_top_k_out_of_range_returns_error_to_model(env, top_k):
    add(env, "The user likes tea.")
    assert_rejected(env, "Retrieve_memory", {"query": "tea", "top_k": top_k}, '"top_k" must be an integer from 1 to 20')


def test_retrieve_with_bad_metadata_filter_returns_error_to_model(env):
    add(env, "The user likes tea.")
    assert_rejected(env, "Retrieve_memory", {"query": "tea", "metadata_filter": {"tags": {"$gt": 1}}},
                    "bad metadata_filter")
    assert_rejected(env, "Retrieve_memory", {"query": "tea", "metadata_filter": "preference"},
                    '"metadata_filter" must be a JSON object')


@pytest.mark.parametrize("query", ["all", "the user", "mem_13", "everything you remember about me", "*",
                                   "the pasted fact"])
def test_retrieve_with_a_query_that_names_nothing_searches_the_users_message(store, embedder, query):
    """Chat with the shipped policy: the answer shown, it searched for "all" (or an id), found
    nothing past the floor and replied "You have not told me that yet."."""
    writer = make_env(store, embedder)
    home = add(writer, "I live in Oxford")
    add(writer, "Anika is a teacher")
    reader = make_env(store, embedder, min_similarity=0.2)
    reader.turn_text = "Where do I live now?"
    r = call(reader, "Retrieve_memory", query=query)
    direct = call(make_env(store, embedder, min_similarity=0.2), "Retrieve_memory", query="Where do I live now?")
    assert r.ok and [h["memory"]["id"] for h in r.data["hits"]] == [home]
    assert r.text == direct.text == f"\n[{home}] I live in Oxford"   # read as any search's result
    assert r.data["query"] == query and r.data["searched"] == "Where do I live now?"
    assert reader.seen_ids == {home}


@pytest.mark.parametrize("message", ["What do you know about me?", "Tell me everything you remember about me.",
                                     "Can you list what you've saved about me?"])
def test_retrieve_for_a_message_that_names_nothing_either_lists_the_newest_memories(store, embedder, message):
    """Chat with the shipped policy: "What do you know about me?" searched the message, and no
    memory was similar enough to it, so it replied "You have not told me that yet."."""
    writer = make_env(store, embedder)
    ids = [add(writer, t) for t in ("I live in Oxford.", "My cat is called Miso.", "I like tea.")]
    reader = make_env(store, embedder, min_similarity=0.2)
    reader.turn_text = reader.judge_question = message   # as Agent.turn sets them for a question
    r = call(reader, "Retrieve_memory", query="what the user told me")
    assert r.ok and r.data["newest"] and [h["memory"]["id"] for h in r.data["hits"]] == ids[::-1]
    assert r.text == "\n" + "\n".join(f"[{i}] {t}" for i, t in zip(ids[::-1], ("I like tea.", "My cat is called Miso.",
                                                                                "I live in Oxford.")))
    assert reader.seen_ids == set(ids)
    two = call(reader, "Retrieve_memory", query="all", top_k=2)
    assert [h["memory"]["id"] for h in two.data["hits"]] == ids[:0:-1]   # top_k, when given, is how many
    # the policy's own phrase for such a question finds nothing past the floor: the newest too
    own = call(reader, "Retrieve_memory", query="your knowledge about me")
    assert own.data["newest"] and [h["memory"]["id"] for h in own.data["hits"]] == ids[::-1]
    # a phrase that finds something keeps its hits
    found = call(reader, "Retrieve_memory", query="the user's cat")
    assert not found.data.get("newest") and [h["memory"]["id"] for h in found.data["hits"]][0] == ids[1]
    # a filter is not dropped: the message is searched with it, as before
    kept = call(reader, "Retrieve_memory", query="all", metadata_filter={"memory_type": "preference"})
    assert kept.ok and not kept.data.get("newest") and kept.data["hits"] == []


def test_a_search_that_finds_nothing_in_a_statement_turn_stays_empty(store, embedder):
    """Only a question that names nothing gets the newest memories in place of an empty search."""
    writer = make_env(store, embedder)
    add(writer, "I live in Oxford.")
    reader = make_env(store, embedder, min_similarity=0.2)
    reader.turn_text = "I told you about me."   # names nothing, and is no question (judge_question unset)
    r = call(reader, "Retrieve_memory", query="your knowledge about me")
    assert r.ok and r.data["hits"] == [] and not r.data.get("newest")


def test_retrieve_with_a_query_that_names_nothing_and_no_turn_is_an_error_to_model(env):
    add(env, "I live in Oxford")
    assert_rejected(env, "Retrieve_memory", {"query": "all"}, 'the query "all" names nothing to search for')


@pytest.mark.parametrize("query", ["the user's dentist", "Anika", "where do I live", "mem_13 dentist", "name",
                                   "the note about my car"])
def test_retrieve_with_a_query_that_names_something_searches_it(env, query):
    env.turn_text = "Something else entirely."
    r = call(env, "Retrieve_memory", query=query)
    assert r.ok and r.data["searched"] == query


def test_retrieve_without_query_returns_error_to_model(env):
    assert_rejected(env, "Retrieve_memory", {"top_k": 2}, 'missing required argument "query"')


# -- Summary_context -------------------------------------------------------------------

@pytest.mark.parametrize("span", ["all", "full", "ALL", " Full "])
def test_summary_context_all_and_its_full_alias_replace_the_past(env, span):
    r = call(env, "Summary_context", span=span)
    assert r.ok and r.text.startswith("replaced 2 messages by a summary")
    assert [(m.role, m.kind) for m in env.context.messages] == [
        ("system", ""), ("user", "summary"), ("user", "")]
    assert "they talked" in env.context.messages[1].content
    assert env.context.messages[-1].content == "pending question"


@pytest.mark.parametrize("span", ["1", 1])
def test_summary_context_accepts_rounds_as_string_or_number(env, span):
    r = call(env, "Summary_context", span=span)
    assert r.ok and r.data["messages"] == 2


def test_summary_context_defaults_to_all(env):
    assert call(env, "Summary_context").ok
    assert env.context.messages[1].kind == "summary"


@pytest.mark.parametrize("span", ["-1", "0", "half", "", "1.5", [2], {"n": 2}, True, 2.0])
def test_summary_with_bad_span_returns_error_to_model(env, span):
    r = assert_rejected(env, "Summary_context", {"span": span})
    assert "span" in r.text


def test_summary_with_nothing_to_summarise_returns_error_to_model(store, embedder):
    ctx = Context(words, 4096)
    ctx.append("system", "sys")
    ctx.append("user", "the only question")
    env = ToolEnv(store=store, embed=embedder.embed_one, namespace=NS, context=ctx, summarise=lambda t: "s")
    assert_rejected(env, "Summary_context", {"span": "all"}, "nothing to summarise")
    assert_rejected(env, "Summary_context", {"span": "3"}, "nothing to summarise")


def test_summary_does_not_touch_the_store(env):
    add(env, "The user likes tea.")
    before = env.store.export(NS), [h.to_dict() for h in env.store.history(NS)]
    assert call(env, "Summary_context", span="all").ok
    assert (env.store.export(NS), [h.to_dict() for h in env.store.history(NS)]) == before


# -- Filter_context --------------------------------------------------------------------

def test_filter_context_removes_matching_messages(store, embedder):
    ctx = Context(words, 4096)
    ctx.append("system", "You are a helpful assistant.")
    ctx.append("user", "The weather today is sunny and warm.")
    ctx.append("assistant", "My sister Anna was born on March 3rd.")
    ctx.append("user", "What did I say about my sister?")
    env = ToolEnv(store=store, embed=embedder.embed_one, namespace=NS, context=ctx, summarise=lambda t: "")
    r = call(env, "Filter_context", criteria="sunny warm weather")
    assert r.ok and r.text.startswith("removed 1 messages")
    assert [m.content for m in ctx.messages] == [
        "You are a helpful assistant.", "My sister Anna was born on March 3rd.", "What did I say about my sister?"]
    assert r.data["removed"][0]["cosine"] >= 0.6


def test_filter_with_nothing_matching_removes_nothing(env):
    before = snapshot(env)
    r = call(env, "Filter_context", criteria="quantum chromodynamics lattice simulations")
    assert r.ok and r.data["messages"] == 0
    assert snapshot(env) == before


def test_context_edits_end_with_the_new_fill_for_a_policy_that_reads_it(store, embedder):
    """With ``usage`` (Agent(context_usage=True)) a Summary/Filter result says how full the context is
    after the edit: the user turn's line was written before it, and round U filtered again and again."""
    env = make_env(store, embedder, usage=lambda: prompts.render_context_usage(env.context.tokens, 20))
    r = call(env, "Summary_context", span="all")
    assert r.ok and r.text.endswith(f" [Context: {10 * round(10 * env.context.tokens / 20)} % full]")
    env.context.append("assistant", "The weather today is sunny and warm.")
    env.context.append("user", "pending question")
    r = call(env, "Filter_context", criteria="sunny warm weather")
    assert r.ok and r.data["messages"] == 1 and r.text.startswith("removed 1 messages")
    assert r.text.endswith(f"tokens) {prompts.render_context_usage(env.context.tokens, 20)}")
    plain = make_env(store, embedder)
    assert "[Context:" not in call(plain, "Summary_context", span="all").text


@pytest.mark.parametrize("criteria", [None, "", ["weather"]])
def test_filter_without_criteria_returns_error_to_model(env, criteria):
    assert_rejected(env, "Filter_context", {} if criteria is None else {"criteria": criteria}, '"criteria"')


# -- dispatch --------------------------------------------------------------------------

def test_unknown_tool_returns_error_listing_the_tools(env):
    r = assert_rejected(env, "Forget_everything", {"content": "x"}, "unknown tool 'Forget_everything'")
    for name in TOOLS:
        assert name in r.text


@pytest.mark.parametrize("name", ["add_memory", "ADD_MEMORY", "Add memory"])
def test_unknown_tool_with_wrong_case_suggests_the_right_name(env, name):
    assert_rejected(env, name, {"content": "x"}, "did you mean Add_memory?")


def test_non_object_arguments_return_error_to_model(env):
    before = snapshot(env)
    r = dispatch(env, ToolCall("Add_memory", ["x"]))
    assert r.ok is False and '"arguments" must be a JSON object' in r.text
    assert snapshot(env) == before


def test_tool_outside_the_allowed_set_is_refused_before_it_runs(store, embedder):
    asked = []
    env = make_env(store, embedder, allowed=frozenset({"Retrieve_memory"}),
                   approve=lambda c: asked.append(c) or True)
    assert_rejected(env, "Add_memory", {"content": "The user likes tea."},
                    "Add_memory is not available here; tools: Retrieve_memory")
    assert_rejected(env, "Summary_context", {"span": "all"}, "Summary_context is not available here")
    assert asked == [] and store.count(NS) == 0
    assert call(env, "Retrieve_memory", query="tea").ok


def test_tool_refused_for_being_off_even_with_invalid_arguments(store, embedder):
    env = make_env(store, embedder, allowed=frozenset({"Add_memory"}))
    assert_rejected(env, "Delete_memory", ["not", "an", "object"], "Delete_memory is not available here")


def test_with_no_allowed_tools_every_call_is_refused_and_the_model_is_told_to_answer(store, embedder):
    env = make_env(store, embedder, allowed=frozenset())
    for name in TOOLS:
        assert_rejected(env, name, {"query": "x"}, f"{name} is not available here", "write an <answer>")


def test_unknown_tool_lists_only_the_allowed_tools(store, embedder):
    env = make_env(store, embedder, allowed=frozenset({"Add_memory", "Retrieve_memory"}))
    r = assert_rejected(env, "Forget_everything", {}, "tools: Add_memory, Retrieve_memory")
    assert "Delete_memory" not in r.text


def test_schemas_of_an_empty_tool_list_are_empty():
    assert tool_schemas([]) == [] and grammar_schemas(()) == []
    assert [s["name"] for s in grammar_schemas(["Retrieve_memory"])] == ["Retrieve_memory"]


def test_results_serialise_for_traces(env):
    d = call(env, "Add_memory", content="x").to_dict()
    assert set(d) == {"name", "ok", "text", "data"} and d["ok"] is True


# -- approval gate ---------------------------------------------------------------------

def test_rejected_approval_stores_nothing(store, embedder):
    asked: list[ToolCall] = []

    def approve(c: ToolCall) -> bool:
        asked.append(c)
        return False

    env = make_env(store, embedder, approve=approve)
    r = assert_rejected(env, "Add_memory", {"content": "The user likes tea."}, "rejected")
    assert "do not retry" in r.text
    assert asked == [ToolCall("Add_memory", {"content": "The user likes tea."})]
    assert store.count(NS) == 0 and store.history(NS) == []


def test_rejected_approval_leaves_update_and_delete_undone(store, embedder):
    mid = add(make_env(store, embedder), "Tom lives in Oslo.")
    env = make_env(store, embedder, approve=lambda c: False)
    env.seen_ids.add(mid)
    assert_rejected(env, "Update_memory", {"memory_id": mid, "content": "Tom lives in Bergen."}, "rejected")
    assert_rejected(env, "Delete_memory", {"memory_id": mid, "confirmation": True}, "rejected")
    assert store.export(NS)[0]["content"] == "Tom lives in Oslo."


def test_approval_is_not_asked_for_invalid_calls_or_reads(store, embedder):
    asked = []
    env = make_env(store, embedder, approve=lambda c: asked.append(c) or True)
    assert not call(env, "Add_memory").ok
    assert call(env, "Retrieve_memory", query="tea").ok
    assert call(env, "Summary_context", span="all").ok
    assert asked == []
    assert call(env, "Add_memory", content="The user likes tea.").ok
    assert [c.name for c in asked] == ["Add_memory"] and store.count(NS) == 1


# -- known gaps: calls the grammar allows (or a lenient parse lets through) that raise ----

BUG_CALLS = [
    pytest.param("Add_memory", {"content": "tea \ud800"}, id="lone-surrogate-content"),
    pytest.param("Filter_context", {"criteria": "tea \ud800"}, id="lone-surrogate-criteria"),
    pytest.param("Summary_context", {"span": "²"}, id="superscript-span"),
    pytest.param("Retrieve_memory", {"query": "tea", "top_k": "²"}, id="superscript-top-k"),
    pytest.param("Update_memory", {"memory_id": "mem_99999999999999999999", "content": "x"}, id="huge-id"),
    pytest.param("Delete_memory", {"memory_id": 2 ** 70, "confirmation": True}, id="huge-int-id"),
    pytest.param("Add_memory", {"content": "x", "metadata": {"n": 2 ** 70}}, id="huge-int-metadata"),
    pytest.param("Add_memory", {"content": "x", "metadata": {"n": float("nan")}}, id="nan-metadata"),
    pytest.param("Retrieve_memory", {"query": "tea", "metadata_filter": {"n": 2 ** 70}}, id="huge-int-filter"),
]


@pytest.mark.parametrize("name, arguments", BUG_CALLS)
def test_odd_but_parseable_arguments_return_error_to_model(env, name, arguments):
    add(env, "The user likes tea.")
    before = snapshot(env)
    r = dispatch(env, ToolCall(name, arguments))
    assert r.ok is False
    assert snapshot(env) == before


def test_retrieve_with_undecodable_query_does_not_blame_the_filter(env):
    r = call(env, "Retrieve_memory", query="tea \ud800")
    assert r.ok is False and "metadata_filter" not in r.text
