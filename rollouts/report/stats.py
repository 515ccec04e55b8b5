"""Statistics for rollout reports: pure functions over per-run rewards in [0, 1].

Vocabulary
----------
* A *run* is one attempt of one agent/model on one task; it yields a reward in [0, 1]
  (``None`` = no reward: an agent/model/verifier/harness error, a timeout or a hit limit, all
  counted as 0). Infrastructure errors and cancelled runs are not runs of the agent: callers
  leave them out and report them apart.
* A *group* is the set of runs of one task x agent x model; a *rollout* is a whole pass.

Intervals (the one rule: **no interval of zero width from a finite sample**)
--------------------------------------------------------------------------
* Means of values in [0, 1] (a group's runs, a task-level macro mean, pass@k over tasks): the
  **Wilson score interval** (Wilson 1927) at ``p = mean``, with the fractional count
  ``n * mean`` for partial-credit rewards. For 0/1 data this is the textbook Wilson interval.
  For values in [0, 1] with mean p the variance is at most p(1 - p) (Bhatia & Davis 2000), so
  the Wilson interval is the score interval under the largest variance the data can have: it
  never collapses when all values agree (4 tasks at 1.0 give [0.51, 1.00]) and is conservative
  otherwise.
* Per-run means over clustered runs (tasks = clusters): the same Wilson interval at an
  **effective sample size** ``n_eff = min(n, p(1 - p) / V)`` where V is the cluster-robust
  variance of the mean (Miller 2024 App. A; Inspect AI's C/(C-1) correction): the design-effect
  Wilson interval of survey statistics (Korn & Graubard 1998 cap n_eff at n; Dean & Pagano 2015
  evaluate the Wilson variant). ``V = 0`` (e.g. ``[1,0,0,1]`` clustered ``[a,a,b,b]``) gives
  ``n_eff = n``, never a zero width.
* pass@k / pass^k of one group: the Wilson interval of the per-run pass probability p mapped
  through ``1 - (1 - p)^k`` and ``p^k`` (monotone, so the coverage carries over) - the iid
  Bernoulli model under which Chen et al. 2021 and Yao et al. 2024 define the two - widened where
  needed to contain the unbiased estimate (at k near n it is not the plug-in value).
* Values outside [0, 1] (custom metrics such as seconds or counts): Student t; a constant sample
  of unbounded values has no honest interval and gets ``None``.
* Paired differences of two rollouts: :mod:`rollouts.report.paired`.

Quantiles come from :mod:`rollouts.report.quantiles` (normal and Student t, no SciPy), and the arithmetic is plain Python
(groups hold a handful of runs, where NumPy's per-call overhead dominates): a summary imports
neither NumPy nor SciPy.

References
----------
* Wilson 1927, "Probable Inference, the Law of Succession, and Statistical Inference", JASA
  22(158):209-212; Brown, Cai & DasGupta 2001, Statistical Science 16(2):101-133.
* Bhatia & Davis 2000, "A Better Bound on the Variance", Amer. Math. Monthly 107(4):353-357.
* Korn & Graubard 1998, "Confidence Intervals for Proportions with Small Expected Number of
  Positive Counts Estimated from Survey Data", Survey Methodology 24(2):193-201.
* Dean & Pagano 2015, "Evaluating Confidence Interval Methods for Binomial Proportions in
  Clustered Surveys", J. Survey Statistics and Methodology 3(4):484-503.
* Miller 2024, "Adding Error Bars to Evals", arXiv:2411.00640 (task as the unit, clustered SE).
* Chen et al. 2021, arXiv:2107.03374 (unbiased pass@k); Yao et al. 2024, arXiv:2406.12045 (pass^k).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from rollouts.report.passk import pass_at_k, pass_at_k_curve, pass_hat_k, pass_hat_k_curve  # noqa: F401 (re-exported)
from rollouts.report.quantiles import normal_quantile, t_quantile

#: Names of the comparison half of the API, re-exported lazily from :mod:`rollouts.report.paired`
#: (which needs NumPy; a summary does not).
_PAIRED = frozenset(
    {"TIE_TOLERANCE", "VERDICT_BETTER", "VERDICT_NONE", "VERDICT_WORSE", "VERDICTS", "PairedResult",
     "mcnemar", "paired_compare"}
)  # fmt: skip


def __getattr__(name: str):
    if name in _PAIRED:
        from rollouts.report import paired

        return getattr(paired, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ClusteredMean",
    "GroupStats",
    "clustered_mean_ci",
    "group_stats",
    "macro_stats",
    "mean_ci",
    "pass_at_k",
    "pass_at_k_curve",
    "pass_hat_k",
    "pass_hat_k_curve",
    "pass_k_over_tasks",
    "wilson_ci",
]

# A reward counts as a pass when ``reward >= pass_threshold - _PASS_EPS`` (float noise).
_PASS_EPS = 1e-9
_CI_METHODS = ("auto", "wilson", "t")


def _check_confidence(confidence: float) -> None:
    if not (0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _floats(values, *, none_as_zero: bool) -> list[float]:
    """Values as a list of floats; ``None`` -> 0.0 when ``none_as_zero``; NaN/inf raise ValueError."""
    out = [0.0 if (v is None and none_as_zero) else float(v) for v in values]
    if not all(map(math.isfinite, out)):
        raise ValueError("values must be finite (NaN/inf found)")
    return out


def _in_unit(arr: list[float]) -> bool:
    return bool(arr) and min(arr) >= 0.0 and max(arr) <= 1.0


def _sd(arr: list[float]) -> float:
    """Sample standard deviation (ddof=1); needs len >= 2."""
    m = math.fsum(arr) / len(arr)
    return math.sqrt(math.fsum((x - m) ** 2 for x in arr) / (len(arr) - 1))


# --------------------------------------------------------------------------------------------
# intervals
# --------------------------------------------------------------------------------------------


def wilson_ci(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval for ``successes / n`` (scalars in, ``(low, high)`` in [0, 1] out)::

        (p + z^2/(2n) +- z * sqrt(p(1-p)/n + z^2/(4n^2))) / (1 + z^2/n),   z = Phi^-1((1+conf)/2)

    (Wilson 1927; Brown, Cai & DasGupta 2001 eq. 4). ``successes`` and ``n`` may be fractional
    (partial-credit sums, effective sample sizes). Width is > 0 for every finite n > 0.
    ``n == 0`` -> ``None``; ``ValueError`` unless ``0 <= successes <= n`` and ``0 < conf < 1``.
    """
    _check_confidence(confidence)
    if n < 0 or successes < 0 or successes > n * (1 + 1e-12):
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return None
    z = normal_quantile(float(confidence))
    p = min(1.0, successes / n)
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    # at p = 0 (p = 1) the lower (upper) limit is exactly 0 (1); avoid float residue there
    return (0.0 if p == 0.0 else max(0.0, centre - half)), (1.0 if p == 1.0 else min(1.0, centre + half))


