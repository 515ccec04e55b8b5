"""``compare``: rollout B against rollout A (any names, any ids), paired on the keys both contain.

Pairing key. A run belongs to the group (task, agent, model, agent options). Two rollouts are
paired on a projection of that key, chosen by ``match``: ``exact`` (all four fields),
``ignore-model`` (task, agent, options: model A vs model B), ``agent`` (task, agent) or ``task``
(task only: agent design A vs B). ``auto`` takes the projection that pairs the most groups
without merging two groups of the same rollout (ties go to the more specific one), so comparing
two nightlies of one config pairs exactly, and comparing a gpt-4o config with a claude config
pairs on (task, agent, options).

Statistics (all from :mod:`rollouts.report.stats`; differences are always B − A):

* task level — :func:`~rollouts.report.stats.paired_compare` over the common keys (the task is the
  unit, Miller 2024 arXiv:2411.00640 §4): per-key mean differences, wins/losses/ties, the
  head-to-head win rate ``(wins + ties/2) / T`` (seed 001's "Win Rate"), an Agresti-Min adjusted CI of
  the mean difference and a two-sided sign-flip permutation p-value;
* run level — runs paired by rollout index within each key: the exact McNemar test
  (:func:`~rollouts.report.paired.mcnemar`) when every reward is 0/1, else ``paired_compare`` with
  each run pair as the unit. It treats runs of one task as independent and so speaks about these
  tasks only.

Decision: the task-level verdict decides when the sign-flip test *can* reach ``p < alpha``: its
smallest p is ``2 / 2^T'`` with T' the keys whose difference is not zero
(:func:`~rollouts.report.paired.min_sign_flip_p`; at ``--alpha 0.01`` that needs T' >= 8, at 0.05
T' >= 6). Otherwise the run-level test decides and the verdict says so. Infra errors and cancelled
runs are excluded on both sides; timeouts and agent/model/verifier/harness errors count as 0.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict
from typing import Any

from rollouts.errors import ConfigError
from rollouts.report.fmt import arm_label, fmt_options, fmt_signed
from rollouts.report.paired import VERDICT_BETTER, VERDICT_WORSE, mcnemar, min_sign_flip_p, paired_compare
from rollouts.report.summary import counted
from rollouts.store import Manifest, Store

COMPARE_SCHEMA_VERSION = 1
MATCH_FIELDS: dict[str, tuple[str, ...]] = {
    "exact": ("task", "agent", "model", "options"),
    "ignore-model": ("task", "agent", "options"),
    "agent": ("task", "agent"),
    "task": ("task",),
}
_IDX = {"task": 0, "agent": 1, "model": 2, "options": 3}


def _groups(m: Manifest) -> dict[tuple, dict[str, Any]]:
    """(task, agent, model, options JSON) -> {"runs": [(rollout_index, reward)], "infra": n}."""
    g: dict[tuple, dict[str, Any]] = defaultdict(lambda: {"runs": [], "infra": 0})
    for r in m.results:
        key = (
            r.task_name,
            r.agent,
            r.model,
            json.dumps(r.agent_options, sort_keys=True) if r.agent_options else "",
        )
        if counted(r):
            g[key]["runs"].append((r.rollout_index, 0.0 if r.reward is None else float(r.reward)))
        elif r.status == "error":
            g[key]["infra"] += 1
        else:
            g[key]  # noqa: B018 - register the group (cancelled/pending runs only)
    return dict(g)


def _project(groups: dict[tuple, Any], fields: tuple[str, ...]) -> dict[tuple, tuple] | None:
    """projected key -> full key, or None when the projection merges two groups."""
    out: dict[tuple, tuple] = {}
    for k in groups:
        p = tuple(k[_IDX[f]] for f in fields)
        if p in out:
            return None
        out[p] = k
    return out


def choose_match(ga: dict, gb: dict, match: str = "auto") -> tuple[str, dict, dict]:
    """(level, projection of A, projection of B) for ``match`` ("auto" or a :data:`MATCH_FIELDS` key)."""
    if match != "auto":
        if match not in MATCH_FIELDS:
            raise ConfigError(f"unknown match {match!r} (choose: auto, {', '.join(MATCH_FIELDS)})")
        pa, pb = _project(ga, MATCH_FIELDS[match]), _project(gb, MATCH_FIELDS[match])
        if pa is None or pb is None:
            raise ConfigError(
                f"--match {match} would merge different groups of rollout {'A' if pa is None else 'B'}"
                " (they differ only in a field it ignores); use a more specific match"
            )
        return match, pa, pb
    best: tuple[int, str, dict, dict] | None = None
    for level, fields in MATCH_FIELDS.items():
        pa, pb = _project(ga, fields), _project(gb, fields)
        if pa is None or pb is None:
            continue
        n = len(set(pa) & set(pb))
        if best is None or n > best[0]:
            best = (n, level, pa, pb)
    if best is None:  # unreachable in practice: "exact" never merges
        return "exact", _project(ga, MATCH_FIELDS["exact"]) or {}, _project(gb, MATCH_FIELDS["exact"]) or {}
    return best[1], best[2], best[3]


def _side(m: Manifest) -> dict[str, Any]:
    return {
        "name": m.name,
        "rollout_id": m.rollout_id,
        "status": m.status,
        "label": f"{m.name}/{m.rollout_id}",
    }


def _label(full: tuple) -> str:
    return arm_label(full[1], full[2], full[3])


def _uid(p: tuple, fields: tuple[str, ...]) -> str:
    """``task · agent · model · k=v,k=v`` (the projected fields; empty options left out)."""
    parts = [p[0]] + [fmt_options(x) if f == "options" else x for f, x in zip(fields[1:], p[1:], strict=True)]
    return " · ".join(x for x in parts if x)


def _pc_dict(pc) -> dict[str, Any]:
    d = asdict(pc)
    for k in ("tasks", "diffs", "tasks_only_a", "tasks_only_b", "summary"):
        d.pop(k, None)
    d["win_rate_b"] = d.pop("win_rate")
    return d


def _direction(verdict: str) -> str | None:
    return {VERDICT_BETTER: "better", VERDICT_WORSE: "worse"}.get(verdict)


def _run_level(pairs: list[tuple[str, float, float]], alpha: float, seed: int) -> dict[str, Any] | None:
    if not pairs:
        return None
    a = [p[1] for p in pairs]
    b = [p[2] for p in pairs]
    mean_diff = (sum(b) - sum(a)) / len(pairs)
    if all(v in (0.0, 1.0) for v in a + b):
        b01, b10, p = mcnemar([v == 1.0 for v in a], [v == 1.0 for v in b])
        direction = "better" if b01 > b10 else "worse" if b10 > b01 else None
        return {
            "method": "exact McNemar test (runs paired by rollout index)",
            "pairs": len(pairs),
            "b01": b01,
            "b10": b10,
            "p_value": p,
            "mean_diff": mean_diff,
            "ci_low": None,
            "ci_high": None,
            "significant": bool(direction and p < alpha),
            "direction": direction,
        }
    pc = paired_compare(
        {f"{u}#{i}": [x] for i, (u, x, _) in enumerate(pairs)},
        {f"{u}#{i}": [y] for i, (u, _, y) in enumerate(pairs)},
        alpha=alpha,
        seed=seed,
    )
    d = _direction(pc.verdict)
    return {
        "method": "sign-flip permutation test over run pairs (paired by rollout index)",
        "pairs": len(pairs),
        "b01": None,
        "b10": None,
        "p_value": pc.p_value,
        "mean_diff": pc.mean_diff,
        "ci_low": pc.ci_low,
        "ci_high": pc.ci_high,
        "significant": d is not None,
        "direction": d,
    }


def compare_manifests(
    a: Manifest, b: Manifest, *, match: str = "auto", alpha: float = 0.05, n_boot: int = 10000, seed: int = 0
) -> dict[str, Any]:
    """Compare rollout B against rollout A. Returns a JSON-ready dict (``schema_version`` 1): sides,
    ``match``, per-key rows (means, n, difference B − A, outcome), ``only_a`` / ``only_b`` (keys on
    one side only), ``unscored`` (keys on both sides without scored runs on one, e.g. infra errors
    only), ``task_level`` (paired_compare),
    ``run_level`` (McNemar / paired runs), ``per_arm`` breakdowns and the ``decision``
    (``basis`` "task" | "run" | None, ``direction`` "better" | "worse" | None, ``significant``,
    ``verdict`` — one sentence with the difference, its CI and p)."""
    return compare_digests(digest(a), digest(b), match=match, alpha=alpha, n_boot=n_boot, seed=seed)


def digest(m: Manifest) -> dict[str, Any]:
    """What :func:`compare_digests` needs of one rollout: its side info and its groups of scored
    runs (a few MiB for 10,000 runs, where the manifest is ~60 MiB: load, digest, drop)."""
    return {"side": _side(m), "groups": _groups(m)}


def compare_digests(
    da: dict[str, Any],
    db: dict[str, Any],
    *,
    match: str = "auto",
    alpha: float = 0.05,
    n_boot: int = 10000,
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`compare_manifests` on two :func:`digest` results (same result dict)."""
    ga, gb = da["groups"], db["groups"]
    level, pa, pb = choose_match(ga, gb, match)
    fields = MATCH_FIELDS[level]
    both = set(pa) & set(pb)
    common = sorted(k for k in both if ga[pa[k]]["runs"] and gb[pb[k]]["runs"])
    ua = {_uid(k, fields): [x for _, x in ga[pa[k]]["runs"]] for k in common}
    ub = {_uid(k, fields): [x for _, x in gb[pb[k]]["runs"]] for k in common}
    pc = paired_compare(ua, ub, n_boot=n_boot, seed=seed, alpha=alpha)
    rows, pairs = [], []
    for k in common:
        u, ra, rb = _uid(k, fields), sorted(ga[pa[k]]["runs"]), sorted(gb[pb[k]]["runs"])
        ma, mb = sum(x for _, x in ra) / len(ra), sum(x for _, x in rb) / len(rb)
        d = pc.diffs[u]
        rows.append(
            {
                "key": u,
                "task": k[0],
                "arm_a": _label(pa[k]),
                "arm_b": _label(pb[k]),
                "n_a": len(ra),
                "n_b": len(rb),
                "mean_a": ma,
                "mean_b": mb,
                "diff": d,
                "outcome": "B wins" if d > 0 else "A wins" if d < 0 else "tie",
                "infra_a": ga[pa[k]]["infra"],
                "infra_b": gb[pb[k]]["infra"],
            }
        )
        pairs += [(u, x, y) for (_, x), (_, y) in zip(ra, rb, strict=False)]
    run = _run_level(pairs, alpha, seed)
    per_arm = []
    if len(fields) > 1:
        arms: dict[tuple, list] = defaultdict(list)
        for k in common:
            arms[(_label(pa[k]), _label(pb[k]))].append(_uid(k, fields))
        if len(arms) > 1:
            for (la, lb), us in sorted(arms.items()):
                apc = paired_compare(
                    {u: ua[u] for u in us}, {u: ub[u] for u in us}, n_boot=n_boot, seed=seed, alpha=alpha
                )
                per_arm.append({"arm_a": la, "arm_b": lb, **_pc_dict(apc)})
    t = len(common)
    nonzero = sum(1 for v in pc.diffs.values() if v != 0.0)
    if t and min_sign_flip_p(nonzero) < alpha:
        basis, direction, p = "task", _direction(pc.verdict), pc.p_value
    elif run is not None:
        basis, direction, p = "run", run["direction"] if run["significant"] else None, run["p_value"]
    else:
        basis, direction, p = None, None, None
    res = {
        "schema_version": COMPARE_SCHEMA_VERSION,
        "a": da["side"],
        "b": db["side"],
        "match": level,
        "match_fields": list(fields),
        "alpha": alpha,
        "confidence": 1 - alpha,
        "n_common": t,
        "only_a": sorted(_uid(k, fields) for k in set(pa) - both),
        "only_b": sorted(_uid(k, fields) for k in set(pb) - both),
        "unscored": sorted(_uid(k, fields) for k in both - set(common)),
        "keys": rows,
        "task_level": _pc_dict(pc),
        "run_level": run,
        "per_arm": per_arm,
        "decision": {
            "basis": basis,
            "direction": direction,
            "significant": direction is not None,
            "p_value": p,
        },
    }
    res["decision"]["verdict"] = verdict_text(res)
    return res


