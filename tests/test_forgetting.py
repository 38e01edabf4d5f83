"""Forgetting is real: deleted text leaves the database file and its WAL (SPEC §2 Delete_memory).

Each test reads the raw bytes of memory.db and memory.db-wal. Every test also
checks a memory that was NOT deleted is still visible in those bytes, so the
byte search itself is known to work.
"""

from __future__ import annotations

import os

import apsw
import pytest

from agemem_lite.memory.store import MemoryStore

NS = "alice"
GONE = "zebra-quokka-xq7731"        # unicode61 tokens: zebra, quokka, xq7731 (not digits: timestamps hold digits)
KEPT = "walrus-pangolin-5520"


def raw_bytes(path) -> bytes:
    """Everything SQLite keeps on disk for this database (.db and -wal)."""
    out = b""
    for suffix in ("", "-wal"):
        p = f"{path}{suffix}"
        if os.path.exists(p):
            with open(p, "rb") as f:
                out += f.read()
    return out


def fts_terms(path) -> set[str]:
    """Terms in the FTS5 index, read through fts5vocab on a separate connection (temp schema only)."""
    conn = apsw.Connection(str(path))
    conn.execute("CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, memory_fts, row)")
    terms = {r[0] for r in conn.execute("SELECT term FROM temp.vocab")}
    conn.close()
    return terms


def assert_forgotten(path, marker: str, vector: bytes | None = None) -> None:
    data = raw_bytes(path)
    assert marker.encode() not in data
    for token in ("quokka", "xq7731") if marker == GONE else ():
        assert token.encode() not in data, token
        assert token not in fts_terms(path), token
    if vector is not None:
        assert vector[:64] not in data


def assert_present(path, marker: str) -> None:
    assert marker.encode() in raw_bytes(path)


@pytest.fixture
def filled(store_path, unit_vectors):
    """A store with the marker memory, a kept memory and some filler; committed to the .db file."""
    v = unit_vectors(12)
    s = MemoryStore(store_path)
    gone = s.add(NS, f"My locker code is {GONE}", v[0], metadata={"note": f"meta {GONE}"})
    s.add(NS, f"My bike lock is {KEPT}", v[1])
    for i in range(10):
        s.add(NS, f"filler memory {i} about gardening", v[2 + i])
    s.checkpoint()
    assert_present(store_path, GONE)                 # positive control: the bytes are there first
    assert {"quokka", "xq7731"} <= fts_terms(store_path)
    (stored,) = s._conn.execute("SELECT embedding FROM memory_vectors WHERE memory_id = 1").fetchone()
    yield s, gone, stored
    s.close()


def test_delete_removes_text_tokens_metadata_and_vector_from_db_and_wal(filled, store_path):
    s, gone, vec = filled
    assert vec[:64] in raw_bytes(store_path)
    s.delete(NS, gone.id)
    s.checkpoint()
    assert_forgotten(store_path, GONE, vec)
    assert_present(store_path, KEPT)
    assert os.path.getsize(f"{store_path}-wal") == 0


def test_delete_redacts_history_but_keeps_the_audit_trail(filled):
    s, gone, _ = filled
    s.delete(NS, gone.id, actor="user")
    entries = s.history(NS, gone.id)
    assert [(e.op, e.actor) for e in entries] == [("delete", "user"), ("add", "agent")]
    assert all(e.redacted and e.old_content is None and e.new_content is None
               and e.new_metadata is None for e in entries)


def test_update_keeps_old_text_for_undo_until_the_memory_is_deleted(filled, store_path, unit_vectors):
    s, gone, _ = filled
    s.update(NS, gone.id, "My locker code changed to tapir-1234", unit_vectors(1, seed=3)[0])
    s.checkpoint()
    assert s.history(NS, gone.id)[0].old_content == f"My locker code is {GONE}"
    assert_present(store_path, GONE)                 # needed for undo while the memory lives
    s.delete(NS, gone.id)
    s.checkpoint()
    assert_forgotten(store_path, GONE)
    assert_forgotten(store_path, "tapir-1234")
    assert_present(store_path, KEPT)


def test_undo_of_add_forgets_like_a_delete(filled, store_path):
    s, gone, vec = filled
    add = s.history(NS, gone.id)[-1]
    assert add.op == "add"
    assert s.undo(NS, add.id) is None
    s.checkpoint()
    assert_forgotten(store_path, GONE, vec)
    assert_present(store_path, KEPT)


def test_delete_flushes_the_wal_without_an_explicit_checkpoint(filled, store_path):
    s, gone, _ = filled
    s.delete(NS, gone.id)
    assert_forgotten(store_path, GONE)


def test_text_stays_in_wal_while_a_reader_blocks_the_checkpoint_then_leaves(filled, store_path):
    """A concurrent reader pins old WAL frames; checkpoint() after it leaves removes them."""
    s, gone, _ = filled
    s.update(NS, gone.id, "replacement text", s._vector([1.0] * 384))   # old text now in WAL frames
    reader = apsw.Connection(str(store_path))
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM memories").fetchall()           # holds a snapshot
    s.delete(NS, gone.id)                                                # its checkpoint cannot finish
    assert GONE.encode() in raw_bytes(store_path)
    reader.execute("COMMIT")
    reader.close()
    s.checkpoint()
    assert_forgotten(store_path, GONE)
    assert_present(store_path, KEPT)


def test_keep_deleted_keeps_text_so_the_delete_can_be_undone(store_path, unit_vectors):
    """The documented opposite setting: text remains, on purpose."""
    with MemoryStore(store_path, keep_deleted=True) as s:
        m = s.add(NS, f"kept on purpose {GONE}", unit_vectors(1)[0])
        s.delete(NS, m.id)
        s.checkpoint()
        assert_present(store_path, GONE)
        assert s.history(NS, m.id)[0].old_content == f"kept on purpose {GONE}"


def test_long_memory_in_overflow_pages_is_forgotten_too(store_path, unit_vectors):
    """Text longer than a page lives in overflow pages; freeing them must zero them as well."""
    v = unit_vectors(2)
    with MemoryStore(store_path) as s:
        long_text = " ".join(f"{GONE} paragraph {i} of a long diary entry" for i in range(400))   # ~20 kB
        m = s.add(NS, long_text, v[0])
        s.add(NS, f"short note {KEPT}", v[1])
        s.checkpoint()
        assert raw_bytes(store_path).count(GONE.encode()) >= 400
        s.delete(NS, m.id)
        s.checkpoint()
        assert_forgotten(store_path, GONE)
        assert_present(store_path, KEPT)
