"""Open everything a chat needs from ``Settings``: model files, embedder, store, policy, agent.

The CLI and the TUI both call ``open_assistant``; it owns the resources and
closes them in ``Assistant.close`` (also a context manager).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .agent import Agent
from .config import Settings
from .embed import load_embedder
from .memory.relevance import RelevanceJudge, judge_model, load_judge
from .memory.store import MemoryStore
from .memory.tools import grammar_schemas
from .model_files import adapter_path, check_adapter, get_spec, resolve
from .policy.llama import LlamaPolicy
from .prompts import THINK_KINDS

Progress = Callable[[int, int | None], None]


def open_policy(settings: Settings, name: str | None = None, *, progress: Progress | None = None,
                guided: bool | None = None) -> LlamaPolicy:
    """Resolve (assemble/verify on first use) and load a registry policy."""
    name = name or settings.policy
    spec = get_spec(settings, name)
    if spec.role != "policy":
        from .errors import ConfigError

        raise ConfigError(f"model {name!r} is an {spec.role}, not a policy")
    path = resolve(settings, name, progress=progress)
    if settings.adapter and name == settings.policy:
        adapter = check_adapter(settings.adapter)
        name = f"{name}+{adapter.stem}"
    else:
        adapter = adapter_path(spec)
    return LlamaPolicy(path, name=name, lora_path=str(adapter) if adapter else None,
                       **policy_options(settings, guided))


def wants_demonstrations(settings: Settings, name: str | None = None) -> bool:
    """Whether the context carries the prompted-policy demonstrations: ``settings.guided``,
    unless the policy was trained without them (``ModelSpec.demonstrations``)."""
    return settings.guided and get_spec(settings, name or settings.policy).demonstrations


def wants_context_usage(settings: Settings, name: str | None = None) -> bool:
    """Whether user turns carry the context-usage line: ``settings.context_usage``, where
    'auto' follows how the policy was trained (``ModelSpec.context_usage``)."""
    if settings.context_usage != "auto":
        return settings.context_usage == "on"
    return get_spec(settings, name or settings.policy).context_usage


def policy_options(settings: Settings, guided: bool | None = None) -> dict:
    """LlamaPolicy keyword arguments for these settings: how chat decodes (training's
    rollouts use the same, so the trained policy is served exactly as it was trained)."""
    guided = settings.guided if guided is None else guided
    return dict(n_ctx=settings.n_ctx, n_threads=settings.n_threads, seed=settings.seed,
                temperature=settings.temperature, max_new_tokens=settings.max_new_tokens,
                think_tokens=settings.think_tokens, think_kinds=THINK_KINDS if guided else None,
                tool_schemas=grammar_schemas())


@dataclass
class Assistant:
    """An open agent with the resources it owns."""

    agent: Agent
    policy: LlamaPolicy
    embedder: object
    store: MemoryStore
    judge: RelevanceJudge | None = None

    def close(self) -> None:
        self.store.close()
        self.policy.close()
        self.embedder.close()
        if self.judge is not None:
            self.judge.close()

    def __enter__(self) -> "Assistant":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_store(settings: Settings) -> MemoryStore:
    """The memory database under the data directory (created 0600 on first use)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return MemoryStore(settings.db_path, keep_deleted=settings.keep_deleted)


def open_assistant(settings: Settings, *, progress: Progress | None = None, approve=None) -> Assistant:
    """Load policy + embedder + store (+ the relevance judge when set) and build the agent."""
    judge_model(settings)   # a bad name fails before anything loads
    embedder = load_embedder(settings, progress=progress)
    policy = judge = None
    try:
        policy = open_policy(settings, progress=progress)
        judge = load_judge(settings, progress=progress)
    except BaseException:
        embedder.close()
        if policy is not None:
            policy.close()
        raise
    store = open_store(settings)
    agent = Agent(policy, store, embedder, settings, demonstrations=wants_demonstrations(settings),
                  context_usage=wants_context_usage(settings), approve=approve, judge=judge)
    agent.warm(settings.data_dir / "cache")
    return Assistant(agent, policy, embedder, store, judge)