def verdict_text(res: dict[str, Any]) -> str:
    """The decision as one sentence, always with the size of the difference and its uncertainty."""
    a, b, d, tl, run = (
        res["a"]["label"],
        res["b"]["label"],
        res["decision"],
        res["task_level"],
        res["run_level"],
    )
    t, pct = res["n_common"], f"{100 * res['confidence']:g}%"
    if t == 0:
        return f"Nothing to compare: {a} and {b} share no (task, agent) keys."
    unit = "task key" if t == 1 else "task keys"
    ci = (
        f"{pct} CI [{fmt_signed(tl['ci_low'])}, {fmt_signed(tl['ci_high'])}]"
        if tl["ci_low"] is not None
        else "no CI over a single task key"
    )
    stats = (
        f"mean difference B − A {fmt_signed(tl['mean_diff'])} ({ci}) "
        f"over {t} {unit}; B wins {tl['wins']}, loses {tl['losses']}, ties {tl['ties']} "
        f"(head-to-head win rate of B {tl['win_rate_b']:.2f})"
    )
    if d["basis"] == "task":
        test = f"p = {tl['p_value']:.3g}, {tl['p_value_method']}"
    elif d["basis"] == "run":
        extra = (
            f", {run['b10']} runs A-only pass vs {run['b01']} B-only pass" if run["b01"] is not None else ""
        )
        test = (
            f"p = {run['p_value']:.3g}, {run['method']} on {run['pairs']} run pairs{extra}; with "
            f"{tl['wins'] + tl['losses']} task keys that differ the task-level test cannot reach p < "
            f"{res['alpha']:g}, so runs are the unit and the result holds for these tasks only"
        )
    else:
        test = "no paired runs to test"
    if d["significant"]:
        head = f"B ({b}) is significantly {'WORSE' if d['direction'] == 'worse' else 'BETTER'} than A ({a})"
    else:
        head = f"No significant difference between B ({b}) and A ({a}) at alpha = {res['alpha']:g}"
    return f"{head}: {stats}; {test}."


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``NAME/ID`` -> (NAME, ID); ``NAME`` -> (NAME, None)."""
    name, _, rid = ref.strip().strip("/").partition("/")
    if not name:
        raise ConfigError(f"bad rollout reference {ref!r}: expected NAME or NAME/ID")
    return name, rid or None


def preflight_baseline(store: Store, baseline: str, benchmark_name: str) -> None:
    """Fail fast (ConfigError, exit 2) before any run starts when ``--baseline`` cannot resolve:
    NAME/ID that does not exist, or NAME that is neither a stored benchmark nor the benchmark about
    to run (whose first rollout legitimately has no baseline yet)."""
    name, rid = parse_ref(baseline)
    if rid is not None:
        store.resolve(name, rid, False)
    elif name != benchmark_name and name not in store.list_benchmarks():
        store.resolve(name, None, True)


def check_baseline(
    store: Store, manifest: Manifest, baseline: str, *, alpha: float = 0.05
) -> tuple[bool, str]:
    """Is ``manifest`` (the new rollout, B) significantly worse than ``baseline`` (A)?

    ``baseline`` is ``NAME/ID`` or ``NAME`` = the most recent *completed* rollout of NAME other than
    ``manifest`` itself. Returns ``(True, message)`` when B is significantly worse (exit 1 in CI),
    else ``(False, message)``; ``message`` is the verdict sentence. When NAME has no earlier rollout
    yet (first nightly) the answer is False with a message saying so. Raises ConfigError when
    NAME/ID does not exist, NAME names no benchmark, or the baseline is the rollout itself.
    """
    name, rid = parse_ref(baseline)
    if rid is None:
        ids = [
            i for i in store.list_rollouts(name) if not (name == manifest.name and i == manifest.rollout_id)
        ]
        if not ids:
            if name == manifest.name or name in store.list_benchmarks():
                return False, f"baseline {name}: no earlier rollout to compare with; regression check skipped"
            store.resolve(name, None, True)  # raises ConfigError naming the known benchmarks
        done = [i for i in ids if store.load_manifest(name, i).status == "completed"]
        rid = (done or ids)[-1]
    else:
        store.resolve(name, rid, False)
        if name == manifest.name and rid == manifest.rollout_id:
            raise ConfigError(f"--baseline {baseline} is the rollout being checked")
    res = compare_manifests(store.load_manifest(name, rid), manifest, alpha=alpha)
    d = res["decision"]
    worse = bool(d["significant"] and d["direction"] == "worse")
    return worse, f"baseline {name}/{rid}: {d['verdict']}"
