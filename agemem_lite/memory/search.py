"""Pure helpers for MemoryStore.search: filter SQL, FTS5 query text, cosine ranking, RRF.

Kept apart from store.py so each piece can be read (and tested) without a
database; store.py still runs every statement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

#: Reciprocal-rank fusion constant: score(d) = Σ_lists 1 / (RRF_K + rank_d), ranks from 1.
#: 60 is the value of Cormack et al. (2009), also used by Basic Memory and most hybrid stores;
#: it keeps one list's #1 from drowning a document that both lists rank moderately high.
RRF_K = 60

#: Filter keys that are columns of ``memories`` (and vec0 metadata columns); any
#: other key is looked up in the metadata JSON object.
COLUMN_KEYS = ("memory_type", "source")

_SCALARS = (str, int, float, bool)

# Words that match nearly every memory; dropping them keeps BM25 lists short
# and fast at 100k rows. Kept when a query has nothing else.
_STOPWORDS = frozenset("""
a an and are as at be but by did do does for from had has have he her his how i if in is it
its me my of on or our she so that the their them they this to was we were what when where
which who whom why will with you your s t d
""".split())
_MAX_TERMS = 32
#: Words a search phrase may hold without naming anything to look for ("all", "the user",
#: "memories"). With the stopwords and memory ids they make a query that ``names_nothing``.
_GENERIC_WORDS = frozenset("""
all any anything everything something nothing every each some memory memories mem user users
person info information detail details data fact facts stuff thing things know known remember
remembered stored saved about please tell show list find search retrieve query lookup look up
pasted text note notes message messages conversation earlier previous
can could would should ve ll re m told tell said say mentioned shared far yet
""".split())
#: How many memories, newest first, stand in for a search whose text names nothing ("what do you
#: know about me?"): there is nothing to rank by, and the user asks for what is stored.
OVERVIEW_K = 8
#: Postings BM25 may score per keyword query (~0.5 µs each): keeps the keyword
#: half of a hybrid search to a few ms at 100k memories (bench/bench_store.py).
KEYWORD_DOC_BUDGET = 10_000


@dataclass
class Filter:
    """A validated metadata_filter as SQL over ``memories m`` plus vec0 constraints.

    ``where``/``params`` select the namespace and every condition, written so
    the planner starts from memory_meta's index; ``row_check``/``row_params``
    are the same test for a few given rows (per-row lookups); ``vec_sql``/
    ``vec_params`` are the column conditions expressed on the vec0 table;
    ``needs_rows`` says whether some condition can only be checked on ``memories``
    (a metadata key, listed in ``meta``).
    """

    where: str
    params: list
    vec_sql: str = ""
    vec_params: list = field(default_factory=list)
    needs_rows: bool = False
    row_check: str = ""
    row_params: list = field(default_factory=list)
    meta: list = field(default_factory=list)   # [(key, values)] of the metadata-key conditions


def _values(key: str, value) -> list:
    """A filter value as a non-empty list of SQL scalars (a list means 'any of')."""
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise ValueError(f"metadata_filter[{key!r}] is an empty list: it could match nothing")
    for v in values:
        if not isinstance(v, _SCALARS):
            raise ValueError(f"metadata_filter[{key!r}] = {v!r}: values must be strings, numbers, "
                             "booleans or a list of those")
    return [int(v) if isinstance(v, bool) else v for v in values]


def build_filter(namespace: str, metadata_filter: dict | None) -> Filter:
    """Translate ``{"memory_type": "fact", "tags": ["a", "b"]}`` into SQL.

    ``memory_type``/``source`` match columns; another key matches the metadata
    value at that top-level key, and when that value is a JSON array, any of its
    elements (so ``{"tags": "work"}`` finds ``{"tags": ["work", "home"]}``).
    """
    if metadata_filter is None:
        metadata_filter = {}
    if not isinstance(metadata_filter, dict):
        raise ValueError(f"metadata_filter must be an object, got {type(metadata_filter).__name__}")
    columns, column_params = [("namespace", "= ?")], [namespace]
    json_where, json_params, json_check = [], [], []
    f = Filter("", [])
    for key, value in sorted(metadata_filter.items()):
        if not isinstance(key, str) or not key:
            raise ValueError(f"metadata_filter key {key!r}: must be a non-empty string")
        values = _values(key, value)
        marks = ", ".join("?" * len(values))
        if key in COLUMN_KEYS:
            columns.append((key, f"IN ({marks})"))
            column_params += values
            f.vec_sql += f" AND {key} IN ({marks})"
            f.vec_params += values
        else:
            # memory_meta holds each scalar (or array element) under its key.
            json_where.append(f"m.id IN (SELECT memory_id FROM memory_meta WHERE key = ? AND value IN ({marks}))")
            json_check.append(f"EXISTS (SELECT 1 FROM memory_meta AS mm WHERE mm.memory_id = m.id AND mm.key = ? "
                              f"AND +mm.value IN ({marks}))")   # + : one range scan, not a seek per value
            json_params += [key, *values]
            f.meta.append((key, values))
    f.needs_rows = bool(json_where)
    # With metadata keys, unary + hides the columns from the planner so it drives
    # the query from memory_meta's index (the matching ids) instead of scanning
    # the namespace and probing the id list: ~1 ms instead of ~8 ms at 100k rows.
    plus = "+" if f.needs_rows else ""
    f.where = " AND ".join([f"{plus}m.{col} {test}" for col, test in columns] + json_where)
    f.params = column_params + json_params
    f.row_check = " AND ".join([f"m.{col} {test}" for col, test in columns] + json_check)
    f.row_params = f.params
    return f


def meta_rows(metadata: dict) -> list[tuple[str, object]]:
    """(key, value) rows of memory_meta: top-level scalars and scalar elements of top-level arrays."""
    rows = []
    for key, value in metadata.items():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, _SCALARS):
                rows.append((key, int(v) if isinstance(v, bool) else v))
    return rows


def fts_query(text: str | None, doc_freq: Callable[[str], int] | None = None,
              budget: int = KEYWORD_DOC_BUDGET) -> str | None:
    """Turn free user text into a safe FTS5 query: quoted terms joined by OR.

    Every term is a double-quoted string, so FTS5 syntax in the text (quotes,
    parentheses, AND/OR/NOT/NEAR, ``col:``, ``*``) is just words. None when the
    text has no words at all.

    BM25 must score every row any OR-ed term matches, and a term found in a
    large share of memories adds almost nothing to BM25 (its IDF is near 0) but
    most of the cost. With ``doc_freq`` (documents per word), words are taken
    rarest first until their document counts exceed ``budget``; the rarest word
    is always kept.
    """
    if not text:
        return None
    words = list(dict.fromkeys(re.findall(r"\w+", text.lower())))
    kept = [w for w in words if w not in _STOPWORDS] or words
    kept = kept[:_MAX_TERMS]
    if not kept:
        return None
    if doc_freq is not None and len(kept) > 1:
        cost = {w: doc_freq(w) for w in kept}
        chosen, total = [], 0
        for w in sorted(kept, key=lambda w: cost[w]):
            if chosen and total + cost[w] > budget:
                break
            chosen.append(w)
            total += cost[w]
        kept = [w for w in kept if w in chosen]
    return " OR ".join(f'"{w}"' for w in kept)


def names_nothing(query: str) -> bool:
    """True when a search phrase has no word beyond stopwords, generic words and memory ids.

    Measured on the shipped policy in chat: with the answer shown right above, it sometimes
    searches for "all", "the user", "the pasted fact" or "mem_13", which find nothing past the
    similarity floor, and it then tells the user it was never told (``tools.retrieve_memory``
    searches the user's message instead)."""
    words = re.findall(r"\w+", query.lower())
    return not any(w not in _STOPWORDS and w not in _GENERIC_WORDS and not re.fullmatch(r"mem_?\d+", w)
                   for w in words)


def cosine_rank(ids: list[int], blobs: list[bytes], query: np.ndarray) -> list[tuple[int, float]]:
    """(id, cosine) best first; stored vectors and the query are unit norm, so cosine = dot."""
    if not ids:
        return []
    matrix = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), -1)
    sims = matrix @ query
    order = sorted(range(len(ids)), key=lambda i: (-sims[i], ids[i]))
    return [(ids[i], float(sims[i])) for i in order]


def rrf(*ranked: list[int], k: int = RRF_K) -> dict[int, float]:
    """Reciprocal-rank fusion of ranked id lists (best first)."""
    scores: dict[int, float] = {}
    for ids in ranked:
        for rank, mid in enumerate(ids, start=1):
            scores[mid] = scores.get(mid, 0.0) + 1.0 / (k + rank)
    return scores
