"""The trainer's torch half on whatever this machine has (CUDA when present): the warm start's
LoRA SFT on tokenised rows (``train.warm_start.train_on_rows``, packed) and GRPO updates (the
trainer's ``completion_logprobs`` + ``sample_loss`` + backward + AdamW), timed, with peak memory.

Rows come from ``make-rows``, which needs llama.cpp (the policy's tokenizer); ``run`` needs only
torch, transformers, PEFT and TRL, so rows made on a laptop can be run on a GPU machine that has
no llama.cpp build. The GRPO updates use the rows' first learnt step as the completion and fixed
rewards (1, 0, 1, 0, ...) in groups of ``--k``: the point is the update's speed and memory, not
learning.

    python bench/bench_train_device.py make-rows --gguf POLICY.gguf --items 40 --out rows.json
    python bench/bench_train_device.py run --gguf POLICY.gguf --rows rows.json --out DIR [--pack 4]
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make_rows(args) -> None:
    from agemem_lite.policy.llama import LlamaPolicy
    from train.warm_start import build_turns, dataset_rows

    turns = build_turns(args.items, args.seed, long_share=args.long_share, long_budget=args.long_budget)
    tok = LlamaPolicy(Path(args.gguf), n_ctx=512, n_threads=1)
    try:
        rows, dropped = dataset_rows(tok, turns, args.max_tokens)
    finally:
        tok.close()
    text = json.dumps({"gguf": Path(args.gguf).name, "items": args.items, "seed": args.seed,
                       "dropped": dropped, "rows": rows}).encode()
    Path(args.out).write_bytes(gzip.compress(text) if args.out.endswith(".gz") else text)
    print(f"{len(rows)} rows ({dropped} over {args.max_tokens} tokens dropped), "
          f"{sum(len(r['input_ids']) for r in rows)} tokens -> {args.out}")


def first_step(row: dict) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids): the row up to its first learnt token, and that learnt run."""
    ids, mask = row["input_ids"], row["completion_mask"]
    start = mask.index(1)
    end = start
    while end < len(mask) and mask[end]:
        end += 1
    return ids[:start], ids[start:end]


