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
- environment benchmarks (``eval.env_benches``, records with ``kind: "env"``): their Table 2
  cells are ``success % / progress % (n)`` (episodes solved; mean of each game's best
  progress), both from the environment. Once a run has one, every Table 2 column names
  its metric (``hotpot (F1 / EM)``, ``babyai (success / progress)``) and the mean over
  benchmarks is taken per kind (``mean QA``, ``mean env``: an F1 and a success rate do
  not average). Table 3 pools QA benchmarks and environments separately when a run has
  both (a game is a much longer episode than a question). MQ cells read ``n/a (env)``.
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
from .env_benches import record_kind
from .harness import MANIFEST, load_record
from .mem0_peer import PEER_JUDGE, PEER_METHODS

TOOL_COLUMNS = (("ADD", "Add_memory"), ("UPDATE", "Update_memory"), ("DELETE", "Delete_memory"),
                ("RETRIEVE", "Retrieve_memory"), ("SUMMARY", "Summary_context"), ("FILTER", "Filter_context"))
REPORT_NAME = "report.md"
PLOTS_HINT = "pip install 'agemem-lite[eval]'"
KINDS = ("qa", "env")
SCORE_NAMES = {"qa": "F1 / EM", "env": "success / progress"}    # what a Table 2 cell holds, per kind
QA_JUDGE = ("judge: EM/F1 vs gold (answers normalised as in SQuAD/HotpotQA; no answer scores 0; a LongMemEval "
            "abstention scores 1 when the reply says it is not known, in any words). "
            "Cell: mean F1 / mean EM, in percent (n = episodes).")
ENV_JUDGE = ("judge: env: success rate / progress rate, from the environment. Cell: success % / progress %: "
             "games solved, and the mean of each game's best progress (share of the goal reached), in percent "
             "(n = episodes).")


def load_records(out_dir: str | Path) -> list[dict]:
    """Every episode record under ``<out>/episodes``, in path order."""
    return [load_record(p) for p in sorted(Path(out_dir).glob("episodes/*/*/*.json"))]


def _has_ltm(method: str) -> bool:
    """Whether a method can hold memories at all (else MQ is 0 by construction)."""
    m = METHODS.get(method)
    return m is None or m.env_adds or "Add_memory" in m.tools


def _order(seen: list[str], first: list[str]) -> list[str]:
    return [x for x in first if x in seen] + sorted(set(seen) - set(first))


def _tools(records: list[dict]) -> dict:
    out = {name: mean(r["metrics"]["tool_calls"].get(name, 0) for r in records) for _, name in TOOL_COLUMNS}
    return {**out, "failed": mean(r["metrics"]["failed_calls"] for r in records), "episodes": len(records)}


def _cell(kind: str, rows: list[dict]) -> dict:
    costs = {"kind": kind, "n": len(rows), "prompt_tokens": mean(x["prompt_tokens"] for x in rows),
             "wall_s": mean(x["wall_s"] for x in rows), "steps": mean(x["steps"] for x in rows)}
    if kind == "env":
        return {**costs, "success": mean(x["success"] for x in rows), "progress": mean(x["progress"] for x in rows),
                "game_turns": mean(x["game_turns"] for x in rows),
                "invalid_actions": mean(x["invalid_actions"] for x in rows), "mq": None, "llm": None, "llm_n": 0}
    mqs = [x["mq"] for x in rows if x["mq"] is not None]
    llm = [x["llm"] for x in rows if "llm" in x]
    return {**costs, "f1": mean(x["f1"] for x in rows), "em": mean(x["em"] for x in rows),
            "llm": mean(llm) if llm else None, "llm_n": len(llm), "mq": mean(mqs) if mqs else None,
            "no_answer": sum(not x["answered"] for x in rows)}


