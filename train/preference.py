"""A preference round (DPO) on the policy's own mistakes.

Why: each supervised round raises the likelihood of the oracle's step and leaves the policy's
own wrong step alone, and a dozen short rounds on top of v6/v7 (docs/training.md) moved
decisions between classes more than they removed mistakes. DPO (Rafailov et al., 2023) trains
on pairs: the right step (chosen) against the step the policy itself wrote (rejected), in the
same context, anchored to the starting policy by ``beta``, so a step it already gets right has
no pair and little reason to move.

Pairs come from decision items of the *train* split (``agemem_lite.decisions``; wordings and
entities disjoint from the held-out and natural sets): the serving policy's greedy step on each
item (``decisions.run_decisions``), kept where it is wrong (``is_mistake``), with the oracle's
step (``decisions.oracle_completion``) as chosen. A chosen and a rejected step share their
context, so both run as one packed sequence (``train.packing``'s tree attention): the context
is computed once per pair.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from agemem_lite import decisions as D
from agemem_lite.protocol import render_step

from .packing import PACK_TOKENS
from .warm_start import step_pieces


@dataclass(frozen=True)
class Pair:
    """One context, the step the oracle takes in it, and the one the policy took; ``source`` says
    which builder made it ("mistake", "anchor" or "reason")."""

    item_id: str
    label: str
    context: list[dict]
    chosen: str
    rejected: str
    source: str = "mistake"


def is_mistake(record: dict) -> bool:
    """A decision record (``run_decisions``) that is wrong: the action, the Update/Delete id,
    the new value in an Add/Update, or an answer that should have said it is not known."""
    return (not record["correct"] or record.get("id_correct") is False
            or record.get("value_correct") is False or record.get("abstain_correct") is False
            or record.get("found_correct") is False)


def check_records(items: Sequence[D.DecisionItem], records: Sequence[dict]) -> None:
    """ValueError unless ``records`` are one per item of ``items``, in order (a saved run's records
    belong to the items generated again from the same n and seed)."""
    if len(items) != len(records):
        raise ValueError(f"{len(items)} items but {len(records)} records")
    for it, rec in zip(items, records):
        if rec["id"] != it.id:
            raise ValueError(f"record {rec['id']} is not item {it.id}: the items were generated differently")


def mistake_pairs(items: Sequence[D.DecisionItem], records: Sequence[dict], *, budget: int | None = None,
                  context_usage=None, fact_think: str = "value_end", long_think: str = "plain") -> list[Pair]:
    """A pair for each item whose record ``is_mistake``, in the context the record was made in
    (``budget`` and ``context_usage``, a token counter or None, as given to ``run_decisions``;
    no demonstrations: a trained policy is served without them)."""
    check_records(items, records)
    pairs = []
    for it, rec in zip(items, records):
        if not is_mistake(rec):
            continue
        chosen = D.oracle_completion(it, long_think=long_think, fact_think=fact_think)
        if chosen.strip() == rec["completion"].strip():
            continue
        ctx = D.messages(it, budget=budget, guided=False, count_tokens=context_usage)
        pairs.append(Pair(it.id, it.label, ctx, chosen, rec["completion"]))
    return pairs


def confused_step(item: D.DecisionItem) -> str | None:
    """The step a policy that confuses this item's class with its neighbour writes: an Add of
    the new value where an Update was right, an Update of a shown memory for an Add, an Add of
    the user's words for a Delete, "not told" before any search where a Retrieve was right.
    None for other classes (or an Add with nothing shown)."""
    think = f"Kind: {item.kind}. "
    if item.label == "update":
        return render_step(think + "Store it.", calls=[{"name": "Add_memory", "arguments": {"content": item.gold}}])
    if item.label == "add" and item.shown:
        mid = item.shown[0][0]
        return render_step(think + f"{mid} is out of date, so update it.",
                           calls=[{"name": "Update_memory", "arguments": {"memory_id": mid, "content": item.gold}}])
    if item.label == "delete":
        return render_step(think + "Store it.", calls=[{"name": "Add_memory", "arguments": {"content": item.user}}])
    if item.label == "retrieve":
        return not_told_step(item.kind)
    return None


def anchor_pairs(items: Sequence[D.DecisionItem], records: Sequence[dict], *, budget: int | None = None,
                 context_usage=None, fact_think: str = "value_end") -> list[Pair]:
    """For each item the policy got right whose class has a neighbour (``confused_step``): the
    oracle's step against the neighbour's. Why: pairs of mistakes alone teach what not to do on
    the classes the policy gets wrong, and DPO then lowered every tool call it had been right
    about (round A in docs/training.md: held-out Update, Delete and Retrieve 0/4 each)."""
    pairs = []
    for it, rec in zip(items, records):
        if is_mistake(rec) or (rejected := confused_step(it)) is None:
            continue
        ctx = D.messages(it, budget=budget, guided=False, count_tokens=context_usage)
        pairs.append(Pair(it.id + "+anchor", it.label, ctx, D.oracle_completion(it, fact_think=fact_think), rejected,
                          "anchor"))
    return pairs


def not_told_step(kind: str = "question") -> str:
    """The step that says the answer is not known, as the oracle writes it after an empty search."""
    return render_step(f"Kind: {kind}. No memory answers it, so say so.", answer=D.UNKNOWN_REPLY)


def reason_pairs(pol, n: int, seed: int, *, bench: str = "longmemeval", log=print) -> tuple[list[Pair], list[dict]]:
    """Pairs from the reason stage: the stage-3 turns of ``n`` training episodes of ``bench`` at
    generator ``seed``, whose memories a Retrieve_memory already found (``warm_start.question_turns``,
    the turns of ``bench/answer_from_memory.py``), and ``pol``'s greedy step in each.
    - a wrong step (a tool call, or an answer ``rewards.answer_score`` gives 0): the oracle's answer
      against it;
    - a right answer to an answerable question: that answer against ``not_told_step`` (an anchor).
    Why: rounds A-C learnt "after a search, say you were not told" from decision pairs whose every
    search had found nothing; here most searches find the answer. Returns the pairs and a record
    per turn (id, type, completion, em, pair)."""
    from agemem_lite.eval.harness import build_tasks
    from agemem_lite.protocol import parse_step
    from agemem_lite.rewards import answer_score

    from .warm_start import question_turns

    tasks = {f"q-{t.id}": t for t in build_tasks(bench, n, seed, n_distractors=0)}
    pairs, records = [], []
    t0 = time.perf_counter()
    for turn in question_turns(n, seed, benches=(bench,), retrieve_share=1.0):
        ctx = turn.before_last_step()
        task = tasks[turn.item_id.removesuffix("+ret")]
        text = pol.step(ctx).text
        answer = parse_step(text).answer
        em = answer_score(answer, task.answers, "em", unanswerable=task.unanswerable) if answer else 0.0
        kind = None
        if em < 1.0 and text.strip() != turn.steps[-1].strip():
            pairs.append(Pair(turn.item_id, "answer", ctx, turn.steps[-1], text, "reason"))
            kind = "mistake"
        elif em == 1.0 and not task.unanswerable:
            pairs.append(Pair(turn.item_id + "+anchor", "answer", ctx, text, not_told_step(), "reason"))
            kind = "anchor"
        records.append({"id": task.id, "type": task.metadata.get("type", "?"), "completion": text, "em": em,
                        "pair": kind})
    log(f"reason stage: {sum(r['em'] for r in records):.0f}/{len(records)} right on {bench} seed {seed} "
        f"in {time.perf_counter() - t0:.0f} s")
    return pairs, records


def pair_tokens(tok, pair: Pair) -> tuple[list[int], list[int], list[int]]:
    """(context, chosen, rejected) token ids: the context once, each step as the runtime
    continues a prompt (``warm_start.step_pieces``, as ``warm_start.tokenize_turn`` does)."""
    def step(text: str) -> list[int]:
        return [t for piece in step_pieces(text) for t in tok.tokenize(piece, special=False)]
    return tok.tokenize(tok.render(pair.context)), step(pair.chosen), step(pair.rejected)


def pair_logps(model, prompt: list[int], chosen: list[int], rejected: list[int], *, device: str, bf16: bool):
    """Summed log-probabilities of ``chosen`` and of ``rejected`` after ``prompt``, from one
    forward pass over ``prompt + chosen + rejected`` whose two branches both continue the
    prompt's positions (the tree mask of ``train.packing.install_tree_attention`` must be
    installed on ``model``)."""
    import torch

    from .lora import autocast

    p, c, r = len(prompt), len(chosen), len(rejected)
    ids = torch.tensor([prompt + chosen + rejected], device=device)
    pos = torch.tensor([list(range(p + c)) + list(range(p, p + r))], device=device)
    keep = c + r + 1                                  # logits from the prompt's last token on
    with autocast(device, bf16):
        out = model(input_ids=ids, position_ids=pos, logits_to_keep=keep, use_cache=False)
    logp = torch.log_softmax(out.logits[0].float(), dim=-1)   # row j: position p - 1 + j
    # chosen token k is predicted by row k; rejected token 0 by the prompt's last row (0), token k by row c + k
    rows_c = torch.arange(c, device=device)
    rows_r = torch.tensor([0] + list(range(c + 1, c + r)), device=device)
    lc = logp[rows_c, torch.tensor(chosen, device=device)].sum()
    lr = logp[rows_r, torch.tensor(rejected, device=device)].sum()
    return lc, lr


def dpo_loss(pol_c, pol_r, ref_c, ref_r, *, beta: float):
    """−log σ(β·((π_c − ref_c) − (π_r − ref_r))) on summed log-probabilities; also returns the
    margin inside σ (positive: the policy prefers the chosen step more than the reference did)."""
    import torch.nn.functional as F

    margin = beta * ((pol_c - ref_c) - (pol_r - ref_r))
    return -F.logsigmoid(margin), margin


def train_dpo(pairs: Sequence[Pair], base_gguf: Path, folder: Path, out: Path, *, init_adapter: Path | None = None,
              epochs: int = 1, lr: float = 5e-5, beta: float = 0.1, nll_weight: float = 0.0,
              accumulation: int = 4, lora_r: int = 8, lora_alpha: int = 16,
              targets: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
              seed: int = 0, bf16: bool = True, threads: int = 0, max_tokens: int = PACK_TOKENS,
              log=print) -> dict:
    """DPO of the GGUF LoRA ``init_adapter`` (the policy that wrote the rejected steps, also the
    reference; None: new adapters on ``folder``'s model) on ``pairs``; writes ``out/adapter.gguf``
    and ``out/preference.json``. The reference log-probs are those of the starting weights,
    computed once before the first update.
    ``nll_weight``: adds that times the chosen step's mean negative log-likelihood (as RPO does),
    which keeps DPO from lowering both steps at once. A pair longer than ``max_tokens`` (context and
    both steps) is left out: a packed pass keeps an L x L attention matrix per head and layer."""
    import resource

    import torch
    from peft import LoraConfig, get_peft_model

    from agemem_lite.policy.llama import LlamaPolicy

    from .base import load_model
    from .export import export_adapter, import_adapter
    from .lora import set_threads
    from .packing import install_tree_attention

    t0 = time.perf_counter()
    set_threads(threads)
    torch.manual_seed(seed)
    tok = LlamaPolicy(base_gguf, n_ctx=512, n_threads=1)
    try:
        tokens = [pair_tokens(tok, p) for p in pairs]
    finally:
        tok.close()
    keep = [i for i, (a, b, c) in enumerate(tokens) if len(a) + len(b) + len(c) <= max_tokens]
    long = [p.item_id for i, p in enumerate(pairs) if i not in set(keep)]
    pairs, data = [pairs[i] for i in keep], [tokens[i] for i in keep]
    if long:
        log(f"{len(long)} pairs over {max_tokens} tokens left out")
    if not pairs:
        raise ValueError(f"every pair is over {max_tokens} tokens")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(folder).to(device)
    model = get_peft_model(model, LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0, bias="none",
                                             target_modules=list(targets), task_type="CAUSAL_LM"))
    if init_adapter is not None:
        import_adapter(model, init_adapter, base_gguf)
    hook = install_tree_attention(model)
    model.eval()
    with torch.no_grad():     # the reference is the starting policy: its log-probs once, before any update
        ref = [tuple(x.item() for x in pair_logps(model, *d, device=device, bf16=bf16)) for d in data]
    log(f"reference log-probs of {len(data)} pairs in {time.perf_counter() - t0:.0f} s")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    order = list(range(len(data)))
    history = []
    for epoch in range(epochs):
        random.Random(f"dpo:{seed}:{epoch}").shuffle(order)
        for k, i in enumerate(order, 1):
            pol_c, pol_r = pair_logps(model, *data[i], device=device, bf16=bf16)
            loss, margin = dpo_loss(pol_c, pol_r, *ref[i], beta=beta)
            if nll_weight:
                loss = loss - nll_weight * pol_c / len(data[i][1])
            (loss / accumulation).backward()
            history.append({"epoch": epoch, "pair": pairs[i].item_id, "loss": round(loss.item(), 4),
                            "margin": round(margin.item(), 4), "chosen_delta": round(pol_c.item() - ref[i][0], 3),
                            "rejected_delta": round(pol_r.item() - ref[i][1], 3)})
            if k % accumulation == 0 or k == len(order):
                opt.step()
                opt.zero_grad()
            log(f"epoch {epoch + 1} pair {k}/{len(order)}: loss {history[-1]['loss']:.3f} "
                f"margin {history[-1]['margin']:+.3f}")
    hook.remove()
    out.mkdir(parents=True, exist_ok=True)
    gguf = export_adapter(model, base_gguf, out / "adapter.gguf", dtype="f16")
    last = history[-len(order):] if history else []
    summary = {
        "pairs": len(pairs), "left_out_long": long, "max_tokens": max_tokens, "by_label": {c: sum(p.label == c for p in pairs) for c in D.CLASSES},
        "tokens_per_epoch": sum(len(a) + len(b) + len(c) for a, b, c in data),
        "epochs": epochs, "lr": lr, "beta": beta, "nll_weight": nll_weight, "accumulation": accumulation,
        "seed": seed, "init_adapter": str(init_adapter or ""),
        "last_epoch_mean_margin": round(sum(h["margin"] for h in last) / max(len(last), 1), 4),
        "last_epoch_prefers_chosen": sum(h["margin"] > 0 for h in last),
        "adapter_gguf": str(gguf), "adapter_bytes": gguf.stat().st_size,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
    (out / "preference.json").write_text(json.dumps({**summary, "history": history,
                                                      "pairs_data": [asdict(p) for p in pairs]}, indent=1))
    return summary


def run_round(settings, out: Path, *, n: int, seed: int, records_file: Path | None = None,
              classes: Sequence[str] = D.CYCLE, fact_think: str = "value_end", anchors: bool = True,
              reason_n: int = 0, reason_seed: int = 2000, log=print, **train_kw) -> dict:
    """The whole round for ``settings.policy`` (with ``settings.adapter``, else its shipped adapter):
    its greedy steps on ``n`` train-split items of generator ``seed`` (or the records saved in
    ``records_file`` by an earlier round on the same items), the pairs (with ``anchor_pairs``
    unless ``anchors`` is False), with ``reason_pairs`` of ``reason_n`` LongMemEval questions at
    ``reason_seed`` (the warm start's question seeds are 1000 and 1007, the bench's 0), then
    ``train_dpo`` (``train_kw``). Writes ``out/records.json`` (and ``out/reason.json``) too."""
    from agemem_lite.assistant import open_policy, wants_context_usage, wants_demonstrations
    from agemem_lite.errors import ConfigError
    from agemem_lite.model_files import adapter_path, check_adapter, get_spec, resolve
    from agemem_lite.policy.llama import LlamaPolicy

    from .base import materialise

    spec = get_spec(settings, settings.policy)
    adapter = check_adapter(settings.adapter) if settings.adapter else adapter_path(spec)
    if adapter is None:
        raise ConfigError(f"{spec.name} has no LoRA adapter: a preference round continues a trained policy "
                          "(--policy agemem-0.5b, or --adapter FILE)")
    if wants_demonstrations(settings):
        raise ConfigError(f"{spec.name} is served with the demonstrations (a prompted policy); "
                          "a preference round continues a trained one")
    items = D.generate(n, seed, "train", classes=classes)
    if records_file is not None:
        try:
            records = json.loads(Path(records_file).read_text())
            check_records(items, records)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"--records {records_file}: not the records of {n} items of seed {seed} ({e})") from None
    base_gguf = resolve(settings, spec.name)
    out.mkdir(parents=True, exist_ok=True)
    reason: list[Pair] = []
    if records_file is None or reason_n:
        pol = open_policy(settings)
        try:
            if records_file is None:
                t0 = time.perf_counter()
                records = D.run_decisions(pol, items, budget=settings.context_budget, guided=False,
                                          context_usage=wants_context_usage(settings))[1]
                log(f"{len(items)} decisions in {time.perf_counter() - t0:.0f} s")
            if reason_n:
                reason, reason_records = reason_pairs(pol, reason_n, reason_seed, log=log)
                (out / "reason.json").write_text(json.dumps(reason_records, indent=1))
        finally:
            pol.close()
    (out / "records.json").write_text(json.dumps(records, indent=1))
    counter = LlamaPolicy(base_gguf, n_ctx=512, n_threads=1) if wants_context_usage(settings) else None
    try:
        kw = dict(budget=settings.context_budget, fact_think=fact_think,
                  context_usage=counter.count_tokens if counter else None)
        pairs = mistake_pairs(items, records, **kw)
        n_mistakes = len(pairs)
        if anchors:
            pairs += anchor_pairs(items, records, **kw)
        pairs += reason
    finally:
        if counter:
            counter.close()
    log(f"{sum(r['correct'] for r in records)}/{len(records)} right actions; {n_mistakes} pairs from mistakes, "
        f"{len(pairs) - n_mistakes - len(reason)} anchor pairs, {len(reason)} reason-stage pairs")
    if not n_mistakes:
        raise ConfigError("the policy made no mistake on these items: nothing to learn from (try more --n)")
    folder = materialise(base_gguf, settings.data_dir / "cache" / "train")
    try:
        summary = train_dpo(pairs, base_gguf, folder, out, init_adapter=adapter, seed=seed, log=log, **train_kw)
    except ValueError as e:           # every pair over max_tokens
        raise ConfigError(str(e)) from None
    left = set(summary["left_out_long"])
    trained = Counter(p.source for p in pairs if p.item_id not in left)
    return {"items": len(items), "right_actions": sum(r["correct"] for r in records), "item_seed": seed,
            "mistake_pairs": trained["mistake"], "anchor_pairs": trained["anchor"], "reason_pairs": trained["reason"],
            "policy": spec.name, **summary}
