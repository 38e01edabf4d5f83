"""The evaluation harness (``agemem eval``): determinism, resume, records, report, CLI errors.

Control flow runs with ``OraclePolicy``, a scripted policy that stores each information
turn (when it has tools) and answers every question with its gold answer; the store
(SQLite + sqlite-vec) and the embedder are real. The last test runs SmolLM2-135M
through the CLI on one tiny episode.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from agemem_lite import prompts
from agemem_lite.baselines import METHODS
from agemem_lite.cli import main
from agemem_lite.episodes import EpisodeConfig
from agemem_lite.errors import ConfigError
from agemem_lite.eval import harness, locomo, report
from agemem_lite.eval.judges import LLMJudge
from agemem_lite.policy import Completion
from agemem_lite.protocol import render_step

CFG = EpisodeConfig(n_max=3, demonstrations=False)
BENCHES = ["hotpot", "longmemeval"]


class OraclePolicy:
    """Stores every information turn once (if it may call tools) and answers questions with the gold."""

    name = "oracle"

    def __init__(self, tasks):
        self.golds = {prompts.render_question(t.question): t.answers[0] for t in tasks}
        self.info = {x for t in tasks for x in t.information}
        self.calls = 0

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def step(self, messages, *, allow_tools=True, on_text=None) -> Completion:
        self.calls += 1
        last = messages[-1]
        text = prompts.user_text_of(last["content"]) if last["role"] == "user" else None
        if text in self.golds:
            out = render_step("Kind: question.", answer=self.golds[text])
        elif allow_tools and text is not None and any(x in text for x in self.info):
            out = render_step("Kind: new fact.", calls=[{"name": "Add_memory", "arguments": {"content": text}}])
        else:
            out = render_step("Kind: chat.", answer="Noted.")
        return Completion(text=out, prompt_tokens=sum(len(m["content"].split()) for m in messages),
                          completion_tokens=len(out.split()), seconds=0.001)

    def summarise(self, instruction: str) -> str:
        return "a short summary"

    def close(self) -> None:
        pass


def oracle(benches=BENCHES, n=2, seed=0, embedder=None) -> OraclePolicy:
    return OraclePolicy([t for b in benches for t in harness.build_tasks(b, n, seed, embedder)])


@pytest.fixture
def run(embedder, settings, tmp_path):
    """``run(out_name, policy=None, **kw)``: run_eval with the oracle, the real embedder and CFG."""
    def go(out="out", policy=None, benches=BENCHES, n=2, seed=0, **kw):
        policy = policy or oracle(benches, n, seed, embedder)
        kw = {"methods": None, "config": CFG, "settings": settings, **kw}
        res = harness.run_eval(policy, embedder, benches, n=n, seed=seed, out_dir=tmp_path / out, **kw)
        return res, policy
    return go


@pytest.fixture(scope="module")
def full_run(embedder, settings, tmp_path_factory):
    """Every method on two tasks of each generated benchmark, run once for the module."""
    out = tmp_path_factory.mktemp("eval") / "out"
    return harness.run_eval(oracle(embedder=embedder), embedder, BENCHES, n=2, seed=0, out_dir=out,
                            config=CFG, settings=settings)


def comparable(records):
    """What must not change between two runs of one seed (wall time may)."""
    return [(r["bench"], r["method"], r["task_id"], {k: v for k, v in r["metrics"].items() if k != "wall_s"})
            for r in records]


# -- determinism ------------------------------------------------------------------------------

def test_same_seed_gives_same_tasks_order_and_metrics(run, full_run):
    a = full_run
    b, _ = run("b")
    assert comparable(a.records) == comparable(b.records)
    assert len(a.records) == len(BENCHES) * 2 * len(METHODS) and a.ran == len(a.records)
    ids = [t.id for bench in BENCHES for t in harness.build_tasks(bench, 2, 0)]
    assert list(dict.fromkeys(r["task_id"] for r in a.records)) == ids
    # bench, then task, then method: an interrupted run holds every method for its tasks
    assert [r["method"] for r in a.records[:len(METHODS)]] == list(METHODS)
    assert all(r["metrics"]["f1"] == r["metrics"]["em"] == 1.0 for r in a.records)   # the oracle's answers
    agemem = [r for r in a.records if r["method"] == "agemem"]
    assert all(r["metrics"]["mq"] == 1.0 and r["metrics"]["tool_calls"]["Add_memory"] >= 1 for r in agemem)
    # a fresh store per episode: ids count from mem_1 in every episode
    assert all(r["episode"]["memories"][0]["id"] == "mem_1" for r in agemem)


def test_another_seed_draws_other_tasks(run):
    a, _ = run("a", benches=["hotpot"], methods=["no-memory"])
    b, _ = run("b", benches=["hotpot"], methods=["no-memory"], seed=1)
    assert {r["task_id"] for r in a.records}.isdisjoint(r["task_id"] for r in b.records)


# -- resume -----------------------------------------------------------------------------------

def test_rerun_loads_finished_episodes_instead_of_running_them(run):
    methods = ["agemem", "no-memory"]
    first, p1 = run(n=1, methods=methods)
    assert p1.calls > 0 and first.ran == len(first.records) == 4
    again, p2 = run(n=1, methods=methods, policy=oracle(n=1))
    assert p2.calls == 0 and again.ran == 0 and again.loaded == 4
    assert comparable(again.records) == comparable(first.records)
    # a larger n extends the run: only the new tasks' episodes run
    more, p3 = run(n=2, methods=methods, policy=oracle(n=2))
    assert more.ran == more.loaded == 4 and p3.calls > 0
    assert comparable(more.records)[:2] == comparable(first.records)[:2]


def test_a_finished_run_opens_no_policy(run):
    run(benches=["hotpot"], n=1, methods=["no-memory"])
    opened = []
    res, _ = run(benches=["hotpot"], n=1, methods=["no-memory"], policy=lambda: opened.append(1),
                 policy_name="oracle")
    assert opened == [] and res.loaded == 1


def test_rerun_with_another_policy_or_seed_is_refused(run):
    run(benches=["hotpot"], n=1, methods=["no-memory"])
    with pytest.raises(ConfigError, match="policy='oracle' \\(now 'other'\\)"):
        run(benches=["hotpot"], n=1, methods=["no-memory"], policy_name="other")
    with pytest.raises(ConfigError, match="n_max=3 \\(now 8\\)"):
        run(benches=["hotpot"], n=1, methods=["no-memory"], config=EpisodeConfig(demonstrations=False))


# -- records ------------------------------------------------------------------------------------

def test_episode_files_round_trip_and_no_temp_files_remain(run, tmp_path):
    res, _ = run(benches=["hotpot"], n=1, methods=["agemem", "no-memory"])
    out = tmp_path / "out"
    for rec in res.records:
        path = harness.episode_path(out, rec["bench"], rec["method"], rec["task_id"])
        assert path == out / "episodes" / "hotpot" / rec["method"] / f"{rec['task_id']}.json"
        stored = harness.load_record(path)
        assert stored == json.loads(json.dumps(rec))
        ep = harness.record_episode(stored)
        assert ep.to_dict() == stored["episode"] and ep.method == rec["method"]
        assert harness.episode_metrics(ep) == stored["metrics"]
        assert stored["judges"]["f1"].startswith("token F1 vs gold")
        assert stored["judges"]["mq"].startswith("coverage@0.6")
        assert stored["task"]["id"] == rec["task_id"] and stored["episode"]["stages"]["reason"][0]["steps"]
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".")]
    assert leftovers == []          # no .tmp files, the scratch store folder is gone


def test_longmemeval_items_become_tasks():
    from agemem_lite.eval.longmemeval import generate

    item = generate(4, seed=2)[3]
    task = harness.build_tasks("longmemeval", 4, 2)[3]
    assert task.id == item.question_id and task.question == item.query()
    assert task.answers == [str(item.answer)] and task.information == item.information_turns()
    assert task.distractors == item.distractor_turns() and task.gold_facts == item.gold_sentences()
    assert task.source == "longmemeval" and task.metadata["old_answer"] == item.old_answer


def test_an_abstention_is_scored_by_whether_the_reply_says_not_known(run):
    class NotToldPolicy(OraclePolicy):
        """Answers every question "You have not told me that yet."."""
        def __init__(self, tasks):
            super().__init__(tasks)
            self.golds = dict.fromkeys(self.golds, "You have not told me that yet.")

    tasks = harness.build_tasks("longmemeval", 6, 0)
    assert [t.unanswerable for t in tasks].count(True) == 1
    res, _ = run(policy=NotToldPolicy(tasks), benches=["longmemeval"], n=6, methods=["agemem"])
    by_id = {t.id: t for t in tasks}
    for rec in res.records:
        right = float(by_id[rec["task_id"]].unanswerable)
        assert rec["metrics"]["em"] == rec["metrics"]["f1"] == right
        ep = harness.record_episode(rec)
        assert ep.unanswerable == bool(right) and ep.reward.r_task == right
        assert harness.episode_metrics(ep) == rec["metrics"]


def test_locomo_file_gives_one_task_per_question_with_other_conversations_as_distractors(run, tmp_path, embedder):
    path = tmp_path / "locomo.json"
    path.write_text(json.dumps([locomo.make_sample(1), locomo.make_sample(2)]))
    tasks = harness.build_tasks(f"locomo:{path}", 3, 0, embedder, n_distractors=4)
    again = harness.build_tasks(f"locomo:{path}", 3, 0, embedder, n_distractors=4)
    assert [t.to_dict() for t in tasks] == [t.to_dict() for t in again]
    for t in tasks:
        sample = t.metadata["sample_id"]
        assert t.id.startswith(f"{sample}:q") and len(t.distractors) == 4
        assert not set(t.distractors) & set(t.information)     # from the other conversation
    all_tasks = harness.build_tasks(f"locomo:{path}", 100, 0, embedder, n_distractors=0)
    assert len(all_tasks) == 10                                 # 5 questions each; category 5 left out
    res, _ = run(benches=[f"locomo:{path}"], n=1, methods=["no-memory"])
    assert res.records[0]["bench"] == "locomo-locomo"


def test_official_hotpot_file_is_read_through_its_loader(run, tmp_path):
    from agemem_lite.eval import hotpot

    path = tmp_path / "dev.json"
    hotpot.dump(hotpot.generate(3, seed=9), path)
    ids = [t.id for t in harness.build_tasks(f"hotpot:{path}", 2, 5)]
    assert len(ids) == 2 and set(ids) <= {f"agm-9-{i:05d}" for i in range(3)}
    assert ids == [t.id for t in harness.build_tasks(f"hotpot:{path}", 3, 5)][:2]   # larger n extends
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="dev.json"):
        harness.build_tasks(f"hotpot:{path}", 2, 5)


# -- judges -------------------------------------------------------------------------------------

class StubJudgePolicy:
    name = "stub"

    def __init__(self):
        self.prompts = []

    def summarise(self, instruction: str) -> str:
        self.prompts.append(instruction)
        return "yes" if "Gold answer: " in instruction else "no"

    def step(self, *a, **k):
        raise AssertionError("a judge never takes protocol steps")

    def close(self):
        pass


def test_llm_judge_scores_new_and_loaded_episodes_and_is_named(run, tmp_path):
    run(benches=["hotpot"], n=1, methods=["no-memory"])
    stub = StubJudgePolicy()
    res, policy = run(benches=["hotpot"], n=1, methods=["no-memory"], judge=LLMJudge("stub", stub))
    assert policy.calls == 0 and res.loaded == 1                 # judged, not rerun
    assert res.records[0]["metrics"]["llm"] == 1.0 and res.records[0]["judges"]["llm"] == "llm:stub"
    assert "Answer to grade: " in stub.prompts[0]
    text = (report.write_report(tmp_path / "out")[0]).read_text()
    assert "judge: llm:stub" in text and "LLM judge: llm:stub" in text


# -- report -------------------------------------------------------------------------------------

def test_report_has_a_row_for_every_method_and_bench(full_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)     # as if matplotlib were missing
    path, agg = report.write_report(full_run.out_dir)
    text = path.read_text()
    assert path == full_run.out_dir / "report.md"
    for title in ("Table 2", "Table 3", "Memory Quality", "Prompt tokens", "Wall time"):
        assert f"## {title}" in text
    assert "| method | hotpot | longmemeval | mean |" in text
    for m in METHODS:
        assert f"| {m} | 100.0 / 100.0 (n=2) | 100.0 / 100.0 (n=2) | 100.0 / 100.0 |" in text
    assert "| method | ADD | UPDATE | DELETE | RETRIEVE | SUMMARY | FILTER | failed | episodes |" in text
    assert "judge: EM/F1 vs gold" in text and "judge: coverage@0.6" in text
    assert "policy: `oracle` · seed: 0 · n: 2" in text and "CPUs" in text
    assert "| no-memory | n/a (no LTM) | n/a (no LTM) |" in text and "agemem vs agemem-rag" in text
    assert "Plots skipped: matplotlib is not installed (`pip install 'agemem-lite[eval]'`" in text
    assert agg["cells"]["agemem"]["hotpot"]["n"] == 2 and agg["tools"]["agemem"]["Add_memory"] > 0


def test_report_plots_are_pngs_when_matplotlib_is_installed(run, tmp_path):
    pytest.importorskip("matplotlib")
    run(benches=["hotpot"], n=1, methods=["agemem", "no-memory"])
    text = report.write_report(tmp_path / "out")[0].read_text()
    for name in ("scores", "tool_usage"):
        png = tmp_path / "out" / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"](plots/{name}.png)" in text


# -- CLI ----------------------------------------------------------------------------------------

@pytest.fixture()
def cli(tmp_path, data_dir, embedder):
    """Invoke the CLI on a fresh data dir that shares the session's model files (as test_cli does)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(Path(data_dir) / "models", target_is_directory=True)

    def go(*args):
        return CliRunner().invoke(main, ["--data-dir", str(home), *args])
    go.home = home
    return go


