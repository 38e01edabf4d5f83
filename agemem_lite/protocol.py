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
    except (ValueError, RecursionError):  # absurd nesting or a 4,300-digit number
        return [], "the tool call JSON is too deeply nested or has an oversized number"
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
            except (ValueError, RecursionError):
                return [], f'call #{k + 1}: "arguments" must be a JSON object'
        if not isinstance(args, dict):
            return [], f'call #{k + 1}: "arguments" must be a JSON object'
        calls.append(ToolCall(item["name"].strip(), args))
    return calls, None


_BOTH = "write either one <tool_call>…</tool_call> or one <answer>…</answer>, not both"


def _tagged(after: str, start: int, open_tag: str, close_tag: str, other_open: str,
            *, last_close: bool) -> tuple[str, str | None]:
    """The text inside the action tag at ``start`` (to its close, or the end if unclosed),
    or an error if the other action's tag follows it. Tool-call JSON runs to the LAST
    close tag, so a literal "</tool_call>" inside an argument cannot cut it short."""
    rest = after[start + len(open_tag):]
    j = rest.rfind(close_tag) if last_close else rest.find(close_tag)
    inner, tail = (rest, "") if j < 0 else (rest[:j], rest[j + len(close_tag):])
    return inner, (_BOTH if other_open in tail else None)


def parse_step(text: str) -> ParsedStep:
    """Parse one completion. Never raises: problems come back in ``error``."""
    if not isinstance(text, str):
        return ParsedStep(error="the step is not text", raw=repr(text))
    m = _THINK_RE.search(text)
    think = m.group(1).strip() if m else ""
    after = text[m.end():] if m else text
    # The action is whichever tag comes first; an <answer> inside tool-call JSON
    # is argument text, not a second action.
    i_call, i_ans = after.find(CALL_OPEN), after.find(ANSWER_OPEN)
    if i_call >= 0 and (i_ans < 0 or i_call < i_ans):
        body, err = _tagged(after, i_call, CALL_OPEN, CALL_CLOSE, ANSWER_OPEN, last_close=True)
        calls, err = ([], err) if err else parse_calls_json(body)
        if err:
            return ParsedStep(think=think, raw=text, error=err)
        return ParsedStep(think=think, calls=tuple(calls), raw=text)
    if i_ans >= 0:
        ans, err = _tagged(after, i_ans, ANSWER_OPEN, ANSWER_CLOSE, CALL_OPEN, last_close=False)
        if not err and not ans.strip():
            err = "the <answer> is empty"
        if err:
            return ParsedStep(think=think, raw=text, error=err)
        return ParsedStep(think=think, answer=ans.strip(), raw=text)
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
    if not items:
        raise ValueError("render_step needs at least one tool call")
    # "<" only occurs inside JSON strings, so escaping it keeps tags out of arguments.
    body = json.dumps(items, ensure_ascii=False).replace("<", "\\u003c")
    return f"{head}{CALL_OPEN}{body}{CALL_CLOSE}"


# --- grammar -----------------------------------------------------------------
#
# Hand-written GBNF rather than llama.cpp's generic JSON-schema converter: the
# converter's flexible whitespace rules (up to 20 indentation characters at every
# token boundary) multiply the grammar stacks llama.cpp checks against the whole
# 152k-token vocabulary at each step, which made constrained decoding several
# times slower than free decoding here. The canonical form below is exactly what
# ``render_step`` writes (``json.dumps`` separators), so training targets, the
# grammar and the parser agree byte for byte.

_GBNF_STRING = r'"\"" ( [^"\\\x7F\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ) )* "\""'
_GBNF_VALUE = {
    "string": "json-string",
    "integer": '"-"? [0-9] [0-9]? [0-9]? [0-9]? [0-9]? [0-9]?',
    "boolean": '"true" | "false"',
}


def _lit(text: str) -> str:
    """A GBNF string literal for ``text``."""
    return json.dumps(text)


def _value_rule(prop: dict) -> str:
    if "enum" in prop:
        return " | ".join(_lit(json.dumps(v, ensure_ascii=False)) for v in prop["enum"])
    typ = prop.get("type")
    if typ not in _GBNF_VALUE:
        raise ValueError(f"no grammar for argument type {typ!r} (supported: {', '.join(_GBNF_VALUE)})")
    return _GBNF_VALUE[typ]


