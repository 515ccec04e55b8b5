"""``summarize``'s rich tables, sized for a 120-column terminal.

Per-row tables print at most :data:`MAX_ROWS` rows (a 1,000-row rich table takes seconds to lay
out and nobody reads it); a note says how many are left out and how to see them (``--all``,
``--json``, ``--markdown``). The overall table and the counts line are always complete.
"""

from __future__ import annotations

from typing import Any

from rollouts.report.fmt import fmt, fmt_ci, fmt_cost, fmt_integrity, fmt_options, fmt_pk, max_k

#: Rows of each per-row table printed unless ``show_all``.
MAX_ROWS = 50


def _table(title: str, cols: list[str], left: tuple[str, ...] = ("task", "agent", "model")):
    from rich import box
    from rich.table import Table

    t = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
        pad_edge=False,
        title_justify="left",
    )
    for col in cols:
        if col in left:
            t.add_column(col, overflow="fold", max_width=24 if col == "agent" else 28)
        else:
            t.add_column(col, justify="right", no_wrap=True)
    return t


def _add(table, *cells: str) -> None:
    """Add a row of plain-text cells (no rich markup: task names or options may contain brackets)."""
    from rich.text import Text

    table.add_row(*(c if isinstance(c, Text) else Text(str(c)) for c in cells))


