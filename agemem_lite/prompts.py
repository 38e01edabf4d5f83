"""Every string the model reads (STYLE §3).

Training and serving call the same render functions, so the format cannot drift
(SPEC §3). Nothing here reads the clock at import time: dates are arguments.
"""

from __future__ import annotations

import json
import re

# SPEC §1-§3: the system prompt of the memory policy. Kept short: the 0.5B default
# model follows short, concrete rules better than long ones, and a stable system
# prompt is the prefix llama.cpp reuses across turns.
SYSTEM_TEMPLATE = """\
You are a private assistant with a long-term memory (LTM) that you manage yourself with tools.
Today is {today}. Context budget: {budget} tokens.

Every step: first <think>short reasoning</think>, then EITHER
<tool_call>[{{"name": "...", "arguments": {{...}}}}]</tool_call>  OR  <answer>your reply to the user</answer>.

Rules:
- The user tells you a new personal fact, preference, plan or event: call Add_memory with the fact as one short sentence.
- A fact you already have changed: call Update_memory with the memory_id shown as [mem_N].
- A memory is wrong or no longer true: call Delete_memory with its memory_id and "confirmation": true.
- The user asks something that needs a memory you cannot see: call Retrieve_memory.
- The context is long or full of unrelated text: call Filter_context or Summary_context.
- After the tools you need have run, or when nothing needs storing, give the <answer>.
- Answer from the memories and conversation shown; never invent memory ids.

Tools:
{tools}"""

# SPEC §2 Summary_context: fixed summarisation prompt, written by the same model.
SUMMARY_INSTRUCTION = """\
Summarise the conversation below in a few short sentences for your own later use. \
Keep every name, number, date, place and decision. Do not add anything new.

{transcript}"""

# SPEC §4: how the environment shows related memories with a user turn.
RELATED_HEADER = "[Related memories]"
NO_RELATED = "[Related memories: none]"
USER_PREFIX = "User: "
#: The context-usage line of a user turn, for policies trained to read it (``render_context_usage``).
CONTEXT_USAGE = "[Context: {pct} % full]"
CONTEXT_USAGE_HEAD = "[Context: "

# Tool descriptions (SPEC §2). One place, rendered into the system prompt and the
# JSON schemas the grammar is built from.
TOOL_DESCRIPTIONS = {
    "Add_memory": "Store a new durable fact in long-term memory.",
    "Update_memory": "Replace the content of an existing memory (memory_id from a retrieval).",
    "Delete_memory": "Delete a memory that is wrong or obsolete.",
    "Retrieve_memory": "Search long-term memory; results are added to the context.",
    "Summary_context": 'Replace past conversation by a summary; span "all" or the last N rounds as "N".',
    "Filter_context": "Remove context messages that match the criteria (what to REMOVE).",
}

ARG_DESCRIPTIONS = {
    "content": "the fact, as one short self-contained sentence",
    "memory_type": "fact | preference | event | task | note",
    "metadata": "optional object, e.g. {\"tags\": [\"family\"]}",
    "memory_id": "id such as mem_3, shown next to the memory",
    "confirmation": "must be true to delete",
    "query": "what to search for",
    "top_k": "number of memories to return",
    "metadata_filter": "optional object, e.g. {\"memory_type\": \"preference\"}",
    "span": "\"all\" or a number of recent rounds such as \"2\"",
    "criteria": "description of the messages to remove",
}


def render_tools(tool_schemas: list[dict]) -> str:
    """One line per tool: name(args) — description. Compact on purpose (tokens)."""
    lines = []
    for t in tool_schemas:
        props = t["parameters"]["properties"]
        req = set(t["parameters"].get("required", []))
        args = ", ".join(f"{k}{'' if k in req else '?'}" for k in props)
        lines.append(f"- {t['name']}({args}): {t['description']}")
    return "\n".join(lines)


def render_system(*, today: str, budget: int, tool_schemas: list[dict]) -> str:
    """The system message. ``today`` is an ISO date passed in by the caller."""
    return SYSTEM_TEMPLATE.format(today=today, budget=budget, tools=render_tools(tool_schemas))


def render_related(memories: list[tuple[str, str]]) -> str:
    """Related memories shown with a user turn: ``[(id, content), ...]``."""
    if not memories:
        return NO_RELATED
    return RELATED_HEADER + "\n" + render_memory_lines(memories)


def render_memory_lines(memories) -> str:
    """``[id] content`` lines: how memories read in the context (related memories, search hits)."""
    return "\n".join(f"[{mid}] {content}" for mid, content in memories)


def render_search_hits(memories) -> str:
    """What Retrieve_memory reports: its hits as ``[id] content`` lines after a newline, or that it
    found none. One rendering for the tool, the decision set and the warm start's turns."""
    lines = render_memory_lines(memories)
    return "\n" + lines if lines else "no memories found"


def budget_of(system: str) -> int:
    """The context budget a system prompt (``render_system``) states."""
    m = re.search(r"Context budget: (\d+) tokens\.", system)
    if m is None:
        raise ValueError("not a system prompt written by render_system: no context budget in it")
    return int(m.group(1))


