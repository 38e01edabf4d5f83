"""The protocol decision set: single labelled decisions in the exact serving format.

One ``DecisionItem`` is one step of the assistant: a context (system prompt with the
tool list, demonstrations when guided, the conversation so far, the user turn with
the environment's related memories and their ids) and the one right action class:

- ``add``: the user states a new durable fact (no shown memory is about it);
- ``update`` (+ id): a fact shown as ``[mem_N]`` changed and the user gives its new value;
- ``delete`` (+ id): a shown fact is no longer true or was wrong, and NO new value is
  given (a new value makes it an update: that is the rule that separates the two);
- ``retrieve``: a question whose answer needs a memory that is not shown;
- ``answer``: the answer is in a shown memory or in the conversation, or needs no
  memory at all (chat, general knowledge);
- ``filter``: the context is long and most of it is pasted material about a subject S,
  while the user's turn is about something else;
- ``summary``: the context is long and on topic: the user's turn continues subject S.

Decisions (why):

- Split hygiene. ``train`` and ``heldout`` share no wording and no entity, because a
  warm start scores near-perfect on its own templates (LANDSCAPE.md: 98 % on held-out
  values over the same templates), which proves little. Every user turn is a class
  frame (e.g. "By the way, {s}.") around a fact phrasing (e.g. "I moved from {old} to
  {v}"); frames and phrasings are partitioned per split, and the template id names
  both, so ids and wordings are disjoint by construction. Entities are disjoint by
  construction too: invented names (``eval.names.Names`` syllables) start with
  letters from split-specific sets, and real-word values (jobs, foods, languages,
  weekdays, months, ...) come from split-specific pools. Distractor memories, chat
  turns, assistant replies and pasted material follow the same partition. Shared on
  purpose: the memory sentences ("The user lives in X.") and the oracle's think/answer
  forms, which are what the policy writes, not what the user says.
- Shown memories. Add and Retrieve items show 0-3 unrelated memories (plus those that
  earlier turns stored; often none at all), Update/Delete/Answer show the target among
  0-2 distractors, so neither "a memory is shown" nor "nothing is shown" gives the class
  away. Retrieve and
  memory-answered Answer items use the same question templates: only what is shown
  differs. Ids are random ``mem_1``..``mem_40``, never the demonstrations' mem_91-93.
- History. Short items carry 0-2 earlier rounds in serving format (user turns with
  their related-memories header, tool calls and answers without their think, which
  ``Agent`` drops after a turn, tool results), so a history is no cue by itself.
- Filter/Summary are fuzzy and are kept simple: their history is pasted material
  about one subject S, sized to 50-80 % of the item's ``budget`` in estimated tokens
  (4 characters a token; invented names tokenise worse, so the real count is
  higher); with the fixed prompt prefix the context is then near or over the budget
  the system prompt states. Both draw the material from the same generator and the
  same paste frames: the only difference is whether the user's turn is about S
  (summary) or not (filter). Arguably a long context of relevant material could also
  be answered directly, and a long unrelated one summarised; the labels follow the
  system prompt's rule and the paper's intent (filter distractors, summarise what is
  still needed). Short items stay below ~10 % of the budget.
- Classes are balanced: item i of a split has class ``CLASSES[i % 7]`` (a ``classes``
  argument narrows the mix), and item i depends only on (split, seed, i), so
  ``generate(10)`` is a prefix of ``generate(100)``.
- The oracle's think starts with "Kind: <kind>." (``prompts.THINK_KINDS``), as the
  guided grammar forces; for Filter/Summary the kind describes the user's turn
  ("question" or "chat") and the rest of the think gives the context reason. Tool
  arguments follow the grammar's key order (required first, then optional in schema
  order), so an oracle completion is in the language the serving grammar decodes.
- Scoring: the first tool call's name decides the predicted class (an answer is
  "answer", an unknown tool "other", text that does not parse "unparsed"); id
  accuracy is over Update/Delete items whose predicted class is right, with ids
  compared as the tools compare them (``parse_memory_id``: "mem_7" == "7"). An Add or
  Update with the right class can still store the wrong thing (a shown distractor's
  sentence, the old value): "content keeps the new value" checks that every word and
  number of the item's ``value`` is in the call's content.
- The natural set is hand-written and hand-checked (user words, shown memories,
  labels); only the long histories of its Filter/Summary items are generated (around
  hand-written subjects), since hand-writing 2,000-token pastes adds nothing.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from . import prompts
from .errors import ConfigError
from .eval.names import CODAS, ONSETS, VOWELS, Names
from .memory.records import parse_memory_id
from .memory.tools import grammar_schemas
from .protocol import THINK_CLOSE, parse_step, render_step
from .rewards import says_not_known

CLASSES = ("add", "update", "delete", "retrieve", "answer", "filter", "summary")
#: Predicted classes in the confusion matrix: the seven, an unknown tool, unparsable text.
PREDICTED = (*CLASSES, "other", "unparsed")
SPLITS = ("train", "heldout", "natural")
#: Item variants a class cycle may name besides the classes, each generated as the class it maps to:
#: "add_shared": a new fact next to a shown memory of another kind that shares its place or name
#: (v6 and v7 turned "I moved to Bristol, I used to live in Leeds" into an Update of the dentist
#: in Leeds); "answer_unknown": the answer after a search whose hits are all about other things
#: (v7 answered "my landlord?" with an unrelated memory).
VARIANTS = {"add_shared": "add", "answer_unknown": "answer"}
#: What a class cycle (``generate(classes=...)``) may name.
CYCLE = (*CLASSES, *VARIANTS)
#: ``--bench decisions:variants``: held-out items of the variants only (``VARIANTS``).
BENCH_SPLITS = (*SPLITS, "variants", "found")
TOOL_CLASS = {"Add_memory": "add", "Update_memory": "update", "Delete_memory": "delete",
              "Retrieve_memory": "retrieve", "Filter_context": "filter", "Summary_context": "summary"}
#: The system prompt's date (same as ``eval.harness.EVAL_TODAY``: every eval is dated alike).
TODAY = "2025-01-01"
#: The serving default of ``Settings.context_budget``.
DEFAULT_BUDGET = 4096
#: Share of the budget a Filter/Summary history fills (estimated tokens).
LONG_SHARE = (0.5, 0.8)
REPORT_NAME = "decisions-report.md"
_N_IDS = 40


def est_tokens(text: str) -> int:
    """A model-free token estimate (4 characters a token), used to size long histories."""
    return len(text) // 4


# --------------------------------------------------------------------------- items

@dataclass
class DecisionItem:
    """One labelled decision. ``shown``: the related memories ``[(id, content)]`` shown with the
    user turn; ``history``: earlier conversation messages, already in serving format."""

    id: str
    split: str
    label: str
    user: str
    shown: list[tuple[str, str]] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    target_id: str | None = None       # update/delete: the memory to change; answer: the one that answers
    template: str = ""                 # user-turn template id (frame + phrasing)
    gold: str = ""                     # add/update: the fact sentence; delete: the obsolete memory;
    #                                    retrieve: the query; answer: the reply; filter: the criteria;
    #                                    summary: the span
    kind: str = ""                     # the think's "Kind:" (prompts.THINK_KINDS)
    basis: str = ""                    # answer: "memory" | "history" | "chat" | "general" | "unknown";
    #                                    filter/summary: S
    memory_type: str = ""              # add: memory_type of the new fact
    value: str = ""                    # add/update: the new value the stored content must carry;
    #                                    answer (generated): the value the reply must name
    after: list[dict] = field(default_factory=list)   # this turn's earlier steps and tool results
    fact: str = ""                     # fact type (city, pet, ...) where there is one
    budget: int = DEFAULT_BUDGET       # the budget the history was sized for
    entities: list[str] = field(default_factory=list)   # every invented name / pool value used

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shown"] = [list(p) for p in self.shown]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DecisionItem":
        return cls(**{**d, "shown": [tuple(p) for p in d.get("shown", [])]})


# --------------------------------------------------------------------------- names and pools

#: First letters of invented names per split: disjoint, so no generated name is shared.
_FIRST = {"train": "bdfgklm", "heldout": "nprstvzq"}


class _SplitNames(Names):
    """``Names`` whose words start with a split-specific letter."""

    def __init__(self, rng: random.Random, split: str):
        super().__init__(rng)
        self.first = [o for o in ONSETS if o[0] in _FIRST[split]]

    def word(self, lo: int = 2, hi: int = 3) -> str:
        r = self.rng
        syl = [r.choice(self.first)] + [r.choice(ONSETS) for _ in range(r.randint(lo, hi) - 1)]
        return "".join(o + r.choice(VOWELS) + r.choice(CODAS) for o in syl).capitalize()

    def first_name(self) -> str:
        return self._fresh(lambda: self.word(2, 2))

    def surname(self) -> str:
        return self._fresh(lambda: self.word(2, 3))


_MONTHS = {"train": ["January", "February", "March", "April", "May", "June"],
           "heldout": ["July", "August", "September", "October", "November", "December"]}
POOLS = {
    "job": {"train": ["a nurse", "an architect", "a plumber", "an accountant", "a librarian", "a chef",
                      "a pilot", "a dentist"],
            "heldout": ["a pharmacist", "an electrician", "a translator", "a geologist", "a baker",
                        "a firefighter", "a surveyor", "a vet"]},
    "species": {"train": ["dog", "cat", "rabbit", "parrot"],
                "heldout": ["hamster", "tortoise", "ferret", "guinea pig"]},
    "colour": {"train": ["red", "blue", "black"], "heldout": ["green", "silver", "white"]},
    "make": {"train": ["Volvo", "Toyota", "Skoda", "Renault"], "heldout": ["Honda", "Kia", "Fiat", "Mazda"]},
    "hobby": {"train": ["pottery", "rock climbing", "chess", "birdwatching", "salsa dancing", "woodworking"],
              "heldout": ["archery", "knitting", "sailing", "beekeeping", "fencing", "calligraphy"]},
    "diet": {"train": ["vegetarian", "vegan", "gluten-free", "lactose intolerant"],
             "heldout": ["pescatarian", "on a keto diet", "dairy-free", "on a low-salt diet"]},
    "food": {"train": ["lasagne", "sushi", "tacos", "pad thai", "paella", "dumplings"],
             "heldout": ["risotto", "falafel", "pho", "biryani", "goulash", "ceviche"]},
    "gym": {"train": ["Mondays", "Wednesdays", "Fridays", "Sundays"],
            "heldout": ["Tuesdays", "Thursdays", "Saturdays"]},
    "language": {"train": ["Japanese", "Portuguese", "Italian", "Swahili", "Greek", "Dutch"],
                 "heldout": ["Korean", "Polish", "Turkish", "Hindi", "Finnish", "Czech"]},
}


def _pool(key: str) -> Callable[[random.Random, _SplitNames, str], str]:
    return lambda r, n, split: r.choice(POOLS[key][split])


# --------------------------------------------------------------------------- fact types

@dataclass(frozen=True)
class _Fact:
    """A fact type. Phrasings are 3-tuples: the first two belong to train, the last to heldout."""

    name: str
    memory_type: str
    sentence: str          # the memory content (third person)
    answer: str            # the reply that states it (second person)
    query: str             # what Retrieve_memory searches for
    value: Callable[[random.Random, _SplitNames, str], str]
    add: tuple[str, str, str]
    update: tuple[str, str, str]
    delete: tuple[str, str, str]
    ask: tuple[str, str, str]
    extra: Callable[[random.Random, _SplitNames, str], dict] = lambda r, n, split: {}
    topic: str = ""        # what a memory of this type is about, for a think ("topic"); else query


def _car(r, n, split):
    return f"{r.choice(POOLS['colour'][split])} {r.choice(POOLS['make'][split])}"


def _date(r, n, split):
    return f"{r.choice(_MONTHS[split])} {r.randint(1, 28)}"


FACTS: dict[str, _Fact] = {f.name: f for f in (
    _Fact("city", "fact", "The user lives in {v}.", "You live in {v}.", "the user's home city",
          lambda r, n, s: n.town(),
          ("I live in {v}", "my home is in {v}", "home for me is {v}"),
          ("I moved from {old} to {v}", "I don't live in {old} any more, I'm in {v} now",
           "we relocated to {v}, so {old} is behind us"),
          ("please forget that I live in {old}, I don't want that stored", "I never lived in {old}, that was a mix-up",
           "{old} isn't my home, scrap that"),
          ("where do I live?", "which city do I live in?", "what town am I based in?")),
    _Fact("employer", "fact", "The user works at {v}.", "You work at {v}.", "the user's employer",
          lambda r, n, s: n.company(),
          ("I work at {v}", "my employer is {v}", "I'm employed by {v}"),
          ("I left {old} and joined {v}", "I switched jobs, it's {v} now and not {old}",
           "{v} hired me away from {old}"),
          ("I quit {old} and I'm not working anywhere right now", "I no longer work at {old}",
           "{old} let me go, so I'm between jobs"),
          ("where do I work?", "which company do I work for?", "who is my employer?")),
    _Fact("job", "fact", "The user works as {v}.", "You work as {v}.", "the user's job", _pool("job"),
          ("I work as {v}", "I'm {v} by profession", "I earn my living as {v}"),
          ("I'm no longer {old}, I retrained as {v}", "I changed careers from {old} to {v}",
           "after years as {old} I'm now {v}"),
          ("I'm not {old} any more", "scratch what I said about being {old}, it was wrong",
           "I stopped working as {old}"),
          ("what is my job?", "what do I do for a living?", "what's my profession?")),
    _Fact("pet", "fact", "The user's {species} is called {v}.", "Your {species} is called {v}.", "the user's pet",
          lambda r, n, s: n.first_name(),
          ("my {species} is called {v}", "I have a {species} named {v}", "say hi to {v}, my {species}"),
          ("we renamed our {species}, she's {v} now instead of {old}",
           "my {species} isn't called {old}, her name is {v}",
           "the {species} got a new name, {v} (it used to be {old})"),
          ("my {species} {old} went to live with my parents, I don't have a pet any more",
           "{old}, my {species}, passed away last week", "we rehomed {old}, our {species}"),
          ("what's my {species} called?", "what's the name of my {species}?", "remind me of my {species}'s name?"),
          extra=lambda r, n, s: {"species": r.choice(POOLS["species"][s])}),
    _Fact("partner", "fact", "The user's partner is {v}.", "Your partner is {v}.", "the user's partner",
          lambda r, n, s: n.first_name(),
          ("my partner is called {v}", "I'm in a relationship with {v}", "{v} and I have been together for two years"),
          ("{old} and I split up, I'm with {v} now", "my partner is {v} these days, not {old}",
           "I'm seeing {v} now that things with {old} are over"),
          ("{old} and I broke up", "I'm not with {old} any more", "things with {old} are over, I'm single"),
          ("what's my partner's name?", "who am I dating?", "who is my partner?")),
    _Fact("sibling", "fact", "The user's {rel} {name} lives in {v}.", "Your {rel} {name} lives in {v}.",
          "where the user's {rel} lives", lambda r, n, s: n.town(),
          ("my {rel} {name} lives in {v}", "{name}, my {rel}, is based in {v}", "my {rel} {name} has a flat in {v}"),
          ("my {rel} {name} moved from {old} to {v}", "{name} left {old}, my {rel} lives in {v} now",
           "my {rel} {name} just relocated to {v} from {old}"),
          ("my {rel} {name} doesn't live in {old} any more, no idea where they'll settle",
           "I was wrong, {name} never lived in {old}", "{name} moved out of {old}, so forget that"),
          ("where does my {rel} live?", "which town is my {rel} {name} in?", "where is my {rel} {name} living?"),
          extra=lambda r, n, s: {"rel": r.choice(["sister", "brother"]), "name": n.first_name()},
          topic="where the user's {rel} {name} lives"),
    _Fact("car", "fact", "The user drives a {v}.", "You drive a {v}.", "the user's car", _car,
          ("I drive a {v}", "my car is a {v}", "I get around in a {v}"),
          ("I sold the {old} and bought a {v}", "I traded in my {old} for a {v}",
           "the {old} is gone, I drive a {v} now"),
          ("I sold my {old} and don't have a car now", "the {old} was written off, I'm car-free now",
           "no more {old} for me, I gave up driving"),
          ("what car do I drive?", "what kind of car do I have?", "which car is mine?")),
    _Fact("hobby", "preference", "The user's hobby is {v}.", "Your hobby is {v}.", "the user's hobby", _pool("hobby"),
          ("my hobby is {v}", "in my free time I do {v}", "I've gotten really into {v}"),
          ("I gave up {old} and took up {v}", "I'm into {v} now, not {old}", "{v} has replaced {old} as my hobby"),
          ("I quit {old}", "I don't do {old} any more", "{old} is over for me"),
          ("what's my hobby?", "what do I do in my free time?", "which hobby do I have?")),
    _Fact("diet", "preference", "The user is {v}.", "You are {v}.", "the user's diet", _pool("diet"),
          ("I'm {v}", "food-wise, I'm {v}", "I should mention I'm {v}"),
          ("I'm no longer {old}, I'm {v} now", "I switched from being {old} to being {v}",
           "I've gone from {old} to {v}"),
          ("I'm not {old} any more, I eat everything", "forget that I'm {old}", "I'm done being {old}"),
          ("do I have any diet restrictions?", "what's my diet?", "is there anything I don't eat?")),
    _Fact("birthday", "fact", "The user's birthday is on {v}.", "Your birthday is on {v}.", "the user's birthday",
          _date,
          ("my birthday is on {v}", "I was born on {v}", "I celebrate my birthday on {v}"),
          ("I gave you the wrong date, my birthday is {v}, not {old}", "my birthday is actually {v}, not {old}",
           "{v} is my birthday, {old} was a typo"),
          ("the birthday I gave you, {old}, was wrong, please drop it",
           "forget my birthday being {old}, that's not right",
           "{old} is not my birthday, remove that"),
          ("when is my birthday?", "what date is my birthday?", "which day do I celebrate my birthday?")),
    _Fact("food", "preference", "The user's favourite food is {v}.", "Your favourite food is {v}.",
          "the user's favourite food", _pool("food"),
          ("my favourite food is {v}", "I love {v} more than any other food", "nothing beats {v} for me"),
          ("my favourite food is {v} now, not {old}", "I've gone off {old}, {v} is my favourite now",
           "{v} took over from {old} as my favourite dish"),
          ("I don't have a favourite food any more, I'm sick of {old}",
           "{old} isn't my favourite after all, forget that",
           "scrap the {old} thing, I don't have a favourite"),
          ("what's my favourite food?", "which dish do I like best?", "what food do I love most?")),
    _Fact("gym", "event", "The user goes to the gym on {v}.", "You go to the gym on {v}.", "the user's gym day",
          _pool("gym"),
          ("I go to the gym on {v}", "{v} are my gym days", "I hit the gym every week on {v}"),
          ("I moved my gym sessions from {old} to {v}", "my gym day is {v} now, not {old}",
           "the gym is on {v} now, {old} didn't work out"),
          ("I cancelled my gym membership, so no more {old}", "I stopped going to the gym on {old}",
           "no more gym on {old}, that's off for good"),
          ("which day do I go to the gym?", "when are my gym days?", "what day is gym day for me?")),
    _Fact("doctor", "fact", "The user's doctor is Dr. {v}.", "Your doctor is Dr. {v}.", "the user's doctor",
          lambda r, n, s: n.surname(),
          ("my doctor is Dr. {v}", "I see Dr. {v} for check-ups", "Dr. {v} is my GP"),
          ("I switched from Dr. {old} to Dr. {v}", "my doctor is Dr. {v} now, Dr. {old} retired",
           "Dr. {v} took over from Dr. {old} as my doctor"),
          ("I don't see Dr. {old} any more", "Dr. {old} isn't my doctor now",
           "forget Dr. {old}, I'm no longer their patient"),
          ("who is my doctor?", "what's my doctor's name?", "which doctor do I see?")),
    _Fact("language", "event", "The user is learning {v}.", "You are learning {v}.",
          "the language the user is learning", _pool("language"),
          ("I'm learning {v}", "I started {v} lessons", "I've been studying {v} on an app"),
          ("I dropped {old} and started learning {v}", "I'm studying {v} now instead of {old}",
           "{v} lessons replaced my {old} course"),
          ("I stopped learning {old}", "I gave up on {old}", "no more {old} lessons for me"),
          ("which language am I learning?", "what language am I studying?", "what language do I practise?")),
)}

_PHRASINGS = {"train": (0, 1), "heldout": (2,)}

# Class frames around a fact phrasing ({s}); ids are unique across splits.
FRAMES = {
    "add": {"train": {"a0": "{s}.", "a1": "By the way, {s}."},
            "heldout": {"a2": "Oh, and {s}.", "a3": "Something you should know: {s}."}},
    "update": {"train": {"u0": "{s}.", "u1": "Update: {s}."},
               "heldout": {"u2": "Heads up, {s}.", "u3": "{s}. Please keep that in mind."}},
    "delete": {"train": {"d0": "{s}.", "d1": "Just so you know, {s}."},
               "heldout": {"d2": "FYI, {s}.", "d3": "{s}. Please keep your notes accurate."}},
    "ask": {"train": {"q0": "{s}", "q1": "Quick question: {s}"},
            "heldout": {"q2": "Hey, {s}", "q3": "{s} I can't remember."}},
}

# (utterance, reply); chat needs no memory.
CHAT = {"train": [("Hello! How are you today?", "I'm doing well, thanks! How can I help?"),
                  ("Thanks, that was really helpful.", "You're welcome!"),
                  ("Good night, talk tomorrow.", "Good night! Talk tomorrow."),
                  ("Haha, that's funny.", "Glad it made you laugh!"),
                  ("Okay, cool.", "Great. Anything else?")],
        "heldout": [("Hey there, good morning!", "Good morning! What can I do for you?"),
                    ("Cheers, appreciate it.", "Any time!"),
                    ("I'm off for lunch, see you later.", "Enjoy your lunch!"),
                    ("Wow, nice.", "Glad you like it!"),
                    ("Alright, sounds good.", "Great, let me know if you need anything.")]}
# (question, answer); general knowledge, no memory needed.
GENERAL = {"train": [("How many days are in a leap year?", "A leap year has 366 days."),
                     ("What is 12 times 12?", "12 times 12 is 144."),
                     ("How many minutes are in two hours?", "Two hours have 120 minutes."),
                     ("What is the boiling point of water in Celsius?",
                      "Water boils at 100 degrees Celsius at sea level."),
                     ("How many legs does a spider have?", "A spider has eight legs.")],
           "heldout": [("How many seconds are in a minute?", "A minute has 60 seconds."),
                       ("What is 9 plus 16?", "9 plus 16 is 25."),
                       ("How many weeks are in a year?", "A year has 52 weeks."),
                       ("What colour do you get by mixing blue and yellow?", "Mixing blue and yellow gives green."),
                       ("How many sides does a hexagon have?", "A hexagon has six sides.")]}
ACK = {"train": ["Noted, I'll remember that.", "Got it, saved."],
       "heldout": ["Okay, I've made a note of it.", "Thanks, stored."]}

# Long histories: pasted material about a subject S (same generator for filter and summary).
PASTE = {"train": ["Here's part of an article about {S}: {p}", "More from the same piece on {S}: {p}",
                   "And this bit about {S}: {p}"],
         "heldout": ["Copying in some notes on {S}: {p}", "Next part of my notes on {S}: {p}",
                     "Another excerpt on {S}: {p}"]}
PASTE_ACK = {"train": ["Thanks, I've read it.", "Got it."], "heldout": ["Okay, noted the excerpt.", "Read it, go on."]}
FILLER = {
    "train": ["{S} goes back to {Y}, when {P} first wrote about it.",
              "Most of the early work on {S} happened in {T}.",
              "{P2} argued that the real turning point for {S} came in {Y2}.",
              "By one estimate, about {N} people were involved in {S} at its peak.",
              "A long dispute between {P} and {P2} shaped how {S} is remembered.",
              "Records from {T} mention {S} only in passing.",
              "Later writers, {P2} among them, questioned the dates given for {S}.",
              "The costs of {S} were said to be around {N} crowns a year."],
    "heldout": ["According to {P}, {S} started as a small side project in {Y}.",
                "The budget for {S} was set at roughly {N} euros.",
                "Meetings about {S} are usually held in {T}.",
                "{P2} raised concerns that {S} was behind schedule.",
                "One open question about {S} is whether {T} should be included.",
                "A first draft on {S} was circulated in {Y2}.",
                "Feedback on {S} from {P} was mostly positive.",
                "{P} and {P2} still disagree about the priorities for {S}."],
}
SUBJECTS = {"train": [lambda n: f"the history of {n.town()}", lambda n: f"the reunion tour of {n.band()}",
                      lambda n: f"the {n.company()} annual report"],
            "heldout": [lambda n: f"the {n.river()} restoration project", lambda n: f"the novel {n.book()}",
                        lambda n: f"the {n._fresh(lambda: n.word(2, 2))} Festival"]}
# Filter: the user's turn leaves S. (request, kind)
REQUESTS = {"train": [("Can you suggest a quick breakfast idea?", "question"),
                      ("Help me write a short thank-you note to a colleague.", "chat"),
                      ("What's a good stretch to do after sitting all day?", "question"),
                      ("Give me three ideas for a rainy Sunday.", "chat")],
            "heldout": [("What should I pack for a weekend hike?", "question"),
                        ("Draft a polite reminder email about an unpaid invoice.", "chat"),
                        ("Any tips for falling asleep faster?", "question"),
                        ("Suggest a name for a small herb garden.", "chat")]}
FILTER_FRAMES = {"train": {"f0": "Let's change the subject. {r}", "f1": "{r}"},
                 "heldout": {"f2": "Forget all that for a moment. {r}", "f3": "Something completely different: {r}"}}
# Summary: the user's turn continues S. {id: (template, kind)}
SUMMARY_TURNS = {"train": {"s0": ("So what are the key points about {S} so far?", "question"),
                           "s1": ("Based on everything above, what should I look into next about {S}?", "question")},
                 "heldout": {"s2": ("Pulling all of this together, give me the gist of {S}.", "chat"),
                             "s3": ("Keeping everything about {S} in mind, what stands out most?", "question")}}
# More train-only wordings for Filter/Summary items (``generate(..., wide=True)``, the warm-start
# option ``wide_long``): v6 learned its two filter frames and two summary turns and took neither
# class on held-out wordings. Appended, so template ids of the lists above keep their numbers.
SUBJECTS_WIDE = [lambda n: f"the {n.company()} product launch", lambda n: f"the life of {n.person()}",
                 lambda n: f"the {n.town()} harbour expansion"]
REQUESTS_WIDE = [("How do I keep basil alive on a windowsill?", "question"),
                 ("Write a short message to cancel my gym session.", "chat"),
                 ("How do I get a coffee stain out of a shirt?", "question"),
                 ("Suggest a playlist theme for a long drive.", "chat"),
                 ("Which is easier for a beginner, a keyboard or a guitar?", "question"),
                 ("Draft a two-line welcome note for a new neighbour.", "chat"),
                 ("How long should a power nap be?", "question"),
                 ("Give me a fun quiz question for a team meeting.", "chat")]
FILTER_FRAMES_WIDE = {"f4": "Okay, enough of that. {r}", "f5": "New topic: {r}", "f6": "Moving on. {r}",
                      "f7": "Never mind the reading for now. {r}", "f8": "{r} Nothing to do with the text above.",
                      "f9": "That's it for the article. {r}"}
SUMMARY_TURNS_WIDE = {"s4": ("Can you recap what we've covered about {S}?", "question"),
                      "s5": ("Boil the main facts about {S} down to a few lines.", "chat"),
                      "s6": ("From all that, who were the key people in {S}?", "question"),
                      "s7": ("Give me a short overview of {S} based on what I pasted.", "chat"),
                      "s8": ("What do all these excerpts say about {S}, in short?", "question"),
                      "s9": ("Help me write a paragraph about {S} using the text above.", "chat")}


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# --------------------------------------------------------------------------- serving-format history

def user_message(text: str, shown: list[tuple[str, str]], *, show_related: bool = True) -> dict:
    """A user turn as ``Agent`` sends it: the related-memories block, then the message
    (``show_related=False``: the bare message, as ``Agent.turn(show_related=False)`` sends it)."""
    related = prompts.render_related(shown) if show_related else None
    return {"role": "user", "content": prompts.render_user_turn(text, related)}


def _after_think(step_text: str) -> str:
    """A step as it stays in the context after its turn (``Agent`` drops the think)."""
    return step_text.split(THINK_CLOSE + "\n", 1)[1]


def answer_message(text: str) -> dict:
    """An earlier answer as it stays in the context (think dropped)."""
    return {"role": "assistant", "content": _after_think(render_step("-", answer=text))}


def _add_round(user: str, content: str, memory_type: str, mid: str, ack: str) -> list[dict]:
    """A finished turn that stored a fact: user, Add call, tool result, reply."""
    args = {"content": content, "memory_type": memory_type}
    call = render_step("-", calls=[{"name": "Add_memory", "arguments": args}])
    return [user_message(user, []), {"role": "assistant", "content": _after_think(call)},
            {"role": "tool", "content": prompts.render_tool_result("Add_memory", True, f"stored as {mid}")},
            answer_message(ack)]


# --------------------------------------------------------------------------- generator

class ItemBuilder:
    """Draws one item's facts, ids and history from one rng (also used by the warm start's own
    turn kinds, ``train.warm_start.two_fact_turns`` and ``overview_turns``)."""

    def __init__(self, rng: random.Random, split: str, names: _SplitNames | None = None, *, wide: bool = False):
        self.r, self.split, self.wide = rng, split, wide
        self.names = names or _SplitNames(rng, split)
        self.free_ids = [f"mem_{k}" for k in rng.sample(range(1, _N_IDS + 1), _N_IDS)]
        self.entities: list[str] = []

    def new_id(self) -> str:
        return self.free_ids.pop()

    def slots(self, fact: _Fact, *, changed: bool = False) -> dict:
        """Values for one fact; ``changed`` adds an ``old`` value (for update/delete)."""
        s = fact.extra(self.r, self.names, self.split)
        s["v"] = fact.value(self.r, self.names, self.split)
        if changed:
            while (old := fact.value(self.r, self.names, self.split)) == s["v"]:
                pass
            s["old"] = old
        self.entities += [v for k, v in s.items() if k != "rel"]
        return s

    def phrasing(self, fact: _Fact, kind: str) -> tuple[int, str]:
        i = self.r.choice(_PHRASINGS[self.split])
        return i, getattr(fact, kind)[i]

    def frame(self, group: str) -> tuple[str, str]:
        fid, text = self.r.choice(sorted(FRAMES[group][self.split].items()))
        return fid, text

    def distractors(self, k: int, avoid: set[str]) -> list[tuple[str, str, _Fact, dict]]:
        """k memories about other fact types: (id, content, fact, slots)."""
        out = []
        for name in self.r.sample(sorted(set(FACTS) - avoid), k):
            f = FACTS[name]
            s = self.slots(f)
            out.append((self.new_id(), f.sentence.format(**s), f, s))
        return out

    def short_history(self, avoid: set[str]) -> tuple[list[dict], list[tuple[str, str]]]:
        """0-2 earlier rounds (chat, or a stored fact of another type); returns the messages and
        the memories they stored (which the current turn may show)."""
        msgs, stored = [], []
        for _ in range(self.r.choice([0, 0, 1, 1, 2])):
            if self.r.random() < 0.5:
                u, a = self.r.choice(CHAT[self.split])
                msgs += [user_message(u, []), answer_message(a)]
            else:
                (mid, content, f, s), = self.distractors(1, avoid)
                avoid = avoid | {f.name}
                _, ph = self.phrasing(f, "add")
                msgs += _add_round(_cap(ph.format(**s)) + ".", content, f.memory_type, mid,
                                   self.r.choice(ACK[self.split]))
                stored.append((mid, content))
        return msgs, stored

    def long_history(self, budget: int, subject: str | None = None) -> tuple[str, list[dict]]:
        """Pasted material about one subject, 50-80 % of ``budget`` in estimated tokens."""
        r, n, sp = self.r, self.names, self.split
        subj = subject or r.choice(SUBJECTS[sp] + (SUBJECTS_WIDE if self.wide else []))(n)
        cast = {"P": n.person(), "P2": n.person(), "T": n.town()}
        self.entities += [subj, *cast.values()]
        target = int(budget * r.uniform(*LONG_SHARE))
        msgs, used = [], 0
        while used < target:
            sents = [_cap(t.format(S=subj, Y=r.randint(1850, 1990), Y2=r.randint(1991, 2020),
                                   N=r.randint(100, 90000), **cast))
                     for t in r.sample(FILLER[sp], r.randint(4, 7))]
            text = r.choice(PASTE[sp]).format(S=subj, p=" ".join(sents))
            msgs += [user_message(text, []), answer_message(r.choice(PASTE_ACK[sp]))]
            used += sum(est_tokens(m["content"]) for m in msgs[-2:])
        return subj, msgs


#: The reply when nothing stored answers a question (also the warm start's after an empty search).
UNKNOWN_REPLY = "You have not told me that yet."
#: Fact types whose values are drawn alike (a town, a first name): a memory of the pair's other
#: type can carry the same word.
SHARED = {"city": "sibling", "sibling": "city", "pet": "partner", "partner": "pet"}


def _n_shown(r: random.Random) -> int:
    return r.choice([0, 1, 2, 3])


def _build_add_shared(b: ItemBuilder, item: DecisionItem) -> DecisionItem:
    """A new fact and, shown, a memory of the paired type (``SHARED``) holding the same word: the
    fact's old value, which the user mentions in an update-like wording ("I moved from Leeds to
    Bristol" next to "The user's brother Kim lives in Leeds."), or its new value. Still an Add."""
    r, split = b.r, b.split
    fact = FACTS[r.choice(sorted(SHARED))]
    other = FACTS[SHARED[fact.name]]
    item.history, stored = b.short_history({fact.name, other.name})
    mode = r.choice(["old", "new"])
    s = b.slots(fact, changed=mode == "old")
    look = {**other.extra(r, b.names, split), "v": s["old"] if mode == "old" else s["v"]}
    b.entities += [v for k, v in look.items() if k not in ("rel", "v")]
    shown = [(b.new_id(), other.sentence.format(**look))]
    shown += [(m, c) for m, c, _, _ in b.distractors(r.choice([0, 1, 2]), {fact.name, other.name})]
    shown += stored[:1]
    r.shuffle(shown)
    fid, frame = b.frame("update" if mode == "old" else "add")
    pi, ph = b.phrasing(fact, "update" if mode == "old" else "add")
    # the kind says what the user said (a change, in the update wording); no memory about it decides Add
    item.kind = "changed fact" if mode == "old" else "new fact"
    item.user, item.shown = _cap(frame.format(s=ph.format(**s))), shown
    item.template = f"add_shared.{mode}.{fid}+{fact.name}.{pi}"
    item.fact, item.memory_type, item.value = fact.name, fact.memory_type, s["v"]
    item.gold, item.entities = fact.sentence.format(**s), b.entities
    return item


