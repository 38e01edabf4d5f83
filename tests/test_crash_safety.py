"""A writer killed with SIGKILL mid-stream leaves a sound database holding every acknowledged op."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import apsw
import pytest
import sqlite_vec

from agemem_lite.memory.store import MemoryStore

REPO = Path(__file__).resolve().parents[1]

# Prints "DO <json>" before an op and "ACK <json>" after its commit, forever.
WRITER = textwrap.dedent("""
    import json, random, sys
    import numpy as np
    from agemem_lite.memory.store import MemoryStore

    path, seed = sys.argv[1], int(sys.argv[2])
    rnd, rng = random.Random(seed), np.random.default_rng(seed)
    store = MemoryStore(path, dim=16)
    live = []
    for i in range(10**9):
        kind = "add" if len(live) < 5 else rnd.choice(["add", "add", "update", "delete"])
        op = {"i": i, "kind": kind, "content": f"content {i} " + "x" * rnd.randint(0, 3000)}
        if kind != "add":
            op["id"] = rnd.choice(live)
        print("DO " + json.dumps(op), flush=True)
        vec = rng.standard_normal(16).astype("float32")
        if kind == "add":
            op["id"] = store.add("ns", op["content"], vec).id
            live.append(op["id"])
        elif kind == "update":
            store.update("ns", op["id"], op["content"], vec)
        else:
            store.delete("ns", op["id"])
            live.remove(op["id"])
        print("ACK " + json.dumps(op), flush=True)
""")


def apply(model: dict, op: dict) -> None:
    if op["kind"] == "delete":
        model.pop(op["id"], None)
    else:
        model[op["id"]] = op["content"]


@pytest.mark.parametrize("seed,kill_after", [(1, 60), (2, 150)])
def test_sigkill_mid_stream_keeps_database_sound_and_acked_ops(tmp_path, seed, kill_after):
    path = tmp_path / "memory.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(seed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if sum(ln.startswith("ACK") for ln in lines) >= kill_after:
                os.kill(proc.pid, signal.SIGKILL)   # the writer is already running further ops
                break
        lines += proc.stdout.readlines()            # whatever it printed before it died counts too
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()

    ops = [(tag, json.loads(payload)) for tag, _, payload in (ln.partition(" ") for ln in lines)]
    acked = [op for tag, op in ops if tag == "ACK"]
    in_flight = ops[-1][1] if ops and ops[-1][0] == "DO" else None
    assert len(acked) >= kill_after

    conn = apsw.Connection(str(path))
    conn.enable_load_extension(True)
    conn.load_extension(sqlite_vec.loadable_path())
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.execute("INSERT INTO memory_fts(memory_fts, rank) VALUES ('integrity-check', 1)")
    # One transaction per op: no memory without its vectors, and the other way round.
    counts = conn.execute("SELECT (SELECT count(*) FROM memories), (SELECT count(*) FROM memory_vectors), "
                          "(SELECT count(*) FROM memory_bits)").fetchone()
    assert len(set(counts)) == 1, counts
    orphans = conn.execute("SELECT count(*) FROM memories AS m WHERE m.content IS NOT (SELECT new_content "
                           "FROM history AS h WHERE h.memory_id = m.id ORDER BY h.id DESC LIMIT 1)").fetchone()[0]
    assert orphans == 0
    conn.close()

    model: dict = {}
    for op in acked:
        apply(model, op)
    candidates = [model]
    if in_flight is not None:   # killed inside this op: it may or may not have committed
        if in_flight["kind"] == "add":   # ids are never reused, so it got the next one
            in_flight["id"] = f"mem_{1 + max(int(op['id'][4:]) for op in acked if op['kind'] == 'add')}"
        after = dict(model)
        apply(after, in_flight)
        candidates.append(after)
    with MemoryStore(path, dim=16) as s:
        found = {m.id: m.content for m in s.list("ns", limit=10**6)}
        assert s.count() == len(found)
    assert found in candidates
