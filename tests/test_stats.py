"""Tests for rollouts.report.stats against hand-computed / published reference values."""

from __future__ import annotations

import math
from math import comb

import numpy as np
import pytest
from scipy import stats as sps

from rollouts.report import quantiles, stats
from rollouts.report.stats import (
    VERDICTS,
    clustered_mean_ci,
    group_stats,
    macro_stats,
    mcnemar,
    mean_ci,
    paired_compare,
    pass_at_k,
    pass_at_k_curve,
    pass_hat_k,
    pass_hat_k_curve,
    wilson_ci,
)

# ----------------------------------------------------------------------------- pass@k / pass^k


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 1, 0.4),  # 1 - C(3,1)/C(5,1) = 1 - 3/5
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (10, 0, 5, 0.0),  # no passes
        (3, 3, 3, 1.0),  # all pass
        (5, 2, 4, 1.0),  # n - c < k: every 4-subset contains a pass
        (1, 1, 1, 1.0),
        (1, 0, 1, 0.0),
    ],
)
def test_pass_at_k_known_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_k_greater_than_n_is_none():
    assert pass_at_k(3, 1, 4) is None
    assert pass_at_k(0, 0, 1) is None
    assert pass_hat_k(3, 1, 4) is None


def test_pass_at_k_matches_binomial_definition_and_stays_stable():
    # Chen et al. 2021 eq. (1) with exact integer binomials.
    for n in range(1, 16):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - comb(n - c, k) / comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)
    # Large n: C(1000, 500) overflows float, the product form does not.
    v = pass_at_k(1000, 3, 500)
    assert v == pytest.approx(1 - comb(997, 500) / comb(1000, 500), rel=1e-12)


def test_pass_hat_k_known_values():
    assert pass_hat_k(5, 2, 2) == pytest.approx(0.1)  # C(2,2)/C(5,2) = 1/10
    assert pass_hat_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_hat_k(5, 2, 3) == 0.0  # c < k
    assert pass_hat_k(4, 4, 4) == 1.0
    for n in range(1, 12):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_hat_k(n, c, k) == pytest.approx(comb(c, k) / comb(n, k), abs=1e-12)


def test_curves_match_scalar_functions():
    for n in range(0, 13):
        for c in range(n + 1):
            at = pass_at_k_curve(n, c)
            hat = pass_hat_k_curve(n, c)
            assert len(at) == len(hat) == n
            for k in range(1, n + 1):
                assert at[k - 1] == pytest.approx(pass_at_k(n, c, k), abs=1e-12)
                assert hat[k - 1] == pytest.approx(pass_hat_k(n, c, k), abs=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(3, 4, 1), (-1, 0, 1), (3, -1, 1), (3, 1, 0)])
def test_pass_at_k_rejects_bad_input(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)
    with pytest.raises(ValueError):
        pass_hat_k(n, c, k)


# ----------------------------------------------------------------------------- Wilson / mean CI


