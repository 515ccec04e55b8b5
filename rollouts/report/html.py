"""``report``: one self-contained HTML file for a rollout (inline CSS, inline SVG charts, a few
lines of inline JS for sorting; no CDN, no web font, opens offline).

Charts (:mod:`rollouts.report.charts`): mean reward per agent × model with 95% CI bars, a task ×
agent/model heat map, cost per run vs score, mean seconds per phase. Tables: overall, per task,
and one row per run with relative links to its artifacts under ``data/runs/<run id>/`` (relative
to the report's folder, so the links work when the report and ``data/`` move together).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from rollouts.report import charts
from rollouts.report.fmt import arm_label, fmt, fmt_ci, fmt_cost, fmt_integrity, fmt_options, fmt_pk, max_k
from rollouts.report.markdown import ci_name, headline, time_cell
from rollouts.report.tables import incomplete_line
from rollouts.store import Manifest, atomic_write

#: Files of a run folder linked from the per-run table: (label, path inside the run folder).
ARTIFACTS = (
    ("diff", "artifacts/diff.patch"),
    ("notes", "artifacts/notes.md"),
    ("repo", "artifacts/repo_info.json"),
    ("eval", "evaluation_results.json"),
    ("scoring", "scoring_results.md"),
    ("eval.log", "logs/eval.log"),
    ("agent.log", "logs/agent.log"),
    ("trajectory", "agent/trajectory.json"),
)


def _env():
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(
        loader=PackageLoader("rollouts.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _links(run_dir: str, out_dir: Path, cwd: Path) -> tuple[str | None, list[tuple[str, str]]]:
    """(relative link to the run folder or None, [(label, relative link)]) for files that exist."""
    p = Path(run_dir)
    p = p if p.is_absolute() else cwd / p
    if not p.is_dir():
        return None, []
    rel = Path(os.path.relpath(p, out_dir)).as_posix()
    return rel + "/", [(label, f"{rel}/{f}") for label, f in ARTIFACTS if (p / f).is_file()]


def _charts(s: dict[str, Any]) -> dict[str, str]:
    overall = s["overall"]
    arms = [arm_label(o["agent"], o["model"], o["options"]) for o in overall]
    bars = charts.bar_ci(
        [(a, o["macro_mean_reward"], o["ci_low"], o["ci_high"]) for a, o in zip(arms, overall, strict=True)],
        "Mean reward per agent × model (macro mean over tasks, 95% CI)",
    )
    tasks = sorted({r["task"] for r in s["rows"]})
    cells = {}
    for r in s["rows"]:
        if r["mean_reward"] is not None:
            a = arm_label(r["agent"], r["model"], r["options"])
            tip = f"{r['task']} × {a}: {fmt_ci(r['mean_reward'], r['ci_low'], r['ci_high'])}, n={r['n']}"
            cells[(r["task"], a)] = (r["mean_reward"], tip)
    heat = charts.heatmap(tasks, arms, cells, "Mean reward per task × agent/model")
    pts = []
    for a, o in zip(arms, overall, strict=True):
        n = o.get("n") or 0
        cost = None if o.get("cost_usd") is None else (o["cost_usd"] / n if n else 0.0)
        pts.append((a, cost, o["macro_mean_reward"], o["ci_low"], o["ci_high"]))
    scatter = charts.scatter_cost(pts, "Cost per run vs mean reward (95% CI)")
    phases = [p for p in s.get("phases", []) if p != "total"]
    timing = charts.stacked_phases(
        [(a, o.get("timings", {})) for a, o in zip(arms, overall, strict=True)],
        phases,
        "Time per phase (mean seconds per run)",
    )
    return {"bars": bars, "heat": heat, "scatter": scatter, "phases": timing}


def _rows(s: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for r in s["rows"]:
        k = max_k(r["pass_at_k"])
        out.append(
            {
                **r,
                "options_s": fmt_options(r["options"]).replace(",", ", "),
                "mean_s": fmt_ci(r["mean_reward"], r["ci_low"], r["ci_high"]),
                "ci_name": ci_name(r["ci_method"]),
                "pass1": fmt_pk(r, "pass_at_k", 1),
                "passk": f"{fmt_pk(r, 'pass_at_k', k)} (k={k})" if k and k > 1 else "—",
                "integrity_s": fmt_integrity(r),
                "cost_s": fmt_cost(r["cost_usd"]),
                "timings_s": time_cell(r.get("timings", {}), None),
                "wall_s": fmt(r["mean_wall_sec"], 1),
            }
        )
    return out


def _runs(m: Manifest, out_dir: Path) -> Markup:
    """The ``<tr>`` rows of the runs table, built here with escaped f-strings (a jinja loop over
    10,000 runs costs ~0.3 s of attribute lookups; this ~0.05 s)."""
    cwd, rows = Path.cwd(), []
    arms: dict[tuple, str] = {}
    for r in m.results:
        dir_link, links = _links(r.run_dir, out_dir, cwd)
        status = r.status if r.status != "error" else f"error ({r.error_kind})"
        cls = r.error_kind if r.error_kind in ("infra", "harness") else r.status
        key = (r.agent, r.model, tuple(sorted(r.agent_options.items())) if r.agent_options else ())
        arm = arms.get(key) or arms.setdefault(key, escape(arm_label(r.agent, r.model, r.agent_options)))
        u = r.usage
        rid = escape(r.run_id)
        link_cells = "".join(f'<a href="{escape(h)}">{escape(lab)}</a>' for lab, h in links)
        rows.append(
            f'<tr class="{escape(cls)}"><td class="rid">'
            + (f'<a href="{escape(dir_link)}">{rid}</a>' if dir_link else str(rid))
            + f'</td><td>{escape(r.task_name)}</td><td>{arm}</td><td class="num">{r.rollout_index}</td>'
            f'<td class="st">{escape(status)}</td><td class="num">{"—" if r.reward is None else f"{r.reward:g}"}</td>'
            f'<td class="num">{fmt(r.timings.get("total"), 1)}</td>'
            f'<td class="num">{u.prompt_tokens}/{u.completion_tokens}</td><td class="num">{u.calls}</td>'
            f'<td class="num">{fmt_cost(u.cost_usd if u.calls else 0.0)}</td><td class="links">{link_cells}</td>'
            f'<td class="err">{escape((r.error or "")[:300])}</td></tr>'
        )
    return Markup("\n".join(rows))


def render_html(summary: dict[str, Any], manifest: Manifest, out_dir: Path | None = None) -> str:
    """The report as one HTML string. ``summary`` is :func:`summarize` of ``manifest``; links to run
    artifacts are made relative to ``out_dir`` (the folder the report is written to; default cwd)."""
    out_dir = Path(out_dir or Path.cwd()).resolve()
    s = summary
    overall = [
        {
            **o,
            "arm": arm_label(o["agent"], o["model"], o["options"]),
            "mean_s": fmt_ci(o["macro_mean_reward"], o["ci_low"], o["ci_high"]),
            "ci_name": ci_name(o["ci_method"]),
            "micro_s": fmt_ci(o.get("micro_mean_reward"), o.get("micro_ci_low"), o.get("micro_ci_high")),
            "cost_s": fmt_cost(o.get("cost_usd")),
            "pass_s": [
                fmt_ci(o.get(x), o.get(x + "_low"), o.get(x + "_high"))
                + (f" (k={o['k']})" if x != "pass_at_1" else "")
                if o.get("k")
                else "—"
                for x in ("pass_at_1", "pass_at_k", "pass_hat_k")
            ],
        }
        for o in s["overall"]
    ]
    run_rows = _runs(manifest, out_dir)
    return (
        _env()
        .get_template("report.html.j2")
        .render(
            s=s,
            m=manifest,
            headline=headline(s).replace("**", ""),
            charts=_charts(s),
            overall=overall,
            rows=_rows(s),
            run_rows=run_rows,
            n_runs=len(manifest.results),
            counts=sorted(s["counts"].items()),
            runs_open=len(manifest.results) <= 500,
            incomplete=incomplete_line(s),
        )
    )


def write_report(summary: dict[str, Any], manifest: Manifest, out: str | Path) -> Path:
    """Render the report and write it atomically to ``out`` (parent folders created). Returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, render_html(summary, manifest, out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(out, 0o666 & ~umask)  # a report is for sharing: the usual file mode, not mkstemp's 0600
    return out
