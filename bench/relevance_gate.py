"""Which search hits should reach the policy? Cosine floors, a word-sharing rule and a judge, measured.

v7 copies whatever a search puts in front of it ("What is my dog's name?" answered with the
dentist memory, cosine 0.20), so what Retrieve_memory and the shown related memories let
through decides much of what the assistant says. This bench builds labelled (query, memory)
pairs, runs each query through ``MemoryStore.search`` (hybrid, the default embedder) over its
candidates, and prints, per source and rule, the share of answering memories kept and of
other memories dropped:

- ``chat``: hand-written facts and questions in a user's words, paraphrases with no shared word
  among them ("What do I do for a living?" → "I work as a nurse ...");
- ``longmemeval``: each question against its task's turns that hold the answer (abstention
  tasks' own turns are look-alikes) and turns of other tasks;
- ``hotpot``: each question against its two paragraphs and other tasks' paragraphs;
- ``decisions``: held-out ``found`` items (the answering memory; the other hits) and
  ``answer_unknown`` items (every hit is about something else, a look-alike half the time).

A rule ``cos ≥ a`` keeps a hit by cosine alone; ``word & cos ≥ a, else cos ≥ b`` keeps a hit that
the keyword list found (``Hit.keyword``: it shares a non-stopword stem with the query) from
cosine ``a`` and any other hit from ``b``. ``--judge NAME`` also scores every pair at or above
the cosine floor with ``relevance.RelevanceJudge`` on that registry model (the chat's opt-in
``relevance_judge``) and prints its AUC next to the cosine's.

    python bench/relevance_gate.py [--n 60] [--seed 0] [--judge qwen2.5-coder-0.5b] [--out pairs.json]
    python bench/relevance_gate.py --pairs pairs.json      # the table of a saved run
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: A user's facts and questions; each question lists the facts that answer it (none: not known,
#: "~" before an index: a look-alike that does not answer it).
CHAT_FACTS = [
    "My sister's birthday is on March 3rd.",
    "My dentist is Dr. Patel in Leeds.",
    "My cat Miso is four years old.",
    "I work as a nurse at St Mary's hospital.",
    "My favourite food is ramen.",
    "My sister Ana lives in Porto.",
    "I'm allergic to peanuts.",
    "My partner Sam plays the cello.",
]
CHAT_QUESTIONS = [
    ("Who is my dentist?", [1]), ("What is the name of my dentist?", [1]),
    ("When is my sister's birthday?", [0]), ("Where does my sister live?", [5]),
    ("What city is my sister in?", [5]), ("What is my sibling called?", [5, 0]),
    ("What is my favourite food?", [4]), ("What should I order at a Japanese place?", [4]),
    ("How old is my cat?", [2]), ("What is my cat called?", [2]), ("Do I have any pets?", [2]),
    ("Where do I work?", [3]), ("What do I do for a living?", [3]), ("What's my job?", [3]),
    ("Can I eat satay sauce?", [6]), ("What food should I avoid?", [6, 4]),
    ("What instrument does my partner play?", [7]), ("Who am I dating?", [7]),
    ("What is my dog's name?", ["~2"]), ("When is my brother's birthday?", ["~0"]),
    ("Where do my parents live?", ["~5"]), ("What is my phone number?", []),
    ("What car do I drive?", []), ("Who is my doctor?", ["~1"]), ("What is my email address?", []),
]


def chat_groups() -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(source, query, [(memory, label)]) for the hand-written user."""
    out = []
    for q, answers in CHAT_QUESTIONS:
        labels = {int(str(a).lstrip("~")): "look-alike" if str(a).startswith("~") else "answer" for a in answers}
        out.append(("chat", q, [(f, labels.get(i, "other")) for i, f in enumerate(CHAT_FACTS)]))
    return out


