"""End to end in a real terminal: tmux runs ``agemem chat``, keys are typed, the screen is read.

This is the path a user takes (console script, terminal detection, the app's
own event loop, quitting), which Pilot does not exercise.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import uuid

import pytest

pytestmark = [pytest.mark.tui, pytest.mark.slow]

if shutil.which("tmux") is None:
    pytest.skip("tmux is not installed (apt install tmux) — the real-terminal test needs it",
                allow_module_level=True)


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def screen(name: str) -> str:
    return tmux("capture-pane", "-p", "-t", name)


def wait_for(name: str, predicate, timeout: float, what: str) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = screen(name)
        if predicate(text):
            return text
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; screen was:\n{text}")


def test_chat_in_tmux_answers_and_quits_cleanly(settings, small_policy, embedder, tmp_path):
    """Type a message in a real terminal; the saved answer is on screen; Ctrl+Q exits."""
    from agemem_lite.memory.sessions import SessionLog
    from agemem_lite.memory.store import MemoryStore

    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    for f in settings.models_dir.iterdir():   # the session's resolved models, not a second copy
        (home / "models" / f.name).symlink_to(f)
    name = f"agemem-{uuid.uuid4().hex[:8]}"
    cmd = (f"AGEMEM_HOME={home} {sys.executable} -m agemem_lite chat --policy smollm2-135m "
           f"--max-steps 2; echo EXITED $?; sleep 30")
    tmux("new-session", "-d", "-s", name, "-x", "160", "-y", "30", cmd)
    try:
        wait_for(name, lambda s: "smollm2-135m" in s and "Message" in s, 120, "the app to load")
        tmux("send-keys", "-t", name, "-l", "Hello there")
        tmux("send-keys", "-t", name, "Enter")
        db = home / "memory.db"
        deadline, answer = time.monotonic() + 180, None
        while time.monotonic() < deadline and answer is None:
            time.sleep(0.5)
            if db.exists():
                with MemoryStore(db) as store:
                    log = SessionLog(store)
                    sessions = log.list()
                    turns = log.turns(sessions[0].id) if sessions else []
                    if turns:
                        answer = turns[0].answer
        assert answer, "no turn was saved"
        # Markdown marks are rendered, not shown: compare words only (160 columns: no wrap in 3 words)
        words = lambda s: " ".join(re.sub(r"[^0-9A-Za-z]+", " ", s).split())
        first_words = " ".join(words(answer).split()[:3])
        wait_for(name, lambda s: first_words in words(s), 30, f"the answer {first_words!r}")
        tmux("send-keys", "-t", name, "C-q")
        text = wait_for(name, lambda s: "EXITED" in s, 60, "the app to exit")
        assert "EXITED 0" in text and "Traceback" not in text
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
    with MemoryStore(home / "memory.db") as store:
        assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
