"""LoCoMo's JSON format: a loader, and a tiny generator of samples over invented people.

LoCoMo (Maharana et al., 2024) is a set of very long two-person conversations with
questions about them; its file (locomo10.json) is not downloadable here (LANDSCAPE.md).
A file is a list of samples::

    {"sample_id": "conv-26",
     "conversation": {"speaker_a": "...", "speaker_b": "...",
                      "session_1_date_time": "1:56 pm on 8 May, 2023",
                      "session_1": [{"speaker": "...", "dia_id": "D1:1", "text": "..."}, ...], ...},
     "qa": [{"question": "...", "answer": "...", "evidence": ["D1:3"], "category": 2}, ...],
     "event_summary": {...}, "observation": {...}, "session_summary": {...}}

Category 5 (adversarial: the question pins one speaker's fact on the other) holds
"adversarial_answer" instead of "answer"; the right reply is that it is not mentioned.
``load_official`` tolerates and ignores the summary/observation keys and extra turn keys
(image turns carry "img_url", "blip_caption", "query"). Some official evidence entries
join two ids ("D8:6; D9:17") or name a turn that does not exist: ids are split, and only
the turns found give ``evidence_text``.

``make_sample`` writes a small sample in exactly this layout, over syllable names, so the
loader is tested without the official file.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from agemem_lite.eval.names import Names

# The category numbers as the official evaluation code treats them (task_eval/evaluation.py:
# 1 is scored as a comma-separated multi-answer, 5 as a refusal); the paper lists the five
# kinds in another order.
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_DATE_TIME = re.compile(r"(\d{1,2}):(\d{2})\s*([ap]m)\s+on\s+(\d{1,2})\s+([A-Za-z]+),?\s+(\d{4})", re.I)
_SESSION = re.compile(r"session_(\d+)")


def parse_date_time(text: str) -> datetime:
    """Parse a LoCoMo session time, "1:56 pm on 8 May, 2023"."""
    m = _DATE_TIME.fullmatch(text.strip()) if isinstance(text, str) else None
    month = m.group(5).capitalize() if m else ""
    if not m or month not in _MONTHS:
        raise ValueError(f"{text!r} is not a LoCoMo session time like '1:56 pm on 8 May, 2023'")
    hour = int(m.group(1)) % 12 + (12 if m.group(3).lower() == "pm" else 0)
    return datetime(int(m.group(6)), _MONTHS.index(month) + 1, int(m.group(4)), hour, int(m.group(2)))


def format_date_time(d: datetime) -> str:
    """The LoCoMo layout, "1:56 pm on 8 May, 2023"."""
    half = "pm" if d.hour >= 12 else "am"
    return f"{d.hour % 12 or 12}:{d.minute:02d} {half} on {d.day} {_MONTHS[d.month - 1]}, {d.year}"


# --------------------------------------------------------------------------- records


@dataclass
class Turn:
    """One utterance; ``dia_id`` is "D<session>:<turn>"."""

    speaker: str
    dia_id: str
    text: str


@dataclass
class Session:
    """``session_N`` with its ``session_N_date_time`` string (``when`` parses it)."""

    index: int
    date_time: str
    turns: list[Turn] = field(default_factory=list)

    @property
    def when(self) -> datetime:
        return parse_date_time(self.date_time)


@dataclass
class QA:
    """A question; ``answer`` is None for an adversarial item, which has ``adversarial_answer``."""

    question: str
    answer: str | int | None
    category: int
    evidence: list[str] = field(default_factory=list)        # dia_ids as written in the file
    evidence_text: list[str] = field(default_factory=list)   # text of the evidence turns that exist
    adversarial_answer: str | None = None

    @property
    def category_name(self) -> str:
        return CATEGORIES.get(self.category, f"category-{self.category}")


@dataclass
class LocomoSample:
    """One conversation: its two speakers, sessions in order of N, and its questions."""

    sample_id: str
    speaker_a: str
    speaker_b: str
    sessions: list[Session] = field(default_factory=list)
    qa: list[QA] = field(default_factory=list)

    def turn(self, dia_id: str) -> Turn | None:
        """The turn with this id, or None."""
        return next((t for s in self.sessions for t in s.turns if t.dia_id == dia_id), None)

    def information_turns(self) -> list[str]:
        """Every turn as "[date time] speaker: text", in order: stage 1's input (SPEC §4)."""
        return [f"[{s.date_time}] {t.speaker}: {t.text}" for s in self.sessions for t in s.turns]


