"""The Modal adapter's own logic (``rollouts/sandbox/modal.py``), on an in-process fake of the SDK.

No Modal account is needed. The fake (``tests/modal_fake.py``) behaves as the SDK 1.6 source
documents and is tied to the real SDK wherever it can be (signatures, exception types, the SDK's
own file-error translation and Dockerfile parser, an open stdin, streams ending at the exec
deadline). Also here: the scale run (500 runs at ``parallel = 200`` through the
real Runner on the fake), which ``bench/bench_modal_scale.py`` runs with Modal-like latencies.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections import defaultdict
from pathlib import Path

import modal
import pytest
from modal import exception as mexc

from rollouts.errors import (
    ConfigError,
    EnvironmentNotReady,
    OutputLimitExceeded,
    SandboxCapacityError,
    SandboxError,
)
from rollouts.sandbox import base as sbase
from rollouts.sandbox import modal as madapter
from rollouts.sandbox.modal import ModalBackend
from tests.modal_fake import FakeModal, accepts  # noqa: F401 - accepts: used by test_sandbox_contract

ROOT = Path(__file__).resolve().parents[1]
HELLO_TASK = ROOT / "data" / "tasks" / "prepared" / "shell_hello_file"


def make_backend(fake: FakeModal, **kwargs) -> ModalBackend:
    return ModalBackend(sdk=fake, retry_initial=0.001, retry_max=0.01, **kwargs)


def spec(**kw) -> sbase.SandboxSpec:
    labels = {sbase.LABEL_TOOL: sbase.TOOL_NAME, sbase.LABEL_ROLLOUT: "r1", sbase.LABEL_RUN: "r1-0"}
    return sbase.SandboxSpec(**{"image": "im-base", "labels": labels, **kw})


@pytest.fixture
def fake():
    return FakeModal()


@pytest.fixture
def started(fake):
    sb = make_backend(fake).create(spec())
    sb.start()
    yield sb
    sb.stop()


def last_exec(fake: FakeModal) -> tuple[tuple, dict]:
    op, args, kwargs = [c for c in fake.calls if c[0] == "exec"][-1]
    return args, kwargs


# ----------------------------------------------------------------------------------- create / exec
def test_create_maps_the_spec_onto_sandbox_create(fake):
    s = spec(cpus=2, memory_mb=2048, network=False, lifetime_sec=123.4,
             env={"PLAIN": "x", "OPENAI_API_KEY": "sk-secret-123456"})  # fmt: skip
    backend = make_backend(fake)
    sb = backend.create(s)
    sb.start()
    sb.start()  # idempotent
    [(_, args, kw)] = [c for c in fake.calls if c[0] == "create"]
    assert args == ("sleep", "infinity")
    assert kw["app"] is fake.app and fake.app.name == "rollouts"
    assert kw["image"].object_id == "im-base"  # Image.from_id of the spec's image id
    assert kw["tags"] == s.labels
    assert kw["timeout"] == 124 and kw["workdir"] == "/"
    assert kw["cpu"] == (2, 2) and kw["memory"] == (2048, 2048) and kw["block_network"] is True
    assert kw["env"] == {"PLAIN": "x"}  # the secret-looking value is not in plain env...
    [secret] = kw["secrets"]
    assert isinstance(secret, modal.Secret)  # ...but in a real modal.Secret.from_dict
    assert fake.secret_env[id(secret)] == {"OPENAI_API_KEY": "sk-secret-123456"}
    assert "sk-secret-123456" not in repr(kw["tags"]) + repr(kw["env"])
    sb.stop()
    more = [spec(network=True), spec(lifetime_sec=None), spec(lifetime_sec=10**6)]
    for s2 in more:
        backend.create(s2).start()
    kws = [c[2] for c in fake.calls if c[0] == "create"][1:]
    assert kws[0]["block_network"] is False and kws[0]["secrets"] == [] and kws[0]["env"] is None
    assert kws[1]["timeout"] == madapter.DEFAULT_LIFETIME_SEC
    assert kws[2]["timeout"] == madapter.MAX_LIFETIME_SEC


def test_gateway_network_opens_egress_only_to_the_gateway(fake):
    """A NetworkAttachment (rollouts.gateway) becomes Modal's outbound CIDR allowlist of the
    gateway's address: not block_network (the gateway must be reachable), not open egress."""
    att = sbase.NetworkAttachment(name="gw", gateway_host="203.0.113.7", gateway_port=8443)
    make_backend(fake).create(spec(network=att)).start()
    [kw] = [c[2] for c in fake.calls if c[0] == "create"]
    assert kw["block_network"] is False and kw["outbound_cidr_allowlist"] == ["203.0.113.7/32"]


def test_exec_argv_cwd_env_user_and_timeouts(fake, started):
    started.exec("echo hi", timeout=10, cwd="/w", env={"A": "1", "GITHUB_TOKEN": "ghp_abcdef"}, user="nobody")
    args, kw = last_exec(fake)
    assert list(args) == [
        "timeout",
        "-k",
        "2",
        "10",
        "runuser",
        "-u",
        "nobody",
        "--",
        "bash",
        "-c",
        "echo hi",
    ]
    assert kw["workdir"] == "/w" and kw["text"] is False
    assert kw["timeout"] == 10 + madapter.EXEC_SLACK_SEC  # Modal's deadline only after ours
    assert kw["env"] == {"A": "1"}
    assert [fake.secret_env[id(s)] for s in kw["secrets"]] == [{"GITHUB_TOKEN": "ghp_abcdef"}]
    started.exec(["id", "-u"], timeout=None, user="1000:1001")
    args, kw = last_exec(fake)
    assert list(args) == ["setpriv", "--reuid=1000", "--regid=1001", "--clear-groups", "--", "id", "-u"]
    assert kw["timeout"] is None and kw["env"] is None and kw["secrets"] == []
    started.exec("true", user="root")
    assert list(last_exec(fake)[0])[-3:] == ["bash", "-c", "true"] and "runuser" not in last_exec(fake)[0]


