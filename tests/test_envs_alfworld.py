"""ALFWorld games generated from the ``alfworld`` wheel's data (``envs.alfworld``): generation, rules, text,
the scripted expert, the episode runner and the ``alfworld`` bench row.

Needs the wheel's data only: ``pip install --no-deps alfworld==0.4.2`` (its engine is not used); every
test that reads it skips cleanly without it. The runner test uses ``ScriptedPolicy`` with the real store
and embedder, as ``tests/test_envs.py`` does.
"""

from __future__ import annotations

import copy
import json
from importlib.util import find_spec

import pytest

from agemem_lite.envs import ENVS, EnvUnavailable, TextEnv, make_env
from agemem_lite.protocol import render_step
from scripted import ScriptedPolicy

INSTALL = "pip install --no-deps alfworld==0.4.2"
needs_alfworld = pytest.mark.skipif(find_spec("alfworld") is None, reason=f"alfworld is not installed ({INSTALL})")

TASK_TYPES = ("pick_and_place_simple", "pick_two_obj_and_place", "look_at_obj_in_light",
              "pick_clean_then_place_in_recep", "pick_heat_then_place_in_recep", "pick_cool_then_place_in_recep")


def answer(text: str) -> str:
    return render_step("Next move.", answer=text)


def play(env, actions):
    return [env.step(a) for a in actions]


def test_registered_and_without_the_wheel_names_the_install_line(monkeypatch):
    from agemem_lite.envs import alfworld

    assert ENVS["alfworld"] == "alfworld:AlfworldEnv"
    alfworld.catalog.cache_clear()
    monkeypatch.setattr(alfworld.importlib.util, "find_spec", lambda name: None)
    try:
        with pytest.raises(EnvUnavailable, match="pip install --no-deps alfworld==0.4.2"):
            make_env("alfworld")
    finally:
        alfworld.catalog.cache_clear()
    with pytest.raises(ValueError, match="task_type"):
        make_env("alfworld", task_type="pick_and_place_with_movable_recep")


# -- generation --------------------------------------------------------------------------------------

@needs_alfworld
def test_generation_is_deterministic_per_seed_and_varies_across_seeds():
    a, b = make_env("alfworld"), make_env("alfworld")
    assert isinstance(a, TextEnv) and a.family == "alfworld:pick_and_place_simple"
    games = []
    for seed in range(12):
        assert tuple(a.reset(seed)) == tuple(b.reset(seed))
        assert a.game == b.game and a.expert_actions() == b.expert_actions()
        games.append((a.game.scene, a.game.goal, tuple(sorted(a.game.location.items()))))
    assert len(set(games)) == 12
    assert len({g[0] for g in games}) > 5 and len({g[1] for g in games}) > 5
    # the task type is part of the seed: the same seed gives another game of another type
    heat = make_env("alfworld", task_type="pick_heat_then_place_in_recep")
    assert heat.reset(0).goal != a.reset(0).goal


@needs_alfworld
@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_every_task_type_generates_feasible_games_the_expert_solves(task_type):
    """Over many seeds: a feasible goal in the library's wording, nothing solved at reset, and the
    expert's actions are each admissible when taken, never refused, raise progress monotonically to 1.0
    and end the game with success within the step limit."""
    from agemem_lite.envs.alfworld import MAX_EXPERT_ACTIONS, TREATMENTS, catalog, kind_of

    templates = catalog().templates[task_type]
    env = make_env("alfworld", task_type=task_type)
    for seed in range(30):
        start = env.reset(seed)
        g = env.game
        words = {"obj": g.goal_object, "recep": g.target or "", "toggle": g.lamp or ""}
        assert start.goal == templates[0].format(**words)
        assert start.observation.startswith("You are in the middle of a room. Looking quickly around you, you see a ")
        assert env.progress == 0.0 and not env.success and not env.done
        goal_objects = [o for o in g.location if kind_of(o) == g.goal_object]
        assert len(goal_objects) >= (2 if task_type == "pick_two_obj_and_place" else 1)
        if g.target:
            assert any(kind_of(r) == g.target for r in g.receptacles)
            assert all(kind_of(g.location[o]) != g.target for o in goal_objects)
            assert all(g.goal_object in g.holds[r] for r in g.receptacles if kind_of(r) == g.target)
        if task_type in TREATMENTS:
            _, tool, verb, _ = TREATMENTS[task_type]
            assert tool.lower() in {kind_of(r) for r in g.receptacles} and g.goal_object in g.can[verb]
            assert g.target != tool.lower()
        if task_type == "look_at_obj_in_light":
            assert g.lamp in ("desklamp", "floorlamp") and f"{g.lamp} 1" in g.location

        plan = env.expert_actions()
        assert 0 < len(plan) <= MAX_EXPERT_ACTIONS <= env.max_steps
        progress = [env.progress]
        for i, action in enumerate(plan):
            assert action in env.valid_actions(), (seed, action)
            t = env.step(action)
            assert not t.invalid, (seed, action, t.observation)
            assert t.done == (i == len(plan) - 1)
            progress.append(t.progress)
        assert progress == sorted(progress) and progress[-1] == 1.0, (seed, progress)
        assert env.success and env.valid_actions() == []
        assert env.notes() and env.distractor_kwargs()["task_type"] in TASK_TYPES
        assert env.distractor_kwargs()["task_type"] != task_type


