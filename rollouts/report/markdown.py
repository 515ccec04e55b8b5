"""A rollout summary as GitHub-flavoured markdown (for ``$GITHUB_STEP_SUMMARY``, PR comments, notes).

Input is the dict of :func:`rollouts.report.summary.summarize`; nothing is recomputed here. Every
score is printed with its 95% confidence interval and the interval's method; an unknown price
prints "unknown" (never 0); infrastructure errors are listed apart from model failures.
"""

from __future__ import annotations

from typing import Any

from rollouts.report.fmt import arm_label, fmt, fmt_ci, fmt_cost, fmt_integrity, fmt_options, fmt_pk, max_k

#: Rows of the per-task table before it is cut (GitHub caps a step summary at 1 MiB).
DEFAULT_MAX_ROWS = 300

_CI_NAMES = {
    "wilson": "Wilson",
    "t": "Student t",
    "constant": "constant (all equal)",
    "wilson-bd": "Wilson (partial credit)",
    "wilson-clustered": "Wilson, clustered n_eff",
    "clustered-t": "clustered t",
    "agresti-min": "Agresti-Min",
}


def esc(text: Any) -> str:
    """A value made safe for one markdown table cell (pipes escaped, newlines flattened)."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[Any]], align: str | None = None) -> list[str]:
    """Markdown table lines. ``align`` is one char per column: ``l`` or ``r`` (default: first left)."""
    align = align or ("l" + "r" * (len(header) - 1))
    sep = ["---:" if a == "r" else "---" for a in align]
    out = ["| " + " | ".join(esc(h) for h in header) + " |", "| " + " | ".join(sep) + " |"]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return out


def ci_name(method: str | None) -> str:
    """Human name of a CI method id from :mod:`rollouts.report.stats` ("—" for none)."""
    return "—" if not method else _CI_NAMES.get(method, method)


def headline(summary: dict[str, Any]) -> str:
    """One sentence: each arm's macro mean reward with its CI, best first, and the run counts."""
    arms = sorted(summary["overall"], key=lambda o: -(o["macro_mean_reward"] or -1.0))
    parts = [
        f"**{esc(arm_label(o['agent'], o['model'], o['options']))}** "
        f"{fmt_ci(o['macro_mean_reward'], o['ci_low'], o['ci_high'])} over {o['tasks']} task(s)"
        for o in arms
    ]
    return (
        "Mean reward (macro over tasks, 95% CI): " + ("; ".join(parts) if parts else "no scored runs") + "."
    )


def time_cell(tm: dict[str, float], wall: float | None) -> str:
    """Mean seconds per run as ``agent A · verifier V · other O · wall W`` (other = the remaining phases)."""
    parts = [f"{ph} {tm[ph]:.1f}" for ph in ("agent", "verifier") if ph in tm]
    other = sum(v for k, v in tm.items() if k not in ("agent", "verifier", "total"))
    if tm:
        parts.append(f"other {other:.1f}")
    if wall is not None:
        parts.append(f"wall {wall:.1f}")
    return " · ".join(parts) or "—"


