"""MemoryStore: the long-term memory M_t (SPEC §1-2) in one SQLite file.

This is the only module that writes SQL. One file holds every namespace (one
per user/profile). Each memory is one row of ``memories`` plus its float32
vector, its sign bits in a sqlite-vec ``vec0`` table and its tokens in an FTS5
index; every change also writes a ``history`` row so it can be audited and
undone. Schema and migrations: ``schema.py``; filter/FTS/RRF helpers:
``search.py``; the records it returns (Memory, Hit, HistoryEntry): ``records.py``.

Forgetting is real (``keep_deleted=False``, the default): a delete removes the
text from every table and redacts it from the history, ``secure_delete`` zeroes
the freed bytes and FTS5's secure-delete drops the tokens, so after
``checkpoint()`` the text is in neither the .db nor the -wal file.
"""

from __future__ import annotations

import builtins
import json
import os
import threading
from contextlib import contextmanager

import apsw
import numpy as np

from ..errors import MemoryNotFound, StoreError
from . import schema
from .records import (HISTORY_COLS, HistoryEntry, Hit, Memory, as_utc, format_memory_id, history_from_row,
                      now_utc, parse_memory_id)
from .search import Filter, build_filter, cosine_rank, fts_query, meta_rows, rrf

#: Retrieval modes of ``search``.
MODES = ("hybrid", "vector", "keyword")

# Vector search = binary prefilter + float rescore. sqlite-vec 0.1.9's bit[384]
# KNN over 100k rows costs ~3 ms + ~0.08 ms per requested neighbour on 2 cores
# (its top-k is a k-pass selection over each chunk), so over-fetch a little, not
# hundreds. On real all-MiniLM-L6-v2 embeddings (20k memories) 8x over-fetch
# keeps 98.3% of the exact float top-3 (16x: 99.2% at ~1.5x the time);
# bench/bench_store.py measures it on synthetic data.
OVERSAMPLE = 8
MIN_CANDIDATES = 24
VEC0_K_MAX = 4096  # sqlite-vec refuses larger k
#: A metadata-key filter that leaves at most this many rows is answered by exact
#: float cosine over exactly those rows (recall 1; ~2.5 µs a row, so ≤ ~10 ms,
#: cheaper than sqlite-vec's `rowid IN` scan at 100k rows).
EXACT_SCAN_MAX = 4096
#: A broad metadata filter first tries a KNN this many times larger, keeping matches.
BROAD_OVERFETCH = 2
#: Depth of each ranked list fed into RRF in hybrid mode.
FUSION_DEPTH = 10

_MEMORY_COLS = "id, namespace, content, memory_type, metadata, source, created_at, updated_at"