def render_table(summary: dict[str, Any], console, *, show_all: bool = False) -> None:
    """Print the summary as rich tables sized for a 120-column terminal: rewards per group, usage and
    time per group, custom metrics per group (if any) — each cut at :data:`MAX_ROWS` rows unless
    ``show_all`` — then the overall table per agent × model and the run counts. Agent options print
    as ``k=v,k=v`` under the agent name; harness errors (bugs of ours) print in red."""
    title = f"{summary['name']} / {summary['rollout_id']} ({summary['status']})"
    all_rows = summary["rows"]
    rows = all_rows if show_all else all_rows[:MAX_ROWS]
    integrity = any(r.get("integrity") for r in rows)
    t = _table(
        title + " — reward per task",
        ["task", "agent", "model", "n/runs", "mean [95% CI]", "CI", "pass@1 [CI]", "pass@k [CI]", "infra"]
        + (["integrity"] if integrity else []),
        left=("task", "agent", "model", "CI", "integrity"),
    )
    for r in rows:
        k = max_k(r["pass_at_k"])
        pass_k = f"{fmt_pk(r, 'pass_at_k', k)} k={k}" if k and k > 1 else "—"
        _add(
            t,
            r["task"],
            _agent(r),
            r["model"],
            f"{r['n']}/{r['runs']}",
            fmt_ci(r["mean_reward"], r["ci_low"], r["ci_high"]),
            r["ci_method"] or "—",
            fmt_pk(r, "pass_at_k", 1),
            pass_k,
            str(r["infra_errors"]),
            *([fmt_integrity(r)] if integrity else []),
        )
    console.print(t)
    _more(console, len(all_rows) - len(rows), summary)
    u = _table(
        title + " — usage and time (mean s per run)",
        [
            "task",
            "agent",
            "model",
            "tok in/out",
            "calls",
            "cost $",
            "agent s",
            "verify s",
            "wall s",
            "t/o",
            "err",
        ],
    )
    for r in rows:
        tm = r.get("timings", {})
        _add(
            u,
            r["task"],
            _agent(r),
            r["model"],
            f"{r['prompt_tokens']}/{r['completion_tokens']}",
            str(r["llm_calls"]),
            fmt_cost(r["cost_usd"]),
            fmt(tm.get("agent"), 1),
            fmt(tm.get("verifier"), 1),
            fmt(r["mean_wall_sec"], 1),
            str(r["timeouts"]),
            str(r["errors"]) + (f" ({r['harness_errors']} harness)" if r.get("harness_errors") else ""),
        )
    console.print(u)
    _more(console, len(all_rows) - len(rows), summary)
    names = summary.get("metric_names") or []
    for i in range(0, len(names), 4):
        mt = _table(title + " — metrics, mean [95% CI]", ["task", "agent", "model", *names[i : i + 4]])
        for r in rows:
            ms = r.get("metrics", {})
            cells = [
                fmt_ci(ms[n]["mean"], ms[n]["ci_low"], ms[n]["ci_high"]) if n in ms else "—"
                for n in names[i : i + 4]
            ]
            _add(mt, r["task"], _agent(r), r["model"], *cells)
        console.print(mt)
    if names:
        _more(console, len(all_rows) - len(rows), summary)
    o = _table(
        "overall (macro mean over tasks, task = unit; per-run mean with task-clustered CI; 95% CIs)",
        ["agent", "model", "tasks", "n", "macro [CI]", "CI", "per-run [CI]", "infra", "harness", "cost $"],
        left=("agent", "model", "CI"),
    )
    p = _table(
        "overall pass@k over tasks (k = fewest runs of any task; 95% CIs)",
        ["agent", "model", "k", "pass@1 [CI]", "pass@k [CI]", "pass^k [CI]"],
        left=("agent", "model"),
    )
    for r in summary["overall"]:
        _add(
            o,
            _agent(r),
            r["model"],
            str(r["tasks"]),
            str(r.get("n", "—")),
            fmt_ci(r["macro_mean_reward"], r["ci_low"], r["ci_high"]),
            r["ci_method"] or "—",
            fmt_ci(r.get("micro_mean_reward"), r.get("micro_ci_low"), r.get("micro_ci_high")),
            str(r.get("infra_errors", 0)),
            _red(r.get("harness_errors", 0)),
            fmt_cost(r.get("cost_usd")),
        )
        k = r.get("k")
        _add(
            p,
            _agent(r),
            r["model"],
            str(k or "—"),
            fmt_ci(r.get("pass_at_1"), r.get("pass_at_1_low"), r.get("pass_at_1_high")),
            *[
                fmt_ci(r.get(x), r.get(x + "_low"), r.get(x + "_high")) if k else "—"
                for x in ("pass_at_k", "pass_hat_k")
            ],
        )
    console.print(o)
    console.print(p)
    counts = ", ".join(f"{k}={v}" for k, v in sorted(summary["counts"].items()))
    console.print(
        f"runs: {summary['total_runs']} ({counts}); infra errors and cancelled runs are not scored",
        markup=False,
    )
    if summary.get("skipped_line"):
        console.print(summary["skipped_line"], markup=False)
    if summary.get("incomplete"):
        from rich.text import Text

        console.print(Text(incomplete_line(summary), style="bold red"))


def incomplete_line(summary: dict[str, Any]) -> str:
    """The red warning printed under every summary with a ``harness`` error."""
    n = summary.get("harness_errors", 0)
    return (
        f"results incomplete: {n} run(s) ended in a harness error (a bug of rollouts, counted as reward 0); "
        "see each run's error in --json or its run dir"
    )


def _red(n: int):
    from rich.text import Text

    return Text(str(n), style="bold red" if n else "")


def _more(console, hidden: int, summary: dict[str, Any]) -> None:
    if hidden > 0:
        console.print(
            f"… {hidden} more rows not shown: rollouts summarize {summary['name']} --rollout {summary['rollout_id']}"
            " --all (or --json / --markdown)",
            markup=False,
        )


def _agent(r: dict, width: int = 23) -> str:
    """Agent name, then its options as ``k=v,k=v`` broken after commas to fit ``width``."""
    lines = [r["agent"]]
    cur = ""
    for part in fmt_options(r["options"]).split(","):
        if not part:
            continue
        if cur and len(cur) + 1 + len(part) > width:
            lines.append(cur + ",")
            cur = part
        else:
            cur = f"{cur},{part}" if cur else part
    if cur:
        lines.append(cur)
    return "\n".join(lines)
