"""Records the memory store hands out: Memory, Hit, HistoryEntry, and memory ids.

Plain frozen dataclasses with ``to_dict`` so tools, the TUI and exports never
see SQL rows. Ids are ``mem_<n>``: short enough for a 0.5B model to copy back.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone

import numpy as np

_ID = re.compile(r"^(?:mem_)?(\d+)$", re.IGNORECASE)


def parse_memory_id(value: str | int) -> int:
    """``"mem_12"``, ``"12"``, ``12`` or ``" mem_12 "`` -> 12; ValueError for anything else.

    Small models copy ids loosely, so whitespace, case and a missing prefix are
    forgiven; anything that is not one positive integer is not.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        number = int(value)
    elif isinstance(value, str) and (m := _ID.match(value.strip())):
        number = int(m.group(1))
    else:
        raise ValueError(f"invalid memory id {value!r}: expected 'mem_<number>' as shown by "
                         "Retrieve_memory, e.g. 'mem_12'")
    if number < 1:
        raise ValueError(f"invalid memory id {value!r}: ids start at mem_1")
    if number > 2**63 - 1:  # SQLite integers are 64-bit
        raise ValueError(f"invalid memory id {value!r}: no such id")
    return number


def format_memory_id(number: int) -> str:
    """12 -> ``"mem_12"``: short enough for a 0.5B model to copy."""
    return f"mem_{number}"


def now_utc() -> str:
    """UTC time as fixed-width ISO-8601, so text order is time order."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def as_utc(value: str | datetime | date, name: str) -> str:
    """A ``since``/``until`` bound in the stored timestamp format (naive means UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{name}={value!r}: expected an ISO-8601 date or time") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise ValueError(f"{name}={value!r}: expected an ISO-8601 string or a datetime")
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Memory:
    """One LTM entry (SPEC §1): id, content, metadata; its embedding stays in the store."""

    id: str
    namespace: str
    content: str
    memory_type: str
    metadata: dict
    source: str
    created_at: str
    updated_at: str

    @classmethod
    def _from_row(cls, row) -> "Memory":
        mid, ns, content, mtype, meta, source, created, updated = row
        return cls(format_memory_id(mid), ns, content, mtype, json.loads(meta), source, created, updated)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (a copy: mutating it leaves the Memory alone)."""
        return asdict(self)


@dataclass(frozen=True)
class Hit:
    """A search result: ``score`` ranks (RRF), ``similarity`` is the float cosine to the query,
    ``keyword`` says whether the BM25 list found it (it shares a word with the query)."""

    memory: Memory
    score: float
    similarity: float | None
    keyword: bool = False


@dataclass(frozen=True)
class HistoryEntry:
    """One audited change. Text fields are None once the memory is forgotten (``redacted``)."""

    id: int
    memory_id: str
    namespace: str
    op: str
    actor: str
    at: str
    old_content: str | None
    new_content: str | None
    old_metadata: dict | None
    new_metadata: dict | None
    undone: bool
    redacted: bool
    undoes: int | None = None  # for op == "undo": the entry it reverted

    def to_dict(self) -> dict:
        """Plain JSON-ready dict."""
        return asdict(self)


#: history columns in the order history_from_row reads them.
HISTORY_COLS = ("id, memory_id, namespace, op, actor, at, old_content, new_content, old_metadata, "
                "new_metadata, undone_by, redacted, undoes")


def history_from_row(row) -> HistoryEntry:
    """A HistoryEntry from a row selected with HISTORY_COLS."""
    hid, mid, ns, op, actor, at, oc, nc, om, nm, undone_by, redacted, undoes = row
    return HistoryEntry(hid, format_memory_id(mid), ns, op, actor, at, oc, nc,
                        json.loads(om) if om is not None else None,
                        json.loads(nm) if nm is not None else None,
                        undone_by is not None, bool(redacted), undoes)
