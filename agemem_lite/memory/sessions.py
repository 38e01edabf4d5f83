"""Chat sessions persisted in the memory database (schema v2).

A session is the conversation part of the agent's context (what a resumed
session feeds the policy again) plus its visible transcript (user message,
answer, memory operations, cancelled turns too). It lives in the same SQLite
file as the memories it shaped, so one file is the whole assistant; deleting a
session removes its text (``secure_delete`` is on, see ``schema.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..errors import StoreError
from .records import now_utc
from .store import MemoryStore


@dataclass
class SessionInfo:
    """One row of the session list."""

    id: int
    name: str
    namespace: str
    policy: str
    created_at: str
    updated_at: str
    turns: int = 0


@dataclass
class TranscriptTurn:
    """One visible turn: what the user said, what the assistant answered, what it did to memory."""

    id: int
    user: str
    answer: str | None
    operations: list[dict] = field(default_factory=list)
    policy: str = ""
    cancelled: bool = False
    at: str = ""


class SessionLog:
    """Create, list, rename, delete, save and load chat sessions in a ``MemoryStore`` file."""

    def __init__(self, store: MemoryStore):
        self.store = store

    def _info(self, c, sid: int) -> SessionInfo:
        row = c.execute("SELECT s.id, s.name, s.namespace, s.policy, s.created_at, s.updated_at, "
                        "(SELECT count(*) FROM session_turns t WHERE t.session_id = s.id) "
                        "FROM sessions s WHERE s.id = ?", (int(sid),)).fetchone()
        if row is None:
            raise StoreError(f"no chat session {sid}")
        return SessionInfo(*row)

    def create(self, name: str, namespace: str, policy: str) -> SessionInfo:
        """A new empty session."""
        now = now_utc()
        with self.store.transaction(write=True) as c:
            c.execute("INSERT INTO sessions(name, namespace, policy, created_at, updated_at) VALUES (?,?,?,?,?)",
                      (name.strip() or "chat", namespace, policy, now, now))
            return self._info(c, c.last_insert_rowid())

    def get(self, sid: int) -> SessionInfo:
        with self.store.transaction() as c:
            return self._info(c, sid)

    def list(self, namespace: str | None = None, limit: int = 200) -> list[SessionInfo]:
        """Sessions, most recently used first (one namespace, or all)."""
        where, params = ("WHERE s.namespace = ?", [namespace]) if namespace is not None else ("", [])
        with self.store.transaction() as c:
            return [SessionInfo(*r) for r in c.execute(
                "SELECT s.id, s.name, s.namespace, s.policy, s.created_at, s.updated_at, "
                "(SELECT count(*) FROM session_turns t WHERE t.session_id = s.id) "
                f"FROM sessions s {where} ORDER BY s.updated_at DESC, s.id DESC LIMIT ?", (*params, int(limit)))]

    def rename(self, sid: int, name: str) -> SessionInfo:
        if not name.strip():
            raise ValueError("a session name cannot be empty")
        with self.store.transaction(write=True) as c:
            self._info(c, sid)
            c.execute("UPDATE sessions SET name = ? WHERE id = ?", (name.strip(), int(sid)))
            return self._info(c, sid)

    def delete(self, sid: int) -> None:
        """Remove a session and its transcript (the memories it created stay)."""
        with self.store.transaction(write=True) as c:
            self._info(c, sid)
            c.execute("DELETE FROM sessions WHERE id = ?", (int(sid),))

    def add_turn(self, sid: int, *, user: str, answer: str | None, operations: list[dict], policy: str,
                 cancelled: bool, context: list[dict], seen_ids: set[str] | list[str]) -> int:
        """Append a transcript turn and save the context it left, in one transaction."""
        now = now_utc()
        with self.store.transaction(write=True) as c:
            self._info(c, sid)
            c.execute("INSERT INTO session_turns(session_id, user, answer, operations, policy, cancelled, at) "
                      "VALUES (?,?,?,?,?,?,?)", (int(sid), user, answer, json.dumps(operations), policy,
                                                 int(cancelled), now))
            tid = c.last_insert_rowid()
            c.execute("UPDATE sessions SET context = ?, seen_ids = ?, policy = ?, updated_at = ? WHERE id = ?",
                      (json.dumps(context), json.dumps(sorted(seen_ids)), policy, now, int(sid)))
            return tid

    def drop_last_turn(self, sid: int, *, context: list[dict], seen_ids) -> TranscriptTurn | None:
        """Remove the newest non-cancelled turn (regenerate) and save the context without it."""
        with self.store.transaction(write=True) as c:
            self._info(c, sid)
            row = c.execute("SELECT id FROM session_turns WHERE session_id = ? AND cancelled = 0 "
                            "ORDER BY id DESC LIMIT 1", (int(sid),)).fetchone()
            turn = None
            if row is not None:
                turn = self._turns(c, sid, f"AND id = {int(row[0])}")[0]
                c.execute("DELETE FROM session_turns WHERE id = ? OR (session_id = ? AND id > ?)",
                          (row[0], int(sid), row[0]))
            c.execute("UPDATE sessions SET context = ?, seen_ids = ?, updated_at = ? WHERE id = ?",
                      (json.dumps(context), json.dumps(sorted(seen_ids)), now_utc(), int(sid)))
            return turn

    @staticmethod
    def _turns(c, sid: int, extra: str = "") -> list[TranscriptTurn]:
        return [TranscriptTurn(r[0], r[1], r[2], json.loads(r[3]), r[4], bool(r[5]), r[6]) for r in c.execute(
            "SELECT id, user, answer, operations, policy, cancelled, at FROM session_turns "
            f"WHERE session_id = ? {extra} ORDER BY id", (int(sid),))]

    def turns(self, sid: int) -> list[TranscriptTurn]:
        """The visible transcript, oldest first."""
        with self.store.transaction() as c:
            self._info(c, sid)
            return self._turns(c, sid)

    def state(self, sid: int) -> tuple[list[dict], list[str]]:
        """The saved conversation context and the memory ids shown in it."""
        with self.store.transaction() as c:
            self._info(c, sid)
            ctx, seen = c.execute("SELECT context, seen_ids FROM sessions WHERE id = ?", (int(sid),)).fetchone()
            return json.loads(ctx), json.loads(seen)

    def to_markdown(self, sid: int) -> str:
        """The transcript as Markdown: each turn, its memory operations, cancelled turns marked."""
        info, turns = self.get(sid), self.turns(sid)
        out = [f"# {info.name}", "",
               f"- namespace: `{info.namespace}`", f"- started: {info.created_at}", f"- last used: {info.updated_at}",
               ""]
        for t in turns:
            out += [f"## You ({t.at})", "", t.user, ""]
            for op in t.operations:
                out.append(f"- *{describe_operation(op)}*")
            if t.operations:
                out.append("")
            if t.cancelled:
                out += ["*(cancelled)*", ""]
            else:
                out += [f"## Assistant ({t.policy})", "", t.answer if t.answer is not None else "*(no answer)*", ""]
        return "\n".join(out).rstrip() + "\n"


def newest_reason(data: dict) -> str:
    """Why a Retrieve_memory listed the newest memories instead of its hits: its query and the
    message named nothing to rank by (``searched`` None), or it found nothing for a question
    that names nothing ("What do you know about me?" searched as "your knowledge about me")."""
    if data.get("searched") is None:
        return "the query and the message name nothing"
    return f"found nothing for {data['searched']!r}, and the message names nothing"


def describe_operation(result: dict) -> str:
    """One plain line for a tool result (transcripts, the line REPL, the activity pane)."""
    name, data = result.get("name", "?"), result.get("data") or {}
    if not result.get("ok"):
        return f"{name} failed: {result.get('text', '')}"
    mem = data.get("memory") or {}
    if name == "Add_memory":
        return f"stored {mem.get('id')}: {mem.get('content')}"
    if name == "Update_memory":
        return f"updated {mem.get('id')}: {(data.get('before') or {}).get('content')} -> {mem.get('content')}"
    if name == "Delete_memory":
        return f"deleted {mem.get('id')}: {mem.get('content')}"
    if name == "Retrieve_memory":
        hits = ", ".join(f"{h['memory']['id']} ({(h.get('similarity') or 0):.2f})" for h in data.get("hits", []))
        searched = data.get("searched", data.get("query"))
        instead = f" (searched the message: {searched!r})" if searched != data.get("query") else ""
        if data.get("newest"):
            instead = f" ({newest_reason(data)}: the newest memories)"
            hits = ", ".join(h["memory"]["id"] for h in data.get("hits", []))
        return f"retrieved for {data.get('query')!r}{instead}: {hits or 'nothing'}"
    return f"{name}: {result.get('text', '')}"
