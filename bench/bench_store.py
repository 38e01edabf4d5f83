"""Benchmark MemoryStore: insert throughput, retrieval latency, recall of the quantised search.

Not a test. Run from the repo root:

    python bench/bench_store.py --sizes 1000 10000 100000 --queries 200

Vectors are synthetic but shaped like all-MiniLM-L6-v2 sentence embeddings
measured here (20k template sentences): mean pairwise cosine ~0.15, a shared
mean direction, topic clusters, and queries at cosine ~0.78 to the memory they
paraphrase. Texts share topic words with their vector's topic, so BM25 and
vectors agree about as often as with real notes. Latencies exclude the query
embedding; if agemem_lite.embed is importable and its model can be loaded, the
embedding time of the query text is reported as well.

recall@k compares ids with the exact float top-k (among the rows the filter
keeps). When the best matches are near-ties (a filter that excludes every
memory related to the query), ids are a harsh measure, so the table also gives
the sum of returned cosines over the exact top-k's sum.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agemem_lite.memory.store import MemoryStore, parse_memory_id  # noqa: E402

NS = "bench"
TYPES = ["fact", "preference", "event", "note"]
TYPE_P = [0.5, 0.2, 0.2, 0.1]


def make_corpus(n: int, dim: int, rng: np.random.Generator):
    """n (text, unit vector, memory_type, metadata) rows; ~50 memories per topic."""
    n_topics = max(4, n // 50)
    mean = rng.standard_normal(dim)
    mean /= np.linalg.norm(mean)
    centres = rng.standard_normal((n_topics, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    topic = rng.integers(0, n_topics, n)
    noise = rng.standard_normal((n, dim)) / np.sqrt(dim)
    # |0.39·mean|² + |0.59·centre|² + |0.71·noise|² ≈ 0.15 + 0.35 + 0.5: cross-topic cosine ≈ 0.15
    vecs = 0.39 * mean + 0.59 * centres[topic] + 0.71 * noise
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)

    syllables = ["ka", "lo", "mi", "ren", "to", "sa", "vi", "dor", "pe", "lu", "ga", "nes", "ti", "bo", "ra", "ul"]
    vocab = sorted({"".join(rng.choice(syllables, rng.integers(2, 4))) for _ in range(6000)})
    zipf = 1.0 / np.arange(1, len(vocab) + 1)
    zipf /= zipf.sum()
    topic_words = rng.choice(len(vocab), (n_topics, 4))
    texts = []
    for i in range(n):
        words = [vocab[w] for w in rng.choice(len(vocab), rng.integers(5, 11), p=zipf)]
        words += [vocab[w] for w in rng.choice(topic_words[topic[i]], 2)]
        rng.shuffle(words)
        texts.append(f"{' '.join(words)} #{i}")
    types = rng.choice(TYPES, n, p=TYPE_P)
    metas = [{"tags": [f"topic{topic[i]}"], "shard": int(i % 2)} for i in range(n)]
    return texts, vecs, list(types), metas, topic


def make_queries(texts, vecs, q: int, rng: np.random.Generator):
    """Paraphrase-like queries: cosine ~0.78 to a random target, a few of its words."""
    targets = rng.integers(0, len(texts), q)
    noise = rng.standard_normal((q, vecs.shape[1])).astype(np.float32)
    noise *= 0.8 / np.linalg.norm(noise, axis=1, keepdims=True)
    qv = vecs[targets] + noise
    qv /= np.linalg.norm(qv, axis=1, keepdims=True)
    qt = []
    for t in targets:
        words = texts[t].split()[:-1]
        qt.append("what about " + " ".join(rng.choice(words, min(3, len(words)), replace=False)) + "?")
    return targets, qv.astype(np.float32), qt


def timed(fn, args_list) -> list[float]:
    out = []
    for args in args_list:
        t0 = time.perf_counter()
        fn(*args)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def pct(xs, p):
    return float(np.percentile(xs, p))


def load_embedder():
    """The project's LlamaEmbedder if it can be imported and loaded, else (None, reason)."""
    try:
        from agemem_lite.config import Settings
        from agemem_lite.embed import load_embedder as load
        return load(Settings.load()), ""
    except Exception as e:   # optional column: any failure just skips it
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}"


