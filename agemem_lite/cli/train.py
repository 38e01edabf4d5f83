"""``agemem train`` and ``agemem export``: thin wrappers over the ``train`` package (training extra)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click

from ..errors import ConfigError
from . import pass_ctx

TRAIN_EXTRA = "pip install 'agemem-lite[train]'"


def _need_training_deps() -> None:
    missing = [m for m in ("torch", "transformers", "peft") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"training needs {', '.join(missing)}: {TRAIN_EXTRA}")


@click.command("train")
@click.option("--recipe", "--config", "recipe", default=None, metavar="NAME|FILE",
              help="A built-in recipe (train/recipes: tiny, cpu-small, default, gpu) or a TOML file.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a setting, e.g. --set lr=1e-5 --set episode.n_max=2 (repeatable).")
@click.option("--base", default=None, help="Base policy: registry name, GGUF path or HF folder.")
@click.option("--steps", type=click.IntRange(0), default=None,
              help="GRPO steps (a resume may raise it; 0 = the warm start only).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder. Default: <data dir>/runs/<recipe or 'run'>.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its latest checkpoint.")
@click.option("--seed", type=int, default=None, help="Seed (tasks, sampling, subsampling, LoRA init).")
@pass_ctx
def train_cmd(ctx, recipe, overrides, base, steps, out, resume, seed) -> None:
    """Train the memory policy with step-wise GRPO (SPEC §6) on three-stage episodes.

    Writes checkpoints, log.jsonl, held-out evaluations and reward_curve.png to --out.
    Export the result with `agemem export RUN_DIR --name NAME`.

    Example: agemem train --recipe cpu-small --out runs/smol

    Example: agemem train --recipe default --set k=4 --steps 20

    Example: agemem train --recipe default --steps 0   (the warm start only)
    """
    _need_training_deps()
    from train.config import TrainConfig
    from train.trainer import GRPOTrainer

    extra = {k: v for k, v in (("base", base), ("steps", steps), ("seed", seed)) if v is not None}
    cfg = TrainConfig.load(recipe, list(overrides))
    if extra:
        cfg = TrainConfig.load(None, {**cfg.to_dict(), **extra})
    out = out or ctx.settings.data_dir / "runs" / (Path(str(recipe)).stem if recipe else "run")
    trainer = GRPOTrainer(cfg, ctx.settings, out, resume=resume, log=lambda s: click.echo(s, err=True))
    try:
        summary = trainer.run(resume=resume)
    finally:
        trainer.close()
    ctx.emit(summary, f"trained {summary['steps']} GRPO steps -> {out}\n"
             f"best held-out reward: {summary['best_heldout_reward']}\n"
             f"GGUF LoRA adapter (llama.cpp, on {cfg.base}): {out / 'best' / 'adapter.gguf'}\n"
             f"export: agemem export {out} --name NAME")


@click.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", required=True, help="Registry name of the exported policy.")
@click.option("--checkpoint", default="best", show_default=True,
              help="'best' (held-out), 'latest', or a checkpoint folder name (step-000010).")
@click.option("--outtype", type=click.Choice(["f16", "q8_0"]), default="f16", show_default=True,
              help="Type of the merged GGUF.")
@click.option("--quantize", "quant", type=click.Choice(["q4_k_m", "q5_k_m", "q8_0", "none"]), default="q4_k_m",
              show_default=True, help="Quantise the merged GGUF with llama.cpp ('none' keeps --outtype).")
@pass_ctx
def export_cmd(ctx, run_dir, name, checkpoint, outtype, quant) -> None:
    """Merge a run's LoRA into its base, write a GGUF, quantise it, register it as NAME.

    Then: agemem chat --policy NAME (or set policy = "NAME" in config.toml), agemem eval --policy NAME.

    Example: agemem export runs/qwen --name qwen-grpo --quantize q4_k_m
    """
    _need_training_deps()
    from train.publish import export_run

    path = export_run(ctx.settings, run_dir, name, checkpoint=checkpoint, outtype=outtype,
                      quantize=None if quant == "none" else quant)
    ctx.emit({"name": name, "path": str(path)}, f"exported {name}: {path}")


def _weighted(spec: str) -> tuple[Path, float]:
    path, _, weight = spec.rpartition("=") if "=" in spec else (spec, "", "1")
    try:
        return Path(path), float(weight)
    except ValueError:
        raise click.BadParameter(f"{spec!r}: write FILE or FILE=WEIGHT (a number)") from None


@click.command("average-adapters")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("adapters", nargs=-1, required=True, metavar="ADAPTER[=WEIGHT]...")
@click.option("--base", default="qwen2.5-coder-0.5b", show_default=True,
              help="The policy (registry name or GGUF path) the adapters were trained on; OUT is loaded over it.")
@click.option("--rank", type=click.IntRange(1), default=None, help="LoRA rank of OUT. Default: the first adapter's.")
@pass_ctx
def average_adapters_cmd(ctx, out, adapters, base, rank) -> None:
    """Write the weighted sum of GGUF LoRA adapters' weight deltas as one adapter (no torch).

    Weights default to 1 and may be negative (task arithmetic). The sum is cut to
    --rank by SVD; the share of it that the cut drops is printed.

    Example: agemem average-adapters soup.gguf v7.gguf=0.5 w.gguf=0.5

    Then: agemem eval --bench decisions --policy agemem-0.5b --adapter soup.gguf
    """
    from train.base import resolve_base
    from train.merge_adapters import merge_adapters

    pairs = [_weighted(a) for a in adapters]
    base_gguf = resolve_base(ctx.settings, base)
    if base_gguf.is_dir():
        raise ConfigError(f"--base {base}: the adapters are loaded over a GGUF policy, not a model folder")
    r = merge_adapters(pairs, out, base_gguf, rank=rank)
    ctx.emit({"out": str(r.out), "rank": r.rank, "tensors": r.tensors, "dropped_share_max": r.dropped_share_max,
              "dropped_share_mean": r.dropped_share_mean},
             f"wrote {r.out} (rank {r.rank}, {r.tensors} tensors); the rank cut dropped "
             f"{100 * r.dropped_share_mean:.2f} % of the sum's norm on average, {100 * r.dropped_share_max:.2f} % at most")


@click.command("preference-round")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--policy", default=None, help="The trained policy whose mistakes are learnt from. Default: the configured one.")
@click.option("--adapter", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A GGUF LoRA adapter to continue instead of the policy's own.")
@click.option("--n", type=click.IntRange(1), default=162, show_default=True, help="Train-split decision items.")
@click.option("--seed", type=int, default=11, show_default=True,
              help="Decision generator seed (the warm start used 0 and 7) and training seed.")
@click.option("--records", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="records.json of an earlier round on the same --n/--seed: skip running the policy.")
@click.option("--epochs", type=click.IntRange(1), default=1, show_default=True)
@click.option("--lr", type=float, default=5e-5, show_default=True)
@click.option("--beta", type=float, default=0.1, show_default=True, help="DPO beta: how far from the reference.")
@click.option("--nll-weight", type=float, default=0.0, show_default=True,
              help="Add this times the chosen step's mean NLL (RPO).")
@click.option("--accumulation", type=click.IntRange(1), default=4, show_default=True, help="Pairs per optimizer step.")
@click.option("--max-tokens", type=click.IntRange(64), default=2048, show_default=True,
              help="Leave out pairs longer than this (context and both steps run as one sequence).")
@click.option("--anchors/--no-anchors", default=True, show_default=True,
              help="Also pair each right step of Add/Update/Delete/Retrieve with its neighbour class's step.")
@click.option("--reason-n", type=click.IntRange(0), default=0, show_default=True,
              help="Also pair the policy's answers to this many LongMemEval questions whose memories a search "
                   "found: a wrong answer against the right one, a right one against 'not told'.")
@click.option("--reason-seed", type=int, default=2000, show_default=True,
              help="Task seed of those questions (the warm start used 1000 and 1007, the bench uses 0).")
@pass_ctx
def preference_round_cmd(ctx, out, policy, adapter, n, seed, records, epochs, lr, beta, nll_weight, accumulation,
                         max_tokens, anchors, reason_n, reason_seed) -> None:
    """DPO on the policy's own mistakes: its wrong steps on train-split decision items against the oracle's.

    Writes OUT/adapter.gguf (continue the policy's adapter), OUT/preference.json and OUT/records.json.

    Example: agemem preference-round runs/dpo --policy agemem-0.5b

    Then: agemem eval --bench decisions --policy agemem-0.5b --adapter runs/dpo/adapter.gguf
    """
    _need_training_deps()
    from train.preference import run_round

    s = ctx.settings
    s.policy = policy or s.policy
    if adapter is not None:
        s.adapter = str(adapter)
    summary = run_round(s, out, n=n, seed=seed, records_file=records, epochs=epochs, lr=lr, beta=beta,
                        nll_weight=nll_weight, accumulation=accumulation, max_tokens=max_tokens,
                        anchors=anchors, reason_n=reason_n, reason_seed=reason_seed, threads=s.n_threads or 0,
                        log=lambda m: click.echo(m, err=True))
    ctx.emit(summary, f"{summary['pairs']} pairs trained ({summary['mistake_pairs']} from mistakes, "
             f"{summary['anchor_pairs']} anchors, {summary['reason_pairs']} from the reason stage; "
             f"{summary['items'] - summary['right_actions']} wrong actions "
             f"of {summary['items']}); last epoch prefers the chosen step in {summary['last_epoch_prefers_chosen']} "
             f"(mean margin {summary['last_epoch_mean_margin']:+.3f}), {summary['wall_seconds']:.0f} s\n"
             f"adapter: {summary['adapter_gguf']}")


COMMANDS = [train_cmd, export_cmd, average_adapters_cmd, preference_round_cmd]
