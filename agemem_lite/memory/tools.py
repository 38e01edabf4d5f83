"""The six memory tools of SPEC §2: one function each, one ``TOOLS`` table, one dispatcher.

A tool validates its arguments and raises ``ToolCallError`` with a message that
tells the model what to do instead; ``dispatch`` turns that into an error
result that goes back into the context, so a bad call never ends an episode and
never changes the store (validation happens before any write).

Decisions where the paper is silent (SPEC §2):
- ``Update_memory``/``Delete_memory`` need a ``memory_id`` the model has seen in
  this context (shown by the environment's automatic retrieval, returned by
  ``Retrieve_memory`` or ``Add_memory``): the paper says the id "must come from an
  earlier retrieval"; this also stops invented ids such as "sister_birthday".
- ``confirmation`` accepts the paper's case-study alias ``"confirmed"``; ``span``
  accepts ``"full"`` as an alias of ``"all"``.
- A ``Retrieve_memory`` query that names nothing ("all", "the user", "mem_13";
  ``search.names_nothing``) searches the user's message of the turn instead, and the
  result reads as any search's: measured on the shipped policy, a note saying so made
  it reply "You have not told me that yet." over the hit it was given. When that message
  names nothing too ("What do you know about me?"), the result is the newest memories
  (``search.OVERVIEW_K``, or ``top_k`` when given): no similarity can rank for it. So are
  the results of any search that finds nothing in a turn whose question names nothing (v7
  searched "your knowledge about me" for "What do you know about me?"). With a
  ``metadata_filter`` it is a search as before, so the filter applies.

``ToolEnv.allowed`` narrows the six to a subset (the method variants of
``baselines.METHODS``): ``dispatch`` refuses any other tool with an error result,
before the tool runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .. import prompts
from ..errors import MemoryNotFound, ToolCallError
from ..protocol import ToolCall
from .search import OVERVIEW_K, names_nothing
from .stm import Context
from .store import MemoryStore, parse_memory_id

MEMORY_TYPES = ("fact", "preference", "event", "task", "note")


@dataclass
class ToolEnv:
    """What the tools act on: the LTM store (with its embedder) and the STM context."""

    store: MemoryStore
    embed: Callable[[str], np.ndarray]
    namespace: str
    context: Context
    summarise: Callable[[str], str]
    filter_threshold: float = 0.6
    default_top_k: int = 3
    #: Retrieve_memory drops hits whose cosine to the query is below this (-1: keep all).
    #: Without it, top_k fills with whatever is stored, and a small policy copies the
    #: unrelated line it was handed (docs/training.md, "Relevance floor").
    min_similarity: float = -1.0
    #: optional second opinion on each hit past the floor (``relevance.RelevanceJudge``):
    #: (query, memory text) → score; a hit scoring below ``judge_min`` is not listed
    judge: Callable[[str, str], float] | None = None
    judge_min: float = -1.0
    #: the user's question this turn, which the judge checks hits against; None (a statement,
    #: or no turn yet) leaves hits unjudged (``Agent.turn`` sets it, see ``relevance.question_of``)
    judge_question: str | None = None
    #: the user's message this turn (``Agent.turn`` sets it): what Retrieve_memory searches
    #: when its query names nothing (``search.names_nothing``)
    turn_text: str | None = None
    actor: str = "agent"
    #: memory ids the model has seen in this context (SPEC §2: ids come from a retrieval)
    seen_ids: set[str] = field(default_factory=set)
    #: optional gate for LTM writes (the TUI's approval mode): returns False to reject
    approve: Callable[[ToolCall], bool] | None = None
    #: the tools the model may call here (None = all six); others get an error result
    allowed: frozenset[str] | None = None
    #: the context-usage line now (``prompts.render_context_usage``), for a policy that reads one:
    #: Summary/Filter results end with it, so the step after an edit sees the context's new fill
    #: (the user turn's line was written before the edit; without the new one round U called
    #: Filter again and again, docs/training.md)
    usage: Callable[[], str] | None = None


@dataclass
class ToolResult:
    """One tool's outcome: ``text`` goes into the context, ``data`` to UIs and traces."""

    name: str
    ok: bool
    text: str
    data: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "ok": self.ok, "text": self.text, "data": self.data}


