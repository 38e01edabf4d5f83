"""A chat the user can leave and come back to: an ``Assistant`` bound to a saved session.

The TUI (and any other front end) talks to this class only: it sends turns,
regenerates, cancels, resumes and switches sessions and policies, and gates
memory writes through an approval callback. Persistence is ``memory.sessions``
in the same database file; the agent loop is ``agent.Agent``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from .agent import Agent
from .assistant import Assistant, open_assistant, open_policy, wants_context_usage, wants_demonstrations
from .config import Settings
from .errors import StoreError
from .memory.sessions import SessionInfo, SessionLog, TranscriptTurn
from .prompts import addressed_to_user
from .protocol import ToolCall
from .records import Step, Turn

#: The approval callback: True approves, False rejects, a dict replaces the arguments.
Approver = Callable[[ToolCall], "bool | dict"]
APPROVAL_MODES = ("auto", "ask")
#: Tools whose calls the "ask" mode puts to the user (they change long-term memory).
WRITE_TOOLS = ("Add_memory", "Update_memory", "Delete_memory")


@dataclass
class ContextStats:
    """What the context meter shows."""

    tokens: int
    budget: int
    saved_tokens: int      # removed by Summary/Filter in this session


def session_name(text: str, width: int = 40) -> str:
    """A session's default name: the first line of its first message, shortened."""
    line = " ".join(text.strip().split())
    return line if len(line) <= width else line[: width - 1].rstrip() + "…"


