"""The memory database: connection settings, DDL and ordered migrations (SPEC §1).

``store.py`` is the only module that reads or writes memories; this module only
opens the file, applies the schema and refuses files it cannot trust. Later
features (chat sessions, ...) add a function to ``MIGRATIONS``; never edit one
that has shipped, because ``PRAGMA user_version`` records how far a file got.
"""

from __future__ import annotations

import os
from typing import Callable

import apsw

from ..errors import StoreError

#: Wait this long for another process's write lock before giving up.
BUSY_TIMEOUT_MS = 5000

PRAGMAS = (
    "PRAGMA journal_mode=WAL",    # readers never block the writer (TUI + agent)
    "PRAGMA foreign_keys=ON",
    "PRAGMA secure_delete=ON",    # zero freed cells/pages: deleted text leaves the file
)

# Default synchronous=FULL: in WAL mode NORMAL already survives a killed
# process (tests/test_crash_safety.py), but its last commits may be lost on
# power failure. A memory the assistant said it stored should survive a laptop
# losing power, and writes are rare (about two per turn, SPEC §7 tool counts),
# so one fsync per commit (~1-2 ms) is invisible next to the LLM. Throwaway
# stores (training rollouts, tests of logic) may choose NORMAL.
SYNCHRONOUS = ("FULL", "NORMAL")


#: FTS5 tokenizer of memory_fts: English stemming, case- and accent-insensitive.
FTS_TOKENIZER = "porter unicode61 remove_diacritics 2"


def _v1(conn: apsw.Connection, dim: int) -> None:
    """Memories, their vectors, keyword index and audit history."""
    conn.execute(f"""
        CREATE TABLE store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO store_info VALUES ('dim', '{dim}');

        -- The only place memory text lives (not in vec0 auxiliary columns, not
        -- in an FTS5 content table): deleting this row forgets it.
        CREATE TABLE memories (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: 'mem_12' stays unambiguous
            namespace   TEXT NOT NULL,
            content     TEXT NOT NULL,
            memory_type TEXT NOT NULL,
            metadata    TEXT NOT NULL CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
            source      TEXT NOT NULL,
            created_at  TEXT NOT NULL,
            updated_at  TEXT NOT NULL
        );
        CREATE INDEX memories_by_time ON memories(namespace, created_at, id);
        CREATE INDEX memories_by_type ON memories(namespace, memory_type);

        -- Metadata filter index (SPEC §2 metadata_filter): one row per top-level
        -- scalar value, or per scalar element of a top-level array, so a filter
        -- is an index lookup instead of json_each over every row.
        CREATE TABLE memory_meta (
            memory_id INTEGER NOT NULL REFERENCES memories(id) ON DELETE CASCADE,
            key       TEXT NOT NULL,
            value     ANY NOT NULL
        );
        CREATE INDEX memory_meta_lookup ON memory_meta(key, value, memory_id);
        CREATE INDEX memory_meta_owner ON memory_meta(memory_id, key, value);

        -- Unit-norm float32 vectors, for exact rescoring of the binary prefilter.
        CREATE TABLE memory_vectors (
            memory_id INTEGER PRIMARY KEY REFERENCES memories(id) ON DELETE CASCADE,
            embedding BLOB NOT NULL
        );

        -- Sign bits of each vector; namespace is the partition key so a search
        -- scans one user's chunks only; memory_type/source are vec0 metadata
        -- columns so those filters run inside the KNN scan.
        CREATE VIRTUAL TABLE memory_bits USING vec0(
            namespace TEXT PARTITION KEY,
            memory_type TEXT,
            source TEXT,
            embedding bit[{dim}]
        );

        -- External-content FTS5: the index only, the text stays in memories.
        CREATE VIRTUAL TABLE memory_fts USING fts5(
            content, content='memories', content_rowid='id',
            tokenize='{FTS_TOKENIZER}'
        );
        -- Deleting a row removes its tokens from the index now, not at the next merge.
        INSERT INTO memory_fts(memory_fts, rank) VALUES ('secure-delete', 1);
        -- Document frequency per term (no storage of its own), to prune costly query terms.
        CREATE VIRTUAL TABLE memory_fts_vocab USING fts5vocab(memory_fts, row);

        -- One row per add/update/delete/undo. No foreign key to memories: the
        -- audit trail outlives a deleted memory (its text is redacted).
        CREATE TABLE history (
            id                INTEGER PRIMARY KEY AUTOINCREMENT,
            memory_id         INTEGER NOT NULL,
            namespace         TEXT NOT NULL,
            op                TEXT NOT NULL CHECK (op IN ('add', 'update', 'delete', 'undo')),
            actor             TEXT NOT NULL,
            at                TEXT NOT NULL,
            old_content       TEXT,
            new_content       TEXT,
            old_metadata      TEXT,
            new_metadata      TEXT,
            old_memory_type   TEXT,
            new_memory_type   TEXT,
            old_embedding     BLOB,   -- so undoing an update restores the vector too
            memory_source     TEXT NOT NULL,
            memory_created_at TEXT NOT NULL,
            undoes            INTEGER REFERENCES history(id),
            undone_by         INTEGER REFERENCES history(id),
            redacted          INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX history_by_memory ON history(namespace, memory_id, id);
        CREATE INDEX history_by_namespace ON history(namespace, id);
    """)


