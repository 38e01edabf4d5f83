"""HotpotQA-format items: an offline generator over invented entities, and the official JSON.

HotpotQA itself cannot be downloaded here (LANDSCAPE.md), and a model could answer
real HotpotQA from pre-training anyway. ``generate`` writes items in exactly the
official layout over names built from syllables, so the facts exist nowhere but in
the item's paragraphs:

- *bridge* questions need two paragraphs: paragraph A links the question's entity to
  a bridge entity (the title of paragraph B), paragraph B gives the answer about the
  bridge entity. A never contains the answer, B never names the question's entity.
- *comparison* questions name two entities of one kind; each gold paragraph holds one
  number (a year or a length) and the answer is the entity that wins the comparison.

Every item has 2 gold and 8 distractor paragraphs (same entity kinds, some naming the
question's entity or the answer, none answering), 2-5 sentences each, shuffled.
The gold paragraphs' supporting facts are what SPEC §7's Memory Quality is scored on;
the distractors are what stage 2 of an episode feeds the agent (SPEC §4).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from .names import Names

# --------------------------------------------------------------------------- item


@dataclass
class HotpotItem:
    """One question with its 10 paragraphs, in the official HotpotQA structure."""

    id: str
    question: str
    answer: str
    type: str = "bridge"                                   # "bridge" | "comparison"
    level: str = "medium"                                  # "easy" | "medium" | "hard"
    context: list[tuple[str, list[str]]] = field(default_factory=list)
    supporting_facts: list[tuple[str, int]] = field(default_factory=list)

    def to_json(self) -> dict:
        """The official key layout (``_id``, nested lists instead of tuples)."""
        return {
            "_id": self.id,
            "question": self.question,
            "answer": self.answer,
            "type": self.type,
            "level": self.level,
            "supporting_facts": [[t, i] for t, i in self.supporting_facts],
            "context": [[t, list(s)] for t, s in self.context],
        }

    @property
    def gold_titles(self) -> list[str]:
        """Titles of the paragraphs holding supporting facts, in first-use order."""
        return list(dict.fromkeys(t for t, _ in self.supporting_facts))

    def gold_sentences(self) -> list[str]:
        """The supporting sentences (an out-of-range index, as in a few official items, is skipped)."""
        paras = dict(self.context)
        out = []
        for title, idx in self.supporting_facts:
            sents = paras.get(title, [])
            if 0 <= idx < len(sents):
                out.append(sents[idx])
        return out

    def distractor_paragraphs(self) -> list[tuple[str, list[str]]]:
        """Context paragraphs that hold no supporting fact, in context order."""
        gold = set(self.gold_titles)
        return [(t, s) for t, s in self.context if t not in gold]


# --------------------------------------------------------------------------- official JSON

_REQUIRED = ("question", "answer", "supporting_facts", "context")


def _item_from_json(i: int, d) -> HotpotItem:
    if not isinstance(d, dict):
        raise ValueError(f"item {i}: expected an object, got {type(d).__name__}")
    if "_id" not in d and "id" not in d:
        raise ValueError(f"item {i}: missing key '_id'")
    for key in _REQUIRED:
        if key not in d:
            raise ValueError(f"item {i}: missing key '{key}'")
    context = []
    for j, para in enumerate(d["context"]):
        if (not isinstance(para, (list, tuple)) or len(para) != 2 or not isinstance(para[0], str)
                or not isinstance(para[1], list) or not all(isinstance(s, str) for s in para[1])):
            raise ValueError(f"item {i}: 'context'[{j}] must be [title, [sentence, ...]]")
        context.append((para[0], list(para[1])))
    facts = []
    for j, fact in enumerate(d["supporting_facts"]):
        if (not isinstance(fact, (list, tuple)) or len(fact) != 2 or not isinstance(fact[0], str)
                or isinstance(fact[1], bool) or not isinstance(fact[1], int)):
            raise ValueError(f"item {i}: 'supporting_facts'[{j}] must be [title, sentence_index]")
        facts.append((fact[0], fact[1]))
    return HotpotItem(
        id=str(d.get("_id", d.get("id"))),
        question=str(d["question"]),
        answer=str(d["answer"]),
        type=str(d.get("type", "bridge")),
        level=str(d.get("level", "medium")),
        context=context,
        supporting_facts=facts,
    )


def load_official(path) -> list[HotpotItem]:
    """Read a HotpotQA JSON file (a list of items, official keys); ValueError names a bad item and key."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of items, got {type(data).__name__}")
    return [_item_from_json(i, d) for i, d in enumerate(data)]