def _t_ci(arr: list[float], confidence: float) -> tuple[float, float] | None:
    if len(arr) < 2 or min(arr) == max(arr):
        return None  # no variance estimate: an unbounded constant sample has no honest interval
    half = t_quantile(confidence, len(arr) - 1) * _sd(arr) / math.sqrt(len(arr))
    m = math.fsum(arr) / len(arr)
    return m - half, m + half


def _mean_ci(arr: list[float], confidence: float, method: str) -> tuple[float, float, str] | None:
    """:func:`mean_ci` plus the method used (``"wilson"`` for 0/1 data, ``"wilson-bd"`` for
    partial credit in [0, 1], ``"t"``)."""
    _check_confidence(confidence)
    if method not in _CI_METHODS:
        raise ValueError(f"method must be one of {_CI_METHODS}, got {method!r}")
    if not arr:
        return None
    unit = _in_unit(arr)
    if method == "wilson" and not unit:
        raise ValueError("method='wilson' needs values in [0, 1]")
    if method == "t" or not unit:
        ci = _t_ci(arr, confidence)
        return None if ci is None else (*ci, "t")
    lo, hi = wilson_ci(math.fsum(arr), len(arr), confidence)  # type: ignore[misc]
    binary = all(x == 0.0 or x == 1.0 for x in arr)
    return lo, hi, "wilson" if binary else "wilson-bd"


def mean_ci(
    values: Sequence[float], confidence: float = 0.95, method: str = "auto"
) -> tuple[float, float] | None:
    """Confidence interval ``(low, high)`` for the mean of ``values`` (1-D, length n).

    ``"auto"``/``"wilson"``: values in [0, 1] -> Wilson at ``(sum, n)`` (see the module
    docstring: exact Wilson for 0/1 data; for partial credit the score interval under the
    Bhatia-Davis variance bound), positive width for every n >= 1. ``"t"`` (and ``"auto"`` for
    values outside [0, 1]): Student t, ``None`` for n < 2 or a constant sample.
    n == 0 -> ``None``; NaN/inf, unknown method, or ``"wilson"`` outside [0, 1] -> ``ValueError``.
    """
    res = _mean_ci(_floats(values, none_as_zero=False), confidence, method)
    return None if res is None else (res[0], res[1])