def task_groups(bench: str, n: int, seed: int, n_other: int = 6) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """A benchmark's questions against their own information and ``n_other`` turns of other tasks."""
    from agemem_lite.eval.harness import build_tasks

    tasks = build_tasks(bench, n, seed, n_distractors=0)
    r = random.Random(f"relevance:{bench}:{seed}")
    out = []
    for t in tasks:
        q = t.question.split("] ", 1)[-1]
        if t.unanswerable:
            own = [(f, "look-alike") for f in t.information]
        elif bench == "hotpot":
            own = [(f, "answer") for f in t.information]
        else:
            own = [(f, "answer") for f in t.information if any(a.lower() in f.lower() for a in t.answers)]
        if not own:   # the answer is worked out (a date difference), not written in any turn
            continue
        pool = [f for o in tasks if o is not t for f in o.information
                if not any(a.lower() in f.lower() for a in t.answers)]
        out.append((bench, q, own + [(f, "other") for f in r.sample(pool, min(n_other, len(pool)))]))
    return out


def _search(item) -> tuple[str, list[tuple[str, str]]]:
    """The query and hits of the Retrieve_memory step a decision item made this turn."""
    from agemem_lite import protocol

    call = protocol.parse_step(item.after[0]["content"]).calls[0]
    hits = re.findall(r"^\[(mem_\w+)\] (.+)$", item.after[1]["content"], re.M)
    return call.arguments["query"], hits


def decision_groups(n: int, seed: int) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """Held-out ``found`` items (query: the user's question) and ``answer_unknown`` items (query:
    the search the item makes)."""
    from agemem_lite import decisions as D

    out = []
    for it in D.found_items(n, seed):
        _, hits = _search(it)
        out.append(("decisions", it.user, [(c, "answer" if m == it.target_id else "other") for m, c in hits]))
    for it in D.generate(n * len(D.CYCLE), seed, "heldout", classes=("answer_unknown",))[:n]:
        query, hits = _search(it)
        out.append(("decisions", query, [(c, "other") for _, c in hits]))
    return out


def measure(groups, embedder) -> list[dict]:
    """Each (query, memory) pair with the cosine and keyword flag that ``MemoryStore.search`` gives."""
    from agemem_lite.memory.store import MemoryStore

    pairs = []
    with tempfile.TemporaryDirectory() as d:
        store = MemoryStore(Path(d) / "gate.db", dim=embedder.dim)
        try:
            for gi, (source, query, mems) in enumerate(groups):
                ns = f"q{gi}"
                texts = list(dict.fromkeys(m for m, _ in mems))
                label = dict(mems)
                added = store.add_many(ns, texts, embedder.embed(texts))
                content = {m.id: m.content for m in added}
                for h in store.search(ns, query, embedder.embed_one(query), top_k=len(texts)):
                    pairs.append({"source": source, "query": query, "memory": content[h.memory.id],
                                  "label": label[content[h.memory.id]], "similarity": h.similarity,
                                  "keyword": h.keyword})
        finally:
            store.close()
    return pairs


def judge(pairs: list[dict], model_path: str, floor: float) -> None:
    """Add ``judge`` (``relevance.RelevanceJudge``: the Yes − No logit of a few-shot prompt) to each
    pair at or above the cosine ``floor``: can the policy's own base model (or a larger one) tell
    an answer from another memory where the cosine cannot?"""
    from agemem_lite.memory.relevance import RelevanceJudge

    j = RelevanceJudge(model_path)
    try:
        for p in pairs:
            if p["similarity"] >= floor:
                p["judge"] = j(p["query"], p["memory"])
    finally:
        j.close()


def _auc(pos: list[float], neg: list[float]) -> float:
    """The chance that an answering memory scores above another one (ties count half)."""
    return sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg))


RULES = [("cos ≥ 0.2 (now)", 0.2, 0.2), ("cos ≥ 0.3", 0.3, 0.3), ("cos ≥ 0.4", 0.4, 0.4),
         *((f"word & cos ≥ 0.2, else cos ≥ {b}", 0.2, b) for b in (0.3, 0.35, 0.4, 0.45))]


def kept(p: dict, word_floor: float, floor: float) -> bool:
    return p["similarity"] >= (word_floor if p["keyword"] else floor)


