"""BabyAI (``minigrid`` ``BabyAI-*`` levels) as a text environment; SPEC §7 success rate.

The agent sees a 7x7 square ahead of it (minigrid's partial view: walls and
closed doors hide what is behind them). ``render_view`` turns that view into
text with a FIXED format (tested exactly in ``tests/test_envs.py``)::

    In front of you: <thing or 'empty floor'>.
    You carry <thing or 'nothing'>.
    You see:
    - <thing> <where>
    - ...

- ``<thing>``: ``a wall``; a door ``a|an <open|closed|locked> <colour> door``;
  anything else ``a <colour> <type>`` (key, ball, box, ...).
- ``<where>``: counted from the agent's cell: ``N step(s) left`` or ``N step(s)
  right`` first, then ``N step(s) forward``, joined by `` and `` (``2 steps left
  and 1 step forward``). In the view grid (x right, y down, the agent at (3, 6)
  looking up) a cell (x, y) is ``x - 3`` to the right and ``6 - y`` forward.
- Listed: every visible cell that is not empty floor, in order of forward
  distance (nearest first), then from left to right; walls only the nearest one
  straight ahead, to the left and to the right (the rest of a room's walls would
  only repeat them). The agent's own cell is left out (what it carries is on
  its own line). An empty list reads ``- nothing``.
- After an action that changed nothing (a wall ahead, nothing to pick up), the
  observation starts with the line ``Nothing happened.``.

Actions (text -> minigrid action): ``turn left``, ``turn right``, ``go forward``,
``pick up``, ``drop``, ``toggle``. minigrid's ``done`` does nothing in BabyAI and is
not offered. ``progress`` is 1.0 once the mission is accomplished, else 0.0.
Set ``SDL_VIDEODRIVER=dummy`` where no display exists (done here before import).
"""

from __future__ import annotations

import os

from . import INSTALL_HINT, EnvUnavailable, Reset, Transition, invalid_message, normalize_action

ACTIONS = {"turn left": 0, "turn right": 1, "go forward": 2, "pick up": 3, "drop": 4, "toggle": 5}
ACTION_NAMES = {v: k for k, v in ACTIONS.items()}
VIEW = 7                       # minigrid's default agent_view_size; the agent is at (3, 6)
DOOR_STATES = ("open", "closed", "locked")

# Another level whose observations are stage-2 distractors (same environment, other task).
DISTRACTOR_LEVELS = {
    "BabyAI-GoToLocal-v0": "BabyAI-PickupLoc-v0",
    "BabyAI-PickupLoc-v0": "BabyAI-GoToLocal-v0",
    "BabyAI-GoToObj-v0": "BabyAI-GoToRedBallGrey-v0",
}

ACTION_HELP = ("Actions: turn left, turn right, go forward, pick up, drop, toggle. Positions are counted "
               "from you (left/right, then forward). 'pick up' takes the object directly in front of you; "
               "'toggle' opens the door in front of you.")

NOTES = [
    "BabyAI: you see a 7x7 square ahead of you; walls and closed doors hide what is behind them. Positions "
    "are counted from you: steps left or right, then steps forward.",
    "BabyAI moves: 'go forward' moves one cell; 'turn left' and 'turn right' turn in place by 90 degrees, so "
    "after 'turn left' an object that was 2 steps left is 2 steps forward.",
    "BabyAI objects: 'pick up' takes the object directly in front of you (you carry one at a time), 'drop' "
    "puts it down in front of you, 'toggle' opens or closes the door in front of you; a locked door opens "
    "only while you carry a key of its colour.",
    "BabyAI goals: 'go to X' is reached when X is directly in front of you (1 step forward); 'put X next to "
    "Y' means dropping X on a cell beside Y.",
]


def _gym():
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    try:
        import gymnasium
        import minigrid
    except ImportError as e:
        raise EnvUnavailable(f"BabyAI needs minigrid ({e}); {INSTALL_HINT}") from None
    del minigrid  # importing it registers the BabyAI-* levels with gymnasium
    return gymnasium


def _steps(n: int, word: str) -> str:
    return f"{n} step{'s' if n != 1 else ''} {word}"


def where(dx: int, forward: int) -> str:
    """``dx`` cells to the right (negative: left) and ``forward`` cells ahead, as text."""
    parts = []
    if dx:
        parts.append(_steps(abs(dx), "left" if dx < 0 else "right"))
    if forward:
        parts.append(_steps(forward, "forward"))
    return " and ".join(parts)


def describe(obj_idx: int, color_idx: int, state: int) -> str | None:
    """One encoded view cell as a noun phrase; None for unseen cells and empty floor."""
    from minigrid.core.constants import IDX_TO_COLOR, IDX_TO_OBJECT

    kind = IDX_TO_OBJECT[int(obj_idx)]
    if kind in ("unseen", "empty", "agent"):
        return None
    if kind == "wall":
        return "a wall"
    color = IDX_TO_COLOR[int(color_idx)]
    if kind == "door":
        s = DOOR_STATES[int(state)]
        return f"{'an' if s == 'open' else 'a'} {s} {color} door"
    return f"a {color} {kind}"


