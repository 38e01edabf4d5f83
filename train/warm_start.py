"""Warm start: supervised fine-tuning of a LoRA on oracle turns, before GRPO.

The prompted 0.5B policy reasons about the right move and then answers instead of
calling the tool (LANDSCAPE.md). GRPO cannot fix that from scratch on a CPU budget:
a group in which no rollout ever calls Update_memory has no signal for it. So the
policy first imitates an oracle that needs no LLM, because the generator knows the
gold facts: ``agemem_lite.decisions`` labels every item with the right step.

What one training example is (why):

- One user turn in the exact serving format, without demonstrations (the trained
  policy is served without them: ``ModelSpec.demonstrations``), with the guided
  "Kind:" think it keeps. A tool call is followed by its tool result and the
  closing answer, in one sequence with both assistant steps in the loss, so the
  policy also learns to stop calling tools and reply (a policy that only learned
  the first step loops on tools). A Filter/Summary item's call edits the context, so
  what follows it is a second example (``edit_reply_turns``): the edited context, the
  call and its result, then the reply; without it (rounds up to U) the turn is the call
  alone, and round U called Filter again and again in episodes.
- Retrieve follow-ups are built from memory-answered items: the target memory is
  not shown, the oracle retrieves it, the tool result lists it, the answer uses it.
  Retrieve items keep their "no memories found" ending so that abstaining is learnt.
- Answering must survive the warm start: a first version trained on short templated
  replies only answered open questions and greetings with a copy of its think. So a
  round may add (``replay``) turns whose reply is the base model's own answer to an
  open request (self-distilled replay: the answer text is what the model already says,
  only the protocol around it is taught; ``stage2``: the same for the distractor turns of
  training episodes, after earlier answered turns), and (``questions``) stage-3 turns of training
  episodes: the question with the short-answer instruction, the supporting facts either
  shown as related memories (answer at once) or found by Retrieve_memory (search, then
  answer), the reply being the gold short answer.
- Tokens come from llama.cpp's tokenizer (``LlamaPolicy.render`` / ``tokenize``),
  the way rollouts and chat tokenize: the chat template's control tokens are
  specials, the protocol tags are spelled as ordinary tokens (in this GGUF the
  ``<tool_call>`` special tokens are untrained rows). TRL gets pre-tokenised rows
  (``input_ids`` + ``completion_mask``), so it cannot tokenize differently.
- TRL's ``SFTTrainer`` with a PEFT LoRA on the float model of ``train.base``; the
  adapter is written as a llama.cpp GGUF LoRA (``export.export_adapter``).
"""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from agemem_lite import decisions as D
from agemem_lite import prompts, protocol
from agemem_lite.protocol import render_step

#: The closing reply after a successful memory write, per class (the tool result's text
#: is what the runtime returns; replies are short so that the kind of act is what is learnt).
_DONE = {"add": "Stored, so reply.", "update": "Updated, so reply.", "delete": "Deleted, so reply."}
_REPLIES = {
    "add": ["Noted, I'll remember that.", "Got it, saved.", "Okay, I've made a note of it.", "Thanks, stored."],
    "update": ["Got it, I've updated that.", "Okay, noted the change.", "Updated, thanks for telling me."],
    "delete": ["Okay, I've forgotten that.", "Done, I removed it.", "Got it, it's deleted."],
}


@dataclass
class Turn:
    """One user turn: the context before it and the oracle's steps, with the tool
    results between them (``steps[i]`` is followed by ``tool_results[i]``)."""

    item_id: str
    label: str
    context: list[dict]
    steps: list[str]
    tool_results: list[str | list[str]]   # a list: one tool message per call of a step with several

    def before_last_step(self) -> list[dict]:
        """The messages the last step is written after: the context, then each earlier step and
        its tool result (what a policy is measured on at that step)."""
        msgs = list(self.context)
        for step, result in zip(self.steps[:-1], self.tool_results):
            msgs += [{"role": "assistant", "content": step}, *tool_messages(result)]
        return msgs


def tool_messages(result: str | list[str]) -> list[dict]:
    """The tool messages after a step, one per call, as ``Agent`` appends them."""
    return [{"role": "tool", "content": r} for r in ([result] if isinstance(result, str) else result)]


def turns_of(item: D.DecisionItem, r: random.Random, *, demonstrations: bool = False,
             long_think: str = "plain", fact_think: str = "plain") -> list[Turn]:
    """The oracle's turn(s) for one decision item (``long_think``: ``decisions.LONG_THINKS``;
    ``fact_think``: ``decisions.FACT_THINKS``)."""
    call = D.oracle_call(item)
    lab = item.label
    if call is None or lab in ("filter", "summary"):
        return [Turn(item.id, lab, D.messages(item, guided=demonstrations),
                     [D.oracle_completion(item, long_think=long_think)], [])]
    if lab == "add":
        mid = f"mem_{r.randrange(1, 60)}"
        result = f"stored as {mid}"
    elif lab == "update":
        result = f"{item.target_id} updated"
    elif lab == "delete":
        result = f"{item.target_id} deleted"
    else:   # retrieve: nothing stored about it (the item shows no memory that answers it)
        reply = D.UNKNOWN_REPLY
        return [Turn(item.id, lab, D.messages(item, guided=demonstrations),
                     [D.oracle_completion(item), render_step("Kind: question. Nothing stored, so say so.",
                                                             answer=reply)],
                     [D.search_result([])])]
    return [_write_turn(item, result, r, demonstrations=demonstrations, fact_think=fact_think)]


def _write_turn(item: D.DecisionItem, result: str, r: random.Random, *, demonstrations: bool = False,
                fact_think: str = "plain") -> Turn:
    """The oracle's memory write for ``item`` (Add, Update or Delete), the tool's ``result``, and a
    short reply that says it was done."""
    call = D.oracle_call(item)
    done = render_step(f"Kind: {item.kind}. {_DONE[item.label]}", answer=r.choice(_REPLIES[item.label]))
    return Turn(item.id, item.label, D.messages(item, guided=demonstrations),
                [D.oracle_completion(item, fact_think=fact_think), done],
                [prompts.render_tool_result(call["name"], True, result)])