def _wilson_by_formula(s: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson 1927 score interval, written out: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n).

    Reference: E. B. Wilson, "Probable Inference, the Law of Succession, and Statistical
    Inference", JASA 22 (1927) 209-212; Brown, Cai & DasGupta, Statistical Science 16 (2001) eq. 4.
    """
    z = sps.norm.ppf(0.5 + confidence / 2)
    p = s / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half


def test_wilson_8_of_10():
    # Hand value from the formula above with z = 1.959964: centre 0.716740, half-width 0.226578
    # -> (0.49016, 0.94332). Matches Newcombe 1998 (Stat. Med. 17:857-872) style tables.
    lo, hi = wilson_ci(8, 10)
    assert (lo, hi) == pytest.approx((0.4902, 0.9433), abs=5e-5)
    assert (lo, hi) == pytest.approx(_wilson_by_formula(8, 10, 0.95), abs=1e-12)


@pytest.mark.parametrize(
    ("s", "n", "conf"), [(0, 1, 0.95), (1, 1, 0.95), (0, 20, 0.9), (20, 20, 0.99), (7, 13, 0.8)]
)
def test_wilson_matches_formula(s, n, conf):
    lo, hi = wilson_ci(s, n, conf)
    elo, ehi = _wilson_by_formula(s, n, conf)
    assert lo == pytest.approx(elo, abs=1e-12)
    assert hi == pytest.approx(ehi, abs=1e-12)
    assert 0.0 <= lo <= s / n <= hi <= 1.0


def test_wilson_edge_cases():
    assert wilson_ci(0, 0) is None
    with pytest.raises(ValueError):
        wilson_ci(3, 2)
    with pytest.raises(ValueError):
        wilson_ci(1, 2, confidence=1.0)


def test_mean_ci_binary_auto_is_wilson_even_at_n1():
    assert mean_ci([1.0]) == pytest.approx(wilson_ci(1, 1))
    assert mean_ci([1, 1, 0, 1, 1, 1, 1, 0, 1, 1]) == pytest.approx(wilson_ci(8, 10))
    # all-equal binary data is still Wilson (10/10 is not certainty)
    lo, hi = mean_ci([1.0] * 10)
    assert hi == pytest.approx(1.0) and lo < 1.0


def test_mean_ci_partial_credit_is_wilson_at_fractional_count():
    x = [0.2, 0.5, 0.9]  # in [0, 1]: Wilson at (sum, n) = (1.6, 3) (Bhatia-Davis variance bound)
    assert mean_ci(x) == pytest.approx(_wilson_by_formula(1.6, 3, 0.95))
    assert stats._mean_ci(x, 0.95, "auto")[2] == "wilson-bd"
    # outside [0, 1] (a metric in seconds): Student t
    y = [2.0, 5.0, 9.0]
    m, sd = np.mean(y), np.std(y, ddof=1)
    half = sps.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert mean_ci(y) == pytest.approx((m - half, m + half))
    assert mean_ci(x, method="t") == pytest.approx(
        (np.mean(x) - sps.t.ppf(0.975, 2) * np.std(x, ddof=1) / math.sqrt(3),
         np.mean(x) + sps.t.ppf(0.975, 2) * np.std(x, ddof=1) / math.sqrt(3))
    )


def test_mean_ci_edge_cases():
    assert mean_ci([]) is None
    lo, hi = mean_ci([0.5])  # one partial-credit run still gets an (honest, wide) interval
    assert lo < 0.5 < hi
    lo, hi = mean_ci([0.5, 0.5])  # the two runs at 0.5: no longer [0.5, 0.5]
    assert lo < 0.2 and hi > 0.8
    assert mean_ci([3.0, 3.0, 3.0]) is None  # unbounded constant sample: no honest interval
    assert mean_ci([3.0]) is None
    with pytest.raises(ValueError):
        mean_ci([0.5, 1.5], method="wilson")
    with pytest.raises(ValueError):
        mean_ci([0.5, 1.0], method="bootstrap")
    with pytest.raises(ValueError):
        mean_ci([0.5, float("nan")])


def test_mean_ci_four_tasks_all_one_is_not_certainty():
    lo, hi = mean_ci([1.0] * 4)  # the "1.00 [1.00, 1.00]"
    assert hi == 1.0 and lo == pytest.approx(_wilson_by_formula(4, 4, 0.95)[0]) and lo < 0.6





# ----------------------------------------------------------------------------- group_stats


def test_group_stats_n1():
    g = group_stats([1.0])
    assert (g.n, g.mean, g.pass_rate, g.std) == (1, 1.0, 1.0, None)
    assert g.ci_method == "wilson" and (g.ci_low, g.ci_high) == pytest.approx(wilson_ci(1, 1))
    assert g.pass_at_k == {1: 1.0} and g.pass_hat_k == {1: 1.0}
    g = group_stats([0.4])
    assert g.mean == pytest.approx(0.4) and g.ci_method == "wilson-bd"
    assert (g.ci_low, g.ci_high) == pytest.approx(wilson_ci(0.4, 1))
    assert g.pass_rate == 0.0 and g.pass_at_k == {1: 0.0}


def test_group_stats_all_pass_and_all_fail():
    g = group_stats([1.0] * 5)
    assert g.mean == 1.0 and g.pass_rate == 1.0 and g.std == 0.0
    assert all(v == 1.0 for v in g.pass_at_k.values()) and all(v == 1.0 for v in g.pass_hat_k.values())
    assert g.ci_high == pytest.approx(1.0) and g.ci_low == pytest.approx(wilson_ci(5, 5)[0])
    # pass@k / pass^k intervals: the Wilson interval of p mapped through 1-(1-p)^k and p^k
    lo, hi = wilson_ci(5, 5)
    assert g.pass_at_k_ci[3] == pytest.approx([1 - (1 - lo) ** 3, 1 - (1 - hi) ** 3])
    assert g.pass_hat_k_ci[3] == pytest.approx([lo**3, hi**3])
    assert all(b > a for a, b in g.pass_hat_k_ci.values())
    g = group_stats([0.0] * 5)
    assert g.mean == 0.0 and g.pass_rate == 0.0
    assert set(g.pass_at_k) == {1, 2, 3, 4, 5}
    assert all(v == 0.0 for v in g.pass_at_k.values()) and all(v == 0.0 for v in g.pass_hat_k.values())
    assert g.ci_low == 0.0 and g.ci_high == pytest.approx(wilson_ci(0, 5)[1])
    assert all(b > a for a, b in g.pass_at_k_ci.values())


def test_group_stats_infra_errors_only():
    g = group_stats([], infra_errors=3)
    assert g.n == 0 and g.n_infra_errors == 3
    assert g.mean is None and g.ci_low is None and g.ci_high is None and g.ci_method is None
    assert g.pass_rate is None and g.std is None
    assert g.pass_at_k == {} and g.pass_hat_k == {}


def test_group_stats_none_counts_as_zero_and_infra_excluded():
    g = group_stats([1.0, None, 1.0, None, 0.0], infra_errors=2)
    assert g.n == 5 and g.n_infra_errors == 2
    assert g.mean == pytest.approx(0.4)
    assert g.pass_rate == pytest.approx(0.4) and g.n_pass == 2
    assert g.ci_method == "wilson" and (g.ci_low, g.ci_high) == pytest.approx(wilson_ci(2, 5))
    assert g.pass_at_k[1] == pytest.approx(0.4) and g.pass_at_k[2] == pytest.approx(0.7)
    assert g.pass_hat_k[2] == pytest.approx(0.1)
    assert g.std == pytest.approx(np.std([1, 0, 1, 0, 0], ddof=1))


def test_group_stats_continuous_and_threshold():
    r = [0.2, 0.6, 0.9, 1.0]
    g = group_stats(r)
    assert g.ci_method == "wilson-bd"
    assert g.pass_rate == pytest.approx(0.25)  # only 1.0 is full success
    assert 0.0 <= g.ci_low <= g.mean <= g.ci_high <= 1.0
    g = group_stats(r, pass_threshold=0.5)
    assert g.pass_rate == pytest.approx(0.75) and g.pass_at_k[1] == pytest.approx(0.75)
    # float noise from graders still counts as a pass
    assert group_stats([0.9999999999999]).pass_rate == 1.0
    g = group_stats(r, ci_method="t")
    assert g.ci_method == "t"


# ----------------------------------------------------------------------------- macro / clustered


def test_macro_stats():
    x = [0.2, 0.4, 0.6, 0.8]
    mean, lo, hi, method = macro_stats(x)
    assert method == "wilson-bd" and mean == pytest.approx(0.5)
    assert (lo, hi) == pytest.approx(_wilson_by_formula(2.0, 4, 0.95))
    assert macro_stats([]) == (None, None, None, None)
    m, lo, hi, method = macro_stats([1.0, 1.0, 1.0, 1.0])  # 4 tasks all at 1.0
    assert (m, hi, method) == (1.0, 1.0, "wilson") and lo == pytest.approx(0.5101, abs=1e-4)
    m, lo, hi, _ = macro_stats([0.3])
    assert lo < 0.3 < hi


def test_clustered_se_hand_computed():
    # mean = 0.5; cluster residual sums: a: 0.5-0.5 = 0, b: 0.5+0.5 = 1, c: -0.5-0.5 = -1
    # SE = sqrt(0 + 1 + 1) / 6 * sqrt(3 / 2) = sqrt(3) / 6; V = 1/12; n_eff = 0.25 / V = 3
    res = clustered_mean_ci([1, 0, 1, 1, 0, 0], ["a", "a", "b", "b", "c", "c"])
    assert res.mean == pytest.approx(0.5)
    assert res.se == pytest.approx(math.sqrt(3) / 6)
    assert res.n == 6 and res.n_clusters == 3
    assert res.n_eff == pytest.approx(3.0) and res.method == "wilson-clustered"
    assert (res.ci_low, res.ci_high) == pytest.approx(_wilson_by_formula(1.5, 3.0, 0.95))


def test_clustered_se_second_example_and_order_independence():
    # x = [1, 1, 0 | 0.5 | 0, 0], clusters t1 t1 t1 t2 t3 t3; mean = 2.5/6
    x = [1, 1, 0, 0.5, 0, 0]
    cl = ["t1", "t1", "t1", "t2", "t3", "t3"]
    m = 2.5 / 6
    sums = [2 - 3 * m, 0.5 - m, -2 * m]
    expected = math.sqrt(sum(s * s for s in sums)) / 6 * math.sqrt(3 / 2)
    assert clustered_mean_ci(x, cl).se == pytest.approx(expected)
    perm = [5, 2, 0, 4, 1, 3]
    assert clustered_mean_ci([x[i] for i in perm], [cl[i] for i in perm]).se == pytest.approx(expected)
    # Clustering with singleton clusters reduces to sqrt(C/(C-1)) * population-sd / sqrt(N)
    y = [0.1, 0.4, 0.7, 0.2]
    se = clustered_mean_ci(y, ["a", "b", "c", "d"]).se
    assert se == pytest.approx(np.std(y, ddof=1) / 2)


def test_clustered_edge_cases():
    assert clustered_mean_ci([], [])[:6] == (None, None, None, None, 0, 0)
    r = clustered_mean_ci([1, 0], ["a", "a"])
    assert r.mean == 0.5 and r.se is None and r.n_clusters == 1 and r.n_eff == 2
    # the case: [1,0,0,1] clustered [a,a,b,b] has SE 0; n_eff = n, never width 0
    r = clustered_mean_ci([1, 0, 0, 1], ["a", "a", "b", "b"])
    assert r.se == 0.0 and r.n_eff == 4
    assert (r.ci_low, r.ci_high) == pytest.approx(wilson_ci(2, 4)) and r.ci_high - r.ci_low > 0.5
    # the effective size never exceeds n (Korn & Graubard 1998)
    r = clustered_mean_ci([1, 0, 1, 0, 1, 0], list("aabbcc"))
    assert r.n_eff == 6
    # unbounded values: clustered t, none when SE == 0
    r = clustered_mean_ci([3.0, 3.0, 3.0, 3.0], list("aabb"))
    assert r.ci_low is None and r.method is None
    with pytest.raises(ValueError):
        clustered_mean_ci([1, 0], ["a"])


# ----------------------------------------------------------------------------- paired comparison


def _rollout(rng, p_by_task, runs=5):
    return {t: (rng.random(runs) < p).astype(float).tolist() for t, p in p_by_task.items()}


def test_paired_compare_b_clearly_better():
    rng = np.random.default_rng(0)
    base = {f"task{i}": float(p) for i, p in enumerate(rng.uniform(0.1, 0.6, 40))}
    a = _rollout(rng, base)
    b = _rollout(rng, {t: min(1.0, p + 0.35) for t, p in base.items()})
    r = paired_compare(a, b, n_boot=5000, seed=1)
    assert r.verdict == "B better than A" and r.verdict in VERDICTS
    assert r.summary.startswith("B better than A") and "CI" in r.summary
    assert r.n_tasks == 40 and r.wins > r.losses
    assert r.ci_low > 0 and r.ci_high > r.ci_low
    assert r.p_value < 0.01 and r.wilcoxon_p is not None and r.wilcoxon_p < 0.01
    assert r.mean_diff == pytest.approx(r.mean_b - r.mean_a)
    assert r.win_rate == pytest.approx((r.wins + 0.5 * r.ties) / 40)
    assert r.wins + r.losses + r.ties == 40
    # reversing the roles flips the verdict
    rev = paired_compare(b, a, n_boot=5000, seed=1)
    assert rev.verdict == "B worse than A" and rev.ci_high < 0
    # reproducible
    again = paired_compare(a, b, n_boot=5000, seed=1)
    assert (again.ci_low, again.ci_high, again.p_value) == (r.ci_low, r.ci_high, r.p_value)


def test_paired_compare_identical_inputs():
    rng = np.random.default_rng(5)
    a = _rollout(rng, {f"t{i}": 0.5 for i in range(20)})
    r = paired_compare(a, {t: list(v) for t, v in a.items()})
    assert r.verdict == "no significant difference"
    assert r.p_value == pytest.approx(1.0)
    assert r.mean_diff == 0.0 and r.ties == 20 and r.wins == r.losses == 0
    assert r.win_rate == 0.5 and r.wilcoxon_p is None
    # Agresti-Min: 20 zeros plus 1/2 at +1 and -1 and 1 at 0 -> mean 0, var (1/22)/22
    half = sps.norm.ppf(0.975) * math.sqrt(1 / 22) / math.sqrt(22)
    assert (r.ci_low, r.ci_high) == pytest.approx((-half, half)) and r.ci_method == "agresti-min"


def test_paired_compare_task_alignment_and_counts():
    a = {"x": [1.0, 0.0], "y": [0.0], "z": [1.0], "only_a": [1.0], "empty": []}
    b = {"x": [1.0, 1.0], "y": [None], "z": [0.5], "only_b": [0.0], "empty": [1.0]}
    r = paired_compare(a, b, n_boot=2000)
    assert r.tasks == ["x", "y", "z"]
    assert r.diffs == pytest.approx({"x": 0.5, "y": 0.0, "z": -0.5})
    assert (r.wins, r.losses, r.ties) == (1, 1, 1)
    assert r.win_rate == pytest.approx(0.5)
    assert r.tasks_only_a == ["empty", "only_a"] and r.tasks_only_b == ["empty", "only_b"]
    # exact sign-flip distribution with 2 non-zero diffs of equal size: p = 1
    assert r.p_value == pytest.approx(1.0)
    assert r.verdict == "no significant difference"


def test_paired_compare_exact_sign_flip_p():
    # 8 tasks all +0.5: 2**8 = 256 <= n_boot -> exact; only the all-+ and all-- assignments
    # are as extreme as observed -> p = 2/256.
    a = {f"t{i}": [0.0, 0.0] for i in range(8)}
    b = {f"t{i}": [1.0, 0.0] for i in range(8)}
    r = paired_compare(a, b, n_boot=1000)
    assert r.p_value == pytest.approx(2 / 256)
    assert r.ci_low < 0.5 < r.ci_high  # never [0.5, 0.5]
    assert r.verdict == "B better than A"


def test_paired_compare_six_tasks_all_plus_one_has_a_real_interval():
    a = {f"t{i}": [0.0] for i in range(6)}
    b = {f"t{i}": [1.0] for i in range(6)}
    r = paired_compare(a, b)
    assert r.mean_diff == 1.0 and r.ci_high == 1.0 and r.ci_low < 0.5
    assert "[+1.000, +1.000]" not in r.summary


def test_paired_compare_exact_zero_sum_gives_p_one():
    # diffs +0.1, -0.3, +0.2 sum to 2.8e-17 in floating point: the observed statistic is 0
    a = {"a": [0.1], "b": [0.3], "c": [0.2]}
    b = {"a": [0.2], "b": [0.0], "c": [0.4]}
    r = paired_compare(a, b)
    assert sum(r.diffs.values()) != 0.0  # the residue is really there
    assert r.p_value == 1.0
    a = {f"t{i}": [v] for i, v in enumerate([0.1, 0.7, 0.3, 0.6, 0.2, 0.3])}
    b = {f"t{i}": [v] for i, v in enumerate([0.2, 0.4, 0.6, 0.5, 0.1, 0.4])}
    assert paired_compare(a, b).p_value == 1.0


def test_paired_compare_small_and_empty():
    r = paired_compare({}, {"x": [1.0]})
    assert r.n_tasks == 0 and r.mean_diff is None and r.p_value is None
    assert r.verdict == "no significant difference"
    r = paired_compare({"x": [0.0]}, {"x": [1.0]})
    assert r.n_tasks == 1 and r.ci_low < r.ci_high and r.p_value == pytest.approx(1.0)
    assert r.verdict == "no significant difference"


def test_mcnemar_hand_computed():
    # 8 A-fail/B-pass, 2 A-pass/B-fail, 5 both pass, 3 both fail.
    a = [False] * 8 + [True] * 2 + [True] * 5 + [False] * 3
    b = [True] * 8 + [False] * 2 + [True] * 5 + [False] * 3
    b01, b10, p = mcnemar(a, b)
    assert (b01, b10) == (8, 2)
    # p = 2 * P(X <= 2), X ~ Bin(10, 1/2) = 2 * (1 + 10 + 45) / 1024 = 112 / 1024
    assert p == pytest.approx(112 / 1024)
    assert mcnemar(b, a)[:2] == (2, 8) and mcnemar(b, a)[2] == pytest.approx(112 / 1024)


def test_mcnemar_edge_cases():
    assert mcnemar([], []) == (0, 0, 1.0)
    assert mcnemar([True, False], [True, False]) == (0, 0, 1.0)
    # one discordant pair: p = 1
    assert mcnemar([False], [True]) == (1, 0, 1.0)
    # 6 vs 0: p = 2 / 64
    assert mcnemar([False] * 6, [True] * 6)[2] == pytest.approx(2 / 64)
    with pytest.raises(ValueError):
        mcnemar([True], [])


# ----------------------------------------------------------------------------- properties: no zero width

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_unit = st.floats(0.0, 1.0, allow_nan=False)
_binary = st.sampled_from([0.0, 1.0])
_samples = st.one_of(st.lists(_unit, min_size=1, max_size=40), st.lists(_binary, min_size=1, max_size=40))
_conf = st.sampled_from([0.8, 0.9, 0.95, 0.99])


@settings(max_examples=300, deadline=None)
@given(_samples, _conf)
def test_stats_property_mean_and_group_intervals_never_zero_width(values, conf):
    lo, hi = mean_ci(values, confidence=conf)
    assert 0.0 <= lo < hi <= 1.0
    assert lo <= sum(values) / len(values) + 1e-12 and hi >= sum(values) / len(values) - 1e-12
    g = group_stats(values, confidence=conf)
    assert g.ci_high > g.ci_low
    plo, phi = wilson_ci(g.n_pass, g.n, conf)
    assert phi > plo
    for k, (a, b) in g.pass_at_k_ci.items():
        assert a <= g.pass_at_k[k] <= b
        assert g.pass_hat_k_ci[k][0] <= g.pass_hat_k[k] <= g.pass_hat_k_ci[k][1]
        # width (1-plo)^k - (1-phi)^k > 0; the stored limits are equal only below float resolution
        assert b > a or (1.0 - plo) ** k < 1e-15
    for k, (a, b) in g.pass_hat_k_ci.items():
        assert b > a or phi**k < 1e-15


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_samples, st.sampled_from("abcdefgh")), min_size=1, max_size=8))
def test_stats_property_macro_clustered_and_pass_k_over_tasks_never_zero_width(tasks):
    values = [v for vs, _ in tasks for v in vs]
    clusters = [c for vs, c in tasks for _ in vs]
    r = clustered_mean_ci(values, clusters)
    assert r.ci_high > r.ci_low and 0 < r.n_eff <= r.n
    means = [sum(vs) / len(vs) for vs, _ in tasks]
    _, lo, hi, _ = macro_stats(means)
    assert hi > lo
    pk = stats.pass_k_over_tasks([(len(vs), sum(v == 1.0 for v in vs)) for vs, _ in tasks])
    for name in ("pass_at_1", "pass_at_k", "pass_hat_k"):
        assert pk[f"{name}_high"] > pk[f"{name}_low"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_samples, _samples), min_size=1, max_size=10), st.sampled_from([0.01, 0.05, 0.1]))
def test_stats_property_paired_interval_never_zero_width(pairs, alpha):
    a = {f"t{i}": x for i, (x, _) in enumerate(pairs)}
    b = {f"t{i}": y for i, (_, y) in enumerate(pairs)}
    r = paired_compare(a, b, n_boot=200, alpha=alpha)
    assert r.ci_high > r.ci_low
    assert 0.0 < r.p_value <= 1.0
    if abs(sum(r.diffs.values())) <= 1e-9:
        assert r.p_value == 1.0  # an exactly-zero observed statistic is never significant


def test_stats_wilcoxon_equals_scipy():
    """paired.wilcoxon_p follows scipy.stats.wilcoxon's "auto" rules and numbers (scipy is only
    the oracle here: importing it costs more than half a compare's budget)."""
    from rollouts.report.paired import wilcoxon_p

    rng = np.random.default_rng(0)
    checked = 0
    for trial in range(300):
        n = int(rng.integers(6, 80))
        x = rng.normal(0.1, 1, n) if trial % 2 else rng.integers(-3, 4, n).astype(float) / 3
        x = x[x != 0]
        if x.size < 6:
            continue
        assert wilcoxon_p(x) == pytest.approx(float(sps.wilcoxon(x).pvalue), abs=1e-9), x
        checked += 1
    assert checked > 250