def test_exec_results_exit_codes_and_timeout_mapping():
    outcomes = {"ok": (0, b"out\n", b"err\n"), "fail": (3, b"", b"boom\n"), "hang": (-1, b"partial", b""),
                "quick124": (124, b"", b"")}  # fmt: skip

    def handler(sb, argv, cwd, env, user):
        if argv[-1] == "slow":  # killed by the in-sandbox `timeout` at the limit: exit 124
            async def slow():
                await asyncio.sleep(sb.last_limit)
                return 124, b"", b""

            return slow()
        return outcomes[argv[-1]]

    fake = FakeModal(handler=handler)
    sb = make_backend(fake).create(spec())
    sb.start()
    r = sb.exec("ok")
    assert (r.exit_code, r.stdout, r.stderr, r.timed_out, r.ok) == (0, "out\n", "err\n", False, True)
    r = sb.exec("fail")
    assert (r.exit_code, r.stderr, r.ok, r.timed_out) == (3, "boom\n", False, False)
    fake.deadline_scale = 0.05  # Modal's exec deadline (timeout + 7 s) passes 20x sooner
    r = sb.exec("hang", timeout=5)  # Modal's exec deadline passed: streams end, wait() == -1
    fake.deadline_scale = 1.0
    assert r.timed_out and r.exit_code == -1 and r.stdout == "partial" and not r.ok
    r = sb.exec("quick124", timeout=30)  # a command's own exit 124 long before the timeout
    assert r.exit_code == 124 and not r.timed_out
    r = sb.exec("slow", timeout=1)
    assert r.exit_code == 124 and r.timed_out and r.duration_sec >= 1
    sb.stop()


def test_output_is_read_as_bytes_capped_and_binary_safe():
    big = b"a" * (5 * 1024 * 1024)
    binary = bytes(range(256)) * 4
    fake = FakeModal(handler=lambda *a: (0, big, binary))
    sb = make_backend(fake).create(spec())
    sb.start()
    r = sb.exec("x", output_limit=1024 * 1024)
    assert last_exec(fake)[1]["text"] is False  # text=True would raise on binary output
    assert r.stdout_bytes == len(big) and r.truncated
    assert r.stdout.startswith("a" * 1000) and "output truncated: 5242880 bytes" in r.stdout
    assert len(r.stdout) < 1024 * 1024 + 200
    assert r.stderr_bytes == 1024 and "\ufffd" in r.stderr
    sb.stop()


def test_argv_over_64k_goes_through_a_file(fake):
    seen = {}

    def handler(sb, argv, cwd, env, user):
        seen["argv"] = argv
        return 0, b"ran\n", b""

    fake.handler = handler
    sb = make_backend(fake).create(spec())
    sb.start()
    cmd = "x=" + "a" * 100_000 + "; echo ${#x}"
    r = sb.exec(cmd, timeout=20, user="nobody")
    args, kw = last_exec(fake)
    assert sum(map(len, args)) < 1000 and args[4:8] == ("runuser", "-u", "nobody", "--")
    assert args[8] == "bash" and args[9].startswith("/tmp/rollouts-cmd-")
    assert seen["argv"] == ["bash", "-c", cmd] and r.stdout == "ran\n"
    assert not [p for p in sb.sb.files if p.startswith("/tmp/rollouts-cmd-")]  # removed afterwards
    sb.exec(["printf", "%s", "b" * 70_000], timeout=20)
    assert seen["argv"][2].startswith("exec printf %s bbbb")
    sb.stop()


def test_stdin_is_closed_after_every_exec(fake):
    """Modal leaves an exec's stdin open until write_eof + drain: a command reading stdin would
    hang until its deadline. The adapter closes it, so `cat` ends at once as on Docker."""
    fake.handler = lambda sb, argv, cwd, env, user: (0, b"eof seen\n", b"", True)  # reads stdin to EOF
    sb = make_backend(fake).create(spec())
    sb.start()
    t0 = time.monotonic()
    r = sb.exec("cat", timeout=30)
    assert r.ok and r.stdout == "eof seen\n" and time.monotonic() - t0 < 5
    sb.stop()


def test_the_fake_keeps_stdin_open_and_ends_streams_at_the_deadline(fake):
    """What the adapter guards against, shown on the fake: without EOF a stdin reader runs until
    Modal's exec deadline, then the streams end with what was written and wait() returns -1."""
    fake.handler = lambda sb, argv, cwd, env, user: (0, b"never", b"", True)
    backend = make_backend(fake)
    sb = backend.create(spec())
    sb.start()

    async def raw():
        proc = await sb.sb.exec.aio("cat", timeout=1, text=False)
        out = [c async for c in proc.stdout]
        return out, await proc.wait.aio()

    from rollouts.sandbox import aioloop

    t0 = time.monotonic()
    assert aioloop.run(raw()) == ([], -1) and 0.9 < time.monotonic() - t0 < 5
    sb.stop()


def test_streams_and_exit_code_at_the_exec_deadline(fake):
    fake.handler = lambda sb, argv, cwd, env, user: (-1, b"partial out", b"partial err", False)
    fake.deadline_scale = 0.02
    sb = make_backend(fake).create(spec())
    sb.start()
    r = sb.exec("hang", timeout=10)
    assert (r.exit_code, r.timed_out, r.stdout, r.stderr) == (-1, True, "partial out", "partial err")
    sb.stop()


