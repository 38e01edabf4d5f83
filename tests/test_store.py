"""MemoryStore behaviour on real SQLite + sqlite-vec files (SPEC §1-2)."""

from __future__ import annotations

import os
import stat
import tempfile

import apsw
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agemem_lite.errors import MemoryNotFound, StoreError
from agemem_lite.memory import schema, store as store_mod
from agemem_lite.memory.search import RRF_K, fts_query
from agemem_lite.memory.store import MemoryStore, parse_memory_id

NS = "alice"


def with_cosine(v: np.ndarray, cos: float, seed: int = 1) -> np.ndarray:
    """A unit vector whose cosine with unit vector v is exactly ``cos``."""
    u = np.random.default_rng(seed).standard_normal(v.shape).astype(np.float32)
    u -= (u @ v) * v
    u /= np.linalg.norm(u)
    return (cos * v + np.sqrt(1 - cos * cos) * u).astype(np.float32)


# -- ids and CRUD -----------------------------------------------------------------
@pytest.mark.parametrize("value", ["mem_12", "12", 12, " mem_12 ", "MEM_12", np.int64(12)])
def test_parse_memory_id_accepts_forms_a_small_model_writes(value):
    assert parse_memory_id(value) == 12


@pytest.mark.parametrize("value", ["mem_", "mem_1.5", "memory 12", "12 13", "", "mem_-3", 0, -1, True, 1.0, None])
def test_parse_memory_id_rejects_everything_else(value):
    with pytest.raises(ValueError, match="memory id"):
        parse_memory_id(value)


def test_add_returns_short_id_and_get_roundtrips(store, unit_vectors):
    v = unit_vectors(1)[0]
    m = store.add(NS, "Alice is allergic to peanuts", v, memory_type="preference",
                  metadata={"tags": ["health"]}, source="user")
    assert m.id == "mem_1"
    got = store.get(NS, "mem_1")
    assert got == m
    assert got.to_dict()["metadata"] == {"tags": ["health"]}
    assert got.created_at.endswith("Z") and got.created_at == got.updated_at


def test_ids_are_never_reused_after_delete(store, unit_vectors):
    v = unit_vectors(3)
    a = store.add(NS, "one", v[0])
    store.delete(NS, a.id)
    b = store.add(NS, "two", v[1])
    assert b.id == "mem_2"
    with pytest.raises(MemoryNotFound):
        store.get(NS, a.id)


def test_get_unknown_or_foreign_id_raises_memory_not_found(store, unit_vectors):
    m = store.add(NS, "secret of alice", unit_vectors(1)[0])
    with pytest.raises(MemoryNotFound, match="mem_99"):
        store.get(NS, "mem_99")
    with pytest.raises(MemoryNotFound):
        store.get("bob", m.id)
    with pytest.raises(MemoryNotFound):
        store.update("bob", m.id, "hijack", unit_vectors(1)[0])
    with pytest.raises(MemoryNotFound):
        store.delete("bob", m.id)
    assert store.get(NS, m.id).content == "secret of alice"


def test_namespaces_are_isolated_in_one_file(store, unit_vectors):
    v = unit_vectors(4)
    store.add(NS, "alice likes tea", v[0])
    store.add("bob", "bob likes tea", v[0])
    store.add("bob", "bob likes coffee", v[1])
    assert store.namespaces() == ["alice", "bob"]
    assert store.count(NS) == 1 and store.count("bob") == 2 and store.count() == 3
    for mode in ("hybrid", "vector", "keyword"):
        hits = store.search(NS, "likes tea coffee", v[0], top_k=5, mode=mode)
        assert [h.memory.content for h in hits] == ["alice likes tea"]
    assert [m.content for m in store.list("bob")] == ["bob likes coffee", "bob likes tea"]
    assert store.history(NS)[0].new_content == "alice likes tea" and len(store.history(NS)) == 1