def render_context_usage(tokens: int, budget: int) -> str:
    """How full the context is when a user turn arrives, to the nearest 10 % of the budget.

    The policy cannot count its own context, so "the context is long" (the Filter/Summary
    rule) is otherwise a guess from the text; coarse steps keep the line the same under
    small tokenizer differences between training and serving."""
    return CONTEXT_USAGE.format(pct=10 * round(10 * tokens / budget))


def render_user_turn(text: str, related: str | None, usage: str | None = None) -> str:
    """A user message with the environment's related memories (SPEC §4) shown first,
    after the context-usage line (``render_context_usage``) when the policy reads one.

    The user's words come last on purpose: measured on the 0.5B default, with the
    memories after the message it classified questions as new facts far more often."""
    head = "\n".join(part for part in (usage, related) if part is not None)
    return f"{head}\n\n{USER_PREFIX}{text}" if head else text


def user_text_of(content: str) -> str:
    """The user's own words in a message written by ``render_user_turn``."""
    if content.startswith((RELATED_HEADER, NO_RELATED, CONTEXT_USAGE_HEAD)):
        _, sep, text = content.partition(f"\n\n{USER_PREFIX}")
        if sep:
            return text
    return content


QUESTION_INSTRUCTION = "(Reply with the answer only: a short phrase, no explanation.)"


def render_question(question: str, short_answer: bool = True) -> str:
    """The stage-3 turn of an evaluation episode: the question, and unless switched off the
    instruction to answer in a short phrase (the judges are EM/F1 against short gold answers,
    and the Mem0 peer's answer prompt asks the same)."""
    return f"{question}\n{QUESTION_INSTRUCTION}" if short_answer else question


SUMMARY_HEADER = "[Summary of earlier conversation]"


def summary_transcript(messages) -> str:
    """The span that Summary_context replaces, as plain lines for the summariser: the user's own
    words (no context-usage line, no shown memories), the assistant's answers and memory writes
    (no think, no protocol tags), tool results, and earlier summaries. Given the raw contents,
    the 0.5B policy copied tags and transcript lines instead of summarising (docs/training.md).
    ``messages``: objects with ``role`` and ``content``."""
    from .protocol import parse_step

    lines = []
    for m in messages:
        if m.role == "user" and m.content.startswith(SUMMARY_HEADER):
            lines.append(f"Earlier: {m.content[len(SUMMARY_HEADER):].strip()}")
        elif m.role == "user":
            lines.append(f"{USER_PREFIX}{user_text_of(m.content).strip()}")
        elif m.role == "assistant":
            step = parse_step(m.content)
            if step.answer or not step.calls:   # text outside the protocol is kept as it is
                lines.append(f"Assistant: {(step.answer or m.content).strip()}")
            saved = [c.arguments.get("content") for c in step.calls
                     if c.name in ("Add_memory", "Update_memory") and isinstance(c.arguments, dict)]
            lines += [f"Assistant saved: {text}" for text in saved if text]
        elif m.role == "tool":
            lines.append(f"Tool: {m.content.strip()}")
    return "\n".join(lines)


def render_summary_request(transcript: str) -> str:
    """The fixed summarisation prompt (SPEC §2)."""
    return SUMMARY_INSTRUCTION.format(transcript=transcript)


_TO_YOU = {"is": "are", "was": "were", "has": "have", "does": "do",
           "isn't": "aren't", "wasn't": "weren't", "hasn't": "haven't", "doesn't": "don't"}
_ADVERB = r"(?:(?:also|still|now|usually|often|never|always|really|only|just) )?"
_USER_VERB = re.compile(rf"\bthe user ({_ADVERB})([a-z]+n['’]t|[a-z]+)\b", re.IGNORECASE)
_UNINFLECT = (("ies", "y"), ("sses", "ss"), ("shes", "sh"), ("ches", "ch"), ("xes", "x"), ("zes", "z"),
              ("oes", "o"))


def _you_verb(m: re.Match) -> str:
    adverb, verb = m.group(1), m.group(2)
    low = verb.lower().replace("’", "'")
    if low in _TO_YOU:
        return f"you {adverb}{_TO_YOU[low]}"
    if low.endswith("s") and not low.endswith("ss"):
        base = next((low[:-len(end)] + to for end, to in _UNINFLECT if low.endswith(end)), low[:-1])
        return f"you {adverb}{base}"
    return f"you {adverb}{verb}"


def addressed_to_user(answer: str) -> str:
    """A reply that speaks of "the user" rewritten to speak to them ("The user's favourite food is
    pho." → "Your favourite food is pho."). The trained policy answers in the words of its
    memories, which are written about "the user": 17 of its 28 answers on the decision set's
    ``found`` split began with "The user". Chat shows and saves this; the context keeps the
    model's own words, the format it was trained on."""
    out = re.sub(r"\bthe user(?:'s|’s)", "your", answer, flags=re.IGNORECASE)
    out = _USER_VERB.sub(_you_verb, out)
    out = re.sub(r"\bthe user\b", "you", out, flags=re.IGNORECASE)
    # a sentence that now starts with "you"/"your" gets its capital back
    return re.sub(r"(^|[.!?]\s+)(you)", lambda m: m.group(1) + m.group(2).capitalize(), out)


