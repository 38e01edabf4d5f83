"""The step protocol (SPEC §3): parse_step, render_step and the GBNF grammar.

Grammar tests compile the GBNF with llama.cpp's own grammar sampler on the real
SmolLM2 vocabulary, and check whole texts token by token against it
(``GrammarChecker``), so "the grammar accepts X" means what llama.cpp would do
while decoding.
"""

from __future__ import annotations

import ctypes
import json

import numpy as np
import pytest

from agemem_lite import protocol
from agemem_lite.memory.tools import grammar_schemas
from agemem_lite.prompts import NO_RELATED, THINK_KINDS, render_demonstrations, render_system, render_user_turn
from agemem_lite.protocol import ToolCall, grammar, parse_step, render_step

ADD = {"name": "Add_memory", "arguments": {"content": "The user's cat Tom is four.", "memory_type": "fact"}}
RETRIEVE = {"name": "Retrieve_memory", "arguments": {"query": "cat", "top_k": 2}}


# -- parse_step: the happy shapes ------------------------------------------------------

def test_answer_step_gives_think_and_answer():
    p = parse_step("<think>chat, nothing to store</think>\n<answer>  Hello there!  </answer>")
    assert p.kind == "answer"
    assert p.think == "chat, nothing to store"
    assert p.answer == "Hello there!"
    assert p.calls == () and p.error is None


def test_tool_call_array_gives_every_call_in_order():
    text = f"<think>store and look</think>\n<tool_call>{json.dumps([ADD, RETRIEVE])}</tool_call>"
    p = parse_step(text)
    assert p.kind == "tool_call"
    assert [c.name for c in p.calls] == ["Add_memory", "Retrieve_memory"]
    assert p.calls[0].arguments == ADD["arguments"]
    assert p.calls[1].arguments == {"query": "cat", "top_k": 2}
    assert p.answer is None and p.raw == text


def test_single_call_object_is_accepted_as_a_one_call_list():
    p = parse_step(f"<think>x</think><tool_call>{json.dumps(ADD)}</tool_call>")
    assert p.kind == "tool_call"
    assert p.calls == (ToolCall("Add_memory", ADD["arguments"]),)


def test_json_fence_inside_tool_call_is_unwrapped():
    body = "```json\n" + json.dumps([ADD]) + "\n```"
    p = parse_step(f"<think>x</think>\n<tool_call>\n{body}\n</tool_call>")
    assert p.kind == "tool_call"
    assert p.calls[0].name == "Add_memory"


def test_bare_json_fence_without_tags_is_a_tool_call():
    p = parse_step("<think>store it</think>\n```json\n" + json.dumps([RETRIEVE]) + "\n```")
    assert p.kind == "tool_call"
    assert p.calls[0].arguments["query"] == "cat"


def test_missing_think_still_parses_with_empty_think():
    p = parse_step("<answer>Fine.</answer>")
    assert p.kind == "answer" and p.answer == "Fine." and p.think == ""
    q = parse_step(f"<tool_call>{json.dumps([RETRIEVE])}</tool_call>")
    assert q.kind == "tool_call" and q.think == ""


def test_tags_inside_the_think_do_not_count_as_actions():
    p = parse_step(f"<think>I could write <answer> now, but</think><tool_call>{json.dumps([RETRIEVE])}</tool_call>")
    assert p.kind == "tool_call"
    assert p.calls[0].name == "Retrieve_memory"


def test_unclosed_answer_is_taken_up_to_the_end():
    p = parse_step("<think>x</think><answer>cut off here")
    assert p.kind == "answer" and p.answer == "cut off here"


def test_parameters_key_is_accepted_for_arguments():
    p = parse_step('<think>x</think><tool_call>[{"name": "Retrieve_memory", "parameters": {"query": "q"}}]</tool_call>')
    assert p.kind == "tool_call" and p.calls[0].arguments == {"query": "q"}


def test_string_encoded_arguments_are_decoded():
    call = {"name": "Add_memory", "arguments": json.dumps({"content": "x"})}
    p = parse_step(f"<think>x</think><tool_call>{json.dumps([call])}</tool_call>")
    assert p.kind == "tool_call"
    assert p.calls[0].arguments == {"content": "x"}


def test_tool_name_is_stripped():
    p = parse_step('<tool_call>[{"name": "  Add_memory ", "arguments": {"content": "x"}}]</tool_call>')
    assert p.calls[0].name == "Add_memory"


# -- parse_step: every malformed step becomes an error, never an exception ---------------

def test_both_tool_call_and_answer_is_an_error():
    p = parse_step(f"<think>x</think><tool_call>{json.dumps([ADD])}</tool_call><answer>done</answer>")
    assert p.kind == "invalid"
    assert "not both" in p.error
    assert p.calls == () and p.answer is None