def test_update_replaces_content_vector_and_stamps_time(store, unit_vectors):
    v = unit_vectors(2)
    m = store.add(NS, "Alice lives in Paris", v[0], metadata={"k": 1})
    u = store.update(NS, m.id, "Alice lives in Lisbon", v[1])
    assert u.content == "Alice lives in Lisbon" and u.metadata == {"k": 1}   # metadata=None keeps it
    assert u.updated_at > m.updated_at and u.created_at == m.created_at
    hit = store.search(NS, None, v[1], mode="vector")[0]
    assert hit.memory.id == m.id and hit.similarity == pytest.approx(1.0, abs=1e-5)
    assert store.search(NS, "Paris", None, mode="keyword") == []
    u2 = store.update(NS, m.id, "Alice lives in Porto", v[1], metadata={"k": 2}, memory_type="event")
    assert (u2.metadata, u2.memory_type) == ({"k": 2}, "event")
    assert store.get(NS, m.id) == u2


def test_delete_returns_the_memory_and_removes_it_from_search(store, unit_vectors):
    v = unit_vectors(2)
    m = store.add(NS, "the wifi password is hunter2", v[0])
    gone = store.delete(NS, "mem_1")
    assert gone == m
    assert store.count(NS) == 0
    assert store.search(NS, "wifi password", v[0]) == []


@pytest.mark.parametrize("bad", [np.zeros(384), np.full(384, np.nan), np.ones(383), np.ones((1, 384)), "text"])
def test_bad_embeddings_are_rejected_with_value_error(store, bad):
    with pytest.raises(ValueError, match="embedding"):
        store.add(NS, "x", bad)


def test_embeddings_are_normalised_defensively(store, unit_vectors):
    v = unit_vectors(1)[0]
    store.add(NS, "scaled", v * 37.5)
    assert store.search(NS, None, v, mode="vector")[0].similarity == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("kwargs", [{"metadata": ["not", "a", "dict"]}, {"metadata": {"x": object()}},
                                    {"memory_type": ""}, {"metadata": {"x": float("nan")}}])
def test_bad_arguments_are_rejected(store, unit_vectors, kwargs):
    with pytest.raises(ValueError):
        store.add(NS, "x", unit_vectors(1)[0], **kwargs)
    with pytest.raises(ValueError):
        store.add(NS, "   ", unit_vectors(1)[0])
    assert store.count() == 0


def test_list_is_newest_first_with_type_and_time_filters(store, unit_vectors):
    v = unit_vectors(3)
    a = store.add(NS, "first", v[0], memory_type="event")
    b = store.add(NS, "second", v[1])
    c = store.add(NS, "third", v[2], memory_type="event")
    assert [m.id for m in store.list(NS)] == [c.id, b.id, a.id]
    assert [m.id for m in store.list(NS, memory_type="event")] == [c.id, a.id]
    assert [m.id for m in store.list(NS, since=b.created_at)] == [c.id, b.id]
    assert [m.id for m in store.list(NS, until=b.created_at)] == [a.id]
    assert [m.id for m in store.list(NS, limit=1, offset=1)] == [b.id]
    assert store.list(NS, since="2999-01-01") == []


def test_export_lists_memories_with_metadata_and_no_vectors(store, unit_vectors):
    v = unit_vectors(2)
    store.add(NS, "a", v[0], metadata={"tags": ["x"]})
    store.add("bob", "b", v[1])
    exported = store.export(NS)
    assert exported == [store.get(NS, "mem_1").to_dict()]
    assert set(exported[0]) == {"id", "namespace", "content", "memory_type", "metadata", "source",
                                "created_at", "updated_at"}


def test_add_many_is_one_transaction(store, unit_vectors):
    v = unit_vectors(3)
    with pytest.raises(ValueError):
        store.add_many(NS, ["ok", "ok", ""], v)
    assert store.count() == 0
    ms = store.add_many(NS, ["a", "b", "c"], v, metadata=[{"i": 0}, None, {"i": 2}])
    assert [m.id for m in ms] == ["mem_1", "mem_2", "mem_3"] and store.count(NS) == 3