def render_tool_result(name: str, ok: bool, text: str) -> str:
    """How a tool result reads in the context."""
    return f"{name}: {text}" if ok else f"{name} ERROR: {text}"


def render_json(obj) -> str:
    """Compact JSON for the model (no ASCII escaping: tokens are precious)."""
    return json.dumps(obj, ensure_ascii=False)


# --- guided think and demonstrations (for prompted, untrained policies) ------------
# Measured on the default 0.5B model (see README "How the prompted policy was tuned"):
# instructions alone -> it answers instead of calling tools; demonstrations as real
# chat turns + a "Kind:" label that the grammar makes it choose first -> it stores
# stated facts and answers from shown memories. A trained policy can drop both.
# Closes the demonstrations: without it the 0.5B model answered "What is my favourite
# food?" on an empty memory with the demo's "ramen".
# Measured on a 14-case dev set: with this message 10/14 right actions and no leak; without
# it 14/14 but demo facts leak; a one-line version 12/14 and still leaked.
DEMO_END = ("End of the examples. They were about a different, made-up user: nothing in them is "
            "true of the real user, and mem_91-mem_93 do not exist. The real conversation starts now.")

THINK_KINDS = ("question", "new fact", "changed fact", "obsolete fact", "chat")


def _demo_call(think: str, name: str, **arguments) -> str:
    from .protocol import render_step

    return render_step(f"Kind: {think}", calls=[{"name": name, "arguments": arguments}])


def _demo_answer(think: str, answer: str) -> str:
    from .protocol import render_step

    return render_step(f"Kind: {think}", answer=answer)


def render_demonstrations() -> list[dict]:
    """Worked turns shown after the system prompt (ids mem_91.. never collide in practice
    with a fresh store's; they exist only in the prompt). Ends with an Add on purpose:
    a small model copies the most recent pattern, and storing is the common case."""
    u = lambda text, rel: {"role": "user", "content": render_user_turn(text, render_related(rel))}  # noqa: E731
    a = lambda text: {"role": "assistant", "content": text}  # noqa: E731
    t = lambda name, text: {"role": "tool", "content": render_tool_result(name, True, text)}  # noqa: E731
    cello = ("mem_91", "The user started learning the cello.")
    tom_oslo = ("mem_92", "The user's brother Tom lives in Oslo.")
    tom_bergen = ("mem_92", "The user's brother Tom lives in Bergen.")
    return [
        u("What is my passport number?", []),
        a(_demo_call("question. No shown memory answers it, so search.", "Retrieve_memory",
                     query="user's passport number")),
        t("Retrieve_memory", "no memories found"),
        a(_demo_answer("question. Nothing stored, so say so.", "You have not told me your passport number yet.")),
        u("I started learning the cello this week.", []),
        a(_demo_call("new fact. Store it.", "Add_memory", content=cello[1], memory_type="event")),
        t("Add_memory", "stored as mem_91"),
        a(_demo_answer("new fact. Stored, so reply.", "Nice, I will remember that you are learning the cello.")),
        u("Hello! Thanks for the help yesterday.", []),
        a(_demo_answer("chat. Nothing to store.", "You're welcome! How can I help today?")),
        u("My brother Tom lives in Oslo.", [cello]),
        a(_demo_call("new fact. mem_91 is about something else. Store it.", "Add_memory",
                     content=tom_oslo[1], memory_type="fact")),
        t("Add_memory", "stored as mem_92"),
        a(_demo_answer("new fact. Stored, so reply.", "Noted: your brother Tom lives in Oslo.")),
        u("Tom moved from Oslo to Bergen.", [tom_oslo]),
        a(_demo_call("changed fact. mem_92 is out of date, so update it.", "Update_memory",
                     memory_id="mem_92", content=tom_bergen[1])),
        t("Update_memory", "mem_92 updated"),
        a(_demo_answer("changed fact. Updated, so reply.", "Got it, Tom lives in Bergen now.")),
        u("Where does my brother live?", [tom_bergen]),
        a(_demo_answer("question. mem_92 answers it.", "Your brother Tom lives in Bergen.")),
        u("I quit the cello, forget about it.", [cello]),
        a(_demo_call("obsolete fact. mem_91 is no longer true, so delete it.", "Delete_memory",
                     memory_id="mem_91", confirmation=True)),
        t("Delete_memory", "mem_91 deleted"),
        a(_demo_answer("obsolete fact. Deleted, so reply.", "Okay, I forgot about the cello.")),
        u("My favourite food is ramen.", [tom_bergen]),
        a(_demo_call("new fact. mem_92 is about something else. Store it.", "Add_memory",
                     content="The user's favourite food is ramen.", memory_type="preference")),
        t("Add_memory", "stored as mem_93"),
        a(_demo_answer("new fact. Stored, so reply.", "Ramen, noted!")),
        {"role": "system", "content": DEMO_END},
    ]