def test_empty_answer_is_an_error():
    p = parse_step("<think>x</think>\n<answer>  \n </answer>")
    assert p.kind == "invalid" and "empty" in p.error


def test_bad_json_is_an_error_that_shows_the_right_shape():
    p = parse_step('<think>x</think><tool_call>[{"name": "Add_memory", "arguments": {"content": }]</tool_call>')
    assert p.kind == "invalid"
    assert "not valid JSON" in p.error
    assert '"arguments"' in p.error  # the message shows the expected shape


@pytest.mark.parametrize("arguments", ["[1, 2]", "5", "null", '"not json {"', "true"])
def test_non_object_arguments_are_an_error(arguments):
    p = parse_step(f'<think>x</think><tool_call>[{{"name": "Add_memory", "arguments": {arguments}}}]</tool_call>')
    assert p.kind == "invalid"
    assert '"arguments" must be a JSON object' in p.error


def test_string_encoded_arguments_that_are_not_an_object_are_an_error():
    call = {"name": "Add_memory", "arguments": json.dumps(["content", "x"])}
    p = parse_step(f"<tool_call>{json.dumps([call])}</tool_call>")
    assert p.kind == "invalid" and "JSON object" in p.error


@pytest.mark.parametrize("body", ['[{"arguments": {}}]', '[{"name": 5, "arguments": {}}]', "[1]", '["Add_memory"]'])
def test_call_without_a_name_string_is_an_error_naming_the_call(body):
    p = parse_step(f"<think>x</think><tool_call>{body}</tool_call>")
    assert p.kind == "invalid"
    assert "call #1" in p.error and '"name"' in p.error


def test_empty_call_list_is_an_error():
    p = parse_step("<think>x</think><tool_call>[]</tool_call>")
    assert p.kind == "invalid" and "empty" in p.error


def test_plain_text_without_tags_is_an_error_that_names_both_tags():
    p = parse_step("<think>hmm</think> I think the answer is 4")
    assert p.kind == "invalid"
    assert "<tool_call>" in p.error and "<answer>" in p.error
    assert p.think == "hmm"


def test_non_text_input_is_an_error_not_an_exception():
    for value in (None, 42, b"<answer>x</answer>", ["<answer>x</answer>"]):
        p = parse_step(value)
        assert p.kind == "invalid" and p.error


def test_deeply_nested_json_is_an_error_not_an_exception():
    p = parse_step("<think>x</think><tool_call>" + "[" * 100_000 + "</tool_call>")
    assert p.kind == "invalid"


def test_huge_integer_literal_is_an_error_not_an_exception():
    p = parse_step('<tool_call>[{"name": "Retrieve_memory", "arguments": {"query": "q", "top_k": '
                   + "9" * 5000 + "}}]</tool_call>")
    assert p.kind in ("invalid", "tool_call")


# -- render_step -------------------------------------------------------------------------

def test_render_then_parse_round_trips_calls():
    calls = [ToolCall("Add_memory", {"content": "Zoë likes crêpes", "metadata": {"tags": ["food"]}}), RETRIEVE]
    text = render_step("  store it  ", calls=calls)
    assert text.startswith("<think>store it</think>\n<tool_call>[")
    assert "Zoë" in text  # no ASCII escaping: tokens are precious
    p = parse_step(text)
    assert p.kind == "tool_call" and p.think == "store it"
    assert [c.to_dict() for c in p.calls] == [calls[0].to_dict(), RETRIEVE]


def test_render_then_parse_round_trips_an_answer():
    text = render_step("chat", answer=" Hi! ")
    assert text == "<think>chat</think>\n<answer>Hi!</answer>"
    p = parse_step(text)
    assert (p.kind, p.think, p.answer) == ("answer", "chat", "Hi!")


def test_tool_call_whose_argument_mentions_a_tag_round_trips():
    calls = [{"name": "Add_memory", "arguments": {"content": "The user wraps replies in <answer> tags."}}]
    p = parse_step(render_step("store", calls=calls))
    assert p.kind == "tool_call", p.error
    assert [c.to_dict() for c in p.calls] == calls


def test_render_refuses_an_empty_call_list():
    with pytest.raises(ValueError):
        render_step("x", calls=[])


def test_render_needs_exactly_one_of_calls_and_answer():
    with pytest.raises(ValueError):
        render_step("x")
    with pytest.raises(ValueError):
        render_step("x", calls=[ADD], answer="y")


# -- grammar: llama.cpp compiles it and decodes under it ----------------------------------