# -- history and undo ---------------------------------------------------------------
def test_history_records_every_op_with_actor_and_old_new(store, unit_vectors):
    v = unit_vectors(2)
    m = store.add(NS, "v1", v[0], metadata={"a": 1}, actor="user")
    store.update(NS, m.id, "v2", v[1], metadata={"a": 2})
    store.add(NS, "other", v[1])
    h = store.history(NS, m.id)
    assert [(e.op, e.actor) for e in h] == [("update", "agent"), ("add", "user")]
    assert (h[0].old_content, h[0].new_content, h[0].old_metadata, h[0].new_metadata) == ("v1", "v2", {"a": 1}, {"a": 2})
    assert (h[1].old_content, h[1].new_content) == (None, "v1")
    assert h[0].memory_id == m.id and not h[0].undone and not h[0].redacted
    assert len(store.history(NS)) == 3 and len(store.history(NS, limit=1)) == 1


def test_undo_add_forgets_the_memory(store, unit_vectors):
    m = store.add(NS, "added by mistake", unit_vectors(1)[0])
    assert store.undo(NS, store.history(NS, m.id)[0].id) is None
    assert store.count(NS) == 0
    undo, add = store.history(NS, m.id)
    assert (undo.op, undo.actor, undo.undoes, add.undone) == ("undo", "user", add.id, True)


def test_undo_update_restores_content_metadata_type_and_vector(store, unit_vectors):
    v = unit_vectors(2)
    m = store.add(NS, "Alice lives in Paris", v[0], metadata={"city": "Paris"})
    store.update(NS, m.id, "Alice lives in Lisbon", v[1], metadata={"city": "Lisbon"}, memory_type="event")
    restored = store.undo(NS, store.history(NS, m.id)[0].id)
    assert (restored.content, restored.metadata, restored.memory_type) == ("Alice lives in Paris", {"city": "Paris"}, "fact")
    assert store.get(NS, m.id) == restored
    hit = store.search(NS, None, v[0], mode="vector")[0]
    assert hit.memory.id == m.id and hit.similarity == pytest.approx(1.0, abs=1e-5)
    assert [h.memory.id for h in store.search(NS, "Paris", None, mode="keyword")] == [m.id]
    assert store.search(NS, "Lisbon", None, mode="keyword") == []


def test_undo_delete_is_refused_when_deleted_memories_are_forgotten(store, unit_vectors):
    m = store.add(NS, "gone for good", unit_vectors(1)[0])
    store.delete(NS, m.id)
    with pytest.raises(StoreError, match="keep_deleted"):
        store.undo(NS, store.history(NS, m.id)[0].id)


def test_undo_delete_with_keep_deleted_reinserts_same_id_text_and_vector(store_path, unit_vectors):
    v = unit_vectors(2)
    with MemoryStore(store_path, keep_deleted=True) as s:
        m = s.add(NS, "Bob's birthday is 3 May", v[0], metadata={"who": "bob"}, source="user")
        s.add(NS, "filler", v[1])
        s.delete(NS, m.id)
        back = s.undo(NS, s.history(NS, m.id)[0].id)
        assert (back.id, back.content, back.metadata, back.source, back.created_at) == \
            (m.id, m.content, m.metadata, "user", m.created_at)
        assert s.search(NS, None, v[0], top_k=1, mode="vector")[0].memory.id == m.id
        assert s.search(NS, "birthday", None, mode="keyword")[0].memory.id == m.id


def test_undo_rules_twice_undo_of_undo_and_order(store, unit_vectors):
    v = unit_vectors(3)
    m = store.add(NS, "v1", v[0])
    store.update(NS, m.id, "v2", v[1])
    store.update(NS, m.id, "v3", v[2])
    upd3, upd2, add = store.history(NS, m.id)
    with pytest.raises(StoreError, match=f"undo entry {upd3.id} first"):
        store.undo(NS, upd2.id)
    assert store.undo(NS, upd3.id).content == "v2"
    with pytest.raises(StoreError, match="already undone"):
        store.undo(NS, upd3.id)
    undo_entry = store.history(NS, m.id)[0]
    with pytest.raises(StoreError, match="itself an undo"):
        store.undo(NS, undo_entry.id)
    assert store.undo(NS, upd2.id).content == "v1"    # peel changes off in reverse order
    with pytest.raises(StoreError, match="no history entry"):
        store.undo("bob", add.id)
    assert store.undo(NS, add.id) is None and store.count() == 0


