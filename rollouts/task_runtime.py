"""What a task's metadata asks of a run's sandbox, behind one seam so the run's life has no
per-format branches: preparing the sandbox (workspace or image state, the ``/logs`` folders, the
healthcheck), collecting what the agent left (``diff.patch``, ``repo_info.json``, the task's
``artifacts``), and stopping the agent before shared-mode grading.

Image state (``environment.state = "image"``, Harbor and Terminal-Bench tasks): the workdir comes
from the image (often ``/app``) and may be the task's own git repository, so the harness never
runs git *in* it. The starting state is snapshotted into a git dir outside the workdir
(:data:`SNAPSHOT_GIT_DIR`, ``git --git-dir=… --work-tree=<workdir>``); ``diff.patch`` is the
workdir against that snapshot. Trees above :data:`SNAPSHOT_MAX_BYTES` or
:data:`SNAPSHOT_MAX_FILES` are not snapshotted, and ``repo_info.json`` says so
(``snapshot: "skipped"`` with the measured size). Residual risk, documented: the snapshot lives in
the agent's sandbox, so an agent can falsify ``diff.patch`` (never the reward: shared grading
reads the live container, fresh grading applies the diff to a new container where a bogus diff
only hurts the agent).
"""

from __future__ import annotations

import json
import re
import shlex
import tempfile
import time
from pathlib import Path

from rollouts.errors import SandboxError
from rollouts.redact import redact
from rollouts.sandbox.base import Sandbox
from rollouts.store import atomic_write
from rollouts.workspace import GIT_ENV, collect_artifacts, redact_bytes, setup_workspace

SNAPSHOT_GIT_DIR = "/var/lib/rollouts/snapshot.git"
SNAPSHOT_MAX_BYTES = 64 * 1024 * 1024
SNAPSHOT_MAX_FILES = 20_000
DIFF_MAX_BYTES = 32 * 1024 * 1024
LOGS_DIRS = ("/logs/agent", "/logs/verifier", "/logs/artifacts")
ARTIFACTS_MAX_BYTES = 256 * 1024 * 1024
RESERVED_ARTIFACT_NAMES = {"diff.patch", "notes.md", "repo_info.json", "artifacts.json"}


class HealthcheckFailed(SandboxError):
    """The task's healthcheck never passed: the environment is not ready (infra, retried)."""


def prepare(sb: Sandbox, task, workdir: str, timeout: float, snapshot: bool = True) -> str:
    """Make the sandbox ready for the agent; returns the base (a commit id, or for image state
    the snapshot commit, ``""`` when the snapshot was skipped or ``snapshot`` is False).
    SandboxError on infra failure, HealthcheckFailed when the healthcheck never passes."""
    env = task.meta.environment
    if env.state == "workspace":
        base = setup_workspace(sb, task, workdir, timeout=timeout)
    else:
        base = _snapshot(sb, workdir, timeout) if snapshot else ""
    if env.logs_dirs:
        sb.exec(["mkdir", "-p", *LOGS_DIRS], timeout=30)
    if env.healthcheck is not None:
        run_healthcheck(sb, env.healthcheck, workdir)
    return base


def _snapshot(sb: Sandbox, workdir: str, timeout: float) -> str:
    """Commit the workdir's state into :data:`SNAPSHOT_GIT_DIR` (never into the workdir); returns
    the commit, or ``"skipped:<reason>"`` when git is missing or the tree is too large."""
    q, g = shlex.quote(workdir), shlex.quote(SNAPSHOT_GIT_DIR)
    git = "git -c core.fsmonitor=false -c core.hooksPath=/dev/null -c commit.gpgsign=false"
    script = (
        f"command -v git >/dev/null || {{ echo 'skip:no git in the image'; exit 0; }}; "
        f"[ -d {q} ] || mkdir -p {q}; "
        f"n=$(find {q} -xdev -path {q}/.git -prune -o -type f -print | head -n {SNAPSHOT_MAX_FILES + 1} | wc -l); "
        f"b=$(du -sb --exclude=.git {q} 2>/dev/null | cut -f1); "
        f"if [ \"$n\" -gt {SNAPSHOT_MAX_FILES} ] || [ \"${{b:-0}}\" -gt {SNAPSHOT_MAX_BYTES} ]; then "
        f"echo \"skip:workdir too large to snapshot ($n+ files, ${{b:-?}} bytes; caps {SNAPSHOT_MAX_FILES} files, "
        f"{SNAPSHOT_MAX_BYTES} bytes)\"; exit 0; fi; "
        f"set -e; rm -rf {g}; mkdir -p $(dirname {g}); export GIT_DIR={g} GIT_WORK_TREE={q}; "
        f"{git} init -q; {git} add -A . >/dev/null 2>&1 || true; "
        f"{git} commit -q --allow-empty --no-gpg-sign -m 'rollouts: start state'; echo \"ok:$({git} rev-parse HEAD)\""
    )
    r = sb.exec(script, timeout=timeout, cwd="/", env=GIT_ENV)
    last = (r.stdout.strip().splitlines() or [""])[-1]
    if r.exit_code != 0 or not last.startswith(("ok:", "skip:")):
        raise SandboxError(f"workdir snapshot failed (exit {r.exit_code}): {r.output.strip()[-500:]}")
    return last[3:] if last.startswith("ok:") else "skipped:" + last[5:]


