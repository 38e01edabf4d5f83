"""Long-horizon environments through ``agemem eval``: tasks, records, resume, report, CLI errors.

Games are played by ``ScriptedPolicy`` driven by ``GameOracle``, which answers every
game turn with the environment's expert action (BabyAIBot, a pyperplan plan); the store
(SQLite + sqlite-vec) and the embedder are real. Needs the ``envs`` extra (``pip install
'agemem-lite[envs]'``); CI installs only ``.[dev]``, so those tests skip there. The CLI
error tests need no extra: they pretend a package or Java is missing.
"""

from __future__ import annotations

import json
import shutil
from importlib.util import find_spec

import pytest
from click.testing import CliRunner

from agemem_lite import prompts
from agemem_lite.baselines import METHODS
from agemem_lite.cli import main
from agemem_lite.envs import make_env
from agemem_lite.envs.runner import EnvConfig, EnvEpisode
from agemem_lite.episodes import EpisodeConfig
from agemem_lite.errors import ConfigError
from agemem_lite.eval import env_benches, harness, report
from agemem_lite.eval.judges import LLMJudge
from agemem_lite.protocol import render_step
from scripted import ScriptedPolicy

EXTRA = ("minigrid", "pyperplan", "pypddl_datasets")
needs_envs = pytest.mark.skipif(any(find_spec(m) is None for m in EXTRA),
                                reason="the envs extra is not installed (pip install 'agemem-lite[envs]')")

CFG = EpisodeConfig(n_max=3, demonstrations=False)
ECFG = EnvConfig(n_prior=1, n_distractors=2, max_env_turns=40)
BENCHES = ["babyai", "tyreworld"]
STAGE_1_2 = ("Things I learned about", "Notes from an earlier", "An observation from another game")


def need_envs() -> None:
    for m in EXTRA:
        pytest.importorskip(m)


def answer(text: str) -> str:
    return render_step("Next.", answer=text)


class GameOracle:
    """A ``ScriptedPolicy`` step: stage-1 notes are stored (when tools are offered), other
    stage-1/2 turns get "Noted.", and each game turn gets the next expert action."""

    def __init__(self, tasks):
        self.plans = {}
        for t in tasks:
            env = make_env(t.env, **t.env_kwargs)
            start = env.reset(t.seed)
            self.plans[(start.goal, start.observation)] = env.expert_actions()
            env.close()
        self.queue: list[str] = []

    def __call__(self, messages, allow_tools) -> str:
        last = messages[-1]
        if last["role"] != "user":                    # a tool result came back
            return answer("Noted.")
        text = prompts.user_text_of(last["content"])
        if text.startswith(STAGE_1_2):
            self.queue = []
            if allow_tools and text.startswith("Things I learned about"):
                return render_step("Rules.", calls=[{"name": "Add_memory", "arguments": {"content": text}}])
            return answer("Noted.")
        if text.startswith("New game ("):
            self.queue = list(next(p for (g, o), p in self.plans.items() if g in text and o in text))
        return answer(self.queue.pop(0) if self.queue else "fly away")


def oracle(benches=BENCHES, n=1, seed=0) -> ScriptedPolicy:
    tasks = [t for b in benches for t in harness.build_tasks(b, n, seed, env_config=ECFG)]
    return ScriptedPolicy([GameOracle(tasks)] * 100_000)


@pytest.fixture
def run(embedder, settings, tmp_path):
    """``run(out_name, policy=None, **kw)``: run_eval with the game oracle, the real embedder, CFG, ECFG."""
    def go(out="out", policy=None, benches=BENCHES, n=1, seed=0, **kw):
        policy = policy or oracle(benches, n, seed)
        kw = {"methods": None, "config": CFG, "env_config": ECFG, "settings": settings, **kw}
        return harness.run_eval(policy, embedder, benches, n=n, seed=seed, out_dir=tmp_path / out, **kw), policy
    return go