# -- search -------------------------------------------------------------------------
def _filter_corpus(store, unit_vectors, n=200, matching=5):
    """n memories; the ``matching`` least similar to the query carry the filterable marks."""
    q = unit_vectors(1, seed=99)[0]
    cosines = np.linspace(0.95, -0.2, n)
    vecs = [with_cosine(q, float(cos), seed=1000 + i) for i, cos in enumerate(cosines)]
    texts = [f"note {i} about the garden" for i in range(n)]
    common = n - matching
    store.add_many(NS, texts[:common], vecs[:common], memory_type="fact", source="agent",
                   metadata=[{"tags": ["x"], "i": i} for i in range(common)])
    store.add_many(NS, texts[common:], vecs[common:], memory_type="rare", source="import",
                   metadata=[{"tags": ["x", "rare"], "i": i} for i in range(common, n)])
    return q, [f"mem_{i + 1}" for i in range(n - matching, n)]


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
@pytest.mark.parametrize("filt", [{"memory_type": "rare"}, {"tags": "rare"}, {"source": "import"},
                                  {"tags": ["nope", "rare"], "memory_type": ["rare", "fact"]}])
@pytest.mark.parametrize("exact_max", [store_mod.EXACT_SCAN_MAX, 0])
def test_filter_matching_only_least_similar_rows_still_returns_k(store, unit_vectors, monkeypatch,
                                                                  mode, filt, exact_max):
    """A post-filter after KNN would find none of them; the store must return exactly k, best first."""
    monkeypatch.setattr(store_mod, "EXACT_SCAN_MAX", exact_max)   # 0 forces vec0 `rowid IN (...)`
    q, rare_ids = _filter_corpus(store, unit_vectors)
    hits = store.search(NS, "garden", q, top_k=3, metadata_filter=filt, mode=mode)
    assert len(hits) == 3
    assert {h.memory.id for h in hits} <= set(rare_ids)
    if mode == "vector":   # the 3 most similar among the 5 matches, in order
        assert [h.memory.id for h in hits] == rare_ids[:3]
    assert len(store.search(NS, "garden", q, top_k=10, metadata_filter=filt, mode=mode)) == 5


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
@pytest.mark.parametrize("overfetch", [store_mod.BROAD_OVERFETCH, 1000])
def test_broad_metadata_filter_returns_k_matching_rows(store, unit_vectors, monkeypatch, mode, overfetch):
    """More matches than EXACT_SCAN_MAX: the over-fetched KNN (or its rowid IN fallback) still gives k."""
    monkeypatch.setattr(store_mod, "EXACT_SCAN_MAX", 10)
    monkeypatch.setattr(store_mod, "BROAD_OVERFETCH", overfetch)
    q = unit_vectors(1, seed=99)[0]
    n = 120
    store.add_many(NS, [f"note {i}" for i in range(n)],
                   [with_cosine(q, float(c), seed=1000 + i) for i, c in enumerate(np.linspace(0.9, 0.0, n))],
                   metadata=[{"parity": i % 2} for i in range(n)])
    for parity in (0, 1):
        hits = store.search(NS, "note", q, top_k=5, metadata_filter={"parity": parity}, mode=mode)
        assert len(hits) == 5 and all(h.memory.metadata["parity"] == parity for h in hits)
    hits = store.search(NS, "note", q, top_k=5, metadata_filter={"parity": [0, 1]}, mode="vector")
    assert [h.memory.id for h in hits][0] == "mem_1"