def dump(items, path) -> None:
    """Write items as official HotpotQA JSON (what ``load_official`` reads back)."""
    Path(path).write_text(json.dumps([it.to_json() for it in items], ensure_ascii=False, indent=1),
                          encoding="utf-8")


_INDUSTRIES = ["shipping", "textile", "software", "brewing", "glassware", "printing", "mining"]
_PRODUCTS = ["ceramic valves", "river barges", "weaving looms", "ledger software", "glass lenses"]
_JOBS = ["chemist", "architect", "painter", "surveyor", "engineer", "economist", "botanist"]
_SUBJECTS = ["mathematics", "botany", "law", "music", "history", "geology"]
_GENRES = ["folk", "post-punk", "jazz", "synth-pop", "bluegrass", "shoegaze"]


def _para(rng: random.Random, intro: str, keys: list[str], fillers: list[str]) -> tuple[list[str], list[int]]:
    """Intro first, then the key sentences and 0-3 fillers in random order (2-5 sentences).

    Returns the sentences and the index of each key sentence, in ``keys`` order.
    """
    room = 4 - len(keys)
    k = rng.randint(1 if not keys else 0, min(room, len(fillers)))
    body = keys + rng.sample(fillers, k)
    rng.shuffle(body)
    sents = [intro] + body
    return sents, [sents.index(s) for s in keys]


def _year(rng, lo=1820, hi=2015) -> int:
    return rng.randint(lo, hi)


# --------------------------------------------------------------------------- paragraph makers
# Each returns (title, sentences, key_index or None); key sentences hold one fact.

def _p_company(rng, nm: Names, name, founder=None, year=None, hq=None, mention=None):
    founder, year, hq = founder or nm.person(), year or _year(rng), hq or nm.town()
    key = f"It was founded in {year} by {founder}."
    fillers = [f"The company employs about {rng.randint(2, 90) * 100} people.",
               f"Its best-known product is a line of {rng.choice(_PRODUCTS)}.",
               f"In later years it opened a second office in {nm.town()}."]
    extra = [f"For a time it was a supplier to {mention}."] if mention else []   # always kept
    sents, (ki, *_) = _para(rng, f"{name} is a {rng.choice(_INDUSTRIES)} company headquartered in {hq}.",
                            [key] + extra, fillers)
    return name, sents, ki


def _p_person(rng, nm: Names, name, born_in=None, born=None, works_at=None, studied=None, mention=None):
    born_in, born = born_in or nm.town(), born or _year(rng, 1850, 1995)
    job = rng.choice(_JOBS)
    intro = f"{name} is a {job}." if works_at is None else f"{name} is a writer and former {job}."
    facts = {"born_in": f"{name} was born in {born_in}.",
             "born": f"{name} was born in the year {born}.",
             "works_at": f"Before writing fiction, {name} worked as a {job} at {works_at}.",
             "studied": f"{name} studied {rng.choice(_SUBJECTS)} at {studied}."}
    fillers = [f"{name} later moved to {nm.town()}.",
               f"{name} was married to {nm.person()}.",
               f"{name} received the {nm.word(2, 2)} Prize for {rng.choice(_SUBJECTS)}."]
    extra = [f"{name} has written about {mention}."] if mention else []   # always kept
    return name, facts, intro, fillers, extra


def _person_para(rng, nm, name, key: str, **kw):
    title, facts, intro, fillers, extra = _p_person(rng, nm, name, **kw)
    sents, (ki, *_) = _para(rng, intro, [facts[key]] + extra, fillers)
    return title, sents, ki


def _p_town(rng, nm: Names, name, river=None):
    river = river or nm.river()
    key = f"The {river} flows through the town centre."
    fillers = [f"It has a population of about {rng.randint(2, 60) * 1000}.",
               f"The town is known for its {rng.choice(['market', 'bridge', 'cathedral', 'mill'])}.",
               f"It is twinned with {nm.town()}."]
    sents, (ki,) = _para(rng, f"{name} is a town in the province of {nm.word(2, 2)}.", [key], fillers)
    return name, sents, ki