def test_transport_errors_grpc_stream_terminated_and_value_error(fake, started):
    from grpclib.exceptions import StreamTerminatedError

    fake.fail["exec"].append(StreamTerminatedError("Connection lost"))
    with pytest.raises(SandboxError, match="StreamTerminatedError"):
        started.exec("true")
    fake.fail["exec"].append(ValueError("Received empty message streaming stdio from sandbox."))
    with pytest.raises(SandboxError, match="ValueError"):
        started.exec("true")
    fake.fail["fs.read_bytes"].append(StreamTerminatedError("Connection lost"))  # file calls: retried
    started.put_file("/f", b"ok")
    assert started.get_file("/f") == b"ok" and fake.counts["fs.read_bytes"] == 2


def test_file_call_blips_are_retried_and_a_gone_sandbox_is_not(fake, started):
    """The SDK turns ServiceError/ConnectionError/NotFoundError of a file call into
    NotFoundError("Sandbox is unavailable") (sandbox_fs_utils.translate_exec_errors): retried while
    poll() says the sandbox runs; reported as gone, without retries, once it finished."""
    fake.fail["fs.write_bytes"] += [mexc.ServiceError("unavailable"), mexc.ConnectionError("reset"),
                                    mexc.NotFoundError("task")]  # fmt: skip
    started.put_file("/f", b"x")
    assert fake.counts["fs.write_bytes"] == 4
    fake.fail["fs.write_bytes"] += [mexc.ServiceError("unavailable")] * 10
    with pytest.raises(SandboxError, match="unavailable although it runs"):
        started.put_file("/g", b"y")
    fake.fail["fs.write_bytes"].clear()
    started.sb.running = False
    n = fake.counts["fs.write_bytes"]
    with pytest.raises(SandboxError, match="gone"):
        started.put_file("/h", b"z")
    assert fake.counts["fs.write_bytes"] == n + 1


def test_capacity_wait_is_not_multiplied_by_retries(fake):
    """Sandbox.create waits for capacity itself (21 min in the SDK) before ResourceExhaustedError:
    not retried (SandboxCapacityError); a quick rate-limit ResourceExhaustedError is."""
    fake.no_capacity, fake.capacity_wait = True, 0.2
    with pytest.raises(SandboxCapacityError, match="no capacity"):
        make_backend(fake).create(spec()).start()
    assert fake.counts["create"] == 1
    fake.no_capacity = False
    fake.fail["create"] += [mexc.ResourceExhaustedError("rate limit")] * 2
    sb = make_backend(fake).create(spec())
    sb.start()
    assert fake.counts["create"] == 4
    sb.stop()
    fake.fail["create"] += [mexc.ResourceExhaustedError("rate limit")] * 10
    t0 = time.monotonic()
    with pytest.raises(SandboxError):  # the total budget bounds the retries
        ModalBackend(sdk=fake, retries=100, retry_initial=0.1, retry_max=0.1, capacity_wait_sec=0.3).create(
            spec()
        ).start()
    assert time.monotonic() - t0 < 5


def test_restart_processes_is_a_new_sandbox_on_the_same_filesystem(fake):
    """Strict shared-mode grading (rollouts.grading.stop) needs every process ended and the files
    kept: Modal has no restart, so snapshot_filesystem() + a new sandbox + the old one terminated."""
    backend = make_backend(fake)
    sb = backend.create(spec(lifetime_sec=600))
    sb.start()
    sb.put_file("/workspace/out.txt", b"agent work", mode=0o755)
    old = sb.sb
    sb.restart_processes()
    assert sb.sb is not old and not old.running and not old.attached
    assert sb.get_file("/workspace/out.txt") == b"agent work" and sb.sb.modes["/workspace/out.txt"] == 0o755
    creates = [c[2] for c in fake.calls if c[0] == "create"]
    assert creates[1]["image"].recipe == ("snapshot", old.object_id)
    assert creates[1]["tags"] == creates[0]["tags"] and creates[1]["timeout"] <= creates[0]["timeout"]
    assert [s.object_id for s in fake.running()] == [sb.id]
    sb.stop()
    assert fake.running() == []


def test_a_thousand_cooperative_runs_share_one_thread(fake):
    """Blocking sandbox code run as cooperative runs (aioloop.CooperativeExecutor): 1000 sandboxes
    alive at once, each started, used and stopped by plain blocking calls, on the loop thread plus
    the bounded offload pool; sleep() and blocking() suspend the run, not the loop."""
    import concurrent.futures

    from rollouts.sandbox import aioloop

    fake.latency.update(create=0.2, exec=0.05, fs=0.05, terminate=0.05)
    fake.record_calls = False
    backend = make_backend(fake)
    alive, peak = [0], [0]

    def one(i: int) -> str:
        sb = backend.create(spec())
        sb.start()
        alive[0] += 1
        peak[0] = max(peak[0], alive[0])
        sb.put_file(f"/w/{i}.txt", str(i).encode())
        aioloop.sleep(0.2)  # e.g. a retry backoff: suspends this run only
        out = aioloop.blocking(lambda: f"model reply {i}")  # e.g. an HTTP call: the offload pool
        data = sb.get_file(f"/w/{i}.txt").decode()
        sb.exec("true")
        alive[0] -= 1
        sb.stop()
        return out + "|" + data

    before = threading.active_count()
    pool = aioloop.CooperativeExecutor()
    t0 = time.monotonic()
    futures = [pool.submit(one, i) for i in range(1000)]
    results = [f.result(timeout=120) for f in futures]
    wall = time.monotonic() - t0
    assert results == [f"model reply {i}|{i}" for i in range(1000)]
    assert peak[0] > 500  # runs overlap: many sandboxes alive at once
    assert threading.active_count() - before <= aioloop._OFFLOAD_THREADS + 2
    assert wall < 60 and fake.running() == []
    assert not aioloop.cooperative()
    fut = pool.submit(lambda: (_ for _ in ()).throw(KeyError("boom")))
    with pytest.raises(KeyError):
        fut.result(timeout=10)  # an exception of the run's code reaches its future
    pool.shutdown()
    assert isinstance(pool, concurrent.futures.Executor)


