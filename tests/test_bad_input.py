"""Bad input: malformed configs and task dirs give ONE clear message and exit 2, never a traceback.

Every case runs the real CLI in a subprocess (``scripts/eval_rollouts.py check CFG``; a sample
also with ``run``) with ``--data-dir`` in a temp dir, and asserts: exit code 2, exactly one error
line on stderr naming the offending file and the field or cause, no "Traceback", and nothing
written under the data dir. Cases are hand-written (``CASES``, one per malformation) plus
hypothesis-generated configs and ``tb_meta.json`` files (wrong types, out-of-range numbers,
unknown keys, garbage bytes). Also: a missing Docker daemon is exit 3, and binary command output
in a Docker sandbox is decoded safely.

As the tests run as root, "unreadable" files are made so by dropping CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH with ``setpriv`` (chmod 000 alone does not stop root).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollouts.config import load_config
from rollouts.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "eval_rollouts.py"
TASK_SRC = ROOT / "data" / "tasks" / "prepared" / "shell_hello_file"
SETPRIV = shutil.which("setpriv")
DROP_READ = [SETPRIV or "setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-all"]


# --------------------------------------------------------------------------- helpers
def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ROLLOUTS_DATA_DIR", "SANDBOX_BACKEND", "ROLLOUTS_DEBUG") and not k.startswith("PYTEST_")
    }
    env.update(extra)
    return env


def cli(
    args: list[str], data_dir: Path, prefix: list[str] | None = None, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess:
    argv = [*(prefix or []), sys.executable, str(SCRIPT), "--data-dir", str(data_dir), *args]
    return subprocess.run(
        argv, cwd=ROOT, env=_env(**env), capture_output=True, text=True, errors="replace", timeout=timeout
    )


def assert_clean_failure(
    r: subprocess.CompletedProcess, data_dir: Path, expect: tuple[str, ...], code: int = 2
) -> None:
    """Exit ``code``, one error line naming every string of ``expect``, no traceback, no files."""
    report = f"exit {r.returncode}\n--- stderr\n{r.stderr}\n--- stdout\n{r.stdout[-2000:]}"
    assert "Traceback" not in r.stderr + r.stdout, report
    assert r.returncode == code, report
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [
        ln for ln in lines if re.search(r"(config error|environment not ready|internal error|Error):", ln)
    ]
    assert len(errors) == 1, report
    for s in expect:  # "a|b": either
        assert any(alt.lower() in errors[0].lower() for alt in s.split("|")), (
            f"{s!r} not in the error line\n{report}"
        )
    assert not data_dir.exists() or not any(data_dir.rglob("*")), (
        f"files written under the data dir: {list(data_dir.rglob('*'))[:10]}"
    )


def make_task(dest: Path) -> Path:
    """A valid task (a copy of shell_hello_file) at ``dest``."""
    shutil.copytree(TASK_SRC, dest, symlinks=True)
    return dest


def meta_of(task: Path) -> dict:
    return json.loads((task / "tb_meta.json").read_text())


def write_meta(task: Path, meta: dict) -> None:
    (task / "tb_meta.json").write_text(json.dumps(meta))


def write_config(path: Path, body: str, task: Path) -> Path:
    path.write_text(body.replace("{task}", str(task)))
    return path


VALID = 'name = "bad_input"\n[[tasks]]\nprepared_dir = "{task}"\nagent = "oracle"\n'


# --------------------------------------------------------------------------- hand-written cases
@dataclass
class Ctx:
    tmp: Path
    task: Path
    cfg: Path

    def config(self, body: str) -> Path:
        return write_config(self.cfg, body.replace("{tmp}", str(self.tmp)), self.task)

    def meta(self, **changes) -> None:
        m = meta_of(self.task)
        for k, v in changes.items():
            node = m
            *parents, last = k.split("__")
            for p in parents:
                node = node.setdefault(p, {})
            node[last] = v
        write_meta(self.task, m)


@dataclass
class Case:
    id: str
    build: Callable[[Ctx], object]  # mutates the valid task/config; may return a config path
    expect: tuple[str, ...]  # substrings of the error line: the file (a placeholder) + field/cause
    prefix: tuple[str, ...] = ()  # argv prefix (e.g. setpriv) for the CLI
    env: tuple[tuple[str, str], ...] = ()


def _fifo(c: Ctx, path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def _unreadable(path: Path) -> None:
    os.chmod(path, 0)


def _deep(n: int = 50_000) -> str:
    return "[" * n


CASES: list[Case] = [
    # --- the config file itself
    Case("config-missing", lambda c: c.tmp / "nope.toml", ("nope.toml", "not found")),
    Case("config-is-directory", lambda c: c.tmp, ("{tmp}", "directory")),
    Case("config-empty", lambda c: c.config(""), ("{cfg}", "empty")),
    Case("config-whitespace-only", lambda c: c.config("\n  \n\t\n"), ("{cfg}", "empty")),
    Case(
        "config-malformed-toml",
        lambda c: c.config('name = "x"\n[[tasks]\nprepared_dir = "{task}"\n'),
        ("{cfg}", "invalid TOML"),
    ),
    Case(
        "config-duplicate-key",
        lambda c: c.config('name = "a"\nname = "b"\n' + VALID.split("\n", 1)[1]),
        ("{cfg}", "invalid TOML"),
    ),
    Case("config-not-utf8", lambda c: c.cfg.write_bytes(b'name = "caf\xe9"\n'), ("{cfg}", "UTF-8")),
    Case("config-binary-junk", lambda c: c.cfg.write_bytes(bytes(range(256)) * 4), ("{cfg}", "UTF-8")),
    Case("config-nested-too-deeply", lambda c: c.config("a = " + _deep()), ("{cfg}", "nested too deeply")),
    Case("config-is-fifo", lambda c: _fifo(c, c.cfg), ("{cfg}", "regular")),
    Case(
        "config-too-large",
        lambda c: c.cfg.write_bytes(b"# " + b"x" * (5 * 1024 * 1024) + b"\n"),
        ("{cfg}", "too large"),
    ),
    Case(
        "config-unreadable",
        lambda c: _unreadable(c.config(VALID)),
        ("{cfg}", "permission denied|not readable"),
        prefix=tuple(DROP_READ),
    ),
    Case(
        "name-missing",
        lambda c: c.config(VALID.replace('name = "bad_input"', "")),
        ("{cfg}", "name", "missing"),
    ),
    Case("name-with-slash", lambda c: c.config(VALID.replace("bad_input", "a/b")), ("{cfg}", "name")),
    Case("name-dotdot", lambda c: c.config(VALID.replace("bad_input", "..")), ("{cfg}", "name")),
    Case("name-wrong-type", lambda c: c.config(VALID.replace('"bad_input"', "42")), ("{cfg}", "name")),
    Case(
        "unknown-top-level-key",
        lambda c: c.config("paralel = 2\n" + VALID),
        ("{cfg}", "paralel", "unknown key"),
    ),
    Case(
        "unknown-key-in-tasks",
        lambda c: c.config(VALID + "rollout = 3\n"),
        ("{cfg}", "tasks[0].rollout", "unknown key"),
    ),
    Case(
        "unknown-key-in-defaults",
        lambda c: c.config(VALID.replace("[[tasks]]", "[defaults]\nagnet = 'x'\n[[tasks]]")),
        ("{cfg}", "defaults.agnet", "unknown key"),
    ),
    Case(
        "unknown-key-in-resources",
        lambda c: c.config(VALID + "resources = { gpus = 1 }\n"),
        ("{cfg}", "tasks[0].resources.gpus", "unknown key"),
    ),
    Case("tasks-missing", lambda c: c.config('name = "x"\n'), ("{cfg}", "tasks", "missing")),
    Case("tasks-empty", lambda c: c.config('name = "x"\ntasks = []\n'), ("{cfg}", "tasks")),
    Case(
        "tasks-is-a-table",
        lambda c: c.config('name = "x"\n[tasks]\nprepared_dir = "{task}"\n'),
        ("{cfg}", "tasks"),
    ),
    Case("rollouts-zero", lambda c: c.config(VALID + "rollouts = 0\n"), ("{cfg}", "tasks[0].rollouts")),
    Case("rollouts-negative", lambda c: c.config(VALID + "rollouts = -3\n"), ("{cfg}", "tasks[0].rollouts")),
    Case(
        "rollouts-huge",
        lambda c: c.config(VALID + "rollouts = 99999999999999999999999\n"),
        ("{cfg}", "tasks[0].rollouts"),
    ),
    Case("rollouts-string", lambda c: c.config(VALID + 'rollouts = "3"\n'), ("{cfg}", "tasks[0].rollouts")),
    Case("rollouts-float", lambda c: c.config(VALID + "rollouts = 2.5\n"), ("{cfg}", "tasks[0].rollouts")),
    Case("rollouts-bool", lambda c: c.config(VALID + "rollouts = true\n"), ("{cfg}", "tasks[0].rollouts")),
    Case(
        "too-many-runs",
        lambda c: c.config('name = "x"\n[defaults]\nrollouts = 10000\n' + VALID.split("\n", 1)[1] * 11),
        ("{cfg}", "runs in total"),
    ),
    Case("parallel-zero", lambda c: c.config("parallel = 0\n" + VALID), ("{cfg}", "parallel")),
    Case("parallel-huge-float", lambda c: c.config("parallel = 1e9\n" + VALID), ("{cfg}", "parallel")),
    Case("parallel-inf", lambda c: c.config("parallel = inf\n" + VALID), ("{cfg}", "parallel")),
    Case("max-retries-negative", lambda c: c.config("max_retries = -1\n" + VALID), ("{cfg}", "max_retries")),
    Case("cpus-zero", lambda c: c.config(VALID + "resources = { cpus = 0 }\n"), ("{cfg}", "resources.cpus")),
    Case("cpus-nan", lambda c: c.config(VALID + "resources = { cpus = nan }\n"), ("{cfg}", "resources.cpus")),
    Case(
        "memory-tiny", lambda c: c.config(VALID + "resources = { memory_mb = 1 }\n"), ("{cfg}", "memory_mb")
    ),
    Case(
        "pids-huge", lambda c: c.config(VALID + "resources = { pids = 1000000000000 }\n"), ("{cfg}", "pids")
    ),
    Case(
        "apply-overrides-string",
        lambda c: c.config(VALID + 'apply_overrides = "yes"\n'),
        ("{cfg}", "apply_overrides"),
    ),
    Case(
        "timeout-sec-non-numeric",
        lambda c: c.config(VALID + 'environment_variables = { TIMEOUT_SEC = "soon" }\n'),
        ("{cfg}", "TIMEOUT_SEC", "soon"),
    ),
    Case(
        "timeout-sec-negative",
        lambda c: c.config(VALID + 'environment_variables = { TIMEOUT_SEC = "-5" }\n'),
        ("{cfg}", "TIMEOUT_SEC"),
    ),
    Case(
        "timeout-sec-nan",
        lambda c: c.config(VALID + 'environment_variables = { TIMEOUT_SEC = "nan" }\n'),
        ("{cfg}", "TIMEOUT_SEC"),
    ),
    Case(
        "timeout-sec-inf",
        lambda c: c.config(VALID + 'environment_variables = { TIMEOUT_SEC = "inf" }\n'),
        ("{cfg}", "TIMEOUT_SEC"),
    ),
    Case(
        "timeout-sec-huge",
        lambda c: c.config(VALID + 'environment_variables = { TIMEOUT_SEC = "1e300" }\n'),
        ("{cfg}", "TIMEOUT_SEC"),
    ),
    Case(
        "timeout-sec-not-a-string",
        lambda c: c.config(VALID + "environment_variables = { TIMEOUT_SEC = 30 }\n"),
        ("{cfg}", "environment_variables.TIMEOUT_SEC"),
    ),
    Case(
        "env-var-bad-name",
        lambda c: c.config(VALID + 'environment_variables = { "1BAD" = "x" }\n'),
        ("{cfg}", "environment_variables", "1BAD"),
    ),
    Case(
        "env-var-nul-value",
        lambda c: c.config(VALID + 'environment_variables = { GOOD = "a\\u0000b" }\n'),
        ("{cfg}", "environment_variables", "NUL"),
    ),
    Case(
        "unknown-agent",
        lambda c: c.config(VALID.replace('"oracle"', '"wizard"')),
        ("{cfg}", "tasks[0].agent", "wizard"),
    ),
    Case(
        "shell-agent-without-model",
        lambda c: c.config(VALID.replace('"oracle"', '"shell"')),
        ("{cfg}", "tasks[0].model"),
    ),
    Case(
        "backend-unknown",
        lambda c: c.config(VALID + 'backend = "kubernetes"\n'),
        ("{cfg}", "tasks[0].backend"),
    ),
    Case(
        "backend-env-unknown",
        lambda c: c.config(VALID),
        ("SANDBOX_BACKEND", "k8s"),
        env=(("SANDBOX_BACKEND", "k8s"),),
    ),
    Case(
        "pricing-incomplete",
        lambda c: c.config(VALID.replace("[[tasks]]", "[pricing]\nm = { input = 1.0 }\n[[tasks]]")),
        ("{cfg}", "pricing.m.output"),
    ),
    Case(
        "pricing-negative",
        lambda c: c.config(
            VALID.replace("[[tasks]]", "[pricing]\nm = { input = -1.0, output = 1.0 }\n[[tasks]]")
        ),
        ("{cfg}", "pricing.m.input"),
    ),
    Case(
        "prepared-dir-missing-key",
        lambda c: c.config('name = "x"\n[[tasks]]\nagent = "oracle"\n'),
        ("{cfg}", "tasks[0].prepared_dir", "missing"),
    ),
    Case(
        "prepared-dir-empty-string",
        lambda c: c.config(VALID.replace('"{task}"', '""')),
        ("{cfg}", "tasks[0].prepared_dir"),
    ),
    Case(
        "prepared-dir-not-found",
        lambda c: c.config(VALID.replace("{task}", "{task}/nope")),
        ("{cfg}", "tasks[0].prepared_dir", "not found"),
    ),
    Case(
        "prepared-dir-is-a-file",
        lambda c: c.config(VALID.replace("{task}", "{task}/instruction.md")),
        ("{cfg}", "tasks[0].prepared_dir", "not a directory"),
    ),
    Case(
        "overrides-file-missing",
        lambda c: c.config(VALID + 'overrides = "{task}/nope.json"\n'),
        ("{cfg}", "tasks[0].overrides", "not found"),
    ),
    Case(
        "apply-overrides-without-file",
        lambda c: c.config(VALID + "apply_overrides = true\n"),
        ("{cfg}", "apply_overrides", "overrides.json"),
    ),
    Case(
        "data-dir-is-a-file",
        lambda c: (c.tmp / "datafile").write_text("x") and c.config(VALID),
        ("--data-dir",),
    ),
    # --- tb_meta.json
    Case("meta-missing", lambda c: (c.task / "tb_meta.json").unlink(), ("{task}", "tb_meta.json")),
    Case("meta-empty", lambda c: (c.task / "tb_meta.json").write_text(""), ("{meta}", "empty")),
    Case(
        "meta-malformed-json",
        lambda c: (c.task / "tb_meta.json").write_text('{"name": "x",'),
        ("{meta}", "invalid JSON"),
    ),
    Case(
        "meta-not-utf8",
        lambda c: (c.task / "tb_meta.json").write_bytes(b'{"name": "\xff"}'),
        ("{meta}", "UTF-8"),
    ),
    Case(
        "meta-is-a-list", lambda c: (c.task / "tb_meta.json").write_text("[1, 2]"), ("{meta}", "JSON object")
    ),
    Case(
        "meta-nan",
        lambda c: (c.task / "tb_meta.json").write_text('{"schema_version": NaN}'),
        ("{meta}", "NaN"),
    ),
    Case(
        "meta-nested-too-deeply",
        lambda c: (c.task / "tb_meta.json").write_text(_deep()),
        ("{meta}", "nested too deeply"),
    ),
    Case(
        "meta-is-a-directory",
        lambda c: ((c.task / "tb_meta.json").unlink(), (c.task / "tb_meta.json").mkdir()),
        ("{meta}", "directory"),
    ),
    Case("meta-is-fifo", lambda c: _fifo(c, c.task / "tb_meta.json"), ("{meta}", "regular")),
    Case(
        "meta-unreadable",
        lambda c: _unreadable(c.task / "tb_meta.json"),
        ("{meta}", "permission denied"),
        prefix=tuple(DROP_READ),
    ),
    Case(
        "meta-symlink-outside",
        lambda c: ((c.task / "tb_meta.json").unlink(), (c.task / "tb_meta.json").symlink_to("/etc/hostname")),
        ("{meta}", "outside the task dir"),
    ),
    Case(
        "meta-symlink-loop",
        lambda c: (
            (c.task / "tb_meta.json").unlink(),
            (c.task / "tb_meta.json").symlink_to(c.task / "tb_meta.json"),
        ),
        ("{meta}", "symlink loop"),
    ),
    Case(
        "meta-unknown-top-level-key",
        lambda c: c.meta(timeout_sec=5),
        ("{meta}", "timeout_sec", "unknown key"),
    ),
    Case(
        "meta-unknown-nested-key",
        lambda c: c.meta(tests__runner="pytest"),
        ("{meta}", "tests.runner", "unknown key"),
    ),
    Case(
        "meta-unknown-nested-key-2",
        lambda c: c.meta(timeouts__agent_minutes=5),
        ("{meta}", "timeouts.agent_minutes", "unknown key"),
    ),
    Case("meta-schema-version-2", lambda c: c.meta(schema_version=2), ("{meta}", "schema_version")),
    Case("meta-schema-version-true", lambda c: c.meta(schema_version=True), ("{meta}", "schema_version")),
    Case(
        "meta-name-missing",
        lambda c: write_meta(c.task, {k: v for k, v in meta_of(c.task).items() if k != "name"}),
        ("{meta}", "name", "missing"),
    ),
    Case(
        "meta-agent-sec-string", lambda c: c.meta(timeouts__agent_sec="300"), ("{meta}", "timeouts.agent_sec")
    ),
    Case("meta-agent-sec-zero", lambda c: c.meta(timeouts__agent_sec=0), ("{meta}", "timeouts.agent_sec")),
    Case(
        "meta-verifier-sec-huge",
        lambda c: c.meta(timeouts__verifier_sec=1e300),
        ("{meta}", "timeouts.verifier_sec"),
    ),
    Case(
        "meta-memory-negative", lambda c: c.meta(resources__memory_mb=-512), ("{meta}", "resources.memory_mb")
    ),
    Case("meta-cpus-string", lambda c: c.meta(resources__cpus="1"), ("{meta}", "resources.cpus")),
    Case(
        "meta-workdir-relative",
        lambda c: c.meta(environment__workdir="workspace"),
        ("{meta}", "environment.workdir"),
    ),
    Case(
        "meta-workdir-is-tests",
        lambda c: c.meta(environment__workdir="/tests"),
        ("{meta}", "environment.workdir", "/tests"),
    ),
    Case(
        "meta-workdir-dotdot",
        lambda c: c.meta(environment__workdir="/workspace/../etc"),
        ("{meta}", "environment.workdir"),
    ),
    Case("meta-mode-unknown", lambda c: c.meta(tests__mode="both"), ("{meta}", "tests.mode")),
    Case("meta-command-empty", lambda c: c.meta(tests__command="  "), ("{meta}", "tests.command")),
    Case("meta-network-string", lambda c: c.meta(network="yes"), ("{meta}", "network")),
    Case(
        "meta-env-bad-name",
        lambda c: c.meta(environment_variables={"A B": "x"}),
        ("{meta}", "environment_variables"),
    ),
    Case(
        "meta-env-timeout-non-numeric",
        lambda c: c.meta(environment_variables={"TIMEOUT_SEC": "abc"}),
        ("{meta}", "TIMEOUT_SEC"),
    ),
    Case("meta-metadata-not-object", lambda c: c.meta(metadata=[1]), ("{meta}", "metadata")),
    # --- files tb_meta.json names
    Case(
        "instruction-missing",
        lambda c: (c.task / "instruction.md").unlink(),
        ("{meta}", "instruction", "not found"),
    ),
    Case(
        "instruction-empty",
        lambda c: (c.task / "instruction.md").write_text("  \n"),
        ("instruction.md", "empty"),
    ),
    Case(
        "instruction-not-utf8",
        lambda c: (c.task / "instruction.md").write_bytes(b"\xff\xfe\x00bad"),
        ("instruction.md", "UTF-8"),
    ),
    Case(
        "instruction-unreadable",
        lambda c: _unreadable(c.task / "instruction.md"),
        ("instruction.md", "permission denied"),
        prefix=tuple(DROP_READ),
    ),
    Case(
        "instruction-escapes-dotdot",
        lambda c: c.meta(instruction="../../../../etc/hostname"),
        ("{meta}", "instruction", "escapes"),
    ),
    Case(
        "instruction-absolute",
        lambda c: c.meta(instruction="/etc/hostname"),
        ("{meta}", "instruction", "relative"),
    ),
    Case(
        "instruction-symlink-outside",
        lambda c: (
            (c.task / "instruction.md").unlink(),
            (c.task / "instruction.md").symlink_to("/etc/hostname"),
        ),
        ("{meta}", "instruction", "escapes"),
    ),
    Case("workspace-escapes-dotdot", lambda c: c.meta(workspace="../"), ("{meta}", "workspace", "escapes")),
    Case(
        "workspace-dir-is-symlink-outside",
        lambda c: (shutil.rmtree(c.task / "workspace"), (c.task / "workspace").symlink_to("/etc")),
        ("{meta}", "workspace", "escapes"),
    ),
    Case(
        "workspace-symlink-to-outside",
        lambda c: (c.task / "workspace" / "passwd").symlink_to("/etc/passwd"),
        ("workspace/passwd", "outside the workspace"),
    ),
    Case(
        "workspace-symlink-to-hidden-tests",
        lambda c: (c.task / "workspace" / "t").symlink_to("../tests"),
        ("workspace/t", "outside the workspace"),
    ),
    Case(
        "workspace-symlink-loop",
        lambda c: (c.task / "workspace" / "loop").symlink_to("loop"),
        ("workspace/loop", "symlink loop"),
    ),
    Case(
        "tests-symlink-outside",
        lambda c: (c.task / "tests" / "evil").symlink_to("/root"),
        ("tests/evil", "outside the task dir"),
    ),
    Case(
        "tests-dir-missing", lambda c: shutil.rmtree(c.task / "tests"), ("{meta}", "tests.dir", "not found")
    ),
    Case(
        "solution-missing",
        lambda c: (c.task / "solution" / "solve.sh").unlink(),
        ("{meta}", "solution", "not found"),
    ),
    Case(
        "dockerfile-missing",
        lambda c: c.meta(environment__dockerfile="environment/Dockerfile"),
        ("{meta}", "environment.dockerfile", "not found"),
    ),
    Case(
        "dockerfile-wrong-from",
        lambda c: (
            (c.task / "environment").mkdir(),
            (c.task / "environment" / "Dockerfile").write_text("FROM debian:12\n"),
            c.meta(environment__dockerfile="environment/Dockerfile"),
        ),
        ("Dockerfile", "FROM ${BASE_IMAGE}"),
    ),
    # --- overrides.json
    Case(
        "overrides-malformed",
        lambda c: (
            (c.task / "overrides.json").write_text("{,}"),
            c.config(VALID + "apply_overrides = true\n"),
        ),
        ("overrides.json", "invalid JSON"),
    ),
    Case(
        "overrides-empty",
        lambda c: ((c.task / "overrides.json").write_text(""), c.config(VALID + "apply_overrides = true\n")),
        ("overrides.json", "empty"),
    ),
    Case(
        "overrides-is-a-list",
        lambda c: (
            (c.task / "overrides.json").write_text("[]"),
            c.config(VALID + "apply_overrides = true\n"),
        ),
        ("overrides.json", "JSON object"),
    ),
    Case(
        "overrides-unknown-key",
        lambda c: (
            (c.task / "overrides.json").write_text('{"timeouts": {"agent": 1}}'),
            c.config(VALID + "apply_overrides = true\n"),
        ),
        ("overrides.json", "timeouts.agent", "unknown key"),
    ),
    Case(
        "overrides-wrong-type",
        lambda c: (
            (c.task / "overrides.json").write_text('{"timeouts": {"agent_sec": "x"}}'),
            c.config(VALID + "apply_overrides = true\n"),
        ),
        ("overrides.json", "timeouts.agent_sec"),
    ),
    Case(
        "overrides-is-a-directory",
        lambda c: ((c.tmp / "ov").mkdir(), c.config(VALID + 'overrides = "{tmp}/ov"\n')),
        ("ov", "directory"),
    ),
]


def _setup(tmp: Path, case: Case) -> tuple[Path, tuple[str, ...]]:
    task = make_task(tmp / "task")
    c = Ctx(tmp=tmp, task=task, cfg=tmp / "bench.toml")
    write_config(c.cfg, VALID, task)
    out = case.build(c)
    cfg = out if isinstance(out, Path) else c.cfg
    subs = {"{tmp}": str(tmp), "{cfg}": str(c.cfg), "{task}": str(task), "{meta}": str(task / "tb_meta.json")}
    expect = tuple(subs.get(e, e) for e in case.expect)
    return cfg, expect


def _data_dir(tmp: Path, case: Case) -> Path:
    return tmp / "datafile" if case.id == "data-dir-is-a-file" else tmp / "data"


def test_enough_cases():
    assert len(CASES) >= 50
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_check_rejects(case: Case, tmp_path: Path):
    if case.prefix and SETPRIV is None:
        pytest.skip("needs setpriv to drop CAP_DAC_OVERRIDE")
    cfg, expect = _setup(tmp_path, case)
    data = _data_dir(tmp_path, case)
    r = cli(["check", str(cfg)], data, prefix=list(case.prefix), **dict(case.env))
    if case.id == "data-dir-is-a-file":
        assert r.returncode == 2 and "Traceback" not in r.stderr and "--data-dir" in r.stderr, r.stderr
        return
    assert_clean_failure(r, data, expect)


RUN_SAMPLE = [
    "config-malformed-toml",
    "unknown-key-in-tasks",
    "meta-unknown-nested-key",
    "workspace-symlink-to-outside",
    "timeout-sec-non-numeric",
    "config-is-directory",
]


@pytest.mark.parametrize("case_id", RUN_SAMPLE)
def test_run_rejects(case_id: str, tmp_path: Path):
    """``run`` validates everything before touching Docker or the data dir."""
    case = next(c for c in CASES if c.id == case_id)
    cfg, expect = _setup(tmp_path, case)
    data = tmp_path / "data"
    r = cli(["run", str(cfg)], data)
    assert_clean_failure(r, data, expect)


def test_valid_config_passes_check(tmp_path: Path):
    """The harness of this module is sound: the unmodified task and config are valid."""
    task = make_task(tmp_path / "task")
    cfg = write_config(tmp_path / "bench.toml", VALID, task)
    r = cli(["check", str(cfg)], tmp_path / "data")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "data").exists()


def test_non_utf8_file_names_in_workspace_are_fine(tmp_path: Path):
    """Binary file names and contents in a workspace are legitimate: valid, digest computed, no crash."""
    task = make_task(tmp_path / "task")
    (task / "workspace" / os.fsdecode(b"caf\xe9.bin")).write_bytes(os.urandom(300))
    cfg = write_config(tmp_path / "bench.toml", VALID, task)
    r = cli(["check", str(cfg)], tmp_path / "data")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr


def test_missing_docker_daemon_is_exit_3(tmp_path: Path):
    task = make_task(tmp_path / "task")
    cfg = write_config(tmp_path / "bench.toml", VALID, task)
    data = tmp_path / "data"
    r = cli(["run", str(cfg)], data, DOCKER_HOST="unix:///nonexistent.sock")
    assert_clean_failure(r, data, ("docker", "/nonexistent.sock"), code=3)


# --------------------------------------------------------------------------- hypothesis
def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return toml_key(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def toml_key(s: str) -> str:
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_doc(d: dict) -> str:
    return "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in d.items())


scalars = st.one_of(
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_scalars = st.one_of(
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
not_str = values.filter(lambda v: not isinstance(v, str))
not_int = values.filter(lambda v: not (isinstance(v, int) and not isinstance(v, bool)))
not_bool = values.filter(lambda v: not isinstance(v, bool))
not_dict = values.filter(lambda v: not isinstance(v, dict))

TOP_KEYS = {"name", "parallel", "max_retries", "backend", "defaults", "tasks", "pricing"}
ENTRY_KEYS = {
    "prepared_dir",
    "model",
    "agent",
    "rollouts",
    "apply_overrides",
    "overrides",
    "environment_variables",
    "agent_options",
    "resources",
    "backend",
}
RES_KEYS = {"cpus", "memory_mb", "pids"}
_TYPED = {
    "name": not_str,
    "prepared_dir": not_str,
    "model": not_str,
    "agent": not_str,
    "backend": not_str,
    "overrides": not_str,
    "rollouts": not_int,
    "parallel": not_int,
    "max_retries": not_int,
    "apply_overrides": not_bool,
    "environment_variables": not_dict,
    "agent_options": not_dict,
    "resources": not_dict,
}
_RANGE = {
    "rollouts": st.one_of(st.integers(max_value=0), st.integers(min_value=10_001)),
    "parallel": st.one_of(st.integers(max_value=0), st.integers(min_value=1001)),
    "max_retries": st.one_of(st.integers(max_value=-1), st.integers(min_value=21)),
    "cpus": st.one_of(st.floats(max_value=0), st.floats(min_value=64.001), st.just(math.nan)),
    "memory_mb": st.one_of(st.integers(max_value=63), st.integers(min_value=1024 * 1024 + 1)),
    "pids": st.one_of(st.integers(max_value=15), st.integers(min_value=4_194_305)),
}


def _bad_timeout(s: str) -> bool:
    try:
        v = float(s)
    except ValueError:
        return True
    return not (math.isfinite(v) and 0 < v <= 7 * 24 * 3600)


@st.composite
def bad_configs(draw) -> tuple[dict | bytes, str]:
    """(an invalid config document or raw bytes, a string the error line must contain)."""
    doc: dict = {"name": "gen", "tasks": [{"prepared_dir": "{task}", "agent": "oracle"}]}
    entry = doc["tasks"][0]
    kind = draw(
        st.sampled_from(
            [
                "wrong_type_top",
                "wrong_type_entry",
                "range",
                "unknown_key",
                "bad_name",
                "bad_timeout",
                "garbage",
                "defaults_wrong_type",
            ]
        )
    )
    if kind == "wrong_type_top":
        key = draw(st.sampled_from(["name", "parallel", "max_retries", "backend"]))
        doc[key] = draw(_TYPED[key])
        return doc, key
    if kind in ("wrong_type_entry", "defaults_wrong_type"):
        key = draw(st.sampled_from(sorted(_TYPED.keys() & ENTRY_KEYS)))
        target = entry if kind == "wrong_type_entry" else doc.setdefault("defaults", {})
        target[key] = draw(_TYPED[key])
        return doc, key
    if kind == "range":
        key = draw(st.sampled_from(sorted(_RANGE)))
        v = draw(_RANGE[key])
        if key in RES_KEYS:
            entry["resources"] = {key: v}
        elif key == "rollouts":
            entry[key] = v
        else:
            doc[key] = v
        return doc, key
    if kind == "unknown_key":
        where = draw(st.sampled_from(["top", "entry", "defaults", "resources"]))
        known = {"top": TOP_KEYS, "entry": ENTRY_KEYS, "defaults": ENTRY_KEYS, "resources": RES_KEYS}[where]
        key = draw(
            st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789-", min_size=1, max_size=12).filter(
                lambda k: k not in known
            )
        )
        value = draw(values)
        target = {
            "top": doc,
            "entry": entry,
            "defaults": doc.setdefault("defaults", {}),
            "resources": entry.setdefault("resources", {}),
        }[where]
        target[key] = value
        return doc, key
    if kind == "bad_name":
        doc["name"] = draw(
            st.text(max_size=30).filter(lambda s: not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", s))
        )
        return doc, "name"
    if kind == "bad_timeout":
        entry["environment_variables"] = {"TIMEOUT_SEC": draw(st.text(max_size=12).filter(_bad_timeout))}
        return doc, "TIMEOUT_SEC"
    # garbage: random bytes that are not UTF-8 (a leading 0xff never is)
    return b"\xff" + draw(st.binary(max_size=200)), "UTF-8"


def _write_generated(tmp: Path, doc: dict | bytes) -> tuple[Path, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    task = tmp / "task"
    if not task.exists():
        make_task(task)
    cfg = tmp / "gen.toml"
    if isinstance(doc, bytes):
        cfg.write_bytes(doc)
    else:
        cfg.write_text(toml_doc(doc).replace("{task}", str(task)), encoding="utf-8")
    return cfg, task


@st.composite
def bad_metas(draw) -> tuple[dict | bytes, str]:
    """(an invalid tb_meta.json document or raw bytes, a string the error line must contain)."""
    meta = json.loads((TASK_SRC / "tb_meta.json").read_text())
    kind = draw(
        st.sampled_from(["unknown_top", "unknown_nested", "wrong_type", "range", "nonfinite", "garbage"])
    )
    sections = {
        "environment": {"dockerfile", "workdir"},
        "tests": {"dir", "command", "mode"},
        "timeouts": {"agent_sec", "verifier_sec", "setup_sec"},
        "resources": RES_KEYS,
    }
    if kind == "unknown_top":
        key = draw(
            st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(
                lambda k: (
                    k not in meta
                    and k
                    not in {
                        "workspace",
                        "solution",
                        "environment_variables",
                        "description",
                        "metadata",
                        "network",
                    }
                )
            )
        )
        meta[key] = draw(json_values)
        return meta, key
    if kind == "unknown_nested":
        sec = draw(st.sampled_from(sorted(sections)))
        key = draw(
            st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(
                lambda k: k not in sections[sec]
            )
        )
        meta.setdefault(sec, {})[key] = draw(json_values)
        return meta, f"{sec}.{key}"
    if kind == "wrong_type":
        path = draw(
            st.sampled_from(
                [
                    "name",
                    "timeouts.agent_sec",
                    "timeouts.verifier_sec",
                    "resources.memory_mb",
                    "network",
                    "tests.command",
                    "environment.workdir",
                    "schema_version",
                ]
            )
        )
        bad = {
            "name": not_str,
            "tests.command": not_str,
            "environment.workdir": not_str,
            "network": not_bool,
            "resources.memory_mb": not_int,
            "schema_version": not_int,
            "timeouts.agent_sec": values.filter(
                lambda v: isinstance(v, bool) or not isinstance(v, (int, float))
            ),
            "timeouts.verifier_sec": values.filter(
                lambda v: isinstance(v, bool) or not isinstance(v, (int, float))
            ),
        }
        node = meta
        *parents, last = path.split(".")
        for p in parents:
            node = node[p]
        node[last] = draw(bad[path].map(_finite))
        return meta, path
    if kind == "range":
        path = draw(
            st.sampled_from(["timeouts.agent_sec", "timeouts.setup_sec", "resources.pids", "resources.cpus"])
        )
        strat = {
            "timeouts.agent_sec": st.one_of(
                st.floats(max_value=0, allow_infinity=False),
                st.floats(min_value=604_801, allow_infinity=False),
            ),
            "timeouts.setup_sec": st.integers(max_value=0),
            "resources.pids": _RANGE["pids"],
            "resources.cpus": st.one_of(
                st.floats(max_value=0, allow_infinity=False),
                st.floats(min_value=64.001, allow_infinity=False),
            ),
        }[path]
        sec, key = path.split(".")
        meta[sec][key] = draw(strat)
        return meta, path
    if kind == "nonfinite":  # json.dumps writes NaN / Infinity, which JSON does not have
        meta["timeouts"]["agent_sec"] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        return meta, "JSON number"
    return b"\xfe" + draw(st.binary(max_size=100)), "UTF-8"


def _finite(v):
    """``v`` with every non-finite float replaced by a string (still the wrong type)."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, list):
        return [_finite(x) for x in v]
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    return v


