"""The three-stage episode of SPEC §4: one trajectory = stage 1 -> stage 2 -> stage 3.

``run_episode(policy, store, embedder, task, config)`` drives the real agent loop
(``agent.Agent.turn``; each step is a ``records.Step`` with ``stage`` set):

1. ``"ltm"``, LTM construction: the task's information arrives as user turns
   (at most ``n_max`` turns; more are merged, see ``pack_turns``). Before each turn
   the environment retrieves the top-k related memories and shows them with it
   (``Agent.related_memories``). The query is never shown.
   Which stages show this retrieval depends on the method (``Agent.turn(show_related=...)``);
   a turn without it is the bare user message, with no related-memories header.
2. ``"stm"``, STM control under distractors: the context is RESET to the system
   prompt and the demonstrations; the LTM is kept, but the memory ids shown in stage 1
   left with the context, so Update/Delete need a new retrieval (SPEC §2). Then one
   distractor per turn (``n_distractors``, at most ``n_max`` turns).
3. ``"reason"``: the context carries over from stage 2, the query is the next user
   turn and the policy answers (it may retrieve first). That answer is the episode's.

A turn of stage 1 or 2 also ends with an ``<answer>``: the agent's reply to that
user turn (SPEC §3's "``<answer>`` ends the episode" holds for the stage-3 turn).

Every episode writes to its own store namespace (``ep:<task>:<method>:<seed>``
unless given), which must start empty (SPEC §4: M starts empty per rollout), so
episodes never see each other's memories.

Methods (``config.method``, the table is ``baselines.METHODS``; the agent is
opened with ``Agent(tools=method.tools)``):
- ``agemem``: the six tools; environment retrieval with stage-1 turns.
- ``agemem-rag``: Add/Update/Delete only; the environment's retrieval with every turn
  replaces the STM tools (Retrieve/Summary/Filter).
- ``no-memory``: no tools, no LTM; the answer comes from the stage-3 context only.
- ``full-context``: no tools and no reset: everything stays in the context.
- ``add-only``: the environment stores every stage-1/2 turn verbatim, shows the
  top-k hybrid hits with the question; the policy only answers.

Decisions where SPEC §4/§5 are silent:
- ``n_max_exceeded`` (penalty −1) = some turn reached ``max_steps_per_turn`` without
  an ``<answer>``. A stage never has more than ``n_max`` turns by construction.
- ``EpisodeTask.key_items`` feed R_preservation as given; the HotpotQA adapter uses
  the gold paragraphs' titles (the entities the answer depends on).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

from .agent import Agent
from .baselines import METHODS, STAGES
from .config import Settings
from .prompts import render_question
from .records import Step, Turn
from .rewards import RewardBreakdown, RewardConfig, coverage, normalize_answer, trajectory_reward

# How a HotpotQA paragraph reads as a casual user turn (stage 1 and stage 2 alike, so
# distractors look like information). The user's words the model reads belong in
# prompts.py (STYLE §3); they live here until that module is free to edit.
PARAGRAPH_TURN = "I was reading about {title} today. {text}"
SENTENCE_TURN = "About {title}: {text}"


def _f(default, help: str, spec: str = "§4"):
    if isinstance(default, type):
        return field(default_factory=default, metadata={"help": help, "spec": spec})
    return field(default=default, metadata={"help": help, "spec": spec})


@dataclass
class EpisodeConfig:
    """How one three-stage episode runs (SPEC §4) and is scored (SPEC §5)."""

    method: str = _f("agemem", "Method variant: " + ", ".join(METHODS) + " (baselines.METHODS).", "§7")
    n_max: int = _f(8, "N_max: most turns per stage. SPEC §4 names N_max without a value; 8 fits "
                    "a HotpotQA item's 8 distractors. Longer information is merged into n_max turns.")
    t_max: int = _f(8192, "T_max: context budget in tokens (paper: 8,192); must fit the policy's n_ctx.", "§5")
    top_k: int = _f(3, "Memories the environment shows with a turn, and Retrieve_memory's default top_k.", "§2")
    filter_threshold: float = _f(0.6, "θ: Filter_context drops messages with cosine ≥ θ (paper: 0.6).", "§2")
    max_steps_per_turn: int = _f(6, "Step limit of one user turn; the last step may only answer. "
                                 "Methods without tools take 1.")
    stage1_retrieval: bool = _f(True, "Show the environment's retrieval with stage-1 turns (SPEC §4). "
                                "False is an ablation: the agent must retrieve by itself.")
    n_distractors: int | None = _f(None, "Distractor turns in stage 2; None = all the task's, up to n_max.")
    distractors_per_turn: int = _f(1, "Distractors joined into one stage-2 turn (SPEC §4: one).")
    demonstrations: bool = _f(True, "Show the demonstration turns after the system prompt (prompted "
                              "policies; a trained policy can drop them). Kept by the stage-2 reset.", "§3")
    context_usage: bool = _f(False, "Start each user turn with how full the context is (a policy trained "
                             "with that line: ModelSpec.context_usage).", "§2")
    short_answer: bool = _f(True, "Stage 3 asks for the answer only, a short phrase "
                            "(prompts.render_question); False asks the bare question.", "§4")
    today: str = _f("", "ISO date shown in the system prompt; empty = the real date.", "§3")
    relevance_judge: str = _f("", "A second model that checks each search hit past the floor "
                              "(Settings.relevance_judge; the episode is given it opened); '' is off.", "§2")
    seed: int = _f(0, "Rollout seed: names the default namespace (one per rollout of a task).")
    reward: RewardConfig = _f(RewardConfig, "Weights and offline judges of the trajectory reward.", "§5")

    def __post_init__(self):
        if isinstance(self.reward, dict):
            self.reward = RewardConfig(**self.reward)
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r}: unknown method; use one of {', '.join(METHODS)}")
        for name in ("n_max", "t_max", "top_k", "max_steps_per_turn", "distractors_per_turn"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be ≥ 1")
        if self.n_distractors is not None and self.n_distractors < 0:
            raise ValueError(f"n_distractors={self.n_distractors}: use ≥ 0, or None for all")
        if not 0.0 <= self.filter_threshold <= 1.0:
            raise ValueError(f"filter_threshold={self.filter_threshold}: θ is a cosine in [0, 1] (SPEC §2: 0.6)")


@dataclass
class EpisodeTask:
    """What an episode needs from any benchmark item, as plain strings (SPEC §1 ``T``)."""

    id: str
    question: str
    answers: list[str]                                  # the gold answer, or several aliases
    information: list[str]                              # stage-1 user turns, in order
    distractors: list[str] = field(default_factory=list)  # stage-2 material, one per turn
    gold_facts: list[str] = field(default_factory=list)   # evidence: R_storage, R_relevance, MQ
    key_items: list[str] = field(default_factory=list)    # R_preservation (empty -> 1.0)
    source: str = ""                                    # "hotpotqa", "longmemeval", "locomo", ...
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.answers, str):
            self.answers = [self.answers]
        for name in ("id", "question"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(f"task {self.id!r}: {name} must be a non-empty string")
        if not self.answers or not self.information:
            raise ValueError(f"task {self.id!r}: needs at least one gold answer and one information turn")
        for name in ("answers", "information", "distractors", "gold_facts", "key_items"):
            values = getattr(self, name)
            if not all(isinstance(v, str) and v.strip() for v in values):
                raise ValueError(f"task {self.id!r}: {name} must be a list of non-empty strings")

    @classmethod
    def from_hotpot(cls, item, *, unit: str = "paragraph") -> "EpisodeTask":
        """A ``eval.hotpot.HotpotItem`` as an episode task.

        - information: each gold paragraph (``item.gold_titles`` order, all its sentences)
          as one turn ``"I was reading about <title> today. <sentences joined by ' '>"``;
          ``unit="sentence"``: one turn per sentence, ``"About <title>: <sentence>"``.
        - distractors: the 8 distractor paragraphs, rendered like paragraph turns.
        - gold_facts: the supporting sentences; key_items: the gold titles.
        """
        if unit not in ("paragraph", "sentence"):
            raise ValueError(f"unit={unit!r}: use 'paragraph' or 'sentence'")
        paras = dict(item.context)
        turns = lambda t, s: [PARAGRAPH_TURN.format(title=t, text=" ".join(s))]  # noqa: E731
        if unit == "sentence":
            turns = lambda t, s: [SENTENCE_TURN.format(title=t, text=x) for x in s]  # noqa: E731
        info = [x for t in item.gold_titles for x in turns(t, paras.get(t, []))]
        return cls(id=item.id, question=item.question, answers=[item.answer], information=info,
                   distractors=[PARAGRAPH_TURN.format(title=t, text=" ".join(s))
                                for t, s in item.distractor_paragraphs()],
                   gold_facts=item.gold_sentences(), key_items=list(item.gold_titles), source="hotpotqa",
                   metadata={"type": item.type, "level": item.level})

    @classmethod
    def from_longmemeval(cls, item) -> "EpisodeTask":
        """A ``eval.longmemeval.LongMemItem`` as an episode task.

        - question: ``item.query()`` ("[question date] question": temporal questions count from it).
        - information: ``item.information_turns()`` (the has_answer turns, "[date] role: content").
        - distractors: ``item.distractor_turns()`` (the filler sessions' user turns).
        - gold_facts: ``item.gold_sentences()``; no key_items (R_preservation is 1.0).
        """
        meta = {"type": item.kind, "question_date": item.question_date}
        if item.old_answer is not None:
            meta["old_answer"] = item.old_answer
        return cls(id=item.question_id, question=item.query(), answers=[str(item.answer)],
                   information=item.information_turns(), distractors=item.distractor_turns(),
                   gold_facts=[s for s in item.gold_sentences() if s.strip()], source="longmemeval",
                   metadata=meta)

    @property
    def unanswerable(self) -> bool:
        """An abstention item (LongMemEval's "_abs"): the right answer says it is not known."""
        return self.metadata.get("type") == "abstention"

    def to_dict(self) -> dict:
        return asdict(self)


def pack_turns(texts: Sequence[str], n: int, per_turn: int = 1) -> list[str]:
    """Join ``per_turn`` consecutive texts into one turn, then merge neighbours into at most
    ``n`` turns (near-equal groups, order kept, nothing dropped); joined with a blank line."""
    groups = [list(texts[i:i + per_turn]) for i in range(0, len(texts), per_turn)]
    if len(groups) > n:
        size, extra = divmod(len(groups), n)
        bounds = [i * size + min(i, extra) for i in range(n + 1)]
        groups = [sum(groups[a:b], []) for a, b in zip(bounds, bounds[1:])]
    return ["\n\n".join(g) for g in groups]


@dataclass
class Episode:
    """One trajectory: turns by stage, the answer, costs and the SPEC §5 reward (JSON-ready)."""

    task_id: str
    method: str
    namespace: str
    question: str
    gold_answers: list[str]
    stages: dict[str, list[Turn]]          # "ltm" / "stm" / "reason" -> turns (steps inside)
    answer: str | None
    tool_calls: dict[str, int]             # calls the policy wrote, by tool (refused ones too)
    failed_calls: int                      # tool results with ok = False (protocol errors too)
    prompt_tokens: int                     # sum over steps (SPEC §7 prompt tokens per episode)
    t_used: int                            # context tokens when answering (SPEC §5 T_used)
    wall_s: float
    n_max_exceeded: bool
    memories: list[dict]                   # the namespace's LTM when the episode ended
    memory_quality: float | None           # SPEC §7 MQ: coverage of gold facts by memories
    reward: RewardBreakdown
    config: dict                           # the resolved EpisodeConfig
    unanswerable: bool = False             # an abstention task: a "not known" reply is right

    @property
    def steps(self) -> list[Step]:
        """Every step in order, stage 1 to 3 (what ``trajectory_reward`` and GRPO read)."""
        return [s for st in STAGES for t in self.stages.get(st, []) for s in t.steps]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Episode":
        return cls(**{**d, "stages": {k: [Turn.from_dict(t) for t in v] for k, v in d["stages"].items()},
                      "reward": RewardBreakdown(**d["reward"])})


def reset_context(agent: Agent) -> None:
    """SPEC §4 stage-2 reset: keep the system prompt and the demonstrations (the fixed prefix;
    ``Context.reset`` would drop the demonstrations), forget which memory ids were shown."""
    ctx = agent.context
    ctx.messages = [m for i, m in enumerate(ctx.messages) if i == 0 or m.kind == "demo"]
    agent.env.seen_ids.clear()


def _settings(settings: Settings | None, policy, cfg: EpisodeConfig, namespace: str, steps: int) -> Settings:
    base = settings or Settings(data_dir=".")
    return dataclasses.replace(
        base, namespace=namespace, context_budget=cfg.t_max, top_k=cfg.top_k, auto_retrieve_k=cfg.top_k,
        filter_threshold=cfg.filter_threshold, max_steps_per_turn=steps,
        n_ctx=getattr(policy, "n_ctx", base.n_ctx),
        max_new_tokens=getattr(policy, "max_new_tokens", base.max_new_tokens))


def run_episode(policy, store, embedder, task: EpisodeTask, config: EpisodeConfig | None = None, *,
                settings: Settings | None = None, namespace: str | None = None,
                on_step: Callable[[Step], None] | None = None, judge=None) -> Episode:
    """Run ``task`` through the three stages with ``config.method``; score it (SPEC §4-§5).

    ``settings`` supplies what the config does not (n_ctx, generation caps, the
    retrieval similarity floor); ``on_step`` sees each step as it is recorded; ``judge``
    is the opened ``relevance.RelevanceJudge`` that ``config.relevance_judge`` names."""
    cfg = config or EpisodeConfig()
    if bool(cfg.relevance_judge) != (judge is not None):
        raise ValueError(f"relevance_judge={cfg.relevance_judge!r}: pass the opened judge exactly when "
                         "the config names one")
    method = METHODS[cfg.method]
    ns = namespace or f"ep:{task.id}:{method.name}:{cfg.seed}"
    if store.count(ns):
        raise ValueError(f"namespace {ns!r} already holds {store.count(ns)} memories: an episode starts "
                         "with an empty LTM (SPEC §4); pass another namespace or seed")
    s = _settings(settings, policy, cfg, ns, cfg.max_steps_per_turn if method.tools else 1)
    agent = Agent(policy, store, embedder, s, today=cfg.today or None, demonstrations=cfg.demonstrations,
                  context_usage=cfg.context_usage, tools=method.tools, judge=judge)
    retrieval = method.retrieval_stages(cfg.stage1_retrieval)
    stages: dict[str, list[Turn]] = {st: [] for st in STAGES}
    t0 = time.perf_counter()

    def turn(stage: str, text: str) -> None:
        def tag(step: Step) -> None:
            step.stage = stage
            if on_step:
                on_step(step)
        stages[stage].append(agent.turn(text, on_step=tag, show_related=stage in retrieval))
        if method.env_adds and stage != "reason":   # add-only: the environment stores the turn
            store.add(ns, text, embedder.embed_one(text), memory_type="note", source="environment",
                      actor="environment")

    for text in pack_turns(task.information, cfg.n_max):
        turn("ltm", text)
    if method.reset:
        reset_context(agent)
    n = len(task.distractors) if cfg.n_distractors is None else cfg.n_distractors
    for text in pack_turns(task.distractors[:n * cfg.distractors_per_turn], cfg.n_max, cfg.distractors_per_turn):
        turn("stm", text)
    turn("reason", render_question(task.question, cfg.short_answer))
    wall = time.perf_counter() - t0

    steps = [st for name in STAGES for t in stages[name] for st in t.steps]
    exceeded = any(t.answer is None for ts in stages.values() for t in ts)
    reward = trajectory_reward(steps, gold_answer=task.answers, gold_facts=task.gold_facts,
                               key_items=task.key_items, t_max=cfg.t_max, n_max_exceeded=exceeded,
                               cfg=cfg.reward, unanswerable=task.unanswerable)
    memories = store.export(ns)
    mq = coverage([m["content"] for m in memories], task.gold_facts, cfg.reward.coverage_threshold) \
        if task.gold_facts else None
    return Episode(
        task_id=task.id, method=method.name, namespace=ns, question=task.question,
        gold_answers=list(task.answers), stages=stages, answer=stages["reason"][-1].answer,
        tool_calls=dict(Counter(c["name"] for st in steps for c in st.calls)),
        failed_calls=sum(1 for st in steps for r in st.results if not r.get("ok")),
        prompt_tokens=sum(st.prompt_tokens for st in steps), t_used=steps[-1].context_tokens if steps else 0,
        wall_s=wall, n_max_exceeded=exceeded, memories=memories, memory_quality=mq, reward=reward,
        config=asdict(cfg), unanswerable=task.unanswerable)


class DistractorGen:
    """Related-looking but irrelevant stage-2 material per task (SPEC §4).

    A task that brings its own distractors (HotpotQA: its distractor paragraphs) gets
    those. Otherwise, the fallback: information turns of OTHER tasks of the same
    ``source`` in ``pool``, ranked by embedding cosine to the task's question plus
    information; texts that contain a gold answer (normalised, whole words) are
    skipped, so a distractor never answers. From the ``oversample * n`` most similar,
    ``n`` are drawn with ``random.Random(f"{seed}:{task.id}")`` and kept in similarity
    order: the same seed gives the same distractors.
    """

    def __init__(self, pool: Sequence[EpisodeTask] = (), embedder=None, *, seed: int = 0, oversample: int = 2):
        self.pool, self.embedder, self.seed, self.oversample = list(pool), embedder, seed, max(1, oversample)
        self._vectors: dict[str, np.ndarray] = {}

    def _embed(self, texts: list[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if new:
            self._vectors.update(zip(new, self.embedder.embed(new)))
        return np.stack([self._vectors[t] for t in texts]) if texts else np.zeros((0, 1), np.float32)

    def __call__(self, task: EpisodeTask, n: int) -> list[str]:
        """Up to ``n`` distractors for ``task``."""
        if task.distractors or n <= 0:
            return list(task.distractors[:max(n, 0)])
        if self.embedder is None:
            raise ValueError(f"task {task.id!r} has no distractors of its own: DistractorGen needs an "
                             "embedder to pick them from other tasks")
        golds = [f" {normalize_answer(a)} " for a in task.answers if normalize_answer(a)]
        cands = list(dict.fromkeys(
            x for t in self.pool if t.source == task.source and t.id != task.id for x in t.information
            if not any(g in f" {normalize_answer(x)} " for g in golds)))
        if not cands:
            return []
        query = self.embedder.embed_one("\n".join([task.question, *task.information]))
        sims = self._embed(cands) @ np.asarray(query, dtype=np.float32)
        order = sorted(range(len(cands)), key=lambda i: (-float(sims[i]), cands[i]))
        top = order[: n * self.oversample]
        picked = random.Random(f"{self.seed}:{task.id}").sample(top, min(n, len(top)))
        return [cands[i] for i in sorted(picked, key=top.index)]

    def apply(self, tasks: Sequence[EpisodeTask], n: int) -> list[EpisodeTask]:
        """The tasks with their ``distractors`` filled in (tasks that had some keep theirs)."""
        return [dataclasses.replace(t, distractors=self(t, n)) if not t.distractors else t for t in tasks]


__all__ = ["EpisodeConfig", "EpisodeTask", "Episode", "DistractorGen", "run_episode",
           "reset_context", "pack_turns", "PARAGRAPH_TURN", "SENTENCE_TURN"]
