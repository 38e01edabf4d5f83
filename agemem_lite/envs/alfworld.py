"""ALFWorld household tasks, generated locally from the ``alfworld`` wheel's data; SPEC §7 success rate.

The ``alfworld`` wheel (0.4.2) ships no playable games and its engine
(``textworld[pddl]``) cannot be installed here, so it is installed with
``pip install --no-deps alfworld==0.4.2`` and only its data is read: the room
layouts (``gen/layouts/FloorPlanN-objects.json`` / ``-openable.json``), the
object and receptacle tables of ``gen/constants.py`` and the task templates of
``gen/goal_library.py``. Those two modules are plain Python and are loaded from
their files (``import alfworld`` would create ``~/.cache/alfworld``). The game is
simulated here, following the rules of ``data/alfred.pddl`` and the phrasing
of ``data/alfred.twl2``.

Generating a game (``reset(seed)``, deterministic: ``random.Random(f"alfworld:{task_type}:{seed}")``):
1. a scene: a FloorPlan whose room type suits the task (``GOALS_VALID``: heat and
   cool in kitchens, light in living rooms and bedrooms, ...).
2. its receptacles: one per entry of ``-openable.json`` (``Sink`` is the
   ``sinkbasin``, ``Bathtub`` the ``bathtubbasin``), plus one of each other fixed
   receptacle type ``-objects.json`` names (garbagecan, coffeemachine, stoveburner,
   toaster, towel holders ...); numbered per type: ``cabinet 1``, ``cabinet 2``.
   Fridge, cabinet, drawer, microwave and safe start closed.
3. a goal: an object type of the scene and a target receptacle type that may hold
   it (``VAL_RECEPTACLE_OBJECTS``); for clean/heat/cool the object must be
   cleanable/heatable/coolable (``VAL_ACTION_OBJECTS``) and the room must have a
   sinkbasin/microwave/fridge (never also the target); for light, a desklamp or
   floorlamp. The goal text is the goal library's first template for the task
   type ("put a clean apple in fridge", "look at bowl under the desklamp").
4. the objects: each pickable type of the scene (one some receptacle may hold)
   gets 1 to ``MAX_NUM_OF_OBJ_INSTANCES`` (3) instances (the goal type of
   ``pick_two_obj_and_place`` at least 2), each in a random receptacle that may hold
   it; goal objects never start in a target-type receptacle. A desklamp stands on
   a table, desk, dresser or shelf; a floorlamp on the floor next to a piece of
   furniture ("Next to it, you see a floorlamp 1."). Movable receptacles (mug,
   bowl, pan ...) are plain objects here: nothing is put inside them.
5. a game whose scripted solution (below) needs more than ``MAX_EXPERT_ACTIONS``
   (40) actions is drawn again (about 1 game in 100), so every game can be
   won within the default ``max_steps`` (50, ALFWorld's usual budget).

Rules (the domain's actions; every receptacle is its own location, the player
starts in the middle of the room holding nothing):
- ``go to R``: arrive at R and see it (a closed R shows only that it is closed).
- ``open R`` / ``close R``: at R, an openable R. ``take O from R``: at R, R open or
  not openable, O in R, hands empty. ``move O to R``: holding O, at R, R open or
  not openable, R's type may hold O's type. (0.4.2's grammar writes ``move O to R``
  / "You move the O to the R."; older releases and published ALFWorld prompts
  write ``put O in/on R``, so that is accepted too, but not listed.)
- ``clean O with R`` (a sinkbasin), ``heat O with R`` (a microwave), ``cool O with R``
  (a fridge): holding O, at R, O's type allows it; R need not be open. Heating
  makes O hot and not cool, cooling the reverse.
- ``use L``: L a lamp at the player's location; it is on from then on.
- ``examine X`` (X at the player's location, or held), ``inventory``, ``look``.
An action that does not parse, names nothing here, or whose conditions do not
hold changes nothing and counts no step: ``invalid=True`` with an error naming the
problem (``nothing_happens=True``: ALFWorld's bare "Nothing happens." instead).
It never reveals what is inside a closed receptacle. The game ends when the goal
holds or after ``max_steps`` accepted actions.

``progress``: the best object's share of ordered subgoals, each counted only
when the ones before it hold (the targets are receptacles of the goal's type):
- pick_and_place_simple: held or in a target; in a target.
- pick_clean/heat/cool_then_place_in_recep: held or in a target; clean/hot/cool;
  and in a target.
- pick_two_obj_and_place: per target receptacle, 2 per goal object in it (at most
  two) plus 1 while holding another one, out of 4.
- look_at_obj_in_light: held; held at a lamp of the goal's type; that lamp on.
``success``: the goal holds (progress 1.0).

``expert_actions()``: a scripted player that knows the tables (which receptacle
types may hold what) and otherwise only what it has seen: it visits the receptacles that may hold the goal object in listing order (skipping
target-type ones), opening closed ones, takes the first goal object it sees,
then cleans/heats/cools it, or finds a lamp and uses it, and puts it in the first
target receptacle (opened if closed); for two objects it fetches a second one,
going back to one it saw or searching on.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from . import EnvUnavailable, Reset, Transition, invalid_message, normalize_action

INSTALL_LINE = "pip install --no-deps alfworld==0.4.2"

TASK_TYPES = ("pick_and_place_simple", "pick_two_obj_and_place", "look_at_obj_in_light",
              "pick_clean_then_place_in_recep", "pick_heat_then_place_in_recep", "pick_cool_then_place_in_recep")

# treatment task -> (VAL_ACTION_OBJECTS key, receptacle type used, verb, adjective in the state)
TREATMENTS = {
    "pick_clean_then_place_in_recep": ("Cleanable", "SinkBasin", "clean", "clean"),
    "pick_heat_then_place_in_recep": ("Heatable", "Microwave", "heat", "hot"),
    "pick_cool_then_place_in_recep": ("Coolable", "Fridge", "cool", "cool"),
}
VERBS = {verb: (kind, rtype, state) for kind, rtype, verb, state in TREATMENTS.values()}

# Another task type whose observations are stage-2 distractors.
DISTRACTOR_TASKS = {
    "pick_and_place_simple": "pick_two_obj_and_place",
    "pick_two_obj_and_place": "pick_and_place_simple",
    "look_at_obj_in_light": "pick_and_place_simple",
    "pick_clean_then_place_in_recep": "pick_heat_then_place_in_recep",
    "pick_heat_then_place_in_recep": "pick_cool_then_place_in_recep",
    "pick_cool_then_place_in_recep": "pick_clean_then_place_in_recep",
}

MAX_EXPERT_ACTIONS = 40     # a game the scripted expert needs more actions for is drawn again
LAYOUT_NAMES = {"Sink": "SinkBasin", "Bathtub": "BathtubBasin"}   # openable.json type -> receptacle type
LAMPS = ("DeskLamp", "FloorLamp")
DESK_LAMP_HOSTS = {"SideTable", "Desk", "Dresser", "Shelf", "CoffeeTable", "DiningTable", "TVStand"}
FLOOR_LAMP_SPOTS = DESK_LAMP_HOSTS | {"ArmChair", "Sofa", "Bed", "Ottoman"}

ACTION_HELP = (
    "Actions (names exactly as shown, with their numbers): go to RECEPTACLE, open R, close R, take OBJECT "
    "from R, move OBJECT to R (or: put OBJECT in/on R), clean O with R (a sinkbasin), heat O with R (a "
    "microwave), cool O with R (a fridge), use LAMP, examine X, inventory, look. You hold one object at a "
    "time and must be at a receptacle to use it.")

GENERIC_NOTES = (
    "ALFWorld: every receptacle is its own place; 'go to R' walks there and shows what is on it. Fridges, "
    "cabinets, drawers, microwaves and safes start closed: 'open R' shows what is inside.",
    "ALFWorld: names carry numbers ('apple 2', 'countertop 1'); write them exactly. You hold one object at a "
    "time: 'take O from R', then 'move O to R' at the target (open it first if it is closed); an object "
    "only goes where it fits.",
    "ALFWorld: the goal object is never already in the target; search the receptacles that could hold it, "
    "one after another, and take the first one you see.",
)
TASK_NOTES = {
    "pick_and_place_simple": "Put tasks ('put a X in Y'): take any X and move it to a Y (any Y counts).",
    "pick_two_obj_and_place": ("Two-object tasks ('put two X in Y'): carry the X one at a time and put both in "
                               "the SAME Y; remember where you saw the second one."),
    "look_at_obj_in_light": ("Light tasks ('look at X under the desklamp'): take X, go to where the lamp is "
                             "(a desklamp stands on furniture; a floorlamp beside it) and 'use' the lamp while "
                             "holding X."),
    "pick_clean_then_place_in_recep": ("Clean tasks: take the object, go to the sinkbasin and 'clean O with "
                                       "sinkbasin 1' while holding it, then put it in the target."),
    "pick_heat_then_place_in_recep": ("Heat tasks: take the object, go to the microwave and 'heat O with "
                                      "microwave 1' while holding it (no need to open it or put it inside), "
                                      "then put it in the target."),
    "pick_cool_then_place_in_recep": ("Cool tasks: take the object, go to the fridge and 'cool O with fridge 1' "
                                      "while holding it (no need to open it), then put it in the target."),
}


# -- the wheel's data ------------------------------------------------------------------------------
def _load(path: Path, name: str):
    """A plain-Python data module of the wheel, run from its file (its package is never imported)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(eq=False)
