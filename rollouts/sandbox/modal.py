"""Modal backend of the sandbox interface (``modal`` SDK >= 1.6, its blocking API).

One Modal Sandbox per run in the App ``rollouts``: ``sleep infinity``, tagged with the run's labels
(tool, rollout id, run id, harness pid/host), cpu and memory as request = limit, ``block_network``
unless the task needs network, ``timeout`` = ``spec.lifetime_sec`` (Modal ends it then: the
backstop past the run's deadline). SDK facts relied on, read in ``modal/`` 1.6.4:

- ``Sandbox.exec`` has no ``user`` argument and refuses argv over 2**16 characters
  (``sandbox/_common.py`` ARG_MAX_BYTES): users go through ``runuser``/``setpriv``, longer commands
  through a script file. When an exec's ``timeout`` passes, ``ContainerProcess.wait()`` returns -1
  and raises nothing (``container_process.py``); the output streams just end. Commands are still
  wrapped in ``timeout -k`` so the process tree dies inside the sandbox first.
- ``text=True`` decodes output strictly as UTF-8 (``io_streams.py``): we read bytes.
- ``sb.open()`` is gone; ``sb.filesystem`` (``sandbox/_filesystem.py``: write_bytes, read_bytes,
  stat, copy_from_local, copy_to_local, remove) raises ``SandboxFilesystem*Error``. Directories
  travel as one tar archive each way.
- ``Sandbox.list(app_id=, tags=)`` yields running sandboxes only (``include_finished=False``).
- No token: ``AuthError`` at once (``client.py``); server unreachable: ``ConnectionError`` after
  about a minute of the SDK's own retries.

The SDK module is injectable (``ModalBackend(sdk=...)``) so tests run the adapter on fakes.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import tarfile
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential, wait_random

from rollouts.errors import (
    ConfigError,
    EnvironmentNotReady,
    ImageBuildError,
    OutputLimitExceeded,
    SandboxError,
    SandboxFileNotFound,
)
from rollouts.redact import secret_values
from rollouts.sandbox import base
from rollouts.sandbox.base import ExecResult, Sandbox, SandboxBackend, SandboxSpec
from rollouts.sandbox.docker import _Capped

APP_NAME = "rollouts"
ARGV_LIMIT = 60 * 1024  # characters; the SDK refuses more than 2**16 in total
DEFAULT_LIFETIME_SEC = 3600  # for a spec without lifetime_sec
MAX_LIFETIME_SEC = 24 * 3600  # Modal's maximum sandbox timeout
EXEC_SLACK_SEC = base.KILL_GRACE_SEC + 5  # Modal's exec deadline comes after our in-sandbox timeout
BASE_DOCKERFILE = Path(__file__).resolve().parents[2] / "docker" / "base" / "Dockerfile"
# Retried by us; ConnectionError is not: the SDK raises it only after ~1 min of its own retries.
TRANSIENT = ("ServiceError", "InternalError", "InternalFailure", "ResourceExhaustedError")
AUTH_HELP = (
    "set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET (a token from https://modal.com/settings/tokens) "
    "or run `modal setup` (writes ~/.modal.toml)"
)
# In-sandbox helpers, run as ``bash -c SCRIPT NAME ARG...`` (the test fakes recognise them).
PUT_DIR_SCRIPT = 'mkdir -p -- "$1" && tar -xf "$2" -C "$1"; rc=$?; rm -f -- "$2"; exit $rc'
GET_DIR_SCRIPT = 'test -d "$1" || exit 44; tar -cf "$2" -C "$1" . && stat -c %s "$2"'
_FROM = re.compile(r"^\s*FROM\s+(\S+)", re.I)


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


def task_dockerfile_commands(text: str, where: str) -> list[str]:
    """The lines of a task Dockerfile after ``FROM ${BASE_IMAGE}`` (global ARGs other than
    BASE_IMAGE moved after it), to build on the Modal base image. ConfigError for another FROM."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _FROM.match(line)
        if m and m.group(1) in ("${BASE_IMAGE}", "$BASE_IMAGE"):
            if any(_FROM.match(x) for x in lines[i + 1 :]):
                raise ConfigError("multi-stage Dockerfiles are not supported on Modal", file=where)
            args = [x for x in lines[:i] if re.match(r"\s*ARG\s", x, re.I) and "BASE_IMAGE" not in x]
            return args + lines[i + 1 :]
        if m:
            break
    raise ConfigError("task Dockerfiles must start with 'ARG BASE_IMAGE' + 'FROM ${BASE_IMAGE}'", file=where)


