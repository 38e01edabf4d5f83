"""The opt-in relevance judge: a second model's Yes − No on each search hit past the floor."""

from __future__ import annotations

import dataclasses
import math

import pytest
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from agemem_lite.agent import Agent
from agemem_lite.errors import ConfigError
from agemem_lite.memory.relevance import SHOTS, SYSTEM, RelevanceJudge, load_judge, question_of
from agemem_lite.memory.tools import judged
from agemem_lite.model_files import model_path, resolve
from scripted import ScriptedPolicy
from test_tools import add, call, make_env

DENTIST = "The user's dentist is Dr. Okafor, whose office is in Leeds."


@pytest.fixture(scope="module")
def small_judge(settings):
    """SmolLM2-135M as the judge: a real model, fast; its verdicts are not meant to be good."""
    j = RelevanceJudge(resolve(settings, "smollm2-135m"), n_threads=2)
    yield j
    j.close()


def test_judged_stops_at_k_and_counts_what_it_dropped():
    @dataclasses.dataclass
    class M:
        content: str

    @dataclasses.dataclass
    class H:
        memory: M

    hits = [H(M(t)) for t in ("a yes", "b no", "c yes", "d yes", "e no")]
    asked = []

    def judge(query, memory):
        asked.append(memory)
        return 1.0 if "yes" in memory else -5.0

    kept, dropped = judged(hits, "q", judge, -1.0, 2)
    assert [h.memory.content for h in kept] == ["a yes", "c yes"] and dropped == 1
    assert asked == ["a yes", "b no", "c yes"]   # no forward pass once k are kept
    assert judged(hits, "q", None, -1.0, 2) == (hits[:2], 0)


def chatml_prompt(query: str, memory: str) -> str:
    """The prompt bench/relevance_gate.py measured the judges with (ChatML written out)."""
    def turn(q, m):
        return (f"<|im_start|>user\nQuestion: {q}\nMemory: {m}\nDoes this memory answer the question?<|im_end|>\n"
                "<|im_start|>assistant\n")
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n" + "".join(turn(q, m) + a + "<|im_end|>\n" for q, m, a in SHOTS)
            + turn(query, memory))


@pytest.mark.parametrize("name", ["smollm2-135m", "qwen2.5-coder-0.5b"])
def test_the_prompt_is_the_models_own_template_and_the_measured_one_for_chatml_models(settings, name):
    judge = None
    try:
        judge = RelevanceJudge(resolve(settings, name), n_threads=2, n_ctx=1024)
        assert judge.prefix_text + judge.turn_text("Who is my dentist?", DENTIST) == chatml_prompt(
            "Who is my dentist?", DENTIST)
        # a template that does not write the examples the same way with a turn after them
        judge._ask = Jinja2ChatFormatter("{{ messages[-1]['content'] }}", eos_token="", bos_token="")
        assert judge.turn_text("Who is my dentist?", DENTIST) == ""
    finally:
        if judge is not None:
            judge.close()


@pytest.mark.parametrize("message, asks", [
    ("What is my dog's name?", True), ("tell me what I'm allergic to", True), ("where do I live now", True),
    ("Remind me when the dentist appointment is", True), ("what's my sister's job", True),
    ("Do you remember my cat's name", True), ("how many kids does Anna have", True),
    ("When I moved to Oxford I sold my car.", False), ("My dentist is now Dr. Khan.", False),
    ("What a lovely day it was at the beach.", False), ("Whatever, I live in Leeds now.", False),
])
def test_question_of_takes_questions_with_or_without_a_question_mark(message, asks):
    assert (question_of(message) == message) is asks


def test_a_score_does_not_depend_on_the_hit_judged_before(small_judge, settings):
    """The worked examples stay cached and each hit's tokens are dropped after it: the same
    pair scores the same after another pair, and as a fresh model given the whole prompt."""
    first = small_judge("Who is my dentist?", DENTIST)
    other = small_judge("What is my dog's name?", "The user's cat Miso is four years old.")
    assert math.isfinite(first) and math.isfinite(other) and first != other
    assert small_judge("Who is my dentist?", DENTIST) == pytest.approx(first, abs=1e-4)
    fresh = RelevanceJudge(resolve(settings, "smollm2-135m"), n_threads=2)
    try:
        assert fresh("Who is my dentist?", DENTIST) == pytest.approx(first, abs=1e-3)
    finally:
        fresh.close()