# --- argument helpers ----------------------------------------------------------

def _str_arg(args: dict, key: str, tool: str, *, required: bool = True, default: str | None = None) -> str | None:
    v = args.get(key, default)
    if v is None:
        if required:
            raise ToolCallError(f'missing required argument "{key}"')
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = str(v)
    if not isinstance(v, str):
        raise ToolCallError(f'"{key}" must be a string')
    v = v.strip()
    if required and not v:
        raise ToolCallError(f'"{key}" must not be empty')
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:  # e.g. a lone surrogate written as \ud800
        raise ToolCallError(f'"{key}" contains characters that are not valid text') from None
    return v


def _obj_arg(args: dict, key: str) -> dict | None:
    v = args.get(key)
    if v is None or v == "":
        return None
    if not isinstance(v, dict):
        raise ToolCallError(f'"{key}" must be a JSON object')
    _check_json_values(v, key)
    return v


def _check_json_values(v, key: str) -> None:
    """Metadata must be storable: finite numbers, 64-bit integers, valid text."""
    if isinstance(v, dict):
        for k, x in v.items():
            _check_json_values(k, key)
            _check_json_values(x, key)
    elif isinstance(v, list):
        for x in v:
            _check_json_values(x, key)
    elif isinstance(v, bool) or v is None:
        return
    elif isinstance(v, int):
        if not -(2**63) <= v < 2**63:
            raise ToolCallError(f'"{key}" has an integer out of range')
    elif isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise ToolCallError(f'"{key}" has a number that is not finite')
    elif isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise ToolCallError(f'"{key}" contains characters that are not valid text') from None


def _known_id(env: ToolEnv, args: dict, tool: str) -> str:
    raw = _str_arg(args, "memory_id", tool)
    try:
        mid = f"mem_{parse_memory_id(raw)}"
    except ValueError:
        raise ToolCallError(
            f"'{raw}' is not a memory id (ids look like mem_3 and come from [Related memories] or "
            f"Retrieve_memory); to store a new fact call Add_memory") from None
    try:
        env.store.get(env.namespace, mid)
    except MemoryNotFound:
        raise ToolCallError(f"no memory {mid}; to store a new fact call Add_memory, "
                            "or call Retrieve_memory to find the right id") from None
    if mid not in env.seen_ids:
        raise ToolCallError(f"{mid} has not been shown in this conversation; call Retrieve_memory first "
                            "and use an id from its results")
    return mid


def _approved(env: ToolEnv, call: ToolCall) -> tuple[dict, bool]:
    """Ask the approval hook (if any) about a valid call: (arguments to use, edited?).

    The hook returns True (approve), False (reject) or a dict of replacement
    arguments (the user edited the memory before approving it).
    """
    if env.approve is None:
        return call.arguments, False
    verdict = env.approve(call)
    if isinstance(verdict, dict):
        return verdict, verdict != call.arguments
    if verdict is True:
        return call.arguments, False
    raise ToolCallError("the user rejected this memory change; do not retry it, answer the user")


def _edited_note(edited: bool, content: str) -> str:
    return f" (the user edited it to: {content})" if edited else ""


def _memory_type(args: dict) -> str:
    t = (_str_arg(args, "memory_type", "", required=False) or "fact").lower()
    return t if t in MEMORY_TYPES else "note"


# --- the six tools (SPEC §2) ------------------------------------------------------

