"""A long-horizon environment as the three-stage episode (SPEC §4), through ``Agent.turn``.

``make_env_task`` writes an instance's stage-1 and stage-2 material (see the
package docstring: trial notes of the same family, observations of another
task); ``run_env_episode`` plays it with a policy and returns an ``EnvEpisode``
record (JSON-ready). The method variants are those of ``baselines.METHODS``, with
the same meaning as in ``episodes.run_episode`` (tools offered, environment
retrieval per stage, the stage-2 reset, environment adds).

Decisions where SPEC §4 is silent for environments (ours):
- ``EpisodeConfig.n_max`` bounds stages 1 and 2 as for QA tasks; the game (stage
  3) gets ``EnvConfig.max_env_turns`` turns, one per action, invalid ones included.
- Every game turn is one ``Agent.turn``: the policy may use memory tools, then its
  ``<answer>`` is the action. A turn that ends without an answer sends no action
  and is answered with ``NO_ACTION``; an invalid action is answered with the
  environment's error observation. Either way the game goes on.
- Earlier-trial seeds come from a pool disjoint from evaluation seeds
  (``PRIOR_SEED_BASE + seed * n_prior + i``), and an earlier trial identical to
  the episode's own instance (same goal and first observation) is skipped.

Not here yet: the SPEC §5 reward. ``rewards.trajectory_reward`` scores R_task by
judging a text answer against gold answers; for a game R_task should be
``success`` (or ``progress``), which that function cannot take today, so an
``EnvEpisode`` carries scores and costs but no ``RewardBreakdown``.

User-turn wording lives here (the templates below) until ``prompts.py`` is free
to take it, as ``episodes.PARAGRAPH_TURN`` does.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Callable

from ..agent import Agent
from ..baselines import METHODS, STAGES
from ..config import Settings
from ..episodes import EpisodeConfig, _settings, pack_turns, reset_context
from ..records import Step, Turn
from . import Transition, make_env

NOTES_TURN = "Things I learned about {family} games: {notes}"
TRIAL_TURN = "Notes from an earlier {family} game. Goal: {goal}. What solved it ({n} actions): {actions}."
DISTRACTOR_TURN = "An observation from another game ({family}; its goal was: {goal}):\n{observation}"
FIRST_TURN = ("New game ({family}). Goal: {goal}\n{help}\nReply with exactly one action inside "
              "<answer></answer>.\n\n{observation}{actions}")
NEXT_TURN = "{observation}{actions}"
ACTIONS_LINE = "\nValid actions: {actions}."
NO_ACTION = ("No action was taken: end your reply with exactly one action inside <answer></answer>. "
             "Nothing happened.")

PRIOR_SEED_BASE = 100_000   # earlier-trial seeds start here (evaluation seeds stay below)


def _f(default, help: str, spec: str = "§7"):
    if isinstance(default, type):
        return field(default_factory=default, metadata={"help": help, "spec": spec})
    return field(default=default, metadata={"help": help, "spec": spec})


@dataclass
class EnvConfig:
    """What an environment episode adds to ``EpisodeConfig``."""

    max_env_turns: int = _f(30, "Most game turns in stage 3 (one action each, invalid ones included).")
    max_listed_actions: int = _f(30, "List the valid actions with an observation when there are at most this "
                                 "many (ScienceWorld's lists run to thousands: its action_help has templates).")
    n_prior: int = _f(2, "Earlier trials of the same family written as stage-1 notes.", "§4")
    n_distractors: int = _f(4, "Observations of another task used as stage-2 distractors.", "§4")
    max_trial_actions: int = _f(40, "Longest action list written into one trial note (the rest is counted).", "§4")

    def __post_init__(self):
        for name in ("max_env_turns", "max_trial_actions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be ≥ 1")
        for name in ("max_listed_actions", "n_prior", "n_distractors"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be ≥ 0")


@dataclass
class EnvTask:
    """One environment instance with its stage-1 notes and stage-2 distractors (plain strings)."""

    id: str
    env: str                                # registry name: "babyai", "pddl", "scienceworld"
    env_kwargs: dict
    seed: int
    family: str
    information: list[str]                  # stage 1: family notes + earlier-trial notes
    distractors: list[str] = field(default_factory=list)   # stage 2: another task's observations

    def to_dict(self) -> dict:
        return asdict(self)


def compress_actions(actions: list[str], limit: int) -> str:
    """``a, a, a, b`` -> ``a x3, b``; at most ``limit`` actions written, the rest counted."""
    runs: list[list] = []
    for a in actions[:limit]:
        if runs and runs[-1][0] == a:
            runs[-1][1] += 1
        else:
            runs.append([a, 1])
    text = ", ".join(a if n == 1 else f"{a} x{n}" for a, n in runs)
    return text + (f", ... ({len(actions) - limit} more)" if len(actions) > limit else "")


def render_trial(family: str, goal: str, actions: list[str], limit: int = 40) -> str:
    return TRIAL_TURN.format(family=family, goal=goal, n=len(actions), actions=compress_actions(actions, limit))


def _observations(env, seed: int) -> tuple[str, list[str]]:
    """The goal and the observations along the expert's path from ``seed`` (first one included)."""
    r = env.reset(seed)
    seen = [r.observation]
    for a in env.expert_actions():
        t = env.step(a)
        if not t.invalid:
            seen.append(t.observation)
        if t.done:
            break
    return r.goal, seen