# ----------------------------------------------------------------------------------- files
def test_put_get_file_round_trip(started):
    data = bytes(range(256)) * 100
    started.put_file("/work/deep/bin.dat", data, mode=0o755)
    assert started.sb.modes["/work/deep/bin.dat"] == 0o755
    assert started.get_file("/work/deep/bin.dat") == data
    started.put_file("/work/t.txt", b"hi")
    assert started.get_file("/work/t.txt") == b"hi"
    with pytest.raises(FileNotFoundError):
        started.get_file("/nope")
    with pytest.raises(OutputLimitExceeded, match="cap"):
        started.get_file("/work/deep/bin.dat", max_bytes=100)
    with pytest.raises(SandboxError):
        started.get_file("/work")  # a directory


def test_put_get_dir_tar_round_trip(started, tmp_path):
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "empty").mkdir()
    (src / "top.txt").write_text("top\n")
    (src / "a" / "b" / "bin").write_bytes(bytes(range(256)))
    (src / "a" / "run.sh").write_text("#!/bin/sh\n")
    (src / "a" / "run.sh").chmod(0o755)
    started.put_dir(src, "/workspace")
    files = started.sb.files
    assert files["/workspace/top.txt"] == b"top\n" and files["/workspace/a/b/bin"] == bytes(range(256))
    assert started.sb.modes["/workspace/a/run.sh"] & 0o777 == 0o755 and "/workspace/empty" in started.sb.dirs
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (out / "a" / "stale").write_text("old")  # replaced, as with the Docker backend
    started.get_dir("/workspace", out)
    got = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == {"top.txt": b"top\n", "a/b/bin": bytes(range(256)), "a/run.sh": b"#!/bin/sh\n"}
    assert (out / "empty").is_dir() and os.access(out / "a" / "run.sh", os.X_OK)
    assert not [p for p in files if p.startswith("/tmp/rollouts-")]  # both tars removed
    with pytest.raises(FileNotFoundError):
        started.get_dir("/missing", tmp_path / "x")
    with pytest.raises(OutputLimitExceeded, match="cap"):
        started.get_dir("/workspace", tmp_path / "y", max_bytes=10)


FS_ERRORS = sorted(mexc.SandboxFilesystemError.__subclasses__(), key=lambda c: c.__name__) + [
    mexc.SandboxFilesystemError
]


@pytest.mark.parametrize("exc", FS_ERRORS, ids=lambda c: c.__name__)
def test_filesystem_errors_become_ours(fake, started, exc):
    """Every SandboxFilesystemError subclass the SDK has (found at run time, so a new one is
    covered): NotFound -> FileNotFoundError, everything else -> SandboxError."""
    started.put_file("/f", b"x")
    fake.fail["fs.stat"].append(exc(f"{exc.__name__}: /f"))
    if exc is mexc.SandboxFilesystemError:  # "An unexpected error occurred": retried, then fine
        assert started.get_file("/f") == b"x"
        return
    expected = FileNotFoundError if exc is mexc.SandboxFilesystemNotFoundError else SandboxError
    with pytest.raises(expected) as info:
        started.get_file("/f")
    assert type(info.value) is expected or isinstance(info.value, expected)
    fake.fail["fs.write_bytes"].append(exc("denied"))
    with pytest.raises((SandboxError, FileNotFoundError)):
        started.put_file("/g", b"y")


# ----------------------------------------------------------------------------------- retries, errors
@pytest.mark.parametrize("op", ["create", "terminate", "fs.write_bytes", "fs.read_bytes", "build", "list"])
def test_transient_errors_are_retried(fake, op):
    fake.fail[op] += [mexc.ServiceError("unavailable"), mexc.InternalFailure("retry me"),
                      mexc.ResourceExhaustedError("rate limited")]  # fmt: skip
    backend = make_backend(fake)
    if op == "build":
        assert backend.base_image().startswith("im-")
    elif op == "list":
        assert backend.list_leftovers() == []
    else:
        sb = backend.create(spec())
        sb.start()
        sb.put_file("/f", b"data")
        assert sb.get_file("/f") == b"data"
        sb.stop()
        assert not sb.sb.running
    assert fake.counts[op] == 4 and not fake.fail[op]


def test_retries_give_up_and_non_transient_errors_are_not_retried(fake):
    backend = make_backend(fake, retries=3)
    fake.fail["create"] += [mexc.ServiceError("down")] * 5
    with pytest.raises(SandboxError, match="ServiceError"):
        backend.create(spec()).start()
    assert fake.counts["create"] == 3
    fake.fail["create"] = [mexc.InvalidError("bad cpu request")]
    with pytest.raises(SandboxError, match="InvalidError: bad cpu"):
        backend.create(spec()).start()
    assert fake.counts["create"] == 4
    fake.fail["build"] = [mexc.ImageBuildError("apt-get failed", image_id="im-x")]
    from rollouts.errors import ImageBuildError

    with pytest.raises(ImageBuildError, match="apt-get failed"):
        backend.base_image()