@needs_alfworld
def test_progress_counts_ordered_subgoals():
    env = make_env("alfworld", task_type="pick_heat_then_place_in_recep")
    env.reset(14)                                    # the hand-checked game below: a hot egg in the fridge
    steps = play(env, ["go to garbagecan 1", "take egg 2 from garbagecan 1", "go to fridge 1", "open fridge 1",
                       "move egg 2 to fridge 1"])
    assert [t.progress for t in steps] == [0.0, pytest.approx(1 / 3), pytest.approx(1 / 3), pytest.approx(1 / 3),
                                           pytest.approx(1 / 3)]     # in the fridge but not hot: not yet heated
    assert not env.success
    steps = play(env, ["take egg 2 from fridge 1", "go to microwave 1", "heat egg 2 with microwave 1",
                       "go to fridge 1", "put egg 2 in/on fridge 1"])              # the older wording works too
    assert [round(t.progress, 3) for t in steps] == [0.333, 0.333, 0.667, 0.667, 1.0]
    assert steps[-1].done and env.success

    two = make_env("alfworld", task_type="pick_two_obj_and_place")
    two.reset(1)                                     # put two newspaper in garbagecan
    steps = play(two, two.expert_actions())
    assert sorted({t.progress for t in steps}) == [0.0, 0.25, 0.5, 0.75, 1.0]


# -- rules and text -----------------------------------------------------------------------------------

HEAT_14_ROOM = (
    "You are in the middle of a room. Looking quickly around you, you see a cabinet 1, a cabinet 2, a cabinet 3, "
    "a cabinet 4, a cabinet 5, a cabinet 6, a cabinet 7, a cabinet 8, a coffeemachine 1, a countertop 1, "
    "a drawer 1, a drawer 2, a drawer 3, a drawer 4, a drawer 5, a fridge 1, a garbagecan 1, a microwave 1, "
    "a sinkbasin 1, a stoveburner 1, and a toaster 1.")

HEAT_14_EXPERT = [
    ("go to countertop 1", "You arrive at countertop 1. On the countertop 1, you see a apple 1, a apple 2, "
                           "a dishsponge 1, a lettuce 1, a lettuce 3, a spatula 1, and a tomato 3."),
    ("go to garbagecan 1", "You arrive at garbagecan 1. On the garbagecan 1, you see a bread 1, a egg 2, "
                           "and a tomato 1."),
    ("take egg 2 from garbagecan 1", "You pick up the egg 2 from the garbagecan 1."),
    ("go to microwave 1", "You arrive at microwave 1. The microwave 1 is closed."),
    ("heat egg 2 with microwave 1", "You heat the egg 2 using the microwave 1."),
    ("go to fridge 1", "You arrive at fridge 1. The fridge 1 is closed."),
    ("open fridge 1", "You open the fridge 1. The fridge 1 is open. In it, you see a pan 2, and a potato 1."),
    ("move egg 2 to fridge 1", "You move the egg 2 to the fridge 1."),
]


