"""LongMemEval-format items: an offline generator over invented facts, and the official JSON.

LongMemEval (Wu et al., ICLR 2025) cannot be downloaded here (LANDSCAPE.md) and could leak
from pre-training. ``generate`` writes the layout of the official longmemeval_s/m/oracle
files: dated user-assistant sessions (the "haystack"), then a question asked on
``question_date``; names and values are syllables, so only the haystack knows the answer.

- single-session-user: the user states a fact once; it is asked back.
- single-session-assistant: the assistant recommended something; what was it?
- multi-session: a person is introduced in one session and their news comes in another,
  or a list is collected over two or three sessions.
- knowledge-update: an earlier session states a fact, a later one changes it. The answer
  is the new value, ``old_answer`` the outdated one: stage 1's right move is Update/Delete
  (SPEC §4), and a scorer can check the old value is gone from memory.
- temporal-reasoning: events happen "today" in their session, so the answer comes from
  ``haystack_dates``: days between two events, days since one, or which came first.
- abstention: as officially, any type whose ``question_id`` ends in "_abs". The question
  twists a stated fact ("my dog" where the user has a cat); the asked-about thing appears
  nowhere and the gold answer says so. Its evidence is the twisted fact.

Sessions not in ``answer_session_ids`` are filler: ordinary chat, some with look-alike facts
about other people ("my colleague just moved to <company>"). Their user turns are the
distractors of an episode's stage 2 (SPEC §4); the has_answer turns are stage 1's
information and the gold evidence for Memory Quality (SPEC §7).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from agemem_lite.eval.names import Names

TYPES = ("single-session-user", "single-session-assistant", "multi-session",
         "knowledge-update", "temporal-reasoning", "abstention")

# The official keys, in the official order (``dump`` writes them in this order).
_KEYS = ("question_id", "question_type", "question", "answer", "question_date",
         "haystack_session_ids", "haystack_dates", "haystack_sessions", "answer_session_ids")

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")   # not %a: that one follows the locale
_DATE = re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})(?:\s*\([A-Za-z]+\))?(?:\s+(\d{1,2}):(\d{2}))?")


def parse_date(text: str) -> datetime:
    """Parse a LongMemEval date, "2023/05/20 (Sat) 02:21" (weekday and time optional)."""
    m = _DATE.fullmatch(text.strip()) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"{text!r} is not a LongMemEval date like '2023/05/20 (Sat) 02:21'")
    y, mo, d, h, mi = (int(g) if g else 0 for g in m.groups())
    return datetime(y, mo, d, h, mi)


def format_date(d: datetime) -> str:
    """The official date layout, "2023/05/20 (Sat) 02:21"."""
    return f"{d:%Y/%m/%d} ({_WEEKDAYS[d.weekday()]}) {d:%H:%M}"


# --------------------------------------------------------------------------- item


@dataclass
class LongMemItem:
    """One question with its haystack of dated sessions, in the official LongMemEval structure."""

    question_id: str
    question_type: str
    question: str
    answer: str | int                                     # a few official answers are numbers
    question_date: str
    haystack_session_ids: list[str] = field(default_factory=list)
    haystack_dates: list[str] = field(default_factory=list)
    haystack_sessions: list[list[dict]] = field(default_factory=list)   # {"role","content"[,"has_answer"]}
    answer_session_ids: list[str] = field(default_factory=list)
    old_answer: str | None = None      # knowledge-update: the outdated value (extra key "old_answer")
    extra: dict = field(default_factory=dict)   # unknown keys of a loaded item, written back unchanged

    @property
    def is_abstention(self) -> bool:
        return self.question_id.endswith("_abs")

    @property
    def kind(self) -> str:
        """``question_type``, or "abstention" for an "_abs" item (one of ``TYPES`` for generated items)."""
        return "abstention" if self.is_abstention else self.question_type

    def to_json(self) -> dict:
        """The official key layout; ``old_answer`` and ``extra`` keys follow when present."""
        d = {k: getattr(self, k) for k in _KEYS}
        d["haystack_sessions"] = [[dict(t) for t in s] for s in self.haystack_sessions]
        if self.old_answer is not None:
            d["old_answer"] = self.old_answer
        d.update(self.extra)
        return d

    def sessions(self) -> list[tuple[str, str, list[dict]]]:
        """(session id, date, turns) sorted by date; the oracle files are not sorted."""
        rows = list(zip(self.haystack_session_ids, self.haystack_dates, self.haystack_sessions))
        return sorted(rows, key=lambda r: parse_date(r[1]))

    def gold_sentences(self) -> list[str]:
        """The has_answer turns, in time order: what Memory Quality is scored on (SPEC §7)."""
        return [t["content"] for _, _, turns in self.sessions() for t in turns if t.get("has_answer")]

    def _render(self, keep) -> list[str]:
        return [f"[{d}] {t['role']}: {t['content']}"
                for sid, d, turns in self.sessions() for t in turns if keep(sid, t)]

    def information_turns(self) -> list[str]:
        """Stage 1's input (SPEC §4): the has_answer turns as "[date] role: content", in time order.

        An official item whose answer sessions mark no turn gives their user turns instead.
        """
        gold = set(self.answer_session_ids)
        return (self._render(lambda sid, t: t.get("has_answer"))
                or self._render(lambda sid, t: sid in gold and t["role"] == "user"))

    def distractor_turns(self) -> list[str]:
        """Stage 2's input (SPEC §4): the filler sessions' user turns, "[date] user: content", in time order."""
        gold = set(self.answer_session_ids)
        return self._render(lambda sid, t: sid not in gold and t["role"] == "user")

    def query(self) -> str:
        """Stage 3's question with the date it is asked on (temporal questions count from it)."""
        return f"[{self.question_date}] {self.question}"


