"""The policy's output protocol (SPEC §3): parse, render, and the GBNF grammar.

Every step is ``<think>…</think>`` followed by exactly one of
``<tool_call>[{"name": …, "arguments": {…}}, …]</tool_call>`` or
``<answer>…</answer>``. Serving decodes under ``grammar()`` so a step always has
this shape; the parser is still lenient (a single object instead of an array, a
```json fence, missing think) because training data, other backends and humans
produce such text, and a malformed step must become an error message for the
model, never an exception (SPEC §2).

Tokenizer note (LANDSCAPE.md): in Qwen2.5 GGUFs ``<tool_call>`` is a single
special token whose embedding row is untrained. Serving bans that token
(``policy.llama``) so the tag is spelled with ordinary tokens; training renders
the same text, so both sides agree on the byte-level format defined here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
#: Start of a guided think (``grammar(think_kinds=...)``): "<think>Kind: new fact. ..."
KIND_PREFIX = "Kind: "


@dataclass(frozen=True)
class ToolCall:
    """One requested tool invocation, as the model wrote it (not yet validated)."""

    name: str
    arguments: dict

    def to_dict(self) -> dict:
        return {"name": self.name, "arguments": self.arguments}


@dataclass(frozen=True)
class ParsedStep:
    """A decoded step: exactly one of ``calls`` / ``answer`` is set, or ``error``."""

    think: str = ""
    calls: tuple[ToolCall, ...] = ()
    answer: str | None = None
    error: str | None = None
    raw: str = field(default="", repr=False)

    @property
    def kind(self) -> str:
        """"answer", "tool_call" or "invalid"."""
        if self.error:
            return "invalid"
        return "answer" if self.answer is not None else "tool_call"


_THINK_RE = re.compile(r"<think>(.*?)</think>", re.S)
_FENCE_RE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


def _between(text: str, open_tag: str, close_tag: str) -> str | None:
    """Text after ``open_tag`` up to ``close_tag`` (or the end, if unclosed)."""
    i = text.find(open_tag)
    if i < 0:
        return None
    rest = text[i + len(open_tag):]
    j = rest.find(close_tag)
    return rest if j < 0 else rest[:j]


def parse_calls_json(body: str) -> tuple[list[ToolCall], str | None]:
    """Decode the JSON inside ``<tool_call>``: an array of calls or one call object."""
    body = body.strip()
    m = _FENCE_RE.match(body)
    if m:
        body = m.group(1)
    try:
        data = json.loads(body)
    except json.JSONDecodeError as e:
        return [], f"the tool call is not valid JSON ({e.msg} at char {e.pos}); write " \
                   '[{"name": "<tool>", "arguments": {...}}]'
    items = data if isinstance(data, list) else [data]
    if not items:
        return [], "the tool call list is empty; call at least one tool or give an <answer>"
    calls = []
    for k, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return [], f'call #{k + 1} must be an object with a "name" string and an "arguments" object'
        args = item.get("arguments", item.get("parameters", {}))
        if isinstance(args, str):  # some models double-encode the arguments
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                return [], f'call #{k + 1}: "arguments" must be a JSON object'
        if not isinstance(args, dict):
            return [], f'call #{k + 1}: "arguments" must be a JSON object'
        calls.append(ToolCall(item["name"].strip(), args))
    return calls, None


def parse_step(text: str) -> ParsedStep:
    """Parse one completion. Never raises: problems come back in ``error``."""
    if not isinstance(text, str):
        return ParsedStep(error="the step is not text", raw=repr(text))
    m = _THINK_RE.search(text)
    think = m.group(1).strip() if m else ""
    after = text[m.end():] if m else text
    has_call, has_answer = CALL_OPEN in after, ANSWER_OPEN in after
    if has_call and has_answer:
        return ParsedStep(think=think, raw=text,
                          error="write either one <tool_call>…</tool_call> or one <answer>…</answer>, not both")
    if has_answer:
        ans = _between(after, ANSWER_OPEN, ANSWER_CLOSE) or ""
        if not ans.strip():
            return ParsedStep(think=think, raw=text, error="the <answer> is empty")
        return ParsedStep(think=think, answer=ans.strip(), raw=text)
    if has_call:
        body = _between(after, CALL_OPEN, CALL_CLOSE) or ""
        calls, err = parse_calls_json(body)
        if err:
            return ParsedStep(think=think, raw=text, error=err)
        return ParsedStep(think=think, calls=tuple(calls), raw=text)
    # Untagged JSON (e.g. a bare ```json block) is still a tool call attempt.
    stripped = after.strip()
    if stripped.startswith(("[", "{", "```")):
        calls, err = parse_calls_json(stripped)
        if not err:
            return ParsedStep(think=think, calls=tuple(calls), raw=text)
    return ParsedStep(think=think, raw=text,
                      error="after </think> write <tool_call>[…]</tool_call> or <answer>…</answer>")


def render_step(think: str, calls: list[ToolCall] | list[dict] | None = None,
                answer: str | None = None) -> str:
    """The canonical text of a step (what training targets and serving emits)."""
    if (calls is None) == (answer is None):
        raise ValueError("render_step needs exactly one of calls / answer")
    head = f"{THINK_OPEN}{think.strip()}{THINK_CLOSE}\n"
    if answer is not None:
        return f"{head}{ANSWER_OPEN}{answer.strip()}{ANSWER_CLOSE}"
    items = [c.to_dict() if isinstance(c, ToolCall) else c for c in calls]
    return f"{head}{CALL_OPEN}{json.dumps(items, ensure_ascii=False)}{CALL_CLOSE}"


# --- grammar -----------------------------------------------------------------

def calls_schema(tool_schemas: list[dict], max_calls: int = 3) -> dict:
    """JSON schema of the ``<tool_call>`` body: an array of 1..max_calls tool calls.

    ``tool_schemas`` are OpenAI-style ``{"name", "parameters"}`` dicts (from
    ``memory.tools.tool_schemas``): each becomes one ``oneOf`` branch with the
    name fixed, so the grammar can only produce known tools and argument names.
    """
    branches = []
    for t in tool_schemas:
        params = dict(t["parameters"])
        params.setdefault("additionalProperties", False)
        branches.append({
            "type": "object",
            "properties": {"name": {"const": t["name"]}, "arguments": params},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        })
    return {"type": "array", "items": {"oneOf": branches}, "minItems": 1, "maxItems": max_calls}


def grammar(tool_schemas: list[dict], *, allow_answer: bool = True, allow_tools: bool = True,
            think: bool = True, max_calls: int = 3, think_kinds: tuple[str, ...] | None = None) -> str:
    """GBNF for one step. ``think=False`` gives the grammar of what follows ``</think>\\n``
    (used when the think block was closed by the runtime after its token cap).

    ``think_kinds`` (optional) makes the think start with ``Kind: <one of them>.``:
    a guided first thought that asks a small model to classify the turn before it
    acts (see ``prompts.THINK_KINDS``); the rest of the think stays free text."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    if not (allow_answer or allow_tools):
        raise ValueError("a step must allow an answer or a tool call")
    body = json_schema_to_gbnf(json.dumps(calls_schema(tool_schemas, max_calls)))
    # The converter names its start rule "root"; rename it so ours can wrap it.
    body = re.sub(r"^root ::=", "calls ::=", body, flags=re.M)
    actions = []
    if allow_tools:
        actions.append('"<tool_call>" calls "</tool_call>"')
    if allow_answer:
        actions.append('"<answer>" answer-text "</answer>"')
    lines = [
        f"root ::= {'think-block ' if think else ''}action",
        ('think-block ::= "<think>' + KIND_PREFIX + '" kind "." think-text "</think>\\n"'
         if think_kinds else 'think-block ::= "<think>" think-text "</think>\\n"'),
        *([f"kind ::= {' | '.join(json.dumps(k) for k in think_kinds)}"] if think_kinds else []),
        # No "<" inside free text: the closing tag is the only way out.
        "think-text ::= [^<]+",
        "answer-text ::= [^<]+",
        f"action ::= {' | '.join(actions)}",
        body,
    ]
    return "\n".join(lines)