class GrammarChecker:
    """Runs llama.cpp's grammar sampler over a text's tokens: does the grammar accept it?"""

    def __init__(self, llm):
        import llama_cpp

        self.llama_cpp = llama_cpp
        self.llm = llm
        self.vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self.n_vocab = llm.n_vocab()
        self.data = (llama_cpp.llama_token_data * self.n_vocab)()
        self.view = np.ctypeslib.as_array(self.data)
        self.array = llama_cpp.llama_token_data_array(data=self.data, size=self.n_vocab, selected=-1, sorted=False)
        self.ids = np.arange(self.n_vocab, dtype=np.int32)

    def compile(self, gbnf: str):
        """The grammar sampler, or a NULL pointer when llama.cpp cannot parse the GBNF."""
        return self.llama_cpp.llama_sampler_init_grammar(self.vocab, gbnf.encode(), b"root")

    def compiles(self, gbnf: str) -> bool:
        smpl = self.compile(gbnf)
        if smpl:
            self.llama_cpp.llama_sampler_free(smpl)
        return bool(smpl)

    def _allowed(self, smpl) -> set[int]:
        self.view["id"] = self.ids
        self.view["logit"] = 0.0
        self.view["p"] = 0.0
        self.array.size, self.array.selected, self.array.sorted = self.n_vocab, -1, False
        self.llama_cpp.llama_sampler_apply(smpl, ctypes.byref(self.array))
        rows = self.view[: self.array.size]
        return set(rows["id"][np.isfinite(rows["logit"])].tolist())

    def accepts(self, gbnf: str, text: str) -> bool:
        """True if decoding under ``gbnf`` could produce exactly ``text`` and then stop."""
        smpl = self.compile(gbnf)
        assert smpl, "grammar does not compile"
        try:
            for tok in self.llm.tokenize(text.encode(), add_bos=False, special=False):
                if tok not in self._allowed(smpl):
                    return False
                self.llama_cpp.llama_sampler_accept(smpl, tok)
            return self.llm.token_eos() in self._allowed(smpl)
        finally:
            self.llama_cpp.llama_sampler_free(smpl)


@pytest.fixture(scope="module")
def checker(small_policy):
    return GrammarChecker(small_policy.llm)


SCHEMAS = grammar_schemas()


def test_the_checker_rejects_a_broken_grammar(checker):
    assert checker.compiles('root ::= "a"')
    assert not checker.compiles("root ::= undefined-rule")


@pytest.mark.parametrize("kwargs", [
    {},
    {"think_kinds": THINK_KINDS},
    {"allow_tools": False},
    {"allow_tools": False, "think_kinds": THINK_KINDS},
    {"allow_answer": False},
    {"think": False},
    {"think": False, "allow_tools": False},
    {"max_calls": 1},
], ids=lambda kw: ",".join(f"{k}={v if not isinstance(v, tuple) else 'kinds'}" for k, v in kw.items()) or "default")
def test_grammar_compiles_in_llama_cpp(checker, kwargs):
    from llama_cpp import LlamaGrammar

    gbnf = grammar(SCHEMAS, **kwargs)
    assert LlamaGrammar.from_string(gbnf, verbose=False)._grammar == gbnf
    assert checker.compiles(gbnf)


def test_grammar_needs_an_answer_or_a_tool_call():
    with pytest.raises(ValueError):
        grammar(SCHEMAS, allow_answer=False, allow_tools=False)


def test_grammar_accepts_canonical_steps(checker):
    g = grammar(SCHEMAS)
    assert checker.accepts(g, render_step("chat", answer="Hello!"))
    assert checker.accepts(g, render_step("store", calls=[ADD]))
    assert checker.accepts(g, render_step("two", calls=[ADD, RETRIEVE]))
    assert checker.accepts(g, render_step("del", calls=[
        {"name": "Delete_memory", "arguments": {"memory_id": "mem_3", "confirmation": True}}]))


def test_grammar_rejects_what_the_protocol_forbids(checker):
    g = grammar(SCHEMAS)
    both = render_step("x", calls=[ADD]) + "<answer>done</answer>"
    assert not checker.accepts(g, both)
    assert not checker.accepts(g, "<think>x</think>\nplain text")
    assert not checker.accepts(g, render_step("x", calls=[{"name": "Forget_everything", "arguments": {}}]))
    assert not checker.accepts(g, render_step("x", calls=[{"name": "Add_memory", "arguments": {}}]))  # content required
    assert not checker.accepts(g, render_step("x", calls=[ADD, ADD, ADD, ADD]))  # max_calls=3