# --------------------------------------------------------------------------- official JSON


def _item_from_json(i: int, d) -> LongMemItem:
    if not isinstance(d, dict):
        raise ValueError(f"item {i}: expected an object, got {type(d).__name__}")
    for key in _KEYS:
        if key not in d:
            raise ValueError(f"item {i}: missing key '{key}'")
    for key in ("question_id", "question_type", "question", "question_date"):
        if not isinstance(d[key], str):
            raise ValueError(f"item {i}: '{key}' must be a string")
    if isinstance(d["answer"], bool) or not isinstance(d["answer"], (str, int)):
        raise ValueError(f"item {i}: 'answer' must be a string or an integer")
    for key in ("haystack_session_ids", "haystack_dates", "answer_session_ids"):
        if not isinstance(d[key], list) or not all(isinstance(v, str) for v in d[key]):
            raise ValueError(f"item {i}: '{key}' must be a list of strings")
    sessions = d["haystack_sessions"]
    if not isinstance(sessions, list) or len(sessions) != len(d["haystack_session_ids"]) \
            or len(d["haystack_dates"]) != len(d["haystack_session_ids"]):
        raise ValueError(f"item {i}: 'haystack_sessions', 'haystack_session_ids' and 'haystack_dates' "
                         "must be lists of one length")
    for j, s in enumerate(sessions):
        if not isinstance(s, list) or not all(isinstance(t, dict) and isinstance(t.get("role"), str)
                                              and isinstance(t.get("content"), str) for t in s):
            raise ValueError(f"item {i}: 'haystack_sessions'[{j}] must be a list of {{'role', 'content'}} turns")
    for key, dates in (("question_date", [d["question_date"]]), ("haystack_dates", d["haystack_dates"])):
        for text in dates:
            try:
                parse_date(text)
            except ValueError as e:
                raise ValueError(f"item {i}: '{key}': {e}") from None
    old = d.get("old_answer")
    if old is not None and not isinstance(old, str):
        raise ValueError(f"item {i}: 'old_answer' must be a string")
    return LongMemItem(
        **{k: d[k] for k in _KEYS if k != "haystack_sessions"},
        haystack_sessions=[[dict(t) for t in s] for s in sessions],
        old_answer=old,
        extra={k: v for k, v in d.items() if k not in _KEYS and k != "old_answer"},
    )


