"""Summary_context's text on the held-out decision set's Summary items, four ways: the policy with
its adapter on over the raw transcript (the runtime before 2026-12-04), the base model (adapter
off) over the plain transcript (``LlamaPolicy.summarise`` now), the extractive summary
(``stm.extractive_summary``), and the one the agent keeps (``Agent._write_summary``'s rule).
Prints a table: summaries with tags, share of the user's names and numbers kept, words.

    python bench/compare_summaries.py --adapter FILE [--n 6] [--out summaries.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adapter", required=True, help="a GGUF LoRA adapter for qwen2.5-coder-0.5b")
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    from agemem_lite import decisions as D
    from agemem_lite import model_files, prompts
    from agemem_lite.config import Settings
    from agemem_lite.memory.stm import Context, choose_summary, extractive_summary, fact_coverage
    from agemem_lite.policy.llama import LlamaPolicy

    settings = Settings.load()
    base = model_files.model_path(settings, model_files.get_spec(settings, "qwen2.5-coder-0.5b"))
    pol = LlamaPolicy(base, lora_path=args.adapter, n_ctx=8192)
    items = [it for it in D.generate(200, 0, "heldout") if it.label == "summary"][:args.n]
    rows = []
    try:
        for it in items:
            msgs = D.messages(it, guided=False)
            ctx = Context(pol.count_tokens, prompts.budget_of(msgs[0]["content"]))
            for m in msgs:
                ctx.append(m["role"], m["content"])
            span = [m for m in ctx.messages if m.role != "system"][:-1]   # not the pending user turn
            raw = "\n".join(f"{m.role}: {m.content}" for m in span)
            plain = prompts.summary_transcript(span)
            t0 = time.perf_counter()
            old, _, _ = pol._generate(pol.tokenize(pol.render([
                {"role": "system", "content": "You write short, faithful summaries."},
                {"role": "user", "content": prompts.render_summary_request(raw)}])), max_tokens=200, on_text=None)
            t1 = time.perf_counter()
            new = pol.summarise(prompts.render_summary_request(plain))
            t2 = time.perf_counter()
            ext = extractive_summary(plain)
            kept = choose_summary(new, plain)
            r = {"id": it.id, "span_tokens": sum(m.tokens for m in span), "old_seconds": round(t1 - t0, 1),
                 "base_seconds": round(t2 - t1, 1), "kept_is": "base" if kept == new and kept != ext else "extractive"}
            for k, v in (("old", old.strip()), ("base", new), ("extractive", ext), ("kept", kept)):
                r[k] = v
                r[k + "_tags"] = "<" in v or prompts.SUMMARY_HEADER in v
                r[k + "_kept"] = round(fact_coverage(v, plain), 2)
                r[k + "_words"] = len(v.split())
            rows.append(r)
            print(f"{it.id}: kept {r['kept_is']}; base {new[:100]!r}", flush=True)
    finally:
        pol.close()
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    print("\n| summary text | with tags | names+numbers of the user's lines kept | words |\n|---|---|---|---|")
    for k in ("old", "base", "extractive", "kept"):
        print(f"| {k} | {sum(r[k + '_tags'] for r in rows)}/{len(rows)} | "
              f"{sum(r[k + '_kept'] for r in rows) / len(rows):.2f} | {sum(r[k + '_words'] for r in rows) / len(rows):.0f} |")
    print(f"kept = the base model's on {sum(r['kept_is'] == 'base' for r in rows)} of {len(rows)}")


if __name__ == "__main__":
    main()
