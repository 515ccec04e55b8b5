"""A stand-in for the ``modal`` module whose Sandboxes are real Docker containers.

The Modal adapter (``rollouts/sandbox/modal.py``) runs on it in the contract suite, so its
in-sandbox commands (tar helpers, ``runuser``, long commands through a file, ``timeout -k``) run
for real on the base image. Like Modal (``io_streams.py``, ``container_process.py``): an exec's
stdin stays open until ``write_eof()`` + ``drain()`` (a real socket, half-closed then), its
streams end at the exec deadline and ``wait()`` then returns -1; file calls raise the SDK's
``SandboxFilesystem*Error`` types; every call has its ``.aio`` twin. ``init="dumb-init"`` runs
the sandbox as Modal does: ``dumb-init`` as PID 1 with the command wrapped in ``sh -c``.
"""

from __future__ import annotations

import asyncio
import io
import posixpath
import shutil
import socket
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import docker.errors
import modal
from docker.utils.socket import frames_iter
from modal import exception as mexc
from modal.sandbox.sandbox import SandboxFilesystem
from modal.types import FileInfo, FileType

from tests.modal_fake import _Bound, _ListFn, accepts, dual


class DockerProcess:
    """``ContainerProcess`` over one Docker exec attached by a socket (stdin included)."""

    def __init__(self, api, exec_id: str, sock, text: bool, deadline: float | None):
        self.api, self.exec_id, self.sock, self.text, self.deadline = api, exec_id, sock, text, deadline
        self.out, self.err, self.code = bytearray(), bytearray(), None
        self.stdin = SimpleNamespace(write_eof=self._eof, drain=_Bound(self._drain))
        self._eof_wanted = False
        self._task = asyncio.get_running_loop().create_task(asyncio.to_thread(self._pump))
        self.stdout = _Stream(self, 1)
        self.stderr = _Stream(self, 2)

    def _eof(self) -> None:
        self._eof_wanted = True

    async def _drain(self) -> None:
        if self._eof_wanted:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                raise mexc.ConflictError("process already exited") from None

    def _pump(self) -> None:
        try:
            if self.deadline is not None:
                self.sock.settimeout(max(0.01, self.deadline - time.monotonic()))
            for stream, data in frames_iter(self.sock, tty=False):
                (self.out if stream == 1 else self.err).extend(data)
                if self.deadline is not None:
                    self.sock.settimeout(max(0.01, self.deadline - time.monotonic()))
        except TimeoutError:
            self.code = -1  # Modal's exec deadline: the streams end, wait() is -1
        finally:
            self.sock.close()
        while self.code is None:
            info = self.api.exec_inspect(self.exec_id)
            if not info.get("Running"):
                self.code = info.get("ExitCode")
            else:
                time.sleep(0.02)

    @dual
    async def wait(self) -> int:
        await asyncio.shield(self._task)
        return self.code


class _Stream:
    def __init__(self, proc: DockerProcess, which: int):
        self.proc, self.which = proc, which

    async def _chunks(self):
        await asyncio.shield(self.proc._task)
        data = bytes(self.proc.out if self.which == 1 else self.proc.err)
        if data:
            yield data.decode() if self.proc.text else data

    def __aiter__(self):
        return self._chunks()


