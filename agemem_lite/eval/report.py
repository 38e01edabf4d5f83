"""The evaluation report: episode files -> Markdown tables laid out like the paper (SPEC §7) + PNGs.

``write_report(out_dir)`` reads every ``<out>/episodes/**.json`` written by
``eval.harness.run_eval`` and writes ``<out>/report.md`` with:

- a header: policy, n, seed, judges, date, machine (platform, CPUs), episode config;
- Table 2: rows methods, columns benchmarks, cells ``mean F1 / mean EM (n)`` in percent
  (as the paper prints scores), with the mean over benchmarks; an LLM-judge table when
  the run used one;
- Table 3: tool calls per episode by type (ADD ... FILTER, the paper's columns);
- Memory Quality per method, prompt tokens per episode (with the paper's
  AgeMem vs AgeMem-RAG comparison), wall time per episode;
- plots (``plots/scores.png``, ``plots/tool_usage.png``) when matplotlib is importable
  (``pip install 'agemem-lite[eval]'``); otherwise the report says they were skipped.

Every table names the judge its numbers come from. ``aggregate`` gives the same numbers
as plain data (the CLI's ``--json``).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from statistics import mean

from ..baselines import METHODS
from .harness import MANIFEST, load_record

TOOL_COLUMNS = (("ADD", "Add_memory"), ("UPDATE", "Update_memory"), ("DELETE", "Delete_memory"),
                ("RETRIEVE", "Retrieve_memory"), ("SUMMARY", "Summary_context"), ("FILTER", "Filter_context"))
REPORT_NAME = "report.md"
PLOTS_HINT = "pip install 'agemem-lite[eval]'"


def load_records(out_dir: str | Path) -> list[dict]:
    """Every episode record under ``<out>/episodes``, in path order."""
    return [load_record(p) for p in sorted(Path(out_dir).glob("episodes/*/*/*.json"))]


def _has_ltm(method: str) -> bool:
    """Whether a method can hold memories at all (else MQ is 0 by construction)."""
    m = METHODS.get(method)
    return m is None or m.env_adds or "Add_memory" in m.tools


def _order(seen: list[str], first: list[str]) -> list[str]:
    return [x for x in first if x in seen] + sorted(set(seen) - set(first))


def aggregate(records: list[dict], bench_order: list[str] | None = None) -> dict:
    """Means per (method, bench) and tool calls per method, as plain data.

    ``cells[method][bench]``: n, f1, em (0-1), llm (if judged), mq (None when no episode had
    gold facts), prompt_tokens, wall_s, steps, no_answer. ``tools[method]``: calls per
    episode by tool name, ``failed``, ``episodes``. ``judges``: the judge of each metric."""
    methods = _order([r["method"] for r in records], list(METHODS))
    benches = _order([r["bench"] for r in records], bench_order or [])
    cells: dict = {m: {} for m in methods}
    tools: dict = {}
    judges: dict = {}
    for m in methods:
        mine = [r for r in records if r["method"] == m]
        for b in benches:
            rows = [r["metrics"] for r in mine if r["bench"] == b]
            if not rows:
                continue
            mqs = [x["mq"] for x in rows if x["mq"] is not None]
            llm = [x["llm"] for x in rows if "llm" in x]
            cells[m][b] = {"n": len(rows), "f1": mean(x["f1"] for x in rows), "em": mean(x["em"] for x in rows),
                           "llm": mean(llm) if llm else None, "llm_n": len(llm), "mq": mean(mqs) if mqs else None,
                           "prompt_tokens": mean(x["prompt_tokens"] for x in rows),
                           "wall_s": mean(x["wall_s"] for x in rows), "steps": mean(x["steps"] for x in rows),
                           "no_answer": sum(not x["answered"] for x in rows)}
        tools[m] = {name: mean(r["metrics"]["tool_calls"].get(name, 0) for r in mine) for _, name in TOOL_COLUMNS}
        tools[m]["failed"] = mean(r["metrics"]["failed_calls"] for r in mine)
        tools[m]["episodes"] = len(mine)
    for r in records:
        judges.update(r["judges"])
    return {"methods": methods, "benches": benches, "cells": cells, "tools": tools, "judges": judges}


# -- Markdown -------------------------------------------------------------------------------

def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def table2(agg: dict) -> str:
    """Table 2: methods x benchmarks, ``F1 / EM (n)`` in percent, and their mean over benchmarks."""
    rows = []
    for m in agg["methods"]:
        cells = [agg["cells"][m].get(b) for b in agg["benches"]]
        row = [m] + [f"{_pct(c['f1'])} / {_pct(c['em'])} (n={c['n']})" if c else "–" for c in cells]
        if len(agg["benches"]) > 1:      # the paper's "average over the benchmarks"
            row.append(f"{_pct(mean(c['f1'] for c in cells))} / {_pct(mean(c['em'] for c in cells))}"
                       if all(cells) else "–")
        rows.append(row)
    head = ["method"] + agg["benches"] + (["mean"] if len(agg["benches"]) > 1 else [])
    return ("judge: EM/F1 vs gold (answers normalised as in SQuAD/HotpotQA; no answer scores 0). "
            "Cell: mean F1 / mean EM, in percent (n = episodes).\n\n" + _table(head, rows))


def llm_table(agg: dict) -> str | None:
    """Table 2 scored by the LLM judge (None when the run used none)."""
    name = agg["judges"].get("llm")
    if not name:
        return None
    rows = [[m] + [f"{_pct(c['llm'])} (n={c['llm_n']})" if c and c["llm"] is not None else "–"
                   for c in (agg["cells"][m].get(b) for b in agg["benches"])] for m in agg["methods"]]
    return (f"judge: {name} (a local model answers a fixed yes/no prompt, eval/judges.py). "
            "Cell: answers judged correct, in percent.\n\n" + _table(["method"] + agg["benches"], rows))


def table3(agg: dict) -> str:
    """Table 3: tool calls per episode by type (every call the policy wrote, refused ones too)."""
    rows = [[m] + [f"{agg['tools'][m][name]:.2f}" for _, name in TOOL_COLUMNS]
            + [f"{agg['tools'][m]['failed']:.2f}", str(agg["tools"][m]["episodes"])] for m in agg["methods"]]
    return ("judge: counts from the episode traces (calls the policy wrote, including refused ones; "
            "\"failed\" = tool results with ok = false), all benchmarks pooled.\n\n"
            + _table(["method"] + [c for c, _ in TOOL_COLUMNS] + ["failed", "episodes"], rows))


def _per_bench(agg: dict, fmt) -> list[list[str]]:
    return [[m] + [fmt(m, c) if c else "–" for c in (agg["cells"][m].get(b) for b in agg["benches"])]
            for m in agg["methods"]]


def mq_table(agg: dict) -> str:
    def fmt(m, c):
        if not _has_ltm(m):
            return "n/a (no LTM)"
        return "–" if c["mq"] is None else f"{c['mq']:.3f}"
    return (f"judge: {agg['judges'].get('mq', 'coverage of the gold facts by the final memories')} "
            "(token recall of each gold fact in some memory ≥ the threshold); 0-1 like the paper. "
            "add-only stores every turn verbatim, so its MQ is an upper bound, not a decision.\n\n"
            + _table(["method"] + agg["benches"], _per_bench(agg, fmt)))


def tokens_table(agg: dict) -> str:
    text = ("judge: none, counted (sum over the episode's steps of the policy's prompt tokens). "
            "Cell: mean prompt tokens per episode.\n\n"
            + _table(["method"] + agg["benches"], _per_bench(agg, lambda m, c: f"{c['prompt_tokens']:.0f}")))
    notes = []
    for b in agg["benches"]:
        a, r = agg["cells"].get("agemem", {}).get(b), agg["cells"].get("agemem-rag", {}).get(b)
        if a and r and r["prompt_tokens"]:
            notes.append(f"- {b}: {100 * (a['prompt_tokens'] / r['prompt_tokens'] - 1):+.1f}%")
    if notes:   # the paper's comparison: AgeMem -3.1% / -5.1% on HotpotQA (Qwen2.5-7B / Qwen3-4B)
        text += ("\n\nagemem vs agemem-rag, prompt tokens per episode (paper, HotpotQA: -3.1% / -5.1%):\n"
                 + "\n".join(notes))
    return text


def wall_table(agg: dict) -> str:
    return ("judge: none, measured (stages 1-3 of one episode, this machine). "
            "Cell: mean seconds per episode (mean steps per episode; episodes without an answer).\n\n"
            + _table(["method"] + agg["benches"], _per_bench(
                agg, lambda m, c: f"{c['wall_s']:.2f} s ({c['steps']:.1f} steps; {c['no_answer']} no answer)")))


def _header(manifest: dict, agg: dict, n_records: int) -> list[str]:
    ident, runs = manifest.get("identity", {}), manifest.get("runs", [])
    last = runs[-1] if runs else {}
    cfg = ident.get("config", {})
    mach = last.get("machine", {})
    keys = ("n_max", "t_max", "max_steps_per_turn", "top_k", "n_distractors", "demonstrations", "today")
    llm = agg["judges"].get("llm")
    return [
        "# agemem-lite evaluation",
        "",
        f"- policy: `{ident.get('policy', '?')}` · seed: {ident.get('seed', '?')} · n: {last.get('n', '?')} tasks "
        f"per benchmark (last run; each cell gives its own n) · episodes: {n_records}",
        f"- judges: task score = EM/F1 vs gold; MQ = {agg['judges'].get('mq', 'coverage')}; "
        f"LLM judge: {llm or 'none (off; --judge llm:NAME)'}",
        f"- date: report {datetime.now().isoformat(timespec='seconds')}; runs "
        + ", ".join(r.get("date", "?") for r in runs[-3:]) + (" …" if len(runs) > 3 else ""),
        f"- machine: {mach.get('platform', '?')} ({mach.get('machine', '?')}), {mach.get('cpus', '?')} CPUs, "
        f"Python {mach.get('python', '?')}",
        "- episode config: " + ", ".join(f"{k}={cfg[k]}" for k in keys if k in cfg),
        "- success rate / progress rate: not applicable (QA benchmarks only so far).",
    ]


# -- plots ------------------------------------------------------------------------------------

def write_plots(agg: dict, plots_dir: str | Path) -> list[Path] | None:
    """``scores.png`` (F1 per method per benchmark) and ``tool_usage.png`` (stacked calls per
    episode); None when matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure   # no pyplot: no GUI backend, no global state
    except ImportError:
        return None
    out = Path(plots_dir)
    out.mkdir(parents=True, exist_ok=True)
    methods, benches = agg["methods"], agg["benches"]

    fig = Figure(figsize=(max(5, 1.6 * len(benches) * max(1, len(methods)) / 2), 3.6), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(methods))
    for i, m in enumerate(methods):
        xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(benches))]
        ys = [100 * agg["cells"][m][b]["f1"] if b in agg["cells"][m] else 0 for b in benches]
        ax.bar(xs, ys, width, label=m)
    ax.set_xticks(range(len(benches)), benches)
    ax.set_ylabel("mean F1 (%)  [judge: F1 vs gold]")
    ax.set_title("Task score per method and benchmark")
    ax.set_ylim(0, 100)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    scores = out / "scores.png"
    fig.savefig(scores, dpi=120)

    fig = Figure(figsize=(max(5, 1.1 * len(methods)), 3.6), layout="constrained")
    ax = fig.add_subplot()
    bottom = [0.0] * len(methods)
    for label, name in TOOL_COLUMNS:
        ys = [agg["tools"][m][name] for m in methods]
        ax.bar(methods, ys, bottom=bottom, label=label)
        bottom = [a + b for a, b in zip(bottom, ys)]
    ax.set_ylabel("tool calls per episode")
    ax.set_title("Tool usage (from the traces)")
    ax.tick_params(axis="x", labelrotation=20)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    usage = out / "tool_usage.png"
    fig.savefig(usage, dpi=120)
    return [scores, usage]