# --------------------------------------------------------------------------- official JSON


def _turns(where: str, raw) -> list[Turn]:
    if not isinstance(raw, list):
        raise ValueError(f"{where}: expected a list of turns")
    out = []
    for k, t in enumerate(raw):
        if not isinstance(t, dict) or not all(isinstance(t.get(key), str) for key in ("speaker", "dia_id", "text")):
            raise ValueError(f"{where}[{k}]: a turn needs string 'speaker', 'dia_id' and 'text'")
        out.append(Turn(t["speaker"], t["dia_id"], t["text"]))
    return out


def _qa(where: str, q, by_id: dict[str, Turn]) -> QA:
    if not isinstance(q, dict) or not isinstance(q.get("question"), str):
        raise ValueError(f"{where}: missing key 'question'")
    if isinstance(q.get("category"), bool) or not isinstance(q.get("category"), int):
        raise ValueError(f"{where}: missing or non-integer key 'category'")
    if "answer" not in q and "adversarial_answer" not in q:
        raise ValueError(f"{where}: missing key 'answer' (or 'adversarial_answer' for category 5)")
    evidence = q.get("evidence", [])
    if not isinstance(evidence, list) or not all(isinstance(e, str) for e in evidence):
        raise ValueError(f"{where}: 'evidence' must be a list of dia_id strings")
    ids = [i for e in evidence for i in re.split(r"[;,\s]+", e) if i]
    text = [by_id[i].text for i in dict.fromkeys(ids) if i in by_id]
    return QA(q["question"], q.get("answer"), q["category"], list(evidence), text, q.get("adversarial_answer"))


def _sample_from_json(i: int, d) -> LocomoSample:
    if not isinstance(d, dict):
        raise ValueError(f"sample {i}: expected an object, got {type(d).__name__}")
    for key, kind in (("sample_id", str), ("conversation", dict), ("qa", list)):
        if not isinstance(d.get(key), kind):
            raise ValueError(f"sample {i}: missing key '{key}' (or it is not a {kind.__name__})")
    conv, where = d["conversation"], f"sample {i} ({d['sample_id']})"
    for key in ("speaker_a", "speaker_b"):
        if not isinstance(conv.get(key), str):
            raise ValueError(f"{where}: 'conversation' is missing key '{key}'")
    sessions = []
    for key in conv:
        m = _SESSION.fullmatch(key)
        if m:
            if not isinstance(conv.get(f"{key}_date_time"), str):
                raise ValueError(f"{where}: 'conversation' is missing key '{key}_date_time'")
            sessions.append(Session(int(m.group(1)), conv[f"{key}_date_time"], _turns(f"{where}: '{key}'", conv[key])))
    sessions.sort(key=lambda s: s.index)                     # session_10 comes after session_9
    by_id = {t.dia_id: t for s in sessions for t in s.turns}
    qa = [_qa(f"{where}: 'qa'[{j}]", q, by_id) for j, q in enumerate(d["qa"])]
    return LocomoSample(d["sample_id"], conv["speaker_a"], conv["speaker_b"], sessions, qa)


