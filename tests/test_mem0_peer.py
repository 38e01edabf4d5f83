"""Mem0 peer adapter (agemem_lite.eval.mem0_peer): config building only, no servers."""

import pytest

from agemem_lite.eval.mem0_peer import Mem0PeerConfig, mem0_config, render_answer_messages, server_argv


def test_config_validation_needs_no_mem0():
    with pytest.raises(ValueError, match="offline"):
        Mem0PeerConfig(chat_url="https://api.openai.com/v1")
    with pytest.raises(ValueError, match="top_k"):
        Mem0PeerConfig(top_k=0)


def test_server_argv_and_answer_prompt():
    argv = server_argv("m.gguf", port=9000, alias="minilm", embedding=True, n_ctx=512, python="py")
    assert argv[:3] == ["py", "-m", "agemem_lite.eval.llama_server"]
    assert argv[-2:] == ["--embedding", "True"] and "127.0.0.1" in argv and "9000" in argv
    msgs = render_answer_messages("Where does Lena live?", ["Lena lives in Porto"])
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "- Lena lives in Porto" in msgs[1]["content"] and msgs[1]["content"].endswith("Where does Lena live?")


def test_mem0_accepts_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("MEM0_TELEMETRY", "False")
    monkeypatch.setenv("MEM0_DIR", str(tmp_path / "mem0"))
    pytest.importorskip("mem0")
    from mem0.configs.base import MemoryConfig

    cfg = Mem0PeerConfig(data_dir=str(tmp_path), chat_url="http://127.0.0.1:9001/v1",
                         embed_url="http://127.0.0.1:9002/v1")
    d = mem0_config(cfg)
    mc = MemoryConfig(**d)   # mem0's own validation; starts nothing
    assert mc.llm.provider == "openai" and mc.llm.config["openai_base_url"] == "http://127.0.0.1:9001/v1"
    assert mc.embedder.config["openai_base_url"] == "http://127.0.0.1:9002/v1"
    assert mc.embedder.config["embedding_dims"] == 384
    assert mc.vector_store.provider == "qdrant"
    assert mc.vector_store.config.path == str(tmp_path.resolve() / "qdrant")
    assert mc.history_db_path == str(tmp_path.resolve() / "history.db")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_harness_needs_a_session_for_mem0_and_skips_env_benches(tmp_path, embedder):
    """The Mem0 methods answer QA tasks only: with an environment bench alone there is no
    Mem0 job (so no session is asked for); with a QA bench and no session, a clear error."""
    from agemem_lite.eval import harness

    pytest.importorskip("minigrid")
    res = harness.run_eval(lambda: pytest.fail("no agemem method ran"), embedder, "babyai", "mem0", n=1,
                           out_dir=tmp_path / "env", policy_name="p")
    assert res.records == [] and res.ran == 0
    with pytest.raises(ValueError, match="Mem0 methods need `peer`"):
        harness.run_eval(lambda: None, embedder, "hotpot", "mem0-raw", n=1, out_dir=tmp_path / "qa", policy_name="p")


@pytest.mark.slow
def test_mem0_raw_through_the_harness_on_real_servers(tmp_path, settings, embedder):
    """Mem0 OSS (the extra) on llama.cpp servers serving SmolLM2 and MiniLM: one HotpotQA-format
    task stored verbatim (mem0-raw), searched and answered; the record, resume and report."""
    from agemem_lite.episodes import EpisodeConfig
    from agemem_lite.eval import harness, report
    from agemem_lite.eval.mem0_peer import Mem0Result, Mem0Session, why_unavailable
    from agemem_lite.model_files import resolve

    if why_unavailable():
        pytest.skip(why_unavailable())
    policy_gguf, embedder_gguf = resolve(settings, "smollm2-135m"), resolve(settings, settings.embedder)

    def peer():
        return Mem0Session(policy_gguf, embedder_gguf, data_dir=tmp_path / "peer", n_threads=2, n_ctx=4096,
                           chat_port=_free_port(), embed_port=_free_port())

    out, cfg = tmp_path / "eval", EpisodeConfig(n_max=2)
    res = harness.run_eval(lambda: pytest.fail("no agemem method ran"), embedder, "hotpot", "mem0-raw", n=1,
                           out_dir=out, config=cfg, policy_name="smollm2-135m", peer=peer)
    assert res.ran == 1
    rec = res.records[0]
    assert rec["method"] == "mem0-raw" and rec["peer"] == "mem0" and "Mem0 ADD events" in rec["judges"]["tool_calls"]
    ep = harness.record_episode(harness.load_record(harness.episode_path(out, "hotpot", "mem0-raw", rec["task_id"])))
    assert isinstance(ep, Mem0Result)
    # two stage-1 turns and two stage-2 turns (n_max = 2), each stored verbatim: the gold facts are in them
    assert len(ep.memories) == 4 and rec["metrics"]["mq"] == 1.0
    assert rec["metrics"]["steps"] == 1 and ep.llm_calls == 1           # no extraction call, one answer
    assert ep.retrieved and ep.prompt_tokens > 0 and 0.0 <= rec["metrics"]["f1"] <= 1.0
    again = harness.run_eval(lambda: pytest.fail("resumed"), embedder, "hotpot", "mem0-raw", n=1, out_dir=out,
                             config=cfg, policy_name="smollm2-135m", peer=lambda: pytest.fail("resumed"))
    assert again.ran == 0 and again.loaded == 1
    text, agg = report.render_report(out, plots=False)
    assert "mem0-raw" in agg["methods"] and "Mem0 ADD events" in text


@pytest.mark.skipif(__import__("sys").platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_server_children_die_with_a_killed_parent(tmp_path):
    """The peer's servers are started with _die_with_parent: when the eval process is killed
    (SIGKILL: no finally runs) they stop too instead of holding the ports."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pidfile = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        "from agemem_lite.eval.mem0_peer import _die_with_parent\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], preexec_fn=_die_with_parent)\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(120)\n")])
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    child = int(pidfile.read_text())
    os.kill(child, 0)                                   # the child runs
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.waitpid(child, os.WNOHANG)               # not our child: reaped by init, ignore
        except ChildProcessError:
            pass
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the server child outlived its killed parent")