def add_memory(env: ToolEnv, args: dict) -> ToolResult:
    """Add_memory(content, metadata?, memory_type?): insert a new LTM entry."""
    _str_arg(args, "content", "Add_memory")
    _obj_arg(args, "metadata")
    args, edited = _approved(env, ToolCall("Add_memory", args))
    content = _str_arg(args, "content", "Add_memory")
    metadata = _obj_arg(args, "metadata")
    mtype = _memory_type(args)
    m = env.store.add(env.namespace, content, env.embed(content), memory_type=mtype,
                      metadata=metadata, source=env.actor, actor=env.actor)
    env.seen_ids.add(m.id)
    return ToolResult("Add_memory", True, f"stored as {m.id}{_edited_note(edited, content)}",
                      {"memory": m.to_dict(), "edited": edited})


def update_memory(env: ToolEnv, args: dict) -> ToolResult:
    """Update_memory(memory_id, content, metadata?): replace content and embedding."""
    mid = _known_id(env, args, "Update_memory")
    _str_arg(args, "content", "Update_memory")
    _obj_arg(args, "metadata")
    before = env.store.get(env.namespace, mid)
    args, edited = _approved(env, ToolCall("Update_memory", args))
    content = _str_arg(args, "content", "Update_memory")
    metadata = _obj_arg(args, "metadata")
    m = env.store.update(env.namespace, mid, content, env.embed(content), metadata=metadata, actor=env.actor)
    return ToolResult("Update_memory", True, f"{mid} updated{_edited_note(edited, content)}",
                      {"memory": m.to_dict(), "before": before.to_dict(), "edited": edited})


def delete_memory(env: ToolEnv, args: dict) -> ToolResult:
    """Delete_memory(memory_id, confirmation): remove the entry (the text is forgotten)."""
    mid = _known_id(env, args, "Delete_memory")
    conf = args.get("confirmation", args.get("confirmed"))
    if isinstance(conf, str):
        conf = conf.strip().lower() in ("true", "yes", "confirmed", "1")
    if conf is not True:
        raise ToolCallError('set "confirmation": true to delete a memory')
    _approved(env, ToolCall("Delete_memory", args))
    m = env.store.delete(env.namespace, mid, actor=env.actor)
    env.seen_ids.discard(mid)
    return ToolResult("Delete_memory", True, f"{mid} deleted", {"memory": m.to_dict()})


def retrieve_memory(env: ToolEnv, args: dict) -> ToolResult:
    """Retrieve_memory(query, top_k=3, metadata_filter?): hybrid search; results enter the context."""
    query = _str_arg(args, "query", "Retrieve_memory")
    top_k = args.get("top_k", env.default_top_k)
    if isinstance(top_k, str) and top_k.strip().isdecimal() and top_k.strip().isascii():
        top_k = int(top_k)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= 20:
        raise ToolCallError('"top_k" must be an integer from 1 to 20')
    flt = _obj_arg(args, "metadata_filter")
    n_newest = top_k if "top_k" in args else OVERVIEW_K   # when the newest memories stand in for hits
    searched = query
    if names_nothing(query):
        if not env.turn_text:
            raise ToolCallError(f'the query "{query}" names nothing to search for; write what to look '
                                'for, e.g. "the user\'s dentist"')
        searched = env.turn_text
        if names_nothing(searched) and flt is None:   # "what do you know about me?": the newest memories
            return _newest(env, query, None, n_newest)
    vec = env.embed(searched)
    # Search deeper than top_k so a hit under the floor does not cost a relevant one
    # its place (a keyword match on a common word can outrank it in the fusion).
    depth = top_k if env.min_similarity <= -1.0 else 2 * top_k
    try:
        found = env.store.search(env.namespace, searched, vec, top_k=depth, metadata_filter=flt)
    except ValueError as e:
        if flt is None:
            raise
        raise ToolCallError(f"bad metadata_filter: {e}") from None
    passing = [h for h in found if h.similarity is None or h.similarity >= env.min_similarity]
    judge = env.judge if env.judge_question else None
    hits, judged_out = judged(passing, env.judge_question or searched, judge, env.judge_min, top_k)
    if not hits and flt is None and env.judge_question and env.turn_text and names_nothing(env.turn_text):
        # the question asks for everything ("What do you know about me?") and the policy's own
        # phrase for it ("your knowledge about me") found nothing: the newest memories
        return _newest(env, query, searched, n_newest)
    for h in hits:
        env.seen_ids.add(h.memory.id)
    text = prompts.render_search_hits((h.memory.id, h.memory.content) for h in hits)
    return ToolResult("Retrieve_memory", True, text,
                      {"query": query, "searched": searched, "hits": [{"memory": h.memory.to_dict(), "score": h.score,
                                                 "similarity": h.similarity} for h in hits],
                       "below_floor": sum(1 for h in found
                                          if h.similarity is not None and h.similarity < env.min_similarity),
                       "judged_out": judged_out})


