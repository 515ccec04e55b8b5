"""One Modal Sandbox (``modal`` SDK >= 1.6.2, its ``.aio`` API); the backend is ``modal.py``.

One Modal Sandbox per run in the App ``rollouts``: ``sleep infinity``, tagged with the run's labels
(tool, rollout id, run id, harness pid/host), cpu and memory as request = limit, ``block_network``
unless the task needs network, ``timeout`` = ``spec.lifetime_sec`` (Modal ends it then: the
backstop past the run's deadline). All I/O runs as coroutines on one background loop
(``rollouts/sandbox/aioloop.py``); the blocking interface waits on them. SDK facts relied on,
read in ``modal/`` 1.6.4:

- ``Sandbox.exec`` leaves the process's stdin open until ``proc.stdin.write_eof()`` + ``drain()``
  (``io_streams.py``): we close it at once, so a command reading stdin gets EOF as on Docker.
  stdout, stderr and ``wait()`` are read concurrently, as the SDK's own file calls do
  (``sandbox/_filesystem.py``). When an exec's ``timeout`` passes, the streams just end and
  ``wait()`` returns -1 (``container_process.py``); commands are also wrapped in ``timeout -k``
  so the process tree dies inside the sandbox first. No ``user`` argument (``runuser``/``setpriv``),
  argv at most 2**16 characters (longer commands go through a script file), ``text=True``
  decodes strictly: we read bytes.
- ``sb.filesystem`` calls run a helper through exec and translate its failures
  (``_utils/sandbox_fs_utils.py``): ``NotFoundError``/``ServiceError``/``ConnectionError`` become
  ``NotFoundError("The Sandbox is unavailable...")`` and any other Modal error a bare
  ``SandboxFilesystemError("An unexpected error occurred...")``. So a ``NotFoundError`` from a
  file call is checked with ``poll()``: still running = a transient blip, retried; finished =
  the sandbox is gone. A bare ``SandboxFilesystemError`` is retried too; its subclasses
  (not found, is a directory, permission, too large) are answers, not retried.
- ``Sandbox.create`` waits up to 21 min for capacity itself (``_SANDBOX_SCHEDULING_TIMEOUT``)
  and then raises ``ResourceExhaustedError("Insufficient capacity...")``: that is not retried
  here (:class:`SandboxCapacityError`); rate limits (quick ``ResourceExhaustedError``) are, within
  ``capacity_wait_sec`` in total.
- grpclib's ``StreamTerminatedError`` (a dropped stream) and the SDK's ``ValueError`` ("empty
  message streaming stdio", a closed stdin) are transport failures: SandboxError.
- ``Sandbox.list(app_id=, tags=)`` yields running sandboxes only. No token: ``AuthError`` at
  once (``client.py``); server unreachable: ``ConnectionError`` after about a minute.

The SDK module is injectable (``ModalBackend(sdk=...)``) so tests run the adapter on fakes.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rollouts.sandbox.modal import ModalBackend

from rollouts.errors import OutputLimitExceeded, SandboxError, SandboxFileNotFound
from rollouts.redact import secret_values
from rollouts.sandbox import aioloop, base
from rollouts.sandbox.base import CappedOutput, ExecResult, Sandbox, SandboxSpec

ARGV_LIMIT = 60 * 1024  # characters; the SDK refuses more than 2**16 in total
DEFAULT_LIFETIME_SEC = 3600  # for a spec without lifetime_sec
MAX_LIFETIME_SEC = 24 * 3600  # Modal's maximum sandbox timeout
EXEC_SLACK_SEC = base.KILL_GRACE_SEC + 5  # Modal's exec deadline comes after our in-sandbox timeout
# In-sandbox helpers, run as ``bash -c SCRIPT NAME ARG...`` (the test fakes recognise them).
PUT_DIR_SCRIPT = 'mkdir -p -- "$1" && tar -xf "$2" -C "$1"; rc=$?; rm -f -- "$2"; exit $rc'
GET_DIR_SCRIPT = 'test -d "$1" || exit 44; tar -cf "$2" -C "$1" . && stat -c %s "$2"'

def as_user(argv: list[str], user: str | None) -> list[str]:
    """``argv`` run as ``user`` (Modal execs run as root): a name via ``runuser -u`` (HOME and USER
    set, environment and process group kept, so ``timeout`` still kills the tree), a numeric
    ``uid[:gid]`` via ``setpriv``."""
    if not user or user in ("root", "0", "0:0"):
        return argv
    uid, _, gid = user.partition(":")
    if uid.isdigit():
        return ["setpriv", f"--reuid={uid}", f"--regid={gid or uid}", "--clear-groups", "--", *argv]
    return ["runuser", "-u", uid, "--", *argv]


def split_env(env: dict[str, str] | None) -> tuple[dict[str, str], dict[str, str]]:
    """(plain, secret) parts of ``env``: a name looks secret as in ``rollouts.redact.secret_values``."""
    plain: dict[str, str] = {}
    secret: dict[str, str] = {}
    for k, v in (env or {}).items():
        (secret if secret_values({k: v}) else plain)[k] = v
    return plain, secret


def _owner_root(ti: tarfile.TarInfo) -> tarfile.TarInfo:
    ti.uid, ti.gid, ti.uname, ti.gname = 0, 0, "root", "root"
    return ti


class ModalSandbox(Sandbox):
    """One Modal Sandbox for one run, with the interface's guarantees (``base.py``). Each blocking
    method has a coroutine twin (``astart``, ``aexec``, ...) for callers on the loop."""

    def __init__(self, backend: ModalBackend, spec: SandboxSpec):
        self.backend, self.spec = backend, spec
        self.sb: Any = None
        self._stopped = False
        self._lock: asyncio.Lock | None = None  # created on the loop

    @property
    def id(self) -> str | None:
        return self.sb.object_id if self.sb is not None else None

    def _alock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    # ------------------------------------------------------------------ blocking interface
    def start(self) -> None:
        """``Sandbox.create`` (rate limits retried). SandboxError if Modal refuses,
        SandboxCapacityError when Modal found no capacity within its own ~21 min wait."""
        aioloop.run(self.astart())

    def exec(self, cmd: str | list[str], *, timeout: float | None = 60, cwd: str | None = None,
             env: dict[str, str] | None = None, user: str | None = None,
             output_limit: int = base.DEFAULT_OUTPUT_LIMIT) -> ExecResult:  # fmt: skip
        """See :meth:`aexec`."""
        return aioloop.run(self.aexec(cmd, timeout=timeout, cwd=cwd, env=env, user=user, output_limit=output_limit))

    def put_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """``filesystem.write_bytes`` (parents created); one ``chmod`` exec for a mode other than 0644."""
        aioloop.run(self.aput_file(path, data, mode))

    def put_dir(self, src: Path, dest: str) -> None:
        """``src``'s contents as one tar (owner root) through ``copy_from_local``, unpacked into ``dest``."""
        aioloop.run(self.aput_dir(src, dest))

    def get_file(self, path: str, max_bytes: int = 64 * 1024 * 1024) -> bytes:
        """``stat`` then ``read_bytes``. SandboxFileNotFound if missing or a directory;
        OutputLimitExceeded for a file over ``max_bytes``."""
        return aioloop.run(self.aget_file(path, max_bytes))

    def get_dir(self, src: str, dest: Path, max_bytes: int = 256 * 1024 * 1024) -> None:
        """``src`` tarred in the sandbox, fetched with ``copy_to_local``, unpacked into ``dest`` with
        ``filter="data"``. SandboxFileNotFound if ``src`` is no directory; OutputLimitExceeded over ``max_bytes``."""
        aioloop.run(self.aget_dir(src, dest, max_bytes))

    def stop(self) -> None:
        """``terminate()`` (retried), then ``detach()`` to close this client's connection to it.
        Idempotent, never raises: a sandbox that could not be terminated still ends at its
        ``timeout`` and is found by ``list_leftovers``."""
        aioloop.run(self.astop())

    # ------------------------------------------------------------------ coroutines
    async def astart(self) -> None:
        async with self._alock():  # a concurrent stop() waits, then terminates what was created
            if self.sb is not None:
                return
            if self._stopped:
                raise SandboxError("sandbox was stopped before it started")
            self._t0 = time.monotonic()
            self.sb = await self._create(self.backend.image_for(self.spec.image), self._lifetime())

    def _lifetime(self) -> int:
        s = self.spec
        life = DEFAULT_LIFETIME_SEC if s.lifetime_sec is None else math.ceil(s.lifetime_sec)
        return max(10, min(MAX_LIFETIME_SEC, life))

    async def _create(self, image: Any, lifetime: int) -> Any:
        s, b = self.spec, self.backend
        plain, secret = split_env(s.env)
        return await b.acreate_sandbox(
            "sleep", "infinity", app=await b.aapp(), image=image, name=s.name, tags=dict(s.labels),
            env=plain or None, secrets=b.secrets_for(secret), workdir="/", timeout=lifetime,
            cpu=(s.cpus, s.cpus), memory=(s.memory_mb, s.memory_mb), **_network_kwargs(s.network),
        )  # fmt: skip

    def restart_processes(self) -> None:
        """Every process of the sandbox ends and its main process starts again on the same
        filesystem. Modal cannot restart a sandbox, so: ``snapshot_filesystem()`` into an image, a
        new sandbox from it (same spec, the lifetime left), then the old one terminated. Nothing
        that ran in the old sandbox survives (it is a different container). SandboxError on failure."""
        aioloop.run(self.arestart_processes())

    async def arestart_processes(self) -> None:
        async with self._alock():
            old = self._need()
            image = await self.backend.acall("snapshot the sandbox filesystem", old.snapshot_filesystem.aio,
                                             sandbox=old)  # fmt: skip
            left = self._lifetime() - int(time.monotonic() - getattr(self, "_t0", time.monotonic()))
            self.sb = await self._create(image, max(10, left))
        try:
            await self.backend.aretry(old.terminate.aio)
            await old.detach.aio()
        except Exception:  # noqa: BLE001 - its lifetime backstop and `clean` (same tags) cover it
            pass

    def _need(self) -> Any:
        if self.sb is None or self._stopped:
            raise SandboxError("sandbox is not running (stopped or never started)")
        return self.sb

    async def aexec(self, cmd: str | list[str], *, timeout: float | None = 60, cwd: str | None = None,
                    env: dict[str, str] | None = None, user: str | None = None,
                    output_limit: int = base.DEFAULT_OUTPUT_LIMIT) -> ExecResult:  # fmt: skip
        """Run ``cmd`` under ``timeout -k`` with stdin closed; stdout, stderr and the exit code read
        concurrently, as bytes, capped per stream. ``timed_out``: killed by that timeout (exit
        124/137) or Modal's exec deadline passed (``wait()`` = -1, ``exit_code`` -1). SandboxError on
        a transport failure or a gone sandbox (execs are not retried: a command may not be idempotent)."""
        sb = self._need()
        argv = ["bash", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        script = None
        if sum(map(len, argv)) > ARGV_LIMIT:  # too long for Modal's exec: run it from a file
            script = f"/tmp/rollouts-cmd-{uuid.uuid4().hex}.sh"
            await self.aput_file(script, (cmd if isinstance(cmd, str) else "exec " + base.shell_join(argv)).encode())
            argv = ["bash", script]
        argv = base.wrap_command(as_user(argv, user), timeout)
        plain, secret = split_env(env)
        out, err = CappedOutput(output_limit), CappedOutput(output_limit)
        x = self.backend.sdk.exception
        t0 = time.monotonic()
        try:
            proc = await sb.exec.aio(
                *argv, workdir=cwd, env=plain or None, secrets=self.backend.secrets_for(secret), text=False,
                timeout=None if timeout is None else math.ceil(timeout) + EXEC_SLACK_SEC,
            )  # fmt: skip

            async def close_stdin() -> None:
                proc.stdin.write_eof()
                try:
                    await proc.stdin.drain.aio()
                except (x.ConflictError, ValueError):
                    pass  # the process already exited: the router refuses writes to its stdin

            async def pump(stream, cap: CappedOutput) -> None:
                async for chunk in stream:
                    cap.add(chunk)

            _, _, _, code = await asyncio.gather(close_stdin(), pump(proc.stdout, out), pump(proc.stderr, err),
                                                 proc.wait.aio())  # fmt: skip
        except self.backend.transport_errors as e:
            raise self.backend.translate(e, "exec", gone=self._stopped) from None
        finally:
            if script and not self._stopped:
                await self._remove_quietly(script)
        dur = time.monotonic() - t0
        timed_out = code == -1 or (timeout is not None and code in (124, 137) and dur >= timeout - 0.5)
        return ExecResult(
            exit_code=code, stdout=out.text(), stderr=err.text(), timed_out=timed_out, duration_sec=dur,
            stdout_bytes=out.total, stderr_bytes=err.total, truncated=out.truncated or err.truncated,
        )  # fmt: skip

    async def _fs(self, what: str, method: str, *args, path: str = ""):
        sb = self._need()
        return await self.backend.acall(what, getattr(sb.filesystem, method).aio, *args, path=path, sandbox=sb)

    async def _remove_quietly(self, path: str) -> None:
        try:
            await self._fs("remove", "remove", path, path=path)
        except (SandboxError, FileNotFoundError):
            pass

    async def _run(self, argv: list[str], what: str) -> ExecResult:
        r = await self.aexec(argv, timeout=300)
        if r.exit_code != 0 and r.exit_code != 44:
            raise SandboxError(f"{what} failed (exit {r.exit_code}): {r.output.strip()[-300:]}")
        return r

    async def aput_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        await self._fs(f"copy into sandbox ({path})", "write_bytes", data, path, path=path)
        if mode != 0o644:
            await self._run(["chmod", f"{mode & 0o7777:o}", path], f"chmod {path}")

    async def aput_dir(self, src: Path, dest: str) -> None:
        remote = f"/tmp/rollouts-put-{uuid.uuid4().hex}.tar"
        with tempfile.NamedTemporaryFile(suffix=".tar") as f:
            with tarfile.open(fileobj=f, mode="w") as tar:
                for p in sorted(Path(src).iterdir()):
                    tar.add(p, arcname=p.name, filter=_owner_root)
            f.flush()
            await self._fs(f"copy into sandbox ({dest})", "copy_from_local", f.name, remote, path=remote)
        await self._run(["bash", "-c", PUT_DIR_SCRIPT, "rollouts-put", dest, remote], f"unpacking into {dest}")

    async def aget_file(self, path: str, max_bytes: int = 64 * 1024 * 1024) -> bytes:
        info = await self._fs(f"stat {path}", "stat", path, path=path)
        if info.is_dir():
            raise SandboxFileNotFound(path)
        if info.size > max_bytes:
            raise OutputLimitExceeded(path, max_bytes, info.size)
        data = await self._fs(f"copy out of sandbox ({path})", "read_bytes", path, path=path)
        if len(data) > max_bytes:  # a symlink's stat size is the link's
            raise OutputLimitExceeded(path, max_bytes, len(data))
        return data

    async def aget_dir(self, src: str, dest: Path, max_bytes: int = 256 * 1024 * 1024) -> None:
        remote = f"/tmp/rollouts-get-{uuid.uuid4().hex}.tar"
        r = await self._run(["bash", "-c", GET_DIR_SCRIPT, "rollouts-get", src, remote], f"packing {src}")
        if r.exit_code == 44:
            raise SandboxFileNotFound(src)
        try:
            size = (r.stdout.split() or ["?"])[-1]
            if not size.isdigit():
                raise SandboxError(f"{src}: packing reported no archive size ({size!r})")
            if int(size) > max_bytes:
                raise OutputLimitExceeded(src, max_bytes, int(size))
            with tempfile.TemporaryDirectory() as tmp:
                local, top = Path(tmp) / "x.tar", Path(tmp) / "top"
                await self._fs(f"copy out of sandbox ({src})", "copy_to_local", remote, str(local), path=remote)
                with tarfile.open(local, mode="r") as tar:
                    tar.extractall(top, filter="data")
                Path(dest).mkdir(parents=True, exist_ok=True)
                for p in top.iterdir():
                    target = Path(dest) / p.name
                    if target.is_dir() and not target.is_symlink():
                        shutil.rmtree(target)
                    shutil.move(str(p), str(target))
        finally:
            await self._remove_quietly(remote)

    async def astop(self) -> None:
        async with self._alock():
            if self._stopped:
                return
            self._stopped, sb = True, self.sb
        if sb is None:
            return
        try:
            await self.backend.aretry(sb.terminate.aio)
        except Exception:  # noqa: BLE001 - the lifetime backstop and `clean` cover it
            pass
        try:
            await sb.detach.aio()
        except Exception:  # noqa: BLE001 - closing our side of a connection; nothing to recover
            pass


def _network_kwargs(network) -> dict:
    """Sandbox.create's network arguments for ``SandboxSpec.network`` (False / True / a
    NetworkAttachment). A gateway attachment opens egress only to the gateway's address
    (``outbound_cidr_allowlist`` of Sandbox.create, modal 1.6); see docs/modal.md (gateway)."""
    from rollouts.sandbox.base import NetworkAttachment

    if isinstance(network, NetworkAttachment):
        return {"block_network": False, "outbound_cidr_allowlist": [f"{network.gateway_host}/32"]}
    return {"block_network": not network}

