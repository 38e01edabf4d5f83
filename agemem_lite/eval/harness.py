"""The evaluation harness (``agemem eval``): benchmarks -> three-stage episodes -> one JSON each.

``run_eval`` runs every (benchmark, task, method) episode of SPEC §7 through
``episodes.run_episode`` and writes each one, with its judge scores, to
``<out>/episodes/<bench>/<method>/<task id>.json`` (temp file + rename, so a killed
run never leaves half a file). ``eval.report`` turns those files into the paper's tables.

- Benchmarks (``BENCHES``): ``hotpot`` and ``longmemeval`` are generated offline from
  (n, seed) (``eval.hotpot.generate``, ``eval.longmemeval.generate``); ``NAME:PATH`` reads an
  official file instead (``hotpot:dev.json``, ``longmemeval:longmemeval_s.json``,
  ``locomo:locomo10.json``). From a file, the tasks are shuffled with ``seed`` and the
  first n are taken, so a larger n extends a run rather than replacing it.
- Deterministic for a seed: the same tasks in the same order (benchmark, then task,
  then method, so an interrupted run holds comparable episodes of every method), the
  episode seed (namespace) and the policy's sampling seed (the CLI sets it), a fixed
  ``today`` in the system prompt (``EVAL_TODAY``), and a fresh store file per episode:
  memory ids (``mem_N``) count from 1 in every episode, whatever ran before.
- Resumable: an episode whose file exists is loaded, not rerun. ``<out>/run.json`` records
  the policy, seed and episode config; a rerun with other values is refused (mixing
  them would make the tables lie), while other benches, methods or a larger n extend it.
- Judges, named in every record (SPEC §5 "say which judge produced a number"): EM and
  token F1 of the answer vs the gold answers, MQ = coverage of the gold facts by the
  final memories (``rewards.coverage``), optionally ``llm:NAME`` (``eval.judges.LLMJudge``).

Tasks without distractors of their own (LoCoMo, LongMemEval oracle files) get stage-2
material from ``episodes.DistractorGen``; LoCoMo questions take it from the *other*
conversations (a question's own conversation is its information).

Long-horizon environments (``babyai``, ``tyreworld``, ``blocksworld``, ``scienceworld``;
``eval.env_benches``, the ``envs`` extra) are benchmarks too: their tasks are generated
from (n, seed), each (bench, task, method) runs through ``envs.runner.run_env_episode``
under the same rules, and the record (``kind: "env"``) scores success and progress
from the environment instead of EM/F1/MQ. ``run.json`` then also holds the ``EnvConfig``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import random
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

from ..baselines import METHODS
from ..envs.runner import EnvConfig, EnvEpisode, EnvTask, run_env_episode
from ..episodes import DistractorGen, Episode, EpisodeConfig, EpisodeTask, run_episode
from ..errors import ConfigError
from ..memory.store import MemoryStore
from ..rewards import answer_score
from . import env_benches, hotpot, locomo, longmemeval
from .env_benches import ENV_BENCHES
from .mem0_peer import PEER_METHODS, Mem0Result, make_peer_record
from .records import JUDGE_NAMES, RECORD_FORMAT, record_header

EVAL_TODAY = "2025-01-01"          # the system prompt's date in every eval episode (determinism)
MANIFEST = "run.json"

Progress = Callable[[int, int, str], None]     # progress(done, total, label of the next episode)


# -- benchmarks ---------------------------------------------------------------------------

def _select(tasks: list[EpisodeTask], n: int, seed: int) -> list[EpisodeTask]:
    """The first n of a ``seed`` shuffle (a larger n keeps the smaller n's tasks, in order)."""
    order = list(range(len(tasks)))
    random.Random(seed).shuffle(order)
    return [tasks[i] for i in order[:n]]


def _load(loader, path: Path):
    try:
        return loader(path)
    except (OSError, ValueError) as e:       # json.JSONDecodeError is a ValueError
        raise ConfigError(f"{path}: {e}") from None


def _hotpot(path: Path | None, n: int, seed: int) -> list[EpisodeTask]:
    items = hotpot.generate(n, seed) if path is None else _load(hotpot.load_official, path)
    return [EpisodeTask.from_hotpot(i) for i in items]


def _longmemeval(path: Path | None, n: int, seed: int) -> list[EpisodeTask]:
    items = longmemeval.generate(n, seed) if path is None else _load(longmemeval.load_official, path)
    return [EpisodeTask.from_longmemeval(i) for i in items]


def locomo_tasks(samples: Sequence[locomo.LocomoSample]) -> list[EpisodeTask]:
    """One task per LoCoMo question: the whole conversation is stage 1's information.

    Category 5 (adversarial: the right reply is a refusal) is left out, as Mem0's LoCoMo
    numbers do: EM/F1 against a refusal sentence would measure wording. ``gold_facts`` are
    the evidence turns' text; the id is ``<sample_id>:q<index in qa>``.
    """
    tasks = []
    for s in samples:
        info = s.information_turns()
        for j, qa in enumerate(s.qa):
            if qa.category == 5 or qa.answer is None or not str(qa.answer).strip() or not info:
                continue
            tasks.append(EpisodeTask(
                id=f"{s.sample_id}:q{j}", question=qa.question, answers=[str(qa.answer)], information=info,
                gold_facts=[t for t in qa.evidence_text if t.strip()], source="locomo",
                metadata={"sample_id": s.sample_id, "category": qa.category_name}))
    return tasks


def _locomo(path: Path | None, n: int, seed: int) -> list[EpisodeTask]:
    return locomo_tasks(_load(locomo.load_official, path))


@dataclass(frozen=True)
class Bench:
    """A row of ``BENCHES``: how to build a benchmark's tasks."""

    name: str
    build: Callable[[Path | None, int, int], list[EpisodeTask]]   # (file or None, n, seed) -> tasks
    generated: bool          # can run without a file (offline generator)
    description: str


BENCHES: dict[str, Bench] = {b.name: b for b in (
    Bench("hotpot", _hotpot, True, "HotpotQA format: generated offline, or an official JSON file"),
    Bench("longmemeval", _longmemeval, True, "LongMemEval format: generated offline, or an official file"),
    Bench("locomo", _locomo, False, "a file in the official locomo10.json layout; one task per question"),
)}


@dataclass(frozen=True)
class BenchSpec:
    """A benchmark as asked for on the command line: ``hotpot`` or ``NAME:PATH``."""

    name: str
    path: Path | None = None

    @property
    def label(self) -> str:
        """The name in reports and folders: ``hotpot``, or ``hotpot-<file stem>`` for a file."""
        return self.name if self.path is None else f"{self.name}-{_safe(self.path.stem)}"


def parse_bench(spec: str) -> BenchSpec:
    """``"hotpot"`` / ``"longmemeval:PATH"`` / ``"babyai"`` -> BenchSpec; ConfigError or
    ``EnvUnavailable`` (an environment whose package or Java is missing) names the fix."""
    name, sep, path = spec.strip().partition(":")
    if name in ENV_BENCHES:
        if sep:
            raise ConfigError(f"benchmark {name!r} is generated from --n and --seed; it takes no file")
        env_benches.check_available(name)
        return BenchSpec(name)
    if name not in BENCHES:
        raise ConfigError(f"unknown benchmark {name!r}; choose from {', '.join([*BENCHES, *ENV_BENCHES])} "
                          "(NAME:PATH for an official file)")
    if not sep:
        if not BENCHES[name].generated:
            raise ConfigError(f"benchmark {name!r} needs a file: --bench {name}:PATH, {BENCHES[name].description}")
        return BenchSpec(name)
    p = Path(path).expanduser()
    if not path or not p.is_file():
        raise ConfigError(f"benchmark {name!r}: no such file {path!r}")
    return BenchSpec(name, p)


def parse_benches(text: str | Sequence[str]) -> list[BenchSpec]:
    """A comma-separated list (or a sequence) of bench specs, duplicates dropped."""
    parts = [p for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    if not parts:
        raise ConfigError("no benchmark given; choose from " + ", ".join([*BENCHES, *ENV_BENCHES]))
    return list(dict.fromkeys(parse_bench(p) for p in parts))


def parse_methods(text: str | Sequence[str] | None) -> list[str]:
    """Method names (comma-separated or a sequence; None = all of ``baselines.METHODS``).
    The Mem0 peer's methods (``mem0``, ``mem0-raw``) are accepted, never defaults."""
    if text is None:
        return list(METHODS)
    parts = [p.strip() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    unknown = [p for p in parts if p not in METHODS and p not in PEER_METHODS]
    if unknown or not parts:
        raise ConfigError(f"unknown method(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                          f"choose from {', '.join([*METHODS, *PEER_METHODS])}")
    return list(dict.fromkeys(parts))


def build_tasks(spec: BenchSpec | str, n: int, seed: int, embedder=None, *, n_distractors: int = 8,
                env_config: EnvConfig | None = None) -> list[EpisodeTask] | list[EnvTask]:
    """The benchmark's first n tasks for ``seed``, each with stage-2 distractors where possible.

    Tasks without their own get ``n_distractors`` from ``DistractorGen`` (needs the
    embedder) over all of the benchmark's tasks; LoCoMo excludes the question's own
    conversation by asking with the conversation's id. An environment bench gives
    ``EnvTask``s built with ``env_config`` (``env_benches.build_env_tasks``)."""
    spec = parse_bench(spec) if isinstance(spec, str) else spec
    if n < 0:
        raise ValueError(f"n={n}: the number of tasks must be >= 0")
    if spec.name in ENV_BENCHES:
        return env_benches.build_env_tasks(spec.name, n, seed, env_config)
    everything = BENCHES[spec.name].build(spec.path, n, seed)
    tasks = everything[:n] if spec.path is None else _select(everything, n, seed)
    if all(t.distractors for t in tasks) or n_distractors <= 0:
        return tasks
    if spec.name != "locomo":
        return DistractorGen(everything, embedder, seed=seed).apply(tasks, n_distractors)
    convs = {t.metadata["sample_id"]: t for t in everything}    # one pool entry per conversation
    gen = DistractorGen([dataclasses.replace(t, id=sid) for sid, t in convs.items()], embedder, seed=seed)
    return [dataclasses.replace(t, distractors=gen(dataclasses.replace(t, id=t.metadata["sample_id"]),
                                                   n_distractors)) for t in tasks]


# -- records --------------------------------------------------------------------------------

def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"


def episode_path(out_dir: str | Path, bench: str, method: str, task_id: str) -> Path:
    """``<out>/episodes/<bench>/<method>/<task id>.json`` (unsafe characters become ``_``)."""
    return Path(out_dir) / "episodes" / _safe(bench) / _safe(method) / f"{_safe(task_id)}.json"


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON to a temp file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=1, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_record(path: str | Path) -> dict:
    """An episode record written by ``run_eval``."""
    rec = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(rec, dict) or rec.get("format") != RECORD_FORMAT:
        raise ConfigError(f"{path}: not an agemem eval episode ({RECORD_FORMAT})")
    return rec


def record_episode(rec: dict) -> Episode | EnvEpisode | Mem0Result:
    """The full ``Episode`` (an ``EnvEpisode`` for an env record, a ``Mem0Result`` for the
    Mem0 peer's) stored in a record."""
    if rec.get("peer") == "mem0":
        return Mem0Result(**rec["episode"])
    if env_benches.record_kind(rec) == env_benches.KIND:
        return EnvEpisode.from_dict(rec["episode"])
    return Episode.from_dict(rec["episode"])


def episode_metrics(ep: Episode) -> dict:
    """Per-episode numbers of the report; no answer scores 0 on EM and F1."""
    answered = ep.answer is not None
    return {
        "em": answer_score(ep.answer, ep.gold_answers, "em", unanswerable=ep.unanswerable) if answered else 0.0,
        "f1": answer_score(ep.answer, ep.gold_answers, "f1", unanswerable=ep.unanswerable) if answered else 0.0,
        "mq": ep.memory_quality,
        "prompt_tokens": ep.prompt_tokens,
        "tool_calls": dict(sorted(ep.tool_calls.items())),
        "failed_calls": ep.failed_calls,
        "steps": len(ep.steps),
        "wall_s": ep.wall_s,
        "answered": answered,
        "n_max_exceeded": ep.n_max_exceeded,
        "reward": ep.reward.total,
    }


def make_record(bench: str, task: EpisodeTask, ep: Episode, *, seed: int, policy: str) -> dict:
    """What one episode file holds: metrics, the judges that made them, the task and the trace."""
    return {**record_header(bench, ep.method, task.id, seed=seed, policy=policy),
            "judges": {**JUDGE_NAMES, "mq": f"{ep.reward.memory_judge} of the gold facts by the final memories"},
            "metrics": episode_metrics(ep), "task": task.to_dict(), "episode": ep.to_dict()}


def _apply_judge(rec: dict, judge) -> bool:
    """Add ``judge``'s score to ``rec`` unless it has it; True if the record changed.
    Env records have no question or gold answer: the LLM judge leaves them alone."""
    if env_benches.record_kind(rec) == env_benches.KIND:
        return False
    if rec["judges"].get("llm") == judge.name and "llm" in rec["metrics"]:
        return False
    ep = rec["episode"]
    rec["metrics"]["llm"] = judge(ep["question"], ep["answer"], ep["gold_answers"])
    rec["judges"]["llm"] = judge.name
    return True


# -- the run -----------------------------------------------------------------------------------

def machine() -> dict:
    """Where the numbers were taken (report header)."""
    return {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version()}


OPTIONAL_IDENTITY = ("env_config",)   # set by the first run that needs it; then it must match


def _flat(identity: dict) -> dict:
    """``{policy, seed, config: {...}, env_config: {...}}`` -> one level (``env.`` before EnvConfig keys)."""
    return {**{k: v for k, v in identity.items() if k not in ("config", "env_config")},
            **identity.get("config", {}), **{f"env.{k}": v for k, v in (identity.get("env_config") or {}).items()}}


def _record_run(out: Path, identity: dict, run: dict) -> None:
    path = out / MANIFEST
    identity = json.loads(json.dumps(identity, default=str))
    if path.exists():
        manifest = json.loads(path.read_text(encoding="utf-8"))
        old = manifest.get("identity", {})
        for key in OPTIONAL_IDENTITY:     # a QA-only run may gain env benches, and the reverse
            if key in old or key in identity:
                old.setdefault(key, identity.get(key))
                identity.setdefault(key, old[key])
        defaults = json.loads(json.dumps(dataclasses.asdict(EpisodeConfig()), default=str))
        for key, value in identity.get("config", {}).items():   # a setting added since, at its default
            if key not in old.get("config", {}) and key in defaults and value == defaults[key]:
                old.setdefault("config", {})[key] = value
        manifest["identity"] = identity
        if old != identity:
            a, b = _flat(old), _flat(identity)
            diff = ", ".join(f"{k}={a.get(k)!r} (now {b.get(k)!r})" for k in sorted(set(a) | set(b))
                             if a.get(k) != b.get(k))
            raise ConfigError(f"{out} holds a run with other settings: {diff}; use another --out "
                              "or the same settings to continue it")
    else:
        manifest = {"format": "agemem-eval-run/1", "identity": identity, "runs": []}
    manifest["runs"].append(run)
    write_json_atomic(path, manifest)


@dataclass
class EvalResult:
    """What ``run_eval`` did: every record in run order, and how many ran vs were loaded."""

    out_dir: Path
    records: list[dict]
    ran: int
    loaded: int


def _run_one(policy, embedder, task: EpisodeTask | EnvTask, cfg: EpisodeConfig, settings, scratch: Path,
             env_config: EnvConfig, relevance=None) -> Episode | EnvEpisode:
    """One episode (a game for an ``EnvTask``) on a fresh store file (ids from mem_1), deleted afterwards."""
    db = scratch / "episode.db"
    store = MemoryStore(db, dim=getattr(embedder, "dim", 384), synchronous="NORMAL")
    try:
        if isinstance(task, EnvTask):
            return run_env_episode(policy, store, embedder, task, cfg, env_config, settings=settings)
        return run_episode(policy, store, embedder, task, cfg, settings=settings, judge=relevance)
    finally:
        store.close()
        for p in scratch.glob("episode.db*"):
            p.unlink()


def run_eval(policy, embedder, benches: Sequence[BenchSpec | str] | str, methods=None, *, n: int,
             seed: int = 0, out_dir: str | Path, settings=None, config: EpisodeConfig | None = None,
             env_config: EnvConfig | None = None, judge=None, policy_name: str | None = None,
             progress: Progress | None = None, peer: Callable[[], object] | None = None,
             relevance: Callable[[], object] | None = None) -> EvalResult:
    """Run (or load) every (bench, task, method) episode; write one JSON per episode.

    ``policy``: an open policy, or a zero-argument function that opens one on the first
    episode that must run (closed again at the end), so a finished run loads no model;
    then ``policy_name`` is required. ``config``: the base ``EpisodeConfig`` (its method
    and seed are set per episode; an empty ``today`` becomes ``EVAL_TODAY``). ``env_config``:
    the ``EnvConfig`` of environment benches (default ``EnvConfig()``). ``judge``: optional
    ``eval.judges.LLMJudge``, also applied to loaded QA episodes it has not scored.
    ``peer``: for the Mem0 methods (``mem0_peer.PEER_METHODS``), a zero-argument function
    giving a context manager whose value runs a task (``mem0_peer.Mem0Session``), entered
    on the first Mem0 episode that must run. The peer answers QA tasks only: (environment
    bench, Mem0 method) pairs are left out of the run. ``relevance``: a zero-argument function
    opening the ``relevance.RelevanceJudge`` that ``config.relevance_judge`` names (QA episodes;
    opened on the first one that must run).
    """
    specs = parse_benches(benches) if isinstance(benches, str) else \
        [parse_bench(b) if isinstance(b, str) else b for b in benches]
    names = parse_methods(methods)
    opener = policy if callable(policy) and not hasattr(policy, "step") else None
    name = policy_name or (None if opener else getattr(policy, "name", None))
    if not name:
        raise ValueError("policy_name is required when the policy is opened by a function")
    cfg = config or EpisodeConfig()
    cfg = dataclasses.replace(cfg, seed=seed, today=cfg.today or EVAL_TODAY)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ecfg = env_config or EnvConfig()
    n_distractors = cfg.n_max * cfg.distractors_per_turn if cfg.n_distractors is None else cfg.n_distractors
    jobs = [(s.label, t, m) for s in specs
            for t in build_tasks(s, n, seed, embedder, n_distractors=n_distractors, env_config=ecfg) for m in names
            if not (m in PEER_METHODS and s.name in ENV_BENCHES)]
    if peer is None and any(m in PEER_METHODS for _, _, m in jobs):
        raise ValueError("the Mem0 methods need `peer` (a mem0_peer.Mem0Session factory)")
    base = dataclasses.asdict(cfg)
    base.pop("method")
    identity = {"policy": name, "seed": seed, "config": base}
    if any(s.name in ENV_BENCHES for s in specs):
        identity["env_config"] = dataclasses.asdict(ecfg)
    _record_run(out, identity,
                {"date": datetime.now().isoformat(timespec="seconds"), "n": n,
                 "benches": [s.label for s in specs], "methods": names,
                 "judge": judge.name if judge else None, "machine": machine()})
    if bool(cfg.relevance_judge) != (relevance is not None):
        raise ValueError("config.relevance_judge and `relevance` (its opener) go together")
    opened, session, records, ran, checker = None, None, [], 0, None
    scratch = Path(tempfile.mkdtemp(prefix=".scratch-", dir=out))
    stack = contextlib.ExitStack()
    try:
        for i, (bench, task, method) in enumerate(jobs):
            if progress:
                progress(i, len(jobs), f"{bench} {method} {task.id}")
            path = episode_path(out, bench, method, task.id)
            if path.exists():
                rec = load_record(path)
                if judge and _apply_judge(rec, judge):
                    write_json_atomic(path, rec)
            else:
                if method in PEER_METHODS:
                    session = session or stack.enter_context(peer())
                    res = session.run(task, method, seed=seed, n_max=cfg.n_max, top_k=cfg.top_k,
                                      n_distractors=cfg.n_distractors)
                    rec = make_peer_record(bench, task, res, seed=seed, policy=name)
                else:
                    if opener and opened is None:
                        opened = opener()
                    if relevance and checker is None and not isinstance(task, EnvTask):
                        checker = relevance()
                    ep = _run_one(opened or policy, embedder, task, dataclasses.replace(cfg, method=method),
                                  settings, scratch, ecfg, checker)
                    if isinstance(ep, EnvEpisode):
                        rec = env_benches.make_env_record(bench, task, ep, seed=seed,
                                                          policy=name)
                    else:
                        rec = make_record(bench, task, ep, seed=seed, policy=name)
                if judge:
                    _apply_judge(rec, judge)
                write_json_atomic(path, rec)
                ran += 1
            records.append(rec)
        if progress:
            progress(len(jobs), len(jobs), "done")
    finally:
        stack.close()
        shutil.rmtree(scratch, ignore_errors=True)
        if opened is not None:
            opened.close()
        if checker is not None:
            checker.close()
    return EvalResult(out, records, ran, len(records) - ran)


__all__ = ["BENCHES", "Bench", "BenchSpec", "ENV_BENCHES", "EVAL_TODAY", "EvalResult", "RECORD_FORMAT",
           "build_tasks", "episode_metrics", "episode_path", "load_record", "locomo_tasks", "machine", "make_record",
           "parse_bench", "parse_benches", "parse_methods", "record_episode", "run_eval", "write_json_atomic"]