def retrieve_turn(item: D.DecisionItem, r: random.Random | None = None, *,
                  demonstrations: bool = False) -> Turn | None:
    """A memory-answered Answer item turned into retrieve → result → answer: the memory
    that answers it is hidden from the shown list and comes back from the search, with
    (given ``r``) some of the shown ones that do not answer it, in a random order, as a
    search lists near misses too."""
    if item.label != "answer" or item.basis != "memory" or not item.target_id:
        return None
    hidden = [(m, c) for m, c in item.shown if m == item.target_id]
    shown = [(m, c) for m, c in item.shown if m != item.target_id]
    if not hidden:
        return None
    alt = D.DecisionItem(**{**item.__dict__, "shown": shown, "label": "retrieve",
                            "gold": item.user.rstrip("?. ")})
    ctx = D.messages(alt, guided=demonstrations)
    first = D.oracle_completion(alt)
    listed = hidden
    if r is not None:
        listed = hidden + r.sample(shown, r.randint(0, len(shown)))
        listed = r.sample(listed, len(listed))
    answer = render_step(f"Kind: question. {item.target_id} answers it.", answer=item.gold)
    return Turn(item.id + "+ret", "retrieve", ctx, [first, answer],
                [D.search_result(listed)])


def resolve_long_think(long_think: str | None, wide_long: bool) -> str:
    """The Filter/Summary think a round uses: the one asked for, else "subject" with ``wide_long``
    (round C's data) and "plain" without (v6's data), so older configs build the same turns."""
    return long_think or ("subject" if wide_long else "plain")


def build_turns(n: int, seed: int, *, split: str = "train", demonstrations: bool = False,
                long_share: float = 0.5, long_budget: int = 2048,
                classes: Sequence[str] = D.CLASSES, wide_long: bool = False,
                long_think: str | None = None, fact_think: str = "plain") -> list[Turn]:
    """``n`` generated items (classes balanced) → oracle turns, plus a retrieve-with-hit turn for
    half of the memory-answered items. Filter/Summary items are generated for a ``long_budget``
    context (the system prompt states it; their history fills 50-80 % of it) and only a
    ``long_share`` of them is kept: a 4k-token context costs ~8 short items on a CPU.
    ``classes`` is the class cycle (``decisions.generate``): repeat a class to weight it;
    ``wide_long``: Filter/Summary items also use the decision set's ``*_WIDE`` train wordings;
    ``long_think``: how their think reasons (``decisions.LONG_THINKS``; ``resolve_long_think``);
    ``fact_think``: how an Add/Update think reasons (``decisions.FACT_THINKS``)."""
    long_think = resolve_long_think(long_think, wide_long)
    r = random.Random(f"warm:{seed}")
    out: list[Turn] = []
    long = D.generate(n, seed, split, budget=long_budget, classes=classes, wide=wide_long)
    for i, item in enumerate(D.generate(n, seed, split, classes=classes, wide=wide_long)):
        if item.label in ("filter", "summary"):
            if r.random() >= long_share:
                continue
            item = long[i]
        out += turns_of(item, r, demonstrations=demonstrations, long_think=long_think, fact_think=fact_think)
        extra = retrieve_turn(item, r, demonstrations=demonstrations) if r.random() < 0.5 else None
        if extra:
            out.append(extra)
    return out


#: Open requests for the self-distilled replay (none is in the decision set's held-out or
#: natural items): greetings, small talk, advice, explanations, writing, arithmetic.
OPEN_PROMPTS = (
    ("chat", "Hi! How's it going?"), ("chat", "Morning! Ready for another day?"),
    ("chat", "I'm back, did you miss me?"), ("chat", "That's all, thank you so much."),
    ("chat", "lol ok"), ("chat", "Bye for now!"), ("chat", "You're a great help, you know that?"),
    ("chat", "Sorry, I was away for a bit."), ("chat", "Nice one!"), ("chat", "hmm, let me think about it"),
    ("question", "Can you give me three tips for sleeping better?"),
    ("question", "Explain what a mortgage is in two sentences."),
    ("question", "Write a haiku about autumn rain."),
    ("question", "What's a good way to start learning to cook?"),
    ("question", "How do I politely decline a meeting invitation?"),
    ("question", "Suggest a name for a grey kitten."),
    ("question", "What is the capital of Canada?"),
    ("question", "How many grams are in a kilogram?"),
    ("question", "What's the difference between weather and climate?"),
    ("question", "Give me a quick idea for a vegetarian lunch."),
    ("question", "How do I reverse a list in Python?"),
    ("question", "What does HTTP stand for?"),
    ("question", "Write one sentence to wish a colleague a happy retirement."),
    ("question", "Why is the sky blue? Keep it short."),
    ("question", "What is 15 percent of 80?"),
    ("question", "How long should I boil an egg for a soft yolk?"),
    ("question", "Can you recommend a stretching routine for after running?"),
    ("question", "What's a polite way to remind someone they owe me money?"),
    ("question", "Translate 'thank you very much' into Spanish."),
    ("question", "What is photosynthesis, in simple words?"),
    ("question", "List three board games for a family evening."),
    ("question", "How can I stay focused while working from home?"),
    ("question", "What is 7 times 8?"),
    ("question", "Which planet is closest to the sun?"),
    ("question", "Write a two-line poem about coffee."),
    ("question", "How do I convert Celsius to Fahrenheit?"),
    ("question", "What should I pack for a weekend hiking trip?"),
    ("question", "Give me a fun fact about octopuses."),
    ("question", "How do I make my houseplants last longer?"),
    ("question", "What's a good first sentence for a cover letter?"),
    ("question", "Explain recursion to a beginner in one paragraph."),
    ("question", "How many continents are there?"),
    ("question", "What's an easy way to save money on groceries?"),
    ("question", "Summarise the plot of Cinderella in two sentences."),
    ("question", "What is the square root of 144?"),
    ("question", "Suggest a short warm-up before a run."),
    ("question", "How do I say no to extra work without sounding rude?"),
    ("question", "What are the three primary colours?"),
)
REPLAY_SYSTEM = "You are a helpful, friendly personal assistant. Reply briefly."