def test_stats_sign_flip_equals_scipy_permutation_test_when_exact():
    from rollouts.report.paired import sign_flip_p

    rng = np.random.default_rng(1)
    for _ in range(40):
        d = np.round(rng.normal(0.05, 0.3, int(rng.integers(2, 11))), 2)
        want = sps.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=10_000).pvalue
        got = sign_flip_p(d, 10_000, 0)
        assert got == pytest.approx(min(1.0, want), abs=1e-12) or abs(d.mean()) <= 1e-9


def test_stats_t_quantile_equals_scipy():
    for conf in (0.8, 0.9, 0.95, 0.99, 0.999):
        for df in [*range(1, 230), 500, 1000, 10_000, 1_000_000]:
            assert quantiles.t_quantile(conf, df) == pytest.approx(sps.t.ppf(0.5 + conf / 2, df), rel=1e-7)


def test_stats_summary_imports_neither_numpy_nor_scipy():
    import subprocess
    import sys

    code = (
        "import sys\nfrom rollouts.report.summary import summarize\n"
        "from rollouts.report.stats import mean_ci, clustered_mean_ci\n"
        "mean_ci([1.0, 5.0, 9.0]); clustered_mean_ci([1.0, 5.0, 2.0], ['a', 'b', 'b'])\n"
        "print('numpy' in sys.modules, 'scipy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
