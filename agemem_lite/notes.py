"""Personal notes in and out of the LTM: import a folder of Markdown/text, export JSON/Markdown.

Import splits each file into chunks along headings and paragraphs (a memory
should be one retrievable idea, and the embedder sees 256 word pieces at most),
and records where each chunk came from in its metadata (file, heading, chunk
number) so search results can be traced back. Re-importing a file replaces its
earlier chunks instead of duplicating them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .memory.store import MemoryStore

NOTE_SUFFIXES = (".md", ".markdown", ".txt", ".text", ".org", ".rst")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")


@dataclass(frozen=True)
class Chunk:
    """A piece of a note: its text and where it came from."""

    text: str
    heading: str
    index: int


def chunk_text(text: str, max_chars: int = 800) -> list[Chunk]:
    """Split a note at headings, then pack paragraphs into chunks of at most ``max_chars``."""
    if max_chars < 50:
        raise ValueError(f"max_chars={max_chars}: chunks under 50 characters carry no context")
    sections: list[tuple[str, list[str]]] = [("", [])]
    for line in text.splitlines():
        m = _HEADING.match(line)
        if m:
            sections.append((m.group(2).strip(), []))
        else:
            sections[-1][1].append(line)
    chunks: list[Chunk] = []
    for heading, lines in sections:
        paras = [p.strip() for p in re.split(r"\n\s*\n", "\n".join(lines)) if p.strip()]
        buf = ""
        for p in paras:
            while len(p) > max_chars:  # one huge paragraph: cut at a sentence or space
                cut = max(p.rfind(". ", 0, max_chars), p.rfind(" ", 0, max_chars))
                cut = cut + 1 if cut > max_chars // 2 else max_chars
                pieces = [p[:cut].strip(), p[cut:].strip()]
                if buf:
                    chunks.append(Chunk(buf, heading, len(chunks)))
                    buf = ""
                chunks.append(Chunk(pieces[0], heading, len(chunks)))
                p = pieces[1]
            if buf and len(buf) + 2 + len(p) > max_chars:
                chunks.append(Chunk(buf, heading, len(chunks)))
                buf = ""
            buf = f"{buf}\n\n{p}" if buf else p
        if buf:
            chunks.append(Chunk(buf, heading, len(chunks)))
    return chunks


def note_files(folder: Path) -> list[Path]:
    """Note files under ``folder`` (recursive, hidden folders skipped), sorted."""
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in NOTE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def import_notes(store: MemoryStore, namespace: str, folder: str | Path,
                 embed: Callable[[list[str]], object], *, memory_type: str = "note",
                 max_chars: int = 800, actor: str = "import",
                 progress: Callable[[int, int], None] | None = None) -> dict:
    """Store every chunk of every note as a memory; returns counts per file."""
    folder = Path(folder).expanduser()
    files = note_files(folder)
    stats = {"files": 0, "chunks": 0, "replaced": 0, "skipped": []}
    existing = _imported_by_file(store, namespace)
    for n, path in enumerate(files):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError) as e:
            stats["skipped"].append(f"{path}: {e.__class__.__name__}")
            continue
        rel = str(path.relative_to(folder))
        for mid in existing.get(str(path.resolve()), []):
            store.delete(namespace, mid, actor=actor)
            stats["replaced"] += 1
        chunks = chunk_text(text, max_chars)
        if chunks:
            # The heading travels with the chunk: "Hotel" alone under "# Trip" means little.
            texts = [f"{c.heading}\n\n{c.text}" if c.heading else c.text for c in chunks]
            vectors = embed(texts)
            for c, text, v in zip(chunks, texts, vectors):
                meta = {"file": str(path.resolve()), "path": rel, "heading": c.heading, "chunk": c.index}
                store.add(namespace, text, v, memory_type=memory_type, metadata=meta,
                          source="import", actor=actor)
            stats["chunks"] += len(chunks)
        stats["files"] += 1
        if progress:
            progress(n + 1, len(files))
    return stats


def _imported_by_file(store: MemoryStore, namespace: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for m in store.export(namespace):
        if m.get("source") == "import" and isinstance(m.get("metadata"), dict) and m["metadata"].get("file"):
            out.setdefault(m["metadata"]["file"], []).append(m["id"])
    return out


def export_json(memories: Iterable[dict]) -> str:
    """All memories as a JSON array (ids, content, type, metadata, timestamps)."""
    return json.dumps(list(memories), indent=2, ensure_ascii=False)


def export_markdown(memories: Iterable[dict], namespace: str) -> str:
    """A readable Markdown file: one section per memory type, one bullet per memory."""
    by_type: dict[str, list[dict]] = {}
    for m in memories:
        by_type.setdefault(m["memory_type"], []).append(m)
    out = [f"# Memories — {namespace}", ""]
    for mtype in sorted(by_type):
        out += [f"## {mtype}", ""]
        for m in by_type[mtype]:
            body = m["content"].replace("\n", "\n  ")
            out.append(f"- **{m['id']}** ({m['updated_at'][:10]}): {body}")
        out.append("")
    return "\n".join(out)