# -- the report -------------------------------------------------------------------------------

def render_report(out_dir: str | Path, *, plots: bool = True) -> tuple[str, dict]:
    """The Markdown text and the aggregate of ``out_dir``; writes the plots unless ``plots=False``."""
    out = Path(out_dir)
    mpath = out / MANIFEST
    manifest = json.loads(mpath.read_text(encoding="utf-8")) if mpath.exists() else {}
    order = [b for r in manifest.get("runs", []) for b in r.get("benches", [])]
    records = load_records(out)
    agg = aggregate(records, list(dict.fromkeys(order)))
    lines = _header(manifest, agg, len(records))
    if not records:
        return "\n".join(lines + ["", "No episodes yet."]) + "\n", agg
    sections = [("Table 2: task score per method and benchmark", table2(agg)),
                ("Table 2 (LLM judge)", llm_table(agg)),
                ("Table 3: tool calls per episode", table3(agg)),
                ("Memory Quality (MQ) per method", mq_table(agg)),
                ("Prompt tokens per episode", tokens_table(agg)),
                ("Wall time per episode", wall_table(agg))]
    for title, body in sections:
        if body:
            lines += ["", f"## {title}", "", body]
    made = write_plots(agg, out / "plots") if plots else None
    lines += ["", "## Plots", ""]
    if made:
        lines += [f"![{p.stem}](plots/{p.name})" for p in made]
    else:
        lines.append(f"Plots skipped: matplotlib is not installed (`{PLOTS_HINT}` adds it)."
                     if plots else "Plots skipped (plots=False).")
    return "\n".join(lines) + "\n", agg


def write_report(out_dir: str | Path, *, plots: bool = True) -> tuple[Path, dict]:
    """Write ``<out>/report.md`` (and the plots); returns its path and the ``aggregate``."""
    text, agg = render_report(out_dir, plots=plots)
    path = Path(out_dir) / REPORT_NAME
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path, agg


__all__ = ["TOOL_COLUMNS", "REPORT_NAME", "load_records", "aggregate", "table2", "llm_table", "table3", "mq_table",
           "tokens_table", "wall_table", "write_plots", "render_report", "write_report"]
