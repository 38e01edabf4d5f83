"""The ``agemem`` command: documented, one-line errors, memory commands through the library."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from agemem_lite.cli import main
from agemem_lite.config import Settings
from agemem_lite.memory.store import MemoryStore

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _all_commands(group: click.Group, prefix: str = "agemem"):
    for name, cmd in group.commands.items():
        path = f"{prefix} {name}"
        yield path, cmd
        if isinstance(cmd, click.Group):
            yield from _all_commands(cmd, path)


COMMANDS = list(_all_commands(main))


def test_there_are_commands_to_check():
    assert {"agemem chat", "agemem ask", "agemem memory search", "agemem models pull"} <= {p for p, _ in COMMANDS}


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[p for p, _ in COMMANDS])
def test_every_command_has_help_with_an_example(path, cmd):
    assert cmd.help and cmd.help.strip(), path
    assert "Example:" in cmd.help, f"{path} has no Example: line"


@pytest.mark.parametrize("path,cmd", [(p, c) for p, c in COMMANDS if not isinstance(c, click.Group)],
                         ids=[p for p, c in COMMANDS if not isinstance(c, click.Group)])
def test_every_command_appears_in_readme(path, cmd):
    assert f"`{path}" in README, f"{path} is not documented in README.md"


def test_readme_starts_with_the_two_setup_commands():
    block = re.search(r"```bash\n(.*?)```", README, re.S).group(1).strip().splitlines()
    assert len(block) == 2
    assert block[0].endswith("agemem chat")
    assert "pytest" in block[1]
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert block[1] in ci, ".ci/run must run the README's test command"


@pytest.fixture()
def cli(tmp_path, data_dir, embedder):
    """Invoke the CLI on a fresh data dir that shares the session's model files."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(Path(data_dir) / "models", target_is_directory=True)
    runner = CliRunner()

    def run(*args, input=None):
        return runner.invoke(main, ["--data-dir", str(home), *args], input=input, catch_exceptions=False)
    run.home = home
    return run


def test_memory_add_search_edit_undo_delete_round_trip(cli):
    assert cli("memory", "add", "My bike is a blue Gazelle", "--tag", "bike").exit_code == 0
    assert cli("memory", "add", "I work at Siemens in Munich").exit_code == 0
    r = cli("--json", "memory", "search", "which bicycle do I ride", "-k", "1")
    hits = json.loads(r.output)
    assert hits[0]["content"] == "My bike is a blue Gazelle"
    assert hits[0]["metadata"] == {"tags": ["bike"]}
    assert cli("memory", "edit", hits[0]["id"], "My bike is a red Gazelle").exit_code == 0
    hist = json.loads(cli("--json", "memory", "history", hits[0]["id"]).output)
    assert hist[0]["op"] == "update" and hist[0]["old_content"] == "My bike is a blue Gazelle"
    assert cli("memory", "undo", str(hist[0]["id"])).exit_code == 0
    s = Settings.load(cli.home)
    with MemoryStore(s.db_path) as store:
        assert store.get("default", hits[0]["id"]).content == "My bike is a blue Gazelle"
    assert cli("memory", "delete", hits[0]["id"], "--yes").exit_code == 0
    with MemoryStore(s.db_path) as store:
        assert [m.content for m in store.list("default")] == ["I work at Siemens in Munich"]


def test_namespaces_are_separate(cli):
    cli("memory", "--namespace", "work", "add", "Standup is at 9:30")
    assert json.loads(cli("--json", "memory", "list").output) == []
    work = json.loads(cli("--json", "memory", "-n", "work", "list").output)
    assert [m["content"] for m in work] == ["Standup is at 9:30"]


def test_delete_asks_for_confirmation_and_keeps_memory_on_no(cli):
    cli("memory", "add", "keep me")
    r = CliRunner().invoke(main, ["--data-dir", str(cli.home), "memory", "delete", "mem_1"], input="n\n")
    assert r.exit_code == 1
    with MemoryStore(Settings.load(cli.home).db_path) as store:
        assert store.count("default") == 1


def test_unknown_memory_id_is_one_line_error(cli):
    r = CliRunner().invoke(main, ["--data-dir", str(cli.home), "memory", "delete", "mem_99", "--yes"])
    assert r.exit_code == 1
    assert r.output.strip().count("\n") == 0 and "mem_99" in r.output
    assert "Traceback" not in r.output


