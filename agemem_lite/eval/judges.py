"""Judges of an evaluation episode's answer (SPEC §5/§7: "say which judge produced a number").

The offline judges are ``rewards.exact_match`` ("em") and ``rewards.token_f1`` ("f1")
against the gold answers, and ``rewards.coverage`` of the gold facts by the final
memories (Memory Quality). This module adds the optional local-LLM judge: any
registry GGUF policy is asked one fixed yes/no question per answer, decoded under
a ``yes|no`` grammar, greedy. It is off by default (``agemem eval --judge llm:NAME``)
and named ``llm:NAME`` wherever its numbers appear.
"""

from __future__ import annotations

# The judge prompt (SPEC §5 "optional local-LLM judge"). Every string the model reads
# belongs in prompts.py (STYLE §3); this one lives here until that module is free to edit.
LLM_JUDGE_PROMPT = """\
You grade answers to questions. Question: {question}
Gold answer: {gold}
Answer to grade: {answer}
Does the answer to grade give the gold answer (other wording is fine, extra words are fine, \
a different or missing fact is not)? Reply with one word: yes or no."""

YES_NO_GBNF = 'root ::= "yes" | "no"'


def render_judge_prompt(question: str, answer: str, gold: list[str]) -> str:
    """The fixed judge prompt for one answer; several gold aliases are joined with " / "."""
    return LLM_JUDGE_PROMPT.format(question=question, gold=" / ".join(gold), answer=answer)


class LLMJudge:
    """``judge(question, answer, gold) -> 1.0 | 0.0``: a local policy says yes or no.

    ``policy`` is an open policy or a zero-argument function that opens one (called on
    first use, so a resumed run that needs no judging loads nothing). A ``LlamaPolicy``
    (it has ``.llm``) decodes under ``YES_NO_GBNF``; any other policy is asked through
    its ``summarise`` method and its reply is read as yes when it starts with "yes".
    """

    def __init__(self, name: str, policy):
        self.name = f"llm:{name}"
        self._policy, self._open = (None, policy) if callable(policy) and not hasattr(policy, "step") \
            else (policy, None)
        self._owned = False

    @property
    def policy(self):
        if self._policy is None:
            self._policy, self._owned = self._open(), True
        return self._policy

    def ask(self, prompt: str) -> str:
        """The judge's raw reply to ``prompt``."""
        p = self.policy
        if hasattr(p, "llm"):
            from llama_cpp import LlamaGrammar

            text = p.render([{"role": "user", "content": prompt}])
            out = p.llm.create_completion(text, max_tokens=2, temperature=0.0, seed=0,
                                          grammar=LlamaGrammar.from_string(YES_NO_GBNF, verbose=False))
            return out["choices"][0]["text"]
        return p.summarise(prompt)

    def __call__(self, question: str, answer: str | None, gold: list[str]) -> float:
        if answer is None or not answer.strip():
            return 0.0
        reply = self.ask(render_judge_prompt(question, answer, gold))
        return 1.0 if reply.strip().lower().startswith("yes") else 0.0

    def close(self) -> None:
        """Close the policy if this judge opened it."""
        if self._owned and self._policy is not None:
            self._policy.close()
            self._policy, self._owned = None, False


__all__ = ["LLM_JUDGE_PROMPT", "YES_NO_GBNF", "render_judge_prompt", "LLMJudge"]