def bench_size(n: int, args, folder: str, embedder) -> tuple[dict, list[tuple]]:
    rng = np.random.default_rng(args.seed)
    texts, vecs, types, metas, topic = make_corpus(n, args.dim, rng)
    targets, qv, qt = make_queries(texts, vecs, args.queries, rng)
    path = os.path.join(folder, f"bench_{n}.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    store = MemoryStore(path, dim=args.dim)

    # add(): one transaction (and one fsync, synchronous=FULL) per memory, as the agent does.
    n_single = min(n, args.single_adds)
    t0 = time.perf_counter()
    for i in range(n_single):
        store.add(NS, texts[i], vecs[i], memory_type=types[i], metadata=metas[i])
    single_rate = n_single / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for start in range(n_single, n, 1000):
        end = min(n, start + 1000)
        for t in sorted(set(types[start:end])):   # add_many takes one memory_type per call
            idx = [i for i in range(start, end) if types[i] == t]
            store.add_many(NS, [texts[i] for i in idx], vecs[idx], memory_type=t, metadata=[metas[i] for i in idx])
    bulk_rate = (n - n_single) / (time.perf_counter() - t0) if n > n_single else float("nan")
    store.checkpoint()

    # ids are not in corpus order after add_many's per-type split: map them back
    id_of = np.zeros(n, dtype=np.int64)
    for m in store.list(NS, limit=n + 1):
        id_of[int(m.content.rsplit("#", 1)[1])] = parse_memory_id(m.id)
    k = args.top_k

    def exact(qvec, mask=None):
        """Exact float top-k ids and the sum of their cosines."""
        sims = vecs @ qvec
        if mask is not None:
            sims = np.where(mask, sims, -np.inf)
        top = np.argsort(-sims)[:k]
        return set(id_of[top].tolist()), float(sims[top].sum())

    rows = []
    in_tags = [f"topic{t}" for t in range(60)]
    # name -> (filter for query i, mask of the corpus rows it matches, for exact recall)
    filters = {
        "none": (lambda i: None, None),
        "memory_type (20%)": (lambda i: {"memory_type": "preference"}, np.array(types) == "preference"),
        "JSON tag (~50 rows)": (lambda i: {"tags": f"topic{topic[targets[i]]}"}, None),
        "JSON tags (~3k rows)": (lambda i: {"tags": in_tags}, topic < 60),
        "JSON shard (50%)": (lambda i: {"shard": 1}, np.arange(n) % 2 == 1),
    }
    for fname, (make_filter, mask) in filters.items():
        for mode in ("vector", "hybrid"):
            hits_of = []

            def run(i, _f=make_filter, _mode=mode, _h=hits_of):
                _h.append(store.search(NS, qt[i], qv[i], top_k=k, metadata_filter=_f(i), mode=_mode))

            ms = timed(run, [(i,) for i in range(args.queries)])
            rec = ratio = ""
            if mode == "vector":
                got, ratios = [], []
                for i, hs in enumerate(hits_of):
                    m = (topic == topic[targets[i]]) if fname.startswith("JSON tag (") else mask
                    ids, best = exact(qv[i], m)
                    got.append(len({parse_memory_id(h.memory.id) for h in hs} & ids) / k)
                    ratios.append(sum(h.similarity for h in hs) / best)
                rec, ratio = f"{np.mean(got):.3f}", f"{np.mean(ratios):.3f}"
            rows.append((n, mode, fname, pct(ms, 50), pct(ms, 95), rec, ratio))
    if embedder is not None:
        embedder.embed_one(qt[0])   # warm-up
        ms = timed(lambda text: embedder.embed_one(text), [(t,) for t in qt[:50]])
        rows.append((n, "embed query", "-", pct(ms, 50), pct(ms, 95), "", ""))
    size_mb = os.path.getsize(path) / 1e6
    store.close()
    os.remove(path)
    return {"n": n, "add": single_rate, "bulk": bulk_rate, "mb": size_mb}, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--single-adds", type=int, default=1000,
                    help="how many memories to insert with add() (timed); the rest use add_many")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", default=None, help="folder for the database files (default: a temp dir)")
    ap.add_argument("--no-embedder", action="store_true", help="skip the query-embedding column")
    args = ap.parse_args()

    embedder, why = (None, "--no-embedder") if args.no_embedder else load_embedder()
    print(f"cores: {os.cpu_count()}  top_k={args.top_k}  queries={args.queries}  "
          f"query embedding: {'LlamaEmbedder' if embedder else 'skipped (' + why + ')'}")
    summaries, rows = [], []
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        for n in args.sizes:
            s, r = bench_size(n, args, folder, embedder)
            summaries.append(s)
            rows += r
            print(f"  done N={n}", file=sys.stderr)

    print("\n| N | add() rows/s (1 tx + fsync each) | add_many rows/s | file MB |")
    print("|---:|---:|---:|---:|")
    for s in summaries:
        print(f"| {s['n']:,} | {s['add']:,.0f} | {s['bulk']:,.0f} | {s['mb']:.1f} |")
    print(f"\n| N | search | filter | p50 ms | p95 ms | recall@{args.top_k} vs exact float | cosine sum vs exact |")
    print("|---:|---|---|---:|---:|---:|---:|")
    for n, mode, fname, p50, p95, rec, ratio in rows:
        print(f"| {n:,} | {mode} | {fname} | {p50:.2f} | {p95:.2f} | {rec} | {ratio} |")


if __name__ == "__main__":
    main()
