"""Embedder benchmark: conversion time, ms per sentence, agreement with the reference.

Run: python bench/bench_embed.py [--threads N]
Agreement needs the dev extra (torch + sentence-transformers); it is skipped without.
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

from agemem_lite import model_files as mf  # noqa: E402
from agemem_lite.embed import LlamaEmbedder, convert_bert_to_gguf  # noqa: E402
from models.registry import DEFAULT_EMBEDDER, REGISTRY  # noqa: E402

SENTENCES = [
    "My sister's birthday is on March 3rd.",
    "I moved from Berlin to Lisbon last spring.",
    "The meeting with the landlord is at 10 am on Friday.",
    "Please remind me to water the tomato plants every evening.",
    "I'm allergic to peanuts and shellfish.",
    "Café naïve résumé: accents should not change much.",
    "東京で寿司を食べた。",
    "def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)",
    "Prices rose 3.5% in Q2, to $1,204.99 per unit.",
    "What's the capital of Australia?  It's Canberra, not Sydney!",
    "UPPER lower MiXeD case, tabs\tand\nnewlines.",
    "The quick brown fox jumps over the lazy dog. " * 40,
]


def per_sentence_ms(fn, texts, repeats: int) -> float:
    fn(texts[:2])  # warm up
    start = time.perf_counter()
    for _ in range(repeats):
        fn(texts)
    return (time.perf_counter() - start) / (repeats * len(texts)) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    src = REGISTRY[DEFAULT_EMBEDDER].source
    folder = mf.package_file(src.package, f"{src.folder}/config.json").parent
    reference = None
    try:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(str(folder), device="cpu")
        reference = st.encode(SENTENCES, normalize_embeddings=True)
        st_ms = per_sentence_ms(lambda t: st.encode(t, batch_size=32), SENTENCES[:-1], args.repeats)
        print(f"sentence-transformers (torch): {st_ms:.2f} ms/sentence batched")
    except ImportError:
        print("sentence-transformers not installed: agreement skipped")
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("f16", "f32"):
            start = time.perf_counter()
            path = convert_bert_to_gguf(folder, Path(tmp) / f"m.{dtype}.gguf", dtype=dtype)
            conv_s = time.perf_counter() - start
            with LlamaEmbedder(path, n_threads=args.threads) as emb:
                batched = per_sentence_ms(emb.embed, SENTENCES[:-1], args.repeats)
                single = per_sentence_ms(lambda t: [emb.embed_one(x) for x in t], SENTENCES[:-1], args.repeats)
                line = (f"{dtype}: {path.stat().st_size / 1e6:.1f} MB, convert {conv_s:.2f} s, "
                        f"{batched:.2f} ms/sentence batched, {single:.2f} ms one at a time")
                if reference is not None:
                    cos = (emb.embed(SENTENCES) * reference).sum(axis=1)
                    line += f", cosine vs sentence-transformers min {cos.min():.5f} mean {np.mean(cos):.5f}"
                print(line)


if __name__ == "__main__":
    main()
