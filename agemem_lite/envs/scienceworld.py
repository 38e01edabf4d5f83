"""ScienceWorld (``scienceworld`` 1.2.3, a Java simulator) as a text environment; SPEC §7 success rate.

Needs a Java runtime (JRE ≥ 8) on PATH: the package ships the simulator jar and
starts it through py4j. Without ``java`` opening the environment raises
``EnvUnavailable`` naming the missing JRE.

- An instance is a task (``boil``, ``melt``, ``find-living-thing``, ...; 30 tasks)
  and a variation: ``reset(seed)`` loads variation ``split_variations[seed % n]``
  of the chosen split (``train``/``dev``/``test``) with ``simplification``
  (default ``easy``: teleporting, no electrical actions, open doors, ...).
- Observation: the simulator's own text (the first one is ``look around``).
  Goal: the task description without its ``Task Description:`` header.
- Actions: ScienceWorld's parser (templates in ``action_help``, e.g. ``open OBJ``,
  ``move OBJ to OBJ``). Input it does not understand (``No known action ...``,
  ``Unknown action ...``) is an invalid action and costs no move. ``reset task``
  is refused (the episode, not the player, decides when a game restarts).
  An ambiguous action is resolved to the first reading the simulator offers
  (it answers option ``0``; our decision, so one turn is always one move).
- ``progress`` = the simulator's score / 100 (a failed game's negative score
  counts as 0); ``success`` = score 100; ``done`` when the simulator says so
  (solved, failed, or its ``step_limit``).
"""

from __future__ import annotations

import shutil

from . import INSTALL_HINT, EnvUnavailable, Reset, Transition, invalid_message, normalize_action

UNKNOWN = ("No known action matches that input.", "Unknown action.")
AMBIGUOUS = "Ambiguous request"
REFUSED = {"reset task": "restarting the task is not allowed during an episode."}

# Another task whose observations are stage-2 distractors (same simulator, different goal).
DISTRACTOR_TASKS = {
    "boil": "freeze", "freeze": "melt", "melt": "boil",
    "find-living-thing": "find-non-living-thing", "find-non-living-thing": "find-living-thing",
    "find-animal": "find-plant", "find-plant": "find-animal",
}

NOTES = [
    "ScienceWorld: 'look around' describes the room you are in; 'go to ROOM' moves through an open door "
    "('open door to ROOM' first if it is closed); 'pick up X' puts X in your inventory.",
    "ScienceWorld: 'focus on X' tells the game which object the task is about. Focusing on the wrong object "
    "ends the game as a failure, so focus only when sure, and only once.",
    "ScienceWorld: processes such as heating, freezing or growing take time: use 'wait' (ten steps) or "
    "'wait1' (one step) and then 'examine' or measure again.",
]


def _java_or_raise() -> None:
    if shutil.which("java") is None:
        raise EnvUnavailable("ScienceWorld needs a Java runtime (JRE >= 8) and 'java' is not on PATH; "
                             "install one, e.g. 'apt-get install default-jre-headless'")


class ScienceWorldEnv:
    """A ScienceWorld task played through text (see the module docstring)."""

    name = "scienceworld"

    def __init__(self, task: str = "boil", simplification: str = "easy", split: str = "train",
                 step_limit: int = 100):
        if split not in ("train", "dev", "test"):
            raise ValueError(f"split={split!r}: use 'train', 'dev' or 'test'")
        try:
            from scienceworld import ScienceWorldEnv as _Sim
        except ImportError as e:
            raise EnvUnavailable(f"ScienceWorld needs the scienceworld package ({e}); {INSTALL_HINT}") from None
        _java_or_raise()
        self._sim = _Sim("", envStepLimit=step_limit)
        if task not in self._sim.get_task_names():
            self._sim.close()
            raise ValueError(f"task={task!r}: not a ScienceWorld task; e.g. boil, melt, find-living-thing")
        self.task, self.simplification, self.split = task, simplification, split
        self.family = f"scienceworld:{task}"
        self.seed: int | None = None
        self.variation: int | None = None
        self.progress, self.success, self.done = 0.0, False, False
        self.action_help = ""
        self._valid: list[str] = []
        self._split_variations: list[int] = []

    def _variations(self) -> list[int]:
        if self._split_variations:
            return self._split_variations
        sim = self._sim
        sim.load(self.task, 0, self.simplification)
        get = {"train": sim.get_variations_train, "dev": sim.get_variations_dev,
               "test": sim.get_variations_test}[self.split]
        self._split_variations = list(get())
        return self._split_variations

    def reset(self, seed: int) -> Reset:
        variations = self._variations()
        self.seed, self.variation = int(seed), variations[int(seed) % len(variations)]
        self._sim.load(self.task, self.variation, self.simplification, generateGoldPath=True)
        obs, info = self._sim.reset()
        templates = [a for a in self._sim.get_possible_actions() if a not in REFUSED]
        self.action_help = ("Actions (OBJ is an object or a place you can see): " + "; ".join(templates) + ".")
        self.progress, self.success, self.done = 0.0, False, False
        self._valid = list(info.get("valid", []))
        goal = info["taskDesc"].replace("Task Description:", "").strip()
        return Reset(obs.strip(), goal)

    def valid_actions(self) -> list[str]:
        return [] if self.done else [a for a in self._valid if a not in REFUSED]

    def step(self, action: str) -> Transition:
        if self.seed is None:
            raise RuntimeError("call reset(seed) before step()")
        if self.done:
            return Transition("The game is over.", self.progress, True, True)
        a = normalize_action(action)
        if not a:
            return Transition(invalid_message(action, "it is empty."), self.progress, False, True)
        if a in REFUSED:
            return Transition(invalid_message(action, REFUSED[a]), self.progress, False, True)
        obs, _, completed, info = self._sim.step(a)
        if obs.startswith(AMBIGUOUS):
            obs, _, completed, info = self._sim.step("0")
        if obs.startswith(UNKNOWN):
            return Transition(invalid_message(action, "ScienceWorld does not understand it; use the action "
                                              "templates with objects you can see."), self.progress, False, True)
        score = int(info["score"])
        self.progress = max(score, 0) / 100.0
        self.success = score >= 100
        self.done = bool(completed)
        self._valid = list(info.get("valid", []))
        return Transition(obs.strip(), self.progress, self.done)

    def expert_actions(self) -> list[str]:
        """The simulator's gold path for this variation (generated at ``reset``)."""
        if self.seed is None:
            raise RuntimeError("call reset(seed) before expert_actions()")
        return list(self._sim.get_gold_action_sequence())

    def notes(self) -> list[str]:
        return list(NOTES)

    def distractor_kwargs(self) -> dict:
        return {"task": DISTRACTOR_TASKS.get(self.task, "find-living-thing" if self.task != "find-living-thing"
                                             else "boil"), "simplification": self.simplification,
                "split": self.split}

    def close(self) -> None:
        self._sim.close()