def load_official(path) -> list[LongMemItem]:
    """Read a LongMemEval JSON file (a list of items, official keys); ValueError names a bad item and key."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of items, got {type(data).__name__}")
    return [_item_from_json(i, d) for i, d in enumerate(data)]


def dump(items, path) -> None:
    """Write items as LongMemEval JSON (what ``load_official`` reads back)."""
    Path(path).write_text(json.dumps([it.to_json() for it in items], ensure_ascii=False, indent=1),
                          encoding="utf-8")


# --------------------------------------------------------------------------- invented values


def _value(kind: str, rng: random.Random, nm: Names) -> str:
    w = nm.given
    makers = {"name": w, "company": nm.company, "town": nm.town, "person": nm.person, "book": nm.book,
              "gym": lambda: f"{w()} Fitness", "doctor": lambda: f"Dr. {w()}", "cafe": lambda: f"Café {w()}",
              "car": lambda: f"{w()} {rng.choice('KSTVZ')}{rng.randint(2, 9)}", "trail": lambda: f"{w()} Trail",
              "venue": lambda: rng.choice(["{} Hall", "the {} Gallery", "{} Gardens", "the {} Museum"]).format(w())}
    return makers[kind]()


# (value kind, statement, question, update statement or None, look-alike about someone else,
#  abstention noun, abstention question). The abstention noun appears in no template, so a
#  question about it can only be answered "unknown". Look-alikes say "friend", "colleague",
#  "classmate" or "neighbour", never a relation a multi-session question asks about.
_SLOTS = [
    ("name", "My cat {v} knocked a glass off the table this morning, what a mess.", "What is my cat's name?",
     None, "My friend {p} just adopted a kitten called {v}.", "dog", "What is my dog's name?"),
    ("company", "I finally started my new job at {v} this week.", "Which company do I work for?",
     "Quick update: I left my old job, I work at {v} now.", "My colleague {p} just moved over to {v}.",
     "wife", "Which company does my wife work for?"),
    ("town", "We just finished moving into our new flat in {v}.", "Which town do I live in?",
     "We moved again! We live in {v} now.", "My old classmate {p} bought a house in {v}.",
     "grandmother", "Which town does my grandmother live in?"),
    ("gym", "I joined a gym called {v}, it's five minutes from home.", "What is the name of my gym?",
     "I cancelled my old membership and joined {v} instead.", "My neighbour {p} swears by a gym called {v}.",
     "swimming pool", "What is the name of the swimming pool I go to?"),
    ("person", "My manager {v} asked me to lead the quarterly review.", "What is my manager's name?",
     "After the reorganisation my new manager is {v}.", "My friend {p} says her manager {v} is very strict.",
     "landlord", "What is my landlord's name?"),
    ("doctor", "I saw my dentist, {v}, about the tooth that hurts.", "What is my dentist's name?",
     "I switched dentists; I see {v} now.", "My colleague {p} recommended a dentist called {v}.",
     "optometrist", "What is my optometrist's name?"),
    ("name", "My sister {v} is coming to visit next weekend.", "What is my sister's name?",
     None, "My friend {p} has a sister called {v}.", "brother", "What is my brother's name?"),
    ("book", "Our book club picked {v} for this month.", "Which book is my book club reading?",
     "Change of plan: the book club is reading {v} instead.", "My neighbour {p} keeps recommending {v}.",
     "film", "Which film is my film club watching?"),
    ("car", "I bought a second-hand {v} and it drives really well.", "What car did I buy?",
     "I sold my old car and got a {v} instead.", "My neighbour {p} just bought a {v}.",
     "motorbike", "What model of motorbike did I buy?"),
    ("cafe", "My favourite café is {v}, right by the station.", "What is my favourite café?",
     "I have a new favourite café: {v}.", "My friend {p} works at a café called {v}.",
     "bakery", "What is my favourite bakery?"),
]

# multi-session, bridge: (value kind, intro of {p}, news about {p}, question)
_BRIDGES = [
    ("company", "My cousin {p} is coming to stay with us for a couple of weeks.",
     "{p} told me she just got a job at {v}.", "Which company does my cousin work for?"),
    ("town", "My flatmate {p} keeps leaving dishes in the sink again.",
     "{p} is moving out to {v} in the spring.", "Where is my flatmate moving to?"),
    ("name", "I've started playing tennis on Sundays; my tennis partner is {p}.",
     "{p} brought his new puppy, {v}, to the court today.", "What is my tennis partner's puppy called?"),
]
# multi-session, list: (statement, question); the answer names each value in time order
_LISTS = [
    ("I started listening to a podcast called {v} on my commute.", "Which podcasts did I say I started listening to?"),
    ("Tried a new restaurant tonight, {v}; the noodles were great.", "Which new restaurants did I try?"),
    ("I picked up a new board game today, {v}.", "Which board games did I buy?"),
]
# single-session-assistant: (value kind, user request, assistant reply holding {v}, question)
_ADVICE = [
    ("trail", "Can you suggest an easy hiking trail near {t}? I'm a beginner.",
     "Sure! The {v} is a gentle 6 km loop with a café at the end, perfect for a first hike.",
     "You suggested a beginner hiking trail near {t} a while ago. What was it called?"),
    ("book", "Can you recommend a novel for a long train ride?",
     "You might enjoy {v}; it's a slow, atmospheric read that suits a long journey.",
     "Which novel did you recommend for my train ride?"),
    ("name", "I need a name for my new sourdough starter, any ideas?",
     "How about {v}? It sounds friendly and a little mysterious.",
     "What name did you suggest for my sourdough starter?"),
]
# temporal-reasoning: events that happen on their session's day
_EVENTS = ["I went to a concert at {v} tonight, the band was great.", "Spent the whole morning at {v} today.",
           "Today I finally visited {v}; it was worth the trip.", "I had lunch at {v} today with some old friends."]

# Filler: ordinary chat, none of it about the abstention nouns or the multi-session relations.
_CHAT = [
    ("What's a quick pasta dish for a weeknight?", "Garlic and olive oil spaghetti: warm the garlic in oil, toss."),
    ("How do I keep basil alive on a windowsill?", "Plenty of light, water when the soil is dry, pinch off the buds."),
    ("Can you explain a list comprehension in Python?", "It builds a list in one expression: [x * 2 for x in items]."),
    ("Any tips for sleeping better?", "Keep a regular bedtime, dim the screens early, keep the room cool."),
    ("How long should I boil an egg for a runny yolk?", "About six minutes from boiling, then cool it in cold water."),
    ("What's a good warm-up before a run?", "Five minutes of brisk walking, then leg swings and easy strides."),
    ("How do I get a coffee stain out of a shirt?", "Rinse it with cold water, dab on dish soap, then wash as usual."),
    ("Can you help me decline a meeting politely?", "Sure: 'Thank you, I can't attend; please send the notes.'"),
    ("Baking soda or baking powder, what's the difference?", "Soda needs an acid; powder already contains one."),
    ("How often should I water a cactus?", "Every two to three weeks in summer, barely at all in winter."),
    ("How do I make my laptop battery last longer?", "Lower the brightness and close apps running in the background."),
    ("What should I pack for a weekend of camping?", "Tent, sleeping bag, warm layers, a headlamp and water."),
]
_ACKS = ["That sounds lovely!", "Thanks for telling me, I'll keep that in mind.", "Oh, nice! How is it going so far?",
         "Good to know. Is there anything I can help with?", "Ha, what a story!"]


# --------------------------------------------------------------------------- drafts


@dataclass
class _Draft:
    """A question and its evidence sessions (each a list of turns), before dates and filler."""

    qtype: str
    question: str
    answer: object                     # a string, or f(evidence dates, question date) -> string
    evidence: list[list[dict]]
    slot: int                          # which _SLOTS row the look-alike filler copies
    old: str | None = None
    absent: str | None = None          # abstention: the noun that must appear nowhere


def _fact(user: str, rng: random.Random) -> list[dict]:
    return [{"role": "user", "content": user, "has_answer": True},
            {"role": "assistant", "content": rng.choice(_ACKS)}]


def _chat_turns(rng: random.Random, k: int) -> list[list[dict]]:
    return [[{"role": "user", "content": u}, {"role": "assistant", "content": a}] for u, a in rng.sample(_CHAT, k)]


def _session(rng: random.Random, *pairs: list[dict]) -> list[dict]:
    """One chat: the given exchanges and one ordinary exchange, in random order."""
    ex = list(pairs) + _chat_turns(rng, 1)
    rng.shuffle(ex)
    return [t for pair in ex for t in pair]


def _days(n: int) -> str:
    return f"{n} day" + ("s" if n != 1 else "")


def _single_user(rng, nm, abstain: bool = False) -> _Draft:
    """A stated fact asked back; with ``abstain`` the question twists it into one nobody answered."""
    s = rng.randrange(len(_SLOTS))
    kind, stmt, q, *_, noun, abs_q = _SLOTS[s]
    v = _value(kind, rng, nm)
    ev = [_session(rng, _fact(stmt.format(v=v), rng))]
    if abstain:
        answer = f"The information provided is not enough. You never mentioned your {noun}."
        return _Draft("single-session-user", abs_q, answer, ev, s, absent=noun)
    return _Draft("single-session-user", q, v, ev, s)


def _single_assistant(rng, nm) -> _Draft:
    kind, ask, reply, q = rng.choice(_ADVICE)
    v, t = _value(kind, rng, nm), nm.town()
    pair = [{"role": "user", "content": ask.format(t=t)},
            {"role": "assistant", "content": reply.format(v=v), "has_answer": True}]
    return _Draft("single-session-assistant", q.format(t=t), v, [_session(rng, pair)], rng.randrange(len(_SLOTS)))


def _multi(rng, nm) -> _Draft:
    slot = rng.randrange(len(_SLOTS))
    if rng.random() < 0.5:
        kind, intro, news, q = rng.choice(_BRIDGES)
        p, v = nm.person(), _value(kind, rng, nm)
        ev = [_session(rng, _fact(intro.format(p=p), rng)), _session(rng, _fact(news.format(p=p, v=v), rng))]
        return _Draft("multi-session", q, v, ev, slot)
    stmt, q = rng.choice(_LISTS)
    vs = [nm.given() for _ in range(rng.randint(2, 3))]
    ev = [_session(rng, _fact(stmt.format(v=v), rng)) for v in vs]
    return _Draft("multi-session", q, ", ".join(vs[:-1]) + " and " + vs[-1], ev, slot)


def _update(rng, nm) -> _Draft:
    s = rng.choice([i for i, row in enumerate(_SLOTS) if row[3]])
    kind, stmt, q, upd, *_ = _SLOTS[s]
    old, new = _value(kind, rng, nm), _value(kind, rng, nm)
    ev = [_session(rng, _fact(stmt.format(v=old), rng)), _session(rng, _fact(upd.format(v=new), rng))]
    return _Draft("knowledge-update", q, new, ev, s, old=old)


def _temporal(rng, nm) -> _Draft:
    a, b = _value("venue", rng, nm), _value("venue", rng, nm)
    ev_a, ev_b = (_session(rng, _fact(e.format(v=v), rng)) for e, v in zip(rng.sample(_EVENTS, 2), (a, b)))
    slot, form = rng.randrange(len(_SLOTS)), rng.choice(["between", "ago", "first"])
    if form == "ago":
        return _Draft("temporal-reasoning", f"How many days ago did I visit {a}?",
                      lambda ds, qd: _days((qd.date() - ds[0].date()).days), [ev_a], slot)
    x, y = rng.sample([a, b], 2)                     # the question names them in random order
    if form == "between":
        q = f"How many days passed between my visit to {x} and my visit to {y}?"
        return _Draft("temporal-reasoning", q, lambda ds, qd: _days((ds[1].date() - ds[0].date()).days),
                      [ev_a, ev_b], slot)
    return _Draft("temporal-reasoning", f"Which did I visit first, {x} or {y}?", a, [ev_a, ev_b], slot)


_MAKERS = {"single-session-user": _single_user, "single-session-assistant": _single_assistant,
           "multi-session": _multi, "knowledge-update": _update, "temporal-reasoning": _temporal,
           "abstention": lambda rng, nm: _single_user(rng, nm, abstain=True)}


# --------------------------------------------------------------------------- generate


def _filler(rng: random.Random, nm: Names, slot: int) -> list[dict]:
    """Ordinary chat; two times in five it also carries a look-alike fact about someone else."""
    if rng.random() < 0.4:
        kind, *_, look, _noun, _q = _SLOTS[slot if rng.random() < 0.7 else rng.randrange(len(_SLOTS))]
        pair = [{"role": "user", "content": look.format(p=nm.person(), v=_value(kind, rng, nm))},
                {"role": "assistant", "content": rng.choice(_ACKS)}]
        return _session(rng, pair)
    return [t for pair in _chat_turns(rng, 2) for t in pair]


def _text(sessions) -> str:
    return "\n".join(t["content"] for s in sessions for t in s)


def _valid(d: _Draft, fillers: list[list[dict]]) -> bool:
    """Reject a draw where a chance substring breaks the item's logic (rare; redrawn)."""
    if d.absent:
        return not re.search(rf"\b{d.absent}\b", _text(d.evidence + fillers), re.I)
    if callable(d.answer):
        return True
    parts = re.split(r", | and ", d.answer) if d.qtype == "multi-session" else [d.answer]
    noise = _text(fillers)
    ok = all(p in _text(d.evidence) and p not in noise for p in parts)
    if d.old is not None:
        ok = ok and d.old not in _text(d.evidence[1:]) and d.answer not in _text(d.evidence[:1])
    return ok