@needs_alfworld
def test_a_hand_checked_game_text_exactly():
    """pick_heat_then_place_in_recep, seed 14 (FloorPlan25): goal, room, the expert's path, other actions."""
    env = make_env("alfworld", task_type="pick_heat_then_place_in_recep")
    start = env.reset(14)
    assert env.game.scene == 25
    assert start.goal == "put a hot egg in fridge" and start.observation == HEAT_14_ROOM
    assert env.expert_actions() == [a for a, _ in HEAT_14_EXPERT]
    assert env.valid_actions()[:3] == ["go to cabinet 1", "go to cabinet 2", "go to cabinet 3"]
    assert env.valid_actions()[-2:] == ["inventory", "look"] and "go to cabinet 10" not in env.valid_actions()
    for action, text in HEAT_14_EXPERT[:3]:
        assert env.step(action).observation == text
    assert env.step("inventory").observation == "You are carrying: a egg 2."
    assert env.step("examine egg 2").observation == "There's nothing special about egg 2."
    assert env.step("look").observation == "You are facing the garbagecan 1. Next to it, you see nothing."
    assert env.valid_actions() == [
        "examine bread 1", "examine egg 2", "examine garbagecan 1", "examine tomato 1", *[
            f"go to {r}" for r in env.game.receptacles if r != "garbagecan 1"], "inventory", "look",
        "move egg 2 to garbagecan 1"]
    for action, text in HEAT_14_EXPERT[3:5]:
        assert env.step(action).observation == text
    assert env.step("examine egg 2").observation == "This is a hot egg 2."
    for action, text in HEAT_14_EXPERT[5:]:
        t = env.step(action)
        assert t.observation == text and not t.invalid
    assert t.done and env.success and t.progress == 1.0
    over = env.step("look")
    assert over.invalid and over.done and over.observation == "The game is over."


@needs_alfworld
def test_invalid_and_malformed_actions_change_nothing():
    env = make_env("alfworld", task_type="pick_heat_then_place_in_recep")
    env.reset(14)
    play(env, ["go to fridge 1"])
    before, progress = copy.deepcopy(env.game), env.progress
    cases = {
        "": "no such action",
        "fly away": "no such action",
        "I will now " + "walk around " * 20: "no such action",
        "take egg 1 from fridge 1": "the fridge 1 is closed; open it first",   # says nothing of what is inside
        "take egg 2 from garbagecan 1": "you are not at the garbagecan 1",
        "go to fridge 1": "already at the fridge 1",
        "go to fridge 9": "no receptacle called 'fridge 9'",
        "close fridge 1": "the fridge 1 is not open",
        "move egg 2 to fridge 1": "you are not carrying a egg 2",
        "heat egg 2 with fridge 1": "you are not carrying a egg 2",
        "use fridge 1": "you see no fridge 1 here",
        "examine potato 1": "you see no potato 1 here",                       # it is inside the closed fridge
        "go to": "no such action",
    }
    for action, reason in cases.items():
        t = env.step(action)
        assert t.invalid and not t.done and t.progress == progress, action
        assert t.observation.startswith("Invalid action ") and reason in t.observation, (action, t.observation)
        assert t.observation.endswith("Nothing happened.") and len(t.observation) < 300
        assert "potato" not in t.observation or action == "examine potato 1"
        assert env.game == before, action
    assert env.game.steps == 1                                       # refused actions count no step

    play(env, ["go to garbagecan 1", "take egg 2 from garbagecan 1", "go to sinkbasin 1"])
    held = copy.deepcopy(env.game)
    for action, reason in {"take tomato 1 from sinkbasin 1": "you see no tomato 1 in/on the sinkbasin 1",
                           "heat egg 2 with sinkbasin 1": "you heat things with a microwave",
                           "cool egg 2 with fridge 1": "you are not at the fridge 1",
                           "open sinkbasin 1": "cannot be opened"}.items():
        t = env.step(action)
        assert t.invalid and reason in t.observation, (action, t.observation)
        assert env.game == held

    bare = make_env("alfworld", task_type="pick_heat_then_place_in_recep", nothing_happens=True)
    bare.reset(14)
    assert [t.observation for t in play(bare, ["fly away", "open fridge 1"])] == ["Nothing happens."] * 2


