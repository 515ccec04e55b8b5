"""Two-sided quantiles of the normal and Student t distributions for the report's intervals,
without SciPy (importing it costs more than half of a summary's time budget).

Sources: ``statistics.NormalDist`` (normal); Abramowitz & Stegun 1964, Handbook of Mathematical
Functions, 26.7.3-26.7.5 (Student t). ``tests/test_stats.py`` checks them against SciPy.
"""

from __future__ import annotations

import functools
import math
from statistics import NormalDist


@functools.lru_cache(maxsize=64)
def normal_quantile(confidence: float) -> float:
    """Two-sided standard normal quantile z_{(1+confidence)/2} for ``confidence`` in (0, 1)
    (``statistics.NormalDist``); e.g. 0.95 -> 1.95996. ValueError outside (0, 1)."""
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _t_central(theta: float, df: int) -> float:
    """P(|T| < t) for Student t with integer ``df`` at ``theta = atan(t / sqrt(df))``: the finite
    series of Abramowitz & Stegun 1964, 26.7.3 (odd df) and 26.7.4 (even df)."""
    c2, sin = math.cos(theta) ** 2, math.sin(theta)
    if df % 2:  # odd: (2/pi) * (theta + sin * cos * (1 + 2/3 c^2 + 2*4/(3*5) c^4 + ...))
        term, acc = 1.0, 0.0
        for j in range(1, (df - 1) // 2 + 1):
            acc += term
            term *= c2 * (2 * j) / (2 * j + 1)
        return 2.0 / math.pi * (theta + (sin * math.cos(theta) * acc if df > 1 else 0.0))
    term, acc = 1.0, 0.0  # even: sin * (1 + 1/2 c^2 + 1*3/(2*4) c^4 + ...)
    for j in range(1, df // 2 + 1):
        acc += term
        term *= c2 * (2 * j - 1) / (2 * j)
    return sin * acc


@functools.lru_cache(maxsize=256)
def t_quantile(confidence: float, df: int) -> float:
    """Two-sided Student t quantile t_{df, (1+confidence)/2}, without SciPy (its import costs more
    than half of a summary's budget): bisection on the exact central probability (A&S 26.7.3-4)
    for df <= 200, the Cornish-Fisher expansion in 1/df (A&S 26.7.5, error O(df^-4)) beyond.
    Agrees with ``scipy.stats.t.ppf`` to 1e-7 relative (tests/test_stats.py)."""
    if df > 200:
        z = normal_quantile(confidence)
        z3, z5, z7 = z**3, z**5, z**7
        return (
            z
            + (z3 + z) / (4 * df)
            + (5 * z5 + 16 * z3 + 3 * z) / (96 * df**2)
            + (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * df**3)
        )
    lo, hi = 0.0, math.pi / 2
    for _ in range(100):
        mid = (lo + hi) / 2
        if _t_central(mid, df) < confidence:
            lo = mid
        else:
            hi = mid
    return math.sqrt(df) * math.tan((lo + hi) / 2)
