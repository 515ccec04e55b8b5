"""An in-process fake of the ``modal`` SDK (1.6.x) for the adapter tests and ``bench/bench_modal_scale.py``.

Faithful to what the SDK source documents, and tied to the real SDK wherever it can be:
- every call is bound to the real method's signature (a renamed or removed parameter fails);
  each has a blocking form and an ``.aio`` coroutine twin, as synchronicity gives the SDK's;
- errors are the real ``modal.exception`` types; file calls raise through the SDK's own
  ``translate_exec_errors`` (``_utils/sandbox_fs_utils.py``), so an injected ``ServiceError``
  arrives as ``NotFoundError("The Sandbox is unavailable...")`` and an ``InternalError`` as a
  bare ``SandboxFilesystemError``, exactly as on Modal; ``stat`` returns real ``FileInfo``;
- an exec's process has an open stdin: a command that reads it (the handler says so) waits for
  ``stdin.write_eof()`` + ``drain()``; at the exec deadline its streams end and ``wait()`` returns
  -1 without raising (``container_process.py``, ``io_streams.py``);
- ``Sandbox.create`` with ``no_capacity`` set waits ``capacity_wait`` seconds, then raises
  ``ResourceExhaustedError("Insufficient capacity to create sandbox.")`` as the SDK does after 21 min;
- task images parse their commands with the SDK's Dockerfile parser
  (``extract_copy_command_patterns``) at build time and fail the build for an ``ADD`` of a local
  file (Modal uploads only COPY sources);
- secrets are real ``modal.Secret.from_dict`` objects.
Latencies (seconds per call) are ``asyncio.sleep`` on the caller's loop: no thread per call.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import io
import itertools
import posixpath
import re
import tarfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import modal
from modal import exception as mexc
from modal._utils.docker_utils import extract_copy_command_patterns
from modal._utils.sandbox_fs_utils import translate_exec_errors, validate_absolute_remote_path
from modal.sandbox.sandbox import SandboxFilesystem
from modal.types import FileInfo, FileType

from rollouts.sandbox import aioloop
from rollouts.sandbox.modal import GET_DIR_SCRIPT, PUT_DIR_SCRIPT

_signatures: dict = {}


def _signature(real) -> tuple[inspect.Signature, bool]:
    """The real method's signature and whether it takes ``self``/``cls``, cached per method.
    synchronicity hands out a *new* ``functools.partial`` on every ``modal.Sandbox.exec``
    attribute access, so the cache is keyed by what the partial wraps: keyed by the partial
    itself (``functools.cache``), it kept a Signature per call, ~60 KB per run at scale."""
    key = (
        (real.func, real.args, tuple(real.keywords.items())) if isinstance(real, functools.partial) else real
    )
    if key not in _signatures:
        sig = inspect.signature(real)
        params = list(sig.parameters)
        _signatures[key] = sig, bool(params) and params[0] in ("self", "cls")
    return _signatures[key]


def accepts(real, *args, **kwargs) -> None:
    """Bind a call to the real SDK method's signature: TypeError if the SDK would not take it."""
    sig, bound = _signature(real)
    sig.bind(*((None, *args) if bound else args), **kwargs)


class dual:
    """Decorator: an ``async def`` method callable blocking (``obj.m(...)``) and as ``obj.m.aio(...)``."""

    def __init__(self, fn):
        self.fn = fn

    def __get__(self, obj, owner=None):
        return self if obj is None else _Bound(self.fn.__get__(obj, owner))


class _Bound:
    def __init__(self, coro_fn):
        self.aio = coro_fn

    def __call__(self, *args, **kwargs):
        return aioloop.run(self.aio(*args, **kwargs))


class FakeStdin:
    """``proc.stdin``: ``write``, ``write_eof`` (buffered), ``drain`` (sends them)."""

    def __init__(self, proc: FakeProcess):
        self.proc, self.buf, self._eof = proc, bytearray(), False

    def write(self, data) -> None:
        if self._eof:
            raise ValueError("Stdin is closed. Cannot write to it.")
        self.buf += data.encode() if isinstance(data, str) else bytes(data)

    def write_eof(self) -> None:
        self._eof = True

    @dual
    async def drain(self) -> None:
        if self.proc.done.is_set() and (self.buf or self._eof):
            raise mexc.ConflictError("process already exited")  # the router drops the write
        if self._eof:
            self.proc.eof.set()


