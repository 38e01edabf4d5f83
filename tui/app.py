"""The agemem-lite Textual app: bindings, CSS and screen routing (STYLE §8).

The assistant (models + memory database) loads in a worker thread, so the
screen is interactive at once and a first run shows the model assembly
progress; every failure becomes a readable line in the app.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import get_current_worker

from agemem_lite.chat import ChatSession, open_chat
from agemem_lite.config import Settings
from agemem_lite.errors import AgememError

from .screens.chat import ChatScreen
from .screens.help import HelpScreen
from .screens.memories import MemoryBrowser
from .screens.models import ModelsScreen
from .screens.sessions import SessionsScreen


class _Abandoned(Exception):
    """The app closed while the models were being prepared."""


class AgememApp(App):
    """A private assistant whose memory you can see and steer."""

    CSS_PATH = "app.tcss"
    TITLE = "agemem-lite"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("f1", "help", "Help"),
        Binding("f2", "memories", "Memories"),
        Binding("f3", "sessions", "Sessions"),
        Binding("f4", "models", "Models"),
        Binding("f5", "toggle_approval", "Approval"),
        Binding("ctrl+n", "new_session", "New session", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, settings: Settings, chat: ChatSession | None = None, *, resume: int | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.chat: ChatSession | None = chat
        self._owns_chat = chat is None     # a chat passed in (tests) is closed by its owner
        self._resume = resume
        self.load_error: str | None = None

    # -- start-up ---------------------------------------------------------------------------
    async def on_mount(self) -> None:
        await self.push_screen(ChatScreen())
        if self.chat is None:
            self.chat_screen.show_progress("Loading models…", 0, None)
            self.load_assistant()
        else:
            self._assistant_ready()

    @property
    def chat_screen(self) -> ChatScreen:
        return next(s for s in self.screen_stack if isinstance(s, ChatScreen))

    @work(thread=True, exclusive=True, group="load")
    def load_assistant(self) -> None:
        """Worker: assemble/verify/load the models and open the database (first run: minutes)."""
        worker = get_current_worker()

        def progress(done: int, total: int | None) -> None:
            if worker.is_cancelled:     # the user quit: stop (model files are written atomically)
                raise _Abandoned
            self.call_from_thread(self.chat_screen.show_progress, "Preparing models (first run only)…",
                                  done, total)
        try:
            chat = open_chat(self.settings, progress=progress)
        except _Abandoned:
            return
        except Exception as e:
            self.call_from_thread(self._load_failed, e)
            return
        if worker.is_cancelled:
            chat.close()
            return
        self.call_from_thread(self._loaded, chat)

    def _loaded(self, chat: ChatSession) -> None:
        self.chat = chat
        self._assistant_ready()

    def _load_failed(self, error: Exception) -> None:
        self.load_error = self.explain(error)
        screen = self.chat_screen
        screen.load_failed()
        screen.query_one("ChatLog").add_notice(f"Could not start the assistant: {self.load_error}")
        self.sub_title = "not loaded"

    def _assistant_ready(self) -> None:
        chat = self.chat
        chat.ask = lambda call: self.chat_screen.ask_approval(call, self.chat_screen._cancel)
        if self._resume is not None:
            try:
                self.chat_screen.show_transcript(chat.resume(self._resume))
            except AgememError as e:
                self.notify(str(e), severity="error")
        self.chat_screen.ready()
        self.session_changed()

    @staticmethod
    def explain(error: BaseException) -> str:
        """One line for any error: ours are already one line; others get their type name."""
        if isinstance(error, AgememError):
            return str(error)
        return f"{type(error).__name__}: {error}"

    # -- state shown in the header -------------------------------------------------------------
    def session_changed(self) -> None:
        """Header: policy, namespace, session, approval mode and the relevance check when on."""
        chat = self.chat
        if chat is None:
            return
        name = chat.session.name if chat.session else "new session"
        self.title = f"agemem-lite · {chat.policy_name}"
        judge = f" · relevance check: {self.settings.relevance_judge}" if self.settings.relevance_judge else ""
        self.sub_title = f"{self.settings.namespace} · {name} · approval: {chat.approval_mode}{judge}"
        self.chat_screen.refresh_meter()

    def memory_changed(self) -> None:
        """A memory was written; screens that show memories refresh themselves."""
        for s in self.screen_stack:
            if isinstance(s, MemoryBrowser):
                s.reload()

    def session_reset(self) -> None:
        """The current session was deleted or a new one started: clear the chat screen."""
        self.chat_screen.show_transcript([])
        self.session_changed()

    def export_text(self, filename: str, text: str) -> Path:
        """Write an export under ``<data dir>/exports`` (0600: it holds private text)."""
        folder = self.settings.data_dir / "exports"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / filename
        path.write_text(text, encoding="utf-8")
        path.chmod(0o600)
        return path

    # -- actions ---------------------------------------------------------------------------------
    def _need_chat(self) -> bool:
        if self.chat is None:
            self.notify(self.load_error or "The model is still loading.", severity="warning")
            return False
        if self.chat_screen.loading:
            self.notify("A model is loading.", severity="warning")
            return False
        if self.chat_screen.busy:
            self.notify("Wait for the reply to finish (Esc cancels it).", severity="warning")
            return False
        return True

    def action_help(self) -> None:
        """F1: key bindings."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_memories(self) -> None:
        """F2: the memory browser."""
        if self.chat is not None and not isinstance(self.screen, MemoryBrowser):
            self.push_screen(MemoryBrowser())

    def action_sessions(self) -> None:
        """F3: the session list; choosing one resumes it."""
        if not self._need_chat():
            return

        def resume(sid: int | None) -> None:
            if sid is None:
                return
            try:
                turns = self.chat.resume(sid)
            except AgememError as e:
                self.notify(str(e), severity="error")
                return
            self.chat_screen.show_transcript(turns)
            self.session_changed()

        self.push_screen(SessionsScreen(), resume)

    def action_new_session(self) -> None:
        """Ctrl+N: an empty conversation (memories stay)."""
        if self._need_chat():
            self.chat.new_session()
            self.session_reset()

    def action_models(self) -> None:
        """F4: switch the policy."""
        if not self._need_chat():
            return

        def switch(name: str | None) -> None:
            if name and name != self.chat.policy_name:
                self.chat_screen.show_progress(f"Loading {name}…", 0, None)
                self.switch_policy(name)

        self.push_screen(ModelsScreen(), switch)

    @work(thread=True, exclusive=True, group="load")
    def switch_policy(self, name: str) -> None:
        """Worker: load another policy and carry the conversation over."""
        def progress(done: int, total: int | None) -> None:
            self.call_from_thread(self.chat_screen.show_progress, f"Preparing {name}…", done, total)
        try:
            self.chat.switch_policy(name, progress=progress)
        except Exception as e:
            self.call_from_thread(self.notify, f"Could not switch to {name}: {self.explain(e)}", severity="error")
        self.call_from_thread(self._assistant_ready)

    def action_toggle_approval(self) -> None:
        """F5: automatic memory writes, or ask before each Add/Update/Delete."""
        if self.chat is None:
            return
        mode = "ask" if self.chat.approval_mode == "auto" else "auto"
        self.chat.set_approval_mode(mode)
        self.notify("Approval: ask before each memory change" if mode == "ask"
                    else "Approval: memory changes are written automatically")
        self.session_changed()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The command palette (Ctrl+P): every action of the app by name."""
        yield from super().get_system_commands(screen)
        yield SystemCommand("New session", "Start an empty conversation", self.action_new_session)
        yield SystemCommand("Sessions", "Resume, rename, delete or export a session", self.action_sessions)
        yield SystemCommand("Memories", "Search, edit, delete, undo, export memories", self.action_memories)
        yield SystemCommand("Switch model", "Choose the policy", self.action_models)
        yield SystemCommand("Toggle approval mode", "Ask before each memory change, or not",
                            self.action_toggle_approval)
        yield SystemCommand("Export transcript", "Write this session as Markdown", self.action_export_transcript)
        yield SystemCommand("Regenerate", "Write the last reply again", self.chat_screen.action_regenerate)
        yield SystemCommand("Keys", "Show every key binding", self.action_help)

    def action_export_transcript(self) -> None:
        if self.chat is None or self.chat.session is None:
            self.notify("Nothing to export yet.", severity="warning")
            return
        path = self.export_text(f"session-{self.chat.session.id}.md", self.chat.log.to_markdown(self.chat.session.id))
        self.notify(f"Transcript written to {path}")

    def on_unmount(self) -> None:
        """Stop a reply being written (the models are released by ``run`` once the loop is gone,
        so a worker finishing its last callback can never deadlock against the close)."""
        for s in self.screen_stack:
            if isinstance(s, ChatScreen):
                s.cancel_reply()

    def close_chat(self) -> None:
        """Release models and database if this app opened them."""
        if self._owns_chat and self.chat is not None:
            self.chat.close()
            self.chat = None


def make_app(settings: Settings, chat: ChatSession | None = None, *, resume: int | None = None) -> AgememApp:
    """Build the app for the CLI and the tests (a test may pass a ready ChatSession)."""
    return AgememApp(settings, chat, resume=resume)


def run(settings: Settings, *, resume: int | None = None) -> None:
    """Run the app in this terminal (``agemem chat``)."""
    if not sys.stdin.isatty() or not sys.stdout.isatty():
        raise AgememError("agemem chat needs an interactive terminal; use 'agemem ask \"...\"' in scripts")
    app = make_app(settings, resume=resume)
    try:
        app.run()
    finally:
        app.close_chat()