def test_stop_is_idempotent_never_raises_and_detaches(fake, started):
    started.stop()
    started.stop()
    assert started.sb.terminate_calls == 1 and not started.sb.running and not started.sb.attached
    with pytest.raises(SandboxError, match="not running"):
        started.exec("true")
    other = make_backend(fake).create(spec())
    other.stop()  # never started: nothing to do
    with pytest.raises(SandboxError):
        other.start()
    third = make_backend(fake, retries=2).create(spec())
    third.start()
    fake.fail["terminate"] += [mexc.ServiceError("down")] * 3
    third.stop()  # gives up quietly: the lifetime backstop and `clean` remain


def test_exec_on_a_sandbox_that_is_gone(fake, started):
    fake.fail["exec"].append(ConnectionResetError("connection reset by peer"))  # raw transport error
    with pytest.raises(SandboxError, match="ConnectionResetError"):
        started.exec("true")
    started.sb.running = False  # its lifetime ended on Modal's side
    with pytest.raises(SandboxError, match="ConflictError"):
        started.exec("true")
    with pytest.raises(SandboxError, match="gone.*unavailable"):  # poll() says finished: not retried
        started.put_file("/x", b"")
    assert fake.counts["fs.write_bytes"] == 1


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for k in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_OAUTH_REFRESH_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(tmp_path / "no-modal.toml"))


def test_preflight_without_credentials_says_how_to_set_them(fake, no_credentials):
    with pytest.raises(EnvironmentNotReady) as info:
        make_backend(fake).preflight()
    assert info.value.exit_code == 3
    msg = str(info.value)
    assert "MODAL_TOKEN_ID" in msg and "MODAL_TOKEN_SECRET" in msg and "modal setup" in msg
    assert fake.counts["lookup"] == 0  # decided locally, before any network call


def test_preflight_maps_auth_and_connection_errors(fake, monkeypatch):
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-fake")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-fake")
    fake.fail["lookup"].append(mexc.AuthError("Token validation failed"))
    with pytest.raises(EnvironmentNotReady, match="rejected.*MODAL_TOKEN_ID.*modal setup") as info:
        make_backend(fake).preflight()
    assert info.value.exit_code == 3
    fake.fail["lookup"].append(mexc.ConnectionError("Could not connect to the Modal server."))
    with pytest.raises(EnvironmentNotReady, match="cannot reach Modal"):
        make_backend(fake).preflight()
    make_backend(fake).preflight()  # and passes when Modal answers


def test_preflight_with_the_real_sdk_and_no_token(no_credentials, monkeypatch):
    """The real SDK raises AuthError('Token missing') at once, without network (client.py)."""
    with pytest.raises(EnvironmentNotReady, match="no Modal credentials"):
        ModalBackend().preflight()
    monkeypatch.setattr(madapter, "has_credentials", lambda env=None: True)  # reach the SDK itself
    t0 = time.monotonic()
    with pytest.raises(EnvironmentNotReady, match="Token missing.*MODAL_TOKEN_ID"):
        ModalBackend().preflight()
    assert time.monotonic() - t0 < 30


def test_has_credentials_sources(tmp_path):
    cfg = tmp_path / "m.toml"
    assert not madapter.has_credentials({"MODAL_CONFIG_PATH": str(cfg)})
    assert madapter.has_credentials(
        {"MODAL_TOKEN_ID": "a", "MODAL_TOKEN_SECRET": "b", "MODAL_CONFIG_PATH": str(cfg)}
    )
    assert not madapter.has_credentials({"MODAL_TOKEN_ID": "a", "MODAL_CONFIG_PATH": str(cfg)})
    cfg.write_text('[default]\ntoken_id = "ak-1"\n')
    assert madapter.has_credentials({"MODAL_CONFIG_PATH": str(cfg)})


# ----------------------------------------------------------------------------------- cleanup by tags
def test_list_leftovers_and_remove_by_tags(fake):
    from rollouts.lifecycle import labels_for
    from rollouts.runner import reap_dead

    backend = make_backend(fake)
    sbs = []
    for rid, run in [("rA", "rA-0"), ("rA", "rA-1"), ("rB", "rB-0")]:
        sb = backend.create(sbase.SandboxSpec(image="im-base", labels=labels_for(rid, run)))
        sb.start()
        sbs.append(sb)
    stray = fake.Sandbox.create("sleep", "infinity", app=fake.app, tags={"other": "tool"})  # not ours
    assert {x["id"] for x in backend.list_leftovers()} == {s.id for s in sbs}
    found = backend.list_leftovers("rA")
    assert sorted(x["labels"][sbase.LABEL_RUN] for x in found) == ["rA-0", "rA-1"]
    assert all(x["status"] == "running" and x["labels"][sbase.LABEL_TOOL] == "rollouts" for x in found)
    backend.remove(sbs[0].id)
    assert not fake.sandboxes[sbs[0].id].running
    assert [x["labels"][sbase.LABEL_RUN] for x in backend.list_leftovers("rA")] == ["rA-1"]
    backend.remove(sbs[0].id)  # already gone: fine
    backend.remove("sb-does-not-exist")
    sbs[1].stop()
    assert backend.list_leftovers("rA") == []
    fake.sandboxes[sbs[2].id].tags[sbase.LABEL_PID] = "999999999"  # its harness died
    assert [x["id"] for x in reap_dead(backend)] == [sbs[2].id]
    assert fake.running() == [stray]


