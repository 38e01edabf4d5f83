"""Long-horizon environments (SPEC §7): each text interface on a few steps, and the episode runner.

Needs the ``envs`` extra (``pip install 'agemem-lite[envs]'``); CI installs only
``.[dev]``, so every test skips cleanly without it. ScienceWorld also needs Java.
The runner tests use ``ScriptedPolicy`` with the real store and embedder.
"""

from __future__ import annotations

import json
import shutil
from importlib.util import find_spec

import numpy as np
import pytest

from agemem_lite.envs import ENVS, EnvUnavailable, TextEnv, make_env, normalize_action
from agemem_lite.protocol import render_step
from scripted import ScriptedPolicy

EXTRA = "the envs extra is not installed (pip install 'agemem-lite[envs]')"


# for tests whose fixtures (the embedder) should not even be set up without the extra
needs_pddl = pytest.mark.skipif(find_spec("pyperplan") is None or find_spec("pypddl_datasets") is None,
                                reason=EXTRA)


def need(*modules: str) -> None:
    for m in modules:
        pytest.importorskip(m, reason=EXTRA)


def answer(text: str) -> str:
    return render_step("Next move.", answer=text)


def call(name: str, **arguments) -> str:
    return render_step("Worth keeping.", calls=[{"name": name, "arguments": arguments}])


def test_registry_and_action_normalisation():
    assert set(ENVS) == {"babyai", "pddl", "scienceworld", "alfworld"}
    assert normalize_action('  "(Stack  B1 B2)." ') == "stack b1 b2"
    assert normalize_action("Go forward.") == "go forward"
    with pytest.raises(ValueError, match="unknown environment"):
        make_env("webshop")


# -- BabyAI ------------------------------------------------------------------------------------------

# BabyAI-GoToLocal-v0, reset(seed=1): the exact text rendering (format in envs/babyai.py).
GOTOLOCAL_SEED1 = """\
In front of you: empty floor.
You carry nothing.
You see:
- a wall 3 steps left
- a grey box 2 steps left
- a red key 2 steps left and 1 step forward
- a purple box 1 step left and 1 step forward
- a green key 2 steps right and 2 steps forward
- a grey key 3 steps right and 2 steps forward
- a wall 4 steps forward"""


@pytest.fixture
def babyai():
    need("minigrid")
    env = make_env("babyai", level="BabyAI-GoToLocal-v0")
    yield env
    env.close()


def test_babyai_renders_a_seeded_level_exactly(babyai):
    start = babyai.reset(1)
    assert start.goal == "go to the purple box"
    assert start.observation == GOTOLOCAL_SEED1
    assert isinstance(babyai, TextEnv)
    assert babyai.valid_actions() == ["turn left", "turn right", "go forward", "pick up", "drop", "toggle"]


def test_babyai_render_format_on_a_handmade_view():
    """Doors with their state, the carried object, nearest walls only, ordering near to far, left to right."""
    need("minigrid")
    from minigrid.core.constants import COLOR_TO_IDX as C, OBJECT_TO_IDX as O
    from minigrid.core.world_object import Key

    from agemem_lite.envs.babyai import render_view

    img = np.zeros((7, 7, 3), dtype=np.uint8)          # all unseen
    img[:, 3:, 0] = O["empty"]
    img[3, 5] = (O["door"], C["red"], 2)                # locked red door right in front
    img[0, 6] = (O["wall"], C["grey"], 0)               # nearest wall to the left (listed)
    img[0, 5] = (O["wall"], C["grey"], 0)               # another wall cell (left out)
    img[5, 4] = (O["ball"], C["blue"], 0)
    img[1, 3] = (O["door"], C["green"], 0)              # open door
    assert render_view(img, Key("yellow")) == (
        "In front of you: a locked red door.\n"
        "You carry a yellow key.\n"
        "You see:\n"
        "- a wall 3 steps left\n"
        "- a locked red door 1 step forward\n"
        "- a blue ball 2 steps right and 2 steps forward\n"
        "- an open green door 2 steps left and 3 steps forward")
    empty = np.zeros((7, 7, 3), dtype=np.uint8)
    empty[:, :, 0] = O["empty"]
    assert render_view(empty).endswith("You see:\n- nothing")


def test_babyai_steps_invalid_actions_and_the_expert_solves_it(babyai):
    babyai.reset(1)
    bad = babyai.step("jump")
    assert bad.invalid and not bad.done and bad.observation.startswith("Invalid action 'jump'")
    rambling = babyai.step("I will now " + "walk around " * 20)
    assert rambling.invalid and len(rambling.observation) < 200 and "...'" in rambling.observation
    turned = babyai.step("Turn left.")
    assert not turned.invalid and turned.observation != GOTOLOCAL_SEED1
    expert = babyai.expert_actions()
    babyai.reset(1)
    for a in expert:
        t = babyai.step(a)
    assert t.done and babyai.success and t.progress == 1.0
    assert babyai.step("go forward").invalid                 # the game is over


