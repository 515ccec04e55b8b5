"""``summarize`` and ``eval``: read a rollout's results, and re-grade its finished runs."""

from __future__ import annotations

import json
import sys

import click

from rollouts.cli import console, err_console, pick_rollout
from rollouts.errors import EXIT_FAILED
from rollouts.ui import PREFIX


@click.command()
@click.argument("name", required=False)
@click.option("--latest", is_flag=True, help="The most recent rollout of NAME.")
@click.option("--rollout", "rollout", default=None, help="A rollout id (YYYYMMDD__HH-MM-SS).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary (versioned schema).")
@click.option("--markdown", is_flag=True, help="GitHub markdown (e.g. >> $GITHUB_STEP_SUMMARY).")
@click.option("--all", "show_all", is_flag=True, help="Print every row (tables stop at 50 rows otherwise).")
@click.pass_obj
def summarize(
    store, name: str | None, latest: bool, rollout: str | None, as_json: bool, markdown: bool, show_all: bool
) -> None:
    """Summarize a rollout of benchmark NAME (reads files only). Without NAME: list rollouts with
    their per-run mean, 95% CI and n (infra errors and cancelled runs shown apart)."""
    from rollouts.report.markdown import render_markdown
    from rollouts.report.summary import listing_line, load_for_report, render_table
    from rollouts.report.summary import summarize as do_summarize

    if not name:
        for b in store.list_benchmarks():
            for rid in reversed(store.list_rollouts(b)):
                line = listing_line(b, load_for_report(store, b, rid))
                console.print(line, markup=False, style="bold red" if "results incomplete" in line else None)
        return
    rid = pick_rollout(store, name, latest, rollout)
    s = do_summarize(load_for_report(store, name, rid))
    if as_json:
        click.echo(json.dumps(s, indent=2))
    elif markdown:
        click.echo(render_markdown(s), nl=False)
    else:
        render_table(s, console, show_all=show_all)


@click.command("eval")
@click.argument("name")
@click.option("--latest", is_flag=True, help="The most recent rollout of NAME.")
@click.option("--rollout", "rollout", default=None, help="A rollout id (YYYYMMDD__HH-MM-SS).")
@click.option("--parallel", type=int, default=None, help="Gradings at once (default: the rollout's).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def eval_cmd(store, name: str, latest: bool, rollout: str | None, parallel: int | None, as_json: bool) -> None:
    """Re-grade the finished runs of a rollout in fresh containers (agents are not re-run)."""
    from rollouts.regrade import regrade

    rid = pick_rollout(store, name, latest, rollout)
    out = err_console if as_json else console
    rows = regrade(store, name, rid, parallel=parallel, log=lambda s: out.print(f"{PREFIX} {s}", markup=False))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        from rich.table import Table

        t = Table(title=f"eval {name}/{rid}")
        for c in ("run", "task", "agent", "model", "status", "reward (before → now)"):
            t.add_column(c)
        for r in rows:
            before = "—" if r["previous_reward"] is None else f"{r['previous_reward']:g}"
            now = "—" if r["reward"] is None else f"{r['reward']:g}"
            t.add_row(r["run_id"], r["task"], r["agent"], r["model"], r["status"], f"{before} → {now}")
        console.print(t)
    if any(r["status"] == "error" for r in rows):
        sys.exit(EXIT_FAILED)
