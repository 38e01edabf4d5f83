"""PDDL planning problems as a text environment (``pyperplan``); SPEC §7 progress rate.

Domains (AgentBoard's four), each a fixed domain file and an offline generator;
``reset(seed)`` generates the problem of ``size`` for that seed:

===========  ==========================================  ===================================
domain       domain file and generator                   ``size`` / what ``seed`` changes
===========  ==========================================  ===================================
blocksworld  ``pypddl-datasets`` autoscale blocksworld    blocks / both towers (random states)
gripper      ``pypddl-datasets`` ipc gripper              balls = size + seed % 3 (the
                                                          generator itself has no randomness)
barman       ``pypddl-datasets`` ipc barman               cocktails (3 ingredients, size+1
                                                          shots) / the recipes and orders
tyreworld    ours: ``TYREWORLD_DOMAIN`` +                 flat tyres / which spare goes on
             ``tyreworld_problem`` (written here)         which hub, whether the boot is open
===========  ==========================================  ===================================

``domain_pddl`` / ``problem_pddl`` play any STRIPS problem pyperplan can ground
(a fixed ``problem_pddl`` ignores the seed).

Text interface:
- the observation lists every true fact (static facts included), atoms written
  without brackets and sorted: ``Facts: arm-empty, clear b1, on b1 b2, on-table b2.``;
  after an action it starts ``You did: <action>. Now true: ... No longer true: ...``.
- the goal is ``make these facts true: on b1 b2, on b2 b3``.
- an action is the operator's name then its objects (``stack b1 b2``; brackets
  and commas are ignored). An unknown action, or one whose preconditions do not
  hold (the message names the missing ones), changes nothing.
- ``progress`` = share of goal atoms true now; ``success`` = all of them.

Grounding keeps every operator (not only those relevant to the goal), so any
legal move is accepted; the expert plan is pyperplan's greedy best-first search
with the FF heuristic from the reset state.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable

from . import INSTALL_HINT, EnvUnavailable, Reset, Transition, invalid_message, normalize_action

# -- tyreworld: the IPC-1 "flat tyre" domain, written for pyperplan (STRIPS + typing) --------------
TYREWORLD_DOMAIN = """\
(define (domain tyreworld)
  (:requirements :strips :typing)
  (:types obj container hub - object
          tool wheel nut - obj)
  (:constants wrench jack pump - tool)
  (:predicates (open ?c - container) (closed ?c - container) (unlocked ?c - container)
               (in ?x - obj ?c - container) (have ?x - obj)
               (tight ?n - nut ?h - hub) (loose ?n - nut ?h - hub)
               (on-ground ?h - hub) (not-on-ground ?h - hub)
               (fastened ?h - hub) (unfastened ?h - hub) (free ?h - hub)
               (on ?w - wheel ?h - hub)
               (intact ?w - wheel) (inflated ?w - wheel) (not-inflated ?w - wheel))
  (:action open :parameters (?c - container)
    :precondition (and (unlocked ?c) (closed ?c))
    :effect (and (open ?c) (not (closed ?c))))
  (:action close :parameters (?c - container)
    :precondition (open ?c)
    :effect (and (closed ?c) (not (open ?c))))
  (:action fetch :parameters (?x - obj ?c - container)
    :precondition (and (in ?x ?c) (open ?c))
    :effect (and (have ?x) (not (in ?x ?c))))
  (:action put-away :parameters (?x - obj ?c - container)
    :precondition (and (have ?x) (open ?c))
    :effect (and (in ?x ?c) (not (have ?x))))
  (:action loosen :parameters (?n - nut ?h - hub)
    :precondition (and (have wrench) (tight ?n ?h) (on-ground ?h))
    :effect (and (loose ?n ?h) (not (tight ?n ?h))))
  (:action tighten :parameters (?n - nut ?h - hub)
    :precondition (and (have wrench) (loose ?n ?h) (on-ground ?h))
    :effect (and (tight ?n ?h) (not (loose ?n ?h))))
  (:action jack-up :parameters (?h - hub)
    :precondition (and (on-ground ?h) (have jack))
    :effect (and (not-on-ground ?h) (not (on-ground ?h)) (not (have jack))))
  (:action jack-down :parameters (?h - hub)
    :precondition (not-on-ground ?h)
    :effect (and (on-ground ?h) (have jack) (not (not-on-ground ?h))))
  (:action undo :parameters (?n - nut ?h - hub)
    :precondition (and (not-on-ground ?h) (fastened ?h) (have wrench) (loose ?n ?h))
    :effect (and (have ?n) (unfastened ?h) (not (fastened ?h)) (not (loose ?n ?h))))
  (:action do-up :parameters (?n - nut ?h - hub)
    :precondition (and (have wrench) (unfastened ?h) (not-on-ground ?h) (have ?n))
    :effect (and (loose ?n ?h) (fastened ?h) (not (unfastened ?h)) (not (have ?n))))
  (:action remove-wheel :parameters (?w - wheel ?h - hub)
    :precondition (and (not-on-ground ?h) (on ?w ?h) (unfastened ?h))
    :effect (and (have ?w) (free ?h) (not (on ?w ?h))))
  (:action put-on-wheel :parameters (?w - wheel ?h - hub)
    :precondition (and (have ?w) (free ?h) (unfastened ?h) (not-on-ground ?h))
    :effect (and (on ?w ?h) (not (free ?h)) (not (have ?w))))
  (:action inflate :parameters (?w - wheel)
    :precondition (and (have pump) (not-inflated ?w) (intact ?w))
    :effect (and (inflated ?w) (not (not-inflated ?w)))))