@pytest.fixture(scope="module")
def env_run(embedder, settings, tmp_path_factory):
    """Every method on one BabyAI and one tyreworld game, run once for the module."""
    need_envs()
    out = tmp_path_factory.mktemp("eval-envs") / "out"
    return harness.run_eval(oracle(), embedder, BENCHES, n=1, seed=0, out_dir=out, config=CFG, env_config=ECFG,
                            settings=settings)


# -- tasks --------------------------------------------------------------------------------------

@needs_envs
def test_env_bench_tasks_are_deterministic_and_a_larger_n_extends_them():
    a = harness.build_tasks("tyreworld", 2, 0, env_config=ECFG)
    assert [t.to_dict() for t in a] == [t.to_dict() for t in harness.build_tasks("tyreworld", 2, 0, env_config=ECFG)]
    assert [t.id for t in harness.build_tasks("tyreworld", 3, 0, env_config=ECFG)][:2] == [t.id for t in a]
    assert {t.id for t in a}.isdisjoint(t.id for t in harness.build_tasks("tyreworld", 2, 1, env_config=ECFG))
    assert all(t.env == "pddl" and t.env_kwargs == {"domain": "tyreworld", "size": 1} for t in a)
    # ECFG: 1 trial; at most 2 observations (fewer when the other game is solved early)
    assert all(len(t.information) == 2 and 1 <= len(t.distractors) <= 2 for t in a)
    env = make_env("pddl", domain="blocksworld", size=4)
    for s in env_benches.instance_seeds("blocksworld", 6, 0):      # never an instance solved at reset
        env.reset(s)
        assert not env.success and s < 100_000


# -- the run --------------------------------------------------------------------------------------

@needs_envs
def test_the_expert_solves_every_game_with_every_method(env_run):
    recs = env_run.records
    assert len(recs) == len(BENCHES) * len(METHODS) == env_run.ran
    assert [r["bench"] for r in recs] == [b for b in BENCHES for _ in METHODS]     # bench, task, method
    assert [r["method"] for r in recs[:len(METHODS)]] == list(METHODS)
    for r in recs:
        m = r["metrics"]
        assert r["kind"] == "env" and m["success"] == 1.0 and m["progress"] == 1.0, r["task_id"]
        assert m["game_turns"] == m["env_steps"] > 0 and m["invalid_actions"] == 0
        assert m["prompt_tokens"] > 0 and m["wall_s"] > 0 and "mq" not in m and "f1" not in m
        assert r["judges"] == env_benches.JUDGES
    agemem = [r for r in recs if r["method"] == "agemem"]
    assert all(r["metrics"]["tool_calls"] == {"Add_memory": 1} for r in agemem)
    assert all(r["episode"]["memories"][0]["id"] == "mem_1" for r in agemem)     # a fresh store per episode
    assert all(r["metrics"]["tool_calls"] == {} for r in recs if r["method"] == "no-memory")


@needs_envs
def test_env_episode_files_round_trip_and_no_temp_files_remain(env_run):
    out = env_run.out_dir
    for rec in env_run.records:
        path = harness.episode_path(out, rec["bench"], rec["method"], rec["task_id"])
        assert path.parent == out / "episodes" / rec["bench"] / rec["method"]
        stored = harness.load_record(path)
        assert stored == json.loads(json.dumps(rec))
        ep = harness.record_episode(stored)
        assert isinstance(ep, EnvEpisode) and ep.to_dict() == stored["episode"]
        assert env_benches.env_metrics(ep) == stored["metrics"] and stored["task"]["id"] == rec["task_id"]
    assert [p for p in out.rglob("*") if p.name.startswith(".")] == []
    manifest = json.loads((out / harness.MANIFEST).read_text())
    assert manifest["identity"]["env_config"]["max_env_turns"] == 40


@needs_envs
def test_rerun_loads_finished_games_and_a_larger_n_extends_them(run):
    methods = ["agemem", "no-memory"]
    first, _ = run(benches=["babyai"], methods=methods)
    again, idle = run(benches=["babyai"], methods=methods, policy=ScriptedPolicy([]), policy_name="scripted")
    assert idle.calls == [] and again.ran == 0 and again.loaded == 2
    assert [r["metrics"]["success"] for r in again.records] == [r["metrics"]["success"] for r in first.records]
    more, _ = run(benches=["babyai"], methods=methods, n=2)
    assert more.ran == more.loaded == 2 and more.records[:2] == again.records