def _p_band(rng, nm: Names, name, town=None, year=None, mention=None):
    """Returns (title, sentences, index of "formed in <town>", index of "formed in <year>")."""
    town, year = town or nm.town(), year or _year(rng, 1955, 2015)
    intro = f"{name} are a {rng.choice(_GENRES)} band formed in {town}."
    year_key = f"The band was formed in {year}."
    fillers = [f"Their lead singer is {nm.person()}.",
               f"Their debut album is called {nm.word(2, 3)}.",
               f"They toured with {mention or nm.band()}."]
    sents, (yi,) = _para(rng, intro, [year_key], fillers)
    return name, sents, 0, yi


def _p_book(rng, nm: Names, name, author=None):
    author = author or nm.person()
    key = f"{name} is a {_year(rng, 1900, 2015)} novel by {author}."
    fillers = [f"It follows a {rng.choice(_JOBS)} travelling to {nm.town()}.",
               f"It was adapted for radio by {nm.person()}.",
               f"The novel won the {nm.word(2, 2)} Award."]
    sents, _ = _para(rng, key, [], fillers)
    return name, sents, 0


def _p_university(rng, nm: Names, name, year=None):
    year = year or _year(rng, 1600, 1990)
    key = f"It was founded in {year}."
    fillers = [f"It has about {rng.randint(3, 40) * 1000} students.",
               f"Its best-known faculty is {rng.choice(_SUBJECTS)}.",
               f"Its campus lies beside the {nm.river()}."]
    sents, (ki,) = _para(rng, f"{name} is a public university in {nm.town()}.", [key], fillers)
    return name, sents, ki


def _p_river(rng, nm: Names, name, length=None):
    length = length or rng.randint(40, 2400)
    key = f"It is {length} kilometres long."
    fillers = [f"It rises in the hills above {nm.town()}.",
               f"Its largest tributary is the {nm.river()}.",
               f"It flows into the sea near {nm.town()}."]
    sents, (ki,) = _para(rng, f"The {name} is a river in the province of {nm.word(2, 2)}.", [key], fillers)
    return name, sents, ki


# --------------------------------------------------------------------------- bridge templates
# Each returns (question, answer, gold A, gold B, distractors); gold = (title, sentences, key_idx).

def _bridge_founder_town(rng, nm):
    company, person, town = nm.company(), nm.person(), nm.town()
    a = _p_company(rng, nm, company, founder=person)
    b = _person_para(rng, nm, person, "born_in", born_in=town)
    q = rng.choice([f"In which town was the founder of {company} born?",
                    f"What is the birthplace of the person who founded {company}?",
                    f"{company} was founded by a person born in which town?"])
    last = person.split()[1]
    ds = [_person_para(rng, nm, nm.person(last=last), "born_in"),           # same surname
          _person_para(rng, nm, nm.person(), "born_in", mention=company),   # names the company
          _person_para(rng, nm, nm.person(), "born_in", born_in=town),      # names the answer
          _p_company(rng, nm, nm.company(), mention=company),
          _p_company(rng, nm, nm.company(), hq=town),
          _p_company(rng, nm, nm.company()),
          _p_town(rng, nm, nm.town()),
          _person_para(rng, nm, nm.person(), "born_in")]
    return q, town, a, b, ds


def _bridge_band_river(rng, nm):
    band, town, river = nm.band(), nm.town(), nm.river()
    t, s, ki, _ = _p_band(rng, nm, band, town=town)
    b = _p_town(rng, nm, town, river=river)
    q = rng.choice([f"Which river flows through the town where {band} were formed?",
                    f"The town in which {band} formed lies on which river?"])
    ds = [_p_band(rng, nm, nm.band(), mention=band)[:3],
          _p_band(rng, nm, nm.band())[:3],
          _p_band(rng, nm, nm.band())[:3],
          _p_town(rng, nm, nm.town(), river=river),
          _p_town(rng, nm, nm.town()),
          _p_town(rng, nm, nm.town()),
          _p_river(rng, nm, river),
          _p_river(rng, nm, nm.river())]
    return q, river, (t, s, ki), b, ds