@pytest.mark.parametrize("args,message", [
    (["--bench", "hotpotqa"], "unknown benchmark 'hotpotqa'"),
    (["--bench", "locomo"], "needs a file: --bench locomo:PATH"),
    (["--bench", "hotpot:/no/such/file.json"], "no such file"),
    (["--methods", "agemem,mem1"], "unknown method(s) 'mem1'"),
    (["--policy", "gpt-4"], "unknown model 'gpt-4'"),
    (["--policy", "minilm-l6-v2"], "is an embedder, not a policy"),
    (["--judge", "gpt:x"], "use llm:NAME"),
])
def test_bad_arguments_are_one_line_errors(cli, args, message):
    r = cli("eval", *args, "--n", "1")
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert r.output.startswith("Error:") and r.output.strip().count("\n") == 0
    assert message in r.output and "Traceback" not in r.output


def test_mem0_peer_that_cannot_run_is_one_line(cli, monkeypatch):
    """--methods mem0 without the extra (or with OPENROUTER_API_KEY set, which would send
    mem0's LLM calls off the machine) stops before any episode with the reason in one line."""
    from agemem_lite.eval import mem0_peer

    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-test")
    reason = mem0_peer.why_unavailable()
    assert reason and ("pip install 'agemem-lite[mem0]'" in reason or "OPENROUTER_API_KEY" in reason)
    r = cli("eval", "--methods", "agemem,mem0", "--n", "1", "--out", str(cli.home / "eval"))
    assert r.exit_code == 1 and r.output.strip() == f"Error: {reason}", r.output
    assert not (cli.home / "eval" / "episodes").exists()


