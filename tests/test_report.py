"""Reports without Docker: ``summarize`` (phase timings, custom metrics), the rich tables, markdown,
the self-contained HTML report (structure, offline, artifact links, headless Chromium) and the
``summarize --markdown`` / ``report`` commands. Manifests are built with the store's models."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from rollouts.report import charts
from rollouts.report.fmt import fmt_options
from rollouts.report.html import render_html, write_report
from rollouts.report.markdown import render_markdown
from rollouts.report.summary import render_table, summarize
from rollouts.store import Manifest, ManifestTask, RunRecord, Store, Usage

RID = "20260101__00-00-00"
TIMINGS = {"image": 0.1, "sandbox_start": 0.5, "setup": 0.4, "agent": 2.0, "collect": 0.2, "verifier": 1.0}


def rec(
    task: str,
    reward: float | None = 1.0,
    *,
    agent: str = "shell",
    model: str = "m",
    i: int = 0,
    status: str = "completed",
    error_kind: str | None = None,
    opts: dict | None = None,
    metrics: dict | None = None,
    cost: float | None = 0.01,
    calls: int = 2,
    rid: str = RID,
    run_dir: str | None = None,
) -> RunRecord:
    """One run record; ``run_id`` is filled in by :func:`manifest`."""
    return RunRecord(
        run_id="",
        run_dir=run_dir or "",
        task_dir=f"data/tasks/prepared/{task}",
        task_name=task,
        entry_index=0,
        rollout_index=i,
        agent=agent,
        model=model,
        agent_options=opts or {},
        status=status,
        error_kind=error_kind,
        reward=reward,
        metrics=metrics or {},
        timings={**TIMINGS, "total": sum(TIMINGS.values())},
        usage=Usage(prompt_tokens=100 * calls, completion_tokens=10 * calls, calls=calls, cost_usd=cost),
    )


def manifest(
    records: list[RunRecord], name: str = "bench", rid: str = RID, status: str = "completed"
) -> Manifest:
    """A manifest around ``records`` (run ids ``<rid>-<k>``; run_dir defaulted under data/runs)."""
    for k, r in enumerate(records):
        r.run_id = f"{rid}-{k}"
        r.run_dir = r.run_dir or f"data/runs/{r.run_id}"
    arms = sorted(
        {(r.task_name, r.agent, r.model, json.dumps(r.agent_options, sort_keys=True)) for r in records}
    )
    tasks = [
        ManifestTask(
            index=j,
            task_dir=f"data/tasks/prepared/{t}",
            task_name=t,
            task_digest="0" * 64,
            agent=a,
            model=m,
            rollouts=1,
            backend="docker",
            agent_options=json.loads(o),
        )
        for j, (t, a, m, o) in enumerate(arms)
    ]
    return Manifest(
        config="configs/x.toml",
        config_digest="0" * 64,
        name=name,
        created_at=rid,
        rollout_id=rid,
        status=status,
        started_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:10:00+00:00",
        tool_version="test",
        host="h",
        pid=1,
        parallel=2,
        tasks=tasks,
        results=records,
    )


def rich_example() -> Manifest:
    """Two arms (one with options and an unknown price), three tasks, infra error, timeout, metrics."""
    recs = []
    for t, rewards in (("alpha", [1, 1, 0]), ("beta", [0, 0, 1]), ("gamma|pipe", [1, 1, 1])):
        for i, r in enumerate(rewards):
            recs.append(
                rec(
                    t,
                    float(r),
                    i=i,
                    metrics={"exact_match": float(r), "tests_passed": 3.0 + i, "reward": float(r)},
                )
            )
            recs.append(
                rec(
                    t,
                    0.5,
                    agent="rlm",
                    model="qwen",
                    i=i,
                    opts={"max_depth": 2, "temp": 0.1},
                    cost=None,
                    metrics={"tests_passed": 1.0},
                )
            )
    recs.append(rec("alpha", None, i=3, status="error", error_kind="infra"))
    recs.append(rec("beta", None, i=3, status="agent_timeout"))
    return manifest(recs)


# ----------------------------------------------------------------------------------------- summarize


def test_summary_rows_timings_metrics_and_infra():
    s = summarize(rich_example())
    assert s["schema_version"] == 1 and s["total_runs"] == 20 and s["infra_errors"] == 1
    assert s["phases"] == ["image", "sandbox_start", "setup", "agent", "collect", "verifier"]
    assert s["metric_names"] == ["exact_match", "tests_passed"]  # "reward" is the reward itself
    rows = {(r["task"], r["agent"]): r for r in s["rows"]}
    alpha = rows[("alpha", "shell")]
    assert (alpha["runs"], alpha["n"], alpha["infra_errors"]) == (4, 3, 1)  # infra excluded from n
    assert alpha["mean_reward"] == pytest.approx(2 / 3) and alpha["ci_method"] == "wilson"
    beta = rows[("beta", "shell")]
    assert (
        beta["n"] == 4 and beta["timeouts"] == 1 and beta["mean_reward"] == pytest.approx(0.25)
    )  # timeout = 0
    assert alpha["timings"]["agent"] == pytest.approx(2.0) and alpha["mean_wall_sec"] == pytest.approx(4.2)
    em = alpha["metrics"]["exact_match"]
    assert em["n"] == 3 and em["mean"] == pytest.approx(2 / 3) and em["ci_method"] == "wilson"
    tp = alpha["metrics"]["tests_passed"]
    assert tp["mean"] == pytest.approx(4.0) and tp["ci_method"] == "t" and tp["ci_low"] < 4.0 < tp["ci_high"]
    assert alpha["pass_at_k"][3] == pytest.approx(1.0) and alpha["pass_hat_k"][3] == pytest.approx(0.0)
    rlm = rows[("alpha", "rlm")]
    assert rlm["cost_usd"] is None  # unknown price stays unknown, never 0
    assert rlm["metrics"]["tests_passed"]["ci_method"] is None  # constant unbounded metric: no interval
    assert alpha["cost_usd"] == pytest.approx(0.03)  # usage of the 3 scored runs (the infra run is apart)
    json.dumps(s)  # JSON-ready


def test_summary_overall_macro_micro_usage():
    s = summarize(rich_example())
    o = {x["agent"]: x for x in s["overall"]}
    shell = o["shell"]
    assert shell["tasks"] == 3 and shell["runs"] == 11 and shell["n"] == 10 and shell["infra_errors"] == 1
    assert shell["macro_mean_reward"] == pytest.approx((2 / 3 + 0.25 + 1) / 3)
    assert shell["micro_mean_reward"] == pytest.approx(6 / 10) and shell["micro_ci_method"] == (
        "wilson-clustered"
    )
    assert (
        shell["llm_calls"] == 20
        and shell["prompt_tokens"] == 2000
        and shell["cost_usd"] == pytest.approx(0.1)
    )
    assert shell["timings"]["verifier"] == pytest.approx(1.0)
    assert o["rlm"]["cost_usd"] is None and o["rlm"]["macro_mean_reward"] == pytest.approx(0.5)
    assert set(shell["metrics"]) == {"exact_match", "tests_passed"}
    tp = shell["metrics"]["tests_passed"]  # identical per-task residual sums: clustered SE 0, no interval
    assert tp["ci_low"] is None and tp["ci_method"] is None and tp["mean"] is not None


def test_summary_edge_cases_infra_only_and_empty():
    s = summarize(manifest([rec("a", None, status="error", error_kind="infra")]))
    (row,) = s["rows"]
    assert row["n"] == 0 and row["mean_reward"] is None and row["infra_errors"] == 1 and row["timings"] == {}
    assert s["overall"][0]["macro_mean_reward"] is None
    render_markdown(s)
    render_html(s, manifest([rec("a", None, status="error", error_kind="infra")]))
    empty = summarize(manifest([]))
    assert empty["rows"] == [] and empty["overall"] == []
    assert "no scored runs" in render_markdown(empty)


def test_fmt_options_sorted_k_eq_v():
    assert fmt_options('{"b": 2, "a": "x"}') == "a=x,b=2"
    assert fmt_options({"l": [1, 2]}) == "l=[1, 2]" and fmt_options("") == ""


def test_render_table_fits_120_columns_and_keeps_brackets():
    recs = [
        rec(
            "a_rather_long_task_name_for_the_table",
            1.0,
            opts={"max_reply_tokens": 160, "max_steps": 4, "temperature": 0.7},
        ),
        rec("b[1]", 0.0, model="gpt[x]"),
    ]
    console = Console(width=120, record=True, color_system=None)
    render_table(summarize(manifest(recs)), console)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 120
    assert "b[1]" in text and "gpt[x]" in text
    for part in ("max_reply_tokens=160,", "max_steps=4,", "temperature=0.7"):  # k=v,k=v under the agent
        assert part in text


# ----------------------------------------------------------------------------------------- markdown


def test_markdown_headline_tables_unknown_cost_and_infra():
    md = render_markdown(summarize(rich_example()))
    assert md.startswith("## Benchmark `bench` — rollout `20260101__00-00-00` (completed)")
    assert "Mean reward (macro over tasks, 95% CI): **shell/m** 0.64 [" in md  # best arm first
    assert (
        "; **rlm/qwen [max_depth=2,temp=0.1]** 0.50 [0.13, 0.87] over 3 task(s)." in md
    )  # never [0.50, 0.50]
    assert "| task | agent | model | options | n/runs | mean reward [95% CI] | CI method |" in md
    assert "gamma\\|pipe" in md  # cell pipes escaped
    rlm_lines = [ln for ln in md.splitlines() if ln.startswith("| alpha | rlm |")]
    assert rlm_lines and "unknown" in rlm_lines[0] and "0.0000" not in rlm_lines[0]
    assert "### Infrastructure errors" in md and "| alpha | shell/m | 1 | 3 |" in md
    assert "### Time per phase (mean seconds per run)" in md and "| sandbox_start |" in md
    assert "### Metrics from the verifier" in md and "exact_match" in md
    assert "Wilson" in md and "pass^k" in md
    header_cols = None
    for line in md.splitlines():  # every table row has as many cells as its header
        if line.startswith("| ") and not line.startswith("| ---"):
            n = len(re.split(r"(?<!\\)\|", line)) - 2
            if header_cols is None:
                header_cols = n
            assert n == header_cols, line
        elif not line.startswith("|"):
            header_cols = None


def test_markdown_cuts_long_tables_and_warns_on_unfinished():
    recs = [rec(f"t{i:03d}", 1.0) for i in range(30)]
    md = render_markdown(summarize(manifest(recs, status="cancelled")), max_rows=10)
    assert "… 20 more rows" in md and "is `cancelled`" in md


# ----------------------------------------------------------------------------------------- HTML


def _with_run_dirs(tmp_path: Path) -> Manifest:
    m = rich_example()
    for r in m.results:
        d = tmp_path / "data" / "runs" / r.run_id
        (d / "artifacts").mkdir(parents=True)
        (d / "logs").mkdir()
        (d / "artifacts" / "diff.patch").write_text("+x\n")
        (d / "evaluation_results.json").write_text("{}")
        (d / "logs" / "eval.log").write_text("ok\n")
        r.run_dir = str(d)
    return m


def test_html_is_self_contained_with_charts_and_artifact_links(tmp_path):
    m = _with_run_dirs(tmp_path)
    out = write_report(summarize(m), m, tmp_path / "reports" / "r.html")
    html = out.read_text()
    assert out.stat().st_mode & 0o044  # readable by others, unlike mkstemp's 0600
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert html.count("<svg") >= 4 and "<title>Mean reward per agent × model" in html
    assert "Mean reward per task × agent/model" in html and "Cost per run vs mean reward" in html
    assert "Time per phase" in html
    assert not re.search(r"https?://", html), "no external URL of any kind"
    assert not re.search(r"<(link|img|iframe)\b|<script[^>]+src=|@import|url\(", html)
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert len([h for h in hrefs if h.endswith("diff.patch")]) == 20
    for h in hrefs:
        assert not h.startswith("/") and (out.parent / h).exists(), h  # relative and resolvable
    assert "../data/runs/" in hrefs[0]
    assert html.count('<tr class="') == 20  # one per run
    assert "gamma|pipe" in html and "unknown" in html and "error (infra)" in html


def test_html_escapes_untrusted_text():
    m = manifest([rec("<script>alert(1)</script>", 1.0, model='"><b>x')])
    html = render_html(summarize(m), m)
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert '"><b>x' not in html


def test_charts_helpers():
    assert (
        charts.viridis(0) == "#440154" and charts.viridis(1) == "#fde725" and charts.viridis(7) == "#fde725"
    )
    assert charts.nice_ticks(0.9) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert charts.nice_ticks(12.3)[-1] >= 12.3 and charts.nice_ticks(0) == [0.0, 1.0]
    assert "no data" in charts.bar_ci([], "t") and "no data" in charts.heatmap([], [], {}, "t")
    svg = charts.scatter_cost([("a", None, 0.5, 0.2, 0.8), ("b", 0.01, 0.7, None, None)], "c")
    assert "unknown" in svg and svg.count("<circle") == 4  # two points + two legend markers


def _png_size(p: Path) -> tuple[int, int]:
    head = p.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


CHROMIUM = next(
    (shutil.which(c) for c in ("chromium", "chromium-browser", "google-chrome") if shutil.which(c)), None
)


@pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium)"
)
def test_html_renders_in_headless_chromium(tmp_path):
    m = _with_run_dirs(tmp_path)
    out = write_report(summarize(m), m, tmp_path / "report.html")
    png = tmp_path / "shot.png"
    base = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    p = subprocess.run(
        [*base, "--window-size=1280,1800", f"--screenshot={png}", out.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert p.returncode == 0 and png.is_file(), p.stderr[-2000:]
    assert _png_size(png) == (1280, 1800)
    assert png.stat().st_size > 40_000, "screenshot looks blank"
    dom = subprocess.run(
        [*base, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=180
    ).stdout
    assert dom.count("<svg") >= 4 and "Mean reward per agent × model" in dom


# ----------------------------------------------------------------------------------------- CLI


def test_cli_summarize_markdown_and_report(tmp_path, monkeypatch):
    from rollouts.cli import cli

    data = tmp_path / "data"
    store = Store(data)
    m = _with_run_dirs(tmp_path)
    store.write_manifest(m)
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["--data-dir", str(data), "summarize", "bench", "--latest", "--markdown"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("## Benchmark `bench`") and "| task | agent |" in r.output
    r = CliRunner().invoke(
        cli, ["--data-dir", str(data), "report", "bench", "--latest", "-o", "out/rep.html"]
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "rep.html").is_file() and "out/rep.html" in r.output
    r = CliRunner().invoke(cli, ["--data-dir", str(data), "report", "bench", "--rollout", RID])
    assert r.exit_code == 0 and (data / "rollouts" / "bench" / RID / "report.html").is_file()
    r = CliRunner().invoke(cli, ["--data-dir", str(data), "report", "bench"])
    assert r.exit_code == 2
    r = CliRunner().invoke(cli, ["--data-dir", str(data), "report", "nope", "--latest"])
    assert r.exit_code == 2


def _cli_store(tmp_path: Path, m: Manifest) -> Path:
    data = tmp_path / "data"
    Store(data).write_manifest(m)
    return data


def test_summarize_both_views_count_model_errors_as_zero(tmp_path):
    """One pass + one model error: 0.50 with NAME and without (the error is a failure, not a drop);
    infra errors and cancelled runs are shown apart."""
    from rollouts.cli import cli

    m = manifest(
        [
            rec("a", 1.0),
            rec("a", None, i=1, status="error", error_kind="model"),
            rec("a", None, i=2, status="error", error_kind="infra"),
            rec("a", None, i=3, status="cancelled"),
        ]
    )
    s = summarize(m)
    assert s["rows"][0]["mean_reward"] == 0.5 and s["rows"][0]["n"] == 2
    data = _cli_store(tmp_path, m)
    r = CliRunner().invoke(cli, ["--data-dir", str(data), "summarize"])
    assert r.exit_code == 0, r.output
    assert "mean=0.50 [" in r.output and "n=2" in r.output
    assert "infra=1 cancelled=1" in r.output


def test_summarize_harness_errors_are_shown_in_red_as_incomplete():
    m = manifest([rec("a", 1.0), rec("a", None, i=1, status="error", error_kind="harness")])
    s = summarize(m)
    assert s["incomplete"] and s["harness_errors"] == 1 and s["overall"][0]["harness_errors"] == 1
    assert s["rows"][0]["n"] == 2 and s["rows"][0]["mean_reward"] == 0.5  # counted as reward 0
    con = Console(record=True, width=120, force_terminal=True, color_system="standard")
    render_table(s, con)
    assert "results incomplete: 1 run(s) ended in a harness error" in con.export_text(clear=False)
    ansi = con.export_text(styles=True)
    assert "\x1b[1;31mresults incomplete" in ansi  # bold red
    assert "results incomplete" in render_markdown(s)


def test_summarize_long_tables_are_cut_with_a_note():
    m = manifest([rec(f"t{i:03d}", float(i % 2)) for i in range(120)])
    s = summarize(m)
    con = Console(record=True, width=120)
    render_table(s, con)
    text = con.export_text()
    assert "t049" in text and "t050" not in text
    assert "… 70 more rows not shown: rollouts summarize bench --rollout" in text and "--all" in text
    con = Console(record=True, width=120)
    render_table(s, con, show_all=True)
    assert "t119" in con.export_text()
    # the overall table shows n and pass@k intervals
    o = s["overall"][0]
    assert o["n"] == 120 and o["k"] == 1 and o["pass_at_1_low"] < o["pass_at_1"] < o["pass_at_1_high"]


def test_integrity_label_column_in_every_view():
    recs = [rec("a", 1.0), rec("a", 0.0, i=1), rec("b", 1.0)]
    recs[0].integrity = recs[1].integrity = "isolated"
    recs[2].integrity = "agent-controlled"
    s = summarize(manifest(recs))
    assert [r["integrity"] for r in s["rows"]] == [{"isolated": 2}, {"agent-controlled": 1}]
    con = Console(record=True, width=120)
    render_table(s, con)
    text = con.export_text()
    assert "integrity" in text and "isolated 2" in text and "agent-controll" in text  # folded at 120 cols
    md = render_markdown(s)
    assert "| grading integrity |" in md and "isolated 2" in md
    assert "agent-controlled 1" in render_html(s, manifest(recs))