def _write_meta(tmp: Path, meta: dict | bytes) -> tuple[Path, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    task = tmp / "task"
    if not task.exists():
        make_task(task)
    raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()  # NaN/Infinity stay literal
    (task / "tb_meta.json").write_bytes(raw)
    cfg = write_config(tmp / "bench.toml", VALID, task)
    return cfg, task


_SUBPROCESS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
_IN_PROCESS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)


@_SUBPROCESS
@given(bad_configs())
def test_generated_configs_cli(case):
    doc, field = case
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cfg, _ = _write_generated(tmp, doc)
        r = cli(["check", str(cfg)], tmp / "data")
        assert_clean_failure(r, tmp / "data", (str(cfg),))
        assert (
            field.split(".")[-1].lower() in r.stderr.lower() or repr(field)[1:-1].lower() in r.stderr.lower()
        ), r.stderr


@_SUBPROCESS
@given(bad_metas())
def test_generated_tb_meta_cli(case):
    meta, field = case
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cfg, task = _write_meta(tmp, meta)
        r = cli(["check", str(cfg)], tmp / "data")
        assert_clean_failure(r, tmp / "data", (str(task / "tb_meta.json"),))
        assert field.split(".")[-1].lower() in r.stderr.lower(), r.stderr


@pytest.fixture(scope="module")
def gen_dir():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


