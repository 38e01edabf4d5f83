"""Long-horizon environments as ``agemem eval`` benchmarks: the table, the tasks, the records.

``eval.harness`` runs these exactly like its QA benchmarks (same job order, a fresh
store file per episode, one atomic JSON per episode, resume, ``run.json``); what
differs lives here:

=============  ==============================================  ==========================
bench          environment (``envs.make_env`` arguments)        task score (SPEC §7)
=============  ==============================================  ==========================
babyai         ``babyai``, level ``BabyAI-GoToLocal-v0``         success rate
tyreworld      ``pddl``, our tyreworld generator, 1 flat tyre   progress rate (and success)
blocksworld    ``pddl``, autoscale blocksworld, 4 blocks        progress rate (and success)
scienceworld   ``scienceworld``, task ``find-living-thing``     success rate (needs Java)
alfworld       ``alfworld``, ``pick_and_place_simple`` games    success rate (and progress)
=============  ==============================================  ==========================

- Tasks from (n, seed): instance seeds are drawn from ``random.Random(f"{bench}:{seed}")``
  in ``[0, PRIOR_SEED_BASE)`` (earlier-trial seeds of ``envs.runner`` start above), without
  repeats, skipping instances that are solved at reset (autoscale blocksworld can
  generate one). The first n of that stream are the tasks, so a larger n extends a
  run. Each instance becomes an ``EnvTask`` through ``envs.runner.make_env_task`` with
  the run's ``EnvConfig`` (stage-1 trial notes, stage-2 observations of another task).
  ScienceWorld maps a seed to variation ``seed % variations``, so two tasks can share one.
- ALFWorld games are generated per seed from the ``alfworld`` wheel's data (``envs.alfworld``);
  the row plays one task type (an instance's family must stay that of its earlier trials),
  ``pick_and_place_simple`` (9 expert actions on average, at most 40); another task type is one
  more row. Its install line is ``pip install --no-deps alfworld==0.4.2`` (``EnvBench.install``).
- Sizes are small on purpose (tyreworld: about 19 expert actions at 1 tyre, 30 at 2,
  which is the default ``max_env_turns``); another size or level is one more row.
- Scores, both named as judges in every record: ``success`` (0/1, the environment's
  own flag: the instance is solved) and ``progress`` (the best share of the goal reached
  during the game, from the environment; BabyAI's is 0 or 1, ScienceWorld's is its
  score / 100, ALFWorld's the share of its ordered subgoals). Costs as for QA: prompt
  tokens, tool calls by type, failed calls, wall time.
  MQ is not defined (an environment has no gold facts to cover) and the LLM judge does
  not apply (no question, no gold answer): both are left out of env records.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass, field
from importlib.util import find_spec

from ..envs import INSTALL_HINT, EnvUnavailable, make_env
from ..envs.alfworld import INSTALL_LINE as ALFWORLD_INSTALL
from ..envs.runner import PRIOR_SEED_BASE, EnvConfig, EnvEpisode, EnvTask, make_env_task
from ..errors import ConfigError
from .records import record_header

KIND = "env"               # a record's ``kind``; QA records have none (``record_kind``)
JUDGES = {
    "success": "env: success (0/1), from the environment (the instance is solved)",
    "progress": "env: progress, from the environment (best share of the goal reached during the game)",
}


@dataclass(frozen=True)
class EnvBench:
    """A row of ``ENV_BENCHES``: which environment instance family a benchmark plays."""

    name: str
    env: str                                  # ``envs.ENVS`` name
    kwargs: dict = field(hash=False)          # ``make_env`` keyword arguments
    requires: tuple[str, ...]                 # importable modules (the ``envs`` extra unless ``install``)
    description: str
    java: bool = False                        # needs a Java runtime on PATH
    install: str = INSTALL_HINT               # the line that installs ``requires``


ENV_BENCHES: dict[str, EnvBench] = {b.name: b for b in (
    EnvBench("babyai", "babyai", {"level": "BabyAI-GoToLocal-v0"}, ("gymnasium", "minigrid"),
             "BabyAI GoToLocal levels (minigrid), generated per seed; success rate"),
    EnvBench("tyreworld", "pddl", {"domain": "tyreworld", "size": 1}, ("pyperplan", "pypddl_datasets"),
             "PDDL tyreworld, 1 flat tyre, generated per seed; progress rate"),
    EnvBench("blocksworld", "pddl", {"domain": "blocksworld", "size": 4}, ("pyperplan", "pypddl_datasets"),
             "PDDL blocksworld, 4 blocks, generated per seed; progress rate"),
    EnvBench("scienceworld", "scienceworld", {"task": "find-living-thing"}, ("scienceworld",),
             "ScienceWorld find-living-thing variations (needs Java); success rate", java=True),
    EnvBench("alfworld", "alfworld", {"task_type": "pick_and_place_simple"}, ("alfworld",),
             "ALFWorld pick-and-place games, generated per seed from the alfworld data; success rate",
             install=ALFWORLD_INSTALL),
)}


def check_available(name: str) -> None:
    """Raise ``EnvUnavailable`` (one line, naming the fix) if bench ``name`` cannot be opened here."""
    bench = ENV_BENCHES[name]
    missing = [m for m in bench.requires if find_spec(m) is None]
    if missing:
        raise EnvUnavailable(f"benchmark {name!r} needs {', '.join(missing)} (not installed): "
                             f"{bench.install}")
    if bench.java and shutil.which("java") is None:
        raise EnvUnavailable(f"benchmark {name!r} needs a Java runtime (JRE >= 8) and 'java' is not on PATH; "
                             "install one, e.g. 'apt-get install default-jre-headless'")


def instance_seeds(name: str, n: int, seed: int) -> list[int]:
    """The first n instance seeds of bench ``name`` for run seed ``seed`` (see the module docstring)."""
    bench, rng, seeds, seen = ENV_BENCHES[name], random.Random(f"{name}:{seed}"), [], set()
    env = make_env(bench.env, **bench.kwargs)
    try:
        while len(seeds) < n:
            if len(seen) >= PRIOR_SEED_BASE:
                raise ConfigError(f"benchmark {name!r}: fewer than n={n} unsolved instances")
            s = rng.randrange(PRIOR_SEED_BASE)
            if s in seen:
                continue
            seen.add(s)
            env.reset(s)
            if not env.success:           # solved at reset: nothing to play
                seeds.append(s)
    finally:
        env.close()
    return seeds


def build_env_tasks(name: str, n: int, seed: int, config: EnvConfig | None = None) -> list[EnvTask]:
    """Bench ``name``'s first n tasks for ``seed``, stage-1 and stage-2 material included."""
    check_available(name)
    bench = ENV_BENCHES[name]
    return [make_env_task(bench.env, s, bench.kwargs, config=config) for s in instance_seeds(name, n, seed)]