def print_table(pairs: list[dict]) -> None:
    """Per rule and source: answering memories kept, other memories dropped, look-alikes dropped."""
    by = defaultdict(list)
    for p in pairs:
        by[p["source"]].append(p)
    by["all"] = pairs
    print("| rule | " + " | ".join(f"{s}: answers kept / others dropped / look-alikes dropped" for s in by) + " |")
    print("|---|" + "---|" * len(by))
    for name, a, b in RULES:
        cells = []
        for ps in by.values():
            parts = []
            for label, want in (("answer", True), ("other", False), ("look-alike", False)):
                xs = [p for p in ps if p["label"] == label]
                parts.append(f"{sum(kept(p, a, b) == want for p in xs)}/{len(xs)}" if xs else "–")
            cells.append(" / ".join(parts))
        print(f"| {name} | " + " | ".join(cells) + " |")
    judged = [p for p in pairs if "judge" in p]
    if judged:
        print("\nAt or above the cosine floor, the judge (Yes − No logit) against the cosine: AUC of an answering "
              "memory over the others, then answering memories kept / others dropped / look-alikes dropped at "
              "judge ≥ t")
        print("| source | answers | others | AUC judge | AUC cosine | t = -1 | t = 0 | t = 1 |")
        print("|---|---|---|---|---|---|---|---|")
        by_judged = defaultdict(list)
        for p in judged:
            by_judged[p["source"]].append(p)
        by_judged["all"] = judged
        for source, ps in by_judged.items():
            pos = [p for p in ps if p["label"] == "answer"]
            neg = [p for p in ps if p["label"] != "answer"]
            if not pos or not neg:
                continue
            cells = []
            for t in (-1, 0, 1):
                parts = [f"{sum((p['judge'] >= t) == want for p in xs)}/{len(xs)}" if xs else "–"
                         for xs, want in ((pos, True), ([p for p in neg if p["label"] == "other"], False),
                                          ([p for p in neg if p["label"] == "look-alike"], False))]
                cells.append(" / ".join(parts))
            aucs = [_auc([p[key] for p in pos], [p[key] for p in neg]) for key in ("judge", "similarity")]
            print(f"| {source} | {len(pos)} | {len(neg)} | {aucs[0]:.3f} | {aucs[1]:.3f} | " + " | ".join(cells) + " |")
    answers = [p for p in pairs if p["label"] == "answer"]
    print(f"\nanswering memories the keyword list found: {sum(p['keyword'] for p in answers)}/{len(answers)}; "
          f"other memories it found: {sum(p['keyword'] for p in pairs if p['label'] == 'other')}/"
          f"{sum(p['label'] == 'other' for p in pairs)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=60, help="questions per benchmark and decision split")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="")
    ap.add_argument("--pairs", default="", help="print the table of a saved --out file")
    ap.add_argument("--judge", default="", help="also score the pairs at or above the floor with this registry "
                    "model's few-shot Yes/No (e.g. qwen2.5-coder-0.5b, qwen2.5-coder-1.5b)")
    args = ap.parse_args()
    if args.pairs:
        print_table(json.loads(Path(args.pairs).read_text()))
        return

    from agemem_lite.config import Settings
    from agemem_lite.embed import load_embedder

    groups = (chat_groups() + task_groups("longmemeval", args.n, args.seed)
              + task_groups("hotpot", args.n, args.seed) + decision_groups(args.n, args.seed))
    settings = Settings.load()
    pairs = measure(groups, load_embedder(settings))
    if args.judge:
        from agemem_lite import model_files

        t = time.time()
        judge(pairs, str(model_files.model_path(settings, model_files.get_spec(settings, args.judge))),
              floor=settings.retrieve_min_similarity)
        print(f"{args.judge} judged {sum('judge' in p for p in pairs)} pairs in {time.time() - t:.0f} s")
    if args.out:
        Path(args.out).write_text(json.dumps(pairs, indent=1))
    print_table(pairs)


if __name__ == "__main__":
    main()
