"""Long-horizon text environments (SPEC §7: BabyAI, PDDL, ScienceWorld, ALFWorld) for the memory protocol.

Install them with the ``envs`` extra (``pip install 'agemem-lite[envs]'``) and, for
ALFWorld, ``pip install --no-deps alfworld==0.4.2`` (see below); this package
imports without them, and each environment imports its package only when it is
opened (``make_env``), raising ``EnvUnavailable`` with the install line.

=============  ==========================  ====================================  ==================
name           what                        one instance (``reset(seed)``)        score (SPEC §7)
=============  ==========================  ====================================  ==================
babyai         ``minigrid`` BabyAI levels  the level's layout for that seed      success rate
pddl           ``pyperplan`` + generators  a generated problem for that seed     progress rate
scienceworld   ``scienceworld`` (Java)     variation ``split[seed % n]``         success rate
alfworld       ``alfworld`` data + ours    a game generated for that seed        success rate
=============  ==========================  ====================================  ==================

ALFWorld games are generated here (``envs.alfworld``): the ``alfworld`` wheel ships
no playable games, only the domain PDDL, the text grammar, the room layouts of
120 AI2-THOR scenes, the object/receptacle tables and the goal library. For
``reset(seed)`` a scene, a feasible goal of the chosen task type (one of the six)
and a random placement of the scene's objects are drawn, and the game is
simulated in plain Python with the domain's rules and ALFWorld's phrasing. Its
engine, ``textworld[pddl]``, is not used and cannot be installed here (it needs
``jericho>=3.3.0``, which has no installable distribution), so the wheel is
installed without dependencies: ``pip install --no-deps alfworld==0.4.2`` (it is
not in the ``envs`` extra, whose install would pull the engine in).

The text interface (``TextEnv``)
--------------------------------
- ``reset(seed) -> Reset(observation, goal)``: a new instance; text only.
- ``step(action) -> Transition(observation, progress, done, invalid)``: ``action``
  is plain text (``normalize_action`` is applied: case, spaces, a trailing period
  and surrounding quotes or brackets do not matter). An unknown or inapplicable
  action changes nothing: the observation is an error message naming the
  problem (``invalid=True``) and the episode goes on.
- ``valid_actions()``: the admissible actions now (ScienceWorld: its own list of
  valid action/object combinations, which can be long).
- ``action_help``: one paragraph telling a player how actions are written.
- ``progress`` in [0, 1] (share of the goal reached, see each module) and
  ``success`` (the instance is solved); ``done`` is success, failure or the
  environment's own step limit.
- ``expert_actions()``: a solution from the reset state (BabyAI: ``BabyAIBot``;
  PDDL: a pyperplan plan; ScienceWorld: its gold path; ALFWorld: a scripted player
  that searches receptacles in a fixed order). Used to write stage-1
  trial notes and stage-2 distractors, and by the tests.
- ``family``: the task family an instance belongs to (``babyai:BabyAI-GoToLocal-v0``,
  ``pddl:tyreworld``, ``scienceworld:boil``, ``alfworld:pick_and_place_simple``);
  ``notes()``: fixed facts about that family (rules a player learns after one game).
- ``distractor_kwargs()``: the ``make_env`` keyword arguments of a DIFFERENT
  task of the same environment (another level / domain / task), whose
  observations are stage-2 distractors.

How the memory protocol (SPEC §4) applies here (``envs.runner.run_env_episode``)
---------------------------------------------------------------------------------
The environments are the same three-stage episode as the QA tasks; what differs
is what the turns carry and how the end is scored.

1. ``"ltm"``, LTM construction: what a player would know from EARLIER TRIALS OF
   THE SAME TASK FAMILY. One turn with the family's rules (``notes()``), then one
   turn per earlier trial: the goal of another instance of the family (other
   seeds, never the episode's own) and the expert's action sequence that solved
   it (``render_trial``). These are the facts and lessons worth an
   ``Add_memory``; the current goal is not revealed.
2. ``"stm"``, STM control under distractors: observations from a DIFFERENT task
   of the same environment (another BabyAI level, another PDDL domain, another
   ScienceWorld task, another ALFWorld task type), recorded along that task's
   expert path, one per turn.
   They look like game observations but describe another goal and other
   objects: material to ``Filter_context`` / ``Summary_context`` away.
3. ``"reason"``: the game itself. The first turn gives the goal, the action help,
   the first observation and the valid actions (when there are at most
   ``max_listed_actions``); every later turn is the observation after the
   previous action. The policy may call memory tools inside a turn (e.g.
   retrieve a lesson) and ends the turn with ``<answer>ACTION</answer>``; that
   text is the action. A malformed or invalid action, or a turn without an
   answer, comes back as an error observation and the game goes on. The game
   ends when the environment is done or after ``max_env_turns`` turns.

Scores: ``success`` (the instance was solved: SPEC §7 success rate for BabyAI,
ScienceWorld, ALFWorld) and ``progress`` = the highest ``progress`` reached during
the game (SPEC §7 progress rate for PDDL: the best share of the goal reached, so
undoing a goal atom late does not erase it; our reading of AgentBoard's metric,
not checked against its code);
``final_progress`` is kept too. Costs as for QA episodes: prompt tokens, tool
calls by type, wall time.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Protocol, runtime_checkable

from ..errors import AgememError

INSTALL_HINT = "pip install 'agemem-lite[envs]'"


class EnvUnavailable(AgememError):
    """An environment's package (or the Java runtime) is not installed."""


