"""pass@k and pass^k estimators (pure Python; re-exported by :mod:`rollouts.report.stats`).

* Chen et al. 2021, "Evaluating Large Language Models Trained on Code", arXiv:2107.03374:
  unbiased pass@k ``1 - C(n-c, k) / C(n, k)`` and its numerically stable product form (Fig. 3).
* Yao et al. 2024, "tau-bench", arXiv:2406.12045: pass^k ``C(c, k) / C(n, k)``.
"""

from __future__ import annotations

import math


def _check_counts(n: int, c: int, k: int) -> None:
    if n < 0 or c < 0 or c > n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def pass_at_k(n: int, c: int, k: int) -> float | None:
    """Unbiased pass@k ``1 - C(n-c, k) / C(n, k)`` (Chen et al. 2021, arXiv:2107.03374 eq. 1),
    evaluated as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)`` (their Fig. 3). ``n`` runs, ``c`` passed.

    ``k > n`` -> ``None``; ``n - c < k`` -> 1.0; ``c == 0`` -> 0.0. ``ValueError`` for ``k < 1``
    or counts outside ``0 <= c <= n``."""
    _check_counts(n, c, k)
    if k > n:
        return None
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def pass_hat_k(n: int, c: int, k: int) -> float | None:
    """pass^k ``C(c, k) / C(n, k)`` (Yao et al. 2024, arXiv:2406.12045 sec. 3): k runs drawn
    without replacement all pass. ``k > n`` -> ``None``; ``c < k`` -> 0.0. ``ValueError`` as
    :func:`pass_at_k`."""
    _check_counts(n, c, k)
    if k > n:
        return None
    if c < k:
        return 0.0
    return math.prod((c - i) / (n - i) for i in range(k))


def _cumprod(factors) -> list[float]:
    out, acc = [], 1.0
    for f in factors:
        acc *= min(1.0, max(0.0, f))
        out.append(acc)
    return out


def pass_at_k_curve(n: int, c: int) -> list[float]:
    """pass@k for k = 1..n (length n, element k-1), one cumulative product of ``(n-c-i)/(n-i)``
    clipped at 0 (Chen et al. 2021)."""
    if n < 0 or c < 0 or c > n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    return [1.0 - f for f in _cumprod((n - c - i) / (n - i) for i in range(n))]


def pass_hat_k_curve(n: int, c: int) -> list[float]:
    """pass^k for k = 1..n (length n), cumulative product of ``(c-i)/(n-i)`` (Yao et al. 2024)."""
    if n < 0 or c < 0 or c > n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    return _cumprod((c - i) / (n - i) for i in range(n))