def search_step(query: str, hits: list[tuple[str, str]], *, think: str = "No shown memory answers it, so search."
                ) -> list[dict]:
    """A Retrieve_memory step of the current turn (think kept: ``Agent`` drops it when the turn
    ends) and its tool result, listing ``hits`` as the tool lists them."""
    call = render_step(f"Kind: question. {think}", calls=[{"name": "Retrieve_memory", "arguments": {"query": query}}])
    return [{"role": "assistant", "content": call},
            {"role": "tool", "content": search_result(hits)}]


def search_result(hits: list[tuple[str, str]]) -> str:
    """The tool message of a Retrieve_memory call that found ``hits`` (none: it found nothing)."""
    return prompts.render_tool_result("Retrieve_memory", True, prompts.render_search_hits(hits))


def _build_answer_unknown(b: ItemBuilder, item: DecisionItem) -> DecisionItem:
    """A question, a search, and hits that are all about other things (with the paired type of
    ``SHARED`` among them half the time: "where does my brother live?" finds "The user lives in
    ..."): the answer says it is not known."""
    r, split = b.r, b.split
    fact = FACTS[r.choice(sorted(FACTS))]
    item.history, stored = b.short_history({fact.name})
    s = b.slots(fact)
    avoid = {fact.name} | ({SHARED[fact.name]} if fact.name in SHARED else set())
    hits = [(m, c) for m, c, _, _ in b.distractors(r.choice([1, 2, 3]), avoid)]
    if fact.name in SHARED and r.random() < 0.5:
        other = FACTS[SHARED[fact.name]]
        look = {**other.extra(r, b.names, split), "v": other.value(r, b.names, split)}
        b.entities += [v for k, v in look.items() if k != "rel"]
        hits.append((b.new_id(), other.sentence.format(**look)))
    hits = [*hits, *stored[:1]]
    r.shuffle(hits)
    fid, frame = b.frame("ask")
    pi, ph = b.phrasing(fact, "ask")
    item.user, item.kind, item.basis = _cap(frame.format(s=ph.format(**s))), "question", "unknown"
    item.shown = [h for h in hits if r.random() < 0.5]   # the turn showed some of them already
    item.after = search_step(fact.query.format(**s), hits)
    item.template = f"answer_unknown.{fid}+{fact.name}.{pi}"
    item.fact, item.gold, item.entities = fact.name, UNKNOWN_REPLY, b.entities
    return item