# ----------------------------------------------------------------------------------- images
def make_task(root: Path, dockerfile: str | None, extra: str = ""):
    from rollouts.task import load_task

    root.mkdir(parents=True, exist_ok=True)
    meta = {"schema_version": 1, "name": "modaltask", "workspace": None, "tests": {"dir": "tests"},
            "environment": {"dockerfile": "environment/Dockerfile" if dockerfile else None}}  # fmt: skip
    (root / "tb_meta.json").write_text(json.dumps(meta))
    (root / "instruction.md").write_text("Do nothing.\n")
    (root / "tests").mkdir(exist_ok=True)
    (root / "tests" / "test.sh").write_text("exit 0\n")
    if dockerfile:
        (root / "environment").mkdir(exist_ok=True)
        (root / "environment" / "Dockerfile").write_text(dockerfile)
        (root / "environment" / "data.txt").write_text("ctx" + extra)
    return load_task(root)


DOCKERFILE = "# syntax=docker/dockerfile:1\nARG BASE_IMAGE\nARG V=1\nFROM ${BASE_IMAGE}\nCOPY data.txt /d\nRUN echo $V\n"


def test_task_images_build_once_per_digest_even_in_parallel(fake, tmp_path):
    fake.latency["build"] = 0.05
    backend = make_backend(fake)
    task = make_task(tmp_path / "t", DOCKERFILE)
    refs: list[str] = []
    threads = [threading.Thread(target=lambda: refs.append(backend.task_image(task))) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(refs)) == 1 and len(fake.builds) == 2  # the base image, then the task image
    base_recipe, task_recipe = fake.builds
    assert base_recipe[0] == "dockerfile" and base_recipe[1] == (ROOT / "docker/base/Dockerfile").read_text()
    assert "FROM debian:${DEBIAN_SUITE}-slim" in base_recipe[1]  # the same recipe as the local base image
    from rollouts.images import _host_suite

    assert base_recipe[2]["build_args"] == {"DEBIAN_SUITE": _host_suite()}  # and the same Debian release
    kind, parent, cmds, kw = task_recipe
    assert kind == "commands" and parent.recipe is base_recipe
    assert list(cmds) == ["ARG V=1", "COPY data.txt /d", "RUN echo $V"]
    assert Path(kw["context_dir"]) == task.dir / "environment"
    assert backend.image_for(refs[0]).recipe is task_recipe  # the cached Image object, no lookup
    changed = make_task(tmp_path / "t", DOCKERFILE, extra="!")  # context changed -> new digest
    assert backend.task_image(changed) != refs[0] and len(fake.builds) == 3
    plain = make_task(tmp_path / "p", None)
    assert backend.task_image(plain) == backend.base_image() and len(fake.builds) == 3


@pytest.mark.parametrize(
    "text", ["FROM debian:12\nRUN true\n", "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nFROM x\n", "RUN true\n"]
)
def test_task_dockerfile_off_convention_is_a_config_error(text):
    with pytest.raises(ConfigError):
        madapter.task_dockerfile_commands(text, "Dockerfile")


HEAD = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"


@pytest.mark.parametrize(
    ("body", "line", "why"),
    [
        ("RUN true\nADD data.txt /d\n", 4, "ADD data.txt"),
        ("ADD --chown=1:1 \\\n  data.txt /d\n", 3, "ADD data.txt"),
        ("ARG F=data.txt\nCOPY ${F} /d\n", 4, "variables are not supported"),
        ("COPY --parents data.txt /d\n", 3, "special flags"),
        ("COPY ../outside /d\n", 3, "outside the build context"),
    ],
)
def test_dockerfile_features_modal_cannot_build_are_rejected_with_the_line(tmp_path, body, line, why):
    """Checked with the SDK's own parser (extract_copy_command_patterns) before any run."""
    task = make_task(tmp_path / "t", HEAD + body)
    with pytest.raises(ConfigError, match=f"Dockerfile: line {line}: .*{why}") as info:
        ModalBackend(sdk=FakeModal()).check_task(task)
    assert info.value.exit_code == 2


def test_escape_directive_is_rejected_and_what_modal_can_build_passes(tmp_path):
    task = make_task(tmp_path / "e", "# escape=`\n" + HEAD + "RUN echo a `\n  b\n")
    with pytest.raises(ConfigError, match="line 1: the parser directive '# escape=`'"):
        ModalBackend(sdk=FakeModal()).check_task(task)
    ok = HEAD + "ADD https://example.com/x.tgz /x\nCOPY --chmod=755 data.txt /d\nCOPY --from=alpine:3 /bin/sh /sh\n"
    fine = make_task(tmp_path / "ok", "# syntax=docker/dockerfile:1\n" + ok)
    fake = FakeModal()
    backend = make_backend(fake)
    backend.check_task(fine)
    assert backend.task_image(fine).startswith("im-")
    ModalBackend(sdk=fake).check_task(make_task(tmp_path / "none", None))  # no Dockerfile: nothing to check


def test_without_the_check_modal_fails_the_build(tmp_path):
    """What the check prevents, on the fake (which builds as Modal does): the local ADD source is
    not uploaded, so the build fails, and a ${VAR} COPY source fails in the SDK's parser."""
    fake = FakeModal()
    base = fake.Image.from_id("im-base")
    with pytest.raises(mexc.ImageBuildError):
        base.dockerfile_commands("ADD data.txt /d").build(fake.app)
    with pytest.raises(mexc.InvalidError, match="variables"):
        base.dockerfile_commands("COPY ${F} /d").build(fake.app)


