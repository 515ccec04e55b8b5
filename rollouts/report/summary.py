"""``summarize``: one row per task × agent × model (× agent options) of a rollout, from the
manifest only (never starts a container).

Denominators: every finished run counts, with reward 0 when it has none — timeouts, hit limits
and errors of kind agent, model, verifier and harness. Infra errors and cancelled/pending runs
leave the denominators and are reported in their own columns. A ``harness`` error is a bug of
ours: the summary carries ``incomplete`` and the renderers print it in red.

JSON schema (``schema_version`` 1; fields are only ever added, never renamed or removed, so a
reader of version 1 keeps working):

* top level: ``name``, ``rollout_id``, ``status``, ``config``, ``started_at``, ``finished_at``,
  ``total_runs``, ``counts`` (status -> runs, errors as ``error:<kind>``), ``infra_errors``,
  ``phases`` (phase names in pipeline order), ``metric_names``, ``rows``, ``overall``.
* ``rows[]``: see :class:`Row` (times in seconds, tokens summed, cost in USD or ``null`` =
  unknown price, never 0 for an unknown price).
* ``overall[]``: per agent × model × options: the macro mean over tasks with a Wilson interval
  over task means (task = unit, Miller 2024 arXiv:2411.00640), the micro mean over runs with a
  task-clustered Wilson interval (effective sample size), pass@1 / pass@k / pass^k over tasks with
  intervals, usage totals, mean seconds per phase and per-metric means with clustered CIs
  (methods and sources: :mod:`rollouts.report.stats`).
* ``harness_errors`` (count) and ``incomplete`` (true when any run ended as a harness error).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field, fields
from typing import Any

from rollouts.report.stats import clustered_mean_ci, group_stats, macro_stats, mean_ci, pass_k_over_tasks
from rollouts.report.tables import render_table  # noqa: F401 (``summarize``'s public renderer)
from rollouts.store import Manifest

SUMMARY_SCHEMA_VERSION = 1

#: Phase names in pipeline order (RunRecord.timings keys, seconds); ``total`` is the wall time.
PHASES = ("image", "sandbox_start", "setup", "agent", "collect", "verifier")
#: Metrics not aggregated separately (``reward`` is the reward itself).
SKIP_METRICS = frozenset({"reward"})
@dataclass
class Row:
    """Aggregates of one group. Times in seconds (mean per run), tokens summed over runs.

    ``pass_at_k`` / ``pass_hat_k`` map k (1..n) to the unbiased pass@k (Chen et al. 2021) and
    pass^k (Yao et al. 2024) estimates; ``timings`` maps phase -> mean seconds over the runs
    that recorded it; ``metrics`` maps metric name -> ``{n, mean, ci_low, ci_high, ci_method}``
    (95% CI from :func:`rollouts.report.stats.mean_ci`: Wilson for values in [0, 1], else t).
    ``pass_at_k_ci`` / ``pass_hat_k_ci`` map k to ``[low, high]`` (95%); ``harness_errors``
    counts runs that ended in a bug of ours (also in ``errors``); ``integrity`` counts runs per
    grading-integrity label when the records carry one.
    """

    task: str
    agent: str
    model: str
    options: str
    runs: int = 0
    n: int = 0
    mean_reward: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    ci_method: str | None = None
    pass_rate: float | None = None
    pass_at_k: dict[int, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_calls: int = 0
    cost_usd: float | None = None
    mean_wall_sec: float | None = None
    timeouts: int = 0
    errors: int = 0
    infra_errors: int = 0
    cancelled: int = 0
    pass_hat_k: dict[int, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    pass_at_k_ci: dict[int, list[float]] = field(default_factory=dict)
    pass_hat_k_ci: dict[int, list[float]] = field(default_factory=dict)
    harness_errors: int = 0
    integrity: dict[str, int] = field(default_factory=dict)
    n_pass: int = 0


_ROW_FIELDS = [f.name for f in fields(Row)]


def _key(r) -> tuple[str, str, str, str]:
    opts = json.dumps(r.agent_options, sort_keys=True) if r.agent_options else ""
    return (r.task_name, r.agent, r.model, opts)


def counted(r) -> bool:
    """True for runs that count towards a score: finished and not an infrastructure error."""
    return r.status not in ("pending", "running", "cancelled") and not (
        r.status == "error" and r.error_kind == "infra"
    )


def _metric_stats(values: list[float], bounded: bool) -> dict[str, Any]:
    """n, mean and 95% CI of one metric in one group: Wilson when the metric lies in [0, 1]
    throughout the rollout (a proportion or a score), else Student t (``None`` at n == 1 or for a
    constant sample: no zero-width interval), the t lower limit cut at 0 for a non-negative metric."""
    res = _mean_ci_named(values, "wilson" if bounded else "t")
    lo, hi, method = res if res else (None, None, None)
    if res and not bounded and min(values) >= 0.0:
        lo = max(lo, 0.0)  # a non-negative metric (a count, seconds): the t interval is cut at 0
    return {
        "n": len(values),
        "mean": (sum(values) / len(values)) if values else None,
        "ci_low": lo,
        "ci_high": hi,
        "ci_method": method,
    }


def _mean_ci_named(values: list[float], method: str) -> tuple[float, float, str] | None:
    ci = mean_ci(values, method=method) if values else None
    if ci is None:
        return None
    binary = method == "wilson" and all(v in (0.0, 1.0) for v in values)
    return ci[0], ci[1], method if method != "wilson" or binary else "wilson-bd"


def _row(key: tuple, recs: list, bounded: set[str]) -> tuple[Row, list]:
    row = Row(*key, runs=len(recs))
    rewards: list[float | None] = []
    walls: list[float] = []
    costs: list[float | None] = []
    phase_sum: dict[str, float] = defaultdict(float)
    phase_n: dict[str, int] = defaultdict(int)
    metric_vals: dict[str, list[float]] = defaultdict(list)
    used = []
    for r in recs:
        if r.status in ("pending", "running", "cancelled"):
            row.cancelled += r.status == "cancelled"
            continue
        if r.status == "error" and r.error_kind == "infra":
            row.infra_errors += 1
            continue
        used.append(r)
        if r.status == "error":
            row.errors += 1
            row.harness_errors += r.error_kind == "harness"
        if r.integrity:
            row.integrity[r.integrity] = row.integrity.get(r.integrity, 0) + 1
        if r.status in ("agent_timeout", "verifier_timeout"):
            row.timeouts += 1
        rewards.append(r.reward)
        u = r.usage
        row.prompt_tokens += u.prompt_tokens
        row.completion_tokens += u.completion_tokens
        row.llm_calls += u.calls
        costs.append(u.cost_usd if u.calls else 0.0)
        for ph, sec in r.timings.items():
            if ph == "total":
                walls.append(sec)
            else:
                phase_sum[ph] += sec
                phase_n[ph] += 1
        for name, v in r.metrics.items():
            if name not in SKIP_METRICS:
                metric_vals[name].append(float(v))
    gs = group_stats(rewards, infra_errors=row.infra_errors)
    row.n = gs.n
    row.mean_reward, row.ci_low, row.ci_high, row.ci_method = gs.mean, gs.ci_low, gs.ci_high, gs.ci_method
    row.pass_rate, row.n_pass = gs.pass_rate, gs.n_pass
    row.pass_at_k = dict(gs.pass_at_k)
    row.pass_hat_k = dict(gs.pass_hat_k)
    row.pass_at_k_ci = dict(gs.pass_at_k_ci)
    row.pass_hat_k_ci = dict(gs.pass_hat_k_ci)
    row.cost_usd = None if (not costs or any(c is None for c in costs)) else round(sum(costs), 6)
    row.mean_wall_sec = round(sum(walls) / len(walls), 2) if walls else None
    row.timings = {ph: round(phase_sum[ph] / phase_n[ph], 3) for ph in _order(phase_sum)}
    row.metrics = {k: _metric_stats(v, k in bounded) for k, v in sorted(metric_vals.items())}
    return row, used


def _order(phases) -> list[str]:
    known = [p for p in PHASES if p in phases]
    return known + sorted(p for p in phases if p not in PHASES)


def _overall(rows: list[Row], used: dict[tuple, list]) -> list[dict[str, Any]]:
    by_am: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows:
        by_am[(row.agent, row.model, row.options)].append(row)
    out = []
    for (agent, model, opts), rs in by_am.items():
        means = [r.mean_reward for r in rs if r.mean_reward is not None]
        mean, lo, hi, method = macro_stats(means) if means else (None, None, None, None)
        runs = [rec for r in rs for rec in used[(r.task, r.agent, r.model, r.options)]]
        clusters = [rec.task_name for rec in runs]
        cm = clustered_mean_ci([rec.reward for rec in runs], clusters)
        phase_tot: dict[str, float] = defaultdict(float)
        for rec in runs:
            for ph, sec in rec.timings.items():
                phase_tot[ph] += sec
        metrics = {}
        for name in sorted({m for r in rs for m in r.metrics}):
            pairs = [(rec.metrics[name], rec.task_name) for rec in runs if name in rec.metrics]
            mc = clustered_mean_ci([p[0] for p in pairs], [p[1] for p in pairs])
            m_lo = mc.ci_low if mc.ci_low is None or any(p[0] < 0 for p in pairs) else max(mc.ci_low, 0.0)
            metrics[name] = {
                "n": mc.n,
                "mean": mc.mean,
                "ci_low": m_lo,
                "ci_high": mc.ci_high,
                "ci_method": mc.method,
            }
        pk = pass_k_over_tasks([(r.n, r.n_pass) for r in rs])
        costs = [r.cost_usd for r in rs]
        out.append(
            {
                "agent": agent,
                "model": model,
                "options": opts,
                "tasks": len(means),
                "macro_mean_reward": mean,
                "ci_low": lo,
                "ci_high": hi,
                "ci_method": method,
                "runs": sum(r.runs for r in rs),
                "n": cm.n,
                "infra_errors": sum(r.infra_errors for r in rs),
                "timeouts": sum(r.timeouts for r in rs),
                "errors": sum(r.errors for r in rs),
                "micro_mean_reward": cm.mean,
                "micro_ci_low": cm.ci_low,
                "micro_ci_high": cm.ci_high,
                "micro_ci_method": cm.method,
                "micro_n_eff": cm.n_eff,
                "harness_errors": sum(r.harness_errors for r in rs),
                "cancelled": sum(r.cancelled for r in rs),
                **pk,
                "prompt_tokens": sum(r.prompt_tokens for r in rs),
                "completion_tokens": sum(r.completion_tokens for r in rs),
                "llm_calls": sum(r.llm_calls for r in rs),
                "cost_usd": None if any(c is None for c in costs) else round(sum(costs), 6),
                "timings": {ph: round(phase_tot[ph] / len(runs), 3) for ph in _order(phase_tot)}
                if runs
                else {},
                "metrics": metrics,
            }
        )
    return out


def summarize(m: Manifest) -> dict[str, Any]:
    """Summary dict (``--json`` prints it): rollout info, counts, rows, overall per agent×model."""
    groups: dict[tuple, list] = defaultdict(list)
    for r in m.results:
        groups[_key(r)].append(r)
    unbounded = {k for r in m.results for k, v in r.metrics.items() if not 0.0 <= v <= 1.0}
    bounded = {k for r in m.results for k in r.metrics} - unbounded
    rows: list[Row] = []
    used: dict[tuple, list] = {}
    for key, recs in groups.items():
        row, used[key] = _row(key, recs, bounded)
        rows.append(row)
    rows.sort(key=lambda r: (r.agent, r.model, r.options, r.task))
    counts: dict[str, int] = defaultdict(int)
    for r in m.results:
        counts[r.status if r.status != "error" else f"error:{r.error_kind}"] += 1
    phases = _order({ph for r in rows for ph in r.timings})
    return {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "name": m.name,
        "rollout_id": m.rollout_id,
        "status": m.status,
        "config": m.config,
        "started_at": m.started_at,
        "finished_at": m.finished_at,
        "total_runs": len(m.results),
        "counts": dict(counts),
        "infra_errors": counts.get("error:infra", 0),
        "harness_errors": counts.get("error:harness", 0),
        "incomplete": counts.get("error:harness", 0) > 0,
        "phases": phases,
        "metric_names": sorted({k for r in rows for k in r.metrics}),
        "rows": [{f: getattr(r, f) for f in _ROW_FIELDS} for r in rows],  # shallow: fresh dicts
        "overall": _overall(rows, used),
        "skipped": [sk.model_dump() for sk in m.skipped],
        "skipped_line": skipped_line(m),
    }


def skipped_line(m: Manifest) -> str | None:
    """``ran 85 of 89 tasks; 4 unsupported: a (reason), …`` when the rollout left unsupported tasks
    out (``run --skip-unsupported``); None otherwise. Never silently dropped: every summary shows it."""
    skipped = m.skipped
    if not skipped:
        return None
    ran = len({t.task_dir for t in m.tasks})
    unique = list({sk.task_dir: sk for sk in skipped}.values())  # one task may be named by several entries
    parts = [f"{sk.task_name} ({sk.reasons[0]}{' …' if len(sk.reasons) > 1 else ''})" for sk in unique]
    return f"ran {ran} of {ran + len(unique)} tasks; {len(unique)} unsupported: " + "; ".join(parts)


def listing_line(benchmark: str, m: Manifest) -> str:
    """One line of ``summarize`` without NAME: the rollout's per-run mean over scored runs with n
    and its task-clustered 95% interval (the same denominators as ``summarize NAME``: errors of kind
    agent/model/verifier/harness, timeouts and limits count as 0; infra errors and cancelled runs
    are counted apart), e.g. ``nightly  20260101__00-00-00  completed  runs=2  mean=0.50
    [0.09, 0.91] n=2  infra=0 cancelled=0``."""
    scored = [r for r in m.results if counted(r)]
    infra = sum(r.status == "error" and r.error_kind == "infra" for r in m.results)
    cancelled = sum(r.status == "cancelled" for r in m.results)
    unfinished = sum(r.status in ("pending", "running") for r in m.results)
    harness = sum(r.status == "error" and r.error_kind == "harness" for r in m.results)
    cm = clustered_mean_ci([r.reward for r in scored], [r.task_name for r in scored])
    mean = (
        "—"
        if cm.mean is None
        else f"{cm.mean:.2f}" + (f" [{cm.ci_low:.2f}, {cm.ci_high:.2f}]" if cm.ci_low is not None else "")
    )
    line = (
        f"{benchmark}  {m.rollout_id}  {m.status:9}  runs={len(m.results)}  mean={mean} n={cm.n}  "
        f"infra={infra} cancelled={cancelled}"
    )
    if unfinished:
        line += f" unfinished={unfinished}"
    if harness:
        line += f"  harness={harness} (results incomplete)"
    return line


def load_for_report(store, name: str, rollout_id: str) -> Manifest:
    """``store.load_manifest`` for a one-shot report command: the cyclic garbage collector is
    paused while pydantic builds the ~10^5 objects of a 10,000-run manifest and they are then
    moved to the permanent generation (``gc.freeze``), so the collections that summarizing
    triggers do not rescan them (~0.1 s of a 1 s budget). Meant for CLI processes that exit after
    reporting; raises what ``Store.load_manifest`` raises."""
    import gc

    gc.disable()
    try:
        return store.load_manifest(name, rollout_id)
    finally:
        gc.freeze()
        gc.enable()