def test_babyai_says_when_an_action_changed_nothing(babyai):
    babyai.reset(1)
    t = babyai.step("pick up")                               # nothing in front
    assert t.observation.startswith("Nothing happened.\nIn front of you: empty floor.")


# -- PDDL ----------------------------------------------------------------------------------------------

def test_pddl_plan_step_by_step_reaches_the_goal():
    need("pyperplan", "pypddl_datasets")
    env = make_env("pddl", domain="blocksworld", size=4)
    start = env.reset(3)
    assert start.goal.startswith("make these facts true: on ")
    assert start.observation.startswith("Facts: ") and "arm-empty" in start.observation
    plan = env.expert_actions()
    assert plan and env.progress < 1.0
    for a in plan:
        assert a in env.valid_actions()
        t = env.step(f"({a})")                               # brackets are accepted
        assert not t.invalid and t.observation.startswith(f"You did: {a}.")
    assert t.done and env.success and t.progress == 1.0


def test_pddl_invalid_actions_change_nothing():
    need("pyperplan")
    env = make_env("pddl", domain="tyreworld", size=1)
    env.reset(0)                                             # seed 0: the boot starts closed
    before, progress = env.state, env.progress
    unknown = env.step("fly away")
    blocked = env.step("jack-up h1")
    assert unknown.invalid and "no such action" in unknown.observation
    assert blocked.invalid and "not true: have jack" in blocked.observation
    assert env.state == before and env.progress == progress and not blocked.done
    assert env.valid_actions() == ["open boot"]


def test_pddl_progress_is_the_share_of_goal_atoms():
    need("pyperplan")
    env = make_env("pddl", domain="tyreworld", size=1)
    env.reset(0)
    goals = env.task.goals
    assert env.progress == pytest.approx(len(goals & env.state) / len(goals))
    t = env.step("open boot")                                # (closed boot) was a goal atom
    assert t.progress == pytest.approx(env.progress) and t.progress < len(goals & env.task.initial_state) / len(goals)


@pytest.mark.parametrize("n_tyres", [1, 2])
def test_tyreworld_generator_yields_solvable_problems(n_tyres):
    need("pyperplan")
    from agemem_lite.envs.pddl import TYREWORLD_DOMAIN, ground, plan, tyreworld_problem

    assert tyreworld_problem(n_tyres, 5) == tyreworld_problem(n_tyres, 5)   # seeded
    problems = {tyreworld_problem(n_tyres, s) for s in range(4)}
    assert len(problems) > 1
    for text in problems:
        task, _ = ground(TYREWORLD_DOMAIN, text)
        solution = plan(task)
        assert solution, text
        state = task.initial_state
        ops = {op.name.strip("()"): op for op in task.operators}
        for a in solution:
            state = ops[a].apply(state)
        assert task.goals <= state
    with pytest.raises(ValueError, match="n_tyres"):
        tyreworld_problem(0)


@pytest.mark.parametrize("domain", ["gripper", "barman"])
def test_other_agentboard_domains_are_generated_and_solved(domain):
    need("pyperplan", "pypddl_datasets")
    env = make_env("pddl", domain=domain)
    env.reset(1)
    for a in env.expert_actions():
        env.step(a)
    assert env.success


# -- ScienceWorld ---------------------------------------------------------------------------------------

def test_scienceworld_without_java_names_the_missing_runtime(monkeypatch):
    need("scienceworld")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(EnvUnavailable, match="Java runtime"):
        make_env("scienceworld", task="find-living-thing")


@pytest.mark.slow
def test_scienceworld_text_interface_on_a_few_gold_steps():
    need("scienceworld")
    if shutil.which("java") is None:
        pytest.skip("ScienceWorld needs a Java runtime (JRE >= 8): 'java' is not on PATH")
    env = make_env("scienceworld", task="find-living-thing")
    try:
        start = env.reset(2)
        assert start.goal.startswith("Your task is to find a(n) living thing.")
        assert start.observation.startswith("This room is called")
        assert "focus on OBJ" in env.action_help and "reset task" not in env.action_help
        bad = env.step("dance wildly")
        assert bad.invalid and env.progress == 0.0
        assert env.step("reset task").invalid
        gold = env.expert_actions()
        for a in gold:
            t = env.step(a)
            assert not t.invalid
        assert t.done and env.success and t.progress == 1.0
    finally:
        env.close()


# -- the runner: a game as the three-stage episode ------------------------------------------------------

def _blocksworld_task(n_distractors=2):
    from agemem_lite.envs.runner import EnvConfig, make_env_task

    return make_env_task("pddl", 0, {"domain": "blocksworld", "size": 3},
                         config=EnvConfig(n_prior=2, n_distractors=n_distractors))


