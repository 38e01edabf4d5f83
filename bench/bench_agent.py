"""Agent speed on this machine: generation tokens/s and time to first token of a
follow-up turn at ~2k context, with and without llama.cpp prefix reuse.

Run by hand (not a test):  python bench/bench_agent.py [--policy NAME] [--context 2000]
Target (issue #2): follow-up TTFT ≤ 0.5 s with reuse on the default model.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from agemem_lite import prompts
from agemem_lite.assistant import open_policy
from agemem_lite.config import Settings
from agemem_lite.memory.tools import grammar_schemas


def build_context(policy, target_tokens: int) -> list[dict]:
    """System prompt + demonstrations + filler conversation up to ~target_tokens."""
    msgs = [{"role": "system", "content": prompts.render_system(
        today="2026-11-24", budget=8192, tool_schemas=grammar_schemas())}]
    msgs += prompts.render_demonstrations()
    i = 0
    while len(policy.tokenize(policy.render(msgs))) < target_tokens:
        i += 1
        msgs.append({"role": "user", "content": prompts.render_user_turn(
            f"Note {i}: the meeting with supplier {i} moved to room {100 + i} on day {i % 28 + 1}.",
            prompts.render_related([]))})
        msgs.append({"role": "assistant", "content": "<answer>Noted.</answer>"})
    return msgs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", default="qwen2.5-coder-0.5b")
    ap.add_argument("--context", type=int, default=2000, help="approximate prompt tokens")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data-dir", default=None, help="data dir with model files (default: a temp dir)")
    args = ap.parse_args()
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="agemem-bench-")
    settings = Settings.load(data_dir, policy=args.policy)
    policy = open_policy(settings)
    base = build_context(policy, args.context)
    policy.step(base)  # warm: evaluates the ~2k prefix once

    reuse, cold, tps, reused_tokens = [], [], [], []
    for r in range(args.repeats):
        follow = base + [{"role": "user", "content": prompts.render_user_turn(
            f"What room is supplier {r + 1} in?", prompts.render_related([]))}]
        c = policy.step(follow)               # prefix reuse: only the new turn is evaluated
        reuse.append(c.first_token_s)
        reused_tokens.append(c.reused_prompt_tokens)
        gen_s = c.seconds - (c.first_token_s or 0)
        if c.completion_tokens > 1 and gen_s > 0:
            tps.append((c.completion_tokens - 1) / gen_s)
        policy.llm.reset()                    # forget the KV cache: the whole prompt is evaluated
        policy._last_prompt = []
        c2 = policy.step(follow)
        cold.append(c2.first_token_s)
        prompt_tokens = c2.prompt_tokens
        policy.step(base)                     # restore the cached prefix for the next repeat
    med = statistics.median
    rows = [
        ("policy", args.policy),
        ("prompt tokens (follow-up turn)", f"{prompt_tokens}"),
        ("tokens reused from cache", f"{med(reused_tokens):.0f}"),
        ("TTFT follow-up, with prefix reuse (s)", f"{med(reuse):.3f}"),
        ("TTFT follow-up, without reuse (s)", f"{med(cold):.3f}"),
        ("step tokens/s after the first (runtime-written tags included)", f"{med(tps):.1f}" if tps else "-"),
    ]
    w = max(len(k) for k, _ in rows)
    print(f"| {'metric'.ljust(w)} | value |\n|{'-' * (w + 2)}|-------|")
    for k, v in rows:
        print(f"| {k.ljust(w)} | {v} |")
    policy.close()


if __name__ == "__main__":
    main()
