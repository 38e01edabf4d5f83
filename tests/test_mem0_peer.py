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
    assert argv[:3] == ["py", "-m", "llama_cpp.server"]
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