def test_registry_selects_the_modal_backend():
    from rollouts.sandbox import BACKENDS, get_backend

    assert BACKENDS["modal"] == "rollouts.sandbox.modal:ModalBackend"
    b = get_backend("modal")  # no network at construction
    assert isinstance(b, ModalBackend) and b.name == "modal"


# ----------------------------------------------------------------------------------- scale
BASE_SHA = "3f1c0ffee0000000000000000000000000000000"
PATCH = (
    b"diff --git a/greeting.txt b/greeting.txt\nnew file mode 100644\nindex 0000000..3b18e51\n"
    b"--- /dev/null\n+++ b/greeting.txt\n@@ -0,0 +1 @@\n+hello world\n"
)


def pipeline_handler(sb, argv, cwd, env, user):
    """What the shell_hello_file pipeline's commands print in a real sandbox (oracle agent)."""
    import base64

    cmd = " ".join(argv)
    if "rollouts: base" in cmd and "git rev-parse HEAD" in cmd:
        return 0, f"{BASE_SHA}\n".encode(), b""
    if "base64 -w0" in cmd and "NONCE" in cmd:  # workspace._COLLECT: the diff on stdout
        sep = env["SEP"]
        out = (f"{base64.b64encode(PATCH).decode()}\n{sep}\n1\t0\tgreeting.txt\n{sep}\nref: refs/heads/main\n"
               f"{sep}\n{env['NONCE']}\n")  # fmt: skip
        return 0, out.encode(), b""
    if "echo rollouts-prep-ok" in cmd:  # grading/prepare.py: apply, guard, install the tests
        return 0, b"rollouts-prep-ok\n", b""
    if "/tests/test.sh" in cmd:
        sb.files["/logs/verifier/reward.json"] = b'{"reward": 1.0, "tests_passed": 2, "tests_total": 2}\n'
        return 0, b"2 passed\n", b""
    return 0, b"", b""


SCALE_TOML = """
name = "modal_scale"
parallel = {parallel}
max_retries = 0

[[tasks]]
prepared_dir = "{task}"
agent = "oracle"
rollouts = {runs}
backend = "modal"
"""


def run_scale(tmp: Path, runs: int = 500, parallel: int = 200, latency: dict | None = None) -> dict:
    """``runs`` runs of shell_hello_file (oracle) at ``parallel`` through the real Runner on the fake
    SDK; returns wall time, statuses and the harness's peak threads / RSS / open fds (psutil)."""
    import psutil

    import rollouts.runner as runner_mod
    from rollouts.config import load_config
    from rollouts.store import Store

    cfg = tmp / "scale.toml"
    cfg.write_text(SCALE_TOML.format(parallel=parallel, task=HELLO_TASK, runs=runs))
    fake = FakeModal(handler=pipeline_handler, latency=latency, record=False)
    backend = ModalBackend(sdk=fake, retry_initial=0.01, retry_max=0.1)
    proc, peak, stop = (
        psutil.Process(),
        {"threads": 0, "rss": 0, "fds": 0, "running_sandboxes": 0},
        threading.Event(),
    )

    def sample():
        while not stop.is_set():
            peak["threads"] = max(peak["threads"], proc.num_threads())
            peak["rss"] = max(peak["rss"], proc.memory_info().rss)
            peak["fds"] = max(peak["fds"], proc.num_fds())
            peak["running_sandboxes"] = max(peak["running_sandboxes"], len(fake.running()))
            stop.wait(0.05)

    start = {"threads": proc.num_threads(), "rss": proc.memory_info().rss, "fds": proc.num_fds()}
    env = {"MODAL_TOKEN_ID": "ak-fake", "MODAL_TOKEN_SECRET": "as-fake"}
    saved_env = {k: os.environ.get(k) for k in env}
    saved_get = runner_mod.get_backend
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.monotonic()
    try:
        os.environ.update(env)
        runner_mod.get_backend = lambda name: backend
        config = load_config(cfg)
        r = runner_mod.Runner(config, Store(tmp / "data"))
        r.preflight()
        manifest = r.run()
    finally:
        wall = time.monotonic() - t0
        stop.set()
        sampler.join()
        runner_mod.get_backend = saved_get
        for k, v in saved_env.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    statuses: dict[str, int] = defaultdict(int)
    for rec in manifest.results:
        statuses[rec.status] += 1
    return {
        "runs": runs, "parallel": parallel, "wall_sec": round(wall, 2), "statuses": dict(statuses),
        "rewards": sorted({rec.reward for rec in manifest.results}, key=str),
        "sandboxes_created": fake.counts["create"], "left_running": len(fake.running()),
        "peak_running_sandboxes": peak["running_sandboxes"], "start_threads": start["threads"],
        "peak_threads": peak["threads"], "start_rss_mib": round(start["rss"] / 2**20, 1),
        "peak_rss_mib": round(peak["rss"] / 2**20, 1), "start_fds": start["fds"], "peak_fds": peak["fds"],
        "image_builds": len(fake.builds), "manifest_writes": r.writer.writes, "manifest": manifest,
    }  # fmt: skip


