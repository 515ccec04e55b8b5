"""Time the grading path guards on a diff of N symlinks + N files (issue 10: 16k + 16k made the old
diff guard quadratic: 74 s per pass). Prints seconds per guard for N = 2k, 4k, 8k, 16k and the
ratio to N = 2k (linear ⇒ ~2×, 4×, 8×).

- diff guard: :func:`rollouts.grading.pathguard.check_diff` (host ``git apply --numstat -z`` +
  ``--summary`` and the per-ancestor set check) on the diff git itself makes of such a workspace;
- link guard: :data:`rollouts.grading.pathguard.LINK_GUARD` (what runs in the grading sandbox)
  over the same workspace on this machine's filesystem;

Usage: python bench/bench_guard.py [--sizes 2048,4096,8192,16384] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rollouts.grading.pathguard import LINK_GUARD, check_diff  # noqa: E402


def make_workspace(root: Path, n: int) -> bytes:
    """A git repo with one base commit, then n symlinks + n files added; returns the diff."""
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "b",
           "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
    subprocess.run(["git", "init", "-q", str(root)], check=True, env=env)
    (root / "README").write_text("base\n")
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(root), "commit", "-qm", "base"], check=True, env=env)
    many = root / "many"
    many.mkdir()
    for i in range(n):
        os.symlink(f"f{i}", many / f"l{i}")
        (many / f"f{i}").write_text(f"{i}\n")
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True, env=env)
    return subprocess.run(["git", "-C", str(root), "diff", "--cached", "--binary", "--no-renames", "HEAD"],
                          check=True, env=env, capture_output=True).stdout


def timed(fn, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2048,4096,8192,16384")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-guard-") as tmp:
            ws = Path(tmp) / "ws"
            diff = make_workspace(ws, n)
            paths = check_diff(diff)
            assert len(paths) == 2 * n, (len(paths), n)
            t_diff = timed(lambda d=diff: check_diff(d), args.repeat)

            def link_guard(w=ws) -> None:
                r = subprocess.run([sys.executable, "-I", "-S", "-c", LINK_GUARD, str(w)], capture_output=True, text=True)
                assert r.returncode == 0 and r.stdout.startswith("ok"), r.stdout + r.stderr

            t_link = timed(link_guard, args.repeat)
            rows.append((n, len(diff), t_diff, t_link))
    base = rows[0]
    print(f"{'links+files':>12} {'diff MB':>8} {'diff guard s':>13} {'x':>6} {'link guard s':>13} {'x':>6}")
    for n, size, td, tl in rows:
        print(f"{n:>6}+{n:<5} {size / 1e6:8.2f} {td:13.3f} {td / base[2]:6.2f} {tl:13.3f} {tl / base[3]:6.2f}")
    print(f"(median of {args.repeat}; N ratio {sizes[-1] // sizes[0]}x -> time ratio shown as x; linear means x ≈ N ratio)")


if __name__ == "__main__":
    main()
