"""Shared fixtures. Integration tests use the real Docker engine; at the end of the session no
container created by the tests (label rollouts.tool=rollouts, this process as harness or a test
subprocess) may be left."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, str(ROOT / "scripts" / "eval_rollouts.py")]

# Task fixtures carry their own hidden tests (test_*.py run inside sandboxes), never by this suite.
collect_ignore_glob = ["fixtures/*", "redteam/*"]


def _docker_ok() -> bool:
    try:
        import docker

        docker.from_env(timeout=10).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def docker_client():
    """A pinged docker-py client; the test is skipped (with the reason shown) without a daemon."""
    if not _docker_ok():
        pytest.skip("Docker daemon not reachable")
    import docker

    return docker.from_env(timeout=120)


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    """The locally built base image (mmdebstrap + docker import; ~1 min the first time)."""
    from rollouts.images import ensure_base_image

    return ensure_base_image(docker_client)


@pytest.fixture
def run_cli(tmp_path):
    """Run the real CLI in a subprocess from the repo root with ``--data-dir`` in tmp."""

    def _run(*args: str, data_dir: Path | None = None, env: dict | None = None, timeout: float = 600):
        import os

        e = {**os.environ, **(env or {})}
        return subprocess.run(
            [*CLI, "--data-dir", str(data_dir or tmp_path / "data"), *args],
            cwd=ROOT, capture_output=True, text=True, env=e, timeout=timeout,
        )

    return _run


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` run only with ROLLOUTS_SLOW=1 (their figures live in bench/ too)."""
    import os

    if os.environ.get("ROLLOUTS_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow end-to-end test: set ROLLOUTS_SLOW=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_sessionfinish(session, exitstatus):
    """Fail loudly if the suite leaked containers of finished rollouts."""
    if not _docker_ok():
        return
    import os

    out = subprocess.run(
        ["docker", "ps", "-a", "--filter", "label=rollouts.tool=rollouts", "--format", "{{.ID}} {{.Label \"rollouts.pid\"}}"],
        capture_output=True, text=True,
    ).stdout.split("\n")
    leaked = []
    for line in filter(None, out):
        cid, _, pid = line.partition(" ")
        if pid and pid.isdigit() and not Path(f"/proc/{pid}").exists() or pid == str(os.getpid()):
            leaked.append(cid)
    if leaked:
        subprocess.run(["docker", "rm", "-f", *leaked], capture_output=True)
        print(f"\nERROR: {len(leaked)} container(s) leaked by the test session were removed: {leaked}", file=sys.stderr)
        session.exitstatus = 1
