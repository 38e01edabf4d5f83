"""Trajectory reward of SPEC §5, computed offline from ``Step`` records.

``R = w_task·R_task + w_context·R_context + w_memory·R_memory + P``

The paper judges R_task, R_storage and R_relevance with an LLM (Qwen-Max). Here every
judge runs offline and is named in the result (SPEC §5 "say which judge produced a
number"):

- R_task: SQuAD/HotpotQA answer normalisation, then exact match (``"em"``) or token F1
  (``"f1"``) against the gold answer (or the best of several gold aliases).
- An unanswerable question (LongMemEval's "_abs" items): ``says_not_known``. The official
  benchmark asks its judge whether the reply identifies the question as unanswerable, so any
  wording counts, not only the gold sentence.
- R_storage, R_relevance: ``coverage`` of the gold supporting facts, i.e. token recall of
  each normalised fact inside a text, thresholded (default 0.6).

Everything here is pure Python and deterministic; one function per reward term.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

from .records import Step

JUDGES = ("em", "f1")
CONTEXT_REDUCTION_TOOLS = ("Summary_context", "Filter_context")

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


# -- offline judges -----------------------------------------------------------------

def normalize_answer(s: str) -> str:
    """SQuAD/HotpotQA normalisation: lowercase, drop punctuation and articles (a/an/the),
    collapse whitespace."""
    s = str(s).lower().translate(_PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _golds(gold: str | Sequence[str]) -> list[str]:
    return [gold] if isinstance(gold, str) else [str(g) for g in gold]


def exact_match(pred: str, gold: str | Sequence[str]) -> float:
    """1.0 if the normalised prediction equals a normalised gold answer, else 0.0
    (SPEC §5 R_task, offline judge "em"). ``gold`` may be a list of aliases."""
    p = normalize_answer(pred)
    return max((float(p == normalize_answer(g)) for g in _golds(gold)), default=0.0)


#: Phrases by which a reply says it was not told or does not know. Phrases, not lone words:
#: "No, your dog is Rex." and "That is not Rex." claim an answer.
_NOT_KNOWN = re.compile(r"""\b(?:
      (?:have|has|had|did|do|does)(?:\s+not|n't)\s+(?:\w+\s+){0,3}?
          (?:told|tell|mention(?:ed)?|said|say|stated?|given|give|shared?|know|have|recall|remember
             |record(?:ed)?|stored?)
    | not\s+(?:been\s+)?(?:enough|known|sure|stated|mentioned|told|given|provided|recorded|stored|saved
             |available|found|in\s+(?:my\s+)?memor(?:y|ies))
    | never\s+(?:\w+\s+)?(?:told|mentioned|said|stated|shared|gave|talked|brought)
    | no\s+(?:\w+\s+)?(?:information|info|record|records|memory|memories|mention|idea|answer|data|details?|knowledge)
    | (?:cannot|can't|can\s+not|unable\s+to)\s+(?:\w+\s+)?(?:answer|tell|say|know|find|recall|remember)
    | unknown | nothing\s+(?:\w+\s+)?(?:about|on|stored|saved|recorded|mentioned)
    )\b""", re.I | re.X)


def says_not_known(reply: str) -> bool:
    """Whether a reply says it was not told, or does not know, what was asked: the offline
    stand-in for LongMemEval's abstention judge (an LLM asked whether the reply identifies the
    question as unanswerable)."""
    return bool(reply and _NOT_KNOWN.search(str(reply).replace("\u2019", "'")))


def answer_score(pred: str, gold: str | Sequence[str], judge: str = "em", *, unanswerable: bool = False) -> float:
    """``exact_match`` or ``token_f1`` of ``pred`` against ``gold``. For an ``unanswerable``
    question, 1.0 when the reply says it is not known (``says_not_known``), else 0.0: the gold
    sentence is one wording of an abstention, and "You have not told me that yet." is another."""
    if judge not in JUDGES:
        raise ValueError(f"judge={judge!r}: unknown judge; use one of {JUDGES}")
    if unanswerable:
        return float(says_not_known(pred))
    return exact_match(pred, gold) if judge == "em" else token_f1(pred, gold)


def _f1_one(pred: str, gold: str) -> float:
    pt, gt = normalize_answer(pred).split(), normalize_answer(gold).split()
    if not pt or not gt:
        return float(pt == gt)
    common = sum((Counter(pt) & Counter(gt)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pt), common / len(gt)
    return 2 * precision * recall / (precision + recall)


def token_f1(pred: str, gold: str | Sequence[str]) -> float:
    """SQuAD token F1 of the normalised prediction vs the gold answer, in [0, 1]
    (SPEC §5 R_task, offline judge "f1"); the best over gold aliases. Two empty
    strings score 1.0, one empty string 0.0."""
    return max((_f1_one(pred, g) for g in _golds(gold)), default=0.0)


def _fact_recall(fact_tokens: list[str], text_tokens: set[str]) -> float:
    uniq = set(fact_tokens)
    return len(uniq & text_tokens) / len(uniq)


def coverage(texts: Iterable[str], facts: Iterable[str], threshold: float = 0.6) -> float:
    """Share of gold facts covered by at least one text (SPEC §5 offline judge for
    R_storage and R_relevance, also used for Memory Quality).

    A fact is covered by a text when at least ``threshold`` of the fact's distinct
    normalised tokens (``normalize_answer``) occur in the text's normalised tokens
    (token recall ≥ threshold, default 0.6). Facts that normalise to nothing are
    ignored; with no (non-empty) facts the score is 0.0: there is nothing to judge against.
    """
    fact_toks = [t for t in (normalize_answer(f).split() for f in facts) if t]
    if not fact_toks:
        return 0.0
    text_sets = [set(normalize_answer(t).split()) for t in texts]
    covered = sum(1 for ft in fact_toks
                  if any(_fact_recall(ft, ts) >= threshold for ts in text_sets))
    return covered / len(fact_toks)


# -- R_task -------------------------------------------------------------------------

def r_task(answer: str | None, gold: str | Sequence[str], judge: str = "f1", *, unanswerable: bool = False) -> float:
    """SPEC §5 ``R_task`` = judge score of the answer vs gold in [0, 1]; no answer → −1.

    ``judge`` is ``"em"`` (exact match) or ``"f1"`` (token F1); an ``unanswerable`` question
    scores whether the answer says it is not known (``answer_score``)."""
    if judge not in JUDGES:
        raise ValueError(f"judge={judge!r}: unknown judge; use one of {JUDGES}")
    if answer is None:
        return -1.0
    return answer_score(answer, gold, judge, unanswerable=unanswerable)


# -- R_context ----------------------------------------------------------------------

def r_compression(t_used: int, t_max: int) -> float:
    """SPEC §5 ``R_compression = max(0, 1 − T_used/T_max)`` (context tokens when answering)."""
    if t_max <= 0:
        raise ValueError(f"t_max={t_max}: the context budget T_max must be > 0 (paper: 8,192)")
    return min(1.0, max(0.0, 1.0 - t_used / t_max))


def r_preventive(used_reduction_before_overflow: bool) -> float:
    """SPEC §5 ``R_preventive`` = 1 if a context-reduction tool (Summary_context /
    Filter_context) was used before overflow, else 0."""
    return 1.0 if used_reduction_before_overflow else 0.0


def _item_present(item: str, ctx_fold: str, ctx_norm: str) -> bool:
    if item.casefold() in ctx_fold:
        return True
    n = normalize_answer(item)
    return bool(n) and re.search(rf"(?:^|\s){re.escape(n)}(?:\s|$)", ctx_norm) is not None


def r_preservation(key_items: Sequence[str], context_text: str) -> float:
    """SPEC §5 ``R_preservation``: the key items of the query (entities, dates, places)
    are still in the context when answering. Returns the share of key items present
    (case-insensitive substring, or the normalised item as whole words of the normalised
    context); 1.0 when there are no key items. Blank items are ignored."""
    items = [k for k in key_items if str(k).strip()]
    if not items:
        return 1.0
    fold, norm = context_text.casefold(), normalize_answer(context_text)
    return sum(_item_present(str(k), fold, norm) for k in items) / len(items)


def r_context(compression: float, preventive: float, preservation: float) -> float:
    """SPEC §5 ``R_context`` = mean(R_compression, R_preventive, R_preservation)."""
    return (compression + preventive + preservation) / 3.0


# -- R_memory -----------------------------------------------------------------------

def r_storage(added_contents: Sequence[str], gold_facts: Sequence[str],
              threshold: float = 0.6) -> float:
    """SPEC §5 ``R_storage`` = share of stage-1 ADDs that are high quality.

    Offline oracle: an ADD is high quality when it covers at least one gold fact
    (``coverage`` > 0 at ``threshold``). 0.0 if nothing was added."""
    if not added_contents:
        return 0.0
    good = sum(1 for c in added_contents if coverage([c], gold_facts, threshold) > 0)
    return good / len(added_contents)


def r_maintenance(n_updates: int, n_deletes: int) -> float:
    """SPEC §5 ``R_maintenance`` = 1 if an update or delete was performed, else 0."""
    return 1.0 if (n_updates > 0 or n_deletes > 0) else 0.0


def r_relevance(retrieved_contents: Sequence[str], gold_facts: Sequence[str],
                threshold: float = 0.6) -> float:
    """SPEC §5 ``R_relevance`` = relevance of what was retrieved to the query, in [0, 1].

    Offline judge: ``coverage`` of the gold supporting facts by the retrieved memories
    (0.0 if nothing was retrieved)."""
    return coverage(retrieved_contents, gold_facts, threshold)


def r_memory(storage: float, maintenance: float, relevance: float) -> float:
    """SPEC §5 ``R_memory`` = mean(R_storage, R_maintenance, R_relevance)."""
    return (storage + maintenance + relevance) / 3.0


# -- penalties ----------------------------------------------------------------------

def penalty(rounds_exceeded: bool, t_used: int, t_max: int) -> float:
    """SPEC §5 penalties ``P``: −1 if the rounds exceed N_max; −0.5 if T_used > T_max.
    Both may apply (P = −1.5)."""
    p = 0.0
    if rounds_exceeded:
        p -= 1.0
    if t_used > t_max:
        p -= 0.5
    return p


# -- configuration and result ---------------------------------------------------------

def _f(default, help: str):
    return field(default=default, metadata={"help": help, "spec": "§5"})


@dataclass
class RewardConfig:
    """How the SPEC §5 trajectory reward is combined and judged."""

    w_task: float = _f(1 / 3, "Weight of R_task. SPEC §5: 1/3 each (the paper also states 1.0).")
    w_context: float = _f(1 / 3, "Weight of R_context. SPEC §5: 1/3 each (the paper also states 1.0).")
    w_memory: float = _f(1 / 3, "Weight of R_memory. SPEC §5: 1/3 each (the paper also states 1.0).")
    answer_only: bool = _f(False, "Ablation: R = R_task + P (context and memory terms dropped).")
    judge: str = _f("f1", "Offline judge of R_task: 'f1' (token F1) or 'em' (exact match). "
                    "The paper uses an LLM judge (Qwen-Max).")
    coverage_threshold: float = _f(0.6, "Token recall a text needs on a gold fact to cover it "
                                   "(offline judge of R_storage and R_relevance; the paper uses an LLM).")

    def __post_init__(self):
        for name in ("w_task", "w_context", "w_memory"):
            w = getattr(self, name)
            if not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0:
                raise ValueError(f"{name}={w!r}: reward weights must be numbers ≥ 0 "
                                 f"(SPEC §5 default 1/3); set {name} to a non-negative number")
        if self.judge not in JUDGES:
            raise ValueError(f"judge={self.judge!r}: unknown R_task judge; use one of {JUDGES}")
        if not 0 < self.coverage_threshold <= 1:
            raise ValueError(f"coverage_threshold={self.coverage_threshold!r}: a token-recall "
                             "threshold must be in (0, 1]; the default is 0.6")


@dataclass
class RewardBreakdown:
    """Every SPEC §5 term of one trajectory, the total, and which judges produced them."""

    r_task: float
    r_compression: float
    r_preventive: float
    r_preservation: float
    r_context: float
    r_storage: float
    r_maintenance: float
    r_relevance: float
    r_memory: float
    penalty: float
    total: float
    judge: str                 # R_task judge: "em" | "f1"
    memory_judge: str          # R_storage / R_relevance judge, e.g. "coverage@0.6"
    answer_only: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


# -- from Step records ----------------------------------------------------------------

def _ok_results(step: Step, name: str):
    """(call, result) pairs of successful ``name`` results in a step."""
    for i, res in enumerate(step.results):
        if res.get("name") == name and res.get("ok"):
            call = step.calls[i] if i < len(step.calls) else {}
            yield call, res


def _message_text(m) -> str:
    c = m.get("content", "") if isinstance(m, dict) else m
    if isinstance(c, list):   # content parts
        return "\n".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in c)
    return "" if c is None else str(c)


def trajectory_reward(steps: list[Step], *, gold_answer: str | Sequence[str],
                      gold_facts: list[str], key_items: list[str], t_max: int,
                      n_max_exceeded: bool, cfg: RewardConfig, unanswerable: bool = False) -> RewardBreakdown:
    """The SPEC §5 reward of one three-stage trajectory (SPEC §4), from its Step records.

    - answer: the final step's ``answer`` (None → R_task = −1); the final step is the
      answering step, so T_used = its ``context_tokens`` and the preservation context is
      the concatenated contents of its prompt messages.
    - R_preventive: a successful Summary_context/Filter_context at a step whose
      ``context_tokens`` ≤ t_max (before overflow).
    - stage-1 ADDs: successful Add_memory results in ``stage == "ltm"`` steps; content
      from ``data["memory"]["content"]``, else the call's ``arguments["content"]``.
    - updates/deletes: successful Update_memory/Delete_memory results (any stage).
    - retrieved: ``data["hits"][j]["memory"]["content"]`` of successful Retrieve_memory results.
    - ``unanswerable``: R_task credits a reply that says it is not known (``answer_score``).
    - R = w_task·R_task + w_context·R_context + w_memory·R_memory + P, or R_task + P
      with ``cfg.answer_only``.
    """
    last = steps[-1] if steps else None
    answer = last.answer if last else None
    t_used = last.context_tokens if last else 0
    context_text = "\n".join(_message_text(m) for m in last.prompt) if last else ""

    prevented = any(s.context_tokens <= t_max
                    for s in steps for name in CONTEXT_REDUCTION_TOOLS
                    for _ in _ok_results(s, name))

    added: list[str] = []
    for s in steps:
        if s.stage != "ltm":
            continue
        for call, res in _ok_results(s, "Add_memory"):
            mem = (res.get("data") or {}).get("memory") or {}
            content = mem.get("content")
            if content is None:
                content = (call.get("arguments") or {}).get("content")
            if content is not None:
                added.append(str(content))
    n_updates = sum(1 for s in steps for _ in _ok_results(s, "Update_memory"))
    n_deletes = sum(1 for s in steps for _ in _ok_results(s, "Delete_memory"))
    retrieved = [str(h["memory"]["content"])
                 for s in steps for _, res in _ok_results(s, "Retrieve_memory")
                 for h in (res.get("data") or {}).get("hits") or []
                 if isinstance(h, dict) and (h.get("memory") or {}).get("content") is not None]

    th = cfg.coverage_threshold
    rt = r_task(answer, gold_answer, cfg.judge, unanswerable=unanswerable)
    rc, rp, rs = r_compression(t_used, t_max), r_preventive(prevented), r_preservation(key_items, context_text)
    ctx = r_context(rc, rp, rs)
    st, mt, rl = r_storage(added, gold_facts, th), r_maintenance(n_updates, n_deletes), r_relevance(retrieved, gold_facts, th)
    mem = r_memory(st, mt, rl)
    p = penalty(n_max_exceeded, t_used, t_max)
    if cfg.answer_only:
        total = rt + p
    else:
        total = cfg.w_task * rt + cfg.w_context * ctx + cfg.w_memory * mem + p
    return RewardBreakdown(r_task=rt, r_compression=rc, r_preventive=rp, r_preservation=rs,
                           r_context=ctx, r_storage=st, r_maintenance=mt, r_relevance=rl,
                           r_memory=mem, penalty=p, total=total, judge=cfg.judge,
                           memory_judge=f"coverage@{th:g}", answer_only=cfg.answer_only)


__all__ = [
    "JUDGES", "normalize_answer", "exact_match", "token_f1", "says_not_known", "answer_score", "coverage", "r_task",
    "r_compression", "r_preventive", "r_preservation", "r_context", "r_storage",
    "r_maintenance", "r_relevance", "r_memory", "penalty", "RewardConfig",
    "RewardBreakdown", "trajectory_reward",
]
