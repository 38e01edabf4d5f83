"""Invented names for generated benchmark items: syllable words that are not real
entities (a model cannot answer from pre-training) and never contain one another
(a judge matching one name never matches another). Used by the HotpotQA-, LongMemEval-
and LoCoMo-format generators and by the protocol decision set."""

from __future__ import annotations

import random

ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
          "br", "dr", "gr", "kr", "tr", "th", "sk", "qu", "vr", "zh"]
VOWELS = ["a", "e", "i", "o", "u", "ae", "ei", "ou", "y", "io"]
CODAS = ["", "", "n", "r", "l", "s", "th", "x", "rn", "sk", "m"]
# Shared words of composite names: "Works" in two company names is no clash.
GENERIC = {"the", "river", "industries", "works", "holdings", "labs", "group", "lantern", "orchard",
           "ledger", "harbour", "mirror", "university", "institute", "college"}


class Names:
    """Fresh syllable names for one item; no name is a substring of another (case-insensitive)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: list[str] = []

    def word(self, lo: int = 2, hi: int = 3) -> str:
        r = self.rng
        w = "".join(r.choice(ONSETS) + r.choice(VOWELS) + r.choice(CODAS)
                    for _ in range(r.randint(lo, hi)))
        return w.capitalize()

    def _fresh(self, make, shared: str = "") -> str:
        while True:
            name = make()
            low = name.lower()
            core = [p for p in low.split() if p not in GENERIC and p != shared.lower()]
            if len(low) >= 5 and not any(c in u.lower() or u.lower() in c for u in self.used
                                         for c in core + [low]):
                self.used.append(name)
                return name

    def person(self, last: str | None = None) -> str:
        """A person; ``last`` gives a shared surname (a look-alike distractor)."""
        return self._fresh(lambda: f"{self.word(2, 2)} {last or self.word(2, 3)}", shared=last or "")

    def town(self) -> str:
        return self._fresh(lambda: self.word(2, 2) + self.rng.choice(["vale", "ford", "wick", "mere", "holt", "by"]))

    def company(self) -> str:
        return self._fresh(lambda: f"{self.word()} {self.rng.choice(['Industries', 'Works', 'Holdings', 'Labs', 'Group'])}")

    def river(self) -> str:
        return self._fresh(lambda: f"{self.word(2, 2)} River")

    def band(self) -> str:
        return self._fresh(lambda: f"The {self.word(2, 2)}s")

    def book(self) -> str:
        return self._fresh(lambda: f"The {self.word(2, 2)} {self.rng.choice(['Lantern', 'Orchard', 'Ledger', 'Harbour', 'Mirror'])}")

    def university(self) -> str:
        return self._fresh(lambda: f"{self.word(2, 2)} {self.rng.choice(['University', 'Institute', 'College'])}")

    def given(self) -> str:
        """A single-word given name."""
        return self._fresh(lambda: self.word(2, 2))
