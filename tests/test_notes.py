"""Chunking of notes for import."""

import pytest

from agemem_lite.notes import chunk_text


def test_chunks_follow_headings_and_keep_them():
    chunks = chunk_text("intro line\n\n# A\n\npara a1\n\npara a2\n\n## B\n\npara b")
    assert [(c.heading, c.text) for c in chunks] == [("", "intro line"), ("A", "para a1\n\npara a2"), ("B", "para b")]


def test_long_paragraph_is_split_under_the_limit_without_losing_words():
    words = [f"word{i}." for i in range(400)]
    chunks = chunk_text(" ".join(words), max_chars=300)
    assert all(len(c.text) <= 300 for c in chunks)
    assert " ".join(c.text for c in chunks).split() == words


def test_tiny_chunk_limit_is_rejected():
    with pytest.raises(ValueError):
        chunk_text("x", max_chars=10)