# --------------------------------------------------------------------------------------------
# one group (task x agent x model)
# --------------------------------------------------------------------------------------------


@dataclass
class GroupStats:
    """Summary of one group (see :func:`group_stats`). ``pass_at_k`` / ``pass_hat_k`` map k
    (1..n) to the estimate and ``pass_at_k_ci`` / ``pass_hat_k_ci`` map k to ``[low, high]``;
    statistics undefined at this n are ``None``."""

    n: int
    n_infra_errors: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    ci_method: str | None
    pass_rate: float | None
    pass_at_k: dict[int, float] = field(default_factory=dict)
    pass_hat_k: dict[int, float] = field(default_factory=dict)
    std: float | None = None
    n_pass: int = 0
    pass_at_k_ci: dict[int, list[float]] = field(default_factory=dict)
    pass_hat_k_ci: dict[int, list[float]] = field(default_factory=dict)


def group_stats(
    rewards: Sequence[float | None],
    infra_errors: int = 0,
    pass_threshold: float = 1.0,
    *,
    confidence: float = 0.95,
    ci_method: str = "auto",
) -> GroupStats:
    """Statistics of one group: ``rewards`` (length n, in [0, 1] or ``None`` = 0) and a count of
    infra errors (not in ``rewards``, not in any denominator).

    ``mean`` with its interval from :func:`mean_ci`; ``pass_rate`` = share of runs with
    ``reward >= pass_threshold`` (``n_pass`` of them); pass@k and pass^k for k = 1..n with
    intervals from the Wilson interval of the pass rate (module docstring); ``std`` (ddof=1,
    ``None`` for n < 2). n == 0 -> ``None`` statistics and empty dicts.
    """
    if infra_errors < 0:
        raise ValueError(f"infra_errors must be >= 0, got {infra_errors}")
    arr = _floats(rewards, none_as_zero=True)
    n = len(arr)
    if n == 0:
        return GroupStats(0, int(infra_errors), None, None, None, None, None)
    ci = _mean_ci(arr, confidence, ci_method)
    lo, hi, method = ci if ci is not None else (None, None, None)
    c = sum(1 for x in arr if x >= pass_threshold - _PASS_EPS)
    plo, phi = wilson_ci(c, n, confidence)  # type: ignore[misc]
    at, hat = pass_at_k_curve(n, c), pass_hat_k_curve(n, c)
    keys = range(1, n + 1)
    # widened to hold the unbiased estimate, which near k = n is not the plug-in 1-(1-p)^k / p^k
    at_lo = [min(1.0 - (1.0 - plo) ** k, v) for k, v in zip(keys, at, strict=True)]
    at_hi = [max(1.0 - (1.0 - phi) ** k, v) for k, v in zip(keys, at, strict=True)]
    hat_lo = [min(plo**k, v) for k, v in zip(keys, hat, strict=True)]
    hat_hi = [max(phi**k, v) for k, v in zip(keys, hat, strict=True)]
    return GroupStats(
        n=n,
        n_infra_errors=int(infra_errors),
        mean=math.fsum(arr) / n,
        ci_low=lo,
        ci_high=hi,
        ci_method=method,
        pass_rate=c / n,
        pass_at_k=dict(zip(keys, at, strict=True)),
        pass_hat_k=dict(zip(keys, hat, strict=True)),
        std=_sd(arr) if n >= 2 else None,
        n_pass=c,
        pass_at_k_ci={k: [a, b] for k, a, b in zip(keys, at_lo, at_hi, strict=True)},
        pass_hat_k_ci={k: [a, b] for k, a, b in zip(keys, hat_lo, hat_hi, strict=True)},
    )


# --------------------------------------------------------------------------------------------
# across tasks
# --------------------------------------------------------------------------------------------


def macro_stats(
    per_task_means: Sequence[float], confidence: float = 0.95, method: str = "auto"
) -> tuple[float | None, float | None, float | None, str | None]:
    """Macro mean over T tasks (every task weighs the same; the task is the unit, Miller 2024
    sec. 2) -> ``(mean, low, high, method)``. The interval is :func:`mean_ci` over the T task
    means: Wilson at (sum, T) for means in [0, 1] (never zero width: 4 tasks at 1.0 give
    [0.51, 1.00]), Student t otherwise. T == 0 -> all ``None``."""
    arr = _floats(per_task_means, none_as_zero=False)
    if not arr:
        return None, None, None, None
    mean = math.fsum(arr) / len(arr)
    ci = _mean_ci(arr, confidence, method)
    return (mean, None, None, None) if ci is None else (mean, ci[0], ci[1], ci[2])