class Catalog:
    """What the generator reads from the ``alfworld`` wheel (read once per process: ``catalog()``)."""

    root: Path
    holds: dict[str, frozenset]               # receptacle type -> object types it may hold
    abilities: dict[str, frozenset]           # Cleanable / Heatable / Coolable / Toggleable -> object types
    openable: frozenset                       # receptacle types that open and close
    room_types: dict[str, set]                # task type -> room types (GOALS_VALID)
    scene_rooms: dict[str, range]             # room type -> scene numbers (SCENE_TYPE)
    max_instances: int                        # MAX_NUM_OF_OBJ_INSTANCES
    templates: dict[str, list[str]]           # task type -> English goal templates
    scenes: tuple[int, ...]                   # scene numbers with layouts
    movable: frozenset                        # MOVABLE_RECEPTACLES: mug, bowl, pan ... (objects here)

    @property
    def fixed_receptacles(self) -> frozenset:
        return frozenset(self.holds) - self.movable

    def room_of(self, scene: int) -> str:
        return next(room for room, numbers in self.scene_rooms.items() if scene in numbers)

    @lru_cache(maxsize=None)
    def layout(self, scene: int) -> tuple[tuple[str, ...], frozenset]:
        """Scene ``scene``'s receptacle types (one entry per instance) and its object types."""
        base = self.root / "gen" / "layouts" / f"FloorPlan{scene}"
        openable = json.loads(base.with_name(base.name + "-openable.json").read_text())
        objects = frozenset(json.loads(base.with_name(base.name + "-objects.json").read_text()))
        recs = [LAYOUT_NAMES.get(key.split("|")[0], key.split("|")[0]) for key in openable]
        recs = [r for r in recs if r in self.fixed_receptacles]
        recs += sorted((objects & self.fixed_receptacles) - set(recs))
        return tuple(recs), objects


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    """The wheel's data (read once); ``EnvUnavailable`` naming the install line without it."""
    spec = importlib.util.find_spec("alfworld")
    if spec is None or not spec.submodule_search_locations:
        raise EnvUnavailable(f"ALFWorld needs the alfworld package's data (not installed); {INSTALL_LINE} "
                             "(--no-deps: its engine textworld[pddl] is not installable and not used)")
    root = Path(list(spec.submodule_search_locations)[0])
    try:
        c = _load(root / "gen" / "constants.py", "_alfworld_constants")
        g = _load(root / "gen" / "goal_library.py", "_alfworld_goal_library")
    except (OSError, SyntaxError, ImportError) as e:
        raise EnvUnavailable(f"ALFWorld data unreadable in {root} ({e}); {INSTALL_LINE}") from None
    holds = {r: frozenset(v) for r, v in c.VAL_RECEPTACLE_OBJECTS.items()}
    scenes = tuple(sorted(int(p.name[len("FloorPlan"):-len("-openable.json")])
                          for p in (root / "gen" / "layouts").glob("FloorPlan*-openable.json")))
    cat = Catalog(root=root, holds=holds,
                  abilities={k: frozenset(v) for k, v in c.VAL_ACTION_OBJECTS.items()},
                  openable=frozenset(c.OPENABLE_CLASS_LIST), room_types={k: set(v) for k, v in c.GOALS_VALID.items()},
                  scene_rooms=dict(c.SCENE_TYPE), max_instances=int(c.MAX_NUM_OF_OBJ_INSTANCES),
                  templates={t: list(g.gdict[t]["templates"]) for t in TASK_TYPES}, scenes=scenes,
                  movable=frozenset(c.MOVABLE_RECEPTACLES))
    return cat