def test_bad_argument_is_usage_error(cli):
    r = CliRunner().invoke(main, ["--data-dir", str(cli.home), "memory", "list", "--limit", "0"])
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_corrupt_database_is_one_line_error(cli):
    s = Settings.load(cli.home)
    s.db_path.write_bytes(b"this is not a database" * 100)
    r = CliRunner().invoke(main, ["--data-dir", str(cli.home), "memory", "list"])
    assert r.exit_code == 1
    assert r.output.startswith("Error:") and r.output.strip().count("\n") == 0


def test_bad_config_file_is_one_line_error(cli):
    (cli.home / "config.toml").write_text("context_budget = 999999\n")
    r = CliRunner().invoke(main, ["--data-dir", str(cli.home), "memory", "list"])
    assert r.exit_code == 1 and "context_budget" in r.output and "Traceback" not in r.output


def test_corrupt_policy_file_is_one_line_error(cli, tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    r = CliRunner().invoke(main, ["--data-dir", str(cli.home), "models", "add", str(bad), "--name", "broken"])
    assert r.exit_code == 1 and "Traceback" not in r.output and r.output.startswith("Error:")


def test_average_adapters_bad_input_is_one_line(cli, tmp_path):
    run = lambda *a: CliRunner().invoke(main, ["--data-dir", str(cli.home), "average-adapters", *a])  # noqa: E731
    r = run(str(tmp_path / "out.gguf"), "a.gguf=half")
    assert r.exit_code == 2 and "FILE=WEIGHT" in r.output
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    for args in ([str(tmp_path / "missing.gguf")], [str(bad) + "=0.5"]):
        r = run(str(tmp_path / "out.gguf"), *args, "--base", str(bad))
        assert r.exit_code == 1 and "Traceback" not in r.output and r.output.startswith("Error:"), r.output
        assert len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "out.gguf").exists()


def test_preference_round_refuses_a_policy_without_an_adapter_in_one_line(cli, tmp_path):
    """A prompted policy has no adapter to continue; a broken --adapter is named; nothing is written."""
    run = lambda *a: CliRunner().invoke(main, ["--data-dir", str(cli.home), "preference-round", *a])  # noqa: E731
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    for args, says in ((["--policy", "smollm2-135m"], "no LoRA adapter"), (["--adapter", str(bad)], "broken.gguf")):
        r = run(str(tmp_path / "dpo"), *args, "--n", "2")
        assert r.exit_code == 1 and r.output.startswith("Error:") and says in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1
    wrong = tmp_path / "records.json"
    wrong.write_text('[{"id": "train-0-0"}]')
    r = run(str(tmp_path / "dpo"), "--policy", "agemem-0.5b", "--n", "2", "--records", str(wrong))
    assert r.exit_code == 1 and "not the records of 2 items" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "dpo").exists()
    assert run(str(tmp_path / "dpo"), "--lr", "fast").exit_code == 2


def test_import_and_export_notes(cli, tmp_path):
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "trip.md").write_text("# Trip\n\nFlight to Lisbon on May 3.\n\n## Hotel\n\nHotel Avenida, booking 7781.\n")
    (notes / "sub" / "todo.txt").write_text("Buy stamps.\n")
    (notes / ".hidden").mkdir()
    (notes / ".hidden" / "secret.md").write_text("not imported")
    stats = json.loads(cli("--json", "memory", "import", str(notes)).output)
    assert stats["files"] == 2 and stats["chunks"] == 3
    again = json.loads(cli("--json", "memory", "import", str(notes)).output)
    assert again["replaced"] == 3
    hits = json.loads(cli("--json", "memory", "search", "hotel booking number", "-k", "1").output)
    assert "7781" in hits[0]["content"] and hits[0]["metadata"]["heading"] == "Hotel"
    out_md, out_json = tmp_path / "m.md", tmp_path / "m.json"
    cli("memory", "export", str(out_md))
    cli("memory", "export", str(out_json))
    assert "Buy stamps." in out_md.read_text() and "not imported" not in out_md.read_text()
    assert len(json.loads(out_json.read_text())) == 3