def found_by_search(item: DecisionItem) -> DecisionItem:
    """The same question with its memory found by a Retrieve_memory of this turn (among up to two
    other shown memories) instead of shown: the answer names it, and saying it is not known is wrong."""
    r = random.Random(f"found:{item.id}")
    target = next(h for h in item.shown if h[0] == item.target_id)
    others = [h for h in item.shown if h[0] != item.target_id]
    hits = [target, *r.sample(others, min(len(others), r.randint(0, 2)))]
    r.shuffle(hits)
    return replace(item, id=item.id + "+found", shown=[h for h in others if h not in hits],
                   after=search_step(item.user.rstrip("?!. "), hits))


def found_items(n: int, seed: int = 0, *, budget: int = DEFAULT_BUDGET) -> list[DecisionItem]:
    """``decisions:found``: ``n`` held-out answer items whose memory a search found
    (``found_by_search``). The counterpart of the ``answer_unknown`` variant: a policy that says
    "not known" after every search scores 0 here, where the variants split would reward it."""
    items = [it for it in generate(4 * n, seed, "heldout", budget=budget, classes=("answer",))
             if it.basis == "memory"]
    return [found_by_search(it) for it in items[:n]]


#: The builder of each variant (``VARIANTS``): it fills an item of the class the variant maps to.
_VARIANT_BUILDERS = {"add_shared": _build_add_shared, "answer_unknown": _build_answer_unknown}


