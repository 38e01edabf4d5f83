"""The Textual app driven by Pilot: chat, streaming, activity pane, browser, approval, sessions.

Control flow that must be deterministic (which memory operation happens) uses a
scripted policy that streams its step piece by piece; the real SmolLM2 GGUF
answers in the streaming test. The store and the embedder are always real.
"""

from __future__ import annotations

import time

import pytest

from agemem_lite.model_files import user_models_path
from agemem_lite.protocol import render_step
from scripted import ScriptedPolicy
from tui import make_app
from tui.screens.approval import ApprovalScreen
from tui.screens.dialogs import TextDialog
from tui.screens.help import HelpScreen
from tui.screens.memories import MemoryBrowser
from tui.screens.sessions import SessionsScreen
from tui.widgets.activity import ActivityEntry
from tui.widgets.chat_log import MessageView

pytestmark = pytest.mark.tui
NS = "default"


class StreamingPolicy(ScriptedPolicy):
    """A scripted policy that streams each step in small pieces, ``delay`` seconds apart."""

    def __init__(self, script, delay: float = 0.0):
        super().__init__(script)
        self.delay = delay

    def step(self, messages, *, allow_tools=True, on_text=None):
        def slow(text):
            for i in range(0, len(text), 4):
                if self.delay:
                    time.sleep(self.delay)
                on_text(text[i:i + 4])
        return super().step(messages, allow_tools=allow_tools, on_text=slow if on_text else None)


def add(content: str) -> str:
    return render_step("Kind: new fact.", calls=[{"name": "Add_memory", "arguments": {"content": content}}])


def answer(text: str) -> str:
    return render_step("Kind: chat.", answer=text)


async def send(pilot, text: str, timeout: float = 120.0) -> None:
    """Type a message, press Enter, wait until the reply is finished."""
    app = pilot.app
    await pilot.click("#prompt")
    await pilot.press(*text)
    await pilot.press("enter")
    deadline = time.monotonic() + timeout
    await pilot.pause(0.05)
    while app.chat_screen.busy and time.monotonic() < deadline:
        await pilot.pause(0.05)
    await pilot.pause(0.2)
    assert not app.chat_screen.busy, "the reply did not finish in time"


async def until_idle(pilot, timeout: float = 60.0) -> None:
    """Wait until no reply is being written and no message is queued."""
    screen, deadline = pilot.app.chat_screen, time.monotonic() + timeout
    while (screen.busy or screen.queued) and time.monotonic() < deadline:
        await pilot.pause(0.05)


async def wait_for(pilot, shown, tries: int = 200, every: float = 0.05):
    """Poll every ``every`` seconds, up to ``tries`` times, until ``shown()`` returns something true;
    return it (or the last falsy value, for the caller's assertion to report)."""
    value = None
    for _ in range(tries):
        await pilot.pause(every)
        value = shown()
        if value:
            break
    return value


def views(app) -> list[tuple[str, str]]:
    return [(v.role, v.text) for v in app.chat_screen.query(MessageView)]


def activity(app) -> list[dict]:
    return [e.result for e in app.chat_screen.query(ActivityEntry) if e.result]


async def test_sent_message_gets_the_real_models_streamed_answer(small_policy, chat_factory):
    """SmolLM2 answers; the reply pane ends with exactly the answer the session saved."""
    chat = chat_factory(small_policy, guided=True, max_steps_per_turn=2)
    app = make_app(chat.settings, chat)
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "Hello!")
        [t] = chat.transcript()
        assert views(app)[0] == ("user", "Hello!")
        role, text = views(app)[1]
        assert role == "assistant" and text == t.answer and text.strip()


async def test_reply_streams_in_pieces_before_the_turn_ends(chat_factory):
    """The reply grows while the model writes (batched flushes), before the turn is done."""
    chat = chat_factory(StreamingPolicy([answer("one two three four five six seven eight nine ten " * 3)],
                                        delay=0.02))
    app = make_app(chat.settings, chat)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.click("#prompt")
        await pilot.press(*"hi", "enter")
        partial = await wait_for(pilot, lambda: views(app)[-1][1])
        assert app.chat_screen.busy and partial and len(partial) < 150
        await until_idle(pilot)
        assert views(app)[-1][1].startswith("one two three")


