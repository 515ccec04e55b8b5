"""Time ``group_stats`` over a synthetic 10,000-run rollout (500 tasks x 20 runs).

Usage: ``.venv/bin/python bench/bench_stats.py [--repeat N]``

The synthetic rollout mixes the reward shapes seen in practice: 70% of tasks have binary
rewards (Wilson CI), 20% partial-credit rewards in [0, 1] (Wilson at the fractional count), 10%
binary with timeouts (``None`` rewards) and a few infrastructure errors. Prints the best-of-N wall time
in seconds for computing every group's statistics, plus (for reference) the macro mean and
the clustered standard error over all runs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rollouts.report.stats import clustered_mean_ci, group_stats, macro_stats

N_TASKS = 500
RUNS_PER_TASK = 20


def synthetic_rollout(seed: int = 0) -> list[tuple[str, list[float | None], int]]:
    """Return ``[(task_id, rewards, infra_errors), ...]`` for 500 tasks x 20 runs."""
    rng = np.random.default_rng(seed)
    groups: list[tuple[str, list[float | None], int]] = []
    for t in range(N_TASKS):
        p = float(rng.beta(1.2, 1.5))
        kind = rng.random()
        if kind < 0.7:
            rewards: list[float | None] = (rng.random(RUNS_PER_TASK) < p).astype(float).tolist()
            infra = 0
        elif kind < 0.9:
            rewards = np.clip(rng.normal(p, 0.2, RUNS_PER_TASK), 0.0, 1.0).round(3).tolist()
            infra = 0
        else:
            raw = (rng.random(RUNS_PER_TASK) < p).astype(float).tolist()
            rewards = [None if rng.random() < 0.15 else r for r in raw]
            infra = int(rng.integers(0, 3))
        groups.append((f"task-{t:03d}", rewards, infra))
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timing repetitions (best is reported)")
    args = parser.parse_args()

    groups = synthetic_rollout()
    n_runs = sum(len(r) for _, r, _ in groups)

    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        results = [group_stats(rewards, infra_errors=infra) for _, rewards, infra in groups]
        times.append(time.perf_counter() - t0)

    methods: dict[str, int] = {}
    for g in results:
        methods[str(g.ci_method)] = methods.get(str(g.ci_method), 0) + 1
    mean, lo, hi, how = macro_stats([g.mean for g in results if g.mean is not None])
    flat = [(task, 0.0 if r is None else r) for task, rewards, _ in groups for r in rewards]
    cl = clustered_mean_ci([r for _, r in flat], [t for t, _ in flat])

    print(f"runs={n_runs} groups={len(groups)} ci_methods={methods}")
    print(f"macro mean={mean:.4f} CI=[{lo:.4f}, {hi:.4f}] ({how}); clustered SE={cl.se:.4f}")
    print(f"group_stats total: best {min(times):.4f} s, first (cold cache) {times[0]:.4f} s")


if __name__ == "__main__":
    main()
