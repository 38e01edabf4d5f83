"""One user turn: policy -> protocol -> tools -> store/stm (SPEC §1-§4).

``Agent.turn`` shows the user message with the memories the environment
retrieved for it (SPEC §4, stage 1 behaviour; ``auto_retrieve_k``;
``show_related=False`` shows the bare message), then runs steps until the policy
writes ``<answer>`` or the step limit is reached. The last allowed step is
decoded with an answer-only grammar, so a turn always ends with a reply. Every
step becomes a ``records.Step``.

``Agent(tools=...)`` offers a subset of the six tools (the method variants of
``baselines.METHODS``): only those are listed in the system prompt and
``dispatch`` refuses the others; with ``tools=()`` every step is answer-only.

Context layout: system prompt, demonstration turns (prompted policies only),
then the conversation. The first two never change, so llama.cpp reuses their KV
cache across turns. When a turn ends, the think blocks of its assistant
messages are dropped from the context (they served that turn; keeping them
would spend the budget on stale reasoning).
"""

from __future__ import annotations

import datetime as _dt
import re
import threading
import time
from typing import Callable, Sequence

from . import prompts
from .config import Settings
from .memory.relevance import question_of
from .memory.search import OVERVIEW_K, names_nothing
from .memory.stm import Context, choose_summary
from .memory.store import MemoryStore
from .memory.tools import TOOLS, ToolEnv, ToolResult, dispatch, grammar_schemas, judged
from .protocol import ToolCall, parse_step
from .records import Step, Turn

_THINK_BLOCK = re.compile(r"<think>.*?</think>\n?", re.S)


#: Chat-template tokens a message costs besides its content (ChatML: 5; margin for other templates).
TEMPLATE_TOKENS_PER_MESSAGE = 8


class TurnCancelled(Exception):
    """Raised inside generation when the caller's cancel event is set (caught by ``Agent.turn``)."""