class FakeStream:
    """``proc.stdout``/``stderr``: async and blocking iteration, ``read()``; ends with the process."""

    def __init__(self, proc: FakeProcess, which: int):
        self.proc, self.which = proc, which

    async def _chunks(self):
        await self.proc.done.wait()
        data = self.proc.out if self.which == 1 else self.proc.err
        for i in range(0, len(data), 64 * 1024):
            part = data[i : i + 64 * 1024]
            yield part.decode("utf-8") if self.proc.text else part

    def __aiter__(self):
        return self._chunks()

    def __iter__(self):
        async def collect():
            return [c async for c in self._chunks()]

        return iter(aioloop.run(collect()))

    @dual
    async def read(self):
        parts = [c async for c in self._chunks()]
        return ("" if self.proc.text else b"").join(parts)


class FakeProcess:
    """``ContainerProcess``: ``stdin`` open until EOF, ``stdout``/``stderr`` streams, ``wait()`` = exit
    code, -1 when the exec deadline passed (the streams then end with what was written)."""

    def __init__(self, text: bool, deadline: float | None):
        self.text, self.deadline = text, deadline
        self.code, self.out, self.err = -1, b"", b""
        self.done, self.eof = asyncio.Event(), asyncio.Event()
        self.stdin = FakeStdin(self)
        self.stdout, self.stderr = FakeStream(self, 1), FakeStream(self, 2)

    async def run(self, result, reads_stdin: bool) -> None:
        async def body():
            nonlocal result
            if reads_stdin:
                await self.eof.wait()
            if inspect.isawaitable(result):
                result = await result
            code, out, err = result[:3]
            if code == -1:  # hangs: only the exec deadline ends it
                self.out, self.err = out, err
                await asyncio.Event().wait()
            self.code, self.out, self.err = code, out, err

        try:
            remaining = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
            await asyncio.wait_for(body(), remaining)
        except (asyncio.TimeoutError, TimeoutError):
            self.code = -1
        self.done.set()

    @dual
    async def wait(self) -> int:
        await self.done.wait()
        return self.code

    @dual
    async def poll(self):
        return self.code if self.done.is_set() else None


class FakeFilesystem:
    """``sandbox.filesystem`` over the fake sandbox's in-memory files, failing as the SDK does."""

    def __init__(self, sb: FakeSandbox):
        self.sb = sb

    async def _op(self, name: str, path: str, *args, **kwargs) -> None:
        accepts(getattr(SandboxFilesystem, name), *args, **kwargs)
        validate_absolute_remote_path(path, name)
        exc = await self.sb.fake.step(f"fs.{name}", self.sb.fake.latency["fs"], defer=True)
        if isinstance(exc, mexc.SandboxFilesystemError):
            raise exc  # an answer of the fs tool (raise_*_error), after its exec returned
        with translate_exec_errors(name, path):  # the SDK's own mapping of exec-level failures
            if exc is not None:
                raise exc
            self.sb.check_attached()
            if not self.sb.running:
                raise mexc.NotFoundError("task not found")

    @dual
    async def write_bytes(self, data, remote_path):
        await self._op("write_bytes", remote_path, data, remote_path)
        if remote_path in self.sb.dirs:
            raise mexc.SandboxFilesystemIsADirectoryError(f"Is a directory: {remote_path}")
        self.sb.write(remote_path, bytes(data))

    @dual
    async def read_bytes(self, remote_path):
        await self._op("read_bytes", remote_path, remote_path)
        return self.sb.read(remote_path)

    @dual
    async def stat(self, remote_path):
        await self._op("stat", remote_path, remote_path)
        is_dir = remote_path in self.sb.dirs
        if not is_dir and remote_path not in self.sb.files:
            raise mexc.SandboxFilesystemNotFoundError(f"No such file or directory: {remote_path}")
        size = 4096 if is_dir else len(self.sb.files[remote_path])
        return FileInfo(
            name=posixpath.basename(remote_path), path=remote_path,
            type=FileType.DIRECTORY if is_dir else FileType.FILE, size=size,
            mode=self.sb.modes.get(remote_path, 0o644), permissions="", owner="root", group="root",
            modified_time=time.time(), symlink_target=None,
        )  # fmt: skip

    @dual
    async def copy_from_local(self, local_path, remote_path):
        await self._op("copy_from_local", remote_path, local_path, remote_path)
        self.sb.write(remote_path, Path(local_path).read_bytes())

    @dual
    async def copy_to_local(self, remote_path, local_path):
        await self._op("copy_to_local", remote_path, remote_path, local_path)
        data = self.sb.read(remote_path)
        Path(local_path).parent.mkdir(parents=True, exist_ok=True)
        Path(local_path).write_bytes(data)

    @dual
    async def remove(self, remote_path, *, recursive=False):
        await self._op("remove", remote_path, remote_path, recursive=recursive)
        if self.sb.files.pop(remote_path, None) is None:
            raise mexc.SandboxFilesystemNotFoundError(f"No such file or directory: {remote_path}")