@needs_alfworld
def test_lamps_receptacles_and_step_limit():
    env = make_env("alfworld", task_type="look_at_obj_in_light")
    start = env.reset(3)                             # FloorPlan217: a floorlamp beside the sofa
    assert start.goal == "look at laptop under the floorlamp"
    assert env.step("go to sofa 1").observation == ("You arrive at sofa 1. On the sofa 1, you see nothing. "
                                                    "Next to it, you see a floorlamp 1.")
    assert env.step("examine floorlamp 1").observation == "This floorlamp 1 is off."
    assert env.step("take floorlamp 1 from sofa 1").invalid
    t = env.step("use floorlamp 1")                  # on, but the laptop is not in hand: not solved
    assert t.observation == "You turn on the floorlamp 1." and t.progress == 0.0 and not t.done
    assert env.step("examine floorlamp 1").observation == "This floorlamp 1 is on."
    play(env, ["go to coffeetable 1", "take laptop 1 from coffeetable 1"])
    assert env.progress == pytest.approx(1 / 3)
    t = env.step("go to sofa 1")                     # holding the laptop at a lamp that is on
    assert t.done and env.success

    short = make_env("alfworld", max_steps=2)
    short.reset(0)
    t1, t2 = play(short, ["look", "inventory"])
    assert not t1.done and t2.done and not short.success and short.valid_actions() == []


@needs_alfworld
def test_text_follows_the_alfworld_grammar_file():
    """The phrasings the simulator writes are those of the wheel's ``data/alfred.twl2``."""
    from agemem_lite.envs.alfworld import catalog

    grammar = (catalog().root / "data" / "alfred.twl2").read_text()
    for phrase in ("You arrive at {r.name}.", "You open the {r.name}.", "The {r.name} is open. In it, you see",
                   "The {r.name} is closed.", "On the {r.name}, you see", "You close the {r.name}.",
                   "You pick up the {o.name} from the {r.name}.", "You move the {o.name} to the {r.name}.",
                   "You heat the {o.name} using the {r.name}.", "You clean the {o.name} using the {r.name}.",
                   "You cool the {o.name} using the {r.name}.", "You turn on the {o.name}.",
                   "You are not carrying anything.", "This is a hot {o.name}.", "This is a cold {o.name}.",
                   "There's nothing special about {o.name}.", "You are in the middle of a room. Looking quickly "
                   "around you, you see", "You are facing the", "Next to it, you see", '"rhs": ", and "',
                   "move {o} to {r}", "take {o} from {r}", "heat {o} with {r}", "use {o}"):
        assert phrase in grammar, phrase


# -- the runner and the bench -----------------------------------------------------------------------

@needs_alfworld
def test_env_task_has_family_notes_trials_and_another_task_types_observations():
    from agemem_lite.envs.runner import EnvConfig, make_env_task

    task = make_env_task("alfworld", 0, {"task_type": "pick_and_place_simple"},
                         config=EnvConfig(n_prior=2, n_distractors=2))
    own = make_env("alfworld").reset(0)
    assert task.family == "alfworld:pick_and_place_simple" and task.id == "alfworld:pick_and_place_simple:0"
    assert task.information[0].startswith("Things I learned about alfworld:pick_and_place_simple games: ALFWorld:")
    assert [t.startswith("Notes from an earlier alfworld:pick_and_place_simple game. Goal: put ")
            for t in task.information[1:]] == [True, True]
    assert all(own.observation not in t for t in task.information)
    assert len(task.distractors) == 2 and all("alfworld:pick_two_obj_and_place" in d for d in task.distractors)
    assert json.loads(json.dumps(task.to_dict())) == task.to_dict()