def _build(label: str, b: ItemBuilder, item_id: str, budget: int) -> DecisionItem:
    r, split = b.r, b.split
    if label in VARIANTS:
        item = DecisionItem(id=item_id, split=split, label=VARIANTS[label], user="", budget=budget)
        return _VARIANT_BUILDERS[label](b, item)
    item = DecisionItem(id=item_id, split=split, label=label, user="", budget=budget)
    if label in ("filter", "summary"):
        hist: list[dict] = []
        if label == "filter" and r.random() < 0.5:   # a chat round first: not every message is paste
            u, a = r.choice(CHAT[split])
            hist = [user_message(u, []), answer_message(a)]
        subj, long = b.long_history(budget)
        item.history = hist + long
        item.shown = [(mid, c) for mid, c, _, _ in b.distractors(r.choice([0, 0, 1, 2]), set())]
        item.basis = subj
        if label == "filter":
            frames = {**FILTER_FRAMES[split], **(FILTER_FRAMES_WIDE if b.wide else {})}
            requests = REQUESTS[split] + (REQUESTS_WIDE if b.wide else [])
            fid, frame = r.choice(sorted(frames.items()))
            k = r.randrange(len(requests))
            req, item.kind = requests[k]
            item.user, item.template = frame.format(r=req), f"filter.{fid}+req{k}.{split}"
            item.gold = f"the pasted text about {subj}"
        else:
            turns = {**SUMMARY_TURNS[split], **(SUMMARY_TURNS_WIDE if b.wide else {})}
            sid, (turn, item.kind) = r.choice(sorted(turns.items()))
            item.user, item.template, item.gold = _cap(turn.format(S=subj)), f"summary.{sid}", "all"
        item.entities = b.entities
        return item

    fact = FACTS[r.choice(sorted(FACTS))]
    item.fact = fact.name
    if label == "answer" and r.random() < 0.3:    # chat or general knowledge: no memory needed
        item.history, stored = b.short_history(set())
        item.shown = stored + [(m, c) for m, c, _, _ in b.distractors(_n_shown(r), {fact.name})]
        r.shuffle(item.shown)
        pool = CHAT if r.random() < 0.5 else GENERAL
        k = r.randrange(len(pool[split]))
        item.user, item.gold = pool[split][k]
        item.basis, item.kind = ("chat", "chat") if pool is CHAT else ("general", "question")
        item.template, item.fact, item.entities = f"{item.basis}{k}.{split}", "", b.entities
        return item

    item.history, stored = b.short_history({fact.name})
    if label in ("add", "retrieve"):
        s = b.slots(fact)
        shown = stored + [(m, c) for m, c, _, _ in b.distractors(_n_shown(r), {fact.name})]
        if fact.name == "sibling" and r.random() < 0.5:   # same type, another sibling: still not it
            other = dict(s, name=b.names.first_name(), v=fact.value(r, b.names, split),
                         rel="brother" if s["rel"] == "sister" else "sister")
            b.entities += [other["name"], other["v"]]
            shown.append((b.new_id(), fact.sentence.format(**other)))
        r.shuffle(shown)
        item.shown = shown[:4]
        if label == "add":
            fid, frame = b.frame("add")
            pi, ph = b.phrasing(fact, "add")
            item.user, item.kind = _cap(frame.format(s=ph.format(**s))), "new fact"
            item.gold, item.memory_type, item.value = fact.sentence.format(**s), fact.memory_type, s["v"]
        else:
            fid, frame = b.frame("ask")
            pi, ph = b.phrasing(fact, "ask")
            item.user, item.kind = _cap(frame.format(s=ph.format(**s))), "question"
            item.gold = fact.query.format(**s)
        item.template = f"{label}.{fid}+{fact.name}.{pi}"
    elif label in ("update", "delete"):
        s = b.slots(fact, changed=True)
        target = b.new_id()
        old = fact.sentence.format(**{**s, "v": s["old"]})
        shown = [(target, old)] + [(m, c) for m, c, _, _ in b.distractors(r.choice([0, 1, 2]), {fact.name})]
        shown += stored[:1]
        r.shuffle(shown)
        item.shown, item.target_id = shown, target
        fid, frame = b.frame(label)
        pi, ph = b.phrasing(fact, label)
        item.user = _cap(frame.format(s=ph.format(**s)))
        item.template = f"{label}.{fid}+{fact.name}.{pi}"
        if label == "update":
            item.kind, item.gold, item.value = "changed fact", fact.sentence.format(**s), s["v"]
        else:
            item.kind, item.gold = "obsolete fact", old
    else:  # answer from a shown memory or from the conversation
        s = b.slots(fact)
        content = fact.sentence.format(**s)
        fid, frame = b.frame("ask")
        pi, ph = b.phrasing(fact, "ask")
        item.user = _cap(frame.format(s=ph.format(**s)))
        item.template, item.kind, item.gold = f"answer.{fid}+{fact.name}.{pi}", "question", fact.answer.format(**s)
        item.value = s["v"]
        shown = stored + [(m, c) for m, c, _, _ in b.distractors(r.choice([0, 1, 2]), {fact.name})]
        mid = b.new_id()
        if r.random() < 0.7:
            shown.append((mid, content))
            item.basis, item.target_id = "memory", mid
        else:   # stated and stored earlier in this conversation; not shown again
            _, aph = b.phrasing(fact, "add")
            item.history += _add_round(_cap(aph.format(**s)) + ".", content, fact.memory_type, mid,
                                       r.choice(ACK[split]))
            item.basis = "history"
        r.shuffle(shown)
        item.shown = shown
    item.entities = b.entities
    return item


