"""One contract for every sandbox backend: what the rest of the pipeline may rely on.

Parametrized over:
- ``docker``: the Docker backend on the real engine (base image built locally, ~90 s the first time);
- ``modal-on-docker``: the Modal adapter (``rollouts/sandbox/modal.py``) on a stand-in SDK whose
  Sandboxes are real Docker containers (``tests/modal_on_docker.py``: stdin open until EOF as on
  Modal), so its in-sandbox commands (tar helpers, ``runuser``, long commands through a file,
  ``timeout -k``) run for real on the same base image;
- ``modal-dumb-init``: the same, with Modal's process layout: ``dumb-init`` as PID 1 and the
  sandbox command wrapped in ``sh -c``;
- ``modal``: the Modal adapter on real Modal, only when ``MODAL_TOKEN_ID`` is set (skipped with
  the reason shown otherwise).
Every sandbox a test creates is stopped at its end, and the test checks none of its rollout is left.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from rollouts.errors import OutputLimitExceeded, SandboxError, SandboxFileNotFound
from rollouts.lifecycle import labels_for
from rollouts.sandbox.base import LABEL_ROLLOUT, LABEL_RUN, LABEL_TOOL, SandboxSpec
from rollouts.sandbox.docker import DockerBackend
from rollouts.sandbox.modal import ModalBackend
from tests.modal_on_docker import DockerModal

MIB = 1024 * 1024


# ------------------------------------------------------------------ fixtures
@pytest.fixture(
    params=[
        pytest.param("docker", marks=pytest.mark.docker),
        pytest.param("modal-on-docker", marks=pytest.mark.docker),
        pytest.param("modal-dumb-init", marks=pytest.mark.docker),
        "modal",
    ]
)
def box(request):
    """``box.make(**spec)`` -> a not-started sandbox of the backend under test, stopped at teardown."""
    kind = request.param
    if kind == "modal":
        if not os.environ.get("MODAL_TOKEN_ID"):
            pytest.skip(
                "MODAL_TOKEN_ID is not set: the real-Modal contract run needs a Modal token (docs/modal.md)"
            )
        backend = ModalBackend()
        backend.preflight()
        image = backend.base_image()
    else:
        client = request.getfixturevalue("docker_client")
        image = request.getfixturevalue("base_image")
        if kind == "modal-dumb-init" and not shutil.which("dumb-init"):
            pytest.fail("dumb-init is missing: apt-get install -y dumb-init (scripts/setup.sh does)")
        backend = (
            DockerBackend(client)
            if kind == "docker"
            else ModalBackend(sdk=DockerModal(client, init="dumb-init" if kind == "modal-dumb-init" else "docker"),
                              retry_initial=0.01)  # fmt: skip
        )
    rid = f"contract-{uuid.uuid4().hex[:10]}"
    made = []

    def make(**kw):
        sb = backend.create(SandboxSpec(image=image, labels=labels_for(rid, f"{rid}-{len(made)}"), **kw))
        made.append(sb)
        return sb

    yield SimpleNamespace(kind=kind, backend=backend, make=make, rollout_id=rid)
    for sb in made:
        sb.stop()
    if isinstance(getattr(backend, "_sdk", None), DockerModal):
        backend.sdk.cleanup()
    assert eventually(lambda: backend.list_leftovers(rid) == []), f"sandboxes of {rid} left behind"


def eventually(check, timeout: float = 60.0) -> bool:
    """``check()`` true now or within ``timeout`` s (Modal's list catches up after a terminate)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


@pytest.fixture
def sb(box):
    s = box.make()
    s.start()
    return s


# ------------------------------------------------------------------ the contract
def test_start_exec_and_exit_codes(box, sb):
    sb.start()  # idempotent
    r = sb.exec("echo out; echo err >&2; exit 3")
    assert (r.exit_code, r.stdout, r.stderr, r.ok, r.timed_out) == (3, "out\n", "err\n", False, False)
    assert sb.exec(["printf", "%s|", "a b", "c"]).stdout == "a b|c|"
    assert sb.exec("true").ok and sb.exec("false").exit_code == 1
    r = sb.exec(["no-such-program-xyz"])
    assert r.exit_code == 127 and not r.ok


def test_stdin_is_at_eof(sb):
    """A command reading stdin gets EOF at once (Modal keeps it open until the adapter closes it)."""
    t0 = time.monotonic()
    r = sb.exec("cat; read -r x || echo eof", timeout=20)
    assert r.ok and r.stdout == "eof\n" and time.monotonic() - t0 < 10


def test_exec_timeout_kills_the_process_tree(sb):
    t0 = time.monotonic()
    r = sb.exec("sleep 300 & sleep 301 & trap '' TERM; sleep 302", timeout=2)
    assert r.timed_out and not r.ok and r.exit_code in (124, 137, -1)
    assert time.monotonic() - t0 < 20
    ps = sb.exec("ps -eo args", timeout=30).stdout
    assert "sleep 30" not in ps, ps


def test_exec_cwd_env_user(box):
    s = box.make(env={"SPEC_VAR": "spec", "SOME_API_KEY": "sk-contract-secret"})
    s.start()
    assert s.exec("pwd", cwd="/tmp").stdout == "/tmp\n"
    assert s.exec("pwd").stdout == "/\n"
    assert (
        s.exec('echo "$FOO|$BAR"', env={"FOO": "1", "BAR": "x y", "MY_TOKEN": "tok-123456"}).stdout
        == "1|x y\n"
    )
    assert s.exec('echo "$MY_TOKEN"', env={"MY_TOKEN": "tok-123456"}).stdout == "tok-123456\n"
    assert s.exec('echo "$SPEC_VAR $SOME_API_KEY"').stdout == "spec sk-contract-secret\n"
    r = s.exec('id -un; echo "$HOME"; echo "$FOO"', user="nobody", env={"FOO": "kept"}, cwd="/tmp")
    assert r.stdout == "nobody\n/nonexistent\nkept\n", r.output
    assert s.exec("id -u", user="65534").stdout == "65534\n"
    t0 = time.monotonic()
    r = s.exec("sleep 300", user="nobody", timeout=2)
    assert r.timed_out and time.monotonic() - t0 < 20
    assert "sleep 300" not in s.exec("ps -eo args").stdout


def test_large_and_binary_output_is_capped(sb):
    r = sb.exec("head -c 5000000 /dev/zero | tr '\\0' a; echo done >&2", timeout=120)
    assert r.exit_code == 0 and r.truncated and r.stdout_bytes == 5_000_000
    assert r.stdout.startswith("a" * 1000) and len(r.stdout) < MIB + 200 and r.stderr == "done\n"
    r = sb.exec("head -c 5000000 /dev/zero | tr '\\0' b >&2", timeout=120, output_limit=1000)
    assert r.stderr_bytes == 5_000_000 and r.truncated and r.stdout == "" and len(r.stderr) < 1200
    r = sb.exec("printf '\\377\\376\\000abc'")
    assert r.ok and r.stdout_bytes == 6 and "abc" in r.stdout and "\ufffd" in r.stdout and not r.truncated


def test_command_over_64k(sb):
    r = sb.exec("x=" + "a" * 100_000 + "; echo ${#x}", timeout=60)
    assert r.stdout == "100000\n", r.output
    r = sb.exec(["bash", "-c", 'echo "${#1}"', "arg0", "b" * 70_000], timeout=60)
    assert r.stdout == "70000\n", r.output


def test_put_get_file_round_trip(sb):
    data = bytes(range(256)) * 1000
    sb.put_file("/data/sub/f.bin", data, mode=0o755)
    assert sb.exec("stat -c %a /data/sub/f.bin").stdout == "755\n"
    assert sb.get_file("/data/sub/f.bin") == data
    sb.put_file("/data/sub/f.bin", b"new")  # overwrite
    assert sb.get_file("/data/sub/f.bin") == b"new"
    sb.put_file("/data/empty", b"")
    assert sb.get_file("/data/empty") == b""
    with pytest.raises(FileNotFoundError):
        sb.get_file("/data/missing")
    sb.put_file("/data/big", b"z" * 5000)
    with pytest.raises(OutputLimitExceeded):
        sb.get_file("/data/big", max_bytes=100)


def test_put_get_dir_round_trip(sb, tmp_path):
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "empty").mkdir()
    (src / "top.txt").write_text("top\n")
    (src / "a" / "b" / "bin").write_bytes(bytes(range(256)) * 10)
    (src / "a" / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (src / "a" / "run.sh").chmod(0o755)
    (src / "link").symlink_to("top.txt")
    sb.put_dir(src, "/w/in")
    assert sb.exec(
        "cat /w/in/link; /w/in/a/run.sh; test -d /w/in/empty && stat -c %U /w/in/top.txt"
    ).stdout == ("top\nran\nroot\n")
    sb.exec("echo made > /w/in/a/new.txt")
    out = tmp_path / "out"
    sb.get_dir("/w/in", out)
    got = {
        str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file() and not p.is_symlink()
    }
    assert got == {"top.txt": b"top\n", "a/b/bin": bytes(range(256)) * 10,
                   "a/run.sh": b"#!/bin/sh\necho ran\n", "a/new.txt": b"made\n"}  # fmt: skip
    assert os.readlink(out / "link") == "top.txt" and (out / "empty").is_dir()
    assert os.access(out / "a" / "run.sh", os.X_OK)
    with pytest.raises(FileNotFoundError):
        sb.get_dir("/w/missing", tmp_path / "none")


def test_typed_errors_of_file_transfer(sb, tmp_path):
    """What the interface documents (rollouts/sandbox/base.py), raised as those types, never
    told apart by message: missing → SandboxFileNotFound (also a SandboxError and a
    FileNotFoundError), over the cap → OutputLimitExceeded naming the cap (not infra)."""
    sb.exec("mkdir -p /t/d && head -c 5000 /dev/zero > /t/big && head -c 3000 /dev/zero > /t/d/f")
    for call in (lambda: sb.get_file("/t/missing"), lambda: sb.get_file("/t/d"),
                 lambda: sb.get_dir("/t/nodir", tmp_path / "x")):
        with pytest.raises(SandboxFileNotFound) as e:
            call()
        assert isinstance(e.value, SandboxError) and isinstance(e.value, FileNotFoundError)
    with pytest.raises(OutputLimitExceeded) as e:
        sb.get_file("/t/big", max_bytes=100)
    assert e.value.limit == 100 and e.value.error_kind == "agent" and not isinstance(e.value, SandboxError)
    with pytest.raises(OutputLimitExceeded):
        sb.get_dir("/t/d", tmp_path / "y", max_bytes=1000)
    assert sb.get_file("/t/big", max_bytes=5000) == b"\0" * 5000  # exactly the cap is fine


@pytest.mark.parametrize("policy", ["strict", "keep-services"])
def test_shared_mode_stop_step_keeps_the_sandbox(box, sb, policy):
    """Shared-mode grading stops the agent's processes before the tests go in (grading/stop.py),
    whatever PID 1 and its children are (Modal: dumb-init, then ``sh -c``): the sandbox and its
    files survive. strict: every process ends (Modal: a new sandbox from a filesystem snapshot);
    keep-services: the trees of the agent's exec sessions end, detached services stay."""
    import threading

    from rollouts.grading.stop import stop_agent

    sb.exec("mkdir -p /w && echo work > /w/f.txt")
    sb.exec("(nohup sleep 1000 >/dev/null 2>&1 &); (setsid sleep 1001 >/dev/null 2>&1 &)", timeout=10)
    attached = threading.Thread(target=lambda: sb.exec("sleep 1002", timeout=120), daemon=True)
    attached.start()  # an exec session still running when the stop comes
    t0 = time.monotonic()
    while "sleep 1002" not in sb.exec("ps -eo args").stdout:
        assert time.monotonic() - t0 < 30
        time.sleep(0.2)
    stop_agent(sb, policy)
    ps = sb.exec("ps -eo args").stdout
    assert "sleep 1002" not in ps, ps
    if policy == "strict":
        assert "sleep 100" not in ps, ps
    else:
        assert "sleep 1000" in ps and "sleep 1001" in ps, ps  # detached services keep running
    assert sb.exec("cat /w/f.txt").stdout == "work\n"
    attached.join(timeout=60)


def test_lifetime_backstop_ends_the_sandbox(box):
    """``lifetime_sec`` passes: the sandbox is removed without the harness asking (Docker: a
    coroutine timer on the shared loop, no thread per sandbox; Modal: the sandbox's timeout)."""
    if box.kind != "docker":
        pytest.skip("Modal enforces the lifetime itself (Sandbox.create timeout=); the stand-in does not")
    s = box.make(lifetime_sec=2)
    s.start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 30:
        try:
            s.exec("true", timeout=5)
        except SandboxError:
            break
        time.sleep(0.5)
    assert 1.5 < time.monotonic() - t0 < 30


def test_stop_twice_and_use_after_stop(sb):
    sb.stop()
    sb.stop()
    with pytest.raises(SandboxError):
        sb.exec("true")


def test_labels_and_cleanup(box):
    a, b = box.make(), box.make()
    a.start()
    b.start()
    found = {x["id"]: x for x in box.backend.list_leftovers(box.rollout_id)}
    assert set(found) == {a.id, b.id}
    labels = found[a.id]["labels"]
    assert labels[LABEL_TOOL] == "rollouts" and labels[LABEL_ROLLOUT] == box.rollout_id
    assert {found[a.id]["labels"][LABEL_RUN], found[b.id]["labels"][LABEL_RUN]} == {
        f"{box.rollout_id}-0", f"{box.rollout_id}-1"}  # fmt: skip
    box.backend.remove(b.id)  # what `clean` does with a leftover
    box.backend.remove(b.id)  # already gone: fine
    assert eventually(lambda: {x["id"] for x in box.backend.list_leftovers(box.rollout_id)} == {a.id})
    a.stop()
    assert eventually(lambda: box.backend.list_leftovers(box.rollout_id) == [])


@pytest.mark.docker
def test_the_pipeline_runs_unchanged_on_the_modal_adapter(docker_client, base_image, tmp_path, monkeypatch):
    """Config entries with ``backend = "modal"`` through the real Runner: agent sandbox, fresh
    grading sandbox, artifacts and manifest, with the Modal adapter on Docker-backed sandboxes."""
    import rollouts.runner as runner_mod
    from rollouts.config import load_config
    from rollouts.store import Store

    root = Path(__file__).resolve().parents[1]
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        f'name = "modal_pipeline"\nparallel = 2\n\n[[tasks]]\nprepared_dir = "{root}/data/tasks/prepared/'
        'shell_hello_file"\nagent = "oracle"\nrollouts = 2\nbackend = "modal"\n'
    )
    backend = ModalBackend(sdk=DockerModal(docker_client), retry_initial=0.01)
    monkeypatch.setattr(backend, "base_image", lambda log=None: base_image)  # no Modal image builder here
    monkeypatch.setattr(runner_mod, "get_backend", lambda name: backend)
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-fake")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-fake")
    config = load_config(cfg)
    assert {e.backend for e in config.entries} == {"modal"}
    r = runner_mod.Runner(config, Store(tmp_path / "data"))
    r.preflight()
    m = r.run()
    assert [(x.status, x.reward) for x in m.results] == [("completed", 1.0)] * 2, [x.error for x in m.results]
    run_dir = Path(m.results[0].run_dir)
    assert b"+hello world" in (run_dir / "artifacts" / "diff.patch").read_bytes()
    assert (run_dir / "evaluation_results.json").is_file()
    assert backend.list_leftovers(m.rollout_id) == []