def aggregate(records: list[dict], bench_order: list[str] | None = None) -> dict:
    """Means per (method, bench) and tool calls per method, as plain data.

    ``kinds[bench]``: ``"qa"`` or ``"env"``. ``cells[method][bench]``: kind, n, prompt_tokens,
    wall_s, steps, and for QA f1, em (0-1), llm (if judged), mq (None when no episode had
    gold facts), no_answer; for env success, progress (0-1), game_turns, invalid_actions
    (mq, llm None). ``tools[method]``: calls per episode by tool name, ``failed``,
    ``episodes``, all benchmarks pooled; ``tools_by_kind[kind][method]``: the same per kind.
    ``judges``: the judge of each metric."""
    methods = _order([r["method"] for r in records], list(METHODS))
    benches = _order([r["bench"] for r in records], bench_order or [])
    kinds = {r["bench"]: record_kind(r) for r in records}
    cells: dict = {m: {} for m in methods}
    tools: dict = {}
    by_kind: dict = {k: {} for k in KINDS if k in kinds.values()}
    judges: dict = {}
    for m in methods:
        mine = [r for r in records if r["method"] == m]
        for b in benches:
            rows = [r["metrics"] for r in mine if r["bench"] == b]
            if rows:
                cells[m][b] = _cell(kinds[b], rows)
        tools[m] = _tools(mine)
        for k in by_kind:
            if any(record_kind(r) == k for r in mine):
                by_kind[k][m] = _tools([r for r in mine if record_kind(r) == k])
    for r in records:
        judges.update(r["judges"])
    return {"methods": methods, "benches": benches, "kinds": kinds, "cells": cells, "tools": tools,
            "tools_by_kind": by_kind, "judges": judges}


# -- Markdown -------------------------------------------------------------------------------

def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _kinds(agg: dict) -> dict[str, list[str]]:
    """Benchmarks per kind present, in report order: ``{"qa": [...], "env": [...]}``."""
    kinds = agg.get("kinds", {})
    out = {k: [b for b in agg["benches"] if kinds.get(b, "qa") == k] for k in KINDS}
    return {k: v for k, v in out.items() if v}


def _scores(kind: str, c: dict) -> tuple[float, float]:
    return (c["success"], c["progress"]) if kind == "env" else (c["f1"], c["em"])


def table2(agg: dict) -> str:
    """Table 2: methods x benchmarks in percent, QA cells ``F1 / EM (n)``, env cells ``success /
    progress (n)``, and the mean over the benchmarks of each kind.

    A QA-only run keeps the paper's plain header (``hotpot``, ``mean``); once an environment
    is in the run every column names its metric and each kind gets its own mean."""
    groups, kinds = _kinds(agg), agg.get("kinds", {})
    labelled = "env" in groups
    rows = []
    for m in agg["methods"]:
        row = [m]
        for b in agg["benches"]:
            c = agg["cells"][m].get(b)
            row.append("%s / %s (n=%d)" % (*map(_pct, _scores(kinds.get(b, "qa"), c)), c["n"]) if c else "–")
        for k, bs in groups.items():
            if len(bs) > 1:              # the paper's "average over the benchmarks", per kind of score
                cs = [agg["cells"][m].get(b) for b in bs]
                row.append(" / ".join(_pct(mean(_scores(k, c)[i] for c in cs)) for i in (0, 1)) if all(cs) else "–")
        rows.append(row)
    head = ["method"] + [f"{b} ({SCORE_NAMES[kinds.get(b, 'qa')]})" if labelled else b for b in agg["benches"]]
    head += [(f"mean {k.upper() if k == 'qa' else k} ({SCORE_NAMES[k]})" if labelled else "mean")
             for k, bs in groups.items() if len(bs) > 1]
    if not labelled:
        return QA_JUDGE + "\n\n" + _table(head, rows)
    judge = "\n".join(f"- {'QA' if k == 'qa' else 'env'} columns, " + (QA_JUDGE if k == "qa" else ENV_JUDGE)
                      for k in groups)
    return judge + "\n\n" + _table(head, rows)