def make_env_task(env: str, seed: int, env_kwargs: dict | None = None, *, config: EnvConfig | None = None,
                  prior_seeds: list[int] | None = None, distractor_kwargs: dict | None = None) -> EnvTask:
    """Build the episode task of ``env`` instance ``seed`` (expert rollouts write stages 1 and 2)."""
    cfg = config or EnvConfig()
    kwargs = dict(env_kwargs or {})
    e = make_env(env, **kwargs)
    try:
        own = e.reset(seed)
        info = [NOTES_TURN.format(family=e.family, notes=" ".join(e.notes()))]
        seeds = prior_seeds if prior_seeds is not None else \
            [PRIOR_SEED_BASE + seed * cfg.n_prior + i for i in range(4 * cfg.n_prior)]
        for s in seeds:
            if len(info) > cfg.n_prior:
                break
            r = e.reset(s)
            if tuple(r) == tuple(own) or s == seed:
                continue      # an "earlier trial" must not be the episode's own instance
            info.append(render_trial(e.family, r.goal, e.expert_actions(), cfg.max_trial_actions))
        family, dkw = e.family, distractor_kwargs or e.distractor_kwargs()
    finally:
        e.close()
    distractors: list[str] = []
    if cfg.n_distractors:
        d = make_env(env, **dkw)
        try:
            goal, seen = _observations(d, seed)
            step = max(1, len(seen) // cfg.n_distractors)
            distractors = [DISTRACTOR_TURN.format(family=d.family, goal=goal, observation=o)
                           for o in seen[::step][:cfg.n_distractors]]
        finally:
            d.close()
    return EnvTask(id=f"{family}:{seed}", env=env, env_kwargs=kwargs, seed=seed, family=family,
                   information=info, distractors=distractors)


@dataclass
class EnvEpisode:
    """One environment trajectory: the three stages, the game's actions, scores and costs."""

    task_id: str
    env: str
    family: str
    seed: int
    method: str
    namespace: str
    goal: str
    stages: dict[str, list[Turn]]           # "ltm" / "stm" / "reason" -> turns (steps inside)
    actions: list[dict]                     # per game turn: action (None: no answer), observation, ...
    env_steps: int                          # actions the environment accepted
    invalid_actions: int                    # refused actions and turns without an answer
    success: bool                           # SPEC §7 success rate
    progress: float                         # SPEC §7 progress rate: the best progress reached
    final_progress: float
    done: bool                              # the environment ended the game (else: max_env_turns)
    tool_calls: dict[str, int]
    failed_calls: int
    prompt_tokens: int
    t_used: int
    wall_s: float
    n_max_exceeded: bool                    # some turn ended without an <answer>
    memories: list[dict]
    config: dict

    @property
    def steps(self) -> list[Step]:
        return [s for st in STAGES for t in self.stages.get(st, []) for s in t.steps]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EnvEpisode":
        return cls(**{**d, "stages": {k: [Turn.from_dict(t) for t in v] for k, v in d["stages"].items()}})


def _actions_line(env, limit: int) -> str:
    acts = env.valid_actions()
    return ACTIONS_LINE.format(actions=", ".join(acts)) if acts and len(acts) <= limit else ""


def run_env_episode(policy, store, embedder, task: EnvTask, config: EpisodeConfig | None = None,
                    env_config: EnvConfig | None = None, *, settings: Settings | None = None,
                    namespace: str | None = None, env=None,
                    on_step: Callable[[Step], None] | None = None) -> EnvEpisode:
    """Play ``task`` through the three stages with ``config.method`` (see the module docstring).

    ``env``: an already open environment of ``task.env`` to use (and leave open);
    by default one is opened from ``task.env_kwargs`` and closed at the end."""
    cfg, ecfg = config or EpisodeConfig(), env_config or EnvConfig()
    method = METHODS[cfg.method]
    ns = namespace or f"env:{task.id}:{method.name}:{cfg.seed}"
    if store.count(ns):
        raise ValueError(f"namespace {ns!r} already holds {store.count(ns)} memories: an episode starts "
                         "with an empty LTM (SPEC §4); pass another namespace or seed")
    s = _settings(settings, policy, cfg, ns, cfg.max_steps_per_turn if method.tools else 1)
    agent = Agent(policy, store, embedder, s, today=cfg.today or None, demonstrations=cfg.demonstrations,
                  context_usage=cfg.context_usage, tools=method.tools)
    retrieval = method.retrieval_stages(cfg.stage1_retrieval)
    stages: dict[str, list[Turn]] = {st: [] for st in STAGES}
    own_env = env is None
    game = make_env(task.env, **task.env_kwargs) if own_env else env
    t0 = time.perf_counter()

    def turn(stage: str, text: str) -> Turn:
        def tag(step: Step) -> None:
            step.stage = stage
            if on_step:
                on_step(step)
        t = agent.turn(text, on_step=tag, show_related=stage in retrieval)
        stages[stage].append(t)
        if method.env_adds and stage != "reason":   # add-only: the environment stores the turn
            store.add(ns, text, embedder.embed_one(text), memory_type="note", source="environment",
                      actor="environment")
        return t

    actions: list[dict] = []
    best = 0.0
    try:
        for text in pack_turns(task.information, cfg.n_max):
            turn("ltm", text)
        if method.reset:
            reset_context(agent)
        n = len(task.distractors) if cfg.n_distractors is None else cfg.n_distractors
        for text in pack_turns(task.distractors[:n * cfg.distractors_per_turn], cfg.n_max,
                               cfg.distractors_per_turn):
            turn("stm", text)
        start = game.reset(task.seed)
        best = game.progress
        text = FIRST_TURN.format(family=game.family, goal=start.goal, help=game.action_help,
                                 observation=start.observation,
                                 actions=_actions_line(game, ecfg.max_listed_actions))
        for _ in range(ecfg.max_env_turns):
            answer = turn("reason", text).answer
            action = answer.strip() if answer else None
            tr = game.step(action) if action else Transition(NO_ACTION, game.progress, False, True)
            best = max(best, tr.progress)
            actions.append({"action": action, "observation": tr.observation, "progress": tr.progress,
                            "invalid": tr.invalid, "done": tr.done})
            if tr.done:
                break
            text = NEXT_TURN.format(observation=tr.observation,
                                    actions=_actions_line(game, ecfg.max_listed_actions))
        success, final = bool(game.success), float(game.progress)
    finally:
        if own_env:
            game.close()
    wall = time.perf_counter() - t0

    steps = [st for name in STAGES for t in stages[name] for st in t.steps]
    return EnvEpisode(
        task_id=task.id, env=task.env, family=task.family, seed=task.seed, method=method.name, namespace=ns,
        goal=start.goal, stages=stages, actions=actions,
        env_steps=sum(1 for a in actions if not a["invalid"]),
        invalid_actions=sum(1 for a in actions if a["invalid"]),
        success=success, progress=float(best), final_progress=final,
        done=bool(actions and actions[-1]["done"]),
        tool_calls=dict(Counter(c["name"] for st in steps for c in st.calls)),
        failed_calls=sum(1 for st in steps for r in st.results if not r.get("ok")),
        prompt_tokens=sum(st.prompt_tokens for st in steps),
        t_used=steps[-1].context_tokens if steps else 0, wall_s=wall,
        n_max_exceeded=any(t.answer is None for ts in stages.values() for t in ts),
        memories=store.export(ns), config={"episode": asdict(cfg), "env": asdict(ecfg)})


__all__ = ["EnvConfig", "EnvTask", "EnvEpisode", "make_env_task", "run_env_episode", "render_trial",
           "compress_actions", "NOTES_TURN", "TRIAL_TURN", "DISTRACTOR_TURN", "FIRST_TURN", "NEXT_TURN",
           "NO_ACTION", "PRIOR_SEED_BASE"]
