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
