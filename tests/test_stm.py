"""Short-term memory (SPEC §1-§2): token counts, protection, Summary_context spans, Filter_context θ."""

from __future__ import annotations

import numpy as np
import pytest

from agemem_lite import prompts
from agemem_lite.memory.stm import Context, Message, extractive_summary, fact_coverage, usable_summary, word_support

WEATHER = "The weather today is sunny and warm."  # cosine ≈ 0.84 to CRITERIA
WEATHER_2 = "It is a sunny warm day today."        # cosine ≈ 0.83
SISTER = "My sister Anna was born on March 3rd."   # cosine ≈ 0.03
CRITERIA = "sunny warm weather"


class CharCounter:
    """A deterministic token counter that also records what it was asked to count."""

    def __init__(self):
        self.seen: list[str] = []

    def __call__(self, text: str) -> int:
        self.seen.append(text)
        return len(text)


def conversation(counter=None) -> Context:
    """system, two demo messages, three finished rounds, then the pending turn (user + a step)."""
    ctx = Context(counter or CharCounter(), budget=10_000)
    ctx.append("system", "SYSTEM")
    ctx.append("user", "demo question", kind="demo")
    ctx.append("assistant", "demo answer", kind="demo")
    for r in (1, 2, 3):
        ctx.append("user", f"u{r}")
        ctx.append("assistant", f"a{r}")
        ctx.append("tool", f"t{r}")
    ctx.append("user", "PENDING")
    ctx.append("assistant", "current step")
    return ctx


def contents(ctx: Context) -> list[str]:
    return [m.content for m in ctx.messages]


class Writer:
    """The summary writer: records the transcript it was given."""

    def __init__(self, text="SUMMARY TEXT"):
        self.text = text
        self.transcripts: list[str] = []

    def __call__(self, transcript: str) -> str:
        self.transcripts.append(transcript)
        return self.text


# -- token counts ------------------------------------------------------------------------

def test_token_counts_use_the_given_counter():
    counter = CharCounter()
    ctx = Context(counter, budget=20)
    m = ctx.append("user", "hello world")
    assert m.tokens == len("hello world") and counter.seen == ["hello world"]
    ctx.append("assistant", "abc")
    assert ctx.tokens == 14
    assert not ctx.over_budget
    ctx.append("tool", "x" * 7)
    assert ctx.tokens == 21 and ctx.over_budget


def test_append_refuses_unknown_roles():
    ctx = Context(len, budget=10)
    with pytest.raises(ValueError):
        ctx.append("narrator", "x")
    assert ctx.messages == []


def test_reset_keeps_only_the_system_message():
    ctx = conversation()
    ctx.reset()
    assert contents(ctx) == ["SYSTEM"]
    ctx.reset(keep_system=False)
    assert ctx.messages == []


def test_as_dicts_gives_role_and_content_only():
    ctx = conversation()
    assert ctx.as_dicts()[0] == {"role": "system", "content": "SYSTEM"}
    assert len(ctx.as_dicts()) == len(ctx.messages)


# -- protection --------------------------------------------------------------------------

def test_protected_are_system_demos_and_the_pending_user_message():
    ctx = conversation()
    assert {ctx.messages[i].content for i in ctx.protected()} == {
        "SYSTEM", "demo question", "demo answer", "PENDING"}


# -- Summary_context ---------------------------------------------------------------------

def test_summarise_all_replaces_everything_between_prefix_and_pending_turn():
    ctx = conversation()
    w = Writer()
    saved = ctx.summarise(None, w)
    assert contents(ctx) == ["SYSTEM", "demo question", "demo answer",
                             "[Summary of earlier conversation]\nSUMMARY TEXT", "PENDING", "current step"]
    summary = ctx.messages[3]
    assert (summary.role, summary.kind) == ("user", "summary")
    assert w.transcripts == ["User: u1\nAssistant: a1\nTool: t1\nUser: u2\nAssistant: a2\nTool: t2\n"
                             "User: u3\nAssistant: a3\nTool: t3"]
    assert saved["messages"] == 9 and saved["summary"] == "SUMMARY TEXT"


def test_summarise_counts_tokens_with_the_given_counter():
    ctx = conversation()
    saved = ctx.summarise(None, Writer())
    summary = ctx.messages[3]
    assert summary.tokens == len(summary.content)
    assert saved["tokens_after"] == summary.tokens
    assert saved["tokens_before"] == sum(len(x) for r in (1, 2, 3) for x in (f"u{r}", f"a{r}", f"t{r}"))
    assert ctx.tokens == sum(len(c) for c in contents(ctx))


