"""``agemem eval``: run the SPEC §7 evaluation and write its report (thin over ``eval.harness``)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import click
from click.core import ParameterSource

from .. import chat_probes, decisions
from ..assistant import open_policy, wants_context_usage, wants_demonstrations
from ..baselines import METHODS
from ..embed import load_embedder
from ..envs.runner import EnvConfig
from ..episodes import EpisodeConfig
from ..errors import ConfigError
from ..eval import harness, mem0_peer, report
from ..eval.judges import LLMJudge
from ..memory.relevance import judge_model, load_judge
from ..model_files import adapter_path, check_adapter, get_spec, resolve, sha256_file
from . import pass_ctx
from .models import _progress_bar


@contextlib.contextmanager
def _episode_bar(label: str) -> Iterator[harness.Progress]:
    """A rich progress bar over episodes on stderr, fed by ``progress(done, total, what)``.

    Only on a terminal: piped or captured stderr stays clean for scripts.
    """
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda done, total, what: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Bar(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, total=total, description=f"{label} {what}")

        yield update


def _check_policy(settings, name: str) -> None:
    if get_spec(settings, name).role != "policy":
        raise ConfigError(f"model {name!r} is an embedder, not a policy")
    if settings.adapter:
        check_adapter(settings.adapter)   # before anything runs: one line for a missing or wrong file


def _run_name(settings) -> str:
    """The policy's name in reports and default output folders; with ``--adapter``, plus the
    adapter file's hash (run folders all name theirs adapter.gguf, and --out resumes)."""
    if not settings.adapter:
        return settings.policy
    return f"{settings.policy}+{sha256_file(Path(settings.adapter))[:10]}"


@click.command("eval")
@click.option("--bench", "benches", default="hotpot", show_default=True,
              help="Comma-separated benchmarks: hotpot, longmemeval (generated offline), or NAME:PATH for an "
                   "official file (hotpot:PATH, longmemeval:PATH, locomo:PATH); long-horizon environments "
                   "(" + ", ".join(harness.ENV_BENCHES) + "; pip install 'agemem-lite[envs]') score "
                   "success / progress. decisions[:train|heldout|natural|variants|found]: single protocol decisions "
                   "(accuracy per action class; default heldout and natural, --n items per generated split; "
                   "found: questions whose memory a search found). chat: hand-written whole turns on a scratch "
                   "database (two facts in one message, a change, 'what do you know about me?', recall, not told): "
                   "all 20, or with --n the first n taking one of each kind in turn.")
@click.option("--methods", default=None,
              help="Comma-separated methods. Default: all of " + ", ".join(METHODS) + ". Also mem0 and mem0-raw: "
                   "Mem0 OSS on the same GGUF through local llama.cpp servers, QA benchmarks only "
                   "(pip install 'agemem-lite[mem0]').")
@click.option("--policy", "-m", default=None,
              help="Policy model name (see `agemem models list`). Default: from settings.")