def render_view(image, carrying=None) -> str:
    """The text of minigrid's encoded 7x7 view ``image[x, y] = (object, colour, state)``."""
    mid, back = VIEW // 2, VIEW - 1
    front = describe(*image[mid, back - 1]) or "empty floor"
    carry = f"a {carrying.color} {carrying.type}" if carrying is not None else "nothing"
    # nearest wall straight ahead, to the left and to the right (the agent's column and row)
    ahead = [(mid, y) for y in range(back - 1, -1, -1)]
    left = [(x, back) for x in range(mid - 1, -1, -1)]
    right = [(x, back) for x in range(mid + 1, VIEW)]
    walls = set()
    for line in (ahead, left, right):
        for x, y in line:
            if describe(*image[x, y]) == "a wall":
                walls.add((x, y))
                break
    items = []
    for y in range(back, -1, -1):
        for x in range(VIEW):
            if (x, y) == (mid, back):
                continue
            thing = describe(*image[x, y])
            if thing is None or (thing == "a wall" and (x, y) not in walls):
                continue
            items.append(f"- {thing} {where(x - mid, back - y)}")
    return (f"In front of you: {front}.\nYou carry {carry}.\nYou see:\n"
            + ("\n".join(items) if items else "- nothing"))


class BabyAIEnv:
    """A BabyAI level played through text (see the module docstring)."""

    name = "babyai"
    action_help = ACTION_HELP

    def __init__(self, level: str = "BabyAI-GoToLocal-v0", max_steps: int | None = None):
        gym = _gym()
        if not level.startswith("BabyAI-") or level not in gym.registry:
            raise ValueError(f"level={level!r}: not a registered BabyAI level (e.g. BabyAI-GoToLocal-v0)")
        self.level, self.family = level, f"babyai:{level}"
        self._kwargs = {} if max_steps is None else {"max_steps": max_steps}
        self._env = gym.make(level, **self._kwargs)
        self.seed: int | None = None
        self.progress, self.success, self.done = 0.0, False, False
        self._last = ""

    @property
    def unwrapped(self):
        return self._env.unwrapped

    def _observe(self) -> str:
        u = self.unwrapped
        return render_view(u.gen_obs()["image"], u.carrying)

    def _state(self):
        u = self.unwrapped
        return (tuple(int(v) for v in u.agent_pos), int(u.agent_dir), id(u.carrying), u.grid.encode().tobytes())

    def reset(self, seed: int) -> Reset:
        self._env.reset(seed=int(seed))
        self.seed = int(seed)
        self.progress, self.success, self.done = 0.0, False, False
        self._last = self._observe()
        return Reset(self._last, self.unwrapped.mission)

    def valid_actions(self) -> list[str]:
        return [] if self.done else list(ACTIONS)

    def step(self, action: str) -> Transition:
        if self.seed is None:
            raise RuntimeError("call reset(seed) before step()")
        if self.done:
            return Transition("The game is over.", self.progress, True, True)
        a = normalize_action(action)
        if a not in ACTIONS:
            return Transition(invalid_message(action, f"use one of: {', '.join(ACTIONS)}."), self.progress,
                              False, True)
        before = self._state()
        _, reward, terminated, truncated, _ = self._env.step(ACTIONS[a])
        self.success = bool(terminated and reward > 0)
        self.progress = 1.0 if self.success else 0.0
        self.done = bool(terminated or truncated)
        text = self._observe()
        if self._state() == before:
            text = "Nothing happened.\n" + text
        self._last = text
        return Transition(text, self.progress, self.done)

    def expert_actions(self) -> list[str]:
        """``BabyAIBot``'s actions from this seed's start (a fresh copy of the level; ``done`` dropped)."""
        if self.seed is None:
            raise RuntimeError("call reset(seed) before expert_actions()")
        from minigrid.utils.baby_ai_bot import BabyAIBot

        env = _gym().make(self.level, **self._kwargs)
        try:
            env.reset(seed=self.seed)
            bot, out = BabyAIBot(env.unwrapped), []
            for _ in range(env.unwrapped.max_steps):
                a = int(bot.replan())
                _, _, terminated, truncated, _ = env.step(a)
                if a in ACTION_NAMES:
                    out.append(ACTION_NAMES[a])
                if terminated or truncated:
                    break
            return out
        finally:
            env.close()

    def notes(self) -> list[str]:
        return list(NOTES)

    def distractor_kwargs(self) -> dict:
        other = DISTRACTOR_LEVELS.get(self.level, "BabyAI-GoToObj-v0")
        return {"level": other if other != self.level else "BabyAI-GoToRedBallGrey-v0"}

    def close(self) -> None:
        self._env.close()