def _v2(conn: apsw.Connection, dim: int) -> None:
    """Chat sessions (the TUI's conversations), kept beside the memories they shaped.

    ``context`` is the conversation part of the agent's context (JSON list of
    messages) so a resumed session continues exactly where it stopped;
    ``seen_ids`` are the memory ids shown in it (the tools accept only those).
    ``session_turns`` is the visible transcript, including cancelled turns.
    Deleting a session cascades to its turns; secure_delete zeroes the text.
    """
    conn.execute("""
        CREATE TABLE sessions (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            name       TEXT NOT NULL,
            namespace  TEXT NOT NULL,
            policy     TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            context    TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(context)),
            seen_ids   TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(seen_ids))
        );
        CREATE INDEX sessions_by_time ON sessions(namespace, updated_at);

        CREATE TABLE session_turns (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            user       TEXT NOT NULL,
            answer     TEXT,
            operations TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(operations)),
            policy     TEXT NOT NULL,
            cancelled  INTEGER NOT NULL DEFAULT 0,
            at         TEXT NOT NULL
        );
        CREATE INDEX session_turns_by_session ON session_turns(session_id, id);
    """)


#: Migration i (1-based) takes a file from user_version i-1 to i.
MIGRATIONS: list[Callable[[apsw.Connection, int], None]] = [_v1, _v2]


def schema_version() -> int:
    """The user_version this code writes (read at call time so tests can extend MIGRATIONS)."""
    return len(MIGRATIONS)


def one_line(e: BaseException) -> str:
    """An apsw error as one readable line, without the exception class noise."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text.removeprefix(f"{type(e).__name__}: ")


def _create_private(path: str) -> None:
    """Create the file with mode 0600 before SQLite does (SQLite would use 0644).

    SQLite gives -wal and -shm the permissions of the main file, so they end up
    0600 too. An existing file keeps whatever mode its owner gave it.
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _migrate(conn: apsw.Connection, dim: int, label: str) -> None:
    """Apply pending migrations, each in its own write transaction.

    user_version is read inside BEGIN IMMEDIATE so two processes opening a new
    file at once cannot both run the same migration.
    """
    target = schema_version()
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > target:
                raise StoreError(
                    f"{label} has schema version {version} but this agemem-lite only knows up to "
                    f"{target}: it was written by a newer version; upgrade agemem-lite to open it")
            if version == target:
                conn.execute("COMMIT")
                break
            MIGRATIONS[version](conn, dim)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    stored = conn.execute("SELECT value FROM store_info WHERE key = 'dim'").fetchone()
    if stored is None or int(stored[0]) != dim:
        raise StoreError(
            f"{label} holds {stored[0] if stored else '?'}-d embeddings but dim={dim} was requested; "
            "open it with the embedder it was built with, or use a new database file")


def connect(path: str | os.PathLike, dim: int, synchronous: str = "FULL") -> apsw.Connection:
    """Open (creating if needed) a memory database with sqlite-vec loaded and the schema current.

    Any failure (not a database, corrupt, locked, newer schema, wrong dim)
    becomes one ``StoreError`` line that names the file.
    """
    import sqlite_vec

    if synchronous not in SYNCHRONOUS:
        raise ValueError(f"synchronous={synchronous!r}: expected one of {', '.join(SYNCHRONOUS)}")

    target = os.fspath(path)
    label = "in-memory database" if target == ":memory:" else target
    conn = None
    try:
        if target != ":memory:":
            _create_private(target)
        conn = apsw.Connection(target)
        conn.setbusytimeout(BUSY_TIMEOUT_MS)
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
        conn.enable_load_extension(False)
        for pragma in (*PRAGMAS, f"PRAGMA synchronous={synchronous}"):
            conn.execute(pragma).fetchall()
        _migrate(conn, dim, label)
        return conn
    except StoreError:
        if conn is not None:
            conn.close()
        raise
    except (apsw.Error, OSError) as e:
        if conn is not None:
            conn.close()
        hint = ""
        if isinstance(e, (apsw.NotADBError, apsw.CorruptError)):
            hint = "it is not a SQLite database or it is corrupt; move it aside to start a new one: "
        elif isinstance(e, apsw.BusyError):
            hint = "another process holds the write lock: "
        raise StoreError(f"cannot open memory database {label}: {hint}{one_line(e)}") from None