async def test_a_reply_about_the_user_is_addressed_to_them_while_it_streams(chat_factory):
    """v7 answers in its memories' words ("The user's favourite food is pho."): the streamed text
    already reads "Your ...", not only the finished reply."""
    chat = chat_factory(StreamingPolicy([answer("The user's favourite food is pho. " * 6)], delay=0.02))
    app = make_app(chat.settings, chat)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.click("#prompt")
        await pilot.press(*"what food do I love", "enter")
        def streamed_pho() -> str:
            view = app.chat_screen.query(MessageView).last()
            return view._markdown if view.role == "assistant" and "pho" in view.text else ""
        shown = await wait_for(pilot, streamed_pho)
        assert app.chat_screen.busy and shown.startswith("Your favourite food is pho.")
        assert "The user" not in shown
        await until_idle(pilot)
        assert views(app)[-1][1].startswith("Your favourite food is pho.")


async def test_memory_operation_appears_in_the_activity_pane_and_the_browser(chat_factory):
    """An Add shows in the activity pane as it happens and is listed by the memory browser."""
    chat = chat_factory(StreamingPolicy([add("Tom is my cat."), answer("Noted.")]))
    app = make_app(chat.settings, chat)
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "My cat is called Tom.")
        [op] = activity(app)
        assert op["name"] == "Add_memory" and op["data"]["memory"]["content"] == "Tom is my cat."
        await pilot.press("f2")
        await pilot.pause(0.2)
        browser = app.screen
        assert isinstance(browser, MemoryBrowser)
        table = browser.query_one("#memory-table")
        assert table.row_count == 1 and "Tom is my cat." in str(table.get_row_at(0))


async def test_editing_then_undoing_a_memory_in_the_browser(chat_factory, embedder):
    """Edit rewrites the memory (new embedding); undo on it restores the old text."""
    chat = chat_factory(ScriptedPolicy([]))
    m = chat.store.add(NS, "I live in Lyon.", embedder.embed_one("I live in Lyon."))
    app = make_app(chat.settings, chat)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f2")
        await pilot.pause(0.2)
        await pilot.press("e")
        await pilot.pause(0.1)
        dialog = app.screen
        assert isinstance(dialog, TextDialog)
        dialog.query_one("#dialog-text").load_text("I live in Porto.")
        await pilot.click("#save")
        await pilot.pause(0.2)
        assert chat.store.get(NS, m.id).content == "I live in Porto."
        assert chat.store.search(NS, "Porto", embedder.embed_one("Porto"), top_k=1)[0].memory.id == m.id
        await pilot.press("u")
        await pilot.pause(0.2)
        assert chat.store.get(NS, m.id).content == "I live in Lyon."
        ops = [h.op for h in chat.store.history(NS, m.id)]
        assert ops == ["undo", "update", "add"]


async def test_deleting_a_memory_in_the_browser_asks_first(chat_factory, embedder):
    """d asks for confirmation; 'n' keeps the memory, 'y' deletes it."""
    chat = chat_factory(ScriptedPolicy([]))
    m = chat.store.add(NS, "Old phone number 555-0101.", embedder.embed_one("phone"))
    app = make_app(chat.settings, chat)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f2")
        await pilot.pause(0.2)
        await pilot.press("d", "n")
        await pilot.pause(0.1)
        assert chat.store.count(NS) == 1
        await pilot.press("d", "y")
        await pilot.pause(0.2)
        assert chat.store.count(NS) == 0
        assert app.screen.query_one("#memory-table").row_count == 0
        assert m.id in [h.memory_id for h in chat.store.history(NS)]


async def test_approval_mode_rejecting_an_add_stores_nothing(chat_factory):
    """F5 turns on approval; rejecting the proposed Add leaves the store empty."""
    chat = chat_factory(StreamingPolicy([add("Tom is my cat."), answer("Okay, I won't.")]))
    app = make_app(chat.settings, chat)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f5")
        assert chat.approval_mode == "ask"
        await pilot.click("#prompt")
        await pilot.press(*"My cat is Tom.", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ApprovalScreen), tries=100)
        assert isinstance(app.screen, ApprovalScreen)
        await pilot.press("n")
        await until_idle(pilot)
        assert chat.store.count(NS) == 0
        [op] = activity(app)
        assert not op["ok"] and "rejected" in op["text"]
        assert views(app)[-1] == ("assistant", "Okay, I won't.")


async def test_approval_mode_edit_stores_the_users_text(chat_factory):
    """Editing in the approval dialog stores the user's version."""
    chat = chat_factory(StreamingPolicy([add("Tom is my cat."), answer("Noted.")]))
    app = make_app(chat.settings, chat)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f5")
        await pilot.click("#prompt")
        await pilot.press(*"My cat is Tom.", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ApprovalScreen), tries=100)
        app.screen.query_one("#approval-edit").load_text("Tom is my grey cat.")
        await pilot.click("#edit")
        await until_idle(pilot)
        assert [m.content for m in chat.store.list(NS)] == ["Tom is my grey cat."]


