"""Paired comparison of two rollouts on their common tasks (differences always B - A).

* Task level (Miller 2024, "Adding Error Bars to Evals", arXiv:2411.00640 sec. 4): per task
  ``d_t = mean(b_t) - mean(a_t)`` in [-1, 1].
* Interval of the mean difference: the **Agresti-Min adjusted interval** for paired
  differences - the T differences plus pseudo-observations equivalent to adding 1/2 to each cell
  of the paired 2x2 table (weight 1/2 at +R and at -R, weight 1 at 0, R = 1 for rewards in
  [0, 1]), then the Wald interval of the weighted mean. For 0/±1 differences this is exactly
  Agresti & Min 2005, "Simple improved confidence intervals for comparing matched proportions",
  Statistics in Medicine 24(5):729-740; the pseudo-observations keep the variance positive, so
  the interval never has zero width (6 tasks all +1 give [+0.36, +1.00], not [+1, +1]).
* p-value: two-sided sign-flip permutation test of ``mean(d) = 0`` (Fisher 1935; Good 2005,
  "Permutation, Parametric and Bootstrap Tests of Hypotheses", sec. 3.6.2): exact enumeration of
  the ``2**T'`` sign patterns of the T' non-zero differences when that is at most ``n_boot``,
  else ``n_boot`` random patterns (at most 2e6 / T' of them, p = (hits + 1) / (draws + 1)). An
  observed mean within :data:`TIE_TOLERANCE` of 0 is 0: p = 1. The smallest p it can reach is
  ``2 / 2**T'`` (:func:`min_sign_flip_p`).
* Wilcoxon signed-rank p on the non-zero differences (Wilcoxon 1945) by the rules and numbers of
  ``scipy.stats.wilcoxon`` (method "auto", no continuity correction; tested equal in
  ``tests/test_stats.py``): n > 50 -> normal approximation with the tie correction; no tied
  magnitudes -> exact null distribution; ties and n <= 13 -> all 2^n sign patterns; else normal.
* McNemar's exact test for paired pass/fail runs (:func:`mcnemar`).

These are written with NumPy here rather than called from SciPy: importing ``scipy.stats`` costs
~0.6 s, more than half of the 1 s a ``compare`` of 10,000 runs may take (issue 13).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

#: Two per-task mean rewards closer than this are a tie; an observed mean difference this close
#: to 0 is 0 (floating-point residue of a sum that is exactly zero).
TIE_TOLERANCE = 1e-9

VERDICT_BETTER = "B better than A"
VERDICT_WORSE = "B worse than A"
VERDICT_NONE = "no significant difference"
#: The three possible values of :attr:`PairedResult.verdict`.
VERDICTS: tuple[str, str, str] = (VERDICT_BETTER, VERDICT_WORSE, VERDICT_NONE)


@dataclass
class PairedResult:
    """Result of :func:`paired_compare`. ``verdict`` is one of :data:`VERDICTS`; ``summary`` is
    the verdict with the mean difference, its CI and p, e.g. ``"B better than A (mean diff
    +0.120, 95% CI [+0.050, +0.190], p=0.0021, 30 tasks, 20W/5L/5T)"``."""

    n_tasks: int
    tasks: list[str]
    diffs: dict[str, float]
    mean_a: float | None
    mean_b: float | None
    mean_diff: float | None
    ci_low: float | None
    ci_high: float | None
    ci_method: str | None
    confidence: float
    p_value: float | None
    p_value_method: str
    wilcoxon_p: float | None
    wins: int
    losses: int
    ties: int
    win_rate: float | None
    alpha: float
    verdict: str
    summary: str
    tasks_only_a: list[str] = field(default_factory=list)
    tasks_only_b: list[str] = field(default_factory=list)


def _fmt_signed(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.3f}"


def min_sign_flip_p(n_nonzero: int) -> float:
    """Smallest two-sided p the sign-flip test can give with ``n_nonzero`` non-zero differences:
    only the all-plus and all-minus assignments are as extreme as a unanimous sample, so
    ``2 / 2**n`` (1.0 for n == 0)."""
    return min(1.0, 2.0 / 2.0**n_nonzero)


def adjusted_diff_ci(d: np.ndarray, confidence: float) -> tuple[float, float]:
    """Agresti-Min adjusted interval of the mean of paired differences ``d`` (module docstring).

    Shapes: ``d`` 1-D (T >= 1). Returns ``(low, high)`` clipped to [-R, R], R = max(1, max|d|).
    """
    r = max(1.0, float(np.abs(d).max()))
    vals = np.concatenate([d, [r, -r, 0.0]])
    w = np.concatenate([np.ones(d.size), [0.5, 0.5, 1.0]])
    total = float(w.sum())  # T + 2
    mean = float((w * vals).sum()) / total
    var = max(0.0, float((w * vals * vals).sum()) / total - mean * mean) / total
    half = NormalDist().inv_cdf(0.5 + confidence / 2.0) * math.sqrt(var)
    return max(-r, mean - half), min(r, mean + half)