def _bridge_book_employer(rng, nm):
    book, author, company = nm.book(), nm.person(), nm.company()
    a = _p_book(rng, nm, book, author=author)
    b = _person_para(rng, nm, author, "works_at", works_at=company)
    q = rng.choice([f"Which company employed the author of {book}?",
                    f"Before writing fiction, the author of {book} worked at which company?"])
    ds = [_p_book(rng, nm, nm.book()), _p_book(rng, nm, nm.book()),
          _person_para(rng, nm, nm.person(), "works_at", works_at=company),
          _person_para(rng, nm, nm.person(), "works_at", works_at=nm.company()),
          _person_para(rng, nm, nm.person(last=author.split()[1]), "born_in"),
          _p_company(rng, nm, company),
          _p_company(rng, nm, nm.company()),
          _person_para(rng, nm, nm.person(), "works_at", works_at=nm.company(), mention=book)]
    return q, company, a, b, ds


def _bridge_person_university(rng, nm):
    person, uni = nm.person(), nm.university()
    year = _year(rng, 1600, 1990)
    a = _person_para(rng, nm, person, "studied", studied=uni)
    b = _p_university(rng, nm, uni, year=year)
    q = rng.choice([f"In what year was the university where {person} studied founded?",
                    f"{person} studied at a university founded in which year?"])
    ds = [_person_para(rng, nm, nm.person(), "studied", studied=nm.university()),
          _person_para(rng, nm, nm.person(), "studied", studied=nm.university(), mention=person),
          _person_para(rng, nm, nm.person(last=person.split()[1]), "born"),
          _p_university(rng, nm, nm.university()),
          _p_university(rng, nm, nm.university()),
          _p_university(rng, nm, nm.university()),
          _p_company(rng, nm, nm.company(), founder=nm.person()),
          _p_town(rng, nm, nm.town())]
    return q, str(year), a, b, ds


# --------------------------------------------------------------------------- comparison templates
# Question words the tests (and a reader) use for direction: earlier/older/first -> smaller
# number wins; later/more recently -> larger; longer -> larger; shorter -> smaller.
_LARGER_WINS = re.compile(r"\b(longer|later|more recently)\b", re.I)
_SMALLER_WINS = re.compile(r"\b(shorter|earlier|older|first)\b", re.I)


def winning_number(question: str) -> str | None:
    """Which number wins a comparison question of these templates: "larger" or "smaller";
    None where its words say neither or both."""
    larger, smaller = bool(_LARGER_WINS.search(question)), bool(_SMALLER_WINS.search(question))
    return None if larger == smaller else "larger" if larger else "smaller"


def _two_numbers(rng, lo, hi):
    x, y = rng.sample(range(lo, hi), 2)
    return x, y


def _cmp_companies(rng, nm):
    x, y = nm.company(), nm.company()
    yx, yy = _two_numbers(rng, 1820, 2015)
    a, b = _p_company(rng, nm, x, year=yx), _p_company(rng, nm, y, year=yy)
    earlier = rng.random() < 0.5
    if earlier:
        q = rng.choice([f"Which was founded earlier, {x} or {y}?", f"Which company is older, {x} or {y}?"])
    else:
        q = f"Which company was founded later, {x} or {y}?"
    ans = (x if yx < yy else y) if earlier else (x if yx > yy else y)
    ds = [_p_company(rng, nm, nm.company(), mention=x), _p_company(rng, nm, nm.company(), mention=y)] + \
         [_p_company(rng, nm, nm.company()) for _ in range(4)] + \
         [_person_para(rng, nm, nm.person(), "born"), _p_town(rng, nm, nm.town())]
    return q, ans, a, b, ds


def _cmp_bands(rng, nm):
    x, y = nm.band(), nm.band()
    yx, yy = _two_numbers(rng, 1955, 2015)
    (tx, sx, _, kx), (ty, sy, _, ky) = _p_band(rng, nm, x, year=yx), _p_band(rng, nm, y, year=yy)
    q = rng.choice([f"Which band was formed more recently, {x} or {y}?", f"Which band was formed first, {x} or {y}?"])
    ans = (x if yx > yy else y) if "recently" in q else (x if yx < yy else y)
    ds = [_p_band(rng, nm, nm.band(), mention=x)[:3], _p_band(rng, nm, nm.band(), mention=y)[:3]] + \
         [_p_band(rng, nm, nm.band())[:3] for _ in range(3)] + \
         [_p_town(rng, nm, nm.town()) for _ in range(3)]
    return q, ans, (tx, sx, kx), (ty, sy, ky), ds


