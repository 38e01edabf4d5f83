"""The shipped trained policy (agemem-0.5b: the default model file + the committed LoRA adapter).

Its quality is what is under test, so it runs the real default model: the adapter loads
with it through the registry (``open_policy``), is served as chat serves it (guided
"Kind:" think, no demonstrations), and passes the hand-written natural decision set at
or above a stated accuracy. The measured numbers and the prompted baseline are in
docs/training.md; the threshold sits below the measured score so that greedy decoding
differences across llama.cpp builds do not flake, and far above the prompted model.
"""

from __future__ import annotations

import shutil

import pytest

from agemem_lite import decisions as D
from agemem_lite.assistant import open_policy, wants_context_usage, wants_demonstrations
from agemem_lite.config import Settings
from models.registry import ADAPTERS_DIR

pytestmark = [pytest.mark.default_model, pytest.mark.slow]

#: Natural set, measured with `agemem eval --bench decisions --n 28 --seed 0` (docs/training.md):
#: the shipped adapter (v7 = warm start v6 + round G) 21/27 (add 3/4, update 4/4, delete 3/4,
#: retrieve 3/4, answer 5/5, filter 1/3, summary 2/3); v6 14-15/27; v5 16/27; the prompted model
#: (with its demonstrations) 10/27. The set has 31 items since four look-alike and unknown items
#: joined it: v7 23/31 (2/4 of the new ones). The threshold leaves three items for greedy-decoding
#: differences across llama.cpp builds and still fails for v6's level (15/27 + 4/4 = 19/31).
MIN_NATURAL_ACCURACY = 20 / 31


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = tmp_path_factory.mktemp("trained-home")
    s = Settings.load(home, policy="agemem-0.5b", n_threads=2)
    pol = open_policy(s)
    yield s, pol
    pol.close()
    shutil.rmtree(home, ignore_errors=True)  # the assembled default model, ~0.5 GB


def test_adapter_loads_with_the_default_model(trained):
    s, pol = trained
    assert pol.lora_path and pol.lora_path.endswith("agemem-0.5b.lora.gguf")
    assert pol.think_kinds and not wants_demonstrations(s)


def test_an_adapter_file_can_stand_in_for_the_registry_one(trained):
    """``Settings.adapter`` (``agemem eval --adapter``): how a training run's adapter is tried on
    the base before it ships; here the shipped file itself, on the plain base policy."""
    s, _ = trained
    other = Settings.load(s.data_dir, policy="qwen2.5-coder-0.5b", n_threads=2,
                          adapter=str(ADAPTERS_DIR / "agemem-0.5b.lora.gguf"))
    pol = open_policy(other)
    try:
        assert pol.lora_path.endswith("agemem-0.5b.lora.gguf") and pol.name == "qwen2.5-coder-0.5b+agemem-0.5b.lora"
    finally:
        pol.close()


def test_natural_decisions_at_or_above_the_stated_accuracy(trained):
    s, pol = trained
    items = D.natural_items()
    decisions, records = D.run_decisions(pol, items, guided=wants_demonstrations(s),
                                         context_usage=wants_context_usage(s))
    sc = D.score(items, decisions)
    report = D.render_report(sc, "natural")
    assert sc["parse_share"] == 1.0, report
    assert sc["accuracy"] >= MIN_NATURAL_ACCURACY, report
    assert sc["per_class"]["update"]["correct"] >= 3, report   # the prompted model never updates (0/4)
    assert sc["per_class"]["answer"]["correct"] >= 3, report   # the first warm start answered 1/5


def test_greeting_is_answered_in_words_not_with_a_copy_of_the_think(trained):
    """The first warm start answered greetings with a copy of its think ("Kind: question. ...");
    the replay data (the base model's own replies) is what fixed it."""
    s, pol = trained
    item = next(it for it in D.natural_items() if it.user == "Good morning :)")
    step = pol.step(D.messages(item, guided=wants_demonstrations(s)))
    decision = D.classify(step.text)
    from agemem_lite.protocol import parse_step

    answer = parse_step(step.text).answer or ""
    assert decision.action == "answer" and not answer.startswith("Kind:"), step.text


@pytest.mark.parametrize("reply", ["To make it last, charge it to 80 %.", "The Trornkun River", "Durndreil"])
def test_a_reply_is_learnt_from_the_tokens_the_runtime_writes_it_after(trained, reply):
    """LlamaPolicy.step writes "<answer>" and then generates the reply after a prompt tokenised up to
    there; the training sequence must hold exactly those tokens before the reply. One tokenize call
    over the whole step merged "<answer>" with the reply's first word (Qwen2.5's ">To", ">The",
    ">D"): tokens the runtime never lets the model produce, so replies were learnt at a
    boundary it never sees (the trained policy then copied its think into its answers)."""
    from agemem_lite.protocol import ANSWER_OPEN, render_step
    from train.warm_start import Turn, step_pieces, tokenize_turn

    _, pol = trained
    step = render_step("Kind: question. It needs no memory.", answer=reply)
    turn = Turn("t", "answer", D.messages(D.generate(7, 0, "train")[4], guided=False), [step], [])
    ids, mask = tokenize_turn(pol, turn)
    cut = step.index(ANSWER_OPEN) + len(ANSWER_OPEN)
    before = pol.tokenize(pol.render(turn.context)) + pol.tokenize(step[:cut], special=False)
    assert ids[:len(before)] == before
    assert pol.llm.detokenize(ids[len(before):]).decode() == step[cut:]
    assert "".join(step_pieces(step)) == step


def test_the_summary_is_written_with_the_adapter_off_and_the_adapter_comes_back(trained):
    """With the adapter on, the 0.5B wrote protocol text ("<thought>Kind: ...") for every summary
    request (docs/training.md); ``summarise`` writes with the base model, then the next step is the
    trained policy's again (adapter set back, no KV computed without it reused)."""
    from agemem_lite import prompts
    from agemem_lite.policy.llama import LlamaPolicy

    s, pol = trained
    request = prompts.render_summary_request(
        "User: My sister Ana moves to Porto in May.\nAssistant: Noted.\nUser: Her son Tom is four.")
    messages = D.messages(next(it for it in D.natural_items() if it.label == "update"), guided=False)
    before = pol.step(messages).text
    base = LlamaPolicy(pol.model_path, n_ctx=pol.n_ctx, n_threads=2)
    try:
        written = pol.summarise(request, max_tokens=48)
        assert written == base.summarise(request, max_tokens=48)
    finally:
        base.close()
    assert "<" not in written
    assert pol.step(messages).text == before