"""


def tyreworld_problem(n_tyres: int, seed: int | None = None) -> str:
    """A tyreworld problem: ``n_tyres`` hubs ``h<i>`` with a flat wheel ``w<i>`` held by nuts
    ``n<i>``; intact, uninflated spares ``r<i>`` and the tools lie in the (unlocked) boot.

    Goal: on every hub an inflated spare with its nuts tight, every flat wheel and
    every tool in the boot, the boot closed. ``seed`` picks which spare goes on which
    hub (a permutation) and whether the boot starts open (half the seeds)."""
    if not isinstance(n_tyres, int) or isinstance(n_tyres, bool) or n_tyres < 1:
        raise ValueError(f"n_tyres={n_tyres!r}: must be an integer ≥ 1")
    rng = random.Random(seed)
    idx = list(range(1, n_tyres + 1))
    spare_for = dict(zip(idx, rng.sample(idx, n_tyres)))
    boot_open = rng.random() < 0.5
    hubs, nuts = [f"h{i}" for i in idx], [f"n{i}" for i in idx]
    wheels = [f"w{i}" for i in idx] + [f"r{i}" for i in idx]
    init = ["(unlocked boot)", "(open boot)" if boot_open else "(closed boot)",
            "(in wrench boot)", "(in jack boot)", "(in pump boot)"]
    for i in idx:
        init += [f"(in r{i} boot)", f"(intact r{i})", f"(not-inflated r{i})",
                 f"(on w{i} h{i})", f"(on-ground h{i})", f"(tight n{i} h{i})", f"(fastened h{i})"]
    goal = [g for i in idx for g in (f"(on r{spare_for[i]} h{i})", f"(inflated r{spare_for[i]})",
                                     f"(tight n{i} h{i})", f"(in w{i} boot)")]
    goal += ["(in wrench boot)", "(in jack boot)", "(in pump boot)", "(closed boot)"]
    return (f"(define (problem tyreworld-{n_tyres}-{seed})\n  (:domain tyreworld)\n"
            f"  (:objects boot - container {' '.join(hubs)} - hub {' '.join(nuts)} - nut "
            f"{' '.join(wheels)} - wheel)\n"
            f"  (:init {' '.join(init)})\n  (:goal (and {' '.join(goal)})))\n")


# -- the domain table ------------------------------------------------------------------------------
def _package_domain(module: str) -> Callable[[], str]:
    def read() -> str:
        from importlib.resources import files

        try:
            return (files(f"pypddl_datasets.generators.classical.{module}") / "domain.pddl").read_text()
        except ModuleNotFoundError as e:
            raise EnvUnavailable(f"PDDL domains need pypddl-datasets ({e}); {INSTALL_HINT}") from None
    return read


def _generator(module: str):
    import importlib

    try:
        return importlib.import_module(f"pypddl_datasets.generators.classical.{module}.generator").make_problem
    except ModuleNotFoundError as e:
        raise EnvUnavailable(f"PDDL generators need pypddl-datasets ({e}); {INSTALL_HINT}") from None


@dataclass(frozen=True)
class Domain:
    """One row of ``DOMAINS``: the domain text, a problem generator ``(size, seed) -> PDDL``, lessons."""

    name: str
    domain: Callable[[], str]
    problem: Callable[[int, int], str]
    default_size: int
    notes: tuple[str, ...]
    distractor: str                      # the domain whose observations are stage-2 distractors


GENERIC_NOTE = ("PDDL games: an action is its name followed by its objects (for example 'stack b1 b2'); it works "
                "only when its preconditions hold, and the goal is a set of facts that must all be true at once.")

DOMAINS: dict[str, Domain] = {d.name: d for d in (
    Domain("blocksworld", _package_domain("autoscale.blocksworld"),
           lambda n, s: _generator("autoscale.blocksworld")(n, s), 4,
           ("Blocksworld: the arm holds one block at a time. 'pickup X' needs X clear and on the table, "
            "'unstack X Y' lifts a clear X off Y, 'stack X Y' needs Y clear, 'putdown X' puts it on the "
            "table. Build each goal tower from the bottom up.",), "gripper"),
    Domain("gripper", _package_domain("autoscale.gripper"),
           lambda n, s: _generator("ipc.gripper")(n + s % 3), 2,
           ("Gripper: the robot has two grippers (left, right) and moves between rooms with 'move FROM TO'; "
            "'pick BALL ROOM GRIPPER' and 'drop BALL ROOM GRIPPER' need the robot in that room. Carry two "
            "balls per trip.",), "blocksworld"),
    Domain("barman", _package_domain("ipc.barman"),
           lambda n, s: _generator("ipc.barman")(n, 3, n + 1, s), 1,
           ("Barman: a hand must be empty to grasp; fill a shot from a dispenser, pour both ingredients of a "
            "cocktail into the clean shaker, shake it, then pour it into a clean shot. Used shots must be "
            "emptied and cleaned before reuse.",), "blocksworld"),
    Domain("tyreworld", lambda: TYREWORLD_DOMAIN, tyreworld_problem, 1,
           ("Tyreworld: open the boot and fetch the tools and the spare first; loosen the nuts while the hub "
            "is on the ground, then jack it up and undo them. jack-up uses the jack, jack-down gives it back. "
            "Inflate the spare with the pump; at the end tighten the nuts on the ground, put the flat tyre and "
            "every tool back in the boot and close it.",), "blocksworld"),
)}


# -- grounding (pyperplan) -------------------------------------------------------------------------
def _atom(fact: str) -> str:
    return fact.strip("()")


def _facts(facts) -> str:
    return ", ".join(sorted(_atom(f) for f in facts))


def ground(domain_pddl: str, problem_pddl: str):
    """Parse and ground a STRIPS problem with pyperplan: (task, static facts).

    Statics are left out of ``task.initial_state`` (pyperplan's heuristics need that)
    and shown separately; no operator is pruned."""
    try:
        from pyperplan import grounding
        from pyperplan.pddl.parser import Parser
    except ImportError as e:
        raise EnvUnavailable(f"PDDL needs pyperplan ({e}); {INSTALL_HINT}") from None
    parser = Parser(None)
    parser.domInput = domain_pddl
    dom = parser.parse_domain(read_from_file=False)
    parser.probInput = problem_pddl
    problem = parser.parse_problem(dom, read_from_file=False)
    init = {f"({p.name} {' '.join(n for n, _ in p.signature)})".replace(" )", ")")
            for p in problem.initial_state}
    task = grounding.ground(problem, remove_statics_from_initial_state=True, remove_irrelevant_operators=False)
    return task, frozenset(init - task.facts)


def plan(task, state=None) -> list[str] | None:
    """pyperplan's greedy best-first search with h_FF from ``state`` (default: the initial state);
    the operator names as actions, or None when there is no plan."""
    from pyperplan.heuristics.relaxation import hFFHeuristic
    from pyperplan.search import greedy_best_first_search
    from pyperplan.task import Task

    t = task if state is None else Task(task.name, task.facts, frozenset(state), task.goals, task.operators)
    ops = greedy_best_first_search(t, hFFHeuristic(t))
    return None if ops is None else [_atom(op.name) for op in ops]


class PDDLEnv:
    """A PDDL domain played through text (see the module docstring)."""

    name = "pddl"
    action_help = ("An action is the operator's name followed by its objects, e.g. 'stack b1 b2' or "
                   "'fetch wrench boot'. The valid actions are listed with each observation.")

    def __init__(self, domain: str = "blocksworld", size: int | None = None, *,
                 domain_pddl: str | None = None, problem_pddl: str | None = None):
        if domain_pddl is None and domain not in DOMAINS:
            raise ValueError(f"domain={domain!r}: unknown PDDL domain; use one of {', '.join(DOMAINS)} "
                             "or pass domain_pddl=")
        self.spec = DOMAINS.get(domain)
        self.domain, self.family = domain, f"pddl:{domain}"
        self.size = size if size is not None else (self.spec.default_size if self.spec else 0)
        self.domain_pddl = domain_pddl if domain_pddl is not None else self.spec.domain()
        self.problem_pddl = problem_pddl
        self.seed: int | None = None
        self.task = None
        self.statics: frozenset = frozenset()
        self.state: frozenset = frozenset()
        self.progress, self.success = 0.0, False
        self._ops: dict[str, object] = {}

    def problem_text(self, seed: int) -> str:
        """The PDDL problem for ``seed`` (the fixed ``problem_pddl`` if one was given)."""
        if self.problem_pddl is not None:
            return self.problem_pddl
        return self.spec.problem(self.size, seed)

    def observe(self) -> str:
        return f"Facts: {_facts(self.statics | self.state)}."

    def _score(self) -> None:
        goals = self.task.goals
        self.progress = len(goals & self.state) / len(goals) if goals else 1.0
        self.success = goals <= self.state

    @property
    def goal(self) -> str:
        return f"make these facts true: {_facts(self.task.goals)}"

    def reset(self, seed: int) -> Reset:
        self.seed = int(seed)
        self.task, self.statics = ground(self.domain_pddl, self.problem_text(self.seed))
        self._ops = {_atom(op.name): op for op in self.task.operators}
        self.state = frozenset(self.task.initial_state)
        self._score()
        return Reset(self.observe(), self.goal)

    @property
    def done(self) -> bool:
        return self.success

    def valid_actions(self) -> list[str]:
        if self.task is None or self.success:
            return []
        return sorted(name for name, op in self._ops.items() if op.applicable(self.state))

    def step(self, action: str) -> Transition:
        if self.task is None:
            raise RuntimeError("call reset(seed) before step()")
        if self.success:
            return Transition("The goal is already reached; the game is over.", self.progress, True, True)
        name = normalize_action(re.sub(r"[(),]", " ", str(action)))
        op = self._ops.get(name)
        if op is None:
            return Transition(invalid_message(action, "there is no such action; write the operator name then "
                                              "its objects, e.g. one of the valid actions."), self.progress,
                              False, True)
        missing = op.preconditions - self.state
        if missing:
            return Transition(invalid_message(action, f"its preconditions do not hold (not true: "
                                              f"{_facts(missing)})."), self.progress, False, True)
        new = op.apply(self.state)
        added, removed = new - self.state, self.state - new
        self.state = frozenset(new)
        self._score()
        text = (f"You did: {name}. Now true: {_facts(added) or 'nothing new'}. "
                f"No longer true: {_facts(removed) or 'nothing'}.\n{self.observe()}")
        return Transition(text, self.progress, self.success)

    def expert_actions(self) -> list[str]:
        if self.task is None:
            raise RuntimeError("call reset(seed) before expert_actions()")
        return plan(self.task) or []

    def notes(self) -> list[str]:
        return [GENERIC_NOTE, *(self.spec.notes if self.spec else ())]

    def distractor_kwargs(self) -> dict:
        other = self.spec.distractor if self.spec else "blocksworld"
        return {"domain": other, "size": DOMAINS[other].default_size}

    def close(self) -> None:
        pass