def test_retrieve_memory_lists_only_hits_the_judge_keeps(store, embedder, small_judge):
    writer = make_env(store, embedder)
    dentist = add(writer, DENTIST)
    add(writer, "The user's dentist appointment is on Friday at 10.")
    question = "Who is my dentist?"
    everything = call(make_env(store, embedder, min_similarity=0.2, judge=small_judge, judge_min=-math.inf,
                               judge_question=question), "Retrieve_memory", query="dentist")
    assert len(everything.data["hits"]) == 2 and everything.data["judged_out"] == 0
    strict = make_env(store, embedder, min_similarity=0.2, judge=small_judge, judge_min=math.inf,
                      judge_question=question)
    r = call(strict, "Retrieve_memory", query="dentist")
    assert r.ok and r.text == "no memories found" and r.data["judged_out"] == 2
    assert dentist not in strict.seen_ids   # a dropped hit's id cannot be updated or deleted
    # a statement's turn is not judged: "my dentist is now Dr. Khan" must still find the old fact
    statement = make_env(store, embedder, min_similarity=0.2, judge=small_judge, judge_min=math.inf,
                         judge_question=None)
    r = call(statement, "Retrieve_memory", query="dentist")
    assert len(r.data["hits"]) == 2 and r.data["judged_out"] == 0 and dentist in statement.seen_ids


def test_the_memories_shown_with_a_turn_pass_the_judge_too(store, embedder, settings, small_judge):
    add(make_env(store, embedder), DENTIST)
    s = dataclasses.replace(settings, relevance_judge_min=math.inf)
    agent = Agent(ScriptedPolicy([]), store, embedder, s, demonstrations=False, judge=small_judge)
    assert agent.related_memories("Who is my dentist?") == []
    # a statement is not judged: the fact it changes stays in view for an Update
    assert [m["content"] for m in agent.related_memories("My dentist is now Dr. Khan.")] == [DENTIST]
    s = dataclasses.replace(settings, relevance_judge_min=-math.inf)
    agent = Agent(ScriptedPolicy([]), store, embedder, s, demonstrations=False, judge=small_judge)
    assert [m["content"] for m in agent.related_memories("Who is my dentist?")] == [DENTIST]


def test_a_turn_judges_its_searches_against_the_user_question(store, embedder, settings, small_judge):
    """``Agent.turn`` hands the judge the user's question (not the policy's search phrase), and
    leaves a statement's searches unjudged."""
    from agemem_lite.protocol import render_step

    add(make_env(store, embedder), DENTIST)
    search = render_step("search", calls=[{"name": "Retrieve_memory", "arguments": {"query": "dentist"}}])
    asked = []

    def judge(query, memory):
        asked.append(query)
        return small_judge(query, memory)

    s = dataclasses.replace(settings, relevance_judge_min=math.inf)
    agent = Agent(ScriptedPolicy([search, render_step("ok", answer="Not told.")] * 2), store, embedder, s,
                  demonstrations=False, judge=judge)
    t = agent.turn("Who is my dentist?", show_related=False)
    assert t.steps[0].results[0]["data"]["judged_out"] == 1 and asked == ["Who is my dentist?"]
    t = agent.turn("My dentist moved to York.", show_related=False)
    assert t.steps[0].results[0]["data"]["judged_out"] == 0 and len(t.steps[0].results[0]["data"]["hits"]) == 1
    assert asked == ["Who is my dentist?"]


def test_load_judge_is_off_by_default_and_refuses_an_embedder(settings):
    assert settings.relevance_judge == "" and load_judge(settings) is None
    with pytest.raises(ConfigError, match="relevance_judge='minilm-l6-v2' is an embedder"):
        load_judge(dataclasses.replace(settings, relevance_judge="minilm-l6-v2"))


def test_a_bad_judge_name_in_config_is_one_line_before_any_model_loads(tmp_path):
    from click.testing import CliRunner

    from agemem_lite.cli import main

    (tmp_path / "config.toml").write_text('relevance_judge = "minilm-l6-v2"\n')
    r = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "chat", "--plain"], input="/exit\n")
    assert r.exit_code == 1
    assert r.output.strip() == ("Error: relevance_judge='minilm-l6-v2' is an embedder; "
                                "name a chat model (e.g. qwen2.5-coder-1.5b)")
    assert not (tmp_path / "models").exists()   # nothing was assembled
    (tmp_path / "config.toml").write_text('relevance_judge = "qwen-nope"\n')
    r = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "chat", "--plain"], input="/exit\n")
    assert r.exit_code == 1 and r.output.startswith("Error: relevance_judge: unknown model 'qwen-nope'")
    assert len(r.output.strip().splitlines()) == 1