@needs_envs
def test_rerun_with_another_env_config_is_refused(run):
    run(benches=["babyai"], methods=["no-memory"])
    with pytest.raises(ConfigError, match="env.max_env_turns=40 \\(now 5\\)"):
        run(benches=["babyai"], methods=["no-memory"], env_config=EnvConfig(n_prior=1, n_distractors=2,
                                                                           max_env_turns=5))


@needs_envs
def test_a_failed_game_scores_the_best_progress_it_reached(run, tmp_path):
    """Three invalid moves on tyreworld: not solved; progress = the goal share true at the start."""
    task = harness.build_tasks("tyreworld", 1, 0, env_config=ECFG)[0]
    env = make_env("pddl", domain="tyreworld", size=1)
    env.reset(task.seed)
    start = env.progress
    policy = ScriptedPolicy([answer("fly away")] * 10)         # replies in stages 1-2, then 3 bad moves
    res, _ = run(benches=["tyreworld"], methods=["no-memory"], policy=policy,
                 env_config=EnvConfig(n_prior=1, n_distractors=2, max_env_turns=3))
    m = res.records[0]["metrics"]
    assert start > 0 and m["success"] == 0.0 and m["progress"] == pytest.approx(start)
    assert m["game_turns"] == m["invalid_actions"] == 3 and m["env_steps"] == 0
    text = report.write_report(tmp_path / "out", plots=False)[0].read_text()
    assert f"| no-memory | 0.0 / {100 * start:.1f} (n=1) |" in text


# -- report ---------------------------------------------------------------------------------------

@needs_envs
def test_report_gives_env_columns_success_and_progress_cells(env_run):
    text, agg = report.render_report(env_run.out_dir, plots=False)
    assert ("| method | babyai (success / progress) | tyreworld (success / progress) "
            "| mean env (success / progress) |") in text
    for m in METHODS:
        assert f"| {m} | 100.0 / 100.0 (n=1) | 100.0 / 100.0 (n=1) | 100.0 / 100.0 |" in text
        assert f"| {m} | n/a (env) | n/a (env) |" in text                           # MQ
    assert "- env columns, judge: env: success rate / progress rate, from the environment." in text
    assert "MQ is not defined for environment benchmarks" in text
    assert "task score = EM/F1 vs gold (QA); success / progress from the environment (env)" in text
    assert "- environments: success rate = games solved" in text and "max_env_turns=40" in text
    assert "game turns" in text and "all benchmarks pooled" in text                 # wall time; Table 3
    assert agg["kinds"] == {"babyai": "env", "tyreworld": "env"}
    assert agg["cells"]["agemem"]["babyai"]["success"] == 1.0 and agg["tools"]["agemem"]["Add_memory"] == 1


class YesJudge:
    """A judge policy that says yes to every answer (the LLM judge's control flow only)."""

    name = "yes"

    def summarise(self, instruction: str) -> str:
        return "yes"

    def close(self) -> None:
        pass


@needs_envs
def test_a_qa_run_gains_env_benches_and_the_report_keeps_the_two_scores_apart(run, tmp_path):
    run(benches=["hotpot"], methods=["no-memory"], policy=ScriptedPolicy([answer("Noted.")] * 20))
    manifest = json.loads((tmp_path / "out" / harness.MANIFEST).read_text())
    assert "env_config" not in manifest["identity"]
    # the same folder, now with a game too (the hotpot episode is loaded): the EnvConfig joins the identity
    res, _ = run(benches=["hotpot", "tyreworld"], methods=["no-memory"], policy=oracle(["tyreworld"]),
                 judge=LLMJudge("yes", YesJudge()))
    assert res.loaded == 1 and res.ran == 1
    hot, tyre = res.records
    assert hot["metrics"]["llm"] == 1.0 and "llm" not in tyre["metrics"]          # the LLM judge skips games
    assert tyre["metrics"]["success"] == 1.0
    manifest = json.loads((tmp_path / "out" / harness.MANIFEST).read_text())
    assert manifest["identity"]["env_config"]["max_env_turns"] == 40
    text = report.render_report(tmp_path / "out", plots=False)[0]
    assert "| method | hotpot (F1 / EM) | tyreworld (success / progress) |" in text
    assert "| no-memory | 0.0 / 0.0 (n=1) | 100.0 / 100.0 (n=1) |" in text
    assert "- QA columns, judge: EM/F1 vs gold" in text and "- env columns, judge: env: success rate" in text
    assert "QA benchmarks, pooled: hotpot" in text and "environments (per game), pooled: tyreworld" in text
    assert "| no-memory | 100.0 (n=1) | n/a (env) |" in text                       # LLM-judge table
    # a QA-only rerun of that folder is not refused for leaving the env config out
    again, _ = run(benches=["hotpot"], methods=["no-memory"], policy=ScriptedPolicy([]))
    assert again.loaded == 1 and again.ran == 0