def test_filter_list_value_means_any_of_and_arrays_match_elements(store, unit_vectors):
    v = unit_vectors(4)
    store.add(NS, "a", v[0], metadata={"tags": ["work", "urgent"], "year": 2024})
    store.add(NS, "b", v[1], metadata={"tags": "home", "year": 2025, "done": True})
    store.add(NS, "c", v[2], metadata={"project": "work"})

    def ids(f):
        return sorted(h.memory.content for h in store.search(NS, None, v[3], top_k=10, metadata_filter=f, mode="vector"))

    assert ids({"tags": "work"}) == ["a"]
    assert ids({"tags": ["home", "urgent"]}) == ["a", "b"]
    assert ids({"year": 2025}) == ["b"] and ids({"done": True}) == ["b"]
    assert ids({"tags": "work", "year": 2025}) == []
    assert ids({"missing": "x"}) == []


@pytest.mark.parametrize("filt", [{"tags": []}, {"tags": {"a": 1}}, {"tags": None}, {"": 1}, ["tags"]])
def test_bad_metadata_filter_is_a_value_error(store, unit_vectors, filt):
    with pytest.raises(ValueError, match="metadata_filter"):
        store.search(NS, "x", unit_vectors(1)[0], metadata_filter=filt)


def test_hybrid_surfaces_both_a_keyword_only_and_a_vector_only_match(store, unit_vectors):
    q = unit_vectors(1, seed=5)[0]
    store.add(NS, "The spare key is under the blue flowerpot", with_cosine(q, 0.0, seed=1))   # words only
    store.add(NS, "Where things are kept in the house", with_cosine(q, 0.9, seed=2))          # meaning only
    for i in range(30):
        store.add(NS, f"unrelated note number {i}", with_cosine(q, 0.3, seed=10 + i))
    hits = store.search(NS, "flowerpot key", q, top_k=3)
    contents = [h.memory.content for h in hits]
    assert "The spare key is under the blue flowerpot" in contents
    assert "Where things are kept in the house" in contents
    assert all(h.similarity is not None for h in hits)
    vector_only = store.search(NS, "flowerpot key", q, top_k=3, mode="vector")
    assert "The spare key is under the blue flowerpot" not in [h.memory.content for h in vector_only]
    # Hit.keyword: the BM25 list found it (a shared word), whatever its cosine
    assert {h.memory.content: h.keyword for h in hits}["The spare key is under the blue flowerpot"] is True
    assert {h.memory.content: h.keyword for h in hits}["Where things are kept in the house"] is False
    assert not any(h.keyword for h in vector_only)


def test_rrf_puts_a_memory_found_by_both_lists_first(store, unit_vectors):
    q = unit_vectors(1, seed=7)[0]
    store.add(NS, "best vector match, no shared words", with_cosine(q, 0.95, seed=1))
    both = store.add(NS, "pelican sighting at the lake", with_cosine(q, 0.8, seed=2))
    store.add(NS, "pelican pelican pelican", with_cosine(q, -0.1, seed=3))  # keyword #1, not in vector list
    for i in range(12):
        store.add(NS, f"filler {i}", with_cosine(q, 0.5, seed=10 + i))
    hits = store.search(NS, "pelican", q, top_k=3)
    assert hits[0].memory.id == both.id
    # rank 2 in the vector list + rank 2 in the keyword list
    assert hits[0].score == pytest.approx(2 / (RRF_K + 2))
    assert [round(h.score, 6) for h in hits] == sorted((round(h.score, 6) for h in hits), reverse=True)


@pytest.mark.parametrize("query", ['what\'s "x" OR (', "NEAR(a b", "col:value*", "AND", '"', "^-+*:",
                                   "don't stop", "émile's café?", "mem_12"])
def test_keyword_search_with_fts_syntax_in_the_query_never_raises(store, unit_vectors, query):
    store.add(NS, "Émile's café opens at 8; don't be late", unit_vectors(1)[0])
    store.add(NS, "x marks the spot", unit_vectors(2)[1])
    store.search(NS, query, unit_vectors(1)[0])
    store.search(NS, query, None, mode="keyword")