@pytest.mark.parametrize("rounds, kept", [(1, ["u1", "a1", "t1", "u2", "a2", "t2"]), (2, ["u1", "a1", "t1"])])
def test_summarise_n_rounds_replaces_exactly_the_last_n_rounds(rounds, kept):
    ctx = conversation()
    w = Writer()
    saved = ctx.summarise(rounds, w)
    assert saved["messages"] == 3 * rounds
    assert contents(ctx) == ["SYSTEM", "demo question", "demo answer", *kept,
                             "[Summary of earlier conversation]\nSUMMARY TEXT", "PENDING", "current step"]
    first = 4 - rounds
    assert w.transcripts[0].startswith(f"User: u{first}\n") and w.transcripts[0].endswith("Tool: t3")


def test_summarise_more_rounds_than_exist_replaces_all_rounds():
    ctx = conversation()
    saved = ctx.summarise(10, Writer())
    assert saved["messages"] == 9
    assert contents(ctx)[3].startswith("[Summary of earlier conversation]")
    assert contents(ctx)[4:] == ["PENDING", "current step"]


def test_summarise_with_nothing_before_the_pending_turn_returns_none():
    ctx = Context(len, budget=100)
    ctx.append("system", "SYSTEM")
    ctx.append("user", "demo", kind="demo")
    ctx.append("user", "PENDING")
    ctx.append("assistant", "step")
    before = [m.to_dict() for m in ctx.messages]
    w = Writer()
    assert ctx.summarise(None, w) is None
    assert ctx.summarise(2, w) is None
    assert w.transcripts == []  # no model call for nothing
    assert [m.to_dict() for m in ctx.messages] == before


def test_summarise_falls_back_to_an_extractive_summary_when_the_writer_returns_nothing():
    ctx = conversation()
    ctx.summarise(1, Writer(text="   "))
    summary = next(m for m in ctx.messages if m.kind == "summary")
    assert summary.content == "[Summary of earlier conversation]\nu3"


def test_a_second_summary_folds_in_the_first():
    ctx = conversation()
    ctx.summarise(2, Writer("first"))
    w = Writer("second")
    ctx.summarise(None, w)
    assert "Earlier: first" in w.transcripts[0] and "User: u1" in w.transcripts[0]
    assert [m.kind for m in ctx.messages].count("summary") == 1
    assert contents(ctx)[-2:] == ["PENDING", "current step"]


def test_summarise_all_keeps_protected_messages():
    ctx = conversation()
    protected = {ctx.messages[i].content for i in ctx.protected()}
    ctx.summarise(None, Writer())
    assert protected <= set(contents(ctx))


def test_summarise_all_keeps_a_protected_message_inside_the_span():
    ctx = Context(len, budget=1000)
    ctx.append("system", "SYSTEM")
    ctx.append("user", "u1")
    ctx.append("assistant", "a1")
    ctx.append("system", "Stage 2 begins: keep this note.")
    ctx.append("user", "u2")
    ctx.append("assistant", "a2")
    ctx.append("user", "PENDING")
    assert 3 in ctx.protected()
    ctx.summarise(None, Writer())
    assert "Stage 2 begins: keep this note." in contents(ctx)


# -- Filter_context (real embedder, θ = 0.6) ----------------------------------------------

def test_filter_texts_are_clearly_on_either_side_of_theta(embedder):
    c = embedder.embed_one(CRITERIA)
    assert float(embedder.embed_one(WEATHER) @ c) > 0.75
    assert float(embedder.embed_one(WEATHER_2) @ c) > 0.75
    assert float(embedder.embed_one(SISTER) @ c) < 0.3


def test_filter_drops_messages_at_or_above_theta_and_keeps_the_rest(embedder):
    ctx = Context(CharCounter(), budget=10_000)
    ctx.append("system", "You are a helpful assistant.")
    ctx.append("user", WEATHER)
    ctx.append("assistant", SISTER)
    ctx.append("tool", WEATHER_2)
    ctx.append("user", "When was Anna born?")
    removed = ctx.filter(embedder.embed_one(CRITERIA), embedder.embed_one, 0.6)
    assert contents(ctx) == ["You are a helpful assistant.", SISTER, "When was Anna born?"]
    assert removed["messages"] == 2
    assert removed["tokens"] == len(WEATHER) + len(WEATHER_2)
    assert [r["content"] for r in removed["removed"]] == [WEATHER, WEATHER_2]
    assert all(r["cosine"] >= 0.6 for r in removed["removed"])


def test_filter_with_a_higher_theta_keeps_more(embedder):
    ctx = Context(len, budget=10_000)
    ctx.append("user", WEATHER)
    ctx.append("assistant", "Sunny and warm weather is forecast for tomorrow.")  # cosine ≈ 0.64
    ctx.append("user", "ok")
    removed = ctx.filter(embedder.embed_one(CRITERIA), embedder.embed_one, 0.7)
    assert removed["messages"] == 1
    assert contents(ctx) == ["Sunny and warm weather is forecast for tomorrow.", "ok"]