async def test_switching_sessions_restores_the_transcript_and_context(chat_factory):
    """Ctrl+N starts a new session; F3 + Enter on the older one brings its messages back."""
    chat = chat_factory(StreamingPolicy([answer("First reply."), answer("Second reply.")]))
    app = make_app(chat.settings, chat)
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "first session message")
        first = chat.session.id
        await pilot.press("ctrl+n")
        await pilot.pause(0.1)
        assert views(app) == [] and chat.session is None
        await send(pilot, "second session message")
        assert chat.session.id != first
        await pilot.press("f3")
        await pilot.pause(0.2)
        assert isinstance(app.screen, SessionsScreen)
        await pilot.press("down", "enter")      # newest first: the second row is the first session
        await pilot.pause(0.2)
        assert chat.session.id == first
        assert views(app) == [("user", "first session message"), ("assistant", "First reply.")]
        users = [m["content"] for m in chat.agent.conversation() if m["role"] == "user"]
        assert len(users) == 1 and users[0].endswith("first session message")


async def test_escape_cancels_a_reply_and_keeps_the_context_clean(chat_factory):
    """Esc while streaming stops the turn: marked cancelled, nothing left in the context."""
    chat = chat_factory(StreamingPolicy([answer("word " * 200)], delay=0.02))
    app = make_app(chat.settings, chat)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.click("#prompt")
        await pilot.press(*"tell me a long story", "enter")
        await wait_for(pilot, lambda: views(app)[-1][1], tries=100)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.chat_screen.busy)
        assert not app.chat_screen.busy
        [t] = chat.transcript()
        assert t.cancelled
        assert chat.agent.conversation() == []
        assert "cancelled" in app.chat_screen.query(MessageView).last()._markdown


async def test_a_message_sent_while_a_reply_is_written_is_queued_and_sent_next(chat_factory):
    """Typing ahead loses nothing: two messages sent mid-reply are shown queued, then answered in order."""
    chat = chat_factory(StreamingPolicy([answer("word " * 100), answer("Second."), answer("Third.")],
                                        delay=0.03))
    app = make_app(chat.settings, chat)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.chat_screen
        await pilot.click("#prompt")
        await pilot.press(*"first", "enter")
        await pilot.pause(0.05)
        assert screen.busy
        await pilot.press(*"second", "enter", *"third", "enter")
        await pilot.pause(0.05)
        assert screen.busy and screen.queued == ["second", "third"]
        assert [v.text for v in screen.query(".queued")] == ["second", "third"]
        assert "2 queued" in screen.sub_title
        await until_idle(pilot)
        assert not screen.busy and not screen.queued and not screen.query(".queued")
        assert [t.user for t in chat.transcript()] == ["first", "second", "third"]
        assert [t.answer for t in chat.transcript()][1:] == ["Second.", "Third."]
        assert [(r, t.strip()) for r, t in views(app)][2:] == [
            ("user", "second"), ("assistant", "Second."), ("user", "third"), ("assistant", "Third.")]


async def test_a_message_sent_while_a_model_loads_waits_for_it(chat_factory):
    """While a policy loads (F4 switch), a sent message is queued and goes out once it is ready."""
    chat = chat_factory(StreamingPolicy([answer("Loaded and answering.")]))
    app = make_app(chat.settings, chat)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.chat_screen
        screen.show_progress("Loading…", 0, None)
        await pilot.click("#prompt")
        await pilot.press(*"hello", "enter")
        await pilot.pause(0.1)
        assert screen.loading and screen.queued == ["hello"] and chat.transcript() == []
        screen.ready()
        await until_idle(pilot)
        assert [(t.user, t.answer) for t in chat.transcript()] == [("hello", "Loaded and answering.")]


async def test_escape_returns_queued_messages_to_the_box_unsent(chat_factory):
    """Esc stops the reply and gives queued text back for editing: none of it is sent or lost."""
    chat = chat_factory(StreamingPolicy([answer("word " * 200), answer("never sent")], delay=0.02))
    app = make_app(chat.settings, chat)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.chat_screen
        await pilot.click("#prompt")
        await pilot.press(*"story", "enter")
        await pilot.pause(0.05)
        await pilot.press(*"wait", "enter", *"draft")
        assert screen.queued == ["wait"]
        await pilot.press("escape")
        await wait_for(pilot, lambda: not screen.busy)
        await pilot.pause(0.2)
        assert not screen.busy and not screen.queued
        assert screen.query_one("#prompt").text == "wait\n\ndraft"
        [t] = chat.transcript()
        assert t.user == "story" and t.cancelled
        assert [r for r, _ in views(app)] == ["user", "assistant"]