# -- text ------------------------------------------------------------------------------------------
def name_of(kind: str, number: int) -> str:
    return f"{kind.lower()} {number}"


def kind_of(name: str) -> str:
    return name.rsplit(" ", 1)[0]


def _order(name: str):
    kind, _, n = name.rpartition(" ")
    return (kind, int(n)) if n.isdigit() else (name, 0)


def _natural(text: str) -> list:
    """Sort key: numbers compare as numbers (``cabinet 2`` before ``cabinet 10``)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def listing(names) -> str:
    """TextWorld's list: ``a x 1, a y 2, and a z 1``; ``nothing`` when empty."""
    items = [f"a {n}" for n in sorted(names, key=_order)]
    if not items:
        return "nothing"
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + ", and " + items[-1]


# -- the game state and its rules ------------------------------------------------------------------
@dataclass
class Game:
    """One generated instance: what is where and in which state (all names lower case)."""

    scene: int
    task_type: str
    goal: str
    goal_object: str                          # object type, lower case ("apple")
    target: str | None                        # receptacle type ("fridge"); None for light tasks
    lamp: str | None                          # lamp type for light tasks ("desklamp")
    receptacles: list[str]                    # listing order
    holds: dict[str, frozenset]               # receptacle -> object types (lower case) it may hold
    openable: set[str]
    location: dict[str, str]                  # object -> receptacle it is in (or beside: floor lamps)
    can: dict[str, set[str]]                  # "clean"/"heat"/"cool"/"use" -> object types that allow it
    floor: set[str] = field(default_factory=set)     # objects standing beside their receptacle
    opened: set[str] = field(default_factory=set)
    states: dict[str, set[str]] = field(default_factory=lambda: {"clean": set(), "hot": set(), "cool": set(),
                                                                 "on": set()})
    at: str | None = None
    held: str | None = None
    steps: int = 0

    # what the player can see
    def inside(self, r: str) -> list[str]:
        return sorted((o for o, where in self.location.items() if where == r and o not in self.floor), key=_order)

    def beside(self, r: str) -> list[str]:
        return sorted((o for o in self.floor if self.location[o] == r), key=_order)

    def is_open(self, r: str) -> bool:
        return r not in self.openable or r in self.opened

    def visible(self) -> list[str]:
        if self.at is None:
            return []
        return (self.inside(self.at) if self.is_open(self.at) else []) + self.beside(self.at)

    def room(self) -> str:
        return f"You are in the middle of a room. Looking quickly around you, you see {listing(self.receptacles)}."

    def describe(self, r: str) -> str:
        """ALFWorld's examineReceptacle feedback, plus what stands beside it."""
        if r in self.openable:
            text = (f"The {r} is open. In it, you see {listing(self.inside(r))}." if r in self.opened
                    else f"The {r} is closed.")
        else:
            text = f"On the {r}, you see {listing(self.inside(r))}."
        if self.beside(r):
            text += f" Next to it, you see {listing(self.beside(r))}."
        return text

    def examine_object(self, o: str) -> str:
        s = {k for k, names in self.states.items() if o in names}
        if kind_of(o) in self.can["use"]:
            return f"This {o} is {'on' if 'on' in s else 'off'}."
        if {"clean", "hot"} <= s:
            return f"This is a hot and clean {o}."
        if {"clean", "cool"} <= s:
            return f"This is a cool and clean {o}."
        for state, word in (("hot", "hot"), ("clean", "clean"), ("cool", "cold")):
            if state in s:
                return f"This is a {word} {o}."
        return f"There's nothing special about {o}."

    # the rules: (feedback, None) when the action applies (state changed), (None, reason) when not
    def act(self, action: str) -> tuple[str | None, str | None]:
        a = normalize_action(action)
        if a == "look":
            return (self.room() if self.at is None else f"You are facing the {self.at}. Next to it, you see "
                    f"{listing(self.beside(self.at))}."), None
        if a == "inventory":
            return (f"You are carrying: a {self.held}." if self.held else "You are not carrying anything."), None
        for pattern, rule in self._RULES:
            m = re.fullmatch(pattern, a)
            if m:
                return getattr(self, rule)(*m.groups())
        return None, ("there is no such action; write one of: go to R, open R, close R, take O from R, move O "
                      "to R, clean/heat/cool O with R, use O, examine X, inventory, look.")

    _RULES = (
        (r"go to (.+)", "_go"), (r"open (.+)", "_open"), (r"close (.+)", "_close"),
        (r"take (.+) from (.+)", "_take"), (r"move (.+) to (.+)", "_put"),
        (r"put (.+?) (?:in/on|in|on|into|onto) (.+)", "_put"),
        (r"(clean|heat|cool) (.+) with (.+)", "_treat"), (r"use (.+)", "_use"), (r"examine (.+)", "_examine"),
    )

    def _receptacle(self, r: str) -> str | None:
        if r not in self.holds:
            return f"there is no receptacle called '{r}' in this room."
        if self.at != r:
            return f"you are not at the {r}; go to it first."
        return None

    def _go(self, r):
        if r not in self.holds:
            return None, f"there is no receptacle called '{r}' in this room; go to one of those you saw."
        if self.at == r:
            return None, f"you are already at the {r}."
        self.at = r
        return f"You arrive at {r}. {self.describe(r)}", None

    def _open(self, r):
        why = self._receptacle(r)
        if why:
            return None, why
        if r not in self.openable:
            return None, f"the {r} cannot be opened."
        if r in self.opened:
            return None, f"the {r} is already open."
        self.opened.add(r)
        return f"You open the {r}. {self.describe(r)}", None

    def _close(self, r):
        why = self._receptacle(r)
        if why:
            return None, why
        if r not in self.opened:
            return None, f"the {r} is not open." if r in self.openable else f"the {r} cannot be closed."
        self.opened.discard(r)
        return f"You close the {r}.", None

    def _take(self, o, r):
        why = self._receptacle(r)
        if why:
            return None, why
        if not self.is_open(r):
            return None, f"the {r} is closed; open it first."
        if o not in self.visible():
            return None, f"you see no {o} in/on the {r}."
        if kind_of(o) in self.can["use"]:
            return None, f"the {o} cannot be picked up."
        if self.held:
            return None, f"you are already carrying the {self.held}; put it somewhere first."
        del self.location[o]
        self.held = o
        return f"You pick up the {o} from the {r}.", None

    def _put(self, o, r):
        if self.held != o:
            return None, f"you are not carrying {'a ' + o if o else 'it'} (you carry {self.held or 'nothing'})."
        why = self._receptacle(r)
        if why:
            return None, why
        if not self.is_open(r):
            return None, f"the {r} is closed; open it first."
        if kind_of(o) not in self.holds[r]:
            return None, f"a {kind_of(o)} does not go in/on the {r}."
        self.location[o], self.held = r, None
        return f"You move the {o} to the {r}.", None

    def _treat(self, verb, o, r):
        kind, rtype, state = VERBS[verb]
        if self.held != o:
            return None, f"you are not carrying {'a ' + o if o else 'it'} (you carry {self.held or 'nothing'})."
        if r in self.holds and kind_of(r) != rtype.lower():
            return None, f"you {verb} things with a {rtype.lower()}, not with the {r}."
        why = self._receptacle(r)
        if why:
            return None, why
        if kind_of(o) not in self.can[verb]:
            return None, f"the {o} cannot be {'cleaned' if verb == 'clean' else verb + 'ed'}."
        self.states[state].add(o)
        if state in ("hot", "cool"):
            self.states["cool" if state == "hot" else "hot"].discard(o)
        return f"You {verb} the {o} using the {r}.", None

    def _use(self, o):
        if o not in self.visible() and o != self.held:
            return None, f"you see no {o} here."
        if kind_of(o) not in self.can["use"]:
            return None, f"the {o} has no switch; only lamps can be used."
        self.states["on"].add(o)
        return f"You turn on the {o}.", None

    def _examine(self, x):
        if x in self.holds:
            why = self._receptacle(x)
            return (None, why) if why else (self.describe(x), None)
        if x == self.held or x in self.visible():
            return self.examine_object(x), None
        return None, f"you see no {x} here."

    # the goal
    def _goal_objects(self) -> list[str]:
        objs = [*self.location, *([self.held] if self.held else [])]
        return sorted((o for o in objs if kind_of(o) == self.goal_object), key=_order)

    def _in_target(self, o: str) -> bool:
        return self.location.get(o) is not None and kind_of(self.location[o]) == self.target

    def subgoals_done(self) -> tuple[int, int]:
        """(ordered subgoals reached by the best goal object, how many there are); see the module docstring."""
        objs = self._goal_objects()
        if self.task_type == "pick_two_obj_and_place":
            best = 0
            for r in (r for r in self.receptacles if kind_of(r) == self.target):
                n = min(2, sum(1 for o in objs if self.location.get(o) == r))
                held = self.held is not None and kind_of(self.held) == self.goal_object
                best = max(best, 2 * n + (1 if held and n < 2 else 0))
            return best, 4
        if self.task_type == "look_at_obj_in_light":
            if self.held is None or kind_of(self.held) != self.goal_object:
                return 0, 3
            lamps = [o for o in self.visible() if kind_of(o) == self.lamp]
            if not lamps:
                return 1, 3
            return (3 if any(o in self.states["on"] for o in lamps) else 2), 3
        state = TREATMENTS[self.task_type][3] if self.task_type in TREATMENTS else None
        best = 0
        for o in objs:
            steps = [o == self.held or self._in_target(o)]
            if state:
                steps.append(o in self.states[state])
            steps.append(self._in_target(o))
            done = 0
            for ok in steps:
                if not ok:
                    break
                done += 1
            best = max(best, done)
        return best, 3 if state else 2

    # what the player may do now (the admissible actions)
    def admissible(self) -> list[str]:
        acts = [f"go to {r}" for r in self.receptacles if r != self.at]
        acts += ["inventory", "look"]
        if self.held:
            acts.append(f"examine {self.held}")
        if self.at is not None:
            r = self.at
            acts.append(f"examine {r}")
            if r in self.openable:
                acts.append(f"close {r}" if r in self.opened else f"open {r}")
            for o in self.visible():
                acts.append(f"examine {o}")
                if kind_of(o) in self.can["use"]:
                    acts.append(f"use {o}")
                elif self.held is None:
                    acts.append(f"take {o} from {r}")
            if self.held and self.is_open(r) and kind_of(self.held) in self.holds[r]:
                acts.append(f"move {self.held} to {r}")
            if self.held:
                for verb, (_, rtype, _) in VERBS.items():
                    if kind_of(r) == rtype.lower() and kind_of(self.held) in self.can[verb]:
                        acts.append(f"{verb} {self.held} with {r}")
        return sorted(set(acts), key=_natural)