class ChatSession:
    """One open assistant plus the saved session it is talking in."""

    def __init__(self, assistant: Assistant, settings: Settings):
        self.assistant = assistant
        self.settings = settings
        self.log = SessionLog(assistant.store)
        self.session: SessionInfo | None = None     # created on the first message
        self.approval_mode = settings.approval     # config.toml: approval = "ask"
        self.ask: Approver | None = None             # the UI's question to the user
        self.saved_tokens = 0
        self._lock = threading.Lock()                # one turn at a time
        self._install_approver()

    # -- parts --------------------------------------------------------------------
    @property
    def agent(self) -> Agent:
        return self.assistant.agent

    @property
    def store(self):
        return self.assistant.store

    @property
    def policy_name(self) -> str:
        return self.assistant.policy.name

    def close(self, timeout: float = 60.0) -> None:
        """Release models and database, after a running turn has stopped (set its cancel event first)."""
        got = self._lock.acquire(timeout=timeout)
        try:
            self.assistant.close()
        finally:
            if got:
                self._lock.release()

    # -- approval ------------------------------------------------------------------
    def set_approval_mode(self, mode: str) -> None:
        if mode not in APPROVAL_MODES:
            raise ValueError(f"approval mode {mode!r}: expected one of {', '.join(APPROVAL_MODES)}")
        self.approval_mode = mode
        self._install_approver()

    def _install_approver(self) -> None:
        self.agent.env.approve = self._approve

    def _approve(self, call: ToolCall):
        if self.approval_mode == "auto" or call.name not in WRITE_TOOLS or self.ask is None:
            return True
        return self.ask(call)

    def memory_text(self, memory_id) -> str | None:
        """The current text of a memory (for the approval dialog), None if it does not exist."""
        from .errors import AgememError

        try:
            return self.store.get(self.settings.namespace, memory_id).content
        except (AgememError, ValueError, TypeError):
            return None

    # -- stats -----------------------------------------------------------------------
    def stats(self) -> ContextStats:
        return ContextStats(self.agent.context.tokens, self.settings.context_budget, self.saved_tokens)

    def _count_saved(self, turn: Turn) -> None:
        for r in turn.operations:
            d = r.get("data") or {}
            if r["name"] == "Summary_context":
                self.saved_tokens += max(0, d.get("tokens_before", 0) - d.get("tokens_after", 0))
            elif r["name"] == "Filter_context":
                self.saved_tokens += d.get("tokens", 0)

    # -- turns -------------------------------------------------------------------------
    def send(self, text: str, *, on_text: Callable[[str], None] | None = None,
             on_step: Callable[[Step], None] | None = None,
             on_related: Callable[[list[dict]], None] | None = None,
             cancel: threading.Event | None = None) -> Turn:
        """Run one turn and save it (a cancelled turn is saved as cancelled, outside the context)."""
        with self._lock:
            if self.session is None:
                self.session = self.log.create(session_name(text), self.settings.namespace, self.policy_name)
            turn = self.agent.turn(text, on_text=on_text, on_step=on_step, on_related=on_related,
                                   cancel=cancel)
            if turn.answer is not None:   # shown and saved; the context keeps the model's own words
                turn.answer = addressed_to_user(turn.answer)
            self._count_saved(turn)
            self.log.add_turn(self.session.id, user=text, answer=turn.answer, operations=turn.operations,
                              policy=self.policy_name, cancelled=turn.cancelled,
                              context=self.agent.conversation(), seen_ids=self.agent.env.seen_ids)
            self.session = self.log.get(self.session.id)
            return turn

    def regenerate(self, **kw) -> tuple[Turn, list[str]] | None:
        """Replace the last answered turn: undo its memory changes, ask again.

        Returns the new turn and a line per memory change that could not be
        undone (a delete is forgotten unless ``keep_deleted``); None when there
        is no turn to regenerate.
        """
        with self._lock:
            if self.session is None:
                return None
            text = self.agent.rewind_last_turn()
            if text is None:
                return None
            old = self.log.drop_last_turn(self.session.id, context=self.agent.conversation(),
                                          seen_ids=self.agent.env.seen_ids)
            problems = self.undo_operations(old.operations if old else [])
        return self.send(text, **kw), problems

    def undo_operations(self, operations: list[dict]) -> list[str]:
        """Undo the memory changes in ``operations`` newest first; lines for those that could not be."""
        problems = []
        ns = self.settings.namespace
        for op in reversed(operations):
            if op.get("name") not in WRITE_TOOLS or not op.get("ok"):
                continue
            mid = op["data"]["memory"]["id"]
            live = [h for h in self.store.history(ns, mid, limit=20) if h.op != "undo" and not h.undone]
            try:
                if not live:
                    raise StoreError(f"no change of {mid} left to undo")
                self.store.undo(ns, live[0].id)
            except StoreError as e:
                problems.append(str(e))
        return problems

    # -- sessions ---------------------------------------------------------------------
    def sessions(self, all_namespaces: bool = False) -> list[SessionInfo]:
        return self.log.list(None if all_namespaces else self.settings.namespace)

    def transcript(self) -> list[TranscriptTurn]:
        return self.log.turns(self.session.id) if self.session else []

    def new_session(self) -> None:
        """Start an empty conversation (saved when its first message is sent)."""
        with self._lock:
            self.session = None
            self.saved_tokens = 0
            self.agent.load_conversation([])

    def resume(self, sid: int) -> list[TranscriptTurn]:
        """Continue a saved session: its context comes back exactly as it was left."""
        with self._lock:
            info = self.log.get(sid)
            if info.namespace != self.settings.namespace:
                raise StoreError(f"session {sid} belongs to namespace {info.namespace!r}; "
                                 f"start agemem chat --namespace {info.namespace} to resume it")
            messages, seen = self.log.state(sid)
            self.agent.load_conversation(messages, seen)
            self.session = info
            self.saved_tokens = 0
            return self.log.turns(sid)

    def rename(self, name: str) -> None:
        if self.session is not None:
            self.session = self.log.rename(self.session.id, name)

    def delete_session(self, sid: int) -> None:
        self.log.delete(sid)
        if self.session is not None and self.session.id == sid:
            self.new_session()

    # -- models ----------------------------------------------------------------------
    def switch_policy(self, name: str, *, progress=None) -> None:
        """Load another registry policy and carry the conversation over to it."""
        with self._lock:
            new = open_policy(self.settings, name, progress=progress)
            old_agent = self.agent
            agent = Agent(new, self.store, self.assistant.embedder, self.settings,
                          demonstrations=wants_demonstrations(self.settings, name),
                          context_usage=wants_context_usage(self.settings, name), judge=self.assistant.judge)
            agent.load_conversation(old_agent.conversation(), old_agent.env.seen_ids)
            agent.warm(self.settings.data_dir / "cache")
            old_policy = self.assistant.policy
            self.assistant.agent, self.assistant.policy = agent, new
            self.settings.policy = name
            self._install_approver()
            old_policy.close()


def open_chat(settings: Settings, *, progress=None) -> ChatSession:
    """Open models, store and agent for a chat (see ``assistant.open_assistant``)."""
    return ChatSession(open_assistant(settings, progress=progress), settings)
