"""One Docker container per run (:class:`DockerSandbox`); the backend is ``docker.py``.

One container per run: ``sleep infinity`` under ``init=True`` (so SIGTERM works), labelled with
the tool, rollout id, run id and harness pid; cpu/memory/pids limits; ``network_mode="none"``
unless the task asks for network, or the rollout's internal gateway network
(``SandboxSpec.network`` a ``NetworkAttachment``, see ``rollouts.gateway.network``). Each exec is ``timeout -k 2 <s> bash -c CMD`` inside the
container (Docker's exec API has no timeout or kill), streamed with an output cap. A timer removes
the container at ``spec.lifetime_sec`` as the backstop. Measured floor on these machines: ~0.3 s to
start, ~75 ms per exec round trip (``shared/ANCHORS.md``).
"""

from __future__ import annotations

import io
import posixpath
import shutil
import tarfile
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import docker
import docker.errors

from rollouts.errors import (
    OutputLimitExceeded,
    SandboxEndedError,
    SandboxError,
    SandboxFileNotFound,
)
from rollouts.sandbox import aioloop
from rollouts.sandbox.base import (
    DEFAULT_OUTPUT_LIMIT,
    CappedOutput,
    ExecResult,
    NetworkAttachment,
    Sandbox,
    SandboxSpec,
    wrap_command,
)
from rollouts.sandbox.docker_engine import TRANSPORT_ERRORS, engine_cpus, force_remove, short_error

RESTART_READY_SEC = 10.0  # bound on the wait for a restarted container to accept an exec
RESTART_ATTEMPTS = 2  # restarts before that wait counts as an infra error


