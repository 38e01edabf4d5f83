"""The real default policy (agemem-0.5b: Qwen2.5-Coder-0.5B Q4_K_M + the shipped LoRA
adapter) remembers across processes.

No scripted tool calls: the model itself decides to store the fact, and a fresh
process answers from LTM (via the environment's automatic retrieval or its own
Retrieve_memory). Greedy decoding and a fixed seed keep it stable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from agemem_lite.config import Settings
from agemem_lite.memory.store import MemoryStore

pytestmark = [pytest.mark.default_model, pytest.mark.slow]


def _ask(data_dir, message: str) -> dict:
    """One turn in a new process, as a user would run it."""
    env = {**os.environ, "AGEMEM_HOME": str(data_dir)}
    out = subprocess.run(
        [sys.executable, "-m", "agemem_lite", "--json", "ask", message, "--temperature", "0", "--seed", "0"],
        capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A data dir for this module (the default model is assembled into it: ~0.5 GB, removed after)."""
    d = tmp_path_factory.mktemp("agemem-home")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_fact_stated_in_one_process_is_answered_in_a_fresh_one(home):
    told = _ask(home, "My sister Lena's birthday is on March 14.")
    adds = [r for r in told["operations"] if r["name"] == "Add_memory"]
    assert adds, f"the model stored nothing: {[s['completion'] for s in told['steps']]}"

    s = Settings.load(home)
    with MemoryStore(s.db_path) as store:
        stored = [m.content for m in store.list(s.namespace)]
    assert any("March 14" in c for c in stored), stored

    asked = _ask(home, "When is my sister's birthday?")
    assert asked["answer"] and "march 14" in asked["answer"].lower(), asked["answer"]


def test_second_fact_does_not_displace_the_first(home):
    told = _ask(home, "My dentist is Dr. Okafor, his office is in Leeds.")
    assert any(r["name"] == "Add_memory" for r in told["operations"]), told["steps"][-1]["completion"]
    asked = _ask(home, "What is the name of my dentist?")
    assert asked["answer"] and "okafor" in asked["answer"].lower(), asked["answer"]
    asked = _ask(home, "When is my sister's birthday?")
    assert "march 14" in (asked["answer"] or "").lower(), asked["answer"]


def test_demonstration_facts_do_not_leak_into_answers(home):
    """The prompt's worked examples store 'ramen' for a made-up user; this user never said it."""
    asked = _ask(home, "What is my favourite food?")
    assert "ramen" not in (asked["answer"] or "").lower(), asked["answer"]
