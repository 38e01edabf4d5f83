"""A long chat on this machine: time per turn before and after the context reaches the model's window.

The policy rarely calls Summary_context or Filter_context in chat, so a long conversation grows
until the runtime evicts its oldest messages to fit llama.cpp's window (``Agent._fit_window``).
An eviction changes the start of the conversation, so llama.cpp cannot reuse its KV cache past
the system prompt and evaluates the whole prompt again. This bench shows how often that happens
and what a turn costs then: per turn, the content tokens in the context, the messages evicted,
the tools the policy called, the prompt tokens evaluated (not served from the cache) and the wall time.

Run by hand (not a test); a fresh data folder, so your memories are not touched:
    python bench/long_chat.py [--policy agemem-0.5b] [--turns 60] [--n-ctx 2048] [--budget 1024]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

from agemem_lite.assistant import open_assistant
from agemem_lite.config import Settings

PEOPLE = ["Anika", "Tom", "Lena", "Marco", "Priya", "Jonas", "Sara", "Kofi"]
PLACES = ["Leeds", "Lyon", "Oslo", "Porto", "Kraków", "Bristol", "Ghent", "Turin"]
THINGS = ["the cello", "chess", "pottery", "climbing", "Spanish", "the garden", "baking", "running"]


def messages(n: int, seed: int) -> list[str]:
    """A chat: new facts, questions about them, and now and then a pasted paragraph."""
    r = random.Random(seed)
    out = []
    for i in range(n):
        p, place, thing = r.choice(PEOPLE), r.choice(PLACES), r.choice(THINGS)
        kind = i % 4
        if kind == 0:
            out.append(f"My friend {p} moved to {place} and started {thing} lessons.")
        elif kind == 1:
            out.append(f"Where does {p} live now?")
        elif kind == 2:
            out.append(" ".join(f"Here is part {j} of my notes on {thing}: practise slowly, keep a log of "
                                f"each session in {place}, and ask {p} for feedback every week." for j in range(6)))
        else:
            out.append(f"I spent the weekend doing {thing} in {place}; it was great.")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", default="agemem-0.5b")
    ap.add_argument("--turns", type=int, default=60)
    ap.add_argument("--n-ctx", type=int, default=2048, help="llama.cpp window (small, so it fills quickly)")
    ap.add_argument("--budget", type=int, default=1024, help="context_budget (T_max) the policy is told")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None, help="data folder (default: a fresh temporary one)")
    args = ap.parse_args()
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="agemem-long-chat-")
    settings = Settings.load(data_dir, policy=args.policy, n_ctx=args.n_ctx, context_budget=args.budget,
                             namespace="long-chat")
    rows = []
    with open_assistant(settings) as a:
        agent = a.agent
        evicted = 0
        fit = agent._fit_window

        def counting() -> int:
            nonlocal evicted
            n = fit()
            evicted += n
            return n

        agent._fit_window = counting
        for i, text in enumerate(messages(args.turns, args.seed)):
            evicted = 0
            t0 = time.perf_counter()
            turn = agent.turn(text)
            wall = time.perf_counter() - t0
            evaluated = sum(s.prompt_tokens - s.reused_prompt_tokens for s in turn.steps)
            calls = ", ".join(c["name"] for s in turn.steps for c in s.calls) or "-"
            rows.append((i + 1, agent.context.tokens, evicted, calls, evaluated, wall))
    print(f"policy {args.policy} · n_ctx {args.n_ctx} · budget {args.budget} · {args.turns} turns · "
          f"seed {args.seed}\n")
    print("| turn | context tokens after | messages evicted | tool calls | prompt tokens evaluated | seconds |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| {} | {} | {} | {} | {} | {:.1f} |".format(*row))
    full = [r for r in rows if r[2] == 0]
    evicting = [r for r in rows if r[2] > 0]
    print(f"\nturns that evicted: {len(evicting)} of {len(rows)}")
    for label, group in (("without eviction", full), ("with eviction", evicting)):
        if group:
            print(f"{label}: median {statistics.median(r[4] for r in group):.0f} prompt tokens evaluated, "
                  f"median {statistics.median(r[5] for r in group):.1f} s per turn")
    print(f"all turns: {sum(r[5] for r in rows):.0f} s")


if __name__ == "__main__":
    main()
