"""GRPO on single protocol decisions: one step per decision-set item, rewarded by its label.

Why: the trajectory reward (SPEC §5) reaches a Filter/Summary choice only through the
episode's final answer and context costs, so with a CPU's 12 groups of 4 episodes the
signal for that one choice is buried (docs/training.md, "GRPO from v6"). Here a group
is K sampled steps on the same decision context (``decisions.messages``: the exact
serving format) and the reward is whether the step took the labelled action, so the
gradient lands on the choice the warm start left undecided. It is a stage of our own,
not the paper's; ``rollouts = "decisions"`` in a recipe selects it, the episode stage
stays the default.

Train items come from the decision set's train split (its wide wordings included);
checkpoints are picked on held-out-split items of another seed than the one
``agemem eval --bench decisions`` reports, so the reported numbers stay unseen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from agemem_lite.decisions import (Decision, DecisionItem, abstain_check, classify, classify_parsed, messages,
                                   same_id, value_check)
from agemem_lite.protocol import parse_step
from agemem_lite.records import Step

#: Reward of a step that takes the right class but names the wrong memory (Update/Delete).
WRONG_ID_REWARD = 0.5
#: Factor for an Add/Update of the right class whose content lost the user's new value (it stored a
#: shown memory's line instead, which v6 did on 3 of 5 held-out writes; docs/training.md).
LOST_VALUE_FACTOR = 0.5


@dataclass(frozen=True)
class DecisionScore:
    """The reward of one sampled step: ``total`` (what GRPO uses) and ``r_task`` (right class)."""

    total: float
    r_task: float


def decision_reward(item: DecisionItem, text: str) -> DecisionScore:
    """1 for the labelled action (Update/Delete: with the labelled id; the wrong id earns
    ``WRONG_ID_REWARD``; an Add/Update whose content lost the item's value earns
    ``LOST_VALUE_FACTOR`` times that; an answer after a search that found only other things
    earns nothing unless it says it does not know: naming an unrelated memory is a made-up
    answer), 0 for any other action or a step that does not parse."""
    return _score(item, classify(text))


def _score(item: DecisionItem, d: Decision) -> DecisionScore:
    if d.action != item.label:
        return DecisionScore(0.0, 0.0)
    total = 1.0
    if item.label in ("update", "delete") and not same_id(d.memory_id, item.target_id):
        total = WRONG_ID_REWARD
    if value_check(item, d) is False:
        total *= LOST_VALUE_FACTOR
    if abstain_check(item, d) is False:
        return DecisionScore(0.0, 1.0)
    return DecisionScore(total, 1.0)


@dataclass
class DecisionRollout:
    """One sampled step on one item, shaped like an episode for ``train.samples``:
    ``reward`` (``.total``, ``.r_task``) and ``steps`` (the one step)."""

    item: DecisionItem
    steps: list[Step]
    reward: DecisionScore
    action: str

    @property
    def tool_calls(self) -> dict[str, int]:
        return {c["name"]: 1 for c in self.steps[0].calls[:1]}


def sample_step(policy, item: DecisionItem, *, guided: bool, context_usage: bool = False) -> DecisionRollout:
    """Run ``policy.step`` on the item's serving context and score it (the text is parsed once);
    ``context_usage``: its user turns carry the context-usage line (``EpisodeConfig.context_usage``)."""
    ctx = messages(item, guided=guided, count_tokens=policy.count_tokens if context_usage else None)
    comp = policy.step(ctx)
    parsed = parse_step(comp.text)
    d = classify_parsed(parsed)
    step = Step.from_completion(0, ctx, comp, parsed, stage="decision")
    return DecisionRollout(item, [step], _score(item, d), d.action)


def rollout_groups(policy, items: Sequence[DecisionItem], k: int, seed_of, *, guided: bool,
                   context_usage: bool = False) -> dict:
    """K sampled steps per item (``seed_of(group, k)`` the sampling seed): item id -> rollouts.
    The K prompts are identical, so llama.cpp evaluates each context once."""
    groups = {}
    for gi, it in enumerate(items):
        rolls = []
        for j in range(k):
            policy.seed = seed_of(gi, j)
            rolls.append(sample_step(policy, it, guided=guided, context_usage=context_usage))
        groups[it.id] = rolls
    return groups


def heldout_record(rollouts: Sequence[DecisionRollout]) -> dict:
    """What a held-out evaluation logs: mean reward, class accuracy, per class right/n."""
    per: dict[str, list[int]] = {}
    for r in rollouts:
        per.setdefault(r.item.label, [0, 0])
        per[r.item.label][0] += r.reward.r_task == 1.0
        per[r.item.label][1] += 1
    n = len(rollouts)
    return {"n": n, "reward_mean": sum(r.reward.total for r in rollouts) / n if n else None,
            "accuracy": sum(r.reward.r_task for r in rollouts) / n if n else None,
            "per_class": {c: f"{a}/{b}" for c, (a, b) in per.items()},
            "parsed": sum(r.steps[0].kind != "invalid" for r in rollouts)}


__all__ = ["DecisionRollout", "DecisionScore", "WRONG_ID_REWARD", "decision_reward", "heldout_record",
           "rollout_groups", "sample_step"]