def has_credentials(env: dict[str, str] | None = None) -> bool:
    """Whether Modal credentials are configured: MODAL_TOKEN_ID + MODAL_TOKEN_SECRET, an OAuth
    refresh token, or the config file (MODAL_CONFIG_PATH, default ~/.modal.toml; ``modal/config.py``)."""
    env = os.environ if env is None else env
    if (env.get("MODAL_TOKEN_ID") and env.get("MODAL_TOKEN_SECRET")) or env.get("MODAL_OAUTH_REFRESH_TOKEN"):
        return True
    return Path(env.get("MODAL_CONFIG_PATH") or os.path.expanduser("~/.modal.toml")).is_file()


class ModalSandbox(Sandbox):
    """One Modal Sandbox for one run, with the interface's guarantees (``base.py``)."""

    def __init__(self, backend: ModalBackend, spec: SandboxSpec):
        self.backend, self.spec = backend, spec
        self.sb: Any = None
        self._stopped = False
        self._lock = threading.Lock()

    @property
    def id(self) -> str | None:
        return self.sb.object_id if self.sb is not None else None

    def start(self) -> None:
        """``Sandbox.create`` (retried on transient errors). SandboxError if Modal refuses."""
        with self._lock:  # a concurrent stop() waits, then terminates what was created
            if self.sb is not None:
                return
            if self._stopped:
                raise SandboxError("sandbox was stopped before it started")
            s, b = self.spec, self.backend
            plain, secret = split_env(s.env)
            life = DEFAULT_LIFETIME_SEC if s.lifetime_sec is None else math.ceil(s.lifetime_sec)
            self.sb = b.call(
                "create sandbox", b.sdk.Sandbox.create, "sleep", "infinity",
                app=b.app(), image=b.image_for(s.image), name=s.name, tags=dict(s.labels),
                env=plain or None, secrets=b.secrets_for(secret), workdir="/",
                timeout=max(10, min(MAX_LIFETIME_SEC, life)), block_network=not s.network,
                cpu=(s.cpus, s.cpus), memory=(s.memory_mb, s.memory_mb),
            )  # fmt: skip

    def _need(self) -> Any:
        if self.sb is None or self._stopped:
            raise SandboxError("sandbox is not running (stopped or never started)")
        return self.sb

    def exec(
        self,
        cmd: str | list[str],
        *,
        timeout: float | None = 60,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        output_limit: int = base.DEFAULT_OUTPUT_LIMIT,
    ) -> ExecResult:
        """Run ``cmd`` under ``timeout -k`` in the sandbox. ``timed_out``: killed by that timeout
        (exit 124/137) or Modal's exec deadline passed (``wait()`` = -1, ``exit_code`` -1).
        Output is read as bytes, capped per stream. SandboxError on transport failure or a gone sandbox."""
        sb = self._need()
        argv = ["bash", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        script = None
        if sum(map(len, argv)) > ARGV_LIMIT:  # too long for Modal's exec: run it from a file
            script = f"/tmp/rollouts-cmd-{uuid.uuid4().hex}.sh"
            self.put_file(script, (cmd if isinstance(cmd, str) else "exec " + base.shell_join(argv)).encode())
            argv = ["bash", script]
        argv = base.wrap_command(as_user(argv, user), timeout)
        plain, secret = split_env(env)
        out, err = _Capped(output_limit), _Capped(output_limit)
        t0 = time.monotonic()
        try:
            proc = sb.exec(
                *argv, workdir=cwd, env=plain or None, secrets=self.backend.secrets_for(secret), text=False,
                timeout=None if timeout is None else math.ceil(timeout) + EXEC_SLACK_SEC,
            )  # fmt: skip
            for chunk in proc.stdout:
                out.add(chunk)
            for chunk in proc.stderr:
                err.add(chunk)
            code = proc.wait()
        except (self.backend.sdk.exception.Error, OSError) as e:  # OSError: the transport itself
            raise self.backend.translate(e, "exec", gone=self._stopped) from None
        finally:
            if script and not self._stopped:
                self._remove_quietly(script)
        dur = time.monotonic() - t0
        timed_out = code == -1 or (timeout is not None and code in (124, 137) and dur >= timeout - 0.5)
        return ExecResult(
            exit_code=code, stdout=out.text(), stderr=err.text(), timed_out=timed_out, duration_sec=dur,
            stdout_bytes=out.total, stderr_bytes=err.total, truncated=out.truncated or err.truncated,
        )  # fmt: skip

    def _fs(self, what: str, method: str, *args, path: str = ""):
        return self.backend.call(what, getattr(self._need().filesystem, method), *args, path=path)

    def _remove_quietly(self, path: str) -> None:
        try:
            self._fs("remove", "remove", path, path=path)
        except (SandboxError, FileNotFoundError):
            pass

    def _run(self, argv: list[str], what: str) -> ExecResult:
        r = self.exec(argv, timeout=300)
        if r.exit_code != 0 and r.exit_code != 44:
            raise SandboxError(f"{what} failed (exit {r.exit_code}): {r.output.strip()[-300:]}")
        return r

    def put_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """``filesystem.write_bytes`` (parents created); one ``chmod`` exec for a mode other than 0644."""
        self._fs(f"copy into sandbox ({path})", "write_bytes", data, path, path=path)
        if mode != 0o644:
            self._run(["chmod", f"{mode & 0o7777:o}", path], f"chmod {path}")

    def put_dir(self, src: Path, dest: str) -> None:
        """``src``'s contents as one tar (owner root) through ``copy_from_local``, unpacked into ``dest``."""
        remote = f"/tmp/rollouts-put-{uuid.uuid4().hex}.tar"

        def owner_root(ti: tarfile.TarInfo) -> tarfile.TarInfo:
            ti.uid, ti.gid, ti.uname, ti.gname = 0, 0, "root", "root"
            return ti

        with tempfile.NamedTemporaryFile(suffix=".tar") as f:
            with tarfile.open(fileobj=f, mode="w") as tar:
                for p in sorted(Path(src).iterdir()):
                    tar.add(p, arcname=p.name, filter=owner_root)
            f.flush()
            self._fs(f"copy into sandbox ({dest})", "copy_from_local", f.name, remote, path=remote)
        self._run(["bash", "-c", PUT_DIR_SCRIPT, "rollouts-put", dest, remote], f"unpacking into {dest}")

    def get_file(self, path: str, max_bytes: int = 64 * 1024 * 1024) -> bytes:
        """``stat`` then ``read_bytes``. SandboxFileNotFound if missing or a directory;
        OutputLimitExceeded for a file over ``max_bytes``."""
        info = self._fs(f"stat {path}", "stat", path, path=path)
        if info.is_dir():
            raise SandboxFileNotFound(path)
        if info.size > max_bytes:
            raise OutputLimitExceeded(path, max_bytes, info.size)
        data = self._fs(f"copy out of sandbox ({path})", "read_bytes", path, path=path)
        if len(data) > max_bytes:  # a symlink's stat size is the link's
            raise OutputLimitExceeded(path, max_bytes, len(data))
        return data

    def get_dir(self, src: str, dest: Path, max_bytes: int = 256 * 1024 * 1024) -> None:
        """``src`` tarred in the sandbox, fetched with ``copy_to_local``, unpacked into ``dest`` with
        ``filter="data"``. SandboxFileNotFound if ``src`` is no directory; OutputLimitExceeded over ``max_bytes``."""
        remote = f"/tmp/rollouts-get-{uuid.uuid4().hex}.tar"
        r = self._run(["bash", "-c", GET_DIR_SCRIPT, "rollouts-get", src, remote], f"packing {src}")
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
                self._fs(f"copy out of sandbox ({src})", "copy_to_local", remote, str(local), path=remote)
                with tarfile.open(local, mode="r") as tar:
                    tar.extractall(top, filter="data")
                Path(dest).mkdir(parents=True, exist_ok=True)
                for p in top.iterdir():
                    target = Path(dest) / p.name
                    if target.is_dir() and not target.is_symlink():
                        shutil.rmtree(target)
                    shutil.move(str(p), str(target))
        finally:
            self._remove_quietly(remote)

    def stop(self) -> None:
        """``terminate()`` (retried), then ``detach()`` to close this client's connection to it.
        Idempotent, never raises: a sandbox that could not be terminated still ends at its
        ``timeout`` and is found by ``list_leftovers``."""
        with self._lock:
            if self._stopped:
                return
            self._stopped, sb = True, self.sb
        for step in ((lambda: self.backend.retry(sb.terminate)), sb.detach) if sb is not None else ():
            try:
                step()
            except Exception:  # noqa: BLE001 - the lifetime backstop and `clean` cover it
                pass


class ModalBackend(SandboxBackend):
    """Sandboxes on Modal. ``sdk``: the ``modal`` module or a stand-in with its surface (App,
    Sandbox, Image, Secret, exception). ``retries`` attempts with exponential backoff from
    ``retry_initial`` to ``retry_max`` seconds on transient errors (create/terminate/list/files/builds)."""

    name = "modal"

    def __init__(self, sdk: Any = None, *, app_name: str = APP_NAME, base_dockerfile: Path | None = None,
                 retries: int = 5, retry_initial: float = 1.0, retry_max: float = 20.0):  # fmt: skip
        self._sdk, self.app_name = sdk, app_name
        self.base_dockerfile = Path(base_dockerfile or BASE_DOCKERFILE)
        self.retries, self.retry_initial, self.retry_max = retries, retry_initial, retry_max
        self._lock = threading.Lock()
        self._app: Any = None
        self._images: dict[str, tuple[str, Any]] = {}  # recipe/content digest -> (image id, Image)
        self._by_ref: dict[str, Any] = {}  # image id -> Image
        self._build_locks: dict[str, threading.Lock] = {}
        self._secrets: dict[tuple, Any] = {}

    @property
    def sdk(self) -> Any:
        """The injected SDK, else ``import modal`` (EnvironmentNotReady if it is not installed)."""
        if self._sdk is None:
            try:
                import modal
            except ImportError:
                raise EnvironmentNotReady("the Modal SDK is missing: pip install -e '.[modal]'") from None
            self._sdk = modal
        return self._sdk

    def retry(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)``, retried with backoff on the SDK's transient errors (TRANSIENT)."""
        x = self.sdk.exception
        return Retrying(
            retry=retry_if_exception_type(tuple(getattr(x, n) for n in TRANSIENT if hasattr(x, n))),
            stop=stop_after_attempt(self.retries),
            wait=wait_exponential(multiplier=self.retry_initial, max=self.retry_max)
            + wait_random(0, self.retry_initial),
            reraise=True,
        )(fn, *args, **kwargs)

    def call(self, what: str, fn, *args, path: str = "", **kwargs):
        """:meth:`retry`, with the Modal errors that remain translated by :meth:`translate`."""
        try:
            return self.retry(fn, *args, **kwargs)
        except (self.sdk.exception.Error, OSError) as e:
            raise self.translate(e, what, path=path) from None

    def translate(self, e: BaseException, what: str, *, path: str = "", gone: bool = False) -> Exception:
        """A Modal error as ours: SandboxFilesystemNotFoundError -> SandboxFileNotFound; ImageBuildError
        -> ours; everything else (other filesystem errors, a gone sandbox, auth) -> SandboxError."""
        x = self.sdk.exception
        msg = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        if isinstance(e, x.SandboxFilesystemNotFoundError):
            return SandboxFileNotFound(path or str(e))
        if gone or isinstance(
            e, (x.ClientClosed, x.SandboxTerminatedError, x.SandboxTimeoutError, x.NotFoundError)
        ):
            return SandboxError(f"{what}: the sandbox is gone (stopped, or its lifetime ended): {msg}")
        if isinstance(e, x.ImageBuildError):
            return ImageBuildError(f"{what}: the Modal image build failed: {msg}")
        if isinstance(e, x.SandboxFilesystemError):
            return SandboxError(f"{what} {path}: {msg}")
        return SandboxError(
            f"{what} failed on Modal: {msg}" + (f"; {AUTH_HELP}" if isinstance(e, x.AuthError) else "")
        )

    def app(self) -> Any:
        """The App every sandbox belongs to: ``App.lookup(app_name, create_if_missing=True)``, once."""
        with self._lock:
            if self._app is None:
                self._app = self.call(
                    "app lookup", self.sdk.App.lookup, self.app_name, create_if_missing=True
                )
            return self._app

    def secrets_for(self, env: dict[str, str]) -> list:
        """``[Secret.from_dict(env)]``, one object per distinct ``env`` (reused); [] for none."""
        if not env:
            return []
        key = tuple(sorted(env.items()))
        with self._lock:
            if key not in self._secrets:
                if len(self._secrets) >= 256:
                    self._secrets.clear()
                self._secrets[key] = self.sdk.Secret.from_dict(dict(env))
            return [self._secrets[key]]

    def preflight(self) -> None:
        """EnvironmentNotReady (exit 3) when the SDK is missing, no credentials are configured,
        Modal rejects them (``AuthError``) or cannot be reached (``ConnectionError``, after ~1 min)."""
        x = self.sdk.exception
        if not has_credentials():
            raise EnvironmentNotReady(f"no Modal credentials found: {AUTH_HELP}")
        try:  # no retries of ours: the SDK already tried for about a minute
            with self._lock:
                if self._app is None:
                    self._app = self.sdk.App.lookup(self.app_name, create_if_missing=True)
        except x.AuthError as e:
            raise EnvironmentNotReady(f"Modal rejected the credentials ({e}): {AUTH_HELP}") from None
        except x.Error as e:
            raise EnvironmentNotReady(f"cannot reach Modal ({type(e).__name__}: {e})") from None

    def _built(self, key: str, make, log) -> str:
        with self._lock:
            if key in self._images:
                return self._images[key][0]
            lock = self._build_locks.setdefault(key, threading.Lock())
        with lock:  # one build per key, however many runs ask at once
            if key not in self._images:
                (log or (lambda _line: None))(f"building Modal image {key} (minutes the first time)")
                image = self.call(f"image {key}", lambda: make().build(self.app()))
                with self._lock:
                    self._images[key] = (image.object_id, image)
                    self._by_ref[image.object_id] = image
        return self._images[key][0]

    def _base_key(self) -> str:
        try:
            return "base-" + hashlib.sha256(self.base_dockerfile.read_bytes()).hexdigest()[:12]
        except OSError as e:
            raise EnvironmentNotReady(f"base image recipe {self.base_dockerfile}: {e.strerror}") from None

    def base_image(self, log=None) -> str:
        """Image id of ``docker/base/Dockerfile`` (debian:bookworm-slim + BASE_PACKAGES, the local
        recipe) built by Modal, once per recipe digest. ImageBuildError if the build fails."""
        df = self.base_dockerfile
        return self._built(
            self._base_key(), lambda: self.sdk.Image.from_dockerfile(df, context_dir=df.parent), log
        )

    def task_image(self, task, log=None) -> str:
        """Image id for ``task``: its Dockerfile's lines after ``FROM ${BASE_IMAGE}`` on the base
        image (``Image.dockerfile_commands``, context = the Dockerfile's dir), built once per content
        digest; the base image without a Dockerfile. ConfigError off the convention, ImageBuildError."""
        from rollouts.images import task_image_digest

        if task.meta.environment.dockerfile is None:
            return self.base_image(log)
        df = (task.dir / task.meta.environment.dockerfile).resolve()
        cmds = task_dockerfile_commands(df.read_text(errors="replace"), str(df))
        base_ref = self.base_image(log)
        key = f"task-{task.name}-{task_image_digest(task, self._base_key())[:12]}"
        return self._built(
            key, lambda: self._by_ref[base_ref].dockerfile_commands(*cmds, context_dir=df.parent), log
        )

    def image_for(self, ref: str) -> Any:
        """The Image object for an id from ``task_image``/``base_image``, else ``Image.from_id(ref)``."""
        with self._lock:
            return self._by_ref[ref] if ref in self._by_ref else self.sdk.Image.from_id(ref)

    def create(self, spec: SandboxSpec) -> Sandbox:
        return ModalSandbox(self, spec)

    def list_leftovers(self, rollout_id: str | None = None) -> list[dict]:
        """Running sandboxes of this tool in the App (``Sandbox.list(app_id=, tags=)``), optionally of
        one rollout: dicts with id, name, labels (= tags), status. SandboxError if listing fails."""
        tags = {base.LABEL_TOOL: base.TOOL_NAME, **({base.LABEL_ROLLOUT: rollout_id} if rollout_id else {})}
        app_id = self.app().app_id
        found = self.call("list sandboxes", lambda: list(self.sdk.Sandbox.list(app_id=app_id, tags=tags)))
        out = []
        for sb in found:
            try:
                labels = self.call("get tags", sb.get_tags)
            except SandboxError:  # finished meanwhile
                continue
            out.append({"id": sb.object_id, "name": None, "labels": labels, "status": "running"})
        return out

    def remove(self, sandbox_id: str) -> None:
        """Terminate one sandbox by id (``Sandbox.from_id`` + ``terminate``); a gone one is fine."""
        x = self.sdk.exception
        try:
            sb = self.retry(self.sdk.Sandbox.from_id, sandbox_id)
            self.retry(sb.terminate)
            sb.detach()
        except (x.NotFoundError, x.SandboxTerminatedError, x.SandboxTimeoutError):
            return
        except x.Error as e:
            raise self.translate(e, f"terminate {sandbox_id}") from None