# -- CLI errors -------------------------------------------------------------------------------------

def _eval(tmp_path, *args):
    return CliRunner().invoke(main, ["--data-dir", str(tmp_path), "eval", *args, "--n", "1"])


def _one_line_error(r, message):
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert r.output.startswith("Error:") and r.output.strip().count("\n") == 0, r.output
    assert message in r.output and "Traceback" not in r.output


def test_an_env_bench_without_the_extra_is_a_one_line_error_naming_the_install(tmp_path, monkeypatch):
    monkeypatch.setattr(env_benches, "find_spec", lambda m: None if m == "minigrid" else object())
    r = _eval(tmp_path, "--bench", "hotpot,babyai")
    _one_line_error(r, "benchmark 'babyai' needs minigrid (not installed): pip install 'agemem-lite[envs]'")


def test_scienceworld_without_java_is_a_one_line_error_naming_the_runtime(tmp_path, monkeypatch):
    monkeypatch.setattr(env_benches, "find_spec", lambda m: object())
    monkeypatch.setattr(shutil, "which", lambda name: None)
    _one_line_error(_eval(tmp_path, "--bench", "scienceworld"), "needs a Java runtime (JRE >= 8)")


@pytest.mark.parametrize("bench,message", [
    ("babyai:levels.json", "benchmark 'babyai' is generated from --n and --seed; it takes no file"),
    ("webshop", "choose from hotpot, longmemeval, locomo, babyai, tyreworld, blocksworld, scienceworld, alfworld"),
])
def test_bad_env_bench_names_are_one_line_errors(tmp_path, bench, message):
    _one_line_error(_eval(tmp_path, "--bench", bench), message)


@needs_envs
def test_cli_runs_env_benches_prints_success_progress_and_resumes(tmp_path, monkeypatch, embedder):
    """``agemem eval --bench babyai,tyreworld``: the library run behind the CLI, with the game oracle
    standing in for the GGUF policy (opened through the same ``open_policy`` hook)."""
    from agemem_lite.cli import eval as eval_cli

    policy = oracle()
    monkeypatch.setattr(eval_cli, "open_policy", lambda settings, name=None: policy)
    monkeypatch.setattr(eval_cli, "load_embedder", lambda settings, progress=None: embedder)
    monkeypatch.setattr(embedder, "close", lambda: None)          # the session's embedder outlives the CLI
    out = tmp_path / "run"
    args = ["--bench", "babyai,tyreworld", "--methods", "agemem,no-memory", "--seed", "0",
            "--max-env-turns", "40", "--out", str(out)]
    r = _eval(tmp_path, *args)
    assert r.exit_code == 0, r.output
    assert "4 episodes run, 0 loaded" in r.output and "judge: env: success rate / progress rate" in r.output
    assert "| agemem | 100.0 / 100.0 (n=1) | 100.0 / 100.0 (n=1) | 100.0 / 100.0 |" in r.output
    assert len(list(out.glob("episodes/*/*/*.json"))) == 4 and (out / "report.md").exists()
    again = _eval(tmp_path, *args)
    assert again.exit_code == 0 and "0 episodes run, 4 loaded" in again.output