# -- generation ------------------------------------------------------------------------------------
def generate(task_type: str, seed: int, cat: Catalog | None = None) -> Game:
    """The game of ``task_type`` for ``seed`` (see the module docstring)."""
    cat = cat or catalog()
    rng = random.Random(f"alfworld:{task_type}:{seed}")
    rooms = cat.room_types[task_type]
    scenes = [s for s in cat.scenes if cat.room_of(s) in rooms]
    for _ in range(200):
        game = _try_scene(cat, task_type, rng.choice(scenes), rng)
        if game is not None and len(expert_plan(game)) <= MAX_EXPERT_ACTIONS:
            return game
    raise RuntimeError(f"no feasible {task_type} game found for seed {seed}")


def _try_scene(cat: Catalog, task_type: str, scene: int, rng: random.Random) -> Game | None:
    rec_types, objects = cat.layout(scene)
    present = set(rec_types)
    pickable = sorted(t for t in objects if t not in cat.holds or t in cat.movable
                      if any(t in cat.holds[r] for r in present) and t not in LAMPS)
    lamps = [t for t in LAMPS if t in objects
             and present & (DESK_LAMP_HOSTS if t == "DeskLamp" else FLOOR_LAMP_SPOTS)]

    # the goal: (object type, target receptacle type or None, lamp type or None)
    options: list[tuple[str, str | None, str | None]] = []
    if task_type == "look_at_obj_in_light":
        options = [(o, None, lamp) for o in pickable for lamp in lamps]
    else:
        ability, tool = TREATMENTS[task_type][:2] if task_type in TREATMENTS else (None, None)
        if tool is None or tool in present:
            for o in pickable:
                if ability and o not in cat.abilities[ability]:
                    continue
                for r in sorted(present):
                    starts = [x for x in present if o in cat.holds[x] and x != r]
                    if o in cat.holds[r] and r != tool and starts:
                        options.append((o, r, None))
    if not options:
        return None
    goal_type, target, lamp = rng.choice(options)

    # receptacles, numbered per type
    count: dict[str, int] = {}
    receptacles, rtype = [], {}
    for t in rec_types:
        count[t] = count.get(t, 0) + 1
        name = name_of(t, count[t])
        receptacles.append(name)
        rtype[name] = t
    receptacles.sort(key=_order)

    # objects, each in a receptacle that may hold it (goal objects never in a target)
    location: dict[str, str] = {}
    for t in pickable:
        n = rng.randint(1, cat.max_instances)
        if t == goal_type and task_type == "pick_two_obj_and_place":
            n = max(n, 2)
        hosts = [r for r in receptacles if t in cat.holds[rtype[r]] and not (t == goal_type and rtype[r] == target)]
        if not hosts:
            continue
        for i in range(1, n + 1):
            location[name_of(t, i)] = rng.choice(hosts)
    floor = set()
    for t in lamps:
        spots = [r for r in receptacles if rtype[r] in (DESK_LAMP_HOSTS if t == "DeskLamp" else FLOOR_LAMP_SPOTS)]
        location[name_of(t, 1)] = rng.choice(spots)
        if t == "FloorLamp":
            floor.add(name_of(t, 1))

    template = cat.templates[task_type][0]
    lower = {"obj": goal_type.lower(), "recep": (target or "").lower(), "toggle": (lamp or "").lower()}
    ab = cat.abilities
    can = {"clean": {t.lower() for t in ab["Cleanable"]}, "heat": {t.lower() for t in ab["Heatable"]},
           "cool": {t.lower() for t in ab["Coolable"]}, "use": {t.lower() for t in ab["Toggleable"]}}
    return Game(scene=scene, task_type=task_type, goal=template.format(**lower), goal_object=goal_type.lower(),
                target=target.lower() if target else None, lamp=lamp.lower() if lamp else None,
                receptacles=receptacles, holds={r: frozenset(t.lower() for t in cat.holds[rtype[r]])
                                                for r in receptacles},
                openable={r for r in receptacles if rtype[r] in cat.openable}, location=location, can=can,
                floor=floor)