class DockerModalSandbox:
    """A Modal ``Sandbox`` handle backed by one Docker container."""

    def __init__(self, sdk: DockerModal, container):
        self.sdk, self.c, self.object_id = sdk, container, container.id
        self.filesystem = DockerModalFilesystem(self)

    def _api(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except docker.errors.NotFound:
            raise mexc.ConflictError("Sandbox already finished") from None

    @dual
    async def exec(self, *args, **kwargs):
        accepts(modal.Sandbox.exec, *args, **kwargs)
        env = dict(kwargs.get("env") or {})
        for s in kwargs.get("secrets") or []:
            env.update(self.sdk.secret_env[id(s)])
        api = self.sdk.client.api
        ex = await asyncio.to_thread(self._api, api.exec_create, self.c.id, list(args), stdin=True,
                                     workdir=kwargs.get("workdir"), environment=env)  # fmt: skip
        sock = await asyncio.to_thread(self._api, api.exec_start, ex["Id"], socket=True)
        deadline = kwargs.get("timeout")
        return DockerProcess(api, ex["Id"], sock._sock, kwargs.get("text", True),
                             None if deadline is None else time.monotonic() + deadline)  # fmt: skip

    async def sh(self, *argv: str) -> tuple[int, bytes]:
        p = await self.exec.aio(*argv, text=False)
        p.stdin.write_eof()
        await p.stdin.drain.aio()
        code = await p.wait.aio()
        return code, bytes(p.out) + bytes(p.err)

    @dual
    async def terminate(self, *, wait=False):
        accepts(modal.Sandbox.terminate, wait=wait)
        try:
            await asyncio.to_thread(self.c.remove, force=True)
        except docker.errors.NotFound:
            pass

    @dual
    async def poll(self):
        try:
            await asyncio.to_thread(self.c.reload)
        except docker.errors.NotFound:
            return 137
        return None if self.c.status == "running" else 0

    @dual
    async def snapshot_filesystem(self, timeout=55, *, ttl=30 * 24 * 3600):
        accepts(modal.Sandbox.snapshot_filesystem, timeout, ttl=ttl)
        image = await asyncio.to_thread(self._api, self.c.commit)
        self.sdk.snapshots.append(image.id)
        return SimpleNamespace(object_id=image.id)

    @dual
    async def detach(self):
        pass

    @dual
    async def get_tags(self):
        return {k: v for k, v in (self.c.labels or {}).items() if k != "rollouts.fake"}


class DockerModalFilesystem:
    """``sandbox.filesystem`` on a container, raising the SDK's SandboxFilesystem*Error types."""

    def __init__(self, sb: DockerModalSandbox):
        self.sb = sb

    @dual
    async def write_bytes(self, data, remote_path):
        accepts(SandboxFilesystem.write_bytes, data, remote_path)
        parent, name = posixpath.split(remote_path)
        if (await self.sb.sh("test", "-d", remote_path))[0] == 0:
            raise mexc.SandboxFilesystemIsADirectoryError(f"Is a directory: {remote_path}")
        if (await self.sb.sh("mkdir", "-p", parent))[0] != 0:
            raise mexc.SandboxFilesystemNotADirectoryError(f"Not a directory: {remote_path}")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            tar.addfile(ti, io.BytesIO(bytes(data)))
        await asyncio.to_thread(self.sb._api, self.sb.c.put_archive, parent, buf.getvalue())

    @dual
    async def read_bytes(self, remote_path):
        accepts(SandboxFilesystem.read_bytes, remote_path)
        if (await self.sb.sh("test", "-d", remote_path))[0] == 0:
            raise mexc.SandboxFilesystemIsADirectoryError(f"Is a directory: {remote_path}")

        def fetch():
            stream, _ = self.sb.c.get_archive(remote_path)
            return b"".join(stream)

        try:
            raw = await asyncio.to_thread(fetch)
        except docker.errors.NotFound:
            raise mexc.SandboxFilesystemNotFoundError(f"No such file or directory: {remote_path}") from None
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            return tar.extractfile(tar.next()).read()

    @dual
    async def stat(self, remote_path):
        accepts(SandboxFilesystem.stat, remote_path)
        code, out = await self.sb.sh("stat", "-c", "%s|%F|%a", remote_path)
        if code != 0:
            raise mexc.SandboxFilesystemNotFoundError(f"No such file or directory: {remote_path}")
        size, kind, mode = out.decode().strip().split("|")
        ftype = FileType.DIRECTORY if kind == "directory" else FileType.FILE
        return FileInfo(name=posixpath.basename(remote_path), path=remote_path, type=ftype, size=int(size),
                        mode=int(mode, 8), permissions=mode, owner="root", group="root", modified_time=0.0,
                        symlink_target=None)  # fmt: skip

    @dual
    async def copy_from_local(self, local_path, remote_path):
        accepts(SandboxFilesystem.copy_from_local, local_path, remote_path)
        await self.write_bytes.aio(Path(local_path).read_bytes(), remote_path)

    @dual
    async def copy_to_local(self, remote_path, local_path):
        accepts(SandboxFilesystem.copy_to_local, remote_path, local_path)
        Path(local_path).write_bytes(await self.read_bytes.aio(remote_path))

    @dual
    async def remove(self, remote_path, *, recursive=False):
        accepts(SandboxFilesystem.remove, remote_path, recursive=recursive)
        if (await self.sb.sh("test", "-e", remote_path))[0] != 0:
            raise mexc.SandboxFilesystemNotFoundError(f"No such file or directory: {remote_path}")
        await self.sb.sh("rm", "-rf" if recursive else "-f", remote_path)


DUMB_INIT = "/usr/bin/dumb-init"  # Debian package dumb-init (scripts/setup.sh installs it)


class DockerModal:
    """A stand-in for the ``modal`` module whose Sandboxes are Docker containers (``Image.from_id``
    takes a local image reference). ``init``: "docker" (docker-init as PID 1, the command its
    child) or "dumb-init" (Modal's PID 1, the command wrapped in ``sh -c``). Lifetimes are not
    enforced; tests stop what they start."""

    exception = mexc

    def __init__(self, client, init: str = "docker"):
        self.client, self.init = client, init
        self.secret_env: dict[int, dict] = {}
        self.snapshots: list[str] = []  # images from snapshot_filesystem(); removed by cleanup()
        self.App = SimpleNamespace(lookup=_Bound(self._lookup))
        self.Image = SimpleNamespace(from_id=lambda ref, **kw: SimpleNamespace(object_id=ref))
        self.Secret = SimpleNamespace(from_dict=self._secret)
        self.Sandbox = SimpleNamespace(create=_Bound(self._create), list=_ListFn(self), from_id=_Bound(self._from_id))

    def cleanup(self) -> None:
        """Remove the snapshot images (after the sandboxes made from them are gone)."""
        for ref in self.snapshots:
            try:
                self.client.images.remove(ref, force=True)
            except docker.errors.NotFound:
                pass
        self.snapshots.clear()

    async def _lookup(self, name, **kw):
        return SimpleNamespace(app_id="ap-docker", name=name)

    def _secret(self, env_dict):
        secret = modal.Secret.from_dict(env_dict)
        self.secret_env[id(secret)] = dict(env_dict)
        return secret

    async def _create(self, *args, **kw):
        accepts(modal.Sandbox.create, *args, **kw)
        env = dict(kw.get("env") or {})
        for s in kw.get("secrets") or []:
            env.update(self.secret_env[id(s)])
        opts = dict(
            detach=True, environment=env, labels={**kw["tags"], "rollouts.fake": "modal"},
            working_dir=kw.get("workdir") or "/", network_mode="none" if kw.get("block_network") else "bridge",
            nano_cpus=int(kw["cpu"][1] * 1e9), mem_limit=f"{kw['memory'][1]}m",
        )  # fmt: skip
        if self.init == "dumb-init":
            return DockerModalSandbox(self, await asyncio.to_thread(self._create_dumb_init, kw, args, opts))
        c = await asyncio.to_thread(self.client.containers.run, kw["image"].object_id, command=list(args),
                                    init=True, **opts)  # fmt: skip
        return DockerModalSandbox(self, c)

    def _create_dumb_init(self, kw, args, opts):
        """PID 1 ``dumb-init``, its child ``sh -c CMD`` (a shell that stays: a second statement)."""
        opts.pop("detach")
        cmd = " ".join(args) + "; exit $?"
        c = self.client.containers.create(kw["image"].object_id, entrypoint=[DUMB_INIT], command=["sh", "-c", cmd],
                                          **opts)  # fmt: skip
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(shutil.which("dumb-init") or DUMB_INIT, arcname="dumb-init")
        try:
            c.put_archive("/usr/bin", buf.getvalue())
            c.start()
        except BaseException:
            c.remove(force=True)
            raise
        return c

    async def _list(self, **kw):
        accepts(modal.Sandbox.list, **kw)
        labels = ["rollouts.fake=modal", *(f"{k}={v}" for k, v in (kw.get("tags") or {}).items())]
        for c in await asyncio.to_thread(self.client.containers.list, filters={"label": labels}):
            yield DockerModalSandbox(self, c)

    async def _from_id(self, sandbox_id, **kw):
        try:
            return DockerModalSandbox(self, await asyncio.to_thread(self.client.containers.get, sandbox_id))
        except docker.errors.NotFound:
            raise mexc.NotFoundError(f"Sandbox {sandbox_id} not found") from None
