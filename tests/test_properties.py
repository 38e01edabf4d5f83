"""Property tests (hypothesis): the protocol parser and the tool dispatcher never raise,
and a failed tool call never changes the store or the context.

Inputs that once crashed (lone surrogates, non-ASCII digits, integers beyond
int64, NaN, absurd nesting) are pinned as explicit regression tests in
test_protocol.py and test_tools.py.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, assume, given, settings as hyp_settings, strategies as st

from agemem_lite.memory.stm import Context
from agemem_lite.memory.store import MemoryStore
from agemem_lite.memory.tools import TOOLS, ToolEnv, dispatch
from agemem_lite.protocol import ToolCall, parse_step, render_step

NS = "default"
FAST = hyp_settings(max_examples=150, deadline=None)
SLOW = hyp_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])

FRAGMENTS = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<answer>", "</answer>", "[", "]", "{", "}",
             '"name"', '"arguments"', ":", ",", '"', "```", "```json", "\n", " ", '"Add_memory"',
             '"content"', '"x"', "null", "true", "1", "\\", "\\u00e9", "Kind: "]

# Text without lone surrogates (test_tools pins that crash) and without digit-like
# characters int() refuses ("²": test_tools pins that crash too).
safe_text = st.text(max_size=40).filter(lambda s: not (s.strip().isdigit() and not s.strip().isdecimal()))
INT64 = st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1)
json_scalars = st.none() | st.booleans() | INT64 | st.floats(allow_nan=False, allow_infinity=False) | safe_text
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(safe_text, inner, max_size=3), max_leaves=8)
ARG_NAMES = sorted({k for _, schema in TOOLS.values() for k in schema["properties"]} | {"confirmed", "parameters"})


def fragment_text():
    return st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=30).map("".join)


# -- parse_step ------------------------------------------------------------------------

def check_parsed(p) -> None:
    assert p.kind in ("answer", "tool_call", "invalid")
    if p.kind == "invalid":
        assert isinstance(p.error, str) and p.error
        assert p.calls == () and p.answer is None
    elif p.kind == "answer":
        assert p.answer and p.answer == p.answer.strip() and p.calls == ()
    else:
        assert p.calls and p.answer is None
        for c in p.calls:
            assert isinstance(c.name, str) and isinstance(c.arguments, dict)
    assert isinstance(p.think, str)


@FAST
@given(st.text())
def test_parse_step_never_raises_on_arbitrary_text(text):
    check_parsed(parse_step(text))


@FAST
@given(fragment_text())
def test_parse_step_never_raises_on_protocol_fragments(text):
    check_parsed(parse_step(text))


@FAST
@given(st.sampled_from(["", "<think>x</think>", "<think>x</think>\n"]),
       st.sampled_from(["<tool_call>", "```json\n", ""]), json_values,
       st.sampled_from(["</tool_call>", "\n```", ""]))
def test_parse_step_never_raises_on_arbitrary_json_bodies(head, open_tag, value, close_tag):
    check_parsed(parse_step(head + open_tag + json.dumps(value) + close_tag))


# Tag-free think text (the think cannot contain tags); JSON arguments may contain
# "<" because render_step escapes it.
tag_free = st.text(alphabet=st.characters(exclude_characters="<", exclude_categories=("Cs",)), max_size=30)


@FAST
@given(tag_free, st.lists(st.fixed_dictionaries({
    "name": st.sampled_from(list(TOOLS)),
    "arguments": st.dictionaries(st.sampled_from(ARG_NAMES), json_values, max_size=4)}),
    min_size=1, max_size=3))
def test_rendered_tool_calls_parse_back_to_the_same_calls(think, calls):
    p = parse_step(render_step(think, calls=calls))
    assert p.kind == "tool_call", p.error
    assert p.think == think.strip()
    assert [c.to_dict() for c in p.calls] == calls


@FAST
@given(tag_free, tag_free.filter(lambda s: s.strip()))
def test_rendered_answers_parse_back_to_the_same_answer(think, answer):
    p = parse_step(render_step(think, answer=answer))
    assert (p.kind, p.think, p.answer) == ("answer", think.strip(), answer.strip())


# -- dispatch --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    s = MemoryStore(tmp_path_factory.mktemp("props") / "memory.db", dim=384)
    yield s
    s.close()


def fresh_env(store, embedder) -> ToolEnv:
    ctx = Context(lambda t: len(t.split()), 4096)
    ctx.append("system", "You are a memory assistant.")
    ctx.append("user", "The weather today is sunny and warm.")
    ctx.append("assistant", "My sister Anna was born on March 3rd.")
    ctx.append("user", "pending question")
    env = ToolEnv(store=store, embed=embedder.embed_one, namespace=NS, context=ctx,
                  summarise=lambda transcript: "summary")
    if store.count(NS) < 3:  # keep a few memories around so Update/Delete can succeed
        for text in ("The user likes tea.", "Tom lives in Oslo.", "The cat is four."):
            store.add(NS, text, embedder.embed_one(text))
    env.seen_ids.update(m["id"] for m in store.export(NS))
    return env


def snapshot(env):
    return (env.store.export(NS), [h.to_dict() for h in env.store.history(NS, limit=10_000)],
            [m.to_dict() for m in env.context.messages])


SENTENCES = st.sampled_from(["The user likes tea.", "Tom moved to Bergen.", "sunny warm weather", "", "  "])
VALUES = {  # plausible and implausible values per argument name
    "content": SENTENCES | json_values,
    "query": SENTENCES | json_values,
    "criteria": SENTENCES | json_values,
    "memory_id": st.integers(0, 40).map(lambda n: f"mem_{n}") | st.integers(-1, 40) | json_values,
    "confirmation": st.booleans() | st.sampled_from(["true", "yes", "confirmed", "no"]) | json_values,
    "confirmed": st.booleans() | json_values,
    "top_k": st.integers(-2, 25) | st.sampled_from(["2", " 3 ", "x"]) | json_values,
    "span": st.sampled_from(["all", "full", "1", "2", "0", "-1", "9"]) | st.integers(-1, 9) | json_values,
    "memory_type": st.sampled_from(["fact", "preference", "event", "Task", "gossip"]) | json_values,
    "metadata": st.dictionaries(safe_text, json_scalars, max_size=3) | json_values,
    "metadata_filter": st.dictionaries(st.sampled_from(["memory_type", "source", "tags", "x"]) | safe_text,
                                       json_values, max_size=2) | json_values,
    "parameters": json_values,
}
REQUIRED = {name: schema.get("required", []) for name, (_, schema) in TOOLS.items()}


@st.composite
def tool_calls(draw):
    """A tool call as a model might write it: mostly known tools with mostly plausible arguments."""
    if draw(st.integers(0, 9)) < 8:
        name = draw(st.sampled_from(list(TOOLS)))
    else:
        name = draw(st.sampled_from([n.lower() for n in TOOLS] + ["Add memory", "Forget_all"]) | safe_text)
    keys = set(draw(st.lists(st.sampled_from(ARG_NAMES), unique=True, max_size=4)))
    if draw(st.integers(0, 3)) > 0:
        keys |= set(REQUIRED.get(name, []))
    args = {k: draw(VALUES[k]) for k in sorted(keys)}
    args.update(draw(st.dictionaries(safe_text, json_values, max_size=1)))
    return name, args


@SLOW
@given(call=tool_calls())
def test_dispatch_never_raises_and_failed_calls_change_nothing(shared_store, embedder, call):
    name, args = call
    env = fresh_env(shared_store, embedder)
    before = snapshot(env)
    result = dispatch(env, ToolCall(name, args))
    assert isinstance(result.ok, bool) and isinstance(result.text, str) and result.text
    if not result.ok:
        assert snapshot(env) == before, result.text
    elif name in ("Retrieve_memory", "Summary_context", "Filter_context"):
        assert snapshot(env)[:2] == before[:2]  # STM tools never write the LTM


@SLOW
@given(calls=st.lists(tool_calls().map(lambda c: {"name": c[0], "arguments": c[1]}), min_size=1, max_size=3))
def test_parsed_tool_calls_dispatch_without_raising(shared_store, embedder, calls):
    """What the model writes -> parse_step -> dispatch: never an exception."""
    text = render_step("x", calls=calls)
    p = parse_step(text)
    assume(p.kind == "tool_call")
    env = fresh_env(shared_store, embedder)
    for c in p.calls:
        before = snapshot(env)
        r = dispatch(env, c)
        if not r.ok:
            assert snapshot(env) == before, r.text


# -- Context.summarise ---------------------------------------------------------------------

@st.composite
def conversations(draw):
    """system, demos, finished rounds (user then assistant/tool messages), the pending turn."""
    ctx = Context(len, budget=100_000)
    ctx.append("system", "SYSTEM")
    for i in range(draw(st.integers(0, 2))):
        ctx.append("user" if i % 2 == 0 else "assistant", f"demo{i}", kind="demo")
    for r in range(draw(st.integers(0, 4))):
        ctx.append("user", f"u{r}")
        for k in range(draw(st.integers(0, 3))):
            ctx.append(draw(st.sampled_from(["assistant", "tool"])), f"r{r}m{k}")
    ctx.append("user", "PENDING")
    for k in range(draw(st.integers(0, 2))):
        ctx.append("assistant", f"step{k}")
    return ctx


@FAST
@given(conversations(), st.none() | st.integers(1, 6))
def test_summarise_keeps_prefix_and_pending_turn_and_inserts_one_summary(ctx, rounds):
    before = [m.content for m in ctx.messages]
    pending = before.index("PENDING")
    prefix = [c for c in before[:pending] if c == "SYSTEM" or c.startswith("demo")]
    saved = ctx.summarise(rounds, lambda t: "S")
    after = [m.content for m in ctx.messages]
    if saved is None:
        assert after == before
        return
    summary_at = [i for i, m in enumerate(ctx.messages) if m.kind == "summary"]
    assert len(summary_at) == 1
    i = summary_at[0]
    assert after[i + 1:] == before[pending:]               # pending turn untouched
    assert after[:len(prefix)] == prefix                    # system + demos untouched
    assert after[:i] == before[:i]                          # nothing before the span moved
    assert saved["messages"] == len(before) - len(after) + 1
    assert ctx.tokens == sum(len(c) for c in after)
    if rounds is not None:
        users = [c for c in before[len(prefix):pending] if c.startswith("u")]
        assert before[i] == users[-min(rounds, len(users))]  # the span starts at a round start