def env_metrics(ep: EnvEpisode) -> dict:
    """Per-episode numbers of the report: the two scores, then the costs QA episodes have too."""
    return {
        "success": float(ep.success),
        "progress": ep.progress,
        "final_progress": ep.final_progress,
        "prompt_tokens": ep.prompt_tokens,
        "tool_calls": dict(sorted(ep.tool_calls.items())),
        "failed_calls": ep.failed_calls,
        "steps": len(ep.steps),
        "wall_s": ep.wall_s,
        "game_turns": len(ep.actions),
        "env_steps": ep.env_steps,
        "invalid_actions": ep.invalid_actions,
        "n_max_exceeded": ep.n_max_exceeded,
    }


def make_env_record(bench: str, task: EnvTask, ep: EnvEpisode, *, seed: int, policy: str) -> dict:
    """What one env episode file holds: ``kind: env``, metrics, their judges, the task and the trace."""
    return {**record_header(bench, ep.method, task.id, seed=seed, policy=policy), "kind": KIND,
            "judges": dict(JUDGES), "metrics": env_metrics(ep), "task": task.to_dict(), "episode": ep.to_dict()}


def record_kind(rec: dict) -> str:
    """``"env"`` or ``"qa"`` (records written before environments existed have no ``kind``)."""
    return rec.get("kind", "qa")


__all__ = ["ENV_BENCHES", "EnvBench", "JUDGES", "KIND", "build_env_tasks", "check_available", "env_metrics",
           "instance_seeds", "make_env_record", "record_kind"]
