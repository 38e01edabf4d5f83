"""ChatSession: saved sessions, resume, cancel, regenerate and approval (scripted policy,
real store and embedder)."""

from __future__ import annotations

import dataclasses
import threading

import apsw
import pytest

from agemem_lite.agent import Agent
from agemem_lite.assistant import Assistant
from agemem_lite.chat import ChatSession, session_name
from agemem_lite.errors import StoreError
from agemem_lite.memory import schema
from agemem_lite.memory.store import MemoryStore
from agemem_lite.protocol import render_step
from scripted import ScriptedPolicy

NS = "default"


def add(content: str) -> str:
    return render_step("Kind: new fact.", calls=[{"name": "Add_memory", "arguments": {"content": content}}])


def answer(text: str) -> str:
    return render_step("Kind: chat.", answer=text)


@pytest.fixture
def make_chat(store, embedder, settings, tmp_path):
    def make(script, **overrides):
        s = dataclasses.replace(settings, data_dir=tmp_path, **overrides)
        policy = ScriptedPolicy(script)
        agent = Agent(policy, store, embedder, s, today="2025-01-01", demonstrations=False)
        return ChatSession(Assistant(agent, policy, embedder, store), s), policy

    return make


def test_first_message_creates_a_named_session_and_saves_the_turn(make_chat, store):
    chat, _ = make_chat([add("Lena's bike is red."), answer("Noted.")])
    turn = chat.send("My bike is red, remember that please")
    assert turn.answer == "Noted."
    [info] = chat.sessions()
    assert info.name == "My bike is red, remember that please" and info.turns == 1
    [t] = chat.transcript()
    assert t.user.startswith("My bike") and t.answer == "Noted."
    assert t.operations[0]["data"]["memory"]["content"] == "Lena's bike is red."


def test_a_reply_about_the_user_is_shown_and_saved_addressed_to_them(make_chat):
    """The trained policy answers in its memories' words ("The user's ..."); the user reads "Your ..."."""
    chat, _ = make_chat([answer("The user's favourite food is pho, and the user is vegan.")])
    turn = chat.send("What food do I love?")
    assert turn.answer == "Your favourite food is pho, and you are vegan."
    assert chat.transcript()[-1].answer == turn.answer
    raw = [m.content for m in chat.agent.context.messages if m.role == "assistant"][-1]
    assert "The user's favourite food is pho" in raw   # the context keeps the trained format


@pytest.mark.parametrize("reply, shown", [
    ("The user works at Tiommisk Holdings.", "You work at Tiommisk Holdings."),
    ("Yes, the user is on a keto diet.", "Yes, you are on a keto diet."),
    ("The user doesn't eat meat. The user also studies law.", "You don't eat meat. You also study law."),
    ("The user watches films and the user's sister goes running.", "You watch films and your sister goes running."),
    ("I told the user that.", "I told you that."),
    ("Your dentist is Dr. Patel.", "Your dentist is Dr. Patel."),
    ("The users of this app are many.", "The users of this app are many."),
])
def test_addressed_to_user(reply, shown):
    from agemem_lite.prompts import addressed_to_user

    assert addressed_to_user(reply) == shown


def test_resumed_session_continues_with_the_same_context_and_seen_ids(make_chat, store, embedder, settings):
    chat, _ = make_chat([add("Bike is red."), answer("Noted.")])
    chat.send("My bike is red.")
    saved, seen = chat.agent.conversation(), set(chat.agent.env.seen_ids)
    sid = chat.session.id
    other, _ = make_chat([])
    assert other.agent.conversation() == []
    transcript = other.resume(sid)
    assert [t.answer for t in transcript] == ["Noted."]
    assert other.agent.conversation() == saved
    assert other.agent.env.seen_ids == seen and seen


def test_cancelled_turn_leaves_the_context_as_before_and_is_saved_as_cancelled(make_chat, store):
    chat, _ = make_chat([add("Bike is red."), answer("never shown")])
    before = chat.agent.conversation()
    cancel = threading.Event()
    turn = chat.send("My bike is red.", on_step=lambda step: cancel.set(), cancel=cancel)
    assert turn.cancelled and turn.answer is None
    assert chat.agent.conversation() == before
    [t] = chat.transcript()
    assert t.cancelled
    # the finished step's memory change stays (it is in the history and can be undone)
    assert [m.content for m in store.list(NS)] == ["Bike is red."]


