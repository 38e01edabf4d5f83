"""Side-by-side table of `agemem eval --bench decisions` runs (one column per run).

    python bench/compare_decisions.py prompted=DIR1 warm-round-1=DIR2 warm-round-2=DIR3 [--first N]

Reads each run's ``decisions-<split>.json`` and scores it with today's scorer: completions are
classified again, and items saved before they carried a ``value`` get it from the generator
(same split, seed and budget; the user turns must match). ``--first N`` scores only the first N
items of the generated splits (``decisions.generate`` makes n = 14 a prefix of n = 28), so runs
of different n can be compared on the same items. Prints Markdown, one table per split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agemem_lite.decisions import CLASSES, DecisionItem, classify, generate, natural_items, score


def _with_values(items: list[DecisionItem], split: str, seed: int) -> list[DecisionItem]:
    """Items of an older run lack ``value``: take it from the same items generated again."""
    if not items or all(it.value or it.label not in ("add", "update") for it in items):
        return items
    budget = items[0].budget
    fresh = natural_items(budget) if split == "natural" else generate(len(items), seed, split, budget=budget)
    for it, f in zip(items, fresh, strict=True):
        if (it.id, it.user) != (f.id, f.user):
            raise SystemExit(f"{it.id}: the generator no longer makes this run's items; cannot add values")
        it.value = f.value
    return items


def _load(folder: Path, split: str, first: int | None):
    path = folder / f"decisions-{split}.json"
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    items = _with_values([DecisionItem.from_dict(x) for x in d["items"]], split, d["seed"])
    decs = [classify(r["completion"]) for r in d["records"]]
    if first and split != "natural":
        items, decs = items[:first], decs[:first]
    return score(items, decs)


def _cell(k: int, n: int) -> str:
    return "–" if not n else f"{100 * k / n:.0f} % ({k}/{n})"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="LABEL=DIR")
    ap.add_argument("--first", type=int, default=None)
    a = ap.parse_args(argv)
    runs = [(r.split("=", 1)[0], Path(r.split("=", 1)[1])) for r in a.runs]
    for split in ("heldout", "natural", "train"):
        scores = [(label, _load(d, split, a.first)) for label, d in runs]
        scores = [(label, s) for label, s in scores if s]
        if not scores:
            continue
        print(f"\n#### {split} (n = {scores[0][1]['n']})\n")
        print("| | " + " | ".join(label for label, _ in scores) + " |")
        print("|---" * (len(scores) + 1) + "|")
        print("| steps that parse | " + " | ".join(_cell(s["parsed"], s["n"]) for _, s in scores) + " |")
        print("| action accuracy | " + " | ".join(_cell(s["correct"], s["n"]) for _, s in scores) + " |")
        print("| update/delete id right | " + " | ".join(_cell(s["id"]["correct"], s["id"]["n"]) for _, s in scores) + " |")
        print("| add/update content keeps the value | "
              + " | ".join(_cell(s["value"]["correct"], s["value"]["n"]) for _, s in scores) + " |")
        for c in CLASSES:
            print(f"| {c} | " + " | ".join(_cell(s["per_class"][c]["correct"], s["per_class"][c]["n"])
                                          for _, s in scores) + " |")


if __name__ == "__main__":
    main()