def test_keyword_search_finds_words_despite_punctuation_and_diacritics(store, unit_vectors):
    m = store.add(NS, "Émile's café opens at 8", unit_vectors(1)[0])
    assert fts_query('what\'s "x" OR (') == '"x"'
    assert [h.memory.id for h in store.search(NS, "emile cafe?!", None, mode="keyword")] == [m.id]
    assert store.search(NS, "!!! ???", None, mode="keyword") == []


def test_keyword_query_drops_costly_common_words_but_keeps_the_rarest():
    df = {"coffee": 50_000, "alice": 40_000, "espresso": 300, "tuesday": 2_000}.get
    assert fts_query("Alice's espresso coffee on Tuesday", df, budget=10_000) == '"espresso" OR "tuesday"'
    assert fts_query("coffee alice", df, budget=10_000) == '"alice"'
    assert fts_query("coffee alice", None) == '"coffee" OR "alice"'


def test_search_validates_mode_and_top_k(store, unit_vectors):
    v = unit_vectors(1)[0]
    assert store.search(NS, "anything", v) == []
    with pytest.raises(ValueError, match="mode"):
        store.search(NS, "x", v, mode="fuzzy")
    with pytest.raises(ValueError, match="top_k"):
        store.search(NS, "x", v, top_k=0)
    with pytest.raises(ValueError, match="query_embedding"):
        store.search(NS, "x", None, mode="vector")


# -- the file ---------------------------------------------------------------------
def test_new_file_has_current_schema_version_and_pragmas(store, store_path):
    conn = apsw.Connection(str(store_path))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.schema_version() >= 1
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    own = store._conn
    assert own.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert own.execute("PRAGMA secure_delete").fetchone()[0] == 1
    assert own.execute("PRAGMA synchronous").fetchone()[0] == 2   # FULL
    with MemoryStore(store_path, synchronous="NORMAL") as fast:
        assert fast._conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    with pytest.raises(ValueError, match="synchronous"):
        MemoryStore(store_path, synchronous="OFF")


def test_pending_migrations_run_in_order_on_open(store_path, monkeypatch):
    MemoryStore(store_path).close()
    ran = []

    base = schema.schema_version()

    def v2(conn, dim):
        ran.append(2)
        conn.execute("CREATE TABLE chat_sessions (id INTEGER PRIMARY KEY)")

    def v3(conn, dim):
        ran.append(3)
        conn.execute("ALTER TABLE chat_sessions ADD COLUMN title TEXT")

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, v2, v3])
    with MemoryStore(store_path) as s:
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == base + 2
        assert [r[1] for r in s._conn.execute("PRAGMA table_info(chat_sessions)")] == ["id", "title"]
    MemoryStore(store_path).close()
    assert ran == [2, 3]


def test_failed_migration_leaves_the_file_at_the_previous_version(store_path, monkeypatch):
    MemoryStore(store_path).close()
    base = schema.schema_version()

    def broken(conn, dim):
        conn.execute("CREATE TABLE half_done (x)")
        conn.execute("THIS IS NOT SQL")

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, broken])
    with pytest.raises(StoreError):
        MemoryStore(store_path)
    conn = apsw.Connection(str(store_path))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == base
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half_done'").fetchone()[0] == 0


def test_database_from_a_newer_version_is_refused(store_path):
    MemoryStore(store_path).close()
    conn = apsw.Connection(str(store_path))
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(StoreError, match="newer version"):
        MemoryStore(store_path)


def test_database_built_for_another_dim_is_refused(store_path):
    MemoryStore(store_path, dim=384).close()
    with pytest.raises(StoreError, match="384-d"):
        MemoryStore(store_path, dim=768)