def greedy_reply(llm, user: str, max_tokens: int, *, cut: bool = False) -> str:
    """The base model's greedy reply to ``user`` under ``REPLAY_SYSTEM``, outside the protocol.
    A reply that ``max_tokens`` cut is "" or, with ``cut``, ends at its last full sentence
    ("" if it has none): the base model rambles, and a half sentence would be learned."""
    out = llm.create_chat_completion([{"role": "system", "content": REPLAY_SYSTEM},
                                      {"role": "user", "content": user}],
                                     temperature=0.0, max_tokens=max_tokens)
    ch = out["choices"][0]
    text = ch["message"]["content"].strip()
    if ch.get("finish_reason") == "stop":
        return text
    end = max(text.rfind(". "), text.rfind(".\n"))
    return text[:end + 1] if cut and end > 0 else ""


def replay_turns(base_gguf: Path, n: int, seed: int, *, cache: Path | None = None,
                 max_reply_tokens: int = 160, extra: Sequence[str] = (), n_extra: int = 0) -> list[Turn]:
    """``n`` open requests (cycling ``OPEN_PROMPTS``) and ``n_extra`` of ``extra`` (stage-2
    distractor turns of training episodes) answered by the base model itself, greedy, outside
    the protocol; each reply goes into an answer step in the serving format.

    Half of the turns follow one to three earlier replayed exchanges in the history (an
    episode's stage 2 and a long chat are many answered questions in a row, and a policy that
    copies an earlier line forward loops on it), half are shown an unrelated memory (chat
    shows related memories with every turn, and a greeting is not a reason to search).
    Truncated replies are left out (a packed stage-2 turn gets twice ``max_reply_tokens``). ``cache``: a JSON file of earlier replies (prompt ->
    reply), so a rerun does not generate again."""
    from agemem_lite.policy.llama import load_llama

    r = random.Random(f"replay:{seed}")
    picks = [OPEN_PROMPTS[i % len(OPEN_PROMPTS)] for i in range(n)]
    picks += [("question", extra[i % len(extra)]) for i in range(n_extra if extra else 0)]
    done = json.loads(cache.read_text()) if cache is not None and cache.is_file() else {}
    todo = sorted({p for _, p in picks if p not in done})
    packed = set(extra)
    if todo:
        llm = load_llama(base_gguf, n_ctx=1024, seed=0)
        try:
            for p in todo:
                # a stage-2 turn packs two requests: its reply may be twice as long
                done[p] = greedy_reply(llm, p, max_reply_tokens * (2 if p in packed else 1))
        finally:
            llm.close()
        if cache is not None:
            cache.write_text(json.dumps(done, indent=1, ensure_ascii=False))
    others = [m for it in D.generate(40, seed, "train") for m in it.shown]
    # truncated replies (stored as "") and text that looks like protocol tags are left out
    usable = {p: a for p, a in done.items() if a and "<" not in a}
    answered = [(p, usable[p]) for _, p in picks if p in usable]
    from_episodes = set(extra)
    out: list[Turn] = []
    for i, (kind, p) in enumerate(picks):
        if p not in usable:
            continue
        reply = usable[p]
        history = []
        if r.random() < 0.5:
            for q, a in r.sample([x for x in answered if x[0] != p], min(r.randint(1, 3), len(answered) - 1)):
                history += [D.user_message(q, []), D.answer_message(a)]
        shown = [r.choice(others)] if others and r.random() < 0.5 else []
        item = D.DecisionItem(id=f"replay-{i}", split="train", label="answer", user=p, shown=shown,
                              history=history, kind=kind, basis="chat" if kind == "chat" else "general",
                              gold=reply)
        # an episode's stage 2 shows no retrieval with the turn
        ctx = D.messages(item, guided=False, show_related=p not in from_episodes)
        out.append(Turn(item.id, "answer", ctx, [D.oracle_completion(item)], []))
    return out