class FakeSandbox:
    """A running Modal Sandbox: in-memory files, tags, exec through the fake's handler."""

    def __init__(self, fake: FakeModal, sid: str, args: tuple, kwargs: dict):
        self.fake, self.object_id, self.args, self.kwargs = fake, sid, args, kwargs
        self.tags = dict(kwargs.get("tags") or {})
        self.app_id = kwargs["app"].app_id
        self.env = dict(kwargs.get("env") or {})
        for s in kwargs.get("secrets") or []:
            self.env.update(fake.secret_env[id(s)])
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, int] = {}
        self.dirs = {"/", "/tmp"}
        snap = getattr(kwargs.get("image"), "snapshot", None)
        if snap is not None:  # started from snapshot_filesystem(): the same files
            self.files, self.dirs, self.modes = dict(snap[0]), set(snap[1]), dict(snap[2])
        self.running, self.attached = True, True
        self.terminate_calls = 0
        self.last_limit: float | None = None
        self.filesystem = FakeFilesystem(self)

    def check_attached(self) -> None:
        if not self.attached:
            raise mexc.ClientClosed("Unable to perform operation on a detached sandbox")

    def write(self, path: str, data: bytes) -> None:
        parent = posixpath.dirname(path)
        while parent not in self.dirs:  # write_bytes creates parents
            self.dirs.add(parent)
            parent = posixpath.dirname(parent)
        self.files[path] = data

    def read(self, path: str) -> bytes:
        if path in self.dirs:
            raise mexc.SandboxFilesystemIsADirectoryError(f"Is a directory: {path}")
        if path not in self.files:
            raise mexc.SandboxFilesystemNotFoundError(f"No such file or directory: {path}")
        return self.files[path]

    @dual
    async def exec(self, *args, **kwargs):
        accepts(modal.Sandbox.exec, *args, **kwargs)
        self.fake.record("exec", args, kwargs)
        await self.fake.step("exec", self.fake.latency["exec"])
        self.check_attached()
        if not self.running:
            raise mexc.ConflictError("Sandbox already finished")
        argv, limit, user = list(args), None, None
        if argv[:2] == ["timeout", "-k"]:
            limit, argv = float(argv[3]), argv[4:]
        if argv[:2] == ["runuser", "-u"]:
            user, argv = argv[2], argv[4:]
        self.last_limit = limit
        deadline = kwargs.get("timeout")
        proc = FakeProcess(kwargs.get("text", True),
                           None if deadline is None else time.monotonic() + deadline * self.fake.deadline_scale)  # fmt: skip
        result = self._run(argv, kwargs, user)
        reads_stdin = len(result) > 3 and bool(result[3]) if isinstance(result, tuple) else False
        asyncio.get_running_loop().create_task(proc.run(result, reads_stdin))
        return proc

    def _run(self, argv: list[str], kwargs: dict, user: str | None):
        if argv[:3] == ["bash", "-c", PUT_DIR_SCRIPT]:
            dest, tar_path = argv[4], argv[5]
            with tarfile.open(fileobj=io.BytesIO(self.files.pop(tar_path))) as tar:
                for m in tar:
                    p = posixpath.normpath(posixpath.join(dest, m.name))
                    if m.isdir():
                        self.write(p + "/.", b"")
                        self.files.pop(p + "/.")
                        self.dirs.add(p)
                    else:
                        self.write(p, tar.extractfile(m).read())
                        self.modes[p] = m.mode
            self.dirs.add(dest)
            return 0, b"", b""
        if argv[:3] == ["bash", "-c", GET_DIR_SCRIPT]:
            src, tar_path = argv[4].rstrip("/") or "/", argv[5]
            if src not in self.dirs:
                return 44, b"", b""
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                for p in sorted(self.dirs | set(self.files)):
                    if p.startswith(src + "/"):
                        ti = tarfile.TarInfo("./" + p[len(src) + 1 :])
                        if p in self.dirs:
                            ti.type = tarfile.DIRTYPE
                            tar.addfile(ti)
                        else:
                            ti.size, ti.mode = len(self.files[p]), self.modes.get(p, 0o644)
                            tar.addfile(ti, io.BytesIO(self.files[p]))
            self.files[tar_path] = buf.getvalue()
            return 0, f"{len(buf.getvalue())}\n".encode(), b""
        if argv[0] == "chmod":
            self.modes[argv[2]] = int(argv[1], 8)
            return 0, b"", b""
        if argv[:1] == ["bash"] and len(argv) == 2 and argv[1] in self.files:  # a script file
            argv = ["bash", "-c", self.files[argv[1]].decode()]
        env = {**self.env, **(kwargs.get("env") or {})}
        for s in kwargs.get("secrets") or []:
            env.update(self.fake.secret_env[id(s)])
        return self.fake.handler(self, argv, kwargs.get("workdir"), env, user)

    @dual
    async def terminate(self, *, wait=False):
        accepts(modal.Sandbox.terminate, wait=wait)
        self.terminate_calls += 1
        await self.fake.step("terminate", self.fake.latency["terminate"])
        self.check_attached()
        self.end()

    def end(self) -> None:
        """The sandbox finished: its filesystem is gone (this object stays for the tests to inspect)."""
        self.running = False
        if self.fake.drop_files_on_end:  # scale runs: forgotten entirely, as Modal forgets finished ones
            self.files, self.modes, self.dirs = {}, {}, set()
            with self.fake.lock:
                self.fake.sandboxes.pop(self.object_id, None)

    @dual
    async def poll(self):
        self.check_attached()
        return None if self.running else 0

    @dual
    async def snapshot_filesystem(self, timeout=55, *, ttl=30 * 24 * 3600):
        accepts(modal.Sandbox.snapshot_filesystem, timeout, ttl=ttl)
        await self.fake.step("snapshot", self.fake.latency["exec"])
        self.check_attached()
        if not self.running:
            raise mexc.NotFoundError("Sandbox not found")
        image = FakeImage(self.fake, ("snapshot", self.object_id), object_id=f"im-snap-{next(self.fake.ids)}")
        image.snapshot = (dict(self.files), set(self.dirs), dict(self.modes))
        return image

    @dual
    async def detach(self):
        self.attached = False

    @dual
    async def get_tags(self):
        await self.fake.step("get_tags", 0)
        return dict(self.tags)