# -- the scripted expert ---------------------------------------------------------------------------
def expert_plan(game: Game) -> list[str]:
    """A solution from ``game``'s state by a player who knows only what it has seen (module docstring)."""
    g, out = copy.deepcopy(game), []
    seen: dict[str, str] = {}                        # goal objects and lamps seen -> where
    visited: set[str] = set()

    def do(action: str) -> None:
        text, why = g.act(action)
        if why:
            raise RuntimeError(f"expert action {action!r} refused: {why}")
        out.append(action)
        if g.at is not None:
            for o in g.visible():
                if kind_of(o) in (g.goal_object, g.lamp):
                    seen[o] = g.at

    def visit(r: str) -> None:
        if g.at != r:
            do(f"go to {r}")
        if not g.is_open(r):
            do(f"open {r}")
        visited.add(r)

    def fetch(skip: set[str]) -> str:
        """Go to a goal object not in ``skip`` (one seen, else search on) and take it."""
        order = [r for r in g.receptacles if g.goal_object in g.holds[r] and kind_of(r) != g.target]
        while True:
            for o, r in sorted(seen.items(), key=lambda kv: _order(kv[0])):
                if kind_of(o) == g.goal_object and o not in skip and g.location.get(o) == r:
                    visit(r)
                    do(f"take {o} from {r}")
                    return o
            nxt = next((r for r in order if r not in visited), None)
            if nxt is None:
                raise RuntimeError("expert: no goal object left to find")
            visit(nxt)

    def place(o: str, r: str) -> None:
        visit(r)
        do(f"move {o} to {r}")

    if g.task_type == "look_at_obj_in_light":
        fetch(set())
        while not any(kind_of(o) == g.lamp for o in seen):
            spots = [r for r in g.receptacles if r not in visited and r not in g.openable]
            if not spots:
                raise RuntimeError("expert: no lamp found")
            visit(spots[0])
        lamp = min((o for o in seen if kind_of(o) == g.lamp), key=_order)
        visit(seen[lamp])
        do(f"use {lamp}")
        return out
    target = next(r for r in g.receptacles if kind_of(r) == g.target)
    first = fetch(set())
    if g.task_type in TREATMENTS:
        _, tool, verb, _ = TREATMENTS[g.task_type]
        station = next(r for r in g.receptacles if kind_of(r) == tool.lower())
        if g.at != station:
            do(f"go to {station}")
        do(f"{verb} {first} with {station}")
    place(first, target)
    if g.task_type == "pick_two_obj_and_place":
        second = fetch({first})
        place(second, target)
    return out