def test_filter_never_drops_system_demo_or_pending_user_messages(embedder):
    ctx = Context(len, budget=10_000)
    ctx.append("system", WEATHER)
    ctx.append("user", WEATHER, kind="demo")
    ctx.append("assistant", WEATHER_2)        # not protected: goes
    ctx.append("user", WEATHER)               # pending user turn: stays
    ctx.append("assistant", WEATHER_2)        # a step of the pending turn: goes
    removed = ctx.filter(embedder.embed_one(CRITERIA), embedder.embed_one, 0.6)
    assert removed["messages"] == 2
    assert [(m.role, m.kind) for m in ctx.messages] == [("system", ""), ("user", "demo"), ("user", "")]


def test_filter_accepts_an_unnormalised_criteria_vector(embedder):
    ctx = Context(len, budget=10_000)
    ctx.append("user", WEATHER)
    ctx.append("user", "ok")
    removed = ctx.filter(7.5 * np.asarray(embedder.embed_one(CRITERIA)), embedder.embed_one, 0.6)
    assert removed["messages"] == 1


def test_evict_oldest_never_drops_protected_messages():
    ctx = Context(lambda t: len(t.split()), budget=100)
    ctx.append("system", "sys prompt")
    ctx.append("user", "old turn", kind="")
    ctx.append("assistant", "old reply")
    ctx.append("user", "pending question")
    assert ctx.evict_oldest().content == "old turn"
    assert ctx.evict_oldest().content == "old reply"
    assert ctx.evict_oldest() is None
    assert [m.content for m in ctx.messages] == ["sys prompt", "pending question"]


# -- the summariser's transcript and the model-free summary -------------------------------

def test_the_summary_transcript_is_plain_text_without_protocol_or_shown_memories():
    from agemem_lite.protocol import render_step

    msgs = [Message("user", "[Summary of earlier conversation]\nThe user moved."),
            Message("user", prompts.render_user_turn("My sister Ana moves to Porto in May.",
                                                     "[Related memories]\n[mem_3] The user likes tea.",
                                                     usage="[Context: 20 % full]")),
            Message("assistant", render_step("Kind: fact. New, so add it.", calls=[
                {"name": "Add_memory", "arguments": {"content": "Ana moves to Porto in May."}}])),
            Message("tool", "Add_memory: stored as mem_4"),
            Message("assistant", render_step("Stored, so reply.", answer="Noted.")),
            Message("assistant", render_step("Look it up.", calls=[{"name": "Retrieve_memory",
                                                                     "arguments": {"query": "Ana"}}]))]
    assert prompts.summary_transcript(msgs) == (
        "Earlier: The user moved.\nUser: My sister Ana moves to Porto in May.\n"
        "Assistant saved: Ana moves to Porto in May.\nTool: Add_memory: stored as mem_4\nAssistant: Noted.")


def test_extractive_summary_keeps_the_first_sentence_of_each_user_line_without_its_lead_in():
    transcript = ("User: Here's part of an article about the Veld Fair: The fair began in 1843. It moved in 1901.\n"
                  "Assistant: Got it.\nEarlier: Something.\nUser: More on it: About 400 people came.\n"
                  "User: hello there\nUser: [x] a bracketed line")
    assert extractive_summary(transcript) == "The fair began in 1843. About 400 people came. hello there"
    assert extractive_summary(transcript, max_sentences=1) == "The fair began in 1843."


def test_fact_coverage_counts_the_names_and_numbers_the_user_said():
    transcript = "User: Feedback on the Tiolis Festival from Rosreir Zosdadrel was good. The budget was 29117 euros."
    assert fact_coverage("Tiolis: 29117.", transcript) == 2 / 5   # Tiolis Festival Rosreir Zosdadrel 29117
    assert fact_coverage("Read it, go on.", transcript) == 0.0
    assert fact_coverage("anything", "Assistant: Tiolis") == 1.0   # nothing said: nothing to keep


def test_a_usable_summary_has_no_tags_no_loop_and_the_transcripts_words():
    transcript = "User: My sister Ana moves to Porto in May.\nAssistant: Noted, good luck to her."
    assert usable_summary("Ana moves to Porto in May.", transcript)
    assert word_support("I'm sorry, but I can't assist with that.", transcript) == 0.0
    assert not usable_summary("I'm sorry, but I can't assist with that.", transcript)
    assert not usable_summary("Ana moves. Ana moves.", transcript)
    assert not usable_summary("<answer>Ana moves to Porto.</answer>", transcript)
    assert not usable_summary("[Summary of earlier conversation] Ana moves to Porto.", transcript)
    assert not usable_summary("  ", transcript)