def _tool_rules(tool: dict, idx: int) -> list[str]:
    """``call-N ::= "{\"name\": \"X\", \"arguments\": {" args "}}"`` with fixed key order:
    required arguments first, then each optional one, in schema order."""
    props = tool["parameters"].get("properties", {})
    required = [k for k in props if k in tool["parameters"].get("required", [])]
    optional = [k for k in props if k not in required]
    rules, parts = [], []
    for j, key in enumerate(required + optional):
        vr = f"t{idx}-a{j}"
        rules.append(f"{vr} ::= {_value_rule(props[key])}")
        first = not parts
        pair = f'{_lit(("" if first else ", ") + json.dumps(key) + ": ")} {vr}'
        parts.append(pair if key in required else f"( {pair} )?")
    if required == [] and optional:
        # all-optional: the first present key must not start with ", "; keep it simple
        raise ValueError(f"tool {tool['name']} needs at least one required argument for the grammar")
    head = _lit('{"name": ' + json.dumps(tool["name"]) + ', "arguments": {')
    rules.insert(0, f"call-{idx} ::= {head} {' '.join(parts)} {_lit('}}')}")
    return rules


def grammar(tool_schemas: list[dict], *, allow_answer: bool = True, allow_tools: bool = True,
            think: bool = True, max_calls: int = 3, think_kinds: tuple[str, ...] | None = None,
            answer_text: bool = True) -> str:
    """GBNF for one step. ``think=False`` gives the grammar of what follows ``</think>\\n``
    (used when the think block was closed by the runtime after its token cap).

    ``think_kinds`` (optional) makes the think start with ``Kind: <one of them>.``:
    a guided first thought that asks a small model to classify the turn before it
    acts (see ``prompts.THINK_KINDS``); the rest of the think stays free text.

    ``answer_text=False`` ends the grammar at ``<answer>``: a caller that decodes
    free text itself (``policy.llama``) continues from there."""
    if not (allow_answer or allow_tools):
        raise ValueError("a step must allow an answer or a tool call")
    if max_calls < 1:
        raise ValueError("max_calls must be at least 1")
    actions, rules = [], []
    if allow_tools:
        if not tool_schemas:
            raise ValueError("allow_tools needs at least one tool schema")
        actions.append('"<tool_call>" calls "</tool_call>"')
        more = ' ( ", " call )?' * (max_calls - 1)
        rules.append(f'calls ::= "[" call{more} "]"')
        rules.append("call ::= " + " | ".join(f"call-{i}" for i in range(len(tool_schemas))))
        for i, t in enumerate(tool_schemas):
            rules += _tool_rules(t, i)
        rules.append(f"json-string ::= {_GBNF_STRING}")
    if allow_answer:
        actions.append('"<answer>" answer-text "</answer>"' if answer_text else '"<answer>"')
    lines = [
        f"root ::= {'think-block ' if think else ''}action",
        ('think-block ::= "<think>' + KIND_PREFIX + '" kind "." think-text "</think>\\n"'
         if think_kinds else 'think-block ::= "<think>" think-text "</think>\\n"'),
        *([f"kind ::= {' | '.join(json.dumps(k) for k in think_kinds)}"] if think_kinds else []),
        # No "<" inside free text: the closing tag is the only way out.
        "think-text ::= [^<]+",
        # At least one visible character: a blank answer does not parse.
        "answer-text ::= [ \\t\\n]* [^< \\t\\n] [^<]*",
        f"action ::= {' | '.join(actions)}",
        *rules,
    ]
    return "\n".join(lines)


def kind_grammar(think_kinds: tuple[str, ...]) -> str:
    """GBNF for the label after ``<think>Kind: `` (the guided think)."""
    # The label carries its leading space: a prompt that ends in a bare space is a
    # token boundary the model never saw in training (it writes " new" as one token).
    return f"root ::= ({' | '.join(json.dumps(' ' + k) for k in think_kinds)}) \".\""
