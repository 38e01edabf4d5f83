"""``agemem memory``: look at and steer the long-term memory by hand.

Changes made here are audited like the agent's (actor "user") and can be
undone with ``agemem memory undo``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from .. import notes
from ..assistant import open_store
from ..embed import load_embedder
from . import pass_ctx
from .models import _progress_bar


@contextlib.contextmanager
def _store(ctx):
    store = open_store(ctx.settings)
    try:
        yield store
    finally:
        store.close()


@contextlib.contextmanager
def _embedder(ctx):
    with _progress_bar("prepare embedder") as progress:
        emb = load_embedder(ctx.settings, progress=progress)
    try:
        yield emb
    finally:
        emb.close()


def _line(m: dict) -> str:
    text = m["content"].replace("\n", " ")
    return f"{m['id']:>8}  {m['memory_type']:<10} {m['updated_at'][:16]}  {text[:100]}"


@click.group("memory")
@click.option("--namespace", "-n", default=None, help="Memory namespace (profile). Default: from settings.")
@click.pass_context
def memory(cctx, namespace) -> None:
    """Inspect and edit long-term memory.

    Example: agemem memory search "sister birthday"
    """
    if namespace:
        cctx.obj.settings.namespace = namespace


@memory.command("list")
@click.option("--type", "memory_type", default=None, help="Only this memory type.")
@click.option("--since", default=None, help="Only memories updated at or after this ISO date.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000))
@pass_ctx
def list_cmd(ctx, memory_type, since, limit) -> None:
    """List memories, newest first.

    Example: agemem memory list --type preference
    """
    with _store(ctx) as store:
        rows = [m.to_dict() for m in store.list(ctx.settings.namespace, memory_type=memory_type,
                                                 since=since, limit=limit)]
    ctx.emit(rows, "\n".join(_line(m) for m in rows) or "(no memories)")


@memory.command("search")
@click.argument("query")
@click.option("-k", "--top-k", default=5, show_default=True, type=click.IntRange(1, 100))
@click.option("--mode", type=click.Choice(["hybrid", "vector", "keyword"]), default="hybrid", show_default=True)
@click.option("--type", "memory_type", default=None, help="Only this memory type.")
@pass_ctx
def search_cmd(ctx, query, top_k, mode, memory_type) -> None:
    """Search memories (vector + keyword, fused).

    Example: agemem memory search "where does Tom live" -k 3
    """
    flt = {"memory_type": memory_type} if memory_type else None
    with _store(ctx) as store, _embedder(ctx) as emb:
        hits = store.search(ctx.settings.namespace, query, emb.embed_one(query), top_k=top_k,
                            metadata_filter=flt, mode=mode)
    rows = [{**h.memory.to_dict(), "score": h.score, "similarity": h.similarity} for h in hits]
    text = "\n".join(f"{(r['similarity'] or 0):.2f} {_line(r)}" for r in rows) or "(no matches)"
    ctx.emit(rows, text)


@memory.command("add")
@click.argument("content")
@click.option("--type", "memory_type", default="fact", show_default=True)
@click.option("--tag", "tags", multiple=True, help="Tag (repeatable); stored in metadata.tags.")
@pass_ctx
def add_cmd(ctx, content, memory_type, tags) -> None:
    """Store a memory by hand.

    Example: agemem memory add "My bike is a blue Gazelle" --tag bike
    """
    meta = {"tags": list(tags)} if tags else None
    with _store(ctx) as store, _embedder(ctx) as emb:
        m = store.add(ctx.settings.namespace, content, emb.embed_one(content), memory_type=memory_type,
                      metadata=meta, source="user", actor="user")
    ctx.emit(m.to_dict(), f"stored {m.id}")


@memory.command("edit")
@click.argument("memory_id")
@click.argument("content")
@pass_ctx
def edit_cmd(ctx, memory_id, content) -> None:
    """Replace a memory's text (the old text stays in its history for undo).

    Example: agemem memory edit mem_3 "Tom lives in Bergen"
    """
    with _store(ctx) as store, _embedder(ctx) as emb:
        m = store.update(ctx.settings.namespace, memory_id, content, emb.embed_one(content), actor="user")
    ctx.emit(m.to_dict(), f"updated {m.id}")


@memory.command("delete")
@click.argument("memory_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def delete_cmd(ctx, memory_id, yes) -> None:
    """Delete a memory. Its text is forgotten (removed from the database file).

    Example: agemem memory delete mem_3 --yes
    """
    with _store(ctx) as store:
        m = store.get(ctx.settings.namespace, memory_id)
        if not yes and not click.confirm(f"Delete {m.id}: {m.content[:80]!r}?", default=False):
            raise click.ClickException("not deleted")
        store.delete(ctx.settings.namespace, m.id, actor="user")
    ctx.emit(m.to_dict(), f"deleted {m.id}")


@memory.command("history")
@click.argument("memory_id", required=False)
@click.option("--limit", default=30, show_default=True, type=click.IntRange(1, 100000))
@pass_ctx
def history_cmd(ctx, memory_id, limit) -> None:
    """Show the audit trail of changes (who, when, old and new text).

    Example: agemem memory history mem_3
    """
    with _store(ctx) as store:
        rows = [h.to_dict() for h in store.history(ctx.settings.namespace, memory_id, limit=limit)]
    lines = []
    for h in rows:
        flag = " (undone)" if h["undone"] else (" (forgotten)" if h["redacted"] else "")
        change = h["new_content"] if h["op"] != "delete" else h["old_content"]
        lines.append(f"#{h['id']:<5} {h['at'][:19]} {h['actor']:<6} {h['op']:<6} {h['memory_id']:>8}{flag}  "
                     f"{(change or '').replace(chr(10), ' ')[:80]}")
    ctx.emit(rows, "\n".join(lines) or "(no history)")


@memory.command("undo")
@click.argument("history_id", type=int)
@pass_ctx
def undo_cmd(ctx, history_id) -> None:
    """Undo one change from the history (see `agemem memory history`).

    Example: agemem memory undo 12
    """
    with _store(ctx) as store:
        m = store.undo(ctx.settings.namespace, history_id, actor="user")
    ctx.emit(m.to_dict() if m else None, f"undid #{history_id}" + (f" ({m.id} restored)" if m else ""))


@memory.command("export")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["json", "md"]), default=None,
              help="Default: from the file suffix (.md → Markdown, else JSON).")
@pass_ctx
def export_cmd(ctx, path, fmt) -> None:
    """Write every memory of the namespace to a JSON or Markdown file.

    Example: agemem memory export memories.md
    """
    fmt = fmt or ("md" if path.suffix.lower() in (".md", ".markdown") else "json")
    with _store(ctx) as store:
        rows = store.export(ctx.settings.namespace)
    text = notes.export_markdown(rows, ctx.settings.namespace) if fmt == "md" else notes.export_json(rows)
    path.write_text(text, encoding="utf-8")
    ctx.emit({"path": str(path), "memories": len(rows), "format": fmt}, f"wrote {len(rows)} memories to {path}")


@memory.command("import")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--type", "memory_type", default="note", show_default=True)
@click.option("--chunk-chars", default=800, show_default=True, type=click.IntRange(50, 20000))
@pass_ctx
def import_cmd(ctx, folder, memory_type, chunk_chars) -> None:
    """Store a folder of Markdown/text notes as memories (chunked, with their source file).

    Example: agemem memory import ~/notes
    """
    with _store(ctx) as store, _embedder(ctx) as emb:
        stats = notes.import_notes(store, ctx.settings.namespace, folder, emb.embed, memory_type=memory_type,
                                   max_chars=chunk_chars)
    msg = f"imported {stats['chunks']} chunks from {stats['files']} files"
    if stats["replaced"]:
        msg += f" (replaced {stats['replaced']} earlier chunks)"
    if stats["skipped"]:
        msg += "\nskipped: " + "; ".join(stats["skipped"])
    ctx.emit(stats, msg)


COMMANDS = [memory]