@click.option("--adapter", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A GGUF LoRA adapter applied to the policy in place of its own (a training run's "
                   "RUN/best/adapter.gguf): evaluate a trained policy before shipping it.")
@click.option("--n", "n", type=click.IntRange(1), default=10, show_default=True, help="Tasks per benchmark.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the tasks, the episodes and the policy's sampling.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (rerun to continue it). Default: <data dir>/eval/<policy>-seed<seed>.")
@click.option("--judge", default=None, metavar="llm:NAME",
              help="Also judge answers with a local model (yes/no), e.g. llm:qwen2.5-coder-0.5b. Off by default.")
@click.option("--relevance-judge", default=None, metavar="NAME",
              help="A second model checks each search hit past the cosine floor (the chat's relevance_judge "
                   "setting), e.g. qwen2.5-coder-1.5b. Off by default.")
@click.option("--max-steps", type=click.IntRange(1, 50), default=None, help="Step limit per turn (default 6).")
@click.option("--n-max", type=click.IntRange(1, 100), default=None, help="N_max: most turns per stage (default 8).")
@click.option("--max-env-turns", type=click.IntRange(1, 500), default=None,
              help="Environments: most game turns, one action each (default 30).")
@pass_ctx
def eval_cmd(ctx, benches, methods, policy, adapter, n, seed, out, judge, relevance_judge, max_steps, n_max,
             max_env_turns) -> None:
    """Run three-stage episodes per benchmark and method; write JSON traces, report.md and plots.

    Resumable: finished episodes are loaded from --out, not rerun. Prints Table 2
    (methods x benchmarks: mean F1 / EM for QA, success % / progress % for environments)
    and the report's path.

    Example: agemem eval --bench hotpot,longmemeval --methods agemem,no-memory --n 20 --seed 0

    Example: agemem eval --bench babyai,tyreworld --methods agemem,no-memory,full-context --n 3
    """
    s = ctx.settings
    if adapter is not None:
        s.adapter = str(adapter)
    if "chat" in (parts := [b.strip() for b in benches.split(",")]):
        if parts != ["chat"]:
            raise ConfigError("--bench chat runs alone: run the other benchmarks in another call")
        given = click.get_current_context().get_parameter_source("n") is not ParameterSource.DEFAULT
        return _eval_chat(ctx, policy, seed, out, relevance_judge, methods or judge, n if given else None)
    splits = decisions.parse_bench(benches)
    if splits is not None:
        return _eval_decisions(ctx, splits, policy, n, seed, out, methods or judge)
    specs = harness.parse_benches(benches)
    names = harness.parse_methods(methods)
    s.policy, s.seed = policy or s.policy, seed
    _check_policy(s, s.policy)
    judge_name = None
    if judge is not None:
        kind, _, judge_name = judge.partition(":")
        if kind != "llm" or not judge_name:
            raise ConfigError(f"--judge {judge!r}: use llm:NAME with a policy model name")
        _check_policy(s, judge_name)
    if relevance_judge is not None:
        s.relevance_judge = relevance_judge
        judge_model(s)   # one line for a name that is not a chat model
    run_name = _run_name(s)
    out = out or s.data_dir / "eval" / f"{run_name}-seed{seed}"
    defaults = EpisodeConfig()
    cfg = EpisodeConfig(n_max=n_max or defaults.n_max, max_steps_per_turn=max_steps or defaults.max_steps_per_turn,
                        t_max=min(defaults.t_max, s.n_ctx), demonstrations=wants_demonstrations(s),
                        context_usage=wants_context_usage(s), relevance_judge=relevance_judge or "")
    env_cfg = EnvConfig(max_env_turns=max_env_turns or EnvConfig().max_env_turns)
    peer = _mem0_peer(s, out) if any(m in mem0_peer.PEER_METHODS for m in names) else None
    with _progress_bar("preparing embedder") as progress:
        embedder = load_embedder(s, progress=progress)
    llm_judge = LLMJudge(judge_name, lambda: open_policy(s, judge_name)) if judge_name else None
    try:
        with _episode_bar("eval") as progress:
            result = harness.run_eval(lambda: open_policy(s), embedder, specs, names, n=n, seed=seed, out_dir=out,
                                      settings=s, config=cfg, env_config=env_cfg, judge=llm_judge,
                                      policy_name=run_name, progress=progress, peer=peer,
                                      relevance=(lambda: load_judge(s)) if relevance_judge else None)
    finally:
        embedder.close()
        if llm_judge:
            llm_judge.close()
    path, agg = report.write_report(out)
    ctx.emit({"out": str(out), "report": str(path), "ran": result.ran, "loaded": result.loaded, "aggregate": agg},
             f"{result.ran} episodes run, {result.loaded} loaded from {out}\n\n"
             + "\n\n".join(t for t in (report.table2(agg), report.llm_table(agg)) if t) + f"\n\nreport: {path}")


def _mem0_peer(s, out: Path):
    """The Mem0 peer's session factory for this run: the policy's GGUF (and adapter) and the
    embedder's, served on 127.0.0.1; its files under ``<out>/mem0-peer``."""
    missing = mem0_peer.why_unavailable()
    if missing:
        raise ConfigError(missing)
    policy_gguf, embedder_gguf = resolve(s, s.policy), resolve(s, s.embedder)
    lora = Path(s.adapter) if s.adapter else adapter_path(get_spec(s, s.policy))
    threads = s.n_threads or os.cpu_count() or 1
    return lambda: mem0_peer.Mem0Session(policy_gguf, embedder_gguf, data_dir=out / "mem0-peer", lora_path=lora,
                                         n_threads=threads)


def _eval_decisions(ctx, splits, policy, n, seed, out, unused) -> None:
    """--bench decisions: one step per item, no tools run (``agemem_lite.decisions``)."""
    if unused:
        raise ConfigError("--methods and --judge do not apply to --bench decisions")
    s = ctx.settings
    s.policy, s.seed = policy or s.policy, seed
    _check_policy(s, s.policy)
    out = out or s.data_dir / "eval" / f"{_run_name(s)}-decisions-seed{seed}"
    pol = open_policy(s)
    try:
        with _episode_bar("decisions") as progress:
            text, scores = decisions.run_bench(pol, splits, n=n, seed=seed, out_dir=out, budget=s.context_budget,
                                               guided=wants_demonstrations(s), progress=progress,
                                               context_usage=wants_context_usage(s))
    finally:
        pol.close()
    ctx.emit({"out": str(out), "report": str(out / decisions.REPORT_NAME), "scores": scores},
             f"{text}\n\nreport: {out / decisions.REPORT_NAME}")


def _eval_chat(ctx, policy, seed, out, relevance_judge, unused, n: int | None) -> None:
    """--bench chat: the chat probes (``agemem_lite.chat_probes``), one whole turn each; all 20
    unless ``--n`` is given, then the first n taking one of each kind in turn."""
    if unused:
        raise ConfigError("--methods and --judge do not apply to --bench chat")
    s = ctx.settings
    s.policy, s.seed = policy or s.policy, seed
    _check_policy(s, s.policy)
    if relevance_judge is not None:
        s.relevance_judge = relevance_judge
    judge_model(s)
    out = out or s.data_dir / "eval" / f"{_run_name(s)}-chat-seed{seed}"
    with _progress_bar("preparing embedder") as progress:
        embedder = load_embedder(s, progress=progress)
    pol = judge = None
    try:
        pol = open_policy(s)
        judge = load_judge(s)
        with _episode_bar("chat probes") as bar:
            probes = chat_probes.PROBES if n is None else chat_probes.first(n)
            rows = chat_probes.run_probes(pol, embedder, s, probes=probes, judge=judge,
                                          context_usage=wants_context_usage(s),
                                          demonstrations=wants_demonstrations(s),
                                          progress=lambda done, total: bar(done, total, ""))
    finally:
        for r in (pol, judge, embedder):
            if r is not None:
                r.close()
    title = _run_name(s) + (f" + relevance judge {s.relevance_judge}" if s.relevance_judge else "")
    text = chat_probes.render_report(rows, title)
    out.mkdir(parents=True, exist_ok=True)
    harness.write_json_atomic(out / "probes.json", rows)
    (out / "report.md").write_text(text, encoding="utf-8")
    summary = chat_probes.summarise(rows)
    ctx.emit({"out": str(out), "report": str(out / "report.md"), "scores": summary},
             f"{text}\nreport: {out / 'report.md'}")


COMMANDS = [eval_cmd]
