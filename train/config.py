"""Everything a training run needs, in one TOML file plus CLI overrides.

``TrainConfig.load(path, overrides)`` reads a recipe (``train/recipes/*.toml`` or
any file), then applies ``key=value`` overrides (``--set lr=1e-5``,
``--set episode.n_max=2``). Unknown keys are an error, not silently ignored, so a
typo cannot run a different experiment than the one written down. The resolved
config is saved in the run folder (``config.toml``) and a resume must match it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from agemem_lite.episodes import EpisodeConfig
from agemem_lite.errors import ConfigError
from agemem_lite.toml_file import read_toml, toml_value

RECIPES_DIR = Path(__file__).with_name("recipes")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: One warm-start round's settings when its table leaves them out (seed: the run's seed + round index).
#: long_share keeps that share of the Filter/Summary items (a 4k-token context costs ~8 short items
#: on a CPU); long_budget is the context budget they are generated for; longer turns are dropped.
#: replay / stage2 / questions: self-distilled answers to open requests / to stage-2 distractor turns,
#: and stage-3 episode turns (question_retrieve of them after a search), and episodes: stage-1 turns
#: of that many training episodes with the oracle's writes, added to the oracle turns (train.warm_start).
#: pack: up to that many turns that share the system prompt run as one sequence (train.packing).
#: wide_long: Filter/Summary items also use the decision set's *_WIDE train wordings (v6 ran without);
#: long_think: how their think reasons, one of decisions.LONG_THINKS (default: "subject" with
#: wide_long, else "plain", the v6 data); fact_think: how an Add/Update think reasons, one of
#: decisions.FACT_THINKS ("plain", the v6 data; "value": the think writes the new value down;
#: "value_end": the think ends with it, round G of the shipped v7; "topic": it also names what the
#: fact and the shown memories are about, rounds K and L, not shipped); context_usage: every user
#: turn starts with how full the context is (prompts.render_context_usage; serve such a policy
#: with ModelSpec.context_usage or the context_usage setting); edit_replies: each Filter/Summary
#: turn also teaches the reply after its edit (train.warm_start.edit_reply_turns; round V);
#: worked_think: a HotpotQA question's think names both memories and writes the hop or the comparison
#: out; hotpot_questions: that many more HotpotQA questions join the round (train.warm_start.question_turns);
#: two_facts / overviews: that many messages stating two facts (two Adds in one step) / asking for
#: everything stored about the user (train.warm_start.two_fact_turns / overview_turns).
WARM_START_DEFAULTS = {"items": None, "seed": None, "epochs": 1.0, "lr": 2e-4, "classes": None,
                       "long_share": 0.3, "long_budget": 2048, "max_tokens": 5000, "replay": 0, "stage2": 0,
                       "questions": 0, "question_retrieve": 0.5, "episodes": 0, "pack": 1,
                       "wide_long": False, "long_think": None, "fact_think": "plain", "context_usage": False,
                       "edit_replies": False, "worked_think": False, "hotpot_questions": 0,
                       "two_facts": 0, "overviews": 0}
#: The keys of a warm-start round that add turns: a round needs one of them above 0. ``items = 0``
#: makes a round of only the other kinds (e.g. a small dose of overview turns on the shipped policy).
ROUND_TURNS = ("items", "replay", "stage2", "questions", "episodes", "hotpot_questions", "two_facts", "overviews")


def _f(default, help: str):
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """One GRPO run (SPEC §6). Fields the paper does not fix say what we chose."""

    base: str = _f("qwen2.5-coder-0.5b", "Base policy: registry name, GGUF path or HF folder.")
    # -- tasks ---------------------------------------------------------------------------------
    benches: list = _f(["hotpot", "longmemeval"], "Training task sources (eval harness names); "
                       "tasks are interleaved across them.")
    n_train_tasks: int = _f(64, "Training tasks generated per bench (cycled in a seeded order).")
    train_seed: int = _f(1000, "Generator seed of the training tasks (the eval harness uses 0).")
    heldout_benches: list = _f(["hotpot", "longmemeval"], "Held-out benches (harness names).")
    n_heldout: int = _f(4, "Held-out tasks per bench for the evaluation every eval_every steps.")
    heldout_seed: int = _f(0, "Seed of the held-out tasks (0 = the tasks `agemem eval --seed 0` runs).")
    episode: dict = _f({}, "EpisodeConfig overrides for rollouts and held-out evaluation "
                       "(e.g. n_max, n_distractors, max_steps_per_turn, demonstrations, t_max).")
    # -- warm start (supervised, before GRPO; train.warm_start) ---------------------------------
    warm_start: list = _f([], "Supervised warm-start rounds before GRPO, each continuing the adapter of the "
                          "one before: tables with items (decision-set train items, required; 0 for a round of only the "
                          "other kinds of turns), seed, epochs, "
                          "lr, classes (the class cycle; repeat a class to weight it), long_share, "
                          "long_budget, max_tokens, replay, stage2, questions, question_retrieve, episodes, pack, wide_long, long_think, fact_think, context_usage, edit_replies, worked_think, hotpot_questions, two_facts, overviews (defaults: WARM_START_DEFAULTS). "
                          "Empty = no warm start.")
    init_adapter: str = _f("", "Start from this PEFT adapter folder (e.g. RUN/warm_start/adapter) or GGUF LoRA "
                           "adapter (e.g. models/adapters/agemem-0.5b.lora.gguf, the shipped policy) instead "
                           "of fresh adapters; its rank must be lora_r and its alpha lora_alpha. With a warm start, "
                           "its first round continues this adapter.")
    # -- GRPO (SPEC §6) -------------------------------------------------------------------------
    steps: int = _f(100, "GRPO steps (paper: ~100); 0 = the warm start only.")
    tasks_per_step: int = _f(1, "Tasks (groups) per GRPO step.")
    k: int = _f(8, "Rollouts per task (paper: K = 8).")
    beta: float = _f(0.1, "KL coefficient to the reference policy (adapters disabled); paper 0.1.")
    clip_eps: float = _f(0.2, "PPO clip range (not given by the paper; PPO's usual 0.2).")
    adv_eps: float = _f(1e-4, "ε in A = (r - mean) / (std + ε).")
    min_group_std: float = _f(0.0, "Skip groups whose reward std is below this (SPEC §6 skips exact ties: 0); "
                              "e.g. 0.01 ignores groups that differ only by a few context tokens.")
    temperature: float = _f(1.0, "Rollout sampling temperature (not given by the paper).")
    max_samples_per_step: int = _f(48, "Step samples per GRPO step (uniformly subsampled when a "
                                   "step's trajectories hold more; 0 = all). Bounds CPU time.")
    updates_per_step: int = _f(1, "Optimizer passes over a step's samples (μ); >1 makes the ratio ≠ 1.")
    minibatch_size: int = _f(0, "Samples per optimizer step within a pass (0 = all of them).")
    lr: float = _f(2e-5, "AdamW learning rate of the LoRA weights (not given by the paper).")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    max_grad_norm: float = _f(1.0, "Gradient clipping (global norm).")
    curriculum: str = _f("paper", "'paper': full three-stage trajectories from the start; "
                         "'progressive': the loss covers stage-1 steps, then stages 1-2, then all.")
    phase_fractions: list = _f([0.34, 0.67], "Where the progressive phases end (fractions of steps).")
    reward: str = _f("all", "'all': every SPEC §5 term; 'answer_only': the ablation R = R_task + P.")
    rollouts: str = _f("episodes", "'episodes': three-stage episodes with the trajectory reward (SPEC §5-6); "
                       "'decisions': one step per decision-set train item, reward 1 for the labelled action "
                       "(train.decision_rollouts; a stage of our own). Then n_train_tasks counts train items, "
                       "tasks_per_step items per step, n_heldout held-out-split items (at heldout_seed).")
    decision_classes: list = _f([], "rollouts = 'decisions': the class cycle of the train items (repeat a class "
                                "to weight it); empty = all seven once.")
    decision_budget: int = _f(2048, "rollouts = 'decisions': the context budget train items are generated for "
                              "(Filter/Summary histories fill 50-80 % of it); held-out items use the serving 4096.")
    # -- LoRA -------------------------------------------------------------------------------------
    lora_r: int = _f(16, "LoRA rank.")
    lora_alpha: int = _f(32, "LoRA alpha (scale alpha / r).")
    lora_targets: list = _f(list(LORA_TARGETS), "Linear layers of each block that get adapters.")
    # -- serving-format details (rollouts must decode exactly like `agemem chat`) ------------------
    n_ctx: int = _f(4096, "llama.cpp context of the rollout policy.")
    max_new_tokens: int = _f(192, "Generation cap per step.")
    think_tokens: int = _f(96, "Cap on <think> tokens.")
    guided: bool = _f(True, "Prompted-policy aids (demonstrations, forced 'Kind:' label) as in chat.")
    # -- machinery ------------------------------------------------------------------------------
    seed: int = _f(0, "Seed of task order, sampling, subsampling and LoRA init.")
    device: str = _f("auto", "'auto' (CUDA if present), 'cpu' or 'cuda'.")
    unsloth: str = _f("auto", "'auto' (Unsloth 4-bit when on CUDA and installed), 'on', 'off'.")
    bf16: bool = _f(True, "bf16 autocast for the torch passes (GPU, and CPUs with a native bf16 path: "
                    "avx512_bf16 or amx_bf16; elsewhere torch's bf16 fallback is ~25x slower than fp32, so "
                    "they run fp32); weights stay fp32 on CPU.")
    gradient_checkpointing: bool = _f(False, "Trade compute for memory in the training pass.")
    save_every: int = _f(10, "Checkpoint every N steps (and at the end).")
    eval_every: int = _f(10, "Held-out evaluation every N steps (and before step 1 and at the end); 0 = never.")
    threads: int = _f(0, "torch / llama.cpp threads; 0 = all cores.")

    def __post_init__(self):
        def bad(name, why):
            raise ConfigError(f"{name}={getattr(self, name)!r}: {why}")

        for name in ("steps", "tasks_per_step", "n_train_tasks", "lora_r", "lora_alpha", "save_every"):
            low = 0 if name == "steps" else 1
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int) \
                    or getattr(self, name) < low:
                bad(name, f"must be an integer ≥ {low}")
        if self.steps == 0 and not self.warm_start:
            bad("steps", "0 GRPO steps trains nothing without a warm start")
        if self.init_adapter and not Path(self.init_adapter).exists():
            bad("init_adapter", "no such file or folder")
        self.warm_start_rounds()   # validates them
        if self.k < 2:
            bad("k", "GRPO needs at least 2 rollouts per task to compare them (paper: 8)")
        for name in ("beta", "clip_eps", "adv_eps", "min_group_std", "temperature", "lr", "weight_decay",
                     "max_grad_norm"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                bad(name, "must be a number ≥ 0")
        if self.curriculum not in ("paper", "progressive"):
            bad("curriculum", "use 'paper' or 'progressive'")
        if self.reward not in ("all", "answer_only"):
            bad("reward", "use 'all' or 'answer_only'")
        if self.rollouts not in ("episodes", "decisions"):
            bad("rollouts", "use 'episodes' or 'decisions'")
        from agemem_lite.decisions import CYCLE

        if not isinstance(self.decision_classes, list) or any(c not in CYCLE for c in self.decision_classes):
            bad("decision_classes", f"a list of classes (or variants) from {', '.join(CYCLE)}")
        if isinstance(self.decision_budget, bool) or not isinstance(self.decision_budget, int) \
                or self.decision_budget < 512:
            bad("decision_budget", "an integer ≥ 512")
        if self.rollouts == "decisions" and self.n_ctx < 2 * max(self.decision_budget, 4096):
            # histories are sized in estimated tokens (4 characters each); invented names tokenise worse
            bad("n_ctx", f"rollouts = 'decisions' needs n_ctx ≥ {2 * max(self.decision_budget, 4096)} (twice the "
                "larger of decision_budget and the held-out items' 4096) so the longest items fit")
        if self.device not in ("auto", "cpu", "cuda"):
            bad("device", "use 'auto', 'cpu' or 'cuda'")
        if self.unsloth not in ("auto", "on", "off"):
            bad("unsloth", "use 'auto', 'on' or 'off'")
        if len(self.phase_fractions) != 2 or not 0 < self.phase_fractions[0] < self.phase_fractions[1] <= 1:
            bad("phase_fractions", "two increasing fractions in (0, 1], e.g. [0.34, 0.67]")
        unknown = sorted(set(self.lora_targets) - set(LORA_TARGETS))
        if unknown or not self.lora_targets:
            bad("lora_targets", f"choose from {', '.join(LORA_TARGETS)}")
        from agemem_lite.eval.harness import BENCHES

        for name in ("benches", "heldout_benches"):
            wrong = [b for b in getattr(self, name) if b not in BENCHES]
            if wrong:
                bad(name, f"unknown bench(es) {wrong}; training uses the QA benches {', '.join(BENCHES)}")
        if not self.benches:
            bad("benches", "name at least one task source")
        self.episode_config()   # validates the overrides

    def warm_start_rounds(self) -> list[dict]:
        """The warm-start rounds with their defaults filled in (ConfigError on a bad one)."""
        from agemem_lite.decisions import CLASSES, CYCLE, FACT_THINKS, LONG_THINKS

        from .warm_start import resolve_long_think

        if not isinstance(self.warm_start, list):
            raise ConfigError("warm_start: a list of tables ([[warm_start]] in TOML)")
        out = []
        for i, rnd in enumerate(self.warm_start):
            where = f"warm_start[{i}]"
            if not isinstance(rnd, dict):
                raise ConfigError(f"{where}: a table with items = N, ...")
            unknown = sorted(set(rnd) - set(WARM_START_DEFAULTS))
            if unknown:
                raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: "
                                  f"{', '.join(WARM_START_DEFAULTS)}")
            r = {**WARM_START_DEFAULTS, **rnd}
            r["seed"] = self.seed + i if r["seed"] is None else r["seed"]
            r["classes"] = list(r["classes"] or CLASSES)
            for k in ("items", "seed", "long_budget", "max_tokens", "replay", "stage2", "questions", "episodes",
                      "pack", "hotpot_questions", "two_facts", "overviews"):
                low = 1 if k in ("long_budget", "max_tokens", "pack") else 0
                if isinstance(r[k], bool) or not isinstance(r[k], int) or r[k] < low:
                    raise ConfigError(f"{where}.{k}={r[k]!r}: an integer ≥ {low}")
            if not any(r[k] for k in ROUND_TURNS):
                raise ConfigError(f"{where}: no turns to train on; give items = N (decision-set train items) "
                                  f"or one of {', '.join(ROUND_TURNS[1:])}")
            for k in ("epochs", "lr"):
                if isinstance(r[k], bool) or not isinstance(r[k], (int, float)) or r[k] <= 0:
                    raise ConfigError(f"{where}.{k}={r[k]!r}: a number > 0")
            for k in ("wide_long", "context_usage", "edit_replies", "worked_think"):
                if not isinstance(r[k], bool):
                    raise ConfigError(f"{where}.{k}={r[k]!r}: true or false")
            r["long_think"] = resolve_long_think(r["long_think"], r["wide_long"])
            if r["long_think"] not in LONG_THINKS:
                raise ConfigError(f"{where}.long_think={r['long_think']!r}: one of {', '.join(LONG_THINKS)}")
            if r["fact_think"] not in FACT_THINKS:
                raise ConfigError(f"{where}.fact_think={r['fact_think']!r}: one of {', '.join(FACT_THINKS)}")
            for k in ("long_share", "question_retrieve"):
                if isinstance(r[k], bool) or not isinstance(r[k], (int, float)) or not 0 <= r[k] <= 1:
                    raise ConfigError(f"{where}.{k}={r[k]!r}: a number in [0, 1]")
            bad = [c for c in r["classes"] if c not in CYCLE]
            if bad:
                raise ConfigError(f"{where}.classes: unknown {bad}; choose from {', '.join(CYCLE)}")
            out.append(r)
        return out

    def episode_config(self, **extra) -> EpisodeConfig:
        """The rollout episode config: our overrides, the agemem method, the reward mode."""
        known = {f.name for f in dataclasses.fields(EpisodeConfig)}
        unknown = sorted(set(self.episode) - known)
        if unknown:
            raise ConfigError(f"episode: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values = {**self.episode, **extra, "method": "agemem"}
        reward = dict(values.pop("reward", {}) or {})
        reward["answer_only"] = self.reward == "answer_only"
        try:
            return EpisodeConfig(**values, reward=reward)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"episode: {e}") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] | dict | None = None) -> "TrainConfig":
        """A recipe file (TOML) then ``key=value`` overrides (values parsed as TOML, else strings).
        A dotted key reaches into a table (``episode.n_max=2``) or into every table of an array
        (``warm_start.pack=4`` sets it in each warm-start round)."""
        values: dict = {}
        if path is not None:
            values = read_toml(_recipe_path(path))
        items = overrides.items() if isinstance(overrides, dict) else [_split(o) for o in overrides or []]
        for key, value in items:
            *parents, leaf = key.split(".")
            targets = [values]
            for p in parents:
                children = [t.setdefault(p, {}) for t in targets]
                # an array of tables ([[warm_start]]): the key is set in every one of them
                targets = [c for ch in children for c in (ch if isinstance(ch, list) else [ch])]
                if not targets or not all(isinstance(t, dict) for t in targets):
                    raise ConfigError(f"--set {key}: {p} is not a table")
            for t in targets:
                t[leaf] = value
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**values)


def _recipe_path(path: str | Path) -> Path:
    p = Path(path)
    if p.is_file():
        return p
    named = RECIPES_DIR / f"{path}.toml"
    if named.is_file():
        return named
    known = ", ".join(sorted(q.stem for q in RECIPES_DIR.glob("*.toml")))
    raise ConfigError(f"no recipe or config file {str(path)!r} (built-in recipes: {known})")


def _split(item: str) -> tuple[str, object]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: write key=value, e.g. --set lr=1e-5")
    key, raw = item.split("=", 1)
    try:
        value = toml_value(raw)
    except ValueError:
        value = raw
    return key.strip(), value


def _toml_value(v) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(v)   # bool, number, string: JSON spelling is valid TOML


def dump_toml(cfg: TrainConfig) -> str:
    """The resolved config as TOML (what the run folder keeps; None values are left out)."""
    lines, tables = [], []
    for k, v in cfg.to_dict().items():
        if isinstance(v, dict):
            tables.append((k, v))
        elif v is not None:
            lines.append(f"{k} = {_toml_value(v)}")
    for name, table in tables:
        lines.append(f"\n[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


__all__ = ["TrainConfig", "LORA_TARGETS", "RECIPES_DIR", "dump_toml"]
