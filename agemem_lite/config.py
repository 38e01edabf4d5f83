"""Runtime configuration as dataclasses (STYLE §2).

Every field has a default and ``metadata={"help": ..., "spec": ...}``; rules that
span fields live in ``__post_init__``. Values come from a TOML file, then CLI
flags (``Settings.load``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from models.registry import DEFAULT_POLICY

from .errors import ConfigError
from .toml_file import read_toml

#: Environment variable that overrides the data directory.
DATA_DIR_ENV = "AGEMEM_HOME"


def default_data_dir() -> Path:
    """The data directory: ``$AGEMEM_HOME`` if set, else the platform's user data dir."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("agemem-lite", appauthor=False))


def _f(default, help: str, spec: str = "", **kw):
    """A dataclass field with help text and the SPEC section it implements."""
    if callable(default) and not isinstance(default, (int, float, str, bool)):
        return field(default_factory=default, metadata={"help": help, "spec": spec}, **kw)
    return field(default=default, metadata={"help": help, "spec": spec}, **kw)


@dataclass
class Settings:
    """Everything the assistant needs to run: where files live, which models, budgets."""

    data_dir: Path = _f(default_data_dir, "Folder for models, the memory database and sessions. "
                        f"Overridden by ${DATA_DIR_ENV} or --data-dir.")
    policy: str = _f(DEFAULT_POLICY, "Registry name of the policy model (agemem models list).")
    adapter: str = _f("", "A GGUF LoRA adapter file applied to the policy in place of its registry adapter "
                      "(a training run's RUN/best/adapter.gguf), to try a policy before shipping it; "
                      "empty = the registry's.")
    embedder: str = _f("minilm-l6-v2", "Registry name of the embedding model.")
    namespace: str = _f("default", "Memory namespace (one per user/profile) inside the database.")
    n_ctx: int = _f(8192, "llama.cpp context window of the policy, in tokens.", "§5 T_max")
    context_budget: int = _f(4096, "T_max: token budget of the context (STM). The paper uses "
                             "8,192; a laptop CPU default of 4,096 keeps turns fast.", "§5")
    max_steps_per_turn: int = _f(6, "Step limit for one user turn (N_max for assistant mode).", "§4")
    max_new_tokens: int = _f(384, "Generation cap per step (paper: max response 2,048).", "§6")
    think_tokens: int = _f(160, "Cap on <think> tokens before the think block is closed for the model.", "§3")
    temperature: float = _f(0.0, "Sampling temperature; 0 is greedy (deterministic).")
    seed: int = _f(0, "Sampling seed.")
    top_k: int = _f(3, "Default top_k of Retrieve_memory.", "§2")
    auto_retrieve_k: int = _f(3, "Memories retrieved by the environment before each user turn and shown "
                              "with it (SPEC §4 stage 1 behaviour); 0 turns it off.", "§4")
    auto_retrieve_min_similarity: float = _f(0.2, "Automatic retrieval shows a memory only if its cosine "
                                             "similarity to the user turn is at least this (keyword-only hits pass).", "§4")
    retrieve_min_similarity: float = _f(0.2, "Retrieve_memory returns a memory only if its cosine similarity "
                                        "to the query is at least this, so top_k is not filled with unrelated "
                                        "memories; -1 turns the floor off.", "§2")
    relevance_judge: str = _f("", "A second chat model (registry name, e.g. 'qwen2.5-coder-1.5b') that checks each "
                              "hit past the cosine floor in a turn whose message is a question (the memories "
                              "shown with it, Retrieve_memory's hits) with a few-shot 'does this memory answer "
                              "the question?'; '' turns it off (docs/training.md, 'What a search lets through').",
                              "§2")
    relevance_judge_min: float = _f(-1.0, "The judge keeps a hit whose Yes − No logit is at least this.", "§2")
    guided: bool = _f(True, "Aids for prompted (untrained) policies: demonstration turns after the system "
                      "prompt and a grammar-forced 'Kind: …' label at the start of each think.", "§3")
    context_usage: str = _f("auto", "Start each user turn with how full the context is ('[Context: 70 % full]'): "
                            "'auto' (as the policy was trained, its registry row), 'on' or 'off' (to try an "
                            "adapter trained with the line).", "§2")
    filter_threshold: float = _f(0.6, "θ: Filter_context drops messages with cosine ≥ θ to the criteria.", "§2")
    n_threads: int = _f(0, "CPU threads for llama.cpp; 0 means all cores.")
    keep_deleted: bool = _f(False, "Keep deleted memories' text in the history so a delete can be undone. "
                            "Off by default: a Delete_memory really forgets (the text leaves the file).")
    approval: str = _f("auto", "Memory writes in the chat app: 'auto' (written as the model decides) or "
                       "'ask' (approve, edit or reject each Add/Update/Delete; F5 toggles it).")

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser()
        if self.context_budget > self.n_ctx:
            raise ConfigError(
                f"context_budget={self.context_budget} > n_ctx={self.n_ctx}: the budget T_max must fit "
                "in the model's context window; lower context_budget or raise n_ctx")
        if not 0.0 <= self.filter_threshold <= 1.0:
            raise ConfigError(f"filter_threshold={self.filter_threshold}: θ is a cosine in [0, 1] (SPEC §2 uses 0.6)")
        if self.max_new_tokens < 48:
            raise ConfigError(f"max_new_tokens={self.max_new_tokens}: a step needs ≥ 48 tokens (the protocol's "
                              "tags alone take ~25); raise max_new_tokens")
        if self.max_steps_per_turn < 1:
            raise ConfigError(f"max_steps_per_turn={self.max_steps_per_turn}: need at least 1 step per turn")
        if self.top_k < 1:
            raise ConfigError(f"top_k={self.top_k}: Retrieve_memory needs top_k ≥ 1")
        if not -1.0 <= self.retrieve_min_similarity <= 1.0:
            raise ConfigError(f"retrieve_min_similarity={self.retrieve_min_similarity}: a cosine floor in "
                              "[-1, 1] (-1 turns it off)")
        if self.context_usage not in ("auto", "on", "off"):
            raise ConfigError(f"context_usage={self.context_usage!r}: use 'auto', 'on' or 'off'")
        if self.approval not in ("auto", "ask"):
            raise ConfigError(f"approval={self.approval!r}: use 'auto' or 'ask'")
        if self.temperature < 0:
            raise ConfigError(f"temperature={self.temperature}: must be ≥ 0")

    # -- paths ---------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        """Where assembled / registered model files live."""
        return self.data_dir / "models"

    @property
    def db_path(self) -> Path:
        """The memory database (LTM, history, sessions)."""
        return self.data_dir / "memory.db"

    @property
    def config_path(self) -> Path:
        """Optional TOML file whose keys are Settings fields."""
        return self.data_dir / "config.toml"

    @classmethod
    def load(cls, data_dir: str | Path | None = None, **overrides) -> "Settings":
        """Defaults, then ``<data_dir>/config.toml``, then non-None ``overrides`` (CLI flags)."""
        base = Path(data_dir).expanduser() if data_dir else default_data_dir()
        values: dict = {"data_dir": base}
        cfg = base / "config.toml"
        if cfg.exists():
            values.update(read_toml(cfg))
        values.update({k: v for k, v in overrides.items() if v is not None})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**values)