def test_env_task_has_family_notes_earlier_trials_and_another_domains_observations():
    need("pyperplan", "pypddl_datasets")
    task = _blocksworld_task()
    env = make_env("pddl", domain="blocksworld", size=3)
    own = env.reset(0)
    assert task.information[0].startswith("Things I learned about pddl:blocksworld games:")
    assert [t.startswith("Notes from an earlier pddl:blocksworld game. Goal: ") for t in task.information[1:]] \
        == [True, True]
    assert all(own.observation not in t for t in task.information)
    assert len(task.distractors) == 2 and all("pddl:gripper" in d for d in task.distractors)
    assert json.loads(json.dumps(task.to_dict())) == task.to_dict()


@needs_pddl
def test_runner_plays_a_scripted_game_in_the_memory_protocol(store, embedder):
    need("pyperplan", "pypddl_datasets")
    from agemem_lite.episodes import EpisodeConfig
    from agemem_lite.envs.runner import NO_ACTION, EnvConfig, EnvEpisode, run_env_episode

    task = _blocksworld_task()
    env = make_env("pddl", domain="blocksworld", size=3)
    env.reset(0)
    plan = env.expert_actions()
    script = [call("Add_memory", content="Blocksworld: build towers bottom up."), answer("Noted."),
              answer("Noted."), answer("Noted."),                   # stage 1: notes + 2 trials
              answer("Ok."), answer("Ok."),                         # stage 2: 2 distractors
              call("Retrieve_memory", query="blocksworld"),         # game turn 1: no answer
              call("Retrieve_memory", query="blocksworld"),
              answer("fly away"),                                   # game turn 2: invalid
              *[answer(a) for a in plan]]
    policy = ScriptedPolicy(script)
    ep = run_env_episode(policy, store, embedder, task, EpisodeConfig(max_steps_per_turn=2, today="2025-01-01"),
                         EnvConfig(max_env_turns=20))
    assert not policy.script
    assert ep.success and ep.progress == 1.0 and ep.final_progress == 1.0 and ep.done
    assert ep.env_steps == len(plan) and ep.invalid_actions == 2 and ep.n_max_exceeded
    assert [a["action"] for a in ep.actions] == [None, "fly away", *plan]
    assert ep.actions[0]["observation"] == NO_ACTION
    assert ep.actions[1]["observation"].startswith("Invalid action 'fly away'")
    assert ep.tool_calls == {"Add_memory": 1, "Retrieve_memory": 2}
    assert [len(ep.stages[s]) for s in ("ltm", "stm", "reason")] == [3, 2, len(plan) + 2]
    assert {s.stage for s in ep.steps} == {"ltm", "stm", "reason"}
    assert ep.prompt_tokens == sum(s.prompt_tokens for s in ep.steps) > 0 and ep.wall_s > 0
    assert [m["content"] for m in ep.memories] == ["Blocksworld: build towers bottom up."]

    # the goal appears first in stage 3; each game observation is one user turn; the
    # invalid action's error observation is what the policy sees next
    firsts = [policy.calls[i][0][-1]["content"] for i in (0, 4, 6, 8, 9)]
    assert all(ep.goal not in f for f in firsts[:2])
    assert ep.goal in firsts[2] and "Valid actions: " in firsts[2]
    assert NO_ACTION in firsts[3] and "Invalid action 'fly away'" in firsts[4]
    assert EnvEpisode.from_dict(json.loads(json.dumps(ep.to_dict()))).to_dict() == ep.to_dict()


@needs_pddl
def test_runner_stops_at_max_env_turns_and_scores_best_progress(store, embedder):
    need("pyperplan")
    from agemem_lite.episodes import EpisodeConfig
    from agemem_lite.envs.runner import EnvConfig, EnvTask, run_env_episode

    task = EnvTask(id="tyre", env="pddl", env_kwargs={"domain": "tyreworld", "size": 1}, seed=0,
                   family="pddl:tyreworld", information=["Tyres need a jack."], distractors=[])
    # open the boot (progress drops: (closed boot) is a goal atom), then close it again
    policy = ScriptedPolicy([answer("Noted."), answer("open boot"), answer("close boot"), answer("open boot")])
    ep = run_env_episode(policy, store, embedder, task, EpisodeConfig(method="no-memory", today="2025-01-01"),
                         EnvConfig(max_env_turns=3))
    assert [a["action"] for a in ep.actions] == ["open boot", "close boot", "open boot"]
    assert not ep.done and not ep.success and ep.env_steps == 3
    assert ep.progress == pytest.approx(5 / 8) and ep.final_progress == pytest.approx(4 / 8)
    assert ep.tool_calls == {} and ep.memories == []