@pytest.mark.parametrize("payload", [b"hello, this is a text file\n" * 100, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_corrupt_or_foreign_file_gives_one_line_store_error(store_path, payload):
    store_path.write_bytes(payload)
    with pytest.raises(StoreError) as e:
        MemoryStore(store_path)
    msg = str(e.value)
    assert "\n" not in msg and str(store_path) in msg and "not a SQLite database or it is corrupt" in msg
    assert e.value.__cause__ is None and e.value.__suppress_context__


def test_database_files_are_created_private(store, store_path, unit_vectors):
    store.add(NS, "private", unit_vectors(1)[0])
    for suffix in ("", "-wal", "-shm"):
        p = f"{store_path}{suffix}"
        assert os.path.exists(p), p
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p


def test_a_second_connection_sees_committed_writes(store, store_path, unit_vectors):
    v = unit_vectors(1)[0]
    with MemoryStore(store_path) as other:
        m = store.add(NS, "seen by both", v)
        assert other.get(NS, m.id).content == "seen by both"
        other.delete(NS, m.id)
    assert store.count() == 0


def test_threads_sharing_one_store_get_distinct_ids(store, unit_vectors):
    import threading

    v = unit_vectors(80)
    made: list[str] = []

    def worker(t):
        for i in range(20):
            made.append(store.add(NS, f"thread {t} note {i}", v[t * 20 + i]).id)
            store.search(NS, "note", v[i], top_k=2)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 80 and store.count(NS) == 80


def test_closed_store_raises_store_error(store_path):
    s = MemoryStore(store_path)
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.count()


# -- property: the store behaves like a dict ---------------------------------------------
_ops = st.lists(st.one_of(
    st.tuples(st.just("add"), st.sampled_from(["a", "b"]), st.text(min_size=1, max_size=12).filter(str.strip)),
    st.tuples(st.just("update"), st.integers(0, 30), st.text(min_size=1, max_size=12).filter(str.strip)),
    st.tuples(st.just("delete"), st.integers(0, 30), st.none()),
    st.tuples(st.just("undo"), st.none(), st.none()),
), max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_ops, keep_deleted=st.booleans())
def test_random_operation_sequences_match_a_dict_model(ops, keep_deleted):
    rng = np.random.default_rng(0)
    dim = 16
    model: dict[str, tuple[str, str]] = {}     # id -> (namespace, content)
    # synchronous=NORMAL: this checks logic, not power-loss durability; it saves ~1000 fsyncs.
    with tempfile.TemporaryDirectory() as d, MemoryStore(os.path.join(d, "m.db"), dim=dim,
                                                         keep_deleted=keep_deleted, synchronous="NORMAL") as s:
        undo_stack: list[tuple[str, str, tuple | None]] = []   # (namespace, id, state before)
        for op, arg, text in ops:
            vec = rng.standard_normal(dim).astype(np.float32)
            live = sorted(model, key=parse_memory_id)
            if op == "add":
                m = s.add(arg, text, vec)
                model[m.id] = (arg, text)
                undo_stack.append((arg, m.id, None))
            elif op in ("update", "delete") and live:
                mid = live[arg % len(live)]
                ns = model[mid][0]
                before = model[mid]
                if op == "update":
                    s.update(ns, mid, text, vec)
                    model[mid] = (ns, text)
                else:
                    assert s.delete(ns, mid).content == before[1]
                    del model[mid]
                undo_stack.append((ns, mid, before))
            elif op == "undo" and undo_stack:
                ns, mid, before = undo_stack.pop()
                entry = next(e for e in s.history(ns, mid) if e.op != "undo" and not e.undone)
                if entry.op == "delete" and not keep_deleted:
                    with pytest.raises(StoreError, match="keep_deleted"):
                        s.undo(ns, entry.id)
                    undo_stack.clear()   # older entries of that memory are redacted too
                    continue
                s.undo(ns, entry.id)
                if before is None:
                    del model[mid]
                else:
                    model[mid] = before
            for ns in ("a", "b"):
                assert {m.id: (m.namespace, m.content) for m in s.list(ns, limit=1000)} == \
                    {k: v for k, v in model.items() if v[0] == ns}
        assert s.count() == len(model)
        for mid, (ns, content) in model.items():
            assert s.get(ns, mid).content == content
        conn = s._conn
        assert conn.execute("SELECT count(*) FROM memory_vectors").fetchone()[0] == len(model)
        assert conn.execute("SELECT count(*) FROM memory_bits").fetchone()[0] == len(model)
        conn.execute("INSERT INTO memory_fts(memory_fts, rank) VALUES ('integrity-check', 1)")