def run_healthcheck(sb: Sandbox, hc, workdir: str) -> None:
    """Docker HEALTHCHECK semantics: during the start period failures are free (checked every
    ``start_interval_sec``); afterwards ``retries`` consecutive failures raise HealthcheckFailed."""
    t0 = time.monotonic()
    failures = 0
    while True:
        r = sb.exec(hc.command, timeout=hc.timeout_sec, cwd=workdir)
        if r.ok:
            return
        in_start = time.monotonic() - t0 < hc.start_period_sec
        if not in_start:
            failures += 1
            if failures >= hc.retries:
                raise HealthcheckFailed(f"healthcheck failed {failures} time(s): {hc.command}: {r.output[-300:]}")
        time.sleep(hc.start_interval_sec if in_start else hc.interval_sec)


def collect(sb: Sandbox, task, workdir: str, base: str, artifacts: Path, notes: str, secrets: list[str]) -> bytes:
    """Write ``diff.patch``, ``notes.md``, ``repo_info.json`` and the task's artifacts into
    ``artifacts``; returns the (unredacted) diff. SandboxError on infra failure."""
    if task.meta.environment.state == "workspace":
        diff = collect_artifacts(sb, workdir, base, artifacts, notes, secrets=secrets)
    else:
        diff = _collect_snapshot(sb, task, workdir, base, artifacts, notes, secrets)
    sources = [(a.source, a.destination) for a in task.meta.artifacts]
    if task.meta.environment.logs_dirs:
        sources.insert(0, ("/logs/artifacts", "."))
    if sources:
        collect_paths(sb, sources, artifacts, secrets)
    return diff


def _collect_snapshot(sb: Sandbox, task, workdir: str, base: str, artifacts: Path, notes: str,
                      secrets: list[str]) -> bytes:
    """diff.patch of the workdir against the start snapshot. A failed collection is recorded in
    repo_info.json; it fails the run only when grading needs the diff (fresh mode): VerifierError
    when no snapshot could be taken (too large, no git), GradingIntegrityError (an agent failure)
    when collecting from the agent's sandbox failed."""
    from rollouts.errors import GradingIntegrityError, OversizeDiffError, VerifierError
    from rollouts.workspace import collect_diff

    artifacts.mkdir(parents=True, exist_ok=True)
    atomic_write(artifacts / "notes.md", redact(notes or "", secrets))
    info: dict = {"schema_version": 1, "workdir": workdir, "snapshot_git_dir": SNAPSHOT_GIT_DIR,
                  "captured": "workdir vs its state at agent start (git dir outside the workdir)"}
    diff = b""
    error = None
    if not base or base.startswith("skipped:"):
        info.update(snapshot="skipped", reason=base[8:] or "not taken", captured="nothing (no snapshot)")
        if task.meta.tests.mode == "fresh":
            error = f"fresh grading needs the workdir diff, but no snapshot was taken ({info['reason']})"
    else:
        info.update(snapshot="taken", base_commit=base)
        try:
            c = collect_diff(sb, workdir, base, f"{SNAPSHOT_GIT_DIR}/objects", "the workdir diff", 300)
        except (OversizeDiffError, GradingIntegrityError) as e:  # recorded; fatal below in fresh mode only
            error = str(e)
        else:
            diff = c.diff
            info["diff_stats"] = c.stats()
    if error:
        info["error"] = error
    atomic_write(artifacts / "diff.patch", redact_bytes(diff, secrets))
    atomic_write(artifacts / "repo_info.json", redact(json.dumps(info, indent=2), secrets) + "\n")
    if error and task.meta.tests.mode == "fresh":
        if info.get("snapshot") == "skipped":  # the task's tree, not the agent: grading cannot happen
            raise VerifierError(error)
        raise GradingIntegrityError(error)
    return diff