def test_regenerate_undoes_the_replaced_turns_memory_changes(make_chat, store):
    chat, _ = make_chat([add("Bike is blue."), answer("Stored blue."), add("Bike is red."), answer("Stored red.")])
    chat.send("My bike is red.")
    assert [m.content for m in store.list(NS)] == ["Bike is blue."]
    turn, problems = chat.regenerate()
    assert problems == [] and turn.answer == "Stored red."
    assert [m.content for m in store.list(NS)] == ["Bike is red."]
    assert [t.answer for t in chat.transcript()] == ["Stored red."]
    users = [m for m in chat.agent.conversation() if m["role"] == "user"]
    assert len(users) == 1 and users[0]["content"].endswith("My bike is red.")


def test_regenerate_without_a_turn_does_nothing(make_chat):
    chat, _ = make_chat([])
    assert chat.regenerate() is None


def test_ask_mode_rejection_stores_nothing_and_tells_the_model(make_chat, store):
    chat, policy = make_chat([add("Bike is red."), answer("Okay, not stored.")])
    asked = []
    chat.ask = lambda call: asked.append(call) or False
    chat.set_approval_mode("ask")
    turn = chat.send("My bike is red.")
    assert [c.name for c in asked] == ["Add_memory"]
    assert store.count(NS) == 0
    assert "rejected" in turn.steps[0].results[0]["text"]


def test_ask_mode_edit_stores_the_users_text_and_tells_the_model(make_chat, store):
    chat, _ = make_chat([add("Bike is red."), answer("Okay.")])
    chat.ask = lambda call: {**call.arguments, "content": "My bike is dark red."}
    chat.set_approval_mode("ask")
    turn = chat.send("My bike is red.")
    assert [m.content for m in store.list(NS)] == ["My bike is dark red."]
    assert "edited" in turn.steps[0].results[0]["text"]


def test_auto_mode_never_asks(make_chat, store):
    chat, _ = make_chat([add("Bike is red."), answer("Okay.")])
    chat.ask = lambda call: pytest.fail("auto mode asked")
    chat.send("My bike is red.")
    assert store.count(NS) == 1


def test_unknown_approval_mode_is_refused(make_chat):
    chat, _ = make_chat([])
    with pytest.raises(ValueError, match="approval mode"):
        chat.set_approval_mode("sometimes")


def test_rename_delete_and_markdown_export(make_chat, store):
    chat, _ = make_chat([add("Bike is red."), answer("Noted.")])
    chat.send("My bike is red.")
    sid = chat.session.id
    chat.rename("Bikes")
    md = chat.log.to_markdown(sid)
    assert md.startswith("# Bikes") and "stored mem_" in md and "Noted." in md
    chat.delete_session(sid)
    assert chat.sessions() == [] and chat.session is None
    with pytest.raises(StoreError, match="no chat session"):
        chat.log.turns(sid)
    assert store.count(NS) == 1   # the memories a session created outlive it


def test_deleted_session_text_leaves_the_database_file(make_chat, store, store_path):
    chat, _ = make_chat([answer("Fine.")])
    chat.send("zebra-quartz-7731 is my locker code")
    chat.delete_session(chat.session.id)
    store.checkpoint()
    raw = b"".join(p.read_bytes() for p in store_path.parent.glob("memory.db*"))
    assert b"zebra-quartz-7731" not in raw


def test_session_of_another_namespace_is_not_resumed(make_chat, store):
    chat, _ = make_chat([answer("Hi.")], namespace="work")
    chat.send("hello")
    home, _ = make_chat([])
    with pytest.raises(StoreError, match="namespace 'work'"):
        home.resume(chat.session.id)


def test_version_1_database_gains_sessions_and_keeps_memories(store_path, monkeypatch, unit_vectors):
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
    with MemoryStore(store_path) as s:
        s.add(NS, "kept across the upgrade", unit_vectors(1)[0])
    monkeypatch.undo()
    with MemoryStore(store_path) as s:
        assert [m.content for m in s.list(NS)] == ["kept across the upgrade"]
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == schema.schema_version() >= 2
        from agemem_lite.memory.sessions import SessionLog
        log = SessionLog(s)
        info = log.create("x", NS, "p")
        assert log.list(NS)[0].id == info.id
    assert isinstance(apsw.Connection(str(store_path)), apsw.Connection)


def test_session_name_is_the_first_line_shortened():
    assert session_name("  hello\n world ") == "hello world"
    assert len(session_name("x" * 100)) == 40 and session_name("x" * 100).endswith("…")


def test_approval_mode_comes_from_the_settings(make_chat, store):
    chat, _ = make_chat([add("Bike is red."), answer("Okay.")], approval="ask")
    chat.ask = lambda call: False
    chat.send("My bike is red.")
    assert chat.approval_mode == "ask" and store.count(NS) == 0


def test_unknown_approval_setting_is_a_config_error(settings):
    from agemem_lite.errors import ConfigError

    with pytest.raises(ConfigError, match="approval"):
        dataclasses.replace(settings, approval="sometimes")