@pytest.mark.slow
def test_smollm2_through_the_cli_writes_report_and_resumes(cli, settings, tmp_path):
    """SmolLM2-135M, one HotpotQA episode without memory: structure only (it is too weak to answer)."""
    from agemem_lite.model_files import resolve

    resolve(settings, "smollm2-135m")      # into the session data dir, shared by `cli` (once per session)
    # SmolLM2 rambles to the token cap: short caps keep 5 steps at seconds on 2 busy cores
    (cli.home / "config.toml").write_text("max_new_tokens = 48\nthink_tokens = 16\nguided = false\n")
    out = tmp_path / "eval"
    args = ["eval", "--policy", "smollm2-135m", "--n", "1", "--bench", "hotpot", "--methods", "no-memory",
            "--n-max", "2", "--out", str(out)]
    r = cli(*args)
    assert r.exit_code == 0, r.output
    assert "1 episodes run, 0 loaded" in r.output and "| no-memory | " in r.output
    assert f"report: {out / 'report.md'}" in r.output
    [path] = (out / "episodes" / "hotpot" / "no-memory").glob("*.json")
    rec = harness.load_record(path)
    assert rec["policy"] == "smollm2-135m" and rec["episode"]["answer"] is not None
    assert [len(rec["episode"]["stages"][s]) for s in ("ltm", "stm", "reason")] == [2, 2, 1]
    again = cli("--json", *args)
    assert again.exit_code == 0 and json.loads(again.output)["loaded"] == 1


def test_a_run_made_before_a_setting_existed_continues_at_its_default(tmp_path):
    """An output folder from before ``EpisodeConfig`` gained a field (its manifest lacks it) is
    continued when the field is at its default, and refused when it is not."""
    import dataclasses

    base = dataclasses.asdict(EpisodeConfig())
    base.pop("method")
    old = {k: v for k, v in base.items() if k != "context_usage"}
    harness._record_run(tmp_path, {"policy": "p", "seed": 0, "config": old}, {"n": 1})
    harness._record_run(tmp_path, {"policy": "p", "seed": 0, "config": base}, {"n": 2})
    with pytest.raises(ConfigError, match="context_usage=False \\(now True\\)"):
        harness._record_run(tmp_path, {"policy": "p", "seed": 0, "config": {**base, "context_usage": True}}, {"n": 3})