def llm_table(agg: dict) -> str | None:
    """Table 2 scored by the LLM judge (None when the run used none)."""
    name = agg["judges"].get("llm")
    if not name:
        return None
    def fmt(c):
        if c and c.get("kind") == "env":
            return "n/a (env)"
        return f"{_pct(c['llm'])} (n={c['llm_n']})" if c and c["llm"] is not None else "–"
    rows = [[m] + [fmt(agg["cells"][m].get(b)) for b in agg["benches"]] for m in agg["methods"]]
    return (f"judge: {name} (a local model answers a fixed yes/no prompt, eval/judges.py). "
            "Cell: answers judged correct, in percent.\n\n" + _table(["method"] + agg["benches"], rows))


def _tools_table(tools: dict, methods: list[str]) -> str:
    rows = [[m] + [f"{tools[m][name]:.2f}" for _, name in TOOL_COLUMNS]
            + [f"{tools[m]['failed']:.2f}", str(tools[m]["episodes"])] for m in methods if m in tools]
    return _table(["method"] + [c for c, _ in TOOL_COLUMNS] + ["failed", "episodes"], rows)


def _peers(agg: dict) -> list[str]:
    return [m for m in agg["methods"] if m in PEER_METHODS]


def table3(agg: dict) -> str:
    """Table 3: tool calls per episode by type (every call the policy wrote, refused ones too);
    all benchmarks pooled, or QA benchmarks and environments pooled apart when a run has both."""
    judge = ("judge: counts from the episode traces (calls the policy wrote, including refused ones; "
             "\"failed\" = tool results with ok = false)")
    if _peers(agg):
        judge += f"; {', '.join(_peers(agg))}: ADD = {PEER_JUDGE}"
    groups = _kinds(agg)
    if len(groups) < 2:
        return f"{judge}, all benchmarks pooled.\n\n" + _tools_table(agg["tools"], agg["methods"])
    parts = [f"{judge}; QA benchmarks and environments pooled apart (an env episode is a whole game)."]
    for k, bs in groups.items():
        title = "QA benchmarks" if k == "qa" else "environments (per game)"
        parts.append(f"{title}, pooled: {', '.join(bs)}\n\n"
                     + _tools_table(agg.get("tools_by_kind", {}).get(k, {}), agg["methods"]))
    return "\n\n".join(parts)


def _per_bench(agg: dict, fmt) -> list[list[str]]:
    return [[m] + [fmt(m, c) if c else "–" for c in (agg["cells"][m].get(b) for b in agg["benches"])]
            for m in agg["methods"]]


def mq_table(agg: dict) -> str:
    def fmt(m, c):
        if c.get("kind") == "env":
            return "n/a (env)"
        if not _has_ltm(m):
            return "n/a (no LTM)"
        return "–" if c["mq"] is None else f"{c['mq']:.3f}"
    groups, text = _kinds(agg), []
    if "qa" in groups:
        text.append(f"judge: {agg['judges'].get('mq', 'coverage of the gold facts by the final memories')} "
                    "(token recall of each gold fact in some memory ≥ the threshold); 0-1 like the paper. "
                    "add-only stores every turn verbatim, so its MQ is an upper bound, not a decision.")
    if "env" in groups:
        text.append("MQ is not defined for environment benchmarks (a game has no gold facts to cover): n/a (env).")
    return " ".join(text) + "\n\n" + _table(["method"] + agg["benches"], _per_bench(agg, fmt))


