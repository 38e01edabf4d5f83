"""A second model's yes/no on a search hit: does this memory answer the query?

The cosine floor cannot tell an unrelated memory from a paraphrased answer: both sit at
0.2-0.4 with MiniLM, and the 0.5B policy names whatever a search hands it ("What is my dog's
name?" → the dentist memory). ``bench/relevance_gate.py`` measured a few-shot Yes/No from
Qwen2.5-Coder-1.5B above the cosine (AUC 0.898 against 0.837 over 579 hits; on the chat set it
kept all 20 answers and dropped 16 of 24 unrelated hits), and the 0.5B base below it (0.779),
so the check is an opt-in second model (``Settings.relevance_judge``), off by default. It
judges the hits of a turn whose user message is a question, against that question: the
memories shown with it and what Retrieve_memory finds in it.

The worked examples are evaluated once and stay in the KV cache; each hit costs only its own
tokens. The prompt is written with the judge model's own chat template, as the policy's is.
"""

from __future__ import annotations

import ctypes
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..config import Settings

#: The worked examples: the same person or thing asked about, or another one.
SHOTS = (("Where does my brother live?", "The user's brother Tom lives in Oslo.", "Yes"),
         ("What is my cat's name?", "The user's dentist is Dr. Lee.", "No"),
         ("What do I do for work?", "The user is a primary school teacher.", "Yes"),
         ("When is my mother's birthday?", "The user's father was born on 2 May.", "No"),
         ("Can I eat shrimp?", "The user is allergic to shellfish.", "Yes"),
         ("What car do I drive?", "The user's sister lives in Lyon.", "No"))
SYSTEM = ("You check whether a stored memory about the user holds the answer to a question. A memory "
          "about a different person, pet or thing does not. Reply with Yes or No only.")
#: Characters of a query / memory the judge reads: a LongMemEval turn or a HotpotQA paragraph
#: can be long, and the bench's numbers were measured with these cuts.
MAX_QUERY_CHARS, MAX_MEMORY_CHARS = 300, 600


def _ask(query: str, memory: str) -> dict:
    return {"role": "user", "content": f"Question: {query[:MAX_QUERY_CHARS]}\nMemory: {memory[:MAX_MEMORY_CHARS]}\n"
                                       "Does this memory answer the question?"}


#: The system message and the worked examples as a conversation (the KV-cached prefix).
EXAMPLES = [{"role": "system", "content": SYSTEM}] + [
    msg for q, m, a in SHOTS for msg in (_ask(q, m), {"role": "assistant", "content": a})]


class RelevanceJudge:
    """``judge(query, memory)`` → the Yes − No logit of a few-shot prompt (> 0: it answers)."""

    def __init__(self, model_path: str | Path, *, n_threads: int | None = None, n_ctx: int = 2048):
        import llama_cpp

        from ..errors import ModelFileError
        from ..policy.llama import chat_formatter, load_llama

        self._llama_cpp = llama_cpp
        self.llm = load_llama(model_path, n_ctx=n_ctx, n_threads=n_threads)
        self._vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.llm.model))
        self._yes, self._no = (self.llm.tokenize(w, add_bos=False, special=False)[0] for w in (b"Yes", b"No"))
        self._ask = chat_formatter(self.llm)
        self.prefix_text = chat_formatter(self.llm, add_generation_prompt=False)(messages=EXAMPLES).prompt
        if not self.turn_text("?", "?"):
            self.llm.close()
            raise ModelFileError(f"{Path(model_path).name}: its chat template does not write a conversation "
                                 "by appending turns, so the relevance judge cannot keep its examples cached")
        self._prefix = self.llm.tokenize(self.prefix_text.encode(), add_bos=False, special=True)
        self.llm.reset()
        self.llm.eval(self._prefix)

    def turn_text(self, query: str, memory: str) -> str:
        """The prompt text after the cached examples: the question, the memory and the reply's
        start ("" when the template does not write the examples the same way with a turn after them)."""
        full = self._ask(messages=EXAMPLES + [_ask(query, memory)]).prompt
        return full[len(self.prefix_text):] if full.startswith(self.prefix_text) else ""

    def __call__(self, query: str, memory: str) -> float:
        self.llm.n_tokens = len(self._prefix)   # forget the last hit, keep the worked examples
        self.llm.eval(self.llm.tokenize(self.turn_text(query, memory).encode(), add_bos=False, special=True))
        ptr = self._llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self._vocab,))
        return float(logits[self._yes] - logits[self._no])

    def close(self) -> None:
        self.llm.close()


#: How a question starts when it has no "?" ("tell me what I'm allergic to", "where do I live").
#: A wh-word counts only before a verb: "When I moved to Oxford, ..." is a statement.
_ASKS = re.compile(
    r"\s*(?:(?:what|where|when|who|whose|which|why|how)(?:'s|\s+(?:is|are|was|were|do|does|did|can|should|would"
    r"|will|many|much|old|long|far|often))|tell\s+me|remind\s+me|do\s+you\s+(?:know|remember)"
    r"|did\s+i\s+(?:tell|mention|say))\b", re.IGNORECASE)


def question_of(message: str) -> str | None:
    """The message when it asks something (it has a "?", or starts as a question or a request
    to be told), else None: only a question's hits are judged. The judge asks whether a memory
    answers the question; asked the same of a statement, the 1.5B dropped the old fact that the
    statement changes ("My dentist is now Dr. Khan." against "My dentist is Dr. Patel in
    Leeds.": −1.04), and an Update needs that memory shown or found (its id must be seen)."""
    return message if "?" in message or _ASKS.match(message) else None


def judge_model(settings: "Settings") -> str | None:
    """The registry chat model ``settings.relevance_judge`` names, or None when the check is off;
    a ConfigError before anything loads when the name is not such a model."""
    if not settings.relevance_judge:
        return None
    from ..errors import ConfigError, ModelFileError
    from ..model_files import get_spec

    try:
        spec = get_spec(settings, settings.relevance_judge)
    except ModelFileError as e:
        raise ConfigError(f"relevance_judge: {e}") from None
    if spec.role != "policy":
        raise ConfigError(f"relevance_judge={settings.relevance_judge!r} is an {spec.role}; "
                          "name a chat model (e.g. qwen2.5-coder-1.5b)")
    return spec.name


def load_judge(settings: "Settings", progress=None) -> RelevanceJudge | None:
    """The judge ``settings.relevance_judge`` names (assembled on first use), or None when off."""
    name = judge_model(settings)
    if name is None:
        return None
    from ..model_files import resolve

    return RelevanceJudge(resolve(settings, name, progress=progress), n_threads=settings.n_threads or None)
