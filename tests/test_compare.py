"""``compare`` and ``check_baseline`` without Docker: manifests built with the store's models in tmp."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from rich.console import Console
from test_report import manifest, rec  # tests/ is on sys.path (pytest rootdir-less prepend)

from rollouts.errors import ConfigError
from rollouts.report.commands import parse_sides
from rollouts.report.compare import (
    check_baseline,
    compare_manifests,
    parse_ref,
    preflight_baseline,
)
from rollouts.report.compare_render import compare_markdown, render_compare
from rollouts.store import Store

A_ID, B_ID, C_ID = "20260101__00-00-00", "20260102__00-00-00", "20260103__00-00-00"


def build(
    rewards: dict[str, list[float | None]],
    *,
    name="bench",
    rid=A_ID,
    agent="shell",
    model="m",
    status="completed",
    infra: dict[str, int] | None = None,
):
    """A manifest with ``rewards[task]`` as the runs of one agent/model per task (+ infra errors)."""
    recs = [
        rec(t, r, agent=agent, model=model, i=i, rid=rid)
        for t, rs in rewards.items()
        for i, r in enumerate(rs)
    ]
    for t, n in (infra or {}).items():
        recs += [
            rec(t, None, agent=agent, model=model, i=100 + j, status="error", error_kind="infra", rid=rid)
            for j in range(n)
        ]
    return manifest(recs, name=name, rid=rid, status=status)


def tasks(n: int, runs: list[float]) -> dict[str, list[float]]:
    return {f"t{i}": list(runs) for i in range(n)}


def test_identical_rollouts_tie():
    a = build(tasks(8, [1, 0, 1]))
    res = compare_manifests(a, build(tasks(8, [1, 0, 1]), rid=B_ID))
    assert res["match"] == "exact" and res["n_common"] == 8 and res["schema_version"] == 1
    tl = res["task_level"]
    assert (tl["wins"], tl["losses"], tl["ties"]) == (0, 0, 8) and tl["win_rate_b"] == 0.5
    assert tl["mean_diff"] == 0 and tl["p_value"] == 1.0
    d = res["decision"]
    # every key ties: the task-level test cannot reach alpha (T' = 0), so the run level speaks
    assert d["basis"] == "run" and not d["significant"] and d["direction"] is None
    assert d["verdict"].startswith("No significant difference") and "95% CI" in d["verdict"]
    json.dumps(res)


def test_clear_regression_over_tasks_is_significant():
    res = compare_manifests(build(tasks(8, [1, 1, 1])), build(tasks(8, [0, 0, 0]), rid=B_ID))
    tl, d = res["task_level"], res["decision"]
    assert (tl["wins"], tl["losses"], tl["win_rate_b"]) == (0, 8, 0.0)
    assert tl["mean_diff"] == -1.0 and tl["p_value"] < 0.05
    assert d == {**d, "basis": "task", "direction": "worse", "significant": True}
    assert d["verdict"].startswith("B (bench/20260102__00-00-00) is significantly WORSE than A")
    assert "-1.000" in d["verdict"] and "B wins 0, loses 8, ties 0" in d["verdict"]
    assert res["run_level"]["method"].startswith("exact McNemar") and res["run_level"]["b10"] == 24
    assert all(r["outcome"] == "A wins" for r in res["keys"])


def test_improvement_and_partial_credit_rewards():
    a = build({f"t{i}": [0.2 + 0.05 * i, 0.3] for i in range(7)})
    b = build({f"t{i}": [0.6 + 0.05 * i, 0.7] for i in range(7)}, rid=B_ID)
    res = compare_manifests(a, b)
    assert res["decision"]["direction"] == "better" and res["decision"]["basis"] == "task"
    assert res["task_level"]["mean_diff"] == pytest.approx(0.4)
    assert res["task_level"]["ci_low"] > 0 and res["task_level"]["win_rate_b"] == 1.0
    assert res["run_level"]["method"].startswith("sign-flip")  # continuous rewards: no McNemar


def test_few_tasks_use_run_level_mcnemar():
    a, b = build(tasks(2, [1] * 6)), build(tasks(2, [0] * 6), rid=B_ID)
    res = compare_manifests(a, b)
    assert res["n_common"] == 2
    assert res["task_level"]["p_value"] == 0.5  # exact sign-flip over 2 tasks: 2 of 4 flips as extreme
    run, d = res["run_level"], res["decision"]
    assert (run["pairs"], run["b01"], run["b10"]) == (12, 0, 12)
    assert run["p_value"] == pytest.approx(2 * 0.5**12)
    assert d["basis"] == "run" and d["direction"] == "worse" and d["significant"]
    assert "runs are the unit" in d["verdict"] and "these tasks only" in d["verdict"]


def test_one_run_each_is_not_significant():
    res = compare_manifests(build({"t": [1.0]}), build({"t": [0.0]}, rid=B_ID))
    d = res["decision"]
    assert d["basis"] == "run" and not d["significant"] and res["run_level"]["p_value"] == 1.0
    assert "No significant difference" in d["verdict"] and "-1.000" in d["verdict"]


def test_auto_match_pairs_across_models_and_agents():
    a = build(tasks(6, [1, 1]), model="gpt-4o")
    b = build(tasks(6, [0, 1]), model="claude", rid=B_ID)
    res = compare_manifests(a, b)
    assert res["match"] == "ignore-model" and res["n_common"] == 6
    assert res["keys"][0]["arm_a"] == "shell/gpt-4o" and res["keys"][0]["arm_b"] == "shell/claude"
    assert compare_manifests(a, b, match="exact")["n_common"] == 0
    nothing = compare_manifests(a, b, match="exact")
    assert nothing["decision"]["basis"] is None and nothing["decision"]["verdict"].startswith(
        "Nothing to compare"
    )
    assert len(nothing["only_a"]) == 6 and len(nothing["only_b"]) == 6
    c = build(tasks(6, [1]), agent="codex", model="o3", rid=B_ID)
    assert compare_manifests(a, c)["match"] == "task"


def test_match_never_merges_groups_and_per_arm_breakdown():
    recs = [rec(f"t{i}", 1.0, agent=ag, i=0) for i in range(3) for ag in ("oracle", "nop")]
    a = manifest(recs)
    b = manifest(
        [rec(f"t{i}", 1.0, agent=ag, i=0, rid=B_ID) for i in range(3) for ag in ("oracle", "nop")], rid=B_ID
    )
    res = compare_manifests(a, b)
    assert res["match"] == "exact" and res["n_common"] == 6
    assert [p["arm_a"] for p in res["per_arm"]] == ["nop/m", "oracle/m"]
    with pytest.raises(ConfigError, match="merge"):
        compare_manifests(a, b, match="task")
    with pytest.raises(ConfigError, match="unknown match"):
        compare_manifests(a, b, match="bogus")


def test_infra_errors_excluded_and_infra_only_keys_dropped():
    a = build({"t1": [1, 1], "t2": [1, 1]})
    b = build({"t1": [1, 1]}, rid=B_ID, infra={"t1": 3, "t2": 2})
    res = compare_manifests(a, b)
    assert (
        res["n_common"] == 1
        and res["unscored"] == ["t2 · shell · m"]
        and res["only_a"] == res["only_b"] == []
    )
    (row,) = res["keys"]
    assert (row["n_b"], row["infra_b"], row["diff"]) == (2, 3, 0.0)


def test_timeouts_count_as_failures():
    a = build({"t": [1.0, 1.0]})
    b = manifest(
        [rec("t", None, i=0, status="agent_timeout", rid=B_ID), rec("t", 1.0, i=1, rid=B_ID)], rid=B_ID
    )
    (row,) = compare_manifests(a, b)["keys"]
    assert row["n_b"] == 2 and row["mean_b"] == 0.5


def test_renderers():
    res = compare_manifests(build(tasks(8, [1, 1])), build(tasks(8, [0, 1]), rid=B_ID))
    console = Console(width=120, record=True, color_system=None)
    render_compare(res, console)
    text = console.export_text()
    assert "A = bench/20260101__00-00-00" in text and "significantly WORSE" in text.replace("\n", " ")
    md = compare_markdown(res)
    assert md.startswith("## Compare: B `bench/20260102__00-00-00` vs A `bench/20260101__00-00-00`")
    assert "| task | agent/model (A → B) | n A | mean A | n B | mean B | B − A | outcome |" in md
    assert "| t0 | shell/m | 2 | 1.00 | 2 | 0.50 | -0.50 | A wins |" in md


# ------------------------------------------------------------------------------------ check_baseline


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "data")


def test_check_baseline_name_is_latest_completed_other_rollout(store):
    base = build(tasks(8, [1, 1]), name="nightly", rid=A_ID)
    cancelled = build(tasks(8, [0, 0]), name="nightly", rid=B_ID, status="cancelled")
    new = build(tasks(8, [0, 0]), name="nightly", rid=C_ID)
    for m in (base, cancelled, new):
        store.write_manifest(m)
    worse, msg = check_baseline(store, new, "nightly")
    assert worse and msg.startswith(f"baseline nightly/{A_ID}: B (nightly/{C_ID}) is significantly WORSE")
    worse, msg = check_baseline(store, new, f"nightly/{B_ID}")  # explicit id: the cancelled one, equal scores
    assert not worse and "No significant difference" in msg
    same = build(tasks(8, [1, 1]), name="nightly", rid=C_ID)
    assert check_baseline(store, same, "nightly")[0] is False


def test_check_baseline_first_run_and_errors(store):
    first = build(tasks(3, [1]), name="nightly", rid=A_ID)
    store.write_manifest(first)
    worse, msg = check_baseline(store, first, "nightly")
    assert not worse and "no earlier rollout" in msg
    with pytest.raises(ConfigError, match="no rollouts found for benchmark 'other'"):
        check_baseline(store, first, "other")
    with pytest.raises(ConfigError, match="is the rollout being checked"):
        check_baseline(store, first, f"nightly/{A_ID}")
    with pytest.raises(ConfigError, match="no rollout"):
        check_baseline(store, first, f"nightly/{B_ID}")
    other = build(tasks(3, [1]), name="other", rid=B_ID)
    store.write_manifest(other)
    assert check_baseline(store, first, "other") == (False, check_baseline(store, first, f"other/{B_ID}")[1])


def test_preflight_baseline(store):
    store.write_manifest(build(tasks(3, [1]), name="nightly", rid=A_ID))
    preflight_baseline(store, "nightly", "nightly")
    preflight_baseline(store, f"nightly/{A_ID}", "other")
    preflight_baseline(store, "fresh", "fresh")  # the benchmark about to run: first rollout, no baseline yet
    for bad in ("typo", f"nightly/{B_ID}"):
        with pytest.raises(ConfigError):
            preflight_baseline(store, bad, "fresh")


def test_parse_ref_and_sides():
    assert parse_ref("a") == ("a", None) and parse_ref("a/ID/") == ("a", "ID")
    with pytest.raises(ConfigError):
        parse_ref("/")
    assert parse_sides(["A", "--latest", "B", "--latest"]) == [("A", None), ("B", None)]
    assert parse_sides(["A", "--rollout", "X", "A", "--rollout=Y"]) == [("A", "X"), ("A", "Y")]
    assert parse_sides(["A/X", "B"]) == [("A", "X"), ("B", None)]
    for bad in (
        ["A"],
        ["A", "B", "C"],
        ["--latest", "A", "B"],
        ["A", "--rollout"],
        ["A", "--rollout", "X", "--latest", "B"],
        ["A", "--bogus", "B"],
    ):
        with pytest.raises(ConfigError):
            parse_sides(bad)


def test_cli_compare_syntaxes_and_exit_codes(store):
    from rollouts.cli import cli

    store.write_manifest(build(tasks(8, [1, 1]), name="A", rid=A_ID))
    store.write_manifest(build(tasks(8, [0, 0]), name="A", rid=B_ID))
    store.write_manifest(build(tasks(8, [1, 1]), name="B", rid=C_ID))
    run = CliRunner().invoke
    base = ["--data-dir", str(store.root), "compare"]
    r = run(cli, [*base, "A", "--latest", "B", "--latest", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert (res["a"]["rollout_id"], res["b"]["rollout_id"]) == (B_ID, C_ID) and res["decision"][
        "direction"
    ] == "better"
    r = run(cli, [*base, "A", "--rollout", A_ID, "A", "--rollout", B_ID, "--markdown"])
    assert r.exit_code == 0 and "significantly WORSE" in r.output and r.output.startswith("## Compare")
    r = run(cli, [*base, "--fail-if-worse", f"A/{A_ID}", f"A/{B_ID}"])
    assert r.exit_code == 1 and "significantly WORSE" in r.output.replace("\n", " ")
    r = run(cli, [*base, "A", "--latest", "A", "--latest"])
    assert r.exit_code == 2 and "same rollout" in r.output
    r = run(cli, [*base, "A", "--latest"])
    assert r.exit_code == 2
    r = run(cli, [*base, "A", "--latest", "nope", "--latest"])
    assert r.exit_code == 2 and "nope" in r.output


def test_switch_depends_on_whether_the_task_test_can_reach_alpha():
    """6 tasks all +1: the task-level sign-flip can reach 2/64 = 0.031 < 0.05 but not < 0.01, so at
    --alpha 0.01 the run level decides; the interval is never [+1, +1]."""
    a, b = build(tasks(6, [0] * 3)), build(tasks(6, [1] * 3), rid=B_ID)
    res = compare_manifests(a, b)
    assert res["decision"]["basis"] == "task" and res["decision"]["direction"] == "better"
    tl = res["task_level"]
    assert tl["ci_low"] < tl["ci_high"] and "[+1.000, +1.000]" not in res["decision"]["verdict"]
    res = compare_manifests(a, b, alpha=0.01)
    assert res["decision"]["basis"] == "run" and res["decision"]["direction"] == "better"
    a, b = build(tasks(8, [0] * 2)), build(tasks(8, [1] * 2), rid=B_ID)
    assert compare_manifests(a, b, alpha=0.01)["decision"]["basis"] == "task"  # 2/256 < 0.01