def test_a_missing_judge_file_is_one_clear_error(tmp_path):
    from agemem_lite.errors import ModelFileError

    with pytest.raises(ModelFileError, match="model file not found"):
        RelevanceJudge(tmp_path / "absent.gguf")


def test_the_1_5b_judge_drops_the_readme_dog_question_and_keeps_the_answers(settings):
    """The model whose verdicts the bench measured (docs/training.md, "What a search lets
    through"). Its 1.1 GB file is not fetched by the test command; the test runs where it is."""
    from agemem_lite.config import Settings
    from agemem_lite.model_files import get_spec

    path = model_path(Settings.load(), get_spec(settings, "qwen2.5-coder-1.5b"))   # the user's data dir
    if not path.is_file():
        pytest.skip("qwen2.5-coder-1.5b is not pulled here (agemem models pull qwen2.5-coder-1.5b)")
    j = RelevanceJudge(path, n_threads=2)
    try:
        dog = j("What is my dog's name?", "My dentist is Dr. Patel in Leeds.")
        kept = [j("Who is my dentist?", "My dentist is Dr. Patel in Leeds."),
                j("Where does my sister live?", "My sister Ana lives in Porto."),
                j("What do I do for a living?", "I work as a nurse at St Mary's hospital.")]
    finally:
        j.close()
    assert dog < settings.relevance_judge_min   # dropped at the default -1
    assert min(kept) >= settings.relevance_judge_min


def test_eval_opens_the_judge_once_and_gives_it_to_every_episode(embedder, settings, tmp_path, small_judge):
    """``agemem eval --relevance-judge``: one judge for the run, its name in the run's identity."""
    import json

    from agemem_lite import prompts
    from agemem_lite.eval import harness
    from agemem_lite.policy import Completion
    from agemem_lite.protocol import render_step
    from test_eval import CFG, OraclePolicy, oracle

    class Searching(OraclePolicy):
        """The oracle, but a question is searched before it is answered (the judge sees that)."""

        def step(self, messages, *, allow_tools=True, on_text=None):
            last = messages[-1]
            text = prompts.user_text_of(last["content"]) if last["role"] == "user" else None
            if text in self.golds and allow_tools:
                out = render_step("search", calls=[{"name": "Retrieve_memory", "arguments": {"query": text}}])
                return Completion(text=out, prompt_tokens=1, completion_tokens=1, seconds=0.001)
            question = next(prompts.user_text_of(m["content"]) for m in reversed(messages) if m["role"] == "user")
            if last["role"] == "tool" and question in self.golds:   # the search's result: answer
                out = render_step("found", answer=self.golds[question])
                return Completion(text=out, prompt_tokens=1, completion_tokens=1, seconds=0.001)
            return super().step(messages, allow_tools=allow_tools, on_text=on_text)

    class Counting:
        calls, closed = 0, False

        def __call__(self, query, memory):
            Counting.calls += 1
            return small_judge(query, memory)

        def close(self):
            Counting.closed = True

    opened = []
    cfg = dataclasses.replace(CFG, relevance_judge="smollm2-135m")
    tasks = harness.build_tasks("hotpot", 2, 0, embedder)
    res = harness.run_eval(Searching(tasks), embedder, ["hotpot"], "agemem", n=2, seed=0,
                           out_dir=tmp_path / "run", config=cfg, settings=settings,
                           relevance=lambda: opened.append(Counting()) or opened[-1])
    assert res.ran == 2 and len(opened) == 1 and Counting.calls > 0 and Counting.closed
    manifest = json.loads((tmp_path / "run" / harness.MANIFEST).read_text())
    assert manifest["identity"]["config"]["relevance_judge"] == "smollm2-135m"
    with pytest.raises(ValueError, match="go together"):
        harness.run_eval(oracle(["hotpot"], 1, 0, embedder), embedder, ["hotpot"], "agemem", n=1, seed=0,
                         out_dir=tmp_path / "other", config=CFG, settings=settings, relevance=lambda: small_judge)