# -- the environment -------------------------------------------------------------------------------
class AlfworldEnv:
    """An ALFWorld task type, one generated game per seed, played through text (see the module docstring)."""

    name = "alfworld"
    action_help = ACTION_HELP

    def __init__(self, task_type: str = "pick_and_place_simple", max_steps: int = 50, nothing_happens: bool = False):
        if task_type not in TASK_TYPES:
            raise ValueError(f"task_type={task_type!r}: not an ALFWorld task type; use one of {', '.join(TASK_TYPES)}")
        if max_steps < 1:
            raise ValueError(f"max_steps={max_steps}: must be ≥ 1")
        self.catalog = catalog()
        self.task_type, self.family = task_type, f"alfworld:{task_type}"
        self.max_steps, self.nothing_happens = max_steps, nothing_happens
        self.seed: int | None = None
        self.game: Game | None = None
        self._start: Game | None = None
        self.progress, self.success, self.done = 0.0, False, False

    def _score(self) -> None:
        done, total = self.game.subgoals_done()
        self.progress = done / total
        self.success = done == total

    def reset(self, seed: int) -> Reset:
        self.seed = int(seed)
        self.game = generate(self.task_type, self.seed, self.catalog)
        self._start = copy.deepcopy(self.game)
        self.done = False
        self._score()
        return Reset(self.game.room(), self.game.goal)

    def valid_actions(self) -> list[str]:
        return [] if self.game is None or self.done else self.game.admissible()

    def step(self, action: str) -> Transition:
        if self.game is None:
            raise RuntimeError("call reset(seed) before step()")
        if self.done:
            return Transition("The game is over.", self.progress, True, True)
        text, why = self.game.act(action)
        if why:
            shown = "Nothing happens." if self.nothing_happens else invalid_message(action, why)
            return Transition(shown, self.progress, False, True)
        self.game.steps += 1
        self._score()
        self.done = self.success or self.game.steps >= self.max_steps
        return Transition(text, self.progress, self.done)

    def expert_actions(self) -> list[str]:
        if self._start is None:
            raise RuntimeError("call reset(seed) before expert_actions()")
        return expert_plan(self._start)

    def notes(self) -> list[str]:
        return [*GENERIC_NOTES, TASK_NOTES[self.task_type]]

    def distractor_kwargs(self) -> dict:
        return {"task_type": DISTRACTOR_TASKS[self.task_type]}

    def close(self) -> None:
        pass