def test_fake_keeps_nothing_per_call_or_per_finished_sandbox():
    """The fake's own memory is not charged to the harness at scale: one cached signature per SDK
    method however many calls (synchronicity gives a new partial per attribute access), and a
    scale fake (record=False) forgets a terminated sandbox and its files, as Modal does."""
    import tests.modal_fake as mf

    for _ in range(50):
        accepts(modal.Sandbox.exec, "true", timeout=1)
        accepts(modal.Sandbox.terminate, wait=False)
    n = len(mf._signatures)
    for _ in range(50):
        accepts(modal.Sandbox.exec, "true", timeout=1)
        accepts(modal.Sandbox.terminate, wait=False)
    assert len(mf._signatures) == n
    with pytest.raises(TypeError):
        accepts(modal.Sandbox.exec, "true", no_such_arg=1)
    fake = FakeModal(record=False)
    app = fake.App.lookup("a", create_if_missing=True)
    sb = fake.Sandbox.create("sleep", "infinity", app=app)
    sb.filesystem.write_bytes(b"x" * 1000, "/tmp/f")
    assert list(fake.sandboxes) == [sb.object_id]
    sb.terminate()
    assert fake.sandboxes == {} and sb.files == {}


def test_scale_500_runs_at_parallel_200(tmp_path):
    """500 runs, 200 at once, through the real Runner/lifecycle/grading on the fake SDK (small
    latencies). Every run completes with reward 1.0, every sandbox is terminated, one image build."""
    out = run_scale(tmp_path, latency={"create": 0.2, "exec": 0.01, "fs": 0.01, "terminate": 0.01})
    print("\nmodal scale:", {k: v for k, v in out.items() if k != "manifest"})
    assert out["statuses"] == {"completed": 500} and out["rewards"] == [1.0]
    assert out["sandboxes_created"] == 1000 and out["left_running"] == 0 and out["image_builds"] == 1
    assert out["peak_threads"] <= 64  # cooperative runs: no thread per run in flight, nothing per sandbox
    # file handles are transient (in-flight transfers, log appends): bounded by the runs in
    # progress (200), not by the 500 runs of the rollout
    assert out["peak_fds"] - out["start_fds"] < 200


def test_check_command_rejects_what_modal_cannot_build(tmp_path):
    """`check` on a config with backend = "modal": exit 2, the Dockerfile and its line named; the
    same task passes on Docker (which builds ADD of a local file)."""
    import subprocess
    import sys

    make_task(tmp_path / "t", HEAD + "RUN true\nADD data.txt /d\n")
    for backend, rc in (("modal", 2), ("docker", 0)):
        cfg = tmp_path / f"{backend}.toml"
        cfg.write_text(f'name = "x"\nbackend = "{backend}"\n[[tasks]]\nprepared_dir = "{tmp_path / "t"}"\nagent = "nop"\n')
        r = subprocess.run([sys.executable, str(ROOT / "scripts" / "eval_rollouts.py"), "--data-dir",
                            str(tmp_path / "data"), "check", str(cfg)], capture_output=True, text=True,
                           env={**os.environ, "SANDBOX_BACKEND": ""}, timeout=60)  # fmt: skip
        assert r.returncode == rc, r.stdout + r.stderr
        if rc:
            assert "environment/Dockerfile: line 4: 'ADD data.txt' copies a local file" in r.stderr.replace("\n", "")


def test_trusted_toolchain_grading_is_refused_on_modal_before_any_run(tmp_path):
    """A shared-mode task (trusted-toolchain: the toolchain is verified from outside, which the Modal
    backend cannot list) on backend = "modal": `check` and `run` exit 2 naming the entry and the
    ways out — never a rollout whose every run fails the toolchain check as a counted agent error.
    The same task on docker checks valid; the same config with --no-eval (nothing graded) is not
    refused for it."""
    import shutil
    import subprocess
    import sys

    from rollouts.config import load_config
    from rollouts.run.services import check_grading, grading_problems

    task = tmp_path / "shared_task"
    shutil.copytree(ROOT / "data" / "tasks" / "prepared" / "shell_hello_file", task)
    meta = json.loads((task / "tb_meta.json").read_text())
    meta["tests"] = {**meta.get("tests", {}), "mode": "shared"}
    (task / "tb_meta.json").write_text(json.dumps(meta))
    env = {**os.environ, "SANDBOX_BACKEND": ""}
    cli = [sys.executable, str(ROOT / "scripts" / "eval_rollouts.py"), "--data-dir", str(tmp_path / "data")]
    for backend, rc in (("modal", 2), ("docker", 0)):
        cfg = tmp_path / f"{backend}.toml"
        cfg.write_text(f'name = "x"\nbackend = "{backend}"\n[[tasks]]\nprepared_dir = "{task}"\nagent = "oracle"\n')
        r = subprocess.run([*cli, "check", str(cfg)], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == rc, r.stdout + r.stderr
        problems = grading_problems(load_config(cfg))
        if rc:
            assert "refused  tasks[0].backend:" in r.stdout and "trusted-toolchain" in r.stdout
            assert [f for f, _ in problems] == ["tasks[0].backend"]
            with pytest.raises(ConfigError) as e:
                check_grading(load_config(cfg))
            assert e.value.field == "tasks[0].backend" and 'tests.toolchain = "agent"' in str(e.value)
            check_grading(load_config(cfg), grade=False)  # --no-eval: nothing to verify
            r = subprocess.run([*cli, "run", str(cfg)], capture_output=True, text=True, env=env, timeout=60)
            assert r.returncode == 2 and "trusted-toolchain" in r.stderr, r.stdout + r.stderr
            assert not (tmp_path / "data" / "rollouts" / "x").exists()  # refused before any rollout
        else:
            assert problems == []
    cfg = tmp_path / "installed.toml"  # an installed agent off Docker: refused by check as by run
    cfg.write_text(f'name = "x"\nbackend = "modal"\n[[tasks]]\nprepared_dir = "{task}"\nagent = "codex"\n'
                   'model = "local"\n')
    r = subprocess.run([*cli, "check", str(cfg)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "refused  tasks[0].backend: agent 'codex' runs on the docker backend only" in r.stdout