def _one(rng: random.Random, seed: int, i: int, kind: str, n_filler: int) -> LongMemItem:
    while True:
        nm = Names(rng)
        d = _MAKERS[kind](rng, nm)
        fillers = [_filler(rng, nm, d.slot) for _ in range(n_filler)]
        if _valid(d, fillers):
            break
    total = len(d.evidence) + n_filler
    gold_at = sorted(rng.sample(range(total), len(d.evidence)))      # evidence keeps its order in time
    day, dates = datetime(2023, 1, 1) + timedelta(days=rng.randint(0, 300)), []
    for _ in range(total + 1):                        # one session a day at most; the question last
        dates.append(day.replace(hour=rng.randint(8, 22), minute=rng.randint(0, 59)))
        day += timedelta(days=rng.randint(1, 9))
    qdate = dates.pop()
    base = f"{seed}-{i:05d}"
    ids, sessions, ev, fl = [], [], iter(d.evidence), iter(fillers)
    for k in range(total):
        gold = k in gold_at
        ids.append(f"{'answer' if gold else 'filler'}_{base}_{k}")
        sessions.append(next(ev) if gold else next(fl))
    answer = d.answer([dates[k] for k in gold_at], qdate) if callable(d.answer) else d.answer
    return LongMemItem(
        question_id=f"lme-{base}" + ("_abs" if d.absent else ""), question_type=d.qtype,
        question=d.question, answer=answer, question_date=format_date(qdate),
        haystack_session_ids=ids, haystack_dates=[format_date(x) for x in dates],
        haystack_sessions=sessions, answer_session_ids=[ids[k] for k in gold_at], old_answer=d.old)


def generate(n: int, seed: int, *, types=TYPES, n_filler: int = 6) -> list[LongMemItem]:
    """``n`` LongMemEval-format items over invented facts; the same seed gives the same items.

    ``types`` (names from ``TYPES``) are dealt round-robin, so every type appears once
    ``n >= len(types)``; ``n_filler`` filler sessions per item are the stage-2 distractors.
    """
    types = tuple(types)
    unknown = [t for t in types if t not in _MAKERS]
    if unknown or not types:
        raise ValueError(f"types={types!r}: choose one or more of {TYPES}")
    if n < 0 or n_filler < 0:
        raise ValueError(f"n={n}, n_filler={n_filler}: both must be >= 0")
    rng = random.Random(seed)
    return [_one(rng, seed, i, types[i % len(types)], n_filler) for i in range(n)]