class _RefusingContainer:
    """Stands in for docker-py's Container in the one engine race a real engine does not produce
    on demand: after a restart runc keeps refusing execs ("cannot exec in a stopped state").
    Execs are refused until the container has been restarted more than ``bad_restarts`` times."""

    short_id = "abc123"
    status = "running"

    def __init__(self, bad_restarts: int):
        self.bad_restarts, self.restarts = bad_restarts, 0

    def restart(self, timeout):
        self.restarts += 1

    def reload(self):
        pass

    def exec_run(self, cmd):
        code = 126 if self.restarts <= self.bad_restarts else 0
        return SimpleNamespace(exit_code=code, output=b"cannot exec in a stopped state" if code else b"")


def test_docker_restart_retries_when_the_engine_keeps_refusing_execs(monkeypatch):
    """Seen once under load: a restarted container that refused every exec for the whole wait.
    The restart is tried again (RESTART_ATTEMPTS in all); only then is it an infra error naming
    the last refusal."""
    from rollouts.sandbox import docker_sandbox

    monkeypatch.setattr(docker_sandbox, "RESTART_READY_SEC", 0.3)
    sb = docker_sandbox.DockerSandbox(None, SandboxSpec(image="x", labels={}))
    for bad, restarts in ((0, 1), (1, 2)):
        sb.container = c = _RefusingContainer(bad)
        sb.restart_processes()
        assert c.restarts == restarts
    sb.container = c = _RefusingContainer(10)
    with pytest.raises(SandboxError, match=r"each of 2 restarts \(last: exit 126: cannot exec in a stopped state\)"):
        sb.restart_processes()
    assert c.restarts == docker_sandbox.RESTART_ATTEMPTS