def render_markdown(summary: dict[str, Any], max_rows: int = DEFAULT_MAX_ROWS) -> str:
    """The summary as markdown: headline, overall table per agent × model, per-task table (mean
    reward [95% CI] and method, pass@1/pass@k/pass^k, tokens, LLM calls, cost, seconds per phase),
    time per phase, custom metrics, infrastructure errors. ``max_rows`` caps the per-task table."""
    s = summary
    counts = ", ".join(f"{k} {v}" for k, v in sorted(s["counts"].items()))
    infra = s.get("infra_errors", s["counts"].get("error:infra", 0))
    out = [
        f"## Benchmark `{s['name']}` — rollout `{s['rollout_id']}` ({s['status']})",
        "",
        headline(s),
        "",
        f"Runs: {s['total_runs']} ({counts}). Infrastructure errors: {infra} (excluded from every score; "
        "timeouts count as failures).",
    ]
    if s.get("skipped_line"):
        out += ["", f"> **Unsupported tasks:** {esc(s['skipped_line'])}"]
    if s["status"] != "completed":
        out += ["", f"> **Warning:** the rollout is `{s['status']}`; scores cover the finished runs only."]
    if s.get("incomplete"):
        from rollouts.report.tables import incomplete_line

        out += ["", f"> **:red_circle: {incomplete_line(s)}**"]
    out += ["", "### Overall per agent × model", ""]
    out += table(
        [
            "agent",
            "model",
            "options",
            "tasks",
            "mean reward [95% CI]",
            "CI method",
            "per-run mean [95% CI]",
            "n (runs)",
            "pass@1 [95% CI]",
            "pass@k [95% CI]",
            "pass^k [95% CI]",
            "timeouts",
            "errors",
            "harness",
            "infra",
            "tokens in/out",
            "LLM calls",
            "cost (USD)",
        ],
        [
            [
                o["agent"],
                o["model"],
                fmt_options(o["options"]) or "—",
                o["tasks"],
                fmt_ci(o["macro_mean_reward"], o["ci_low"], o["ci_high"]),
                ci_name(o["ci_method"]),
                fmt_ci(o.get("micro_mean_reward"), o.get("micro_ci_low"), o.get("micro_ci_high")),
                f"{o.get('n', '—')} ({o.get('runs', '—')})",
                fmt_ci(o.get("pass_at_1"), o.get("pass_at_1_low"), o.get("pass_at_1_high")),
                *[
                    f"{fmt_ci(o.get(x), o.get(x + '_low'), o.get(x + '_high'))} (k={o['k']})"
                    if o.get("k")
                    else "—"
                    for x in ("pass_at_k", "pass_hat_k")
                ],
                o.get("timeouts", 0),
                o.get("errors", 0),
                o.get("harness_errors", 0),
                o.get("infra_errors", 0),
                f"{o.get('prompt_tokens', 0)}/{o.get('completion_tokens', 0)}",
                o.get("llm_calls", 0),
                fmt_cost(o.get("cost_usd")),
            ]
            for o in s["overall"]
        ],
        align="lllrrlrrrrrrrrrrrr",
    )
    out += [
        "",
        "Macro mean: every task weighs the same; its CI is a Wilson interval over task means (the task "
        "is the unit). Per-run mean: all runs pooled, Wilson interval at the task-clustered effective "
        "sample size. pass@k over tasks at k = the fewest runs of any task. Methods and sources: "
        "`rollouts/report/stats.py`.",
        "",
    ]
    out += ["### Per task × agent × model", ""]
    rows = s["rows"]
    body = []
    for r in rows[:max_rows]:
        k = max_k(r["pass_at_k"])
        body.append(
            [
                r["task"],
                r["agent"],
                r["model"],
                fmt_options(r["options"]) or "—",
                f"{r['n']}/{r['runs']}",
                fmt_ci(r["mean_reward"], r["ci_low"], r["ci_high"]),
                ci_name(r["ci_method"]),
                fmt_pk(r, "pass_at_k", 1),
                f"{fmt_pk(r, 'pass_at_k', k)} (k={k})" if k and k > 1 else "—",
                f"{fmt_pk(r, 'pass_hat_k', k)} (k={k})" if k and k > 1 else "—",
                f"{r['prompt_tokens']}/{r['completion_tokens']}",
                r["llm_calls"],
                fmt_cost(r["cost_usd"]),
                time_cell(r.get("timings", {}), r["mean_wall_sec"]),
                r["timeouts"],
                r["errors"],
                r["infra_errors"],
                fmt_integrity(r),
            ]
        )
    out += table(
        [
            "task",
            "agent",
            "model",
            "options",
            "n/runs",
            "mean reward [95% CI]",
            "CI method",
            "pass@1 [95% CI]",
            "pass@k [95% CI]",
            "pass^k [95% CI]",
            "tokens in/out",
            "LLM calls",
            "cost (USD)",
            "time per run (s)",
            "timeouts",
            "errors",
            "infra",
            "grading integrity",
        ],
        body,
        align="lllllrlrrrrrrlrrrl",
    )
    if len(rows) > max_rows:
        out += ["", f"… {len(rows) - max_rows} more rows (see `summarize --json` or the HTML report)."]
    out += [
        "",
        "pass@k: unbiased estimator (Chen et al. 2021) for the largest k ≤ runs; pass^k: all k runs pass "
        "(Yao et al. 2024). n excludes infrastructure errors.",
    ]
    out += _phases(s) + _metrics(s, max_rows) + _infra(s)
    return "\n".join(out) + "\n"


def _phases(s: dict[str, Any]) -> list[str]:
    phases = [p for p in s.get("phases", []) if p != "total"]
    if not phases:
        return []
    out = ["", "### Time per phase (mean seconds per run)", ""]
    out += table(
        ["agent", "model", "options", *phases, "total"],
        [
            [
                o["agent"],
                o["model"],
                fmt_options(o["options"]) or "—",
                *[fmt(o.get("timings", {}).get(p), 2) for p in phases],
                fmt(o.get("timings", {}).get("total"), 2),
            ]
            for o in s["overall"]
        ],
        align="lll" + "r" * (len(phases) + 1),
    )
    return out


def _metrics(s: dict[str, Any], max_rows: int) -> list[str]:
    names = s.get("metric_names") or []
    if not names:
        return []
    out = ["", "### Metrics from the verifier (mean [95% CI])", ""]
    out += table(
        ["agent", "model", "options", *names],
        [
            [
                o["agent"],
                o["model"],
                fmt_options(o["options"]) or "—",
                *[
                    fmt_ci(m["mean"], m["ci_low"], m["ci_high"])
                    if (m := o.get("metrics", {}).get(n))
                    else "—"
                    for n in names
                ],
            ]
            for o in s["overall"]
        ],
        align="lll" + "r" * len(names),
    )
    out += ["", "Per agent × model over all runs, CI clustered by task. Per task:", ""]
    body = []
    for r in s["rows"][:max_rows]:
        ms = r.get("metrics", {})
        body.append(
            [
                r["task"],
                arm_label(r["agent"], r["model"], r["options"]),
                *[
                    fmt_ci(ms[n]["mean"], ms[n]["ci_low"], ms[n]["ci_high"]) if n in ms else "—"
                    for n in names
                ],
            ]
        )
    out += table(["task", "agent/model", *names], body, align="ll" + "r" * len(names))
    return out


def _infra(s: dict[str, Any]) -> list[str]:
    bad = [r for r in s["rows"] if r["infra_errors"]]
    out = ["", "### Infrastructure errors", ""]
    if not bad:
        return out + ["None."]
    out += ["Runs lost to the infrastructure (sandbox, image, transport); not counted as model failures:", ""]
    out += table(
        ["task", "agent/model", "infra errors", "scored runs"],
        [
            [r["task"], arm_label(r["agent"], r["model"], r["options"]), r["infra_errors"], r["n"]]
            for r in bad
        ],
    )
    return out
