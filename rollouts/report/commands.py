"""Click commands of the report package, registered on the main group in :mod:`rollouts.cli`:

* ``compare NAME_A [--rollout ID | --latest] NAME_B [--rollout ID | --latest] [--json | --markdown]``
  (``NAME/ID`` works as a shorthand for ``NAME --rollout ID``; a side without a selector is the
  latest rollout of that name; both sides may name the same benchmark:
  ``compare nightly --rollout 20250101__02-00-00 nightly --latest``);
* ``report NAME (--latest | --rollout ID) [-o report.html]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from rollouts.errors import EXIT_FAILED, ConfigError


def _console():
    from rollouts.ui import make_console

    return make_console()


def parse_sides(tokens: tuple[str, ...] | list[str]) -> list[tuple[str, str | None]]:
    """Split ``compare``'s free tokens into exactly two (name, rollout id or None = latest) sides.

    A bare token starts a side (``NAME`` or ``NAME/ID``); ``--latest`` and ``--rollout ID`` /
    ``--rollout=ID`` apply to the side before them. Raises ConfigError on anything else."""
    sides: list[list] = []
    it = iter(tokens)
    for tok in it:
        if tok == "--latest":
            if not sides:
                raise ConfigError("compare: --latest must follow a benchmark name")
            sides[-1][2] = True
        elif tok == "--rollout" or tok.startswith("--rollout="):
            rid = tok.partition("=")[2] if "=" in tok else next(it, None)
            if not sides or not rid or rid.startswith("-"):
                raise ConfigError("compare: use NAME --rollout ID")
            sides[-1][1] = rid
        elif tok.startswith("-"):
            raise ConfigError(f"compare: unknown option {tok!r}")
        else:
            name, _, rid = tok.strip("/").partition("/")
            sides.append([name, rid or None, False])
    if len(sides) != 2:
        raise ConfigError(
            f"compare needs two rollouts (NAME_A [--rollout ID | --latest] NAME_B [...]), got {len(sides)}"
        )
    for name, rid, latest in sides:
        if rid and latest:
            raise ConfigError(f"compare: {name}: choose --latest or --rollout, not both")
    return [(name, rid) for name, rid, _ in sides]


@click.command(context_settings={"ignore_unknown_options": True, "help_option_names": ["-h", "--help"]})
@click.argument("rollouts", nargs=-1, type=click.UNPROCESSED)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result (versioned schema).")
@click.option("--markdown", is_flag=True, help="GitHub markdown (e.g. for $GITHUB_STEP_SUMMARY).")
@click.option(
    "--match",
    type=click.Choice(["auto", "exact", "ignore-model", "agent", "task"]),
    default="auto",
    show_default=True,
    help="Which fields pair the runs of A and B (auto: the most pairs).",
)
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Significance level.")
@click.option("--fail-if-worse", is_flag=True, help="Exit 1 when B is significantly worse than A.")
@click.option("--all", "show_all", is_flag=True, help="Print every key (the table stops at 50 otherwise).")
@click.pass_obj
def compare(
    store,
    rollouts: tuple[str, ...],
    as_json: bool,
    markdown: bool,
    match: str,
    alpha: float,
    fail_if_worse: bool,
    show_all: bool,
) -> None:
    """Compare rollout B with rollout A on their common tasks: paired differences, wins/losses/ties,
    head-to-head win rate, a paired significance test and a verdict with its uncertainty.

    \b
    ROLLOUTS: NAME_A [--rollout ID | --latest] NAME_B [--rollout ID | --latest]
      (NAME/ID is short for NAME --rollout ID; no selector = latest)
    """
    from rollouts.report.compare import compare_digests, digest
    from rollouts.report.compare_render import compare_markdown, render_compare
    from rollouts.report.summary import load_for_report

    if not 0 < alpha < 1:
        raise ConfigError("--alpha must be in (0, 1)")
    (na, ia), (nb, ib) = parse_sides(rollouts)
    ra, rb = store.resolve(na, ia, ia is None), store.resolve(nb, ib, ib is None)
    if (na, ra) == (nb, rb):
        raise ConfigError(f"compare: both sides are the same rollout {na}/{ra}")
    # one manifest in memory at a time: each is reduced to its scored groups before the next loads
    da = digest(load_for_report(store, na, ra))
    res = compare_digests(da, digest(load_for_report(store, nb, rb)), match=match, alpha=alpha)
    if as_json:
        click.echo(json.dumps(res, indent=2))
    elif markdown:
        click.echo(compare_markdown(res), nl=False)
    else:
        render_compare(res, _console(), show_all=show_all)
    d = res["decision"]
    if fail_if_worse and d["significant"] and d["direction"] == "worse":
        sys.exit(EXIT_FAILED)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("name")
@click.option("--latest", is_flag=True, help="The most recent rollout of NAME.")
@click.option("--rollout", "rollout", default=None, help="A rollout id (YYYYMMDD__HH-MM-SS).")
@click.option(
    "-o",
    "--output",
    default=None,
    type=click.Path(dir_okay=False),
    help="HTML file to write [default: <rollout dir>/report.html].",
)
@click.pass_obj
def report(store, name: str, latest: bool, rollout: str | None, output: str | None) -> None:
    """Write one self-contained HTML report of a rollout (charts, tables, links to run artifacts)."""
    from rollouts.report.html import write_report
    from rollouts.report.summary import load_for_report, summarize

    if not latest and not rollout:
        raise ConfigError("choose a rollout: --latest or --rollout ID")
    if latest and rollout:
        raise ConfigError("choose --latest or --rollout, not both")
    rid = store.resolve(name, rollout, latest)
    m = load_for_report(store, name, rid)
    out = Path(output) if output else store.rollout_dir(name, rid) / "report.html"
    write_report(summarize(m), m, out)
    click.echo(f"[rollouts] report: {out}")
