"""Renderers of a :func:`rollouts.report.compare.compare_manifests` result: rich tables and markdown."""

from __future__ import annotations

from typing import Any

from rollouts.report.fmt import fmt_signed

#: Rows of the per-key table printed by the renderers before the rest is summarised.
MAX_KEY_ROWS = 50


def _shown(res: dict[str, Any], show_all: bool = False) -> tuple[list[dict], int]:
    keys = res["keys"]
    if show_all or len(keys) <= MAX_KEY_ROWS:
        return keys, 0
    top = sorted(keys, key=lambda r: -abs(r["diff"]))[:MAX_KEY_ROWS]
    return sorted(top, key=lambda r: r["key"]), len(keys) - MAX_KEY_ROWS


def _arms(r: dict) -> str:
    return r["arm_a"] if r["arm_a"] == r["arm_b"] else f"{r['arm_a']} → {r['arm_b']}"


def render_compare(res: dict[str, Any], console, *, show_all: bool = False) -> None:
    """Print the comparison as rich tables (per key — the :data:`MAX_KEY_ROWS` largest differences
    unless ``show_all`` — and per arm) and the verdict line."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    def row(t, *cells):
        t.add_row(*(Text(str(c)) for c in cells))

    console.print(
        f"A = {res['a']['label']} ({res['a']['status']})   B = {res['b']['label']} ({res['b']['status']})"
        f"   match = {res['match']} ({', '.join(res['match_fields'])})",
        markup=False,
    )
    keys, hidden = _shown(res, show_all)
    t = Table(title="per key: mean reward, difference B − A", box=box.SIMPLE_HEAD, title_justify="left")
    for col in ("task", "agent/model (A → B)", "n A", "mean A", "n B", "mean B", "B − A", "outcome"):
        t.add_column(
            col,
            justify="left" if col in ("task", "agent/model (A → B)", "outcome") else "right",
            overflow="fold",
            max_width=40 if col != "task" else 28,
        )
    for r in keys:
        row(
            t,
            r["task"],
            _arms(r),
            str(r["n_a"]),
            f"{r['mean_a']:.2f}",
            str(r["n_b"]),
            f"{r['mean_b']:.2f}",
            f"{r['diff']:+.2f}",
            r["outcome"],
        )
    console.print(t)
    if hidden:
        console.print(
            f"… {hidden} more keys with smaller differences (--all or --json lists all)", markup=False
        )
    if res["per_arm"]:
        pa = Table(title="per agent/model", box=box.SIMPLE_HEAD, title_justify="left")
        for col in ("agent/model (A → B)", "keys", "mean A", "mean B", "B − A [CI]", "p", "W/L/T"):
            pa.add_column(col, justify="left" if col.startswith("agent") else "right", overflow="fold")
        for r in res["per_arm"]:
            ci = (
                f" [{fmt_signed(r['ci_low'])}, {fmt_signed(r['ci_high'])}]" if r["ci_low"] is not None else ""
            )
            row(
                pa,
                _arms(r),
                str(r["n_tasks"]),
                f"{r['mean_a']:.2f}",
                f"{r['mean_b']:.2f}",
                fmt_signed(r["mean_diff"]) + ci,
                "—" if r["p_value"] is None else f"{r['p_value']:.3g}",
                f"{r['wins']}/{r['losses']}/{r['ties']}",
            )
        console.print(pa)
    for label, items in (
        ("only in A", res["only_a"]),
        ("only in B", res["only_b"]),
        ("no scored runs on one side", res["unscored"]),
    ):
        if items:
            console.print(
                f"{label} ({len(items)}): {'; '.join(items[:10])}" + (" …" if len(items) > 10 else ""),
                markup=False,
            )
    console.print(res["decision"]["verdict"], markup=False)


def compare_markdown(res: dict[str, Any]) -> str:
    """The comparison as GitHub markdown: verdict first, then the per-key and per-arm tables."""
    from rollouts.report.markdown import table

    tl = res["task_level"]
    out = [
        f"## Compare: B `{res['b']['label']}` vs A `{res['a']['label']}`",
        "",
        f"**{res['decision']['verdict']}**",
        "",
        f"Matched on {', '.join(res['match_fields'])} (`--match {res['match']}`); {res['n_common']} common keys, "
        f"{len(res['only_a'])} only in A, {len(res['only_b'])} only in B, {len(res['unscored'])} without scored runs "
        "on one side. Infra errors are excluded on both sides; timeouts count as 0.",
        "",
    ]
    if res["n_common"]:
        out += table(
            [
                "mean A",
                "mean B",
                "B − A",
                f"{100 * res['confidence']:g}% CI",
                "p (task level)",
                "wins / losses / ties (B)",
                "win rate of B",
            ],
            [
                [
                    f"{tl['mean_a']:.3f}",
                    f"{tl['mean_b']:.3f}",
                    fmt_signed(tl["mean_diff"]),
                    f"[{fmt_signed(tl['ci_low'])}, {fmt_signed(tl['ci_high'])}]"
                    if tl["ci_low"] is not None
                    else "n/a",
                    f"{tl['p_value']:.3g}",
                    f"{tl['wins']} / {tl['losses']} / {tl['ties']}",
                    f"{tl['win_rate_b']:.2f}",
                ]
            ],
            align="rrrrrrr",
        )
        out.append("")
    keys, hidden = _shown(res)
    if keys:
        out += table(
            ["task", "agent/model (A → B)", "n A", "mean A", "n B", "mean B", "B − A", "outcome"],
            [
                [
                    r["task"],
                    _arms(r),
                    r["n_a"],
                    f"{r['mean_a']:.2f}",
                    r["n_b"],
                    f"{r['mean_b']:.2f}",
                    f"{r['diff']:+.2f}",
                    r["outcome"],
                ]
                for r in keys
            ],
            align="llrrrrrl",
        )
    if hidden:
        out += ["", f"… {hidden} more keys with smaller differences (`--json` lists all)."]
    if res["per_arm"]:
        out += ["", "Per agent/model:", ""]
        out += table(
            ["agent/model (A → B)", "keys", "B − A", "CI", "p", "W/L/T"],
            [
                [
                    _arms(r),
                    r["n_tasks"],
                    fmt_signed(r["mean_diff"]),
                    f"[{fmt_signed(r['ci_low'])}, {fmt_signed(r['ci_high'])}]"
                    if r["ci_low"] is not None
                    else "n/a",
                    "—" if r["p_value"] is None else f"{r['p_value']:.3g}",
                    f"{r['wins']}/{r['losses']}/{r['ties']}",
                ]
                for r in res["per_arm"]
            ],
            align="lrrrrr",
        )
    return "\n".join(out) + "\n"
