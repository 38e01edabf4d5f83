"""The torch-free embedder: our BERT->GGUF converter run by llama.cpp.

The agreement test compares with the reference implementation
(sentence-transformers on the same folder); it needs the ``dev`` extra and is
skipped without it. Everything else runs on the runtime dependencies only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agemem_lite import model_files as mf
from agemem_lite.config import Settings
from agemem_lite.embed import Embedder, LlamaEmbedder, convert_bert_to_gguf, load_embedder
from agemem_lite.errors import ModelFileError
from models.registry import DEFAULT_EMBEDDER, REGISTRY

SOURCE = REGISTRY[DEFAULT_EMBEDDER].source

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
    "hello",
    "What's the capital of Australia?  It's Canberra, not Sydney!",
    "UPPER lower MiXeD case, tabs\tand\nnewlines.",
    "The quick brown fox jumps over the lazy dog. " * 40,  # past the 256-token window
]


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return mf.package_file(SOURCE.package, f"{SOURCE.folder}/config.json").parent


@pytest.fixture(scope="module")
def gguf_path(model_dir, tmp_path_factory) -> Path:
    return convert_bert_to_gguf(model_dir, tmp_path_factory.mktemp("embed") / "minilm.gguf")


@pytest.fixture(scope="module")
def embedder(gguf_path):
    emb = LlamaEmbedder(gguf_path, n_threads=2)
    yield emb
    emb.close()


def test_embeddings_match_sentence_transformers(embedder, model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    pytest.importorskip("torch")
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(model_dir), device="cpu").encode(SENTENCES, normalize_embeddings=True)
    ours = embedder.embed(SENTENCES)
    cosines = (ours * reference).sum(axis=1)
    assert cosines.min() >= 0.99, dict(zip(SENTENCES, cosines.round(4)))


def test_tokens_match_the_hugging_face_tokenizer(embedder, model_dir):
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    for text in SENTENCES[:-1]:
        assert embedder.tokenize(text) == tok.encode(text).ids, text


def test_paraphrase_is_closer_than_an_unrelated_sentence(embedder):
    a, para, other = embedder.embed([
        "My sister was born on the third of March.",
        "My sister's birthday is March 3rd.",
        "The stock market fell sharply on Tuesday.",
    ])
    assert float(a @ para) > float(a @ other) + 0.3


def test_vectors_are_unit_float32_rows(embedder):
    assert isinstance(embedder, Embedder)
    vecs = embedder.embed(["one", "two", ""])
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)
    one = embedder.embed_one("one")
    # Alone vs in a batch with "": llama.cpp sums in another order. On an AMD EPYC the
    # components differed by up to 1.2e-4 (cosine 0.9999998); without "" by 7e-9.
    assert one.shape == (384,) and float(one @ vecs[0]) > 0.9999


def test_batching_does_not_change_results(embedder):
    many = [f"note {i}: the meeting moved to room {i * 7}" for i in range(60)]
    together = embedder.embed(many)
    alone = np.stack([embedder.embed_one(t) for t in many[:5]])
    assert np.allclose(together[:5], alone, atol=1e-4)


def test_long_text_is_truncated_not_an_error(embedder):
    long = "memory " * 5000
    ids = embedder.tokenize(long)
    assert len(ids) == embedder.max_tokens == 256
    assert (ids[0], ids[-1]) == (101, 102)  # [CLS] ... [SEP] survive the cut
    vecs = embedder.embed([long, "short", long + " tail"])
    assert vecs.shape == (3, 384) and np.isfinite(vecs).all()
    assert np.allclose(vecs[0], vecs[2], atol=1e-4)  # beyond the window nothing counts


def test_importing_embed_does_not_import_torch():
    code = "import sys, agemem_lite.embed, agemem_lite.model_files; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], check=True)
    assert out.stdout.strip() == "False"


def test_conversion_is_byte_deterministic(model_dir, gguf_path, tmp_path):
    again = convert_bert_to_gguf(model_dir, tmp_path / "again.gguf")
    assert again.read_bytes() == gguf_path.read_bytes()
    info = mf.check_gguf(again)
    assert info.metadata["bert.pooling_type"] == 1 and info.metadata["bert.attention.causal"] is False
    assert info.metadata["tokenizer.ggml.model"] == "bert"


def test_converter_refuses_a_non_bert_config(model_dir, tmp_path):
    src = tmp_path / "roberta"
    shutil.copytree(model_dir, src, ignore=shutil.ignore_patterns("*.safetensors"))
    cfg = json.loads((src / "config.json").read_text())
    cfg["model_type"] = "roberta"
    (src / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match="model_type='roberta'"):
        convert_bert_to_gguf(src, tmp_path / "out.gguf")
    assert not list(tmp_path.glob("out.gguf*"))


def test_load_embedder_pulls_the_registry_model(tmp_path):
    settings = Settings(data_dir=tmp_path)
    seen = []
    with load_embedder(settings, progress=lambda d, t: seen.append(d)) as emb:
        assert emb.dim == 384 and seen
        assert emb.path == settings.models_dir / REGISTRY[DEFAULT_EMBEDDER].filename
    assert os.path.exists(emb.path)
