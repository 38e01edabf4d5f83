"""The main screen: conversation, message box, memory activity and context meter."""

from __future__ import annotations

import threading

from textual import on, work
from textual.worker import get_current_worker
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, ProgressBar, Static

from agemem_lite.protocol import ToolCall
from agemem_lite.records import Step
from agemem_lite.stream import StepStream

from ..widgets.activity import ActivityPane
from ..widgets.chat_log import ChatLog, MessageView
from ..widgets.context_meter import ContextMeter
from ..widgets.prompt_input import PromptInput

#: How often streamed text reaches the screen: batching keeps key presses responsive.
FLUSH_INTERVAL_S = 1 / 12


class ChatScreen(Screen):
    """Chat with the assistant while watching what it does to its memory."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel reply", show=True),
        Binding("ctrl+r", "regenerate", "Regenerate", show=True),
        Binding("ctrl+b", "toggle_sidebar", "Memory pane", show=False),
    ]

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._cancel: threading.Event | None = None
        self._lock = threading.Lock()
        self._pending: list[str] = []             # answer text waiting for the next flush
        self._view: MessageView | None = None     # the reply being streamed
        self._queued: list[tuple[str, MessageView]] = []   # sent while busy or loading, in order
        self._loading = True                      # until the app says the assistant is ready

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal(id="main"):
            with Vertical(id="conversation"):
                yield ChatLog(id="chat-log")
                with Vertical(id="loading"):
                    yield Static("Loading models…", id="loading-label")
                    yield ProgressBar(id="loading-bar", show_eta=False)
                yield PromptInput(id="prompt")
            with Vertical(id="sidebar"):
                yield ContextMeter(id="meter")
                yield Static("Memory activity", classes="pane-title")
                yield ActivityPane(id="activity")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(PromptInput).focus()
        self.set_interval(FLUSH_INTERVAL_S, self._flush)

    # -- loading state (driven by the app) ---------------------------------------------
    def show_progress(self, label: str, done: int, total: int | None) -> None:
        """First run: model assembly/verification progress."""
        self._loading = True
        self.query_one("#loading").display = True
        self.query_one("#loading-label", Static).update(label)
        self.query_one("#loading-bar", ProgressBar).update(total=total, progress=done)

    def ready(self) -> None:
        """The assistant is loaded: hide the progress, show where we are."""
        self._loading = False
        self.query_one("#loading").display = False
        self.refresh_meter()
        self._send_next()

    def load_failed(self) -> None:
        """The assistant could not start: queued messages go back to the message box."""
        self._loading = False
        self.query_one("#loading").display = False
        self._unqueue()

    # -- sending --------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """A reply is being written."""
        return self._cancel is not None

    @property
    def loading(self) -> bool:
        """A policy is loading (at start or after F4); messages sent now wait in the queue."""
        return self._loading

    @property
    def queued(self) -> list[str]:
        """Messages waiting to be sent, oldest first."""
        return [t for t, _ in self._queued]

    @on(PromptInput.Submitted)
    def send(self, event: PromptInput.Submitted) -> None:
        """Show the message and run the turn in a worker, or queue it while busy or loading.

        A message typed while a reply is being written (or the model loads) is shown at
        once, marked queued, and sent when the assistant is free: typing ahead never loses text.
        """
        log = self.query_one(ChatLog)
        if self.app.chat is None and not self._loading:       # the assistant failed to start
            self.notify(self.app.load_error or "The assistant is not loaded.", severity="error")
            self._restore([event.text])
            return
        if self.busy or self._loading or self._queued:
            self._queued.append((event.text, log.add("user", event.text, queued=True)))
            self._show_queue()
            return
        self._begin(log.add("user", event.text), event.text)

    def _begin(self, user: MessageView, text: str) -> None:
        self._start(self.query_one(ChatLog).add("assistant", pending=True, after=user))
        self.run_turn(text)

    def _send_next(self) -> None:
        """The assistant is free: send the oldest queued message."""
        if self._queued and not self.busy and not self._loading and self.app.chat is not None:
            text, view = self._queued.pop(0)
            view.remove_class("queued")
            self._begin(view, text)
            self._show_queue()

    def _unqueue(self) -> None:
        """Take queued messages out of the conversation and back into the message box."""
        if self._queued:
            texts = [t for t, _ in self._queued]
            for _, view in self._queued:
                view.remove()
            self._queued = []
            self._restore(texts)
            self.notify("Queued messages were not sent; they are back in the message box.")

    def _restore(self, texts: list[str]) -> None:
        """Put unsent text back into the message box, ahead of anything typed since."""
        box = self.query_one(PromptInput)
        box.load_text("\n\n".join([*texts, box.text] if box.text.strip() else texts))
        box.move_cursor(box.document.end)

    def _show_queue(self) -> None:
        if self.busy:
            waiting = f" · {len(self._queued)} queued" if self._queued else ""
            self.sub_title = f"writing…{waiting} (Esc cancels)"

    def _start(self, view: MessageView) -> None:
        self._view, self._cancel, self._pending = view, threading.Event(), []
        self._show_queue()

    def _on_text(self, splitter: StepStream):
        worker, cancel = get_current_worker(), self._cancel

        def on_text(piece: str) -> None:
            if worker.is_cancelled and cancel is not None:
                cancel.set()          # the app is closing: stop generating
            out = [t for ch, t in splitter.feed(piece) if ch == "answer"]
            if out:
                with self._lock:
                    self._pending.extend(out)
        return on_text

    def _on_step(self, step: Step) -> None:
        self.app.call_from_thread(self.show_step, step)

    def _on_related(self, related: list[dict]) -> None:
        self.app.call_from_thread(self.query_one(ActivityPane).add_related, related)

    @work(thread=True, exclusive=True, group="turn")
    def run_turn(self, text: str) -> None:
        """Worker: one turn (the model runs here, never on the UI thread)."""
        chat, cancel = self.app.chat, self._cancel
        try:
            turn = chat.send(text, on_text=self._on_text(StepStream()), on_step=self._on_step,
                             on_related=self._on_related, cancel=cancel)
        except Exception as e:   # a bug or a store error: show it, keep the app alive
            self.app.call_from_thread(self.turn_failed, e)
            return
        self.app.call_from_thread(self.turn_done, turn, [])

    @work(thread=True, exclusive=True, group="turn")
    def run_regenerate(self) -> None:
        """Worker: replace the last reply."""
        chat, cancel = self.app.chat, self._cancel
        try:
            out = chat.regenerate(on_text=self._on_text(StepStream()), on_step=self._on_step,
                                  on_related=self._on_related, cancel=cancel)
        except Exception as e:
            self.app.call_from_thread(self.turn_failed, e)
            return
        if out is None:
            self.app.call_from_thread(self.turn_failed, None)
            return
        self.app.call_from_thread(self.turn_done, *out)

    def _flush(self) -> None:
        """Move batched answer text into the reply (runs on a timer, on the UI thread)."""
        with self._lock:
            pending, self._pending = self._pending, []
        if pending and self._view is not None:
            self._view.append("".join(pending))
            self.query_one(ChatLog).scroll_end(animate=False)

    def show_step(self, step: Step) -> None:
        """One finished step: its reasoning and tool results go to the activity pane."""
        pane = self.query_one(ActivityPane)
        if step.think:
            think = " ".join(step.think.split())
            pane.add_note(think if len(think) <= 160 else think[:159] + "…")
        for r in step.results:
            pane.add_result(r)
            if r.get("ok") and r["name"] in ("Add_memory", "Update_memory", "Delete_memory"):
                self.app.memory_changed()
        if step.error:
            pane.add_note(f"invalid step returned to the model: {step.error}", style="yellow")
        self.refresh_meter()

    def turn_done(self, turn, problems: list[str]) -> None:
        """The turn ended: final text (or why there is none), meter, focus."""
        self._flush()
        view, self._view, self._cancel = self._view, None, None
        if view is not None:
            if turn.cancelled:
                view.finish(view.text, "cancelled")
            elif turn.answer is None:
                view.finish(None, "no answer within the step limit")
            else:
                view.finish(turn.answer)
        for p in problems:
            self.query_one(ActivityPane).add_note(f"could not undo: {p}", style="yellow")
        self.sub_title = None
        self.refresh_meter()
        self.app.session_changed()
        self._send_next()

    def turn_failed(self, error: Exception | None) -> None:
        """A turn raised (should not happen for anything the model writes): one readable line."""
        view, self._view, self._cancel = self._view, None, None
        if view is not None:
            view.remove()
        self.sub_title = None
        if error is None:
            self.notify("Nothing to regenerate yet.", severity="warning")
        else:
            self.query_one(ChatLog).add_notice(f"Error: {self.app.explain(error)}")
        self._send_next()

    # -- actions ---------------------------------------------------------------------------
    def action_cancel(self) -> None:
        """Esc: stop the reply being written; queued messages return to the message box unsent."""
        self.cancel_reply()
        self._unqueue()

    def cancel_reply(self) -> None:
        """Stop the reply being written (the turn ends as cancelled, its context left clean)."""
        if self._cancel is not None:
            self._cancel.set()
            self.sub_title = "cancelling…"

    def action_regenerate(self) -> None:
        """Ctrl+R: undo the last reply's memory changes and write it again."""
        if self.app.chat is None or self.busy:
            return
        log = self.query_one(ChatLog)
        last = log.last_assistant()
        if last is None:
            self.notify("Nothing to regenerate yet.", severity="warning")
            return
        last.remove()
        self._start(log.add("assistant", pending=True))
        self.query_one(ActivityPane).add_note("regenerating the last reply (its memory changes are undone)")
        self.run_regenerate()

    def action_toggle_sidebar(self) -> None:
        sidebar = self.query_one("#sidebar")
        sidebar.display = not sidebar.display

    # -- state from the app ----------------------------------------------------------------
    def refresh_meter(self) -> None:
        chat = self.app.chat
        if chat is not None:
            s = chat.stats()
            self.query_one(ContextMeter).set_stats(s.tokens, s.budget, s.saved_tokens)

    def show_transcript(self, turns) -> None:
        """Replace the conversation by a saved session's transcript."""
        log = self.query_one(ChatLog)
        log.clear_messages()
        pane = self.query_one(ActivityPane)
        pane.remove_children()
        for t in turns:
            log.add("user", t.user)
            for op in t.operations:
                pane.add_result(op)
            if t.cancelled:
                log.add_notice("(cancelled)")
            else:
                log.add("assistant", t.answer if t.answer is not None else "*(no answer)*")
        self.refresh_meter()

    def ask_approval(self, call: ToolCall, cancel_event) -> "bool | dict":
        """Called from the worker: open the approval dialog and wait for the user's choice."""
        from .approval import ApprovalScreen

        done, box = threading.Event(), {}
        before = None
        if call.name in ("Update_memory", "Delete_memory"):
            before = self.app.chat.memory_text(call.arguments.get("memory_id"))

        def open_dialog() -> None:
            self.app.push_screen(ApprovalScreen(call, before),
                                 callback=lambda verdict: (box.update(v=verdict), done.set()))

        worker = get_current_worker()
        self.app.call_from_thread(open_dialog)
        while not done.wait(0.1):
            # Only a closing app gets here (Esc inside the dialog means reject).
            if worker.is_cancelled or (cancel_event is not None and cancel_event.is_set()):
                if cancel_event is not None:
                    cancel_event.set()
                return False
        return box.get("v", False)