def generate(n: int, seed: int = 0, split: str = "heldout", *, budget: int = DEFAULT_BUDGET,
             classes: Sequence[str] = CLASSES, wide: bool = False) -> list[DecisionItem]:
    """``n`` items of ``split`` ("train" or "heldout"); item i has class (or variant, ``VARIANTS``)
    ``classes[i % len]`` and depends only on (split, seed, i, that class, budget, wide). ``wide``
    (train only): Filter/Summary items also draw on ``*_WIDE`` subjects, requests, frames and
    summary turns."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split {split!r}: generate makes 'train' or 'heldout' (natural_items() is hand-written)")
    if wide and split != "train":
        raise ValueError("wide: more wordings exist for the train split only (held-out wordings stay fixed)")
    bad = [c for c in classes if c not in CYCLE]
    if bad or not classes:
        raise ValueError(f"classes {bad or '(none)'}: choose from {', '.join(CYCLE)}")
    if n < 0:
        raise ValueError(f"n={n}: must be >= 0")
    items = []
    for i in range(n):
        r = random.Random(f"agemem-decisions:{split}:{seed}:{i}")
        items.append(_build(classes[i % len(classes)], ItemBuilder(r, split, wide=wide), f"{split}-{seed}-{i}", budget))
    return items


# --------------------------------------------------------------------------- natural set

def _nat(label: str, user: str, shown=(), *, target: str | None = None, gold: str, kind: str,
         basis: str = "", memory_type: str = "", history=(), value: str = "", after=()) -> dict:
    return dict(label=label, user=user, shown=list(shown), target_id=target, gold=gold, kind=kind,
                basis=basis, memory_type=memory_type, history=list(history), value=value, after=list(after))


_HI = [user_message("hi!", []), answer_message("Hi! How can I help?")]
#: Hand-written and hand-checked: the user's words, what is shown, the label.
_NATURAL = [
    _nat("add", "ugh, started the new job at the hospital, I'm a night-shift nurse now",
         [("mem_7", "The user's favourite food is pho.")],
         gold="The user works as a night-shift nurse at the hospital.", value="nurse",
         kind="new fact", memory_type="fact"),
    _nat("add", "fyi my daughter's name is Lina, she turns 6 in May", [],
         gold="The user's daughter Lina turns 6 in May.", kind="new fact", memory_type="fact", value="Lina"),
    _nat("add", "I'm allergic to shellfish, keep that in mind when you suggest recipes", [],
         gold="The user is allergic to shellfish.", kind="new fact", memory_type="fact", history=_HI,
         value="shellfish"),
    _nat("add", "We adopted a rescue greyhound called Biscuit on Saturday!!",
         [("mem_12", "The user's sister Ana lives in Porto."),
          ("mem_3", "The user works as a senior designer at Brightloom.")],
         gold="The user adopted a rescue greyhound called Biscuit.", kind="new fact", memory_type="event",
         value="Biscuit"),
    _nat("update", "actually we ended up moving to Leeds, not Manchester",
         [("mem_4", "The user lives in Manchester."), ("mem_19", "The user's partner is Sam.")], target="mem_4",
         gold="The user lives in Leeds.", kind="changed fact", value="Leeds"),
    _nat("update", "my gym switched me to Thursday evenings",
         [("mem_22", "The user goes to the gym on Tuesday evenings.")], target="mem_22",
         gold="The user goes to the gym on Thursday evenings.", kind="changed fact", value="Thursday"),
    _nat("update", "Got promoted!! I'm head of design now instead of senior designer",
         [("mem_8", "The user has a dentist appointment with Dr. Okafor on Friday at 3pm."),
          ("mem_3", "The user works as a senior designer at Brightloom.")], target="mem_3",
         gold="The user works as head of design at Brightloom.", kind="changed fact", value="head of design"),
    _nat("update", "Mum's birthday is the 14th of June, not the 4th, I got it wrong earlier",
         [("mem_30", "The user's mother's birthday is June 4."), ("mem_2", "The user is learning Korean.")],
         target="mem_30", gold="The user's mother's birthday is June 14.", kind="changed fact", value="June 14"),
    _nat("delete", "sold the motorbike last month",
         [("mem_9", "The user rides a red Ducati motorbike."), ("mem_4", "The user lives in Manchester.")],
         target="mem_9", gold="The user rides a red Ducati motorbike.", kind="obsolete fact"),
    _nat("delete", "please forget my old address, I don't want it stored anywhere",
         [("mem_15", "The user's address is 12 Elm Road.")], target="mem_15",
         gold="The user's address is 12 Elm Road.", kind="obsolete fact"),
    _nat("delete", "cancel the marathon thing, I'm not running it this year",
         [("mem_27", "The user is training for the Berlin marathon in September."),
          ("mem_11", "The user is vegetarian.")],
         target="mem_27", gold="The user is training for the Berlin marathon in September.", kind="obsolete fact"),
    _nat("delete", "Sam and I broke up.",
         [("mem_19", "The user's partner is Sam."), ("mem_5", "The user's sister Ana lives in Porto.")],
         target="mem_19", gold="The user's partner is Sam.", kind="obsolete fact"),
    _nat("retrieve", "what was the name of that dentist I told you about?", [],
         gold="the user's dentist", kind="question"),
    _nat("retrieve", "When's my sister's birthday again?", [("mem_5", "The user's sister Ana lives in Porto.")],
         gold="the user's sister's birthday", kind="question"),
    _nat("retrieve", "remind me which wine I liked at the dinner party", [("mem_11", "The user is vegetarian.")],
         gold="the wine the user liked at the dinner party", kind="question"),
    _nat("retrieve", "whats my wifi password", [("mem_4", "The user lives in Manchester.")],
         gold="the user's wifi password", kind="question", history=_HI),
    _nat("answer", "where does my sister live again?", [("mem_5", "The user's sister Ana lives in Porto.")],
         target="mem_5", gold="Your sister Ana lives in Porto.", kind="question", basis="memory"),
    _nat("answer", "thanks, that's all for now!", [], gold="You're welcome, talk soon!", kind="chat", basis="chat"),
    _nat("answer", "how many cups are in a litre, roughly?", [], gold="About four cups.", kind="question",
         basis="general"),
    _nat("answer", "Good morning :)", [("mem_7", "The user's favourite food is pho.")],
         gold="Good morning! What can I do for you?", kind="chat", basis="chat"),
    _nat("answer", "what time is my dentist appointment?",
         [("mem_8", "The user has a dentist appointment with Dr. Okafor on Friday at 3pm."),
          ("mem_22", "The user goes to the gym on Tuesday evenings.")], target="mem_8",
         gold="Your dentist appointment with Dr. Okafor is on Friday at 3pm.", kind="question", basis="memory"),
    _nat("filter", "ok forget that article, can you help me pick a gift for my nephew?", [],
         gold="the pasted text about the history of the Hanseatic League", kind="question",
         basis="the history of the Hanseatic League"),
    _nat("filter", "totally unrelated but what should I cook tonight?", [("mem_11", "The user is vegetarian.")],
         gold="the pasted text about the Zephyr 3 camera firmware", kind="question",
         basis="the Zephyr 3 camera firmware"),
    _nat("filter", "anyway. can you write a two-line birthday message for my colleague Priya?", [],
         gold="the pasted text about the city council's parking plan", kind="chat",
         basis="the city council's parking plan"),
    _nat("summary", "so where did we land on the kitchen renovation? what's left to decide?", [],
         gold="all", kind="question", basis="our kitchen renovation"),
    _nat("summary", "given everything about my thesis on coral reefs, what should I write next?",
         [("mem_2", "The user is learning Korean.")], gold="all", kind="question", basis="my thesis on coral reefs"),
    _nat("summary", "ok, sum up the wedding plans for me so I can send them to Dad", [],
         gold="all", kind="chat", basis="the wedding plans"),
    # added after v7's failures (docs/training.md): a shared word is not the same fact; hits about
    # other things do not answer a question
    _nat("add", "I moved to Bristol last month, I used to live in Leeds.",
         [("mem_1", "The user's dentist is Dr. Patel in Leeds.")],
         gold="The user lives in Bristol.", kind="new fact", memory_type="fact", value="Bristol"),
    _nat("add", "my new flatmate is called Ana, she's lovely",
         [("mem_5", "The user's sister Ana lives in Porto."), ("mem_11", "The user is vegetarian.")],
         gold="The user's flatmate is called Ana.", kind="new fact", memory_type="fact", value="flatmate Ana"),
    _nat("answer", "what's my landlord's name?", [("mem_1", "The user's dentist is Dr. Patel in Leeds.")],
         gold=UNKNOWN_REPLY, kind="question", basis="unknown",
         after=search_step("the user's landlord", [("mem_1", "The user's dentist is Dr. Patel in Leeds."),
                                                   ("mem_4", "The user lives in Manchester.")])),
    _nat("answer", "when is my car's MOT due?", [],
         gold=UNKNOWN_REPLY, kind="question", basis="unknown",
         after=search_step("the user's car MOT date", [("mem_9", "The user rides a red Ducati motorbike."),
                                                       ("mem_22", "The user goes to the gym on Tuesday evenings.")])),
]


def natural_items(budget: int = DEFAULT_BUDGET) -> list[DecisionItem]:
    """The hand-written set (31 items, every class; the last four after v7's failures). Filter/Summary items get a generated
    long history about their hand-written subject (heldout wordings, fixed seed)."""
    out = []
    for i, d in enumerate(_NATURAL):
        d = dict(d)
        history = list(d.pop("history"))
        if d["label"] in ("filter", "summary"):
            b = ItemBuilder(random.Random(f"agemem-decisions:natural:{i}"), "heldout")
            _, long = b.long_history(budget, subject=d["basis"])
            history += long
        out.append(DecisionItem(id=f"natural-{i}", split="natural", template=f"natural.{i}", budget=budget,
                                history=history, **{**d, "shown": [tuple(p) for p in d["shown"]]}))
    return out


# --------------------------------------------------------------------------- context and oracle

def messages(item: DecisionItem, *, today: str = TODAY, budget: int | None = None,
             guided: bool = True, show_related: bool = True,
             count_tokens: Callable[[str], int] | None = None) -> list[dict]:
    """The exact serving context of ``item`` (what ``Agent`` gives the policy): system prompt
    with all six tools, the demonstrations when ``guided``, the history, the user turn with
    its related memories (none at all with ``show_related=False``, as episode stages 2-3
    send it), then the turn's earlier steps (``item.after``). ``budget`` defaults to the one the item was generated for (the
    Filter/Summary labels assume it). With ``count_tokens`` (the policy's tokenizer) every user
    turn carries its context-usage line, as ``Agent(context_usage=True)`` writes it."""
    budget = item.budget if budget is None else budget
    msgs = [{"role": "system", "content": prompts.render_system(
        today=today, budget=budget, tool_schemas=grammar_schemas())}]
    if guided:
        msgs += prompts.render_demonstrations()
    start = len(msgs)
    msgs += [{"role": m["role"], "content": m["content"]} for m in item.history]
    msgs.append(user_message(item.user, list(item.shown), show_related=show_related))
    if count_tokens is not None:
        msgs = with_context_usage(msgs, start, budget, count_tokens)
    return msgs + [{"role": m["role"], "content": m["content"]} for m in item.after]


def with_context_usage(msgs: list[dict], start: int, budget: int,
                       count_tokens: Callable[[str], int]) -> list[dict]:
    """``msgs`` with the context-usage line on each user turn from ``start`` on, computed as
    ``Agent`` does: the content tokens of every message before it (earlier lines included)."""
    out, used = [], 0
    for i, m in enumerate(msgs):
        if i >= start and m["role"] == "user":
            related, text = _split_user(m["content"])
            m = {"role": "user", "content": prompts.render_user_turn(
                text, related, prompts.render_context_usage(used, budget))}
        out.append(m)
        used += count_tokens(m["content"]) if m["content"] else 0
    return out


def _split_user(content: str) -> tuple[str | None, str]:
    """A rendered user turn → (its related-memories block or None, the user's words)."""
    text = prompts.user_text_of(content)
    return (content[:-len(text) - len(prompts.USER_PREFIX) - 2] if text != content else None), text


def oracle_call(item: DecisionItem) -> dict | None:
    """The right tool call (arguments in the grammar's key order), or None for an answer."""
    lab = item.label
    if lab == "add":
        args = {"content": item.gold, **({"memory_type": item.memory_type} if item.memory_type else {})}
        return {"name": "Add_memory", "arguments": args}
    if lab == "update":
        return {"name": "Update_memory", "arguments": {"memory_id": item.target_id, "content": item.gold}}
    if lab == "delete":
        return {"name": "Delete_memory", "arguments": {"memory_id": item.target_id, "confirmation": True}}
    if lab == "retrieve":
        return {"name": "Retrieve_memory", "arguments": {"query": item.gold}}
    if lab == "filter":
        return {"name": "Filter_context", "arguments": {"criteria": item.gold}}
    if lab == "summary":
        return {"name": "Summary_context", "arguments": {"span": item.gold}}
    return None


#: How a Filter/Summary think reasons (warm-start data; the serving format is the same for all):
#: "plain" says the context is long and unrelated / still needed (v6); "subject" names the context's
#: subject and what the user asks about (focus round C); "quote" names the subject, quotes the user's
#: turn and asks "Is that about <subject>?" so the choice is one Yes/No written right after the
#: user's words (a question v6 already half answers: its Yes-No logit margin is higher
#: on held-out Summary items than on Filter items).
LONG_THINKS = ("plain", "subject", "quote")

#: How an Add/Update think reasons (warm-start data): "plain" names the shown memories or the
#: target only (v6); "value" also writes the user's new value down before the call ("The new fact:
#: risotto."), because a policy trained on "plain" stored a shown memory's sentence (a distractor,
#: or the target with its old value) on most held-out Adds/Updates it classed right: its content
#: copies the memory line its think just named, and the new value is nowhere near. "value_end"
#: ends the think with the value ("Store risotto.", "update it to risotto."): after "value" the
#: think sometimes looped on "The new fact, X, is about something else. The new fact, ...".
#: "topic" is "value_end" with the subjects named: what the new fact is about, then what each shown
#: memory is about ("This is about the user's home city; mem_7 is about where the user's sister
#: Ana lives, so it is not. Store Bristol.") or which one is about it too ("This is about the
#: user's home city; mem_7 is about it too and is out of date, so update it to Bristol."): v7
#: updated a memory that merely held the same word (the dentist in Leeds for "I moved from Leeds
#: to Bristol"), and "is about something else" gave no ground to tell them apart.
FACT_THINKS = ("plain", "value", "value_end", "topic")


def _sentence_pattern(f: _Fact) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", f.sentence)   # literal, slot, literal, slot, ..., literal
    return re.compile("".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.+?)" for i, p in enumerate(parts)))


#: Memory sentences of each fact type, the most literal text first ("The user is learning {v}."
#: before "The user is {v}.").
_SENTENCES = sorted(((_sentence_pattern(f), f) for f in FACTS.values()),
                    key=lambda pf: -len(re.sub(r"\{\w+\}", "", pf[1].sentence)))


def memory_topic(content: str) -> str | None:
    """What a memory sentence of one of ``FACTS`` is about ("The user's sister Ana lives in Leeds."
    → "where the user's sister Ana lives"); None for any other text."""
    for pattern, f in _SENTENCES:
        m = pattern.fullmatch(content)
        if m:
            return (f.topic or f.query).format(**m.groupdict())
    return None


def _long_reason(item: DecisionItem, think: str) -> str:
    lab, basis = item.label, item.basis
    if think == "subject":
        about = basis if lab == "summary" else "something else"
        return (f"The context is long and about {basis}; the user asks about {about}, so "
                f"{'summarise it' if lab == 'summary' else 'filter it out'}.")
    if think == "quote":
        verdict = "Yes, so summarise it." if lab == "summary" else "No, so filter it out."
        return f'The context is long and about {basis}. The user writes: "{item.user}" Is that about {basis}? {verdict}'
    if lab == "filter":
        return f"The context is long and mostly unrelated text about {basis}, so filter it out."
    return "The context is long but still needed, so summarise it."


def _fact_reason(item: DecisionItem, fact_think: str) -> str:
    """An Add/Update think (``FACT_THINKS``): "plain" names the memories, the others also the value."""
    v, shown = item.value, [m for m, _ in item.shown]
    how = fact_think if v else "plain"
    if how == "topic":
        return _topic_reason(item)
    if item.label == "update":
        return {"plain": f"{item.target_id} is out of date, so update it.",
                "value": f"{item.target_id} is out of date; the new value is {v}, so update it.",
                "value_end": f"{item.target_id} is out of date, so update it to {v}."}[how]
    store = {"plain": "Store it.", "value": f"The new fact: {v}. Store it.", "value_end": f"Store {v}."}[how]
    return f"{', '.join(shown)} {'is' if len(shown) == 1 else 'are'} about something else. {store}" \
        if shown else store


def _topic_reason(item: DecisionItem) -> str:
    """The "topic" think (``FACT_THINKS``): subjects named, the value last."""
    v = item.value
    if item.label == "update":
        about = memory_topic(item.gold) or "it"
        return f"This is about {about}; {item.target_id} is about it too and is out of date, so update it to {v}."
    if not item.shown:
        return f"Store {v}."
    shown = [f"{m} is about {memory_topic(c) or 'something else'}" for m, c in item.shown]
    none = "it is not" if len(shown) == 1 else "none is about it"
    return f"This is about {memory_topic(item.gold) or 'something new'}; {', '.join(shown)}, so {none}. Store {v}."


def _reason(item: DecisionItem, long_think: str = "plain", fact_think: str = "plain") -> str:
    lab = item.label
    if lab in ("filter", "summary"):
        return _long_reason(item, long_think)
    if lab in ("add", "update"):
        return _fact_reason(item, fact_think)
    if lab == "delete":
        return f"{item.target_id} is no longer true, so delete it."
    if lab == "retrieve":
        return "No shown memory answers it, so search."
    return {"memory": f"{item.target_id} answers it.", "history": "The conversation answers it.",
            "chat": "Nothing to store.", "general": "It needs no memory.",
            "unknown": "No memory answers it, so say so."}[item.basis]


def oracle_completion(item: DecisionItem, *, long_think: str = "plain", fact_think: str = "plain") -> str:
    """The right step as protocol text (guided "Kind:" think + call or answer): SFT targets.
    ``long_think``: how a Filter/Summary think reasons (``LONG_THINKS``); ``fact_think``: how an
    Add/Update think reasons (``FACT_THINKS``)."""
    if long_think not in LONG_THINKS:
        raise ValueError(f"long_think {long_think!r}: choose from {', '.join(LONG_THINKS)}")
    if fact_think not in FACT_THINKS:
        raise ValueError(f"fact_think {fact_think!r}: choose from {', '.join(FACT_THINKS)}")
    think = f"Kind: {item.kind}. {_reason(item, long_think, fact_think)}"
    call = oracle_call(item)
    return render_step(think, calls=[call]) if call else render_step(think, answer=item.gold)


# --------------------------------------------------------------------------- scoring

@dataclass(frozen=True)
class Decision:
    """What a completion decided: parsed?, the action class, the memory id of the first call."""

    parsed: bool
    action: str
    memory_id: str | None = None
    content: str | None = None     # the first call's "content" argument (Add/Update), when a string
    answer: str | None = None      # the reply, when the step answered


def classify(text: str) -> Decision:
    """The first tool call's class ("other" for an unknown tool), "answer", or unparsed."""
    return classify_parsed(parse_step(text))


def classify_parsed(p) -> Decision:
    """``classify`` of a step already parsed (``protocol.ParsedStep``)."""
    if p.error:
        return Decision(False, "unparsed")
    if p.answer is not None:
        return Decision(True, "answer", answer=p.answer)
    call = p.calls[0]
    mid, content = call.arguments.get("memory_id"), call.arguments.get("content")
    return Decision(True, TOOL_CLASS.get(call.name, "other"), None if mid is None else str(mid),
                    content if isinstance(content, str) else None)


def same_id(a, b) -> bool:
    """Ids compared as the tools compare them ("mem_7", "7", " mem_7 " are one id)."""
    try:
        return parse_memory_id(a) == parse_memory_id(b)
    except (ValueError, TypeError):
        return False


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+|[0-9]+", text.lower()))


def carries_value(content: str | None, value: str) -> bool:
    """Whether stored content keeps the user's new value: every word and number of ``value``
    occurs in it, case-insensitively ("June 14" is in "...birthday is the 14th of June"); an
    article of the value need not ("Pharmacist" names "a pharmacist")."""
    return bool(value) and content is not None and _words(value) - _ARTICLES <= _words(content)


_ARTICLES = frozenset({"a", "an", "the"})


def value_check(item: DecisionItem, d: Decision) -> bool | None:
    """Whether an Add/Update of the right action kept the item's value; None where nothing is
    checked (another class, no value, or the wrong action). Used by the report and by the
    decision-GRPO reward, so both judge a write the same way."""
    if item.label not in ("add", "update") or not item.value or d.action != item.label:
        return None
    return carries_value(d.content, item.value)


def abstain_check(item: DecisionItem, d: Decision) -> bool | None:
    """Whether the answer to a question nothing stored answers (basis "unknown") says it is not
    known; None for other items or another action. The answer may not name a memory's words
    instead ("Your dentist is Dr. Patel" to "my landlord?")."""
    if item.basis != "unknown" or d.action != "answer":
        return None
    return says_not_known(d.answer or "")


def found_check(item: DecisionItem, d: Decision) -> bool | None:
    """Whether the answer to a question whose memory a search of this turn found uses it: it does
    not say it is unknown, and it names the memory's value where the item has one (an answer
    naming another hit's value is wrong too); None for other items or another action."""
    if item.basis != "memory" or not item.after or d.action != "answer":
        return None
    return not says_not_known(d.answer or "") and (not item.value or carries_value(d.answer, item.value))


def _share(k: int, n: int) -> float | None:
    return k / n if n else None


def score(items: Sequence[DecisionItem], decisions: Sequence[Decision]) -> dict:
    """Parse share, accuracy, per-class recall, id accuracy, confusion (gold x predicted)."""
    if len(items) != len(decisions):
        raise ValueError(f"{len(items)} items but {len(decisions)} decisions")
    n = len(items)
    confusion = {g: {p: 0 for p in PREDICTED} for g in CLASSES}
    right = Counter()
    id_n = id_ok = strict = value_n = value_ok = abst_n = abst_ok = found_n = found_ok = 0
    for it, d in zip(items, decisions):
        confusion[it.label][d.action] += 1
        if d.action == it.label:
            right[it.label] += 1
            if (kept := value_check(it, d)) is not None:
                value_n += 1
                value_ok += kept
            if (says := abstain_check(it, d)) is not None:
                abst_n += 1
                abst_ok += says
            if (named := found_check(it, d)) is not None:
                found_n += 1
                found_ok += named
            if it.label in ("update", "delete"):
                id_n += 1
                ok = same_id(d.memory_id, it.target_id)
                id_ok += ok
                strict += ok
            else:
                strict += 1
    counts = Counter(it.label for it in items)
    parsed = sum(d.parsed for d in decisions)
    return {
        "n": n,
        "parsed": parsed, "parse_share": _share(parsed, n),
        "correct": sum(right.values()), "accuracy": _share(sum(right.values()), n),
        "strict_correct": strict, "strict_accuracy": _share(strict, n),
        "per_class": {c: {"n": counts[c], "correct": right[c], "accuracy": _share(right[c], counts[c])}
                      for c in CLASSES},
        "id": {"n": id_n, "correct": id_ok, "accuracy": _share(id_ok, id_n)},
        "value": {"n": value_n, "correct": value_ok, "accuracy": _share(value_ok, value_n)},
        "abstain": {"n": abst_n, "correct": abst_ok, "accuracy": _share(abst_ok, abst_n)},
        "found": {"n": found_n, "correct": found_ok, "accuracy": _share(found_ok, found_n)},
        "confusion": confusion,
    }


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def render_report(scores: dict, title: str = "decisions") -> str:
    """Markdown: a headline, per-class accuracy, the confusion matrix."""
    s = scores
    lines = [f"### {title} (n = {s['n']})", "",
             f"- steps that parse: {_pct(s['parse_share'])} ({s['parsed']}/{s['n']})",
             f"- action accuracy: {_pct(s['accuracy'])} ({s['correct']}/{s['n']})",
             f"- id accuracy (update/delete with the right action): {_pct(s['id']['accuracy'])} "
             f"({s['id']['correct']}/{s['id']['n']})",
             f"- action and id right: {_pct(s['strict_accuracy'])} ({s['strict_correct']}/{s['n']})",
             f"- content keeps the new value (add/update with the right action): "
             f"{_pct(s['value']['accuracy'])} ({s['value']['correct']}/{s['value']['n']})",
             *([f"- says it does not know (answers after a search that found only other things): "
                f"{_pct(s['abstain']['accuracy'])} ({s['abstain']['correct']}/{s['abstain']['n']})"]
               if s["abstain"]["n"] else []),
             *([f"- answers from what the search found (names its value, does not say it is unknown): "
                f"{_pct(s['found']['accuracy'])} ({s['found']['correct']}/{s['found']['n']})"]
               if s.get("found", {}).get("n") else []), "",
             "| class | n | right | accuracy |", "|---|---|---|---|"]
    lines += [f"| {c} | {v['n']} | {v['correct']} | {_pct(v['accuracy'])} |" for c, v in s["per_class"].items()]
    lines += ["", "Confusion (rows: gold, columns: predicted):", "",
              "| gold \\ predicted | " + " | ".join(PREDICTED) + " |", "|---" * (len(PREDICTED) + 1) + "|"]
    lines += [f"| {g} | " + " | ".join(str(row[p]) for p in PREDICTED) + " |"
              for g, row in s["confusion"].items()]
    return "\n".join(lines)


# --------------------------------------------------------------------------- running a policy

def run_decisions(policy, items: Sequence[DecisionItem], *, today: str = TODAY, budget: int | None = None,
                  guided: bool = True, progress: Callable[[int, int, str], None] | None = None,
                  context_usage: bool = False) -> tuple[list[Decision], list[dict]]:
    """One ``policy.step`` per item (no tool runs); returns the decisions and per-item records.

    ``guided`` decides whether the demonstrations are in the context; the guided "Kind:"
    think is the policy's own setting (``assistant.open_policy(guided=...)``).
    ``context_usage``: user turns carry the context-usage line (the policy's tokenizer counts)."""
    count = policy.count_tokens if context_usage else None
    use_tools = getattr(policy, "use_tools", None)
    if use_tools:   # all six, whatever subset an earlier agent narrowed it to
        use_tools(grammar_schemas())
    decisions, records = [], []
    for k, it in enumerate(items):
        if progress:
            progress(k, len(items), it.split)
        t0 = time.perf_counter()
        comp = policy.step(messages(it, today=today, budget=budget, guided=guided, count_tokens=count))
        d = classify(comp.text)
        decisions.append(d)
        records.append({"id": it.id, "split": it.split, "label": it.label, "template": it.template,
                        "target_id": it.target_id, "user": it.user, "completion": comp.text,
                        "parsed": d.parsed, "action": d.action, "memory_id": d.memory_id,
                        "content": d.content, "correct": d.action == it.label,
                        "id_correct": same_id(d.memory_id, it.target_id) if it.label in ("update", "delete")
                        and d.action == it.label else None,
                        "value_correct": value_check(it, d), "abstain_correct": abstain_check(it, d),
                        "found_correct": found_check(it, d),
                        "prompt_tokens": comp.prompt_tokens, "seconds": round(time.perf_counter() - t0, 3)})
    if progress:
        progress(len(items), len(items), "done")
    return decisions, records


def parse_bench(text: str) -> list[str] | None:
    """``--bench`` text -> the decision splits to run, or None when it names no decisions bench.
    ``decisions`` = heldout and natural; ``decisions:SPLIT`` one split (comma-separate several);
    ``decisions:variants`` held-out items of the variants (``VARIANTS``); ``decisions:found``
    held-out questions whose memory a search found (``found_items``)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    mine = [p for p in parts if p.partition(":")[0] == "decisions"]
    if not mine:
        return None
    if len(mine) != len(parts):
        raise ConfigError("--bench decisions runs on its own; run the episode benchmarks in another command")
    splits: list[str] = []
    for p in mine:
        _, sep, sp = p.partition(":")
        if not sep:
            splits += ["heldout", "natural"]
        elif sp in BENCH_SPLITS:
            splits.append(sp)
        else:
            raise ConfigError(f"--bench {p!r}: use decisions or decisions:SPLIT with SPLIT one of "
                              f"{', '.join(BENCH_SPLITS)}")
    return list(dict.fromkeys(splits))


def run_bench(policy, splits: Sequence[str], *, n: int, seed: int, out_dir: Path | None = None,
              today: str = TODAY, budget: int = DEFAULT_BUDGET, guided: bool = True,
              progress: Callable[[int, int, str], None] | None = None,
              context_usage: bool = False) -> tuple[str, dict]:
    """Run and score each split separately (n generated items; natural: all of them).
    Writes ``decisions-report.md`` and ``decisions-<split>.json`` (items, records, scores)
    into ``out_dir`` when given. Returns the Markdown report and the scores per split."""
    sections, result = [], {}
    for sp in splits:
        if sp == "natural":
            items = natural_items(budget)
        elif sp == "variants":
            items = generate(n, seed, "heldout", budget=budget, classes=tuple(VARIANTS))
        elif sp == "found":
            items = found_items(n, seed, budget=budget)
        else:
            items = generate(n, seed, sp, budget=budget)
        decisions, records = run_decisions(policy, items, today=today, budget=budget, guided=guided,
                                           progress=progress, context_usage=context_usage)
        result[sp] = score(items, decisions)
        sections.append(render_report(result[sp], f"{sp} split"))
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / f"decisions-{sp}.json").write_text(json.dumps(
                {"split": sp, "seed": seed, "scores": result[sp], "records": records,
                 "items": [it.to_dict() for it in items]}, ensure_ascii=False, indent=1), encoding="utf-8")
    name = getattr(policy, "name", "policy")
    usage = ", context usage shown" if context_usage else ""
    text = (f"## Protocol decisions: {name} (seed {seed}, budget {budget}, guided {guided}{usage})\n\n"
            "Single steps, no tool executed; the first tool call's name (or an answer) is the decision.\n\n"
            + "\n\n".join(sections))
    if out_dir is not None:
        (out_dir / REPORT_NAME).write_text(text + "\n", encoding="utf-8")
    return text, result


__all__ = ["BENCH_SPLITS", "CLASSES", "CYCLE", "DEFAULT_BUDGET", "Decision", "DecisionItem", "FACTS", "FACT_THINKS", "ItemBuilder",
           "LONG_THINKS", "POOLS", "PREDICTED", "UNKNOWN_REPLY", "VARIANTS", "abstain_check", "found_by_search", "found_check", "found_items", "SPLITS", "TODAY", "carries_value", "classify", "classify_parsed", "est_tokens", "generate",
           "messages", "natural_items", "oracle_call", "oracle_completion", "parse_bench", "render_report",
           "run_bench", "run_decisions", "same_id", "score", "search_step", "value_check"]
