"""Shared fixtures: real parts only (STYLE §9)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def store_path(tmp_path):
    """Path of a not-yet-created memory database in a fresh temporary folder."""
    return tmp_path / "memory.db"


@pytest.fixture
def store(store_path):
    """A real MemoryStore (SQLite + sqlite-vec file), 384-d, closed after the test."""
    from agemem_lite.memory.store import MemoryStore

    s = MemoryStore(store_path, dim=384)
    yield s
    s.close()


@pytest.fixture
def unit_vectors():
    """Factory of deterministic unit-norm float32 vectors: ``unit_vectors(n, dim=384, seed=0)``."""

    def make(n: int, dim: int = 384, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        v = rng.standard_normal((n, dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    return make


# -- session fixtures: the real models, resolved once into a temporary data dir ----------

@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A temporary data directory shared by the whole session (models are resolved into it)."""
    return tmp_path_factory.mktemp("agemem-data")


@pytest.fixture(scope="session")
def settings(data_dir):
    """Settings on ``data_dir``: the small test policy, two llama.cpp threads (2-core machines)."""
    from agemem_lite.config import Settings

    return Settings.load(data_dir, policy="smollm2-135m", n_threads=2)


@pytest.fixture(scope="session")
def embedder(settings):
    """The real all-MiniLM-L6-v2 GGUF embedder (converted into ``data_dir`` once per session)."""
    from agemem_lite.embed import LlamaEmbedder
    from agemem_lite.model_files import resolve

    emb = LlamaEmbedder(resolve(settings, "minilm-l6-v2"), n_threads=settings.n_threads or None)
    yield emb
    emb.close()


@pytest.fixture(scope="session")
def small_policy(settings):
    """SmolLM2-135M as a LlamaPolicy, built exactly as ``assistant.open_policy`` builds it."""
    from agemem_lite.assistant import open_policy

    policy = open_policy(settings, "smollm2-135m")
    yield policy
    policy.close()


@pytest.fixture
def chat_factory(embedder, settings, tmp_path):
    """Factory of ChatSessions on a fresh store in ``tmp_path``: ``chat_factory(policy, **settings)``.

    The policy may be a scripted one (deterministic control flow) or the real
    ``small_policy``. Sessions built here are not closed by the app (their
    session-scoped models outlive the test); the store is closed at teardown.
    """
    import dataclasses

    from agemem_lite.agent import Agent
    from agemem_lite.assistant import Assistant
    from agemem_lite.chat import ChatSession
    from agemem_lite.memory.store import MemoryStore

    stores = []

    def make(policy, **overrides):
        s = dataclasses.replace(settings, data_dir=tmp_path, **overrides)
        store = MemoryStore(tmp_path / "memory.db")
        stores.append(store)
        agent = Agent(policy, store, embedder, s, today="2025-01-01",
                      demonstrations=overrides.get("guided", False))
        return ChatSession(Assistant(agent, policy, embedder, store), s)

    yield make
    for st in stores:
        st.close()