class FakeHandle:
    """What ``Sandbox.from_id`` returns: a new attached handle on an existing sandbox."""

    def __init__(self, sb: FakeSandbox):
        self.sb, self.object_id, self.attached = sb, sb.object_id, True

    @dual
    async def terminate(self, *, wait=False):
        accepts(modal.Sandbox.terminate, wait=wait)
        await self.sb.fake.step("terminate", self.sb.fake.latency["terminate"])
        self.sb.end()  # a no-op when it already finished

    @dual
    async def detach(self):
        self.attached = False


_ADD_LOCAL = re.compile(r"^\s*ADD\s+(?!.*https?://)", re.I)


class FakeImage:
    """``modal.Image``: lazy until ``build(app)`` gives it an id (counted in ``fake.builds``)."""

    def __init__(self, fake: FakeModal, recipe: tuple, object_id: str | None = None):
        self.fake, self.recipe, self.object_id = fake, recipe, object_id

    def dockerfile_commands(self, *cmds, **kwargs):
        accepts(modal.Image.dockerfile_commands, *cmds, **kwargs)
        return FakeImage(self.fake, ("commands", self, cmds, kwargs))

    @dual
    async def build(self, app=None):
        accepts(modal.Image.build, app)
        await self.fake.step("build", self.fake.latency["build"])
        if self.recipe[0] == "commands":
            extract_copy_command_patterns(list(self.recipe[2]))  # the SDK's context mount: InvalidError
            bad = [c for c in self.recipe[2] if _ADD_LOCAL.match(c)]
            if bad:  # Modal's builder gets only COPY sources: the local file is not there
                raise mexc.ImageBuildError(f"{bad[0]}: no such file or directory", image_id="im-failed")
        with self.fake.lock:
            self.fake.builds.append(self.recipe)
            self.object_id = self.object_id or f"im-{next(self.fake.ids)}"
        return self


def default_handler(sb, argv, cwd, env, user):
    """Every command succeeds silently."""
    return 0, b"", b""


class _Sdk:
    """``modal.App`` / ``Sandbox`` / ``Image`` / ``Secret`` as the fake's attribute namespaces."""

    def __init__(self, **fns):
        for k, v in fns.items():
            setattr(self, k, v)