def load_official(path) -> list[LocomoSample]:
    """Read a LoCoMo JSON file (locomo10.json layout); ValueError names a bad sample and key."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of samples, got {type(data).__name__}")
    return [_sample_from_json(i, d) for i, d in enumerate(data)]


# --------------------------------------------------------------------------- make_sample

_GREET, _BYE = "Hey {o}! Long time no see, how have you been?", "Take care, {o}! Catch up later."
_FILL = ["Pretty good, thanks! Busy week though.", "I've been reading a lot lately, it helps me unwind.",
         "Great, thanks! The weather has been lovely.", "Not much new on my side, work keeps me busy."]
_REACT = ["Wow, that's great to hear!", "Tell me more, that sounds fun!", "That's lovely, good for you!",
          "Oh nice, I'd love to hear how it goes."]


def _session_lines(rng: random.Random, n: int, a: str, b: str, facts: list[tuple[str, str]]):
    """Session n: a greeting, each (speaker, fact) with a reaction, a goodbye; the speakers alternate.

    Returns the turns and each fact's dia_id.
    """
    other, lines, ids = {a: b, b: a}, [], {}
    fill, react = iter(rng.sample(_FILL, 4)), iter(rng.sample(_REACT, 4))

    def say(who: str, text: str) -> str:
        lines.append({"speaker": who, "dia_id": f"D{n}:{len(lines) + 1}", "text": text})
        return lines[-1]["dia_id"]

    first = a if n % 2 else b
    say(first, _GREET.format(o=other[first]))
    for who, text in facts:
        if lines[-1]["speaker"] == who:
            say(other[who], next(fill))
        ids[text] = say(who, text)
        say(other[who], next(react))
    last = lines[-1]["speaker"]
    say(other[last], _BYE.format(o=last))
    return lines, ids


def make_sample(seed: int, path=None) -> dict:
    """One small LoCoMo sample (4 sessions, a question of every category) over invented people.

    The same seed gives the same sample. With ``path`` it is also written there as a
    one-sample file, in the official layout, including the summary/observation keys.
    """
    rng = random.Random(seed)
    nm = Names(rng)
    a, b = nm.given(), nm.given()
    pet, company, town1, town2 = nm.given(), nm.company(), nm.town(), nm.town()
    # (session, speaker, line) of the facts the questions ask about
    facts = [(1, a, f"Guess what, I adopted a cat today! Her name is {pet}."),
             (2, b, f"I started a new job at {company} this week."),
             (2, a, f"On Saturday I took a pottery class in {town1}."),
             (3, a, f"Last weekend I went to a folk festival in {town2}."),
             (4, b, "I've been learning to bake sourdough bread.")]
    conv, ids, dates = {"speaker_a": a, "speaker_b": b}, {}, {}
    day = datetime(2022, 1, 1) + timedelta(days=rng.randint(0, 500))
    for n in range(1, 5):
        day += timedelta(days=rng.randint(3, 20))
        dates[n] = day.replace(hour=rng.randint(8, 21), minute=rng.randint(0, 59))
        lines, found = _session_lines(rng, n, a, b, [(who, text) for k, who, text in facts if k == n])
        ids.update(found)
        conv[f"session_{n}_date_time"] = format_date_time(dates[n])
        conv[f"session_{n}"] = lines
    cat, job, pot, fest, _ = (ids[f[2]] for f in facts)
    adopted = f"{dates[1].day} {_MONTHS[dates[1].month - 1]} {dates[1].year}"      # LoCoMo writes "8 May 2023"
    qa = [{"question": f"What is the name of {a}'s cat?", "answer": pet, "evidence": [cat], "category": 4},
          {"question": f"Where does {b} work?", "answer": company, "evidence": [job], "category": 4},
          {"question": f"When did {a} adopt a cat?", "answer": adopted, "evidence": [cat], "category": 2},
          {"question": f"Which towns did {a} visit for hobbies?", "answer": f"{town1}, {town2}",
           "evidence": [pot, fest], "category": 1},
          {"question": f"Would {a} enjoy a cat café?", "answer": f"Likely yes; she has a cat named {pet}",
           "evidence": [cat], "category": 3},
          {"question": f"What is the name of {b}'s cat?", "adversarial_answer": pet, "evidence": [cat], "category": 5}]
    sample = {
        "qa": qa, "conversation": conv,
        "event_summary": {f"events_session_{n}": {a: [], b: [], "date": format_date_time(dates[n]).split(" on ")[1]}
                          for n in dates},
        "observation": {f"session_{n}_observation": {a: [], b: []} for n in dates},
        "session_summary": {f"session_{n}_summary": f"{a} and {b} caught up." for n in dates},
        "sample_id": f"conv-{seed}",
    }
    if path is not None:
        Path(path).write_text(json.dumps([sample], ensure_ascii=False, indent=1), encoding="utf-8")
    return sample