def pass_k_over_tasks(
    counts: Sequence[tuple[int, int]], confidence: float = 0.95
) -> dict[str, float | int | None]:
    """pass@1, pass@k and pass^k over tasks with intervals, for ``counts`` = per task
    ``(n runs, c passes)``; k = the smallest n (so every task has an unbiased estimate).

    Each is the mean over tasks of the per-task unbiased estimate (Chen et al. 2021; Yao et al.
    2024) with the Wilson interval at (sum, T) over those per-task values in [0, 1] (module
    docstring: never zero width, also when every task agrees). Returns ``{"k", "tasks",
    "pass_at_1", "pass_at_1_low", "pass_at_1_high", "pass_at_k", ..., "pass_hat_k", ...}``;
    values ``None`` when no task has a run."""
    used = [(n, c) for n, c in counts if n > 0]
    out: dict[str, float | int | None] = {"k": None, "tasks": len(used)}
    k = min((n for n, _ in used), default=0)
    out["k"] = k or None
    for name, fn, kk in (
        ("pass_at_1", pass_at_k, 1),
        ("pass_at_k", pass_at_k, k),
        ("pass_hat_k", pass_hat_k, k),
    ):
        if not used:
            out[name] = out[f"{name}_low"] = out[f"{name}_high"] = None
            continue
        vals = [fn(n, c, kk) for n, c in used]
        lo, hi = wilson_ci(math.fsum(vals), len(vals), confidence)  # type: ignore[misc]
        out[name], out[f"{name}_low"], out[f"{name}_high"] = math.fsum(vals) / len(vals), lo, hi
    return out


class ClusteredMean(NamedTuple):
    """Result of :func:`clustered_mean_ci` (unpacks as a tuple)."""

    mean: float | None
    se: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    n_clusters: int
    n_eff: float | None = None
    method: str | None = None


def clustered_mean_ci(
    values: Sequence[float | None], clusters: Sequence[str], confidence: float = 0.95
) -> ClusteredMean:
    """Mean over all N runs with a cluster-robust interval (clusters = tasks, C of them).

    ``values`` and ``clusters`` are parallel (``None`` counts as 0). Cluster-robust SE (Miller
    2024 App. A, with Inspect AI's C/(C-1) correction)::

        SE = sqrt( sum_c ( sum_{i in c} (x_i - mean) )^2 ) / N * sqrt( C / (C - 1) )

    Values in [0, 1]: Wilson at the effective sample size ``n_eff = min(N, p(1-p)/SE^2)``
    (``N`` when SE == 0 or C == 1), method ``"wilson-clustered"`` (Korn & Graubard 1998; Dean &
    Pagano 2015). Other values: ``mean +- t_{C-1} * SE`` (``"clustered-t"``; no interval when
    C < 2 or SE == 0). N == 0 -> ``None`` statistics. Length mismatch/NaN -> ``ValueError``.
    """
    _check_confidence(confidence)
    arr = _floats(values, none_as_zero=True)
    if len(clusters) != len(arr):
        raise ValueError(f"values and clusters differ in length: {len(arr)} != {len(clusters)}")
    n = len(arr)
    if n == 0:
        return ClusteredMean(None, None, None, None, 0, 0)
    mean = math.fsum(arr) / n
    sums: dict[str, float] = {}
    for x, c in zip(arr, clusters, strict=True):
        sums[str(c)] = sums.get(str(c), 0.0) + (x - mean)
    n_clusters = len(sums)
    se = None
    if n_clusters >= 2:
        se = math.sqrt(math.fsum(v * v for v in sums.values())) / n * math.sqrt(n_clusters / (n_clusters - 1))
    if _in_unit(arr):
        var_bound = mean * (1.0 - mean)
        n_eff = float(n) if not se or var_bound == 0.0 else min(float(n), var_bound / se**2)
        lo, hi = wilson_ci(mean * n_eff, n_eff, confidence)  # type: ignore[misc]
        return ClusteredMean(mean, se, lo, hi, n, n_clusters, n_eff, "wilson-clustered")
    if not se:
        return ClusteredMean(mean, se, None, None, n, n_clusters)
    half = t_quantile(confidence, n_clusters - 1) * se
    return ClusteredMean(mean, se, mean - half, mean + half, n, n_clusters, None, "clustered-t")
