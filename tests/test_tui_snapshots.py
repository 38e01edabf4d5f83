"""SVG snapshots of the app's main screens at 80x24 (pytest-textual-snapshot).

Update after an intended layout change with ``pytest tests/test_tui_snapshots.py
--snapshot-update`` and look at the new SVGs before committing them. Clock
values are frozen so the screens are the same on every day and machine; the
policy is scripted so the conversation is the same on every run.
"""

from __future__ import annotations

import pytest

from agemem_lite.protocol import render_step
from scripted import ScriptedPolicy
from tui import make_app
from tui.screens.approval import ApprovalScreen

pytestmark = pytest.mark.tui
NS = "default"
FROZEN = "2026-03-14T09:26:53.000000+00:00"


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    """Every timestamp the store and the session log write is FROZEN."""
    from agemem_lite.memory import sessions, store

    monkeypatch.setattr(store, "now_utc", lambda: FROZEN)
    monkeypatch.setattr(sessions, "now_utc", lambda: FROZEN)


def add(content):
    return render_step("Kind: new fact.", calls=[{"name": "Add_memory", "arguments": {"content": content}}])


def update(mid, content):
    return render_step("Kind: changed fact.",
                       calls=[{"name": "Update_memory", "arguments": {"memory_id": mid, "content": content}}])


def answer(text):
    return render_step("Kind: chat.", answer=text)


async def wait_idle(pilot):
    await pilot.pause(0.05)
    while pilot.app.chat_screen.busy:
        await pilot.pause(0.05)
    await pilot.pause(0.3)


async def say(pilot, text):
    await pilot.click("#prompt")
    await pilot.press(*text, "enter")
    pilot.app.chat_screen.query_one("#prompt").cursor_blink = False   # a blinking cursor made SVGs timing-dependent
    await wait_idle(pilot)


@pytest.fixture
def seeded(chat_factory, embedder):
    """A chat whose store holds three memories."""
    def make(script):
        chat = chat_factory(ScriptedPolicy(script))
        for text, mtype in [("Lena's birthday is on 14 March.", "event"), ("I prefer green tea.", "preference"),
                            ("My bike is a red Gazelle.", "fact")]:
            chat.store.add(NS, text, embedder.embed_one(text), memory_type=mtype)
        return chat
    return make


def test_chat_screen_after_a_turn_with_memory_activity(snap_compare, seeded):
    """Conversation, the Add in the activity pane with the related memories shown, the meter."""
    chat = seeded([add("My sister Lena lives in Porto."), answer("Noted: **Lena** lives in Porto.")])

    async def run_before(pilot):
        await say(pilot, "My sister Lena lives in Porto.")

    assert snap_compare(make_app(chat.settings, chat), terminal_size=(80, 24), run_before=run_before)


def test_memory_browser(snap_compare, seeded):
    """F2: the memory table with types and dates, the detail line, the filters."""
    chat = seeded([])
    assert snap_compare(make_app(chat.settings, chat), press=["f2", "_"], terminal_size=(80, 24))


def test_approval_dialog_shows_an_update_as_before_and_after(snap_compare, seeded):
    """Approval mode: an Update waits for the user with the old and the new text."""
    chat = seeded([update("mem_2", "I prefer jasmine tea."), answer("Updated.")])
    chat.agent.env.seen_ids.add("mem_2")

    async def run_before(pilot):
        await pilot.press("f5")
        await pilot.click("#prompt")
        await pilot.press(*"I now prefer jasmine tea.", "enter")
        for _ in range(100):
            await pilot.pause(0.05)
            if isinstance(pilot.app.screen, ApprovalScreen):
                break
        await pilot.pause(0.3)

    assert snap_compare(make_app(chat.settings, chat), terminal_size=(80, 24), run_before=run_before)


def test_help_screen(snap_compare, seeded):
    """F1: the key bindings."""
    chat = seeded([])
    assert snap_compare(make_app(chat.settings, chat), press=["f1", "_"], terminal_size=(80, 24))


def test_sessions_screen(snap_compare, seeded):
    """F3: two saved sessions, the current one marked."""
    chat = seeded([answer("Hello!"), answer("Hi again.")])

    async def run_before(pilot):
        await say(pilot, "Good morning")
        await pilot.press("ctrl+n")
        await say(pilot, "Plans for the weekend")
        await pilot.press("f3")
        await pilot.pause(0.3)

    assert snap_compare(make_app(chat.settings, chat), terminal_size=(80, 24), run_before=run_before)