@_IN_PROCESS
@given(case=bad_configs())
def test_generated_configs_in_process(gen_dir, case):
    """Many more generated configs, in-process: always a ConfigError naming the config file."""
    doc, _ = case
    cfg, _ = _write_generated(gen_dir / "cfg", doc)
    with pytest.raises(ConfigError) as ei:
        load_config(cfg)
    assert str(cfg) in str(ei.value) and "\n" not in str(ei.value)


@_IN_PROCESS
@given(case=bad_metas())
def test_generated_tb_meta_in_process(gen_dir, case):
    meta, _ = case
    cfg, task = _write_meta(gen_dir / "meta", meta)
    with pytest.raises(ConfigError) as ei:
        load_config(cfg)
    assert str(task / "tb_meta.json") in str(ei.value) and "\n" not in str(ei.value)


# --------------------------------------------------------------------------- sandbox output
@pytest.mark.docker
def test_binary_command_output_is_decoded_safely(docker_client, base_image):
    """100 kB of random bytes on stdout and stderr: decoded (invalid UTF-8 replaced), JSON-safe."""
    import socket

    from rollouts.sandbox.base import LABEL_HOST, LABEL_PID, LABEL_TOOL, TOOL_NAME, SandboxSpec
    from rollouts.sandbox.docker import DockerSandbox

    labels = {LABEL_TOOL: TOOL_NAME, LABEL_PID: str(os.getpid()), LABEL_HOST: socket.gethostname()}
    sb = DockerSandbox(docker_client, SandboxSpec(image=base_image, labels=labels, lifetime_sec=120))
    try:
        sb.start()
        r = sb.exec("head -c 100000 /dev/urandom; head -c 50000 /dev/urandom >&2; printf '\\xc3'", timeout=60)
        assert r.exit_code == 0
        assert r.stdout_bytes == 100001 and r.stderr_bytes == 50000
        assert isinstance(r.stdout, str) and isinstance(r.stderr, str)
        r.stdout.encode("utf-8")  # no lone surrogates: writable to logs and JSON as UTF-8
        json.dumps({"out": r.output})
        assert r.stdout.endswith("\ufffd")  # a multi-byte sequence cut at the end is replaced
        assert len(r.stdout) <= 100001
    finally:
        sb.stop()


@pytest.mark.parametrize("code,rc,err", [(None, 0, ""), (0, 0, ""), (2, 2, ""), ("bad thing", 1, "bad thing")])
def test_fast_exit_keeps_the_interpreters_exit_semantics(tmp_path, code, rc, err):
    """``rollouts.cli._exit`` skips the interpreter's teardown but not what a user sees: the exit
    code of ``SystemExit(code)`` (a str is printed and exits 1), non-daemon threads finish, atexit
    handlers run, buffered stdout is flushed."""
    script = tmp_path / "x.py"
    script.write_text(
        "import atexit, sys, threading, time\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from rollouts.cli import _exit\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), print('thread done'))).start()\n"
        "sys.stdout.write('buffered ')\n"
        f"_exit({code!r})\n"
        "print('not reached')\n")
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert p.returncode == rc, p.stderr
    assert p.stdout.split() == ["buffered", "thread", "done", "atexit", "ran"], p.stdout
    assert p.stderr.strip() == err