def _cmp_people(rng, nm):
    x, y = nm.person(), nm.person()
    yx, yy = _two_numbers(rng, 1850, 1995)
    a, b = _person_para(rng, nm, x, "born", born=yx), _person_para(rng, nm, y, "born", born=yy)
    q = rng.choice([f"Who was born first, {x} or {y}?", f"Who is older, {x} or {y}?"])
    ans = x if yx < yy else y
    ds = [_person_para(rng, nm, nm.person(), "born", mention=x),
          _person_para(rng, nm, nm.person(last=y.split()[1]), "born"),
          _person_para(rng, nm, nm.person(last=x.split()[1]), "born")] + \
         [_person_para(rng, nm, nm.person(), "born") for _ in range(3)] + \
         [_p_company(rng, nm, nm.company()), _p_university(rng, nm, nm.university())]
    return q, ans, a, b, ds


def _cmp_rivers(rng, nm):
    x, y = nm.river(), nm.river()
    lx, ly = _two_numbers(rng, 40, 2400)
    a, b = _p_river(rng, nm, x, length=lx), _p_river(rng, nm, y, length=ly)
    longer = rng.random() < 0.5
    q = f"Which river is longer, the {x} or the {y}?" if longer else f"Which river is shorter, the {x} or the {y}?"
    ans = (x if lx > ly else y) if longer else (x if lx < ly else y)
    ds = [_p_town(rng, nm, nm.town(), river=x), _p_town(rng, nm, nm.town(), river=y)] + \
         [_p_river(rng, nm, nm.river()) for _ in range(4)] + [_p_town(rng, nm, nm.town()) for _ in range(2)]
    return q, ans, a, b, ds


_BRIDGE = [_bridge_founder_town, _bridge_band_river, _bridge_book_employer, _bridge_person_university]
_COMPARISON = [_cmp_companies, _cmp_bands, _cmp_people, _cmp_rivers]


# --------------------------------------------------------------------------- generate

def _valid(item: HotpotItem, kind: str, a_title: str, b_title: str) -> bool:
    """Reject a draw where a chance substring breaks the item's logic (rare; redrawn)."""
    titles = [t for t, _ in item.context]
    if len(set(titles)) != len(titles):
        return False
    paras = {t: " ".join(s) for t, s in item.context}
    if kind == "bridge":
        q_entity_paras = [t for t in titles if t != a_title and a_title in paras[t]]
        return (item.answer not in paras[a_title] and item.answer in paras[b_title]
                and b_title not in item.question and a_title not in paras[b_title]
                and not any(b_title in paras[t] for t in titles if t not in (a_title, b_title))
                and not any(item.answer in paras[t] for t in q_entity_paras))
    return all(item.answer != t for t in titles if t not in (a_title, b_title))


def _one(rng: random.Random, seed: int, i: int) -> HotpotItem:
    while True:
        nm = Names(rng)
        kind = "bridge" if rng.random() < 0.6 else "comparison"   # HotpotQA is ~80/20; more comparisons here
        make = rng.choice(_BRIDGE if kind == "bridge" else _COMPARISON)
        q, ans, a, b, ds = make(rng, nm)
        context = [(t, s) for t, s, *_ in [a, b] + ds]
        rng.shuffle(context)
        item = HotpotItem(
            id=f"agm-{seed}-{i:05d}", question=q, answer=ans, type=kind,
            level=rng.choice(["easy", "medium", "medium", "hard"]),
            context=context, supporting_facts=[(a[0], a[2]), (b[0], b[2])])
        if _valid(item, kind, a[0], b[0]):
            return item


def generate(n: int, seed: int) -> list[HotpotItem]:
    """``n`` HotpotQA-format items over invented entities; the same seed gives the same items."""
    if n < 0:
        raise ValueError(f"n={n}: the number of items must be >= 0")
    rng = random.Random(seed)
    return [_one(rng, seed, i) for i in range(n)]