class Agent:
    """The assistant: a policy managing its LTM (store) and STM (context) through tools."""

    def __init__(self, policy, store: MemoryStore, embedder, settings: Settings, *,
                 today: str | None = None, demonstrations: bool = True, context_usage: bool = False,
                 approve: Callable[[ToolCall], bool] | None = None,
                 tools: Sequence[str] | None = None, judge: Callable[[str, str], float] | None = None):
        """``tools``: the tools the policy may call (None = all six, ``()`` = answer only).
        ``context_usage``: each user turn starts with how full the context is
        (``prompts.render_context_usage``), for a policy trained to read it. ``judge``: a
        ``relevance.RelevanceJudge`` that checks, in a turn whose message is a question, the
        memories shown with it and Retrieve_memory's hits (``settings.relevance_judge_min``)."""
        if isinstance(tools, str):
            raise TypeError(f"tools={tools!r}: pass a sequence of tool names, e.g. ({tools!r},)")
        unknown = [] if tools is None else [t for t in tools if t not in TOOLS]
        if unknown:
            raise ValueError(f"tools: unknown tool(s) {', '.join(map(repr, unknown))}; "
                             f"choose from {', '.join(TOOLS)}")
        # TOOLS order, so the system prompt does not depend on how the subset was written
        self.tools = tuple(TOOLS) if tools is None else tuple(t for t in TOOLS if t in tools)
        self.policy = policy
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.today = today or _dt.date.today().isoformat()
        self.context_usage = context_usage
        self.context = Context(policy.count_tokens, settings.context_budget)
        self.context.append("system", prompts.render_system(
            today=self.today, budget=settings.context_budget, tool_schemas=grammar_schemas(self.tools)))
        if demonstrations:
            for m in prompts.render_demonstrations():
                self.context.append(m["role"], m["content"], kind="demo")
        self.env = ToolEnv(store=store, embed=embedder.embed_one, namespace=settings.namespace,
                           context=self.context, summarise=self._write_summary,
                           filter_threshold=settings.filter_threshold, default_top_k=settings.top_k,
                           min_similarity=settings.retrieve_min_similarity, approve=approve,
                           judge=judge, judge_min=settings.relevance_judge_min,
                           allowed=None if tools is None else frozenset(self.tools),
                           usage=self._usage_line if context_usage else None)
        self.turns: list[Turn] = []

    def _usage_line(self) -> str:
        return prompts.render_context_usage(self.context.tokens, self.settings.context_budget)

    def warm(self, cache_dir=None) -> dict:
        """Evaluate (or restore from ``cache_dir``) the fixed prefix: system prompt + demos."""
        fixed = [{"role": m.role, "content": m.content} for m in self.context.messages
                 if m.role == "system" or m.kind == "demo"]
        warm = getattr(self.policy, "warm_prefix", None)
        return warm(fixed, cache_dir) if warm else {"prefix_tokens": 0, "cache": "off"}

    def _write_summary(self, transcript: str) -> str:
        """The policy's summary of ``transcript`` (SPEC §2) where ``stm.choose_summary`` keeps it:
        the 0.5B policy's summaries refused, looped, only acknowledged ("Read it, go on.") or kept
        fewer names and numbers than the extractive one (docs/training.md)."""
        return choose_summary(self.policy.summarise(prompts.render_summary_request(transcript)).strip(),
                              transcript)

    def related_memories(self, text: str) -> list[dict]:
        """SPEC §4: the environment's own retrieval shown with a turn (not a tool call)."""
        k = self.settings.auto_retrieve_k
        if k <= 0 or self.store.count(self.settings.namespace) == 0:
            return []
        question = question_of(text)
        if question and names_nothing(text):
            # "What do you know about me?": no word to rank by, so the newest memories are shown
            return [{"id": m.id, "content": m.content, "score": None, "similarity": None}
                    for m in self.store.list(self.settings.namespace, limit=OVERVIEW_K)]
        hits = self.store.search(self.settings.namespace, text, self.embedder.embed_one(text), top_k=k)
        floor = self.settings.auto_retrieve_min_similarity
        hits, _ = judged([h for h in hits if h.similarity is None or h.similarity >= floor], question or text,
                         self.env.judge if question else None, self.env.judge_min, k)
        return [{"id": h.memory.id, "content": h.memory.content, "score": h.score,
                 "similarity": h.similarity} for h in hits]

    def turn(self, user_text: str, *, on_text: Callable[[str], None] | None = None,
             on_step: Callable[[Step], None] | None = None,
             on_related: Callable[[list[dict]], None] | None = None,
             cancel: threading.Event | None = None, show_related: bool = True) -> Turn:
        """Run one user turn to its answer. Never raises for anything the model writes.

        ``show_related=False``: no environment retrieval for this turn; the user
        message goes in bare, without the related-memories header, and
        ``on_related`` is not called.

        When ``cancel`` is set (checked at every streamed piece and between
        steps) the turn stops, its messages leave the context as if it had not
        been asked, and the Turn comes back with ``cancelled=True``. Memory
        changes made by steps that had already finished stay (they are in the
        store's history and can be undone there).
        """
        if not isinstance(user_text, str) or not user_text.strip():
            raise ValueError("the user message is empty")
        use_tools = getattr(self.policy, "use_tools", None)
        if use_tools:   # the policy may be shared by agents with other tool subsets
            use_tools(grammar_schemas(self.tools))
        mark = len(self.context.messages)
        seen_before = set(self.env.seen_ids)
        self.env.judge_question = question_of(user_text)
        self.env.turn_text = user_text.strip()
        related = self.related_memories(user_text) if show_related else []
        for r in related:
            self.env.seen_ids.add(r["id"])
        if on_related and show_related:
            on_related(related)
        shown = prompts.render_related([(r["id"], r["content"]) for r in related]) if show_related else None
        usage = self._usage_line() if self.context_usage else None
        self.context.append("user", prompts.render_user_turn(user_text.strip(), shown, usage), kind="turn")
        turn = Turn(user=user_text, related=related)
        if cancel is not None:
            inner = on_text

            def on_text(piece: str) -> None:
                if cancel.is_set():
                    raise TurnCancelled
                if inner:
                    inner(piece)
        limit = self.settings.max_steps_per_turn
        try:
            for i in range(limit):
                if cancel is not None and cancel.is_set():
                    raise TurnCancelled
                step = self._step(i, allow_tools=bool(self.tools) and i < limit - 1, on_text=on_text)
                turn.steps.append(step)
                if on_step:
                    on_step(step)
                if step.answer is not None:
                    turn.answer = step.answer
                    break
        except TurnCancelled:
            del self.context.messages[mark:]
            # ids shown only by this turn are no longer in the context, except
            # memories its finished steps created (they exist and were shown).
            created = {r["data"]["memory"]["id"] for r in turn.operations if r["name"] == "Add_memory"}
            self.env.seen_ids = seen_before | (created & self.env.seen_ids)
            turn.cancelled = True
            turn.answer = None
        self._drop_thinks()
        self.turns.append(turn)
        return turn

    # -- the conversation part of the context (sessions, regenerate, model switch) -----
    def conversation(self) -> list[dict]:
        """Every context message after the fixed prefix (system prompt, demonstrations)."""
        return [m.to_dict() for m in self.context.messages if not (m.role == "system" or m.kind == "demo")]

    def load_conversation(self, messages: list[dict], seen_ids=()) -> None:
        """Replace the conversation by saved messages (token counts redone with this policy)."""
        fixed = [m for m in self.context.messages if m.role == "system" or m.kind == "demo"]
        self.context.messages = fixed
        for m in messages:
            self.context.append(m["role"], m["content"], m.get("kind", ""))
        self.env.seen_ids = set(seen_ids)

    def rewind_last_turn(self) -> str | None:
        """Remove the newest user turn and everything after it; returns its message text.

        Used by regenerate. If a Summary_context of that turn rewrote earlier
        messages, the summary stays (the originals are gone).
        """
        for i in range(len(self.context.messages) - 1, -1, -1):
            m = self.context.messages[i]
            if m.role == "user" and m.kind == "turn":
                del self.context.messages[i:]
                if self.turns:
                    self.turns.pop()
                return prompts.user_text_of(m.content)
        return None

    def _prompt_estimate(self) -> int:
        """Upper bound of the rendered prompt: content tokens + chat-template tokens per message
        (ChatML spends 5 per message; a long episode has hundreds of messages, so a fixed
        allowance is not enough — measured: 8,025 prompt tokens for 7,5xx content tokens)."""
        return self.context.tokens + TEMPLATE_TOKENS_PER_MESSAGE * len(self.context.messages) + 64

    def _fit_window(self) -> int:
        """When the prompt no longer fits the model's window, evict the oldest unprotected
        messages until it is back within the budget (``context_budget``, at most 3/4 of the window).

        An eviction changes the start of the conversation, so llama.cpp evaluates the whole prompt
        again. Evicting only down to the window did that on every turn once a chat was long;
        evicting down to the budget leaves room for the next turns to reuse the KV cache
        (``bench/long_chat.py``)."""
        limit = self.settings.n_ctx - self.settings.max_new_tokens
        if self._prompt_estimate() <= limit:
            return 0
        target = min(self.settings.context_budget, 3 * limit // 4)
        evicted = 0
        while self._prompt_estimate() > target and self.context.evict_oldest() is not None:
            evicted += 1
        return evicted

    def _step(self, index: int, *, allow_tools: bool, on_text) -> Step:
        self._fit_window()
        prompt = self.context.as_dicts()
        context_tokens = self.context.tokens
        comp = self.policy.step(prompt, allow_tools=allow_tools, on_text=on_text)
        parsed = parse_step(comp.text)
        t0 = time.perf_counter()
        if parsed.error:
            results = [ToolResult("protocol", False, parsed.error)]
        else:
            # Tools run before the step is appended, so Filter_context cannot remove
            # the very call that asked for it.
            results = [dispatch(self.env, c) for c in parsed.calls]
        tools_s = time.perf_counter() - t0
        self.context.append("assistant", comp.text)
        for r in results:
            self.context.append("tool", prompts.render_tool_result(r.name, r.ok, r.text))
        return Step.from_completion(index, prompt, comp, parsed, results=[r.to_dict() for r in results],
                                    context_tokens=context_tokens, tools_s=tools_s)

    def _drop_thinks(self) -> None:
        for m in self.context.messages:
            if m.role == "assistant" and m.kind != "demo" and "<think>" in m.content:
                m.content = _THINK_BLOCK.sub("", m.content, count=1)
                m.tokens = self.context.count_tokens(m.content)