class DockerSandbox(Sandbox):
    """A container for one run. See the module docstring for the guarantees."""

    def __init__(self, client: docker.DockerClient, spec: SandboxSpec):
        self.client = client
        self.spec = spec
        self.container = None
        self._stopped = False
        self._timer: Future | None = None
        self._lock = threading.Lock()
        self.on_missing_image = lambda ref: None

    @property
    def id(self) -> str | None:
        return self.container.id if self.container else None

    def start(self) -> None:
        if self.container is not None:
            return
        s = self.spec
        try:
            # PID 1 (under docker-init) sleeps until the hard deadline: the container ends by
            # itself even if the harness is killed with -9 (auto_remove then deletes it).
            life = ["sleep", str(int(s.lifetime_sec) + 30)] if s.lifetime_sec else ["sleep", "infinity"]
            if isinstance(s.network, NetworkAttachment):  # the rollout's internal gateway network
                # Its DNS resolves nothing outside; fail lookups in ~2 s instead of 20 s.
                net = {"network": s.network.name, "dns_opt": ["timeout:1", "attempts:1"]}
            else:
                net = {"network_mode": "bridge" if s.network else "none"}
            self.container = self.client.containers.run(
                s.image,
                command=life,
                detach=True,
                init=True,
                labels=s.labels,
                name=s.name,
                working_dir="/",
                environment=s.env,
                **net,
                nano_cpus=int(min(s.cpus, engine_cpus(self.client)) * 1e9),  # a task asking more: all there is
                mem_limit=f"{s.memory_mb}m",
                memswap_limit=f"{s.memory_mb}m",
                pids_limit=s.pids,
                auto_remove=bool(s.lifetime_sec),
                volumes={name: {"bind": path, "mode": "ro"} for name, path in s.volumes},
            )
        except docker.errors.ImageNotFound as e:
            self.on_missing_image(s.image)  # removed meanwhile: the retry looks it up (or builds) again
            raise SandboxError(f"image not found: {s.image} ({e.explanation})") from None
        except TRANSPORT_ERRORS as e:
            raise SandboxError(f"container failed to start: {short_error(e)}{self._cleanup_by_name()}") from None
        if self._stopped:  # stop() ran while the container was being created (cancel)
            self._stopped = False
            self.stop()
            raise SandboxError("sandbox was stopped while starting (cancelled)")
        if s.lifetime_sec:  # a coroutine timer: no thread per live sandbox
            self._timer = aioloop.call_later(s.lifetime_sec, self._deadline)

    def _deadline(self) -> None:
        self.stop()

    def _cleanup_by_name(self) -> str:
        """Remove what a failed start left under ``spec.name``. Returns "" or a note for the error
        naming a container that could not be removed (it carries our owner labels: the reaper
        removes it once this process is gone)."""
        if not self.spec.name:
            return ""
        try:
            force_remove(self.client.containers.get(self.spec.name))
        except docker.errors.NotFound:
            return ""
        except (SandboxError, *TRANSPORT_ERRORS) as e:
            return f"; leftover container {self.spec.name} not removed ({short_error(e)})"
        return ""

    def _need(self):
        if self.container is None or self._stopped:
            raise SandboxError("sandbox is not running (stopped or never started)")
        return self.container

    def exec(
        self,
        cmd: str | list[str],
        *,
        timeout: float | None = 60,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> ExecResult:
        c = self._need()
        argv = wrap_command(cmd, timeout)
        out, err = CappedOutput(output_limit), CappedOutput(output_limit)
        t0 = time.monotonic()
        try:
            ex = self.client.api.exec_create(
                c.id, argv, stdout=True, stderr=True, workdir=cwd, environment=env, user=user or ""
            )
            for o, e in self.client.api.exec_start(ex["Id"], stream=True, demux=True):
                if o:
                    out.add(o)
                if e:
                    err.add(e)
            code = self.client.api.exec_inspect(ex["Id"]).get("ExitCode")
        except TRANSPORT_ERRORS as e:
            if self._stopped:
                raise SandboxError("sandbox was removed (run deadline reached or cancelled)") from None
            self._raise_gone_or(e, "exec")
        dur = time.monotonic() - t0
        if code is None:
            self._raise_gone_or(SandboxError("exec ended without an exit code"), "exec")
        timed_out = timeout is not None and code in (124, 137) and dur >= timeout - 0.5
        return ExecResult(
            exit_code=code,
            stdout=out.text(),
            stderr=err.text(),
            timed_out=timed_out,
            duration_sec=dur,
            stdout_bytes=out.total,
            stderr_bytes=err.total,
            truncated=out.truncated or err.truncated,
        )

    def restart_processes(self) -> None:
        """``docker restart -t 0``: SIGKILL to the whole PID namespace, same filesystem. Returns
        once the engine accepts an exec again: right after a restart runc can still refuse one
        ("cannot exec in a stopped state", exit 126), which is the engine's state, not the agent's;
        rarely (seen under load) it keeps refusing, so after ``RESTART_READY_SEC`` the container is
        restarted again, ``RESTART_ATTEMPTS`` in all (killing everything again changes nothing else). Raises
        SandboxEndedError / SandboxError as the other calls do; SandboxError naming the last
        refusal if no attempt is accepted."""
        c = self._need()
        last = ""
        try:
            for _ in range(RESTART_ATTEMPTS):
                c.restart(timeout=0)
                deadline = time.monotonic() + RESTART_READY_SEC
                while time.monotonic() <= deadline:
                    c.reload()
                    if c.status == "running":
                        try:
                            r = c.exec_run(["true"])
                            if r.exit_code == 0:
                                return
                            last = f"exit {r.exit_code}: {(r.output or b'').decode(errors='replace').strip()[:200]}"
                        except docker.errors.APIError as e:  # the same refusal, raised: poll again
                            last = short_error(e)
                    else:
                        last = f"status {c.status}"
                    time.sleep(0.05)
        except TRANSPORT_ERRORS as e:
            self._raise_gone_or(e, "restart")
        raise SandboxError(f"container {c.short_id} did not accept an exec within {RESTART_READY_SEC:g}s of "
                           f"each of {RESTART_ATTEMPTS} restarts (last: {last})")

    def changed_paths(self) -> list[str]:
        """``docker diff``, computed by the engine outside the container."""
        c = self._need()
        try:
            return [ch["Path"] for ch in (c.diff() or [])]
        except TRANSPORT_ERRORS as e:
            self._raise_gone_or(e, "diff")

    def _raise_gone_or(self, e: BaseException, what: str):
        """SandboxEndedError if the container ended without us stopping it (its main process was
        killed from inside: the agent's doing), else SandboxError (infra)."""
        if not self._stopped:
            # 409 from the engine: the container exists but is not running
            gone = isinstance(e, docker.errors.APIError) and e.status_code == 409
            try:
                self.container.reload()
                gone = gone or self.container.status not in ("running", "restarting")
            except docker.errors.NotFound:
                gone = True
            except TRANSPORT_ERRORS:
                pass
            if gone and not self._stopped:
                raise SandboxEndedError(
                    "the sandbox ended during the run without the harness stopping it (its main process "
                    "was killed from inside): a counted agent failure"
                ) from None
        raise SandboxError(f"{what} failed: {short_error(e)}") from None

    def _mkdir(self, path: str) -> None:
        r = self.exec(["mkdir", "-p", path], timeout=30)
        if r.exit_code != 0:
            raise SandboxError(f"cannot create {path} in the sandbox: {r.output.strip()[:200]}")

    def _put_archive(self, parent: str, data, what: str) -> None:
        """put_archive into ``parent``; only if it does not exist, create it (one exec) and retry.
        Saves an exec round trip (~75 ms) on every copy into an existing directory."""
        c = self._need()
        for attempt in (1, 2):
            try:
                c.put_archive(parent, data)
                return
            except docker.errors.NotFound:
                if attempt == 2:
                    raise SandboxError(f"copy into sandbox failed ({what}): {parent} missing") from None
                self._mkdir(parent)
                if hasattr(data, "seek"):
                    data.seek(0)
            except TRANSPORT_ERRORS as e:
                raise SandboxError(f"copy into sandbox failed ({what}): {short_error(e)}") from None

    def put_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        parent, name = posixpath.split(path)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), mode, int(time.time())
            tar.addfile(ti, io.BytesIO(data))
        self._put_archive(parent or "/", buf.getvalue(), path)

    def put_dir(self, src: Path, dest: str) -> None:
        """The archive holds ``basename(dest)/…`` (with its directory entry) and is unpacked in
        ``dirname(dest)``, so a new ``dest`` needs no separate mkdir."""
        dest = posixpath.normpath(dest)
        parent, top = posixpath.split(dest)
        if not top:  # dest == "/"
            parent, top = "/", "."

        def owner_root(ti: tarfile.TarInfo) -> tarfile.TarInfo:
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = "root"
            return ti

        with tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024) as f:
            with tarfile.open(fileobj=f, mode="w") as tar:
                if top != ".":
                    ti = tarfile.TarInfo(top)
                    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
                    tar.addfile(owner_root(ti))
                for p in sorted(Path(src).iterdir()):
                    tar.add(p, arcname=f"{top}/{p.name}", filter=owner_root)
            f.seek(0)
            self._put_archive(parent or "/", f, dest)

    def _archive(self, path: str, max_bytes: int, f, cap: int | None = None) -> None:
        """The tar archive of ``path`` into ``f``; OutputLimitExceeded (naming ``cap``, default
        ``max_bytes``) once it passes ``max_bytes``."""
        c = self._need()
        try:
            stream, _stat = c.get_archive(path)
            n = 0
            for chunk in stream:
                n += len(chunk)
                if n > max_bytes:
                    raise OutputLimitExceeded(path, cap or max_bytes)
                f.write(chunk)
        except docker.errors.NotFound:
            raise SandboxFileNotFound(path) from None
        except TRANSPORT_ERRORS as e:
            raise SandboxError(f"copy out of sandbox failed ({path}): {short_error(e)}") from None
        f.seek(0)

    def get_file(self, path: str, max_bytes: int = 64 * 1024 * 1024) -> bytes:
        with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as f:
            self._archive(path, max_bytes + 1024 * 1024, f, cap=max_bytes)  # + tar headers
            with tarfile.open(fileobj=f, mode="r|") as tar:
                m = tar.next()  # the archive of a file is that one member; of a directory, the dir first
                if m is not None and m.isfile():
                    if m.size > max_bytes:
                        raise OutputLimitExceeded(path, max_bytes, m.size)
                    return tar.extractfile(m).read()
        raise SandboxFileNotFound(path)  # a directory or a special file: no file there

    def get_dir(self, src: str, dest: Path, max_bytes: int = 256 * 1024 * 1024) -> None:
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile() as f:
            self._archive(src.rstrip("/") or "/", max_bytes, f)
            with tarfile.open(fileobj=f, mode="r|") as tar:
                tar.extractall(tmp, filter="data")
            top = Path(tmp) / (posixpath.basename(src.rstrip("/")) or ".")
            for p in top.iterdir():
                target = dest / p.name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                shutil.move(str(p), str(target))

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        if self._timer:
            self._timer.cancel()
        if self.container is None:
            return
        force_remove(self.container)