async def test_regenerate_replaces_the_reply_and_undoes_its_memory(chat_factory):
    """Ctrl+R: the old reply's Add is undone and the new reply takes its place."""
    chat = chat_factory(StreamingPolicy([add("Cat: Tom."), answer("Stored Tom."),
                                         add("Tom is my cat."), answer("Stored again.")]))
    app = make_app(chat.settings, chat)
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "My cat is Tom.")
        await pilot.press("ctrl+r")
        await pilot.pause(0.1)
        await until_idle(pilot)
        assert views(app) == [("user", "My cat is Tom."), ("assistant", "Stored again.")]
        assert [m.content for m in chat.store.list(NS)] == ["Tom is my cat."]


async def test_help_and_command_palette_open(chat_factory):
    """F1 shows the key bindings; Ctrl+P opens the command palette with our commands."""
    chat = chat_factory(ScriptedPolicy([]))
    app = make_app(chat.settings, chat)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f1")
        await pilot.pause(0.1)
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        from textual.command import CommandPalette
        assert isinstance(app.screen, CommandPalette)
        titles = [c.title for c in app.get_system_commands(app.chat_screen)]
        assert {"Sessions", "Memories", "Switch model", "Toggle approval mode"} <= set(titles)


async def test_a_missing_model_is_a_readable_message_in_the_app(settings, tmp_path):
    """A policy whose files are absent: one line in the chat pane, the app keeps running."""
    import dataclasses

    # A model the user registered and then deleted (a built-in row may be installed here).
    bad = dataclasses.replace(settings, data_dir=tmp_path, policy="gone")
    user_models_path(bad).write_text(f'[models.gone]\npath = "{tmp_path / "gone.gguf"}"\nrole = "policy"\n')
    (tmp_path / "models").mkdir()
    emb = settings.models_dir / "all-MiniLM-L6-v2.f16.gguf"
    if emb.exists():   # reuse the session's converted embedder instead of converting again
        (tmp_path / "models" / emb.name).symlink_to(emb)
    app = make_app(bad)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.click("#prompt")
        await pilot.press(*"early", "enter")   # typed while loading: queued, returned on failure
        await wait_for(pilot, lambda: app.load_error, tries=600, every=0.1)
        assert app.load_error and "\n" not in app.load_error
        assert app.chat is None
        notices = [str(n.render()) for n in app.chat_screen.query(".notice")]
        assert any("Could not start the assistant" in n for n in notices)
        box = app.chat_screen.query_one("#prompt")
        assert box.text == "early" and not app.chat_screen.queued and not views(app)
        box.clear()
        await pilot.press(*"hi", "enter")   # refused with a notice, no crash, the text kept
        await pilot.pause(0.1)
        assert box.text == "hi" and not app.chat_screen.queued


async def test_input_history_and_multiline_entry(chat_factory):
    """Up recalls the previous message; Ctrl+J inserts a newline instead of sending."""
    chat = chat_factory(StreamingPolicy([answer("One."), answer("Two.")]))
    app = make_app(chat.settings, chat)
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "first line")
        box = app.chat_screen.query_one("#prompt")
        await pilot.press("up")
        assert box.text == "first line"
        await pilot.press("down")
        assert box.text == ""
        await pilot.press(*"a", "ctrl+j", *"b")
        assert box.text == "a\nb" and not app.chat_screen.busy
        await pilot.press("enter")
        await pilot.pause(0.1)
        await until_idle(pilot)
        assert views(app)[-2] == ("user", "a\nb")


async def test_browser_filters_by_type_and_exports_markdown(chat_factory, embedder):
    """The type filter narrows the table; x writes every memory to exports/ as Markdown (0600)."""
    chat = chat_factory(ScriptedPolicy([]))
    chat.store.add(NS, "I prefer green tea.", embedder.embed_one("tea"), memory_type="preference")
    chat.store.add(NS, "Dentist on Friday.", embedder.embed_one("dentist"), memory_type="event")
    app = make_app(chat.settings, chat)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f2")
        await pilot.pause(0.2)
        browser = app.screen
        browser.query_one("#type").value = "event"
        await pilot.pause(0.2)
        table = browser.query_one("#memory-table")
        assert table.row_count == 1 and "Dentist" in str(table.get_row_at(0))
        await pilot.press("x")
        await pilot.pause(0.2)
        out = chat.settings.data_dir / "exports" / f"memories-{NS}.md"
        text = out.read_text()
        assert "Dentist on Friday." in text and "green tea" in text
        assert out.stat().st_mode & 0o777 == 0o600