def tokens_table(agg: dict) -> str:
    peers = (f" {', '.join(_peers(agg))}: every LLM call's prompt as the server counted it (mem0's "
             "fact-extraction prompt, ~8k tokens, is sent with every turn; the server re-reads only the suffix "
             "after its cached prefix)." if _peers(agg) else "")
    text = ("judge: none, counted (sum over the episode's steps of the policy's prompt tokens). "
            f"Cell: mean prompt tokens per episode.{peers}\n\n"
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
    def fmt(m, c):
        if c.get("kind") == "env":
            return (f"{c['wall_s']:.2f} s ({c['steps']:.1f} steps; {c['game_turns']:.1f} game turns, "
                    f"{c['invalid_actions']:.1f} invalid)")
        return f"{c['wall_s']:.2f} s ({c['steps']:.1f} steps; {c['no_answer']} no answer)"
    envs = (" Env cells: mean seconds per episode (mean steps; mean game turns, mean invalid actions or turns "
            "without one)." if "env" in _kinds(agg) else "")
    peers = (f" {', '.join(_peers(agg))}: steps = LLM calls (one extraction per turn for mem0, none for "
             "mem0-raw, and the answer)." if _peers(agg) else "")
    return ("judge: none, measured (stages 1-3 of one episode, this machine). "
            f"Cell: mean seconds per episode (mean steps per episode; episodes without an answer).{envs}{peers}\n\n"
            + _table(["method"] + agg["benches"], _per_bench(agg, fmt)))


def _header(manifest: dict, agg: dict, n_records: int) -> list[str]:
    ident, runs = manifest.get("identity", {}), manifest.get("runs", [])
    last = runs[-1] if runs else {}
    cfg = ident.get("config", {})
    mach = last.get("machine", {})
    keys = ("n_max", "t_max", "max_steps_per_turn", "top_k", "n_distractors", "demonstrations", "context_usage",
            "short_answer", "today")
    llm = agg["judges"].get("llm")
    envs = "env" in _kinds(agg)
    ecfg = ident.get("env_config") or {}
    score = "EM/F1 vs gold (QA); success / progress from the environment (env)" if envs else "EM/F1 vs gold"
    env_line = ("- environments: success rate = games solved; progress rate = mean of each game's best progress "
                "(share of the goal reached); both from the environment. MQ and the LLM judge do not apply. "
                "env config: " + ", ".join(f"{k}={v}" for k, v in ecfg.items()) if envs else
                "- success rate / progress rate: not applicable (no environment benchmark in this run).")
    return [
        "# agemem-lite evaluation",
        "",
        f"- policy: `{ident.get('policy', '?')}` · seed: {ident.get('seed', '?')} · n: {last.get('n', '?')} tasks "
        f"per benchmark (last run; each cell gives its own n) · episodes: {n_records}",
        f"- judges: task score = {score}; MQ = {agg['judges'].get('mq', 'not defined' if envs else 'coverage')}; "
        f"LLM judge: {llm or 'none (off; --judge llm:NAME)'}",
        f"- date: report {datetime.now().isoformat(timespec='seconds')}; runs "
        + ", ".join(r.get("date", "?") for r in runs[-3:]) + (" …" if len(runs) > 3 else ""),
        f"- machine: {mach.get('platform', '?')} ({mach.get('machine', '?')}), {mach.get('cpus', '?')} CPUs, "
        f"Python {mach.get('python', '?')}",
        "- episode config: " + ", ".join(f"{k}={cfg[k]}" for k in keys if k in cfg),
        env_line,
    ]


# -- plots ------------------------------------------------------------------------------------

def write_plots(agg: dict, plots_dir: str | Path) -> list[Path] | None:
    """``scores.png`` (F1 per method per QA benchmark, success rate per environment) and
    ``tool_usage.png`` (stacked calls per episode); None when matplotlib is not installed."""
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
        ys = [100 * _scores(agg["kinds"].get(b, "qa"), agg["cells"][m][b])[0] if b in agg["cells"][m] else 0
              for b in benches]
        ax.bar(xs, ys, width, label=m)
    ax.set_xticks(range(len(benches)), benches)
    ax.set_ylabel("F1 (QA) / success (env), %" if "env" in _kinds(agg) else "mean F1 (%)  [judge: F1 vs gold]")
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