def test_answer_only_grammar_rejects_tool_calls(checker):
    g = grammar(SCHEMAS, allow_tools=False)
    assert checker.accepts(g, render_step("x", answer="ok"))
    assert not checker.accepts(g, render_step("x", calls=[ADD]))


def test_tools_only_grammar_rejects_answers(checker):
    g = grammar(SCHEMAS, allow_answer=False)
    assert checker.accepts(g, render_step("x", calls=[RETRIEVE]))
    assert not checker.accepts(g, render_step("x", answer="ok"))


def test_think_kinds_grammar_forces_the_kind_label(checker):
    g = grammar(SCHEMAS, think_kinds=THINK_KINDS)
    assert checker.accepts(g, render_step(f"{protocol.KIND_PREFIX}new fact. store it", calls=[ADD]))
    assert not checker.accepts(g, render_step("store it", calls=[ADD]))
    assert not checker.accepts(g, render_step(f"{protocol.KIND_PREFIX}gossip. hm", answer="ok"))


def test_action_only_grammar_starts_after_the_think(checker):
    g = grammar(SCHEMAS, think=False)
    assert checker.accepts(g, "<answer>ok</answer>")
    assert not checker.accepts(g, "<think>x</think>\n<answer>ok</answer>")


def test_answer_only_grammar_cannot_produce_an_empty_answer(checker):
    g = grammar(SCHEMAS, allow_tools=False, think_kinds=THINK_KINDS)
    text = f"<think>{protocol.KIND_PREFIX}chat. x</think>\n<answer>\n</answer>"
    assert parse_step(text).kind == "invalid"  # what the parser makes of it
    assert not checker.accepts(g, text)


def test_constrained_generation_with_smollm2_parses(small_policy, monkeypatch):
    """A real SmolLM2 step decoded by the serving policy is a valid protocol step."""
    monkeypatch.setattr(small_policy, "max_new_tokens", 128)  # a rambling answer stays cheap
    # The serving prefix (system prompt + demonstrations): without it the 135M model rambles.
    messages = [
        {"role": "system", "content": render_system(today="2025-01-01", budget=4096, tool_schemas=SCHEMAS)},
        *render_demonstrations(),
        {"role": "user", "content": render_user_turn("Hello! Thanks for the help yesterday.", NO_RELATED)},
    ]
    streamed: list[str] = []
    c = small_policy.step(messages, on_text=streamed.append)
    p = parse_step(c.text)
    assert p.kind != "invalid", c.text
    assert p.think.startswith(protocol.KIND_PREFIX.strip())  # the guided think label was forced
    assert p.think[len(protocol.KIND_PREFIX):].split(".")[0].strip() in THINK_KINDS
    # The stream is what was generated; a call cut by the token cap is shown, then dropped.
    from agemem_lite.policy.llama import CUT_NOTICE
    dropped = c.extra.get("dropped_call", "")
    assert "".join(streamed).replace(dropped + CUT_NOTICE, "") == c.text
    assert c.prompt_tokens > 1000 and c.completion_tokens > 0


def test_answer_only_step_with_smollm2_is_an_answer(small_policy, monkeypatch):
    monkeypatch.setattr(small_policy, "max_new_tokens", 64)
    messages = [
        {"role": "system", "content": render_system(today="2025-01-01", budget=4096, tool_schemas=SCHEMAS)},
        *render_demonstrations(),
        {"role": "user", "content": render_user_turn("My cat Tom is four years old.", NO_RELATED)},
    ]
    c = small_policy.step(messages, allow_tools=False)
    p = parse_step(c.text)
    assert p.kind == "answer", c.text
    assert protocol.CALL_OPEN not in c.text


# A short prompt on which greedy SmolLM2 writes a tool call (measured): a step cap
# that ends inside the call must still leave a parseable step.
LONG_FACT = [
    {"role": "system", "content": render_system(today="2025-01-01", budget=2048, tool_schemas=SCHEMAS)},
    {"role": "user", "content": "Please remember this: my grandmother Rosalind Featherstonehaugh lives at "
                                "1427 Wisteria Lane, Springfield, and her phone number is 555-0199."},
]


def test_step_cut_by_max_new_tokens_still_parses(small_policy, monkeypatch):
    monkeypatch.setattr(small_policy, "max_new_tokens", 64)
    monkeypatch.setattr(small_policy, "think_tokens", 24)
    c = small_policy.step(LONG_FACT)
    assert parse_step(c.text).kind != "invalid", c.text


def test_step_never_writes_more_than_max_new_tokens(small_policy, monkeypatch):
    monkeypatch.setattr(small_policy, "max_new_tokens", 48)
    c = small_policy.step(LONG_FACT)
    assert c.completion_tokens <= 48, c.text