def _text(value, name: str) -> str:
    """A required non-blank string argument."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _metadata_json(metadata) -> str:
    """Metadata as canonical JSON text; it must be a JSON object."""
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata must be an object (dict), got {type(metadata).__name__}")
    try:
        return json.dumps(metadata, ensure_ascii=False, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"metadata is not JSON-serialisable: {e}") from None


class MemoryStore:
    """Namespaced memories with hybrid search, history and undo, in one SQLite file.

    Every public method is one transaction and is safe to call from several
    threads (one lock per store). Several processes may open the same file
    (WAL mode; writers wait up to ``schema.BUSY_TIMEOUT_MS``).
    """

    def __init__(self, path: str | os.PathLike, dim: int = 384, *, keep_deleted: bool = False,
                 synchronous: str = "FULL"):
        if not isinstance(dim, int) or dim <= 0 or dim % 8:
            raise ValueError(f"dim={dim!r}: must be a positive multiple of 8 (bit[dim] vectors)")
        self.path = os.fspath(path)
        self.dim = dim
        #: Keep deleted memories' text and vector in history so a delete can be undone.
        self.keep_deleted = keep_deleted
        self._lock = threading.RLock()
        self._tokenizer = None   # the FTS5 tokenizer, for doc_freq of query words
        #: "FULL" (default) survives power loss; "NORMAL" only a crashed process (schema.py).
        self.synchronous = synchronous
        self._conn: apsw.Connection | None = schema.connect(self.path, dim, synchronous)

    # -- plumbing -------------------------------------------------------------
    def close(self) -> None:
        """Close the file; SQLite checkpoints and removes the -wal file on last close."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "MemoryStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MemoryStore({self.path!r}, dim={self.dim}, keep_deleted={self.keep_deleted})"

    @contextmanager
    def _tx(self, write: bool):
        """One transaction; apsw errors leave as one-line StoreErrors.

        Writes take the lock up front (BEGIN IMMEDIATE) so two processes never
        deadlock upgrading a read lock; reads get one consistent snapshot.
        """
        with self._lock:
            if self._conn is None:
                raise StoreError(f"memory store {self.path} is closed")
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield conn
                conn.execute("COMMIT")
            except BaseException as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(e, apsw.Error):
                    raise StoreError(f"memory database {self.path}: {schema.one_line(e)}") from e
                raise

    def transaction(self, write: bool = False):
        """One transaction on this file, for modules that keep their own tables in it
        (``memory/sessions.py``); same lock and error translation as the store's own."""
        return self._tx(write)

    def _vector(self, embedding, name: str = "embedding") -> np.ndarray:
        """Validated unit-norm float32 copy (cosine = dot product everywhere)."""
        try:
            v = np.asarray(embedding, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a float vector, got {type(embedding).__name__}") from None
        if v.shape != (self.dim,):
            raise ValueError(f"{name} has shape {v.shape}; this store holds {self.dim}-d vectors")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{name} contains NaN or infinity")
        norm = float(np.linalg.norm(v))
        if norm == 0.0:
            raise ValueError(f"{name} is the zero vector; cosine similarity is undefined")
        return np.ascontiguousarray(v / norm, dtype=np.float32)

    @staticmethod
    def _row(c, namespace: str, memory_id) -> tuple:
        row = c.execute(f"SELECT {_MEMORY_COLS} FROM memories WHERE id = ? AND namespace = ?",
                        (parse_memory_id(memory_id), namespace)).fetchone()
        if row is None:
            raise MemoryNotFound(f"no memory {format_memory_id(parse_memory_id(memory_id))} "
                                 f"in namespace {namespace!r}")
        return row

    @staticmethod
    def _index(c, mid: int, namespace: str, content: str, memory_type: str, source: str, metadata: str,
               vec: np.ndarray) -> None:
        """Add a memory to the vector tables, the keyword index and the metadata index."""
        blob = vec.tobytes()
        c.executemany("INSERT INTO memory_meta(memory_id, key, value) VALUES (?, ?, ?)",
                      [(mid, k, v) for k, v in meta_rows(json.loads(metadata))])
        c.execute("INSERT INTO memory_vectors(memory_id, embedding) VALUES (?, ?)", (mid, blob))
        c.execute("INSERT INTO memory_bits(rowid, namespace, memory_type, source, embedding) "
                  "VALUES (?, ?, ?, ?, vec_quantize_binary(?))", (mid, namespace, memory_type, source, blob))
        c.execute("INSERT INTO memory_fts(rowid, content) VALUES (?, ?)", (mid, content))

    @staticmethod
    def _unindex(c, mid: int, content: str) -> bytes:
        """Remove a memory from the vector tables and the keyword index; returns its vector."""
        (blob,) = c.execute("SELECT embedding FROM memory_vectors WHERE memory_id = ?", (mid,)).fetchone()
        # External-content FTS5 needs the exact indexed text to find the tokens to drop.
        c.execute("INSERT INTO memory_fts(memory_fts, rowid, content) VALUES ('delete', ?, ?)", (mid, content))
        c.execute("DELETE FROM memory_bits WHERE rowid = ?", (mid,))
        c.execute("DELETE FROM memory_vectors WHERE memory_id = ?", (mid,))
        c.execute("DELETE FROM memory_meta WHERE memory_id = ?", (mid,))
        return blob

    @staticmethod
    def _log(c, mid: int, namespace: str, op: str, actor: str, at: str, source: str, created_at: str,
             old=(None, None, None, None), new=(None, None, None), undoes: int | None = None,
             redacted: bool = False) -> int:
        """Write one history row; old = (content, metadata, type, embedding), new = (content, metadata, type)."""
        c.execute(
            "INSERT INTO history(memory_id, namespace, op, actor, at, old_content, old_metadata, "
            "old_memory_type, old_embedding, new_content, new_metadata, new_memory_type, memory_source, "
            "memory_created_at, undoes, redacted) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (mid, namespace, op, actor, at, *old, *new, source, created_at, undoes, int(redacted)))
        return c.last_insert_rowid()

    def _forget(self, c, mid: int, namespace: str) -> None:
        """Redact every history row of a deleted memory: keep op/actor/time, drop text and vectors."""
        if self.keep_deleted:
            return
        c.execute("UPDATE history SET old_content = NULL, new_content = NULL, old_metadata = NULL, "
                  "new_metadata = NULL, old_embedding = NULL, redacted = 1 "
                  "WHERE namespace = ? AND memory_id = ?", (namespace, mid))

    def _after_forget(self) -> None:
        """Try to flush the deleted text out of the -wal file right away.

        Non-blocking: if another connection is reading, the text stays in the
        WAL until the next ``checkpoint()`` (which waits) or the last close.
        """
        if self.keep_deleted or self._conn is None or self.path == ":memory:":
            return
        with self._lock:
            self._conn.setbusytimeout(0)
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except apsw.BusyError:
                pass
            finally:
                self._conn.setbusytimeout(schema.BUSY_TIMEOUT_MS)

    # -- SPEC §2 LTM tools ------------------------------------------------------
    def add(self, namespace: str, content: str, embedding, *, memory_type: str = "fact",
            metadata: dict | None = None, source: str = "agent", actor: str = "agent") -> Memory:
        """Insert a memory (Add_memory) and log it; returns it with its new ``mem_<n>`` id."""
        return self.add_many(namespace, [content], [embedding], memory_type=memory_type,
                             metadata=[metadata], source=source, actor=actor)[0]

    def add_many(self, namespace: str, contents: builtins.list[str], embeddings, *,
                 memory_type: str = "fact", metadata: builtins.list[dict | None] | None = None,
                 source: str = "import", actor: str = "import") -> builtins.list[Memory]:
        """Insert several memories in ONE transaction (imports, benchmarks): all or none."""
        for value, name in ((namespace, "namespace"), (memory_type, "memory_type"), (source, "source")):
            _text(value, name)
        metadata = metadata if metadata is not None else [None] * len(contents)
        if not (len(contents) == len(embeddings) == len(metadata)):
            raise ValueError(f"{len(contents)} contents, {len(embeddings)} embeddings and "
                             f"{len(metadata)} metadata: need one of each per memory")
        rows = [(_text(t, "content"), self._vector(e), _metadata_json(m))
                for t, e, m in zip(contents, embeddings, metadata)]
        now, out = now_utc(), []
        with self._tx(write=True) as c:
            for content, vec, meta in rows:
                c.execute("INSERT INTO memories(namespace, content, memory_type, metadata, source, "
                          "created_at, updated_at) VALUES (?,?,?,?,?,?,?)",
                          (namespace, content, memory_type, meta, source, now, now))
                mid = c.last_insert_rowid()
                self._index(c, mid, namespace, content, memory_type, source, meta, vec)
                self._log(c, mid, namespace, "add", actor, now, source, now, new=(content, meta, memory_type))
                out.append(Memory(format_memory_id(mid), namespace, content, memory_type,
                                  json.loads(meta), source, now, now))
        return out

    def get(self, namespace: str, memory_id: str | int) -> Memory:
        """The memory with that id in that namespace; MemoryNotFound otherwise."""
        with self._tx(write=False) as c:
            return Memory._from_row(self._row(c, namespace, memory_id))

    def update(self, namespace: str, memory_id: str | int, content: str, embedding, *,
               metadata: dict | None = None, memory_type: str | None = None, actor: str = "agent") -> Memory:
        """Replace content and embedding (Update_memory), stamping updated_at.

        ``metadata``/``memory_type`` replace the old ones when given and are kept
        when None. The old text, metadata and vector go to the history row so
        ``undo`` can restore all three.
        """
        content, vec = _text(content, "content"), self._vector(embedding)
        meta = _metadata_json(metadata) if metadata is not None else None
        if memory_type is not None:
            _text(memory_type, "memory_type")
        now = now_utc()
        with self._tx(write=True) as c:
            mid, ns, old_content, old_type, old_meta, source, created, _ = self._row(c, namespace, memory_id)
            new_meta, new_type = meta if meta is not None else old_meta, memory_type or old_type
            old_blob = self._unindex(c, mid, old_content)
            c.execute("UPDATE memories SET content = ?, metadata = ?, memory_type = ?, updated_at = ? "
                      "WHERE id = ?", (content, new_meta, new_type, now, mid))
            self._index(c, mid, ns, content, new_type, source, new_meta, vec)
            self._log(c, mid, ns, "update", actor, now, source, created,
                      old=(old_content, old_meta, old_type, old_blob), new=(content, new_meta, new_type))
            return Memory(format_memory_id(mid), ns, content, new_type, json.loads(new_meta), source, created, now)

    def delete(self, namespace: str, memory_id: str | int, *, actor: str = "agent") -> Memory:
        """Remove a memory (Delete_memory) and return what it was.

        With keep_deleted=False the text is also redacted from all its history
        rows, so the delete cannot be undone: the memory is forgotten.
        """
        with self._tx(write=True) as c:
            row = self._row(c, namespace, memory_id)
            self._remove(c, row, "delete", actor)
        self._after_forget()
        return Memory._from_row(row)

    def _remove(self, c, row: tuple, op: str, actor: str, undoes: int | None = None) -> int:
        """Delete a memory row and everything indexed from it; log op ('delete' or 'undo')."""
        mid, ns, content, mtype, meta, source, created, _ = row
        blob = self._unindex(c, mid, content)
        c.execute("DELETE FROM memories WHERE id = ?", (mid,))
        old = (content, meta, mtype, blob) if self.keep_deleted else (None, None, mtype, None)
        hid = self._log(c, mid, ns, op, actor, now_utc(), source, created, old=old, undoes=undoes,
                        redacted=not self.keep_deleted)
        self._forget(c, mid, ns)
        return hid

    # -- retrieval ------------------------------------------------------------
    def search(self, namespace: str, query_text: str | None, query_embedding, *, top_k: int = 3,
               metadata_filter: dict | None = None, mode: str = "hybrid") -> builtins.list[Hit]:
        """Top-k memories of a namespace for a query (Retrieve_memory, SPEC §2).

        hybrid: vector and BM25 keyword lists fused by RRF (``search.RRF_K``);
        vector: cosine only; keyword: BM25 only (``query_embedding`` may be None).
        ``metadata_filter`` is applied inside both searches, so whenever at least
        ``top_k`` memories match it, exactly ``top_k`` come back. ``Hit.score``
        is the RRF score in every mode; ``Hit.similarity`` is the float cosine
        whenever a query embedding was given (also for keyword-found hits);
        ``Hit.keyword`` is True for a hit the BM25 list found (not in vector mode).
        """
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: expected one of {', '.join(MODES)}")
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise ValueError(f"top_k={top_k!r}: must be an integer ≥ 1")
        top_k = min(top_k, VEC0_K_MAX)
        query = None
        if mode != "keyword" or query_embedding is not None:
            query = self._vector(query_embedding, "query_embedding")
        filt = build_filter(namespace, metadata_filter)
        depth = max(top_k, FUSION_DEPTH) if mode == "hybrid" else top_k
        with self._tx(write=False) as c:
            vec_hits = self._vector_search(c, namespace, query, depth, top_k, filt) if mode != "keyword" else []
            kw_ids = self._keyword_search(c, query_text, depth, filt) if mode != "vector" else []
            scores = rrf([mid for mid, _ in vec_hits], kw_ids)
            sims = dict(vec_hits)
            ranked = sorted(scores, key=lambda m: (-scores[m], -sims.get(m, -2.0), m))[:top_k]
            if not ranked:
                return []
            marks = ",".join("?" * len(ranked))
            rows = {r[0]: r for r in c.execute(f"SELECT {_MEMORY_COLS} FROM memories WHERE id IN ({marks})",
                                               ranked)}
            missing = [m for m in ranked if m not in sims]
            if query is not None and missing:
                sims.update(self._rescore(c, missing, query))
        words = set(kw_ids)
        return [Hit(Memory._from_row(rows[m]), scores[m], sims.get(m), m in words) for m in ranked]

    def _vector_search(self, c, namespace: str, query: np.ndarray, n: int, top_k: int,
                       filt: Filter) -> builtins.list[tuple[int, float]]:
        """Up to n nearest memories passing the filter, as (id, cosine), best first.

        The binary prefilter fetches OVERSAMPLE * top_k candidates (at least
        MIN_CANDIDATES); the deeper part of an RRF list (n > top_k) is taken
        from the same rescored candidates rather than paying for more.

        Filters never run after a LIMIT (which would return fewer than k rows):
        - memory_type/source: vec0 metadata columns, checked inside the KNN scan;
        - metadata keys, ≤ EXACT_SCAN_MAX rows in memory_meta: exact float
          cosine over exactly the matching rows;
        - metadata keys, more rows (a broad filter): a KNN of BROAD_OVERFETCH
          times the candidates, keeping the matching ones; these are exactly the
          best-hamming matching rows. If fewer than max(n, half the candidates)
          match, redo the KNN with ``rowid IN (matching ids)``, which sqlite-vec
          applies inside its scan (slower: it sorts and searches the id list).
        """
        k = min(VEC0_K_MAX, max(MIN_CANDIDATES, OVERSAMPLE * top_k, n))
        knn = ("SELECT rowid FROM memory_bits WHERE embedding MATCH vec_quantize_binary(?) AND k = ? "
               f"AND namespace = ?{filt.vec_sql}")
        args = [query.tobytes(), k, namespace, *filt.vec_params]
        if filt.needs_rows:
            # Upper bound from the index alone (any namespace, one key): cheap, and
            # enough to pick the path; each path applies the full filter itself.
            bound = min(c.execute(f"SELECT count(*) FROM memory_meta WHERE key = ? AND value IN "
                                  f"({','.join('?' * len(values))})", (key, *values)).fetchone()[0]
                        for key, values in filt.meta)
            if bound <= EXACT_SCAN_MAX:   # cosine in SQL: no blob crosses into Python
                return [(mid, 1.0 - d) for mid, d in c.execute(
                    "SELECT v.memory_id, vec_distance_cosine(v.embedding, ?) AS d FROM memory_vectors AS v "
                    f"WHERE v.memory_id IN (SELECT m.id FROM memories AS m WHERE {filt.where}) "
                    "ORDER BY d, v.memory_id LIMIT ?", (query.tobytes(), *filt.params, n))]
            args[1] = min(VEC0_K_MAX, BROAD_OVERFETCH * k)
            found = [r[0] for r in c.execute(knn, args)]
            ids = self._matching(c, found, filt)
            if len(ids) < max(n, k // 2) and len(found) == args[1]:
                args[1] = k
                ids = [r[0] for r in c.execute(
                    knn + f" AND rowid IN (SELECT m.id FROM memories AS m WHERE {filt.where})",
                    (*args, *filt.params))]
            return self._rescore(c, ids, query)[:n]
        return self._rescore(c, [r[0] for r in c.execute(knn, args)], query)[:n]

    @staticmethod
    def _matching(c, ids: builtins.list[int], filt: Filter) -> builtins.list[int]:
        """The ids that pass the filter, in their given order."""
        if not ids:
            return []
        ok = {r[0] for r in c.execute(f"SELECT m.id FROM memories AS m WHERE m.id IN "
                                      f"({','.join('?' * len(ids))}) AND {filt.row_check}", (*ids, *filt.row_params))}
        return [i for i in ids if i in ok]

    @staticmethod
    def _rescore(c, ids: builtins.list[int], query: np.ndarray) -> builtins.list[tuple[int, float]]:
        """(id, float cosine) best first, from the stored float32 vectors."""
        if not ids:
            return []
        rows = c.execute(f"SELECT memory_id, embedding FROM memory_vectors WHERE memory_id IN "
                         f"({','.join('?' * len(ids))})", ids).fetchall()
        return cosine_rank([r[0] for r in rows], [r[1] for r in rows], query)

    def _doc_freq(self, c, word: str) -> int:
        """How many memories (all namespaces) contain ``word`` once tokenized like the index."""
        if self._tokenizer is None:
            name, *args = schema.FTS_TOKENIZER.split()
            self._tokenizer = c.fts5_tokenizer(name, args)
        terms = [t[0] for t in self._tokenizer(word.encode(), apsw.FTS5_TOKENIZE_QUERY, None,
                                                include_offsets=False)]
        return sum(c.execute("SELECT coalesce(sum(doc), 0) FROM memory_fts_vocab WHERE term = ?", (t,)).fetchone()[0]
                   for t in terms)

    def _keyword_search(self, c, text: str | None, n: int, filt: Filter) -> builtins.list[int]:
        """The n best BM25 matches passing the filter (filter inside the SQL, before LIMIT).

        FTS5 drives this query, so the filter is the per-row form (``row_check``).
        """
        match = fts_query(text, lambda w: self._doc_freq(c, w))
        if match is None:
            return []
        return [r[0] for r in c.execute(
            "SELECT m.id FROM memory_fts JOIN memories AS m ON m.id = memory_fts.rowid "
            f"WHERE memory_fts MATCH ? AND {filt.row_check} ORDER BY bm25(memory_fts), m.id LIMIT ?",
            (match, *filt.row_params, n))]

    def list(self, namespace: str, *, memory_type: str | None = None, since=None, until=None,
             limit: int = 100, offset: int = 0) -> builtins.list[Memory]:
        """Memories of a namespace, newest first; ``since`` ≤ created_at < ``until``."""
        conditions = [("namespace = ?", namespace)]
        if memory_type is not None:
            conditions.append(("memory_type = ?", memory_type))
        if since is not None:
            conditions.append(("created_at >= ?", as_utc(since, "since")))
        if until is not None:
            conditions.append(("created_at < ?", as_utc(until, "until")))
        where, params = [w for w, _ in conditions], [p for _, p in conditions]
        with self._tx(write=False) as c:
            return [Memory._from_row(r) for r in c.execute(
                f"SELECT {_MEMORY_COLS} FROM memories WHERE {' AND '.join(where)} "
                "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?", (*params, int(limit), int(offset)))]

    def count(self, namespace: str | None = None) -> int:
        """Number of live memories in a namespace, or in the whole file."""
        sql, params = ("SELECT count(*) FROM memories", ()) if namespace is None else \
            ("SELECT count(*) FROM memories WHERE namespace = ?", (namespace,))
        with self._tx(write=False) as c:
            return c.execute(sql, params).fetchone()[0]

    def namespaces(self) -> builtins.list[str]:
        """Namespaces that hold at least one memory, sorted."""
        with self._tx(write=False) as c:
            return [r[0] for r in c.execute("SELECT DISTINCT namespace FROM memories ORDER BY namespace")]

    def export(self, namespace: str) -> builtins.list[dict]:
        """Every memory of a namespace as dicts (oldest first), without vectors."""
        with self._tx(write=False) as c:
            return [Memory._from_row(r).to_dict() for r in c.execute(
                f"SELECT {_MEMORY_COLS} FROM memories WHERE namespace = ? ORDER BY id", (namespace,))]

    # -- history and undo -----------------------------------------------------
    def history(self, namespace: str, memory_id: str | int | None = None, *,
                limit: int = 100) -> builtins.list[HistoryEntry]:
        """Audit trail of a namespace (or one memory), newest first."""
        where, params = "namespace = ?", [namespace]
        if memory_id is not None:
            where, params = where + " AND memory_id = ?", params + [parse_memory_id(memory_id)]
        with self._tx(write=False) as c:
            return [history_from_row(r) for r in c.execute(
                f"SELECT {HISTORY_COLS} FROM history WHERE {where} ORDER BY id DESC LIMIT ?",
                (*params, int(limit)))]

    def undo(self, namespace: str, history_id: int, *, actor: str = "user") -> Memory | None:
        """Revert one change; returns the memory as it is now (None when it no longer exists).

        undo(add) forgets the memory; undo(update) restores the previous text,
        metadata, type and vector; undo(delete) re-inserts it under the same id,
        which needs keep_deleted=True (otherwise the text was forgotten). Only
        the newest not-yet-undone change of a memory can be undone, so undos
        peel changes off in reverse order; an undo itself cannot be undone.
        """
        with self._tx(write=True) as c:
            entry = c.execute(
                "SELECT id, memory_id, op, undone_by, redacted, old_content, old_metadata, old_memory_type, "
                "old_embedding, memory_source, memory_created_at FROM history WHERE id = ? AND namespace = ?",
                (int(history_id), namespace)).fetchone()
            if entry is None:
                raise StoreError(f"no history entry {history_id} in namespace {namespace!r}")
            hid, mid, op, undone_by, redacted, o_content, o_meta, o_type, o_blob, source, created = entry
            if op == "undo":
                raise StoreError(f"history entry {hid} is itself an undo and cannot be undone")
            if undone_by is not None:
                raise StoreError(f"history entry {hid} was already undone (by entry {undone_by})")
            (latest,) = c.execute("SELECT max(id) FROM history WHERE namespace = ? AND memory_id = ? AND "
                                  "op != 'undo' AND undone_by IS NULL", (namespace, mid)).fetchone()
            if latest != hid:
                raise StoreError(f"history entry {hid} is not the latest change of {format_memory_id(mid)}; "
                                 f"undo entry {latest} first")
            if op in ("add", "update") and redacted:   # guard: a forgotten memory has no live entry
                raise StoreError(f"{format_memory_id(mid)} was deleted and forgotten")
            if op == "delete" and (redacted or o_content is None or o_blob is None):
                raise StoreError(
                    f"cannot undo the delete of {format_memory_id(mid)}: deleted memories are forgotten "
                    "(their text is removed from the database); set keep_deleted=True to make deletes undoable")
            now, result = now_utc(), None
            if op == "add":
                undo_id = self._remove(c, self._row(c, namespace, mid), "undo", actor, undoes=hid)
            elif op == "update":
                row = self._row(c, namespace, mid)
                cur_content, cur_meta, cur_type = row[2], row[4], row[3]
                cur_blob = self._unindex(c, mid, cur_content)
                c.execute("UPDATE memories SET content = ?, metadata = ?, memory_type = ?, updated_at = ? "
                          "WHERE id = ?", (o_content, o_meta, o_type, now, mid))
                self._index(c, mid, namespace, o_content, o_type, source, o_meta,
                            np.frombuffer(o_blob, dtype=np.float32))
                undo_id = self._log(c, mid, namespace, "undo", actor, now, source, created, undoes=hid,
                                    old=(cur_content, cur_meta, cur_type, cur_blob), new=(o_content, o_meta, o_type))
                result = Memory(format_memory_id(mid), namespace, o_content, o_type, json.loads(o_meta),
                                source, created, now)
            else:  # delete, restorable because keep_deleted kept the text and vector
                c.execute("INSERT INTO memories(id, namespace, content, memory_type, metadata, source, created_at, "
                          "updated_at) VALUES (?,?,?,?,?,?,?,?)",
                          (mid, namespace, o_content, o_type, o_meta, source, created, now))
                self._index(c, mid, namespace, o_content, o_type, source, o_meta,
                            np.frombuffer(o_blob, dtype=np.float32))
                undo_id = self._log(c, mid, namespace, "undo", actor, now, source, created, undoes=hid,
                                    new=(o_content, o_meta, o_type))
                result = Memory(format_memory_id(mid), namespace, o_content, o_type, json.loads(o_meta),
                                source, created, now)
            c.execute("UPDATE history SET undone_by = ? WHERE id = ?", (undo_id, hid))
        if op == "add":
            self._after_forget()
        return result

    def checkpoint(self) -> None:
        """Copy the WAL into the main file and truncate it (``PRAGMA wal_checkpoint(TRUNCATE)``).

        After this, forgotten text is in neither file. Waits for readers up to
        the busy timeout; StoreError if another connection still blocks it.
        """
        with self._lock:
            if self._conn is None:
                raise StoreError(f"memory store {self.path} is closed")
            try:
                busy, _, _ = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except apsw.Error as e:
                raise StoreError(f"memory database {self.path}: checkpoint failed: {schema.one_line(e)}") from e
            if busy:
                raise StoreError(f"memory database {self.path}: checkpoint incomplete because another "
                                 "connection is using it; deleted text may remain in the -wal file until "
                                 "the next checkpoint")