def collect_paths(sb: Sandbox, sources: list[tuple[str, str | None]], artifacts: Path, secrets: list[str]) -> None:
    """Copy each sandbox path (file or directory) to ``artifacts/<destination or its name>`` and
    record what happened in ``artifacts/artifacts.json``. Missing paths are recorded, not errors;
    names clashing with the harness's own files are refused (recorded)."""
    probe = "; ".join(
        f"if [ -d {shlex.quote(s)} ]; then echo d; elif [ -f {shlex.quote(s)} ]; then echo f; else echo -; fi"
        for s, _ in sources
    )
    r = sb.exec(probe, timeout=30)
    kinds = r.stdout.split()
    record = []
    for (src, dest), kind in zip(sources, kinds, strict=False):
        rel = (dest or Path(src).name).strip("/") or "."
        entry = {"source": src, "destination": rel, "status": "collected"}
        if kind == "-":
            entry["status"] = "missing"
        elif rel.split("/")[0] in RESERVED_ARTIFACT_NAMES:
            entry["status"] = "refused: name reserved for the harness's own artifacts"
        else:
            target = artifacts / rel
            try:
                if kind == "d":
                    with tempfile.TemporaryDirectory(prefix="rollouts-art-") as tmp:
                        sb.get_dir(src, Path(tmp), max_bytes=ARTIFACTS_MAX_BYTES)
                        _redacted_copy(Path(tmp), target, secrets, skip_reserved=rel == ".")
                else:
                    data = sb.get_file(src, max_bytes=ARTIFACTS_MAX_BYTES)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write(target, redact_bytes(data, secrets))
            except (SandboxError, FileNotFoundError, OSError) as e:
                entry["status"] = f"error: {str(e)[:300]}"
        record.append(entry)
    atomic_write(artifacts / "artifacts.json", json.dumps({"schema_version": 1, "artifacts": record}, indent=2) + "\n")


def _redacted_copy(src: Path, dest: Path, secrets: list[str], skip_reserved: bool) -> None:
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if skip_reserved and rel.parts and rel.parts[0] in RESERVED_ARTIFACT_NAMES:
            continue
        t = dest / rel
        if p.is_symlink():
            continue  # a link out of the sandbox means nothing on the host
        if p.is_dir():
            t.mkdir(parents=True, exist_ok=True)
        elif p.is_file():
            t.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(t, redact_bytes(p.read_bytes(), secrets))


# What a test.sh prints when it needed the network and had none (DNS, routing, TLS interception).
_NO_NETWORK = re.compile(
    r"(Could not resolve host|Temporary failure in name resolution|Name or service not known|"
    r"Network is unreachable|No route to host|Failed to connect to|Connection refused.*(https?://|:443)|"
    r"certificate verify failed|self[- ]signed certificate in certificate chain|SSL certificate problem|"
    r"Failed to download|error sending request for url)", re.I)


def explain_verifier_error(task, run_dir: Path, error: str | None) -> str | None:
    """``error``, prefixed with "the verifier needed the network" when the verifier's log
    (``logs/eval.log``) shows it failed to reach the network (a Terminal-Bench 2 ``test.sh``
    downloading uv and pytest on a machine without internet): the run stays a verifier error, and
    the message says why instead of a bare "no reward file"."""
    log = run_dir / "logs" / "eval.log"
    try:
        text = log.read_text(errors="replace")[-200_000:]
    except OSError:
        return error
    m = _NO_NETWORK.search(text)
    if not m:
        return error
    line = next((ln.strip() for ln in text.splitlines() if m.group(0) in ln), m.group(0))[:200]
    net = task.meta.tests.network if task.meta.tests.network is not None else task.meta.network
    where = "with network access that reaches no outside host here" if net else "without network access"
    return f"the verifier needed the network (it ran {where}: {line!r}); {error or ''}".rstrip("; ")