async def test_model_switcher_loads_another_policy_and_keeps_the_conversation(chat_factory, settings):
    """F4 lists registry policies; choosing SmolLM2 loads it and the conversation carries over."""
    chat = chat_factory(StreamingPolicy([answer("Hi.")]))
    models = chat.settings.data_dir / "models"
    models.mkdir(exist_ok=True)
    for f in settings.models_dir.iterdir():       # the session's resolved files, no second copy
        if not (models / f.name).exists():
            (models / f.name).symlink_to(f)
    app = make_app(chat.settings, chat)
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "hello")
        before = [(m["role"], m["content"]) for m in chat.agent.conversation()]
        await pilot.press("f4")
        await pilot.pause(0.2)
        table = app.screen.query_one("#model-table")
        names = [table.get_row_at(i)[0].lstrip("● ") for i in range(table.row_count)]
        assert "qwen2.5-coder-0.5b" in names and "smollm2-135m" in names
        table.move_cursor(row=names.index("smollm2-135m"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: chat.policy_name == "smollm2-135m", tries=300, every=0.1)
        assert chat.policy_name == "smollm2-135m"
        # same messages; token counts are redone with the new model's tokenizer
        assert [(m["role"], m["content"]) for m in chat.agent.conversation()] == before
        await pilot.pause(0.2)
        assert "smollm2-135m" in app.title
    chat.assistant.policy.close()


async def test_first_run_prepares_the_model_with_progress_then_starts(settings, tmp_path, monkeypatch):
    """No model file yet: the app shows preparation progress, assembles it, and becomes ready."""
    import dataclasses

    from tui.screens.chat import ChatScreen

    fresh = dataclasses.replace(settings, data_dir=tmp_path)
    (tmp_path / "models").mkdir()
    emb = settings.models_dir / "all-MiniLM-L6-v2.f16.gguf"
    (tmp_path / "models" / emb.name).symlink_to(emb)        # only the policy is missing
    shown = []
    original = ChatScreen.show_progress
    monkeypatch.setattr(ChatScreen, "show_progress",
                        lambda self, label, done, total: (shown.append((label, done, total)),
                                                          original(self, label, done, total)))
    app = make_app(fresh)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app.chat is not None or app.load_error, tries=1200, every=0.1)
            assert app.load_error is None and app.chat is not None
            assert any("first run" in label and total for label, _, total in shown)
            from agemem_lite.model_files import get_spec
            assert (tmp_path / "models" / get_spec(fresh, "smollm2-135m").filename).is_file()
            assert not app.chat_screen.query_one("#loading").display
    finally:
        app.close_chat()


def test_the_activity_pane_says_when_a_search_used_the_message_instead_of_its_query():
    from tui.widgets.activity import render_result

    hit = {"memory": {"id": "mem_1", "content": "I live in Oxford"}, "similarity": 0.42}
    plain = render_result({"name": "Retrieve_memory", "ok": True, "text": "",
                           "data": {"query": "Oxford", "searched": "Oxford", "hits": [hit]}}).plain
    vague = render_result({"name": "Retrieve_memory", "ok": True, "text": "",
                           "data": {"query": "all", "searched": "Where do I live now?", "hits": [hit]}}).plain
    assert "instead" not in plain and "mem_1 0.42 I live in Oxford" in plain
    assert "searched the message instead: 'Where do I live now?'" in vague and "mem_1 0.42" in vague
    newest = {"memory": {"id": "mem_2", "content": "I like tea"}, "similarity": None}
    overview = render_result({"name": "Retrieve_memory", "ok": True, "text": "",
                              "data": {"query": "all", "searched": None, "newest": True, "hits": [newest]}}).plain
    empty = render_result({"name": "Retrieve_memory", "ok": True, "text": "",
                           "data": {"query": "your knowledge about me", "searched": "your knowledge about me",
                                    "newest": True, "hits": [newest]}}).plain
    assert "the query and the message name nothing: the newest memories" in overview
    assert "found nothing for 'your knowledge about me', and the message names nothing" in empty