def _newest(env: ToolEnv, query: str, searched: str | None, n: int) -> ToolResult:
    """Retrieve_memory's result as the ``n`` newest memories, for a search with no words to rank by
    (``searched`` None) or one that found nothing for a question that names nothing (``searched``:
    what was searched), so that the REPL and the activity pane can say which."""
    newest = env.store.list(env.namespace, limit=n)
    for m in newest:
        env.seen_ids.add(m.id)
    return ToolResult("Retrieve_memory", True, prompts.render_search_hits((m.id, m.content) for m in newest),
                      {"query": query, "searched": searched, "newest": True,
                       "hits": [{"memory": m.to_dict(), "score": None, "similarity": None} for m in newest],
                       "below_floor": 0, "judged_out": 0})


def judged(hits: list, query: str, judge: Callable[[str, str], float] | None, judge_min: float,
           k: int) -> tuple[list, int]:
    """The first ``k`` hits the judge keeps (all of the first ``k`` without one), and how many
    it dropped on the way: each hit costs the judge a forward pass, so it stops at ``k``."""
    if judge is None:
        return hits[:k], 0
    kept, dropped = [], 0
    for h in hits:
        if len(kept) == k:
            break
        if judge(query, h.memory.content) >= judge_min:
            kept.append(h)
        else:
            dropped += 1
    return kept, dropped


def summary_context(env: ToolEnv, args: dict) -> ToolResult:
    """Summary_context(span): replace "all" past messages or the last N rounds by a summary."""
    span = args.get("span", "all")
    if isinstance(span, int) and not isinstance(span, bool):
        span = str(span)
    if not isinstance(span, str):
        raise ToolCallError('"span" must be "all" or a number of rounds such as "2"')
    span = span.strip().lower()
    if span in ("all", "full"):
        rounds = None
    elif span.isdecimal() and span.isascii() and int(span) > 0:
        rounds = int(span)
    else:
        raise ToolCallError(f'span "{span}" is not "all" or a positive number of rounds')
    saved = env.context.summarise(rounds, env.summarise)
    if saved is None:
        raise ToolCallError("nothing to summarise yet (the system message and the current "
                            "user message are never summarised)")
    return ToolResult("Summary_context", True, f"replaced {saved['messages']} messages by a summary "
                      f"({saved['tokens_before']} -> {saved['tokens_after']} tokens){_usage(env)}", saved)


def filter_context(env: ToolEnv, args: dict) -> ToolResult:
    """Filter_context(criteria): drop messages with cosine ≥ θ to the criteria (SPEC §2, θ = 0.6)."""
    criteria = _str_arg(args, "criteria", "Filter_context")
    removed = env.context.filter(env.embed(criteria), env.embed, env.filter_threshold)
    return ToolResult("Filter_context", True,
                      f"removed {removed['messages']} messages ({removed['tokens']} tokens){_usage(env)}", removed)


def _usage(env: ToolEnv) -> str:
    """A space and the context-usage line after an edit; nothing for a policy that reads none."""
    return f" {env.usage()}" if env.usage is not None else ""