#: Monte Carlo sign-flip work cap (draws x differences): 2,000 draws for 1,000 tasks, so a compare of
#: 10,000 runs stays well under 1 s (MC standard error of p near 0.05: 0.005).
MAX_FLIP_CELLS = 2_000_000


def sign_flip_p(d: np.ndarray, n_resamples: int, seed: int) -> float:
    """Two-sided sign-flip permutation p of ``mean(d) = 0`` (module docstring): the share of sign
    patterns whose |sum| is at least the observed |sum| (less a relative 1e-9 for float noise).
    Exact over the ``2**T'`` patterns of the non-zero differences when ``2**T' <= n_resamples``,
    else Monte Carlo with ``numpy.random.default_rng(seed)``. |mean| <= TIE_TOLERANCE -> 1.0."""
    if d.size < 2 or abs(float(d.mean())) <= TIE_TOLERANCE:
        return 1.0
    x = d[d != 0.0]
    obs = abs(float(x.sum()))
    thresh = obs - 1e-9 * max(1.0, obs)
    t = x.size
    if 2**t <= n_resamples:
        bits = (np.arange(2**t, dtype=np.int64)[:, None] >> np.arange(t)) & 1
        sums = np.abs((1 - 2 * bits) @ x)
        return float(min(1.0, np.count_nonzero(sums >= thresh) / 2**t))
    rng = np.random.default_rng(seed)
    draws = max(1, min(n_resamples, MAX_FLIP_CELLS // t))
    hits, done, batch, total = 0, 0, max(1, 1_000_000 // t), float(x.sum())
    while done < draws:
        m = min(batch, draws - done)
        bits = np.unpackbits(np.frombuffer(rng.bytes((m * t + 7) // 8), dtype=np.uint8))[: m * t]
        flipped = bits.reshape(m, t).astype(np.float64) @ x  # sum of the flipped differences
        hits += int(np.count_nonzero(np.abs(total - 2.0 * flipped) >= thresh))
        done += m
    return float(min(1.0, (hits + 1) / (draws + 1)))


def _rank_abs(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """Average ranks (1-based) of |x| and whether any magnitudes tie."""
    a = np.abs(x)
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(a.size, dtype=np.float64)
    sa = a[order]
    i, tied = 0, False
    while i < a.size:
        j = i
        while j + 1 < a.size and sa[j + 1] == sa[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        tied = tied or j > i
        i = j + 1
    return ranks, tied


def wilcoxon_p(x: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of non-zero differences ``x`` (n >= 1; module docstring).
    Exact (subset-sum counts of ranks 1..n) for n <= 50 without tied magnitudes, else normal with
    variance ``n(n+1)(2n+1)/24 - sum(t^3 - t)/48``, as ``scipy.stats.wilcoxon(x)``."""
    n = x.size
    ranks, tied = _rank_abs(x)
    r_plus = float(ranks[x > 0].sum())
    if tied and n <= 13:  # scipy: a permutation test over every sign pattern
        bits = (np.arange(2**n, dtype=np.int64)[:, None] >> np.arange(n)) & 1
        null = bits @ ranks
        tol = 1e-9 * max(1.0, r_plus)
        p_less = np.count_nonzero(null <= r_plus + tol) / 2**n
        p_greater = np.count_nonzero(null >= r_plus - tol) / 2**n
        return float(min(1.0, 2.0 * min(p_less, p_greater)))
    if n <= 50 and not tied:
        counts = np.zeros(n * (n + 1) // 2 + 1, dtype=np.float64)
        counts[0] = 1.0
        for r in range(1, n + 1):
            counts[r:] = counts[r:] + counts[:-r].copy()
        cdf = np.cumsum(counts) / 2.0**n
        w = int(round(r_plus))
        p_low = cdf[w]
        p_high = 1.0 - (cdf[w - 1] if w > 0 else 0.0)
        return float(min(1.0, 2.0 * min(p_low, p_high)))
    _, counts = np.unique(np.abs(x), return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24.0 - float(np.sum(counts.astype(np.float64) ** 3 - counts)) / 48.0
    z = (r_plus - n * (n + 1) / 4.0) / math.sqrt(var)
    return float(min(1.0, 2.0 * NormalDist().cdf(-abs(z))))


def _means(m: Mapping[str, Sequence[float | None]], tasks: list[str]) -> np.ndarray:
    return np.array([math.fsum(0.0 if v is None else float(v) for v in m[t]) / len(m[t]) for t in tasks])


def paired_compare(
    a: Mapping[str, Sequence[float | None]],
    b: Mapping[str, Sequence[float | None]],
    n_boot: int = 10000,
    seed: int = 0,
    *,
    alpha: float = 0.05,
) -> PairedResult:
    """Paired comparison of rollout B against rollout A on the tasks both contain.

    ``a`` / ``b`` map task id -> run rewards (``None`` = 0); tasks missing or empty on either
    side are listed in ``tasks_only_a`` / ``tasks_only_b``. Differences within
    :data:`TIE_TOLERANCE` of 0 are ties (0). ``mean_diff`` with the Agresti-Min adjusted CI at
    ``1 - alpha``; ``p_value`` from :func:`sign_flip_p` (``n_boot`` random flips unless exact,
    ``seed``); ``wilcoxon_p`` (scipy.stats.wilcoxon) on the non-zero differences when there are
    at least 6; ``win_rate = (wins + ties/2) / T``. The verdict is "better"/"worse" only when
    ``p < alpha`` and the CI excludes 0 on the same side. T == 0 -> statistics ``None``.
    """
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    confidence = 1.0 - alpha
    ua = {t for t, runs in a.items() if len(runs) > 0}
    ub = {t for t, runs in b.items() if len(runs) > 0}
    tasks = sorted(ua & ub)
    only_a, only_b = sorted(set(a) - set(tasks)), sorted(set(b) - set(tasks))
    t_count = len(tasks)
    p_method = "sign-flip permutation test (two-sided)"
    if t_count == 0:
        return PairedResult(
            0, [], {}, None, None, None, None, None, None, confidence, None, p_method, None, 0, 0, 0,
            None, alpha, VERDICT_NONE, f"{VERDICT_NONE} (no common tasks)", only_a, only_b,
        )  # fmt: skip
    mean_a_t, mean_b_t = _means(a, tasks), _means(b, tasks)
    d = mean_b_t - mean_a_t
    d = np.where(np.abs(d) < TIE_TOLERANCE, 0.0, d)
    wins, losses = int(np.count_nonzero(d > 0)), int(np.count_nonzero(d < 0))
    ties = t_count - wins - losses
    mean_diff = float(d.mean())
    ci_low, ci_high = adjusted_diff_ci(d, confidence)
    p_value = sign_flip_p(d, n_boot, seed)
    nonzero = d[d != 0.0]
    w_p = wilcoxon_p(nonzero) if nonzero.size >= 6 else None
    verdict = VERDICT_NONE
    if p_value < alpha and mean_diff > 0 and ci_low > 0:
        verdict = VERDICT_BETTER
    elif p_value < alpha and mean_diff < 0 and ci_high < 0:
        verdict = VERDICT_WORSE
    summary = (
        f"{verdict} (mean diff {_fmt_signed(mean_diff)}, {100 * confidence:g}% CI "
        f"[{_fmt_signed(ci_low)}, {_fmt_signed(ci_high)}], p={p_value:.4g}, {t_count} "
        f"task{'s' if t_count != 1 else ''}, {wins}W/{losses}L/{ties}T)"
    )
    return PairedResult(
        n_tasks=t_count,
        tasks=tasks,
        diffs=dict(zip(tasks, d.tolist(), strict=True)),
        mean_a=float(mean_a_t.mean()),
        mean_b=float(mean_b_t.mean()),
        mean_diff=mean_diff,
        ci_low=ci_low,
        ci_high=ci_high,
        ci_method="agresti-min",
        confidence=confidence,
        p_value=p_value,
        p_value_method=p_method,
        wilcoxon_p=w_p,
        wins=wins,
        losses=losses,
        ties=ties,
        win_rate=(wins + 0.5 * ties) / t_count,
        alpha=alpha,
        verdict=verdict,
        summary=summary,
        tasks_only_a=only_a,
        tasks_only_b=only_b,
    )


def mcnemar(a_pass: Sequence[bool], b_pass: Sequence[bool]) -> tuple[int, int, float]:
    """Exact McNemar test for paired pass/fail outcomes -> ``(b01, b10, p)``.

    ``b01`` = #(A fail, B pass), ``b10`` = #(A pass, B fail). Under H0 ``b01 ~ Bin(b01 + b10,
    1/2)``; two-sided ``p = min(1, 2 * P(X <= min(b01, b10)))`` (McNemar 1947, Psychometrika
    12:153-157; exact form: Fagerland, Lydersen & Laake 2013, BMC Med Res Methodol 13:91),
    computed from binomial coefficients. No discordant pair -> p = 1. Length mismatch ->
    ``ValueError``.
    """
    if len(a_pass) != len(b_pass):
        raise ValueError(f"a_pass and b_pass differ in length: {len(a_pass)} != {len(b_pass)}")
    a_arr, b_arr = np.asarray(a_pass, dtype=bool), np.asarray(b_pass, dtype=bool)
    b01 = int(np.count_nonzero(~a_arr & b_arr))
    b10 = int(np.count_nonzero(a_arr & ~b_arr))
    n = b01 + b10
    if n == 0:
        return b01, b10, 1.0
    tail = sum(math.comb(n, i) for i in range(min(b01, b10) + 1))
    return b01, b10, float(min(1.0, 2 * tail / 2**n))