class Reset(NamedTuple):
    """What ``TextEnv.reset`` returns."""

    observation: str
    goal: str


class Transition(NamedTuple):
    """What ``TextEnv.step`` returns; ``invalid``: the action was refused and nothing changed."""

    observation: str
    progress: float
    done: bool
    invalid: bool = False


@runtime_checkable
class TextEnv(Protocol):
    """A long-horizon environment played through text (see the module docstring)."""

    name: str
    family: str
    action_help: str
    progress: float
    success: bool

    def reset(self, seed: int) -> Reset: ...
    def step(self, action: str) -> Transition: ...
    def valid_actions(self) -> list[str]: ...
    def expert_actions(self) -> list[str]: ...
    def notes(self) -> list[str]: ...
    def distractor_kwargs(self) -> dict: ...
    def close(self) -> None: ...


_WRAP = re.compile(r"^[\s\"'`(\[]+|[\s\"'`)\].]+$")


def normalize_action(text: str) -> str:
    """Lower case, single spaces, no surrounding quotes/brackets or trailing period."""
    return " ".join(_WRAP.sub("", str(text)).lower().split())


def invalid_message(action: str, reason: str, limit: int = 80) -> str:
    """The error observation for a refused action (the same wording in every environment);
    an action longer than ``limit`` characters is echoed cut, so rambling costs no context twice."""
    shown = action if len(action) <= limit else action[:limit - 3] + "..."
    return f"Invalid action {shown!r}: {reason} Nothing happened."


# name -> "module:Class"; modules are imported only by make_env (their packages are optional).
ENVS: dict[str, str] = {
    "babyai": "babyai:BabyAIEnv",
    "pddl": "pddl:PDDLEnv",
    "scienceworld": "scienceworld:ScienceWorldEnv",
    "alfworld": "alfworld:AlfworldEnv",
}


def env_class(name: str):
    """The class registered as ``name`` (imports its module)."""
    import importlib

    if name not in ENVS:
        raise ValueError(f"env {name!r}: unknown environment; use one of {', '.join(ENVS)}")
    module, cls = ENVS[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def make_env(name: str, **kwargs) -> TextEnv:
    """Open environment ``name`` with its keyword arguments, e.g.
    ``make_env("babyai", level="BabyAI-GoToLocal-v0")``, ``make_env("pddl", domain="tyreworld",
    size=1)``, ``make_env("scienceworld", task="boil")``,
    ``make_env("alfworld", task_type="pick_heat_then_place_in_recep")``."""
    return env_class(name)(**kwargs)


__all__ = ["ENVS", "EnvUnavailable", "INSTALL_HINT", "Reset", "TextEnv", "Transition", "env_class",
           "invalid_message", "make_env", "normalize_action"]