def grpo_updates(folder: Path, rows: list[dict], args) -> dict:
    import torch

    from train.config import TrainConfig
    from train.grpo import group_advantages, sample_loss
    from train.lora import bf16_autocast, completion_logprobs, load_trainable, pick_device

    cfg = TrainConfig.load("tiny", {"seed": args.seed, "unsloth": args.unsloth})
    device = pick_device(cfg)
    bf16 = bf16_autocast(True, device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model, backend = load_trainable(folder, cfg, device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    pairs = [first_step(r) for r in rows]
    times, tokens, losses = [], 0, []
    for g in range(args.groups):
        group = [pairs[(g * args.k + i) % len(pairs)] for i in range(args.k)]
        adv = group_advantages([float(i % 2 == 0) for i in range(args.k)])
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad(), model.disable_adapter():
            ref = [completion_logprobs(model, p, c, device=device, bf16=bf16) for p, c in group]
        opt.zero_grad(set_to_none=True)
        for (p, c), a, r in zip(group, adv, ref):
            logp = completion_logprobs(model, p, c, device=device, bf16=bf16)
            loss, st = sample_loss(logp, logp.detach(), r, torch.ones_like(logp, dtype=torch.bool), a)
            (loss / args.k).backward()
            losses.append(st.loss)
            tokens += len(p) + len(c)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return {"backend": backend, "device": device, "bf16": bf16, "groups": args.groups, "k": args.k,
            "seconds_per_group": round(sum(times) / len(times), 3), "first_group_seconds": round(times[0], 3),
            "tokens_per_second": round(tokens / sum(times), 1),
            "mean_loss": round(sum(losses) / len(losses), 5),
            **({"peak_vram_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                "gpu": torch.cuda.get_device_name(0)} if device == "cuda" else {})}


def run(args) -> None:
    import torch

    from train.base import materialise
    from train.config import TrainConfig
    from train.lora import bf16_autocast
    from train.warm_start import train_on_rows

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw = Path(args.rows).read_bytes()
    data = json.loads(gzip.decompress(raw) if args.rows.endswith(".gz") else raw)
    rows = data["rows"][:args.limit] if args.limit else data["rows"]
    t0 = time.perf_counter()
    folder = materialise(Path(args.gguf), out / "hf")
    materialise_s = time.perf_counter() - t0
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = TrainConfig.load("tiny", {})
    sft, history = {}, []
    if args.epochs:
        sft = train_on_rows(rows, Path(args.gguf), folder, out / "sft", epochs=args.epochs, lr=args.lr,
                            lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha, targets=cfg.lora_targets,
                            seed=args.seed, pack=args.pack, bf16=bf16_autocast(True, device), progress=False,
                            check_export=importlib.util.find_spec("llama_cpp") is not None)
        history = sft.pop("log_history")
    grpo = grpo_updates(folder, data["rows"], args) if args.groups else {}
    result = {"gguf": Path(args.gguf).name, "rows": len(rows), "pack": args.pack, "epochs": args.epochs,
              "materialise_seconds": round(materialise_s, 1), "sft": sft,
              "sft_losses": [h["loss"] for h in history if "loss" in h], "grpo": grpo,
              "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
              "torch": torch.__version__}
    (out / "bench.json").write_text(json.dumps(result, indent=1))
    name = grpo.get("gpu", device)
    print(f"\n| | {name} |\n|---|---|")
    if sft:
        print(f"| SFT: sequences (rows, pack) | {sft['sequences']} ({len(rows)}, {args.pack}) |")
        print(f"| SFT: tokens run | {sft['tokens_run']} |")
        print(f"| SFT: train seconds | {sft['train_seconds']} |")
        print(f"| SFT: tokens / s | {sft['tokens_run'] * args.epochs / max(sft['train_seconds'], 1e-9):.0f} |")
        print(f"| SFT: first / last logged loss | {sft['first_loss']} / {sft['last_loss']} |")
        if "peak_vram_gb" in sft:
            print(f"| SFT: peak VRAM GB | {sft['peak_vram_gb']} |")
    if grpo:
        print(f"| GRPO: backend, bf16 | {grpo['backend']}, {grpo['bf16']} |")
        print(f"| GRPO: seconds per group of K = {grpo['k']} | {grpo['seconds_per_group']} "
              f"(first {grpo['first_group_seconds']}) |")
        print(f"| GRPO: tokens / s (reference + update passes) | {grpo['tokens_per_second']} |")
        if "peak_vram_gb" in grpo:
            print(f"| GRPO: peak VRAM GB | {grpo['peak_vram_gb']} |")
    print(f"| peak RSS GB | {result['peak_rss_gb']} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make-rows", help="tokenised warm-start rows (needs llama.cpp)")
    m.add_argument("--gguf", required=True)
    m.add_argument("--items", type=int, default=40)
    m.add_argument("--seed", type=int, default=7)
    m.add_argument("--long-share", type=float, default=0.25)
    m.add_argument("--long-budget", type=int, default=1024)
    m.add_argument("--max-tokens", type=int, default=4096)
    m.add_argument("--out", required=True, help="rows file (.json, or .json.gz to compress)")
    r = sub.add_parser("run", help="SFT and GRPO updates on the rows (torch only)")
    r.add_argument("--gguf", required=True)
    r.add_argument("--rows", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--limit", type=int, default=0, help="train on the first N rows (0: all)")
    r.add_argument("--pack", type=int, default=4)
    r.add_argument("--epochs", type=float, default=1.0, help="SFT epochs (0: no SFT)")
    r.add_argument("--lr", type=float, default=1e-4)
    r.add_argument("--seed", type=int, default=7)
    r.add_argument("--groups", type=int, default=3, help="GRPO updates to time (0: none)")
    r.add_argument("--k", type=int, default=4)
    r.add_argument("--unsloth", choices=("auto", "on", "off"), default="off",
                   help="GRPO updates on Unsloth's 4-bit model (CUDA and the 'unsloth' extra)")
    args = ap.parse_args()
    random.seed(args.seed)
    (make_rows if args.cmd == "make-rows" else run)(args)


if __name__ == "__main__":
    main()