def stage2_prompts(n: int, seed: int, per_turn: int = 2) -> list[str]:
    """Up to ``n`` stage-2 user turns of LongMemEval-format training episodes (``seed`` must not
    be the evaluation's): filler questions, ``per_turn`` joined as the episode runner joins them."""
    from agemem_lite.episodes import pack_turns
    from agemem_lite.eval.harness import build_tasks

    out: list[str] = []
    for t in build_tasks("longmemeval", max(1, n), seed, n_distractors=0):
        out += pack_turns(t.distractors, max(1, len(t.distractors) // per_turn), per_turn)
        if len(out) >= n:
            break
    return list(dict.fromkeys(out))[:n]


def _answers_it(own: list[tuple[str, str]], answer: str, *, abstain: bool = False) -> str:
    """The think's reason for a stage-3 answer, naming what holds it among the task's ``own``
    memories: the latest one that states ``answer`` (a knowledge-update task's new value comes
    after the old one); all of them where none states it (a count of days, a list across
    sessions, a comparison); none for an abstention (``abstain``: the question asks about
    something the user never mentioned)."""
    if abstain:
        return "No memory answers it, so say so."
    held = [m for m, c in own if answer.lower() in c.lower()]
    if held:
        return f"{held[-1]} answers it."
    ids = [m for m, _ in own]
    return f"{ids[0]} answers it." if len(ids) == 1 else f"{', '.join(ids[:-1])} and {ids[-1]} answer it."


def worked_reason(task) -> str | None:
    """For a HotpotQA task, the think's reasoning written out after it names both memories; None
    for any other task, or where it cannot be read off the generator's gold facts.

    - bridge: the hop from the question's entity through the bridge entity to the answer
      (``"Zourquusk Group → Brio Kask → Mirnvrarvale."``);
    - comparison: both numbers and which one wins
      (``"Pyxvux River 540, Trornkun River 720. The larger is 720, so Trornkun River."``).

    Why: given both memories, v7 answered 34 of 60 HotpotQA stage-3 questions right
    (``bench/answer_from_memory.py``, seed 0): its think names one memory ("mem_6 answers it.") and
    the answer is picked at once, so a bridge answer stops at the bridge entity and a comparison
    answer is a coin flip between the two. Written out, each hop or number stands in the think
    before the answer is picked. Measured (docs/training.md, "The reason stage alone"): a round
    trained with it answered worse (22 of 60), and v7 with the think prefilled up to the
    decision still picks the larger of two numbers at chance, so no shipped round uses it."""
    if task.source != "hotpotqa" or len(task.key_items) != 2 or len(task.gold_facts) != 2:
        return None
    (a, b), answer, kind = task.key_items, task.answers[0], task.metadata.get("type")
    if kind == "bridge":
        return f"{a} → {b} → {answer}." if a in task.question else None
    if kind != "comparison":
        return None
    from agemem_lite.eval.hotpot import winning_number

    nums = [re.search(r"\b\d+\b", s) for s in task.gold_facts]
    wins = winning_number(task.question)
    if not all(nums) or wins is None:
        return None
    na, nb = (int(m.group()) for m in nums)
    if na == nb:
        return None
    win_n, win = (max if wins == "larger" else min)((na, a), (nb, b))
    if win != answer:
        return None
    return f"{a} {na}, {b} {nb}. The {wins} is {win_n}, so {win}."


def question_turns(n: int, seed: int, *, benches: Sequence[str] = ("hotpot", "longmemeval"),
                   retrieve_share: float = 0.5, max_unrelated: int = 2, worked_think: bool = False,
                   hotpot: int = 0, demonstrations: bool = False) -> list[Turn]:
    """Stage-3 turns of ``n`` training episodes (``seed`` must not be the evaluation's): the question
    with the short-answer instruction; its information turns as memories, either shown with the question
    (answer at once) or, for a ``retrieve_share`` of them, found by Retrieve_memory (search, hits,
    answer: an episode's stage 3 shows no retrieval). The reply is the gold short answer, so the step
    that the episode judges learns the form they score. ``worked_think``: a HotpotQA think names
    both memories and writes the hop or the comparison out (``worked_reason``); ``hotpot``: that
    many more HotpotQA tasks (generator seed ``seed + 1``) join the ``n``. ``demonstrations``: the
    contexts carry the prompted policy's demonstrations (to measure a prompted policy on them).

    Up to ``max_unrelated`` memories of other tasks join the task's own, and shown memories and hits
    are shuffled: the think names the memory that holds the answer, wherever it stands. (v5 always
    found it last among the hits, learnt the position, and answered "my dentist?" with the shown
    birthday that a search had listed last.)"""
    from agemem_lite.eval.harness import build_tasks

    r = random.Random(f"questions:{seed}")
    per = [n // len(benches) + (i < n % len(benches)) for i in range(len(benches))]
    tasks = [t for bench, k in zip(benches, per) for t in build_tasks(bench, k, seed, n_distractors=0)]
    if hotpot:
        tasks += build_tasks("hotpot", hotpot, seed + 1, n_distractors=0)
    out: list[Turn] = []
    for t in tasks:
        start = r.randrange(1, 30)
        mems = [(f"mem_{start + j}", f) for j, f in enumerate(t.information)]
        answer = t.answers[0]
        why = _answers_it(mems, answer, abstain=t.unanswerable)
        if worked_think and (worked := worked_reason(t)):   # both memories, then the hop or comparison
            why = f"{' and '.join(m for m, _ in mems)} answer it. {worked}"
        reply = render_step(f"Kind: question. {why}", answer=answer)
        pool = [f for o in tasks if o is not t for f in o.information if answer.lower() not in f.lower()]
        extra = r.sample(pool, min(r.randint(0, max_unrelated), len(pool)))
        mems += [(f"mem_{start + len(mems) + j}", f) for j, f in enumerate(extra)]
        mems = r.sample(mems, len(mems))
        user = prompts.render_question(t.question)
        if r.random() < 1 - retrieve_share:
            item = D.DecisionItem(id=f"q-{t.id}", split="train", label="answer", user=user,
                                  shown=mems, kind="question", basis="memory", gold=answer)
            out.append(Turn(item.id, "answer", D.messages(item, guided=demonstrations), [reply], []))
            continue
        item = D.DecisionItem(id=f"q-{t.id}", split="train", label="retrieve", user=user, kind="question",
                              gold=t.question.split("] ", 1)[-1])
        ctx = D.messages(item, guided=demonstrations, show_related=False)   # stage 3 shows no retrieval
        out.append(Turn(item.id + "+ret", "retrieve", ctx,
                        [D.oracle_completion(item), reply],
                        [D.search_result(mems)]))
    return out


def _stored_text(text: str) -> str:
    """What the oracle stores for an information turn: a LongMemEval turn verbatim (its date and
    speaker matter to temporal and assistant questions), a HotpotQA paragraph without its
    "I was reading about X today." opening."""
    from agemem_lite.episodes import PARAGRAPH_TURN

    opening = PARAGRAPH_TURN.split("{text}")[0]   # "I was reading about {title} today. ", any title
    m = re.match(".+?".join(re.escape(part) for part in opening.split("{title}")), text)
    return text[m.end():] if m else text


def info_turns(n: int, seed: int, *, benches: Sequence[str] = ("hotpot", "longmemeval")) -> list[Turn]:
    """Stage-1 turns of ``n`` training episodes (``seed`` must not be the evaluation's) with the
    oracle's memory writes, in the episode's own wording (dated "[date] user: ..." turns,
    "I was reading about ..." paragraphs), which the decision set does not use.

    Each turn is shown the memories stored for the earlier turns of its task, as the episode's
    retrieval shows them: a new fact next to a related one is still an Add (the policy had
    turned such turns into Updates of the shown memory), while the turn of a knowledge-update task
    that carries the new value updates the memory holding the old one."""
    from agemem_lite.episodes import pack_turns
    from agemem_lite.eval.harness import build_tasks

    r = random.Random(f"info:{seed}")
    per = [n // len(benches) + (i < n % len(benches)) for i in range(len(benches))]
    out: list[Turn] = []
    for bench, k in zip(benches, per):
        for t in build_tasks(bench, k, seed, n_distractors=0):
            old = t.metadata.get("old_answer")
            stored: list[tuple[str, str]] = []
            for j, text in enumerate(pack_turns(t.information, 8)):
                content = _stored_text(text)
                target = next((m for m, c in stored if old and old in c), None)
                if target and t.answers[0] in text:
                    item = D.DecisionItem(id=f"info-{t.id}-{j}", split="train", label="update", user=text,
                                          shown=list(stored), target_id=target, kind="changed fact", gold=content)
                    stored = [(m, content if m == target else c) for m, c in stored]
                    result = f"{target} updated"
                else:
                    mid = r.choice([f"mem_{i}" for i in range(1, 60) if all(m != f"mem_{i}" for m, _ in stored)])
                    item = D.DecisionItem(id=f"info-{t.id}-{j}", split="train", label="add", user=text,
                                          shown=list(stored), kind="new fact", gold=content)
                    stored.append((mid, content))
                    result = f"stored as {mid}"
                out.append(_write_turn(item, result, r))
    return out


#: How the two facts of one message are joined (train wordings; the chat probes use none of them).
TWO_FACT_JOINERS = (" and ", ", and ", ". Also, ", "; ")
#: Openings of such a message, and its name facts (the decision set has no name fact type).
TWO_FACT_OPENERS = ("", "", "Hello! ", "Hey! ")
NAME_PHRASINGS = ("my name is {v}", "call me {v}", "{v} here")
#: Requests for everything stored about the user (train wordings; none is a chat probe's).
OVERVIEW_ASKS = ("what do you have on me?", "Give me a rundown of what you've stored about me.",
                 "what details about me are you keeping?", "Summarise what you know of me, please.",
                 "which facts about me do you hold?", "anything you recall about me?",
                 "what's in your memory about me?", "Run through my details for me.")


def two_fact_turns(n: int, seed: int) -> list[Turn]:
    """``n`` messages that state two new facts ("Hello! call me Ines and I drive a red Fiat.")
    answered by one step with two Add_memory calls, one sentence each, then the reply.

    Why: in chat v7 stored one fact of such a message and dropped the other ("Hi! I'm Priya and I
    live in Bristol." → "I live in Bristol"): every Add it learnt stores one fact."""
    r = random.Random(f"two-facts:{seed}")
    out: list[Turn] = []
    for i in range(n):
        b = D.ItemBuilder(r, "train")
        with_name = r.random() < 0.3
        types = r.sample(sorted(D.FACTS), 1 if with_name else 2)
        item = D.DecisionItem(id=f"two-{seed}-{i}", split="train", label="add", user="", kind="new fact")
        item.history, stored = b.short_history(set(types))
        facts: list[tuple[str, str, str, str]] = []   # (what the user says, memory sentence, type, value)
        if with_name:
            v = b.names.first_name()
            facts.append((r.choice(NAME_PHRASINGS).format(v=v), f"The user's name is {v}.", "fact", v))
        for name in types:
            f = D.FACTS[name]
            sl = b.slots(f)
            _, ph = b.phrasing(f, "add")
            facts.append((ph.format(**sl), f.sentence.format(**sl), f.memory_type, sl["v"]))
        r.shuffle(facts)
        opener = r.choice(TWO_FACT_OPENERS)   # drawn before the joiner: round X's data depends on it
        first = facts[0][0][:1].upper() + facts[0][0][1:]
        item.user = opener + first + r.choice(TWO_FACT_JOINERS) + facts[1][0] + "."
        item.shown = [(m, c) for m, c, _, _ in b.distractors(r.choice([0, 0, 1, 2]), set(types))] + stored[:1]
        r.shuffle(item.shown)
        calls = [{"name": "Add_memory", "arguments": {"content": sent, "memory_type": mtype}}
                 for _, sent, mtype, _ in facts]
        think = f"Kind: new fact. Two new facts, so store both: {facts[0][3]} and {facts[1][3]}."
        ids = r.sample([k for k in range(1, 60) if f"mem_{k}" not in {m for m, _ in item.shown}], 2)
        done = render_step("Kind: new fact. Stored, so reply.", answer=r.choice(_REPLIES["add"]))
        out.append(Turn(item.id, "add", D.messages(item), [render_step(think, calls=calls), done],
                        [[prompts.render_tool_result("Add_memory", True, f"stored as mem_{k}") for k in ids]]))
    return out


def overview_turns(n: int, seed: int) -> list[Turn]:
    """``n`` requests for everything stored about the user, with 2-5 memories shown (as the
    runtime shows the newest memories for a message that names nothing), answered by stating
    each of them to the user.

    Why: asked "What do you know about me?" with its memories shown, v7 stated one of them."""
    r = random.Random(f"overview:{seed}")
    out: list[Turn] = []
    for i in range(n):
        b = D.ItemBuilder(r, "train")
        shown = b.distractors(r.randint(2, 5), set())
        item = D.DecisionItem(id=f"overview-{seed}-{i}", split="train", label="answer",
                              user=r.choice(OVERVIEW_ASKS), kind="question", basis="memory",
                              shown=[(m, c) for m, c, _, _ in shown])
        ids = [m for m, *_ in shown]
        named = f"{', '.join(ids[:-1])} and {ids[-1]}"
        answer = " ".join(f.answer.format(**sl) for _, _, f, sl in shown)
        step = render_step(f"Kind: question. {named} are about the user, so list them.", answer=answer)
        out.append(Turn(item.id, "answer", D.messages(item), [step], []))
    return out


def with_context_usage(turns: list[Turn], count_tokens: Callable[[str], int]) -> list[Turn]:
    """``turns`` with the context-usage line on every user turn, counted with the serving
    tokenizer as ``Agent(context_usage=True)`` counts it; each turn's budget is the one its
    system prompt states (Filter/Summary items are generated for ``long_budget``)."""
    return [replace(t, context=D.with_context_usage(t.context, 1, prompts.budget_of(t.context[0]["content"]),
                                                    count_tokens)) for t in turns]


#: The think of the reply after a context edit (``edit_reply_turns``).
_EDITED = {"Filter_context": "Filtered, so reply.", "Summary_context": "Summarised, so reply."}


def edit_reply_turns(turns: list[Turn], policy, embed: Callable[[str], object], *, usage: bool = False,
                     filter_threshold: float = 0.6, cache: Path | None = None, max_reply_tokens: int = 256,
                     log=print) -> list[Turn]:
    """For each Filter/Summary turn of ``turns``, the turn's next step: the oracle's call run by the
    runtime's own tool on a ``Context`` of the turn (Filter with ``embed``, the serving embedder, and
    ``filter_threshold``, the serving θ; Summary with ``stm.extractive_summary``, the runtime's
    fallback: the base 0.5B model, asked on the raw transcript, copied the last acknowledgement
    or refused), then the reply to the user's
    words, which ``policy`` (the base model) writes greedily outside the protocol, after the
    summary for Summary. ``usage``: the tool result ends with the context-usage line after the
    edit, as ``Agent(context_usage=True)`` writes it (the user turn keeps the line it came with).
    A reply cut by ``max_reply_tokens`` ends at its last full sentence; one without any, or
    with tag-like text, is skipped. ``cache``: a JSON file of replies (prompt -> text), so a
    rerun does not generate again."""
    from agemem_lite.memory.stm import Context, extractive_summary
    from agemem_lite.memory.tools import TOOLS, ToolEnv
    from agemem_lite.protocol import parse_step

    done = json.loads(cache.read_text()) if cache is not None and cache.is_file() else {}

    def reply_to(user: str) -> str:
        key = f"{REPLAY_SYSTEM}\n---\n{user}"   # the key names the system prompt: caches of older runs stay valid
        if key not in done:
            done[key] = greedy_reply(policy.llm, user, max_reply_tokens, cut=True)
        return done[key]

    out: list[Turn] = []
    removed = []
    for t in turns:
        if t.label not in ("filter", "summary") or len(t.steps) != 1:
            continue
        parsed = parse_step(t.steps[0])
        if not parsed.calls or parsed.calls[0].name not in _EDITED:
            continue
        call = parsed.calls[0]
        budget = prompts.budget_of(t.context[0]["content"])
        ctx = Context(policy.count_tokens, budget)
        for m in t.context:
            ctx.append(m["role"], m["content"])
        env = ToolEnv(store=None, embed=embed, namespace="", context=ctx,
                      summarise=extractive_summary, filter_threshold=filter_threshold,
                      usage=(lambda: prompts.render_context_usage(ctx.tokens, budget)) if usage else None)
        result = TOOLS[call.name][0](env, call.arguments)
        words = prompts.user_text_of(t.context[-1]["content"])
        summary = result.data.get("summary") if call.name == "Summary_context" else None
        if call.name == "Filter_context":
            removed.append(result.data["messages"])
        reply = reply_to(f"{summary}\n\n{words}" if summary else words)
        if not reply or "<" in reply:
            continue
        kind = re.match(r"Kind: ([a-z ]+)\.", parsed.think)
        step = render_step(f"Kind: {kind.group(1) if kind else 'question'}. {_EDITED[call.name]}", answer=reply)
        context = ctx.as_dicts() + [{"role": "assistant", "content": t.steps[0]},
                                    {"role": "tool", "content": prompts.render_tool_result(call.name, True, result.text)}]
        out.append(Turn(t.item_id + "+edit", t.label, context, [step], []))
    if cache is not None:
        cache.write_text(json.dumps(done, indent=1, ensure_ascii=False))
    if removed:
        log(f"edit replies: {len(out)} turns; Filter removed {sum(removed) / len(removed):.1f} messages on average "
            f"({sum(r == 0 for r in removed)} of {len(removed)} removed none)")
    return out


def _edit_replies(base_gguf: Path, turns: list[Turn], settings, *, usage: bool, long_budget: int,
                  cache: Path, log) -> list[Turn]:
    """``edit_reply_turns`` with the base GGUF (a window for a ``long_budget`` context), and the
    embedder and Filter θ that ``settings`` names (the defaults when None), as serving uses them."""
    from agemem_lite.config import Settings
    from agemem_lite.embed import load_embedder
    from agemem_lite.policy.llama import LlamaPolicy

    settings = settings or Settings()
    writer = LlamaPolicy(base_gguf, n_ctx=long_budget + 1024)
    try:
        with load_embedder(settings) as emb:
            return edit_reply_turns(turns, writer, emb.embed_one, usage=usage,
                                    filter_threshold=settings.filter_threshold, cache=cache, log=log)
    finally:
        writer.close()


def step_pieces(step: str) -> list[str]:
    """``step`` as ``LlamaPolicy.step`` tokenises it: the runtime writes ``<answer>`` (or a grammar
    ends there) and generates the reply after a prompt tokenised up to that point, so the reply is
    its own piece. One tokenize call over the whole step merged the tag with the reply's first
    word (Qwen2.5: ``>To``, ``>The``, ``>D``; two of three replay replies start so), a token the
    runtime never lets the model produce: replies were learnt after a boundary it never sees.
    Everything before it is tokenised as one, as the runtime tokenises the text it continues."""
    i = step.find(protocol.ANSWER_OPEN)
    if i < 0:
        return [step]
    cut = i + len(protocol.ANSWER_OPEN)
    return [step[:cut], step[cut:]] if cut < len(step) else [step]


def tokenize_turn(tok, turn: Turn) -> tuple[list[int], list[int]]:
    """(input_ids, completion_mask): the context, then each step (in the loss) followed by its
    tool result and the next generation prompt (not in the loss), as the rollout sees them.

    ``tok`` is a ``LlamaPolicy`` (its ``render``/``tokenize``). The step text is tokenised
    without specials, piece by piece (``step_pieces``), as ``LlamaPolicy.step`` continues a prompt."""
    msgs = list(turn.context)
    ids: list[int] = []
    mask: list[int] = []
    rendered = ""
    for i, step in enumerate(turn.steps):
        full = tok.render(msgs)
        if not full.startswith(rendered):
            raise ValueError(f"{turn.item_id}: the chat template does not render the turn as a prefix")
        head = tok.tokenize(full[len(rendered):])
        body = [t for piece in step_pieces(step) for t in tok.tokenize(piece, special=False)]
        ids += head + body
        mask += [0] * len(head) + [1] * len(body)
        rendered = full + step
        msgs = msgs + [{"role": "assistant", "content": step}]
        if i < len(turn.tool_results):
            msgs += tool_messages(turn.tool_results[i])
    return ids, mask


def dataset_rows(tok, turns: list[Turn], max_tokens: int) -> tuple[list[dict], int]:
    """TRL rows (pre-tokenised); turns longer than ``max_tokens`` are dropped (count returned)."""
    rows, dropped = [], 0
    for t in turns:
        ids, mask = tokenize_turn(tok, t)
        if len(ids) > max_tokens:
            dropped += 1
            continue
        rows.append({"input_ids": ids, "completion_mask": mask})
    return rows, dropped


def run_sft(base_gguf: Path, folder: Path, out: Path, *, n_items: int, seed: int, epochs: float, lr: float,
            lora_r: int, lora_alpha: int, targets: list[str], long_share: float = 0.5, long_budget: int = 2048,
            max_tokens: int = 4096, threads: int = 0, bf16: bool = True, log=print,
            progress: bool = True, classes: Sequence[str] = D.CLASSES, init_adapter: Path | None = None,
            replay: int = 0, questions: int = 0, stage2: int = 0, question_seed: int = 1000,
            question_retrieve: float = 0.5, episodes: int = 0, pack: int = 1, wide_long: bool = False,
            long_think: str | None = None, fact_think: str = "plain", context_usage: bool = False,
            edit_replies: bool = False, worked_think: bool = False, hotpot_questions: int = 0,
            two_facts: int = 0, overviews: int = 0, settings=None) -> dict:
    """Supervised warm start. Writes ``out/adapter`` (PEFT), ``out/adapter.gguf`` (llama.cpp LoRA)
    and ``out/sft.json`` (data size, loss, wall time, peak RSS). Returns the summary.
    ``replay`` / ``stage2`` / ``questions``: that many self-distilled answers to open requests /
    to stage-2 distractor turns, and stage-3 episode turns (``question_seed``: the generator
    seed of those episodes) join the oracle turns; ``question_retrieve``: the share of those questions
    answered after a search; ``episodes``: stage-1 turns of that many training episodes with the
    oracle's Add/Update (``info_turns``).
    ``pack``: rows that share a prefix (the system prompt) run as one sequence, up to that many
    (``train.packing``; same loss and gradients, fewer tokens); an optimizer step still covers
    about four rows (gradient accumulation 4 // pack).
    ``init_adapter``: continue training that PEFT adapter folder (an earlier round) or GGUF LoRA
    adapter (the shipped policy) instead of new ones. ``wide_long``, ``long_think``, ``fact_think``: see
    ``build_turns``. ``context_usage``: every user turn carries the context-usage line
    (``with_context_usage``), for a policy served with ``ModelSpec.context_usage``.
    ``edit_replies``: each Filter/Summary turn also gets its next step, the reply after the edit
    (``edit_reply_turns``; ``settings`` names the embedder Filter uses). ``worked_think``:
    see ``question_turns``; ``hotpot_questions``: that many more HotpotQA stage-3 turns (its ``hotpot``).
    ``two_facts`` / ``overviews``: that many ``two_fact_turns`` / ``overview_turns`` (seeded by ``seed``)."""
    import resource

    import torch

    from agemem_lite.policy.llama import LlamaPolicy

    from .lora import set_threads

    t0 = time.perf_counter()
    set_threads(threads)
    torch.manual_seed(seed)
    long_think = resolve_long_think(long_think, wide_long)
    turns = build_turns(n_items, seed, long_share=long_share, long_budget=long_budget, classes=classes,
                        wide_long=wide_long, long_think=long_think, fact_think=fact_think)
    out.mkdir(parents=True, exist_ok=True)
    if replay or stage2:
        extra = stage2_prompts(stage2, question_seed + seed) if stage2 else []
        turns += replay_turns(base_gguf, replay, seed, cache=out / "replay.json", extra=extra, n_extra=stage2)
    if questions or hotpot_questions:
        turns += question_turns(questions, question_seed + seed, retrieve_share=question_retrieve,
                                worked_think=worked_think, hotpot=hotpot_questions)
    if episodes:
        turns += info_turns(episodes, question_seed + seed)
    if two_facts:
        turns += two_fact_turns(two_facts, seed)
    if overviews:
        turns += overview_turns(overviews, seed)
    tok = LlamaPolicy(base_gguf, n_ctx=512, n_threads=1)
    try:
        if context_usage:
            turns = with_context_usage(turns, tok.count_tokens)
        if edit_replies:
            turns += _edit_replies(base_gguf, turns, settings, usage=context_usage, long_budget=long_budget,
                                   cache=out / "edit_replies.json", log=log)
        rows, dropped = dataset_rows(tok, turns, max_tokens)
    finally:
        tok.close()
    n_tokens = sum(len(r["input_ids"]) for r in rows)
    n_loss = sum(sum(r["completion_mask"]) for r in rows)
    log(f"warm start: {len(rows)} turns ({dropped} over {max_tokens} tokens dropped), "
        f"{n_tokens} tokens, {n_loss} in the loss")
    trained = train_on_rows(rows, base_gguf, folder, out, epochs=epochs, lr=lr, lora_r=lora_r,
                            lora_alpha=lora_alpha, targets=targets, seed=seed, pack=pack, bf16=bf16,
                            init_adapter=init_adapter, progress=progress, log=log)
    log_history = trained.pop("log_history")
    summary = {
        "turns": len(rows), "dropped": dropped, "tokens": n_tokens, "loss_tokens": n_loss,
        "by_class": {c: sum(t.label == c for t in turns) for c in D.CLASSES},
        "epochs": epochs, "lr": lr, "lora_r": lora_r, "lora_alpha": lora_alpha, "seed": seed, "n_items": n_items,
        "classes": list(classes), "long_share": long_share,
        "replay": replay, "stage2": stage2, "questions": questions, "question_retrieve": question_retrieve,
        "episodes": episodes, "init_adapter": str(init_adapter or ""), "wide_long": wide_long,
        "long_think": long_think, "fact_think": fact_think, "context_usage": context_usage,
        "edit_replies": edit_replies, "worked_think": worked_think, "hotpot_questions": hotpot_questions,
        "two_facts": two_facts, "overviews": overviews, "pack": pack, **trained,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
    (out / "sft.json").write_text(json.dumps(summary, indent=2))
    (out / "sft_log.json").write_text(json.dumps(log_history, indent=1))
    return summary


def train_on_rows(rows: list[dict], base_gguf: Path, folder: Path, out: Path, *, epochs: float, lr: float,
                  lora_r: int, lora_alpha: int, targets: Sequence[str], seed: int = 0, pack: int = 1,
                  bf16: bool = True, init_adapter: Path | None = None, progress: bool = True,
                  check_export: bool = True, log=print) -> dict:
    """The training half of the warm start: LoRA SFT of the HF copy ``folder`` on tokenised
    ``rows`` (``dataset_rows``), written as ``out/adapter`` (PEFT) and ``out/adapter.gguf`` for
    ``base_gguf``. It needs torch but not llama.cpp, so rows made on a laptop can train on a GPU
    machine (``bench/bench_train_device.py``; there ``check_export=False``, since loading the
    exported adapter back needs llama.cpp). Returns the run's numbers and ``log_history``."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from .base import load_model
    from .export import export_adapter

    n_tokens = sum(len(r["input_ids"]) for r in rows)
    packed = {}
    if pack > 1:
        from .packing import collate_packs, install_tree_attention, pack_rows

        rows = list(rows)
        random.Random(f"pack:{seed}").shuffle(rows)
        rows = pack_rows(rows, max_rows=pack)
        packed = {"collator": collate_packs, "tokens": sum(len(r["input_ids"]) for r in rows)}
        log(f"packed into {len(rows)} sequences of up to {pack} turns sharing a prefix: "
            f"{packed['tokens']} tokens to run ({packed['tokens'] / max(n_tokens, 1):.0%})")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    model = load_model(folder)
    hook = install_tree_attention(model) if packed else None
    peft_cfg = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0, bias="none",
                          target_modules=list(targets), task_type="CAUSAL_LM")
    if init_adapter is not None and Path(init_adapter).suffix == ".gguf":
        from peft import get_peft_model

        from .export import import_adapter

        model = get_peft_model(model, peft_cfg)
        import_adapter(model, init_adapter, base_gguf)
    elif init_adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
    args = SFTConfig(
        output_dir=str(out / "trl"), num_train_epochs=epochs, per_device_train_batch_size=1,
        gradient_accumulation_steps=max(1, 4 // pack), remove_unused_columns=not packed,
        learning_rate=lr, lr_scheduler_type="cosine", warmup_steps=2,
        logging_steps=5, save_strategy="no", report_to=[], seed=seed, data_seed=seed,
        bf16=bf16, use_cpu=not cuda, completion_only_loss=True,
        max_length=None, gradient_checkpointing=False, dataloader_num_workers=0, disable_tqdm=not progress)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                         peft_config=None if init_adapter is not None else peft_cfg,
                         data_collator=packed.get("collator"))
    result = trainer.train()
    if hook is not None:
        hook.remove()
    peft_model = trainer.model
    peft_model.save_pretrained(str(out / "adapter"))
    gguf_path = export_adapter(peft_model, base_gguf, out / "adapter.gguf", dtype="f16", check=check_export)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "device": "cuda" if cuda else "cpu",
        "sequences": len(rows), "tokens_run": packed.get("tokens", n_tokens),
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
        "train_loss": result.training_loss, "train_seconds": round(result.metrics.get("train_runtime", 0.0), 1),
        **({"peak_vram_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)} if cuda else {}),
        "adapter_gguf": str(gguf_path), "adapter_bytes": gguf_path.stat().st_size,
        "log_history": trainer.state.log_history,
    }