class FakeModal:
    """Stands in for the ``modal`` module: App, Sandbox, Image, Secret, and the real ``exception``.

    ``handler(sandbox, argv, workdir, env, user) -> (code, stdout, stderr[, reads_stdin])`` (or an
    awaitable of it) runs the commands that are not the adapter's own helpers; code -1 = never
    finishes. ``fail[op]`` holds exceptions raised (one per call) before ``op`` succeeds;
    ``latency`` seconds per call imitate Modal round trips; exec deadlines run on a clock
    ``deadline_scale`` times real time (tests shorten them).
    """

    exception = mexc

    def __init__(self, handler=default_handler, latency: dict | None = None, record: bool = True):
        self.handler, self.record_calls = handler, record
        self.latency = {"create": 0.0, "exec": 0.0, "fs": 0.0, "terminate": 0.0, "build": 0.0, **(latency or {})}
        self.deadline_scale = 1.0
        self.drop_files_on_end = not record  # scale runs: a finished sandbox's files are freed, as on Modal
        self.no_capacity, self.capacity_wait = False, 0.0
        self.sandboxes: dict[str, FakeSandbox] = {}
        self.calls: list[tuple[str, tuple, dict]] = []
        self.counts: dict[str, int] = defaultdict(int)
        self.fail: dict[str, list[BaseException]] = defaultdict(list)
        self.secret_env: dict[int, dict] = {}
        self.builds: list = []
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.app = SimpleNamespace(app_id="ap-fake", name=None)
        self.App = _Sdk(lookup=_Bound(self._lookup))
        self.Sandbox = _Sdk(create=_Bound(self._create), list=_ListFn(self), from_id=_Bound(self._from_id))
        self.Image = _Sdk(from_dockerfile=self._from_dockerfile, from_id=self._image_from_id)
        self.Secret = _Sdk(from_dict=self._secret)

    def record(self, op: str, args: tuple, kwargs: dict) -> None:
        if self.record_calls:
            with self.lock:
                self.calls.append((op, args, kwargs))

    async def step(self, op: str, latency: float, defer: bool = False) -> BaseException | None:
        """Count ``op``, wait its latency, raise its next injected failure (return it if ``defer``)."""
        with self.lock:
            self.counts[op] += 1
            exc = self.fail[op].pop(0) if self.fail[op] else None
        if latency:
            await asyncio.sleep(latency)
        if exc is not None and not defer:
            raise exc
        return exc

    def running(self) -> list[FakeSandbox]:
        return [s for s in list(self.sandboxes.values()) if s.running]

    async def _lookup(self, name, **kwargs):
        accepts(modal.App.lookup, name, **kwargs)
        await self.step("lookup", 0)
        self.app.name = name
        return self.app

    async def _create(self, *args, **kwargs):
        accepts(modal.Sandbox.create, *args, **kwargs)
        self.record("create", args, kwargs)
        await self.step("create", self.latency["create"])
        if self.no_capacity:
            await asyncio.sleep(self.capacity_wait)
            raise mexc.ResourceExhaustedError("Insufficient capacity to create sandbox.")
        with self.lock:
            sb = FakeSandbox(self, f"sb-{next(self.ids)}", args, kwargs)
            self.sandboxes[sb.object_id] = sb
        return sb

    async def _list(self, **kwargs):
        accepts(modal.Sandbox.list, **kwargs)
        await self.step("list", 0)
        want = kwargs.get("tags") or {}
        for sb in self.running():
            if sb.app_id == kwargs.get("app_id") and all(sb.tags.get(k) == v for k, v in want.items()):
                yield sb

    async def _from_id(self, sandbox_id, **kwargs):
        accepts(modal.Sandbox.from_id, sandbox_id, **kwargs)
        await self.step("from_id", 0)
        if sandbox_id not in self.sandboxes:
            raise mexc.NotFoundError(f"Sandbox {sandbox_id} not found")
        return FakeHandle(self.sandboxes[sandbox_id])

    def _from_dockerfile(self, path, **kwargs):
        accepts(modal.Image.from_dockerfile, path, **kwargs)
        return FakeImage(self, ("dockerfile", Path(path).read_text(), kwargs))

    def _image_from_id(self, image_id, **kwargs):
        accepts(modal.Image.from_id, image_id, **kwargs)
        return FakeImage(self, ("id", image_id), object_id=image_id)

    def _secret(self, env_dict):
        secret = modal.Secret.from_dict(env_dict)  # the real one: validates keys and values
        self.secret_env[id(secret)] = dict(env_dict)
        return secret


class _ListFn:
    """``Sandbox.list``: a blocking generator, and ``.aio`` an async generator."""

    def __init__(self, fake: FakeModal):
        self.fake = fake
        self.aio = fake._list

    def __call__(self, **kwargs):
        async def collect():
            return [sb async for sb in self.fake._list(**kwargs)]

        return iter(aioloop.run(collect()))