#: The one table of tools: name -> (function, JSON schema of the arguments).
def _p(name: str, typ: str, **kw) -> dict:
    return {"type": typ, "description": prompts.ARG_DESCRIPTIONS[name], **kw}


TOOLS: dict[str, tuple[Callable[[ToolEnv, dict], ToolResult], dict]] = {
    "Add_memory": (add_memory, {"type": "object", "properties": {
        "content": _p("content", "string"), "memory_type": _p("memory_type", "string", enum=list(MEMORY_TYPES)),
        "metadata": _p("metadata", "object")}, "required": ["content"]}),
    "Update_memory": (update_memory, {"type": "object", "properties": {
        "memory_id": _p("memory_id", "string"), "content": _p("content", "string"),
        "metadata": _p("metadata", "object")}, "required": ["memory_id", "content"]}),
    "Delete_memory": (delete_memory, {"type": "object", "properties": {
        "memory_id": _p("memory_id", "string"), "confirmation": _p("confirmation", "boolean")},
        "required": ["memory_id", "confirmation"]}),
    "Retrieve_memory": (retrieve_memory, {"type": "object", "properties": {
        "query": _p("query", "string"), "top_k": _p("top_k", "integer"),
        "metadata_filter": _p("metadata_filter", "object")}, "required": ["query"]}),
    "Summary_context": (summary_context, {"type": "object", "properties": {
        "span": _p("span", "string")}, "required": ["span"]}),
    "Filter_context": (filter_context, {"type": "object", "properties": {
        "criteria": _p("criteria", "string")}, "required": ["criteria"]}),
}

LTM_WRITES = frozenset({"Add_memory", "Update_memory", "Delete_memory"})


def tool_schemas(names: Sequence[str] | None = None) -> list[dict]:
    """OpenAI-style ``{"name", "description", "parameters"}`` dicts for the prompt and grammar.

    ``names=None`` gives all six; an empty sequence gives none."""
    return [{"name": n, "description": prompts.TOOL_DESCRIPTIONS[n], "parameters": TOOLS[n][1]}
            for n in (TOOLS if names is None else names)]


def grammar_schemas(names: Sequence[str] | None = None) -> list[dict]:
    """Schemas for the decoding grammar: free-form ``metadata`` objects left out, because a
    0.5B model fills them with noise; the tools still accept them from other callers."""
    out = []
    for s in tool_schemas(names):
        params = {k: v for k, v in s["parameters"]["properties"].items()
                  if k not in ("metadata", "metadata_filter")}
        out.append({**s, "parameters": {"type": "object", "properties": params,
                                        "required": s["parameters"]["required"]}})
    return out


def dispatch(env: ToolEnv, call: ToolCall) -> ToolResult:
    """Run one call. Any invalid call becomes an error result; the store is left unchanged."""
    name = call.name
    available = [n for n in TOOLS if env.allowed is None or n in env.allowed]
    listed = ", ".join(available) or "none, write an <answer>"
    if name not in TOOLS:
        close = [n for n in available if n.lower() == name.lower().replace(" ", "_")]
        hint = f"did you mean {close[0]}? " if close else ""
        return ToolResult(name, False, f"unknown tool '{name}'; {hint}tools: {listed}")
    if name not in available:
        return ToolResult(name, False, f"{name} is not available here; tools: {listed}")
    fn, _ = TOOLS[name]
    if not isinstance(call.arguments, dict):
        return ToolResult(name, False, '"arguments" must be a JSON object')
    try:
        return fn(env, call.arguments)
    except ToolCallError as e:
        return ToolResult(name, False, str(e))
    except (ValueError, OverflowError) as e:
        # Values the validators did not foresee but SQLite or the embedder refuse
        # (the write is rolled back): still the model's error, still not fatal.
        return ToolResult(name, False, f"invalid arguments: {e}")