@needs_alfworld
def test_runner_plays_a_scripted_alfworld_game(store, embedder):
    from agemem_lite.envs.runner import EnvConfig, make_env_task, run_env_episode
    from agemem_lite.episodes import EpisodeConfig

    task = make_env_task("alfworld", 14, {"task_type": "pick_heat_then_place_in_recep"},
                         config=EnvConfig(n_prior=2, n_distractors=2))
    plan = [a for a, _ in HEAT_14_EXPERT]
    script = [answer("Noted.")] * 3 + [answer("Ok.")] * 2 + [answer("open the fridge please")] + \
        [answer(a) for a in plan]
    policy = ScriptedPolicy(script)
    ep = run_env_episode(policy, store, embedder, task, EpisodeConfig(method="no-memory", today="2025-01-01"),
                         EnvConfig(max_env_turns=20))
    assert not policy.script
    assert ep.success and ep.done and ep.progress == 1.0 and ep.goal == "put a hot egg in fridge"
    assert ep.env_steps == len(plan) and ep.invalid_actions == 1
    assert ep.actions[0]["observation"].startswith("Invalid action 'open the fridge please'")
    assert [a["observation"] for a in ep.actions[1:]] == [text for _, text in HEAT_14_EXPERT]
    first_game_turn = policy.calls[5][0][-1]["content"]
    assert "New game (alfworld:pick_heat_then_place_in_recep). Goal: put a hot egg in fridge" in first_game_turn
    assert HEAT_14_ROOM in first_game_turn and "take OBJECT from R" in first_game_turn


@needs_alfworld
def test_the_alfworld_bench_row_builds_tasks():
    from agemem_lite.envs.runner import EnvConfig
    from agemem_lite.eval import env_benches

    cfg = EnvConfig(n_prior=1, n_distractors=2)
    tasks = env_benches.build_env_tasks("alfworld", 2, 0, cfg)
    assert [t.to_dict() for t in tasks] == [t.to_dict() for t in env_benches.build_env_tasks("alfworld", 2, 0, cfg)]
    assert len(tasks) == 2 and len({t.seed for t in tasks}) == 2
    assert all(t.env == "alfworld" and t.env_kwargs == {"task_type": "pick_and_place_simple"} for t in tasks)
    assert all(len(t.information) == 2 and len(t.distractors) == 2 for t in tasks)
    assert env_benches.ENV_BENCHES["alfworld"].install == INSTALL


def test_the_alfworld_bench_without_the_wheel_names_the_no_deps_install(monkeypatch):
    from agemem_lite.eval import env_benches

    monkeypatch.setattr(env_benches, "find_spec", lambda m: None)
    with pytest.raises(EnvUnavailable, match="benchmark 'alfworld' needs alfworld \\(not installed\\): "
                                             "pip install --no-deps alfworld==0.4.2"):
        env_benches.check_available("alfworld")


@needs_alfworld
def test_the_alfworld_bench_plays_through_the_harness_and_the_report(embedder, settings, tmp_path):
    """``agemem eval --bench alfworld`` as a library call: an oracle answers every game turn with the expert's
    next action (stage-1/2 turns with "Noted."), so every method solves the game and the report shows it."""
    from agemem_lite import prompts
    from agemem_lite.envs.runner import EnvConfig
    from agemem_lite.episodes import EpisodeConfig
    from agemem_lite.eval import harness, report

    ecfg = EnvConfig(n_prior=1, n_distractors=2, max_env_turns=40)
    [task] = harness.build_tasks("alfworld", 1, 0, env_config=ecfg)
    env = make_env("alfworld")
    env.reset(task.seed)
    plan, queue = env.expert_actions(), []

    def oracle(messages, allow_tools):
        last = messages[-1]
        if last["role"] != "user":
            return answer("Noted.")
        if prompts.user_text_of(last["content"]).startswith("New game ("):
            queue[:] = plan
        return answer(queue.pop(0) if queue else "Noted.")

    methods = ["agemem", "no-memory"]
    res = harness.run_eval(ScriptedPolicy([oracle] * 1000), embedder, ["alfworld"], methods, n=1, seed=0,
                           out_dir=tmp_path / "out", config=EpisodeConfig(n_max=3, demonstrations=False),
                           env_config=ecfg, settings=settings)
    assert [r["method"] for r in res.records] == methods
    for r in res.records:
        m = r["metrics"]
        assert r["kind"] == "env" and r["bench"] == "alfworld" and m["success"] == 1.0 and m["progress"] == 1.0
        assert m["env_steps"] == len(plan) and m["invalid_actions"] == 0
    text, _ = report.render_report(tmp_path / "out", plots=False)
    assert "| method | alfworld (success / progress) |" in text
    assert "| agemem | 100.0 / 100.0 (n=1) |" in text
