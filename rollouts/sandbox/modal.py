"""Modal backend of the sandbox interface (``modal`` SDK >= 1.6.2); its sandboxes are
:class:`rollouts.sandbox.modal_sandbox.ModalSandbox` (SDK facts relied on: that module's docstring).

Images: ``docker/base/Dockerfile`` built by Modal with ``DEBIAN_SUITE`` = the host's Debian
release, the one the local base image is made from (``rollouts/images.py``), so a task sees the
same distribution on both backends; task images are the task Dockerfile's lines after
``FROM ${BASE_IMAGE}`` on top (``Image.dockerfile_commands``), checked before any run by
:meth:`ModalBackend.check_task` (``rollouts/sandbox/modal_dockerfile.py``).

The SDK module is injectable (``ModalBackend(sdk=...)``) so tests run the adapter on fakes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from rollouts.errors import (
    EnvironmentNotReady,
    ImageBuildError,
    SandboxCapacityError,
    SandboxError,
    SandboxFileNotFound,
)
from rollouts.sandbox import aioloop, base
from rollouts.sandbox.base import Sandbox, SandboxBackend, SandboxSpec
from rollouts.sandbox.modal_dockerfile import check_task_dockerfile, modal_dockerfile_commands
from rollouts.sandbox.modal_sandbox import (  # noqa: F401 - re-exported: the adapter's public names
    ARGV_LIMIT,
    DEFAULT_LIFETIME_SEC,
    EXEC_SLACK_SEC,
    GET_DIR_SCRIPT,
    MAX_LIFETIME_SEC,
    PUT_DIR_SCRIPT,
    ModalSandbox,
    as_user,
    split_env,
)

APP_NAME = "rollouts"
CAPACITY_WAIT_SEC = 25 * 60  # create in total: the SDK's own 21 min capacity wait + rate-limit retries
DEFAULT_LIVE_SANDBOXES = 1000  # sandboxes alive at once; ROLLOUTS_MODAL_MAX_SANDBOXES = your quota
BASE_DOCKERFILE = Path(__file__).resolve().parents[2] / "docker" / "base" / "Dockerfile"
# Retried by us; ConnectionError is not: the SDK raises it only after ~1 min of its own retries.
TRANSIENT = ("ServiceError", "InternalError", "InternalFailure", "ResourceExhaustedError")
AUTH_HELP = (
    "set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET (a token from https://modal.com/settings/tokens) "
    "or run `modal setup` (writes ~/.modal.toml)"
)

try:  # the SDK's transport (a dependency of modal)
    from grpclib.exceptions import StreamTerminatedError
except ImportError:  # pragma: no cover - without modal nothing here runs
    StreamTerminatedError = ConnectionError  # type: ignore[misc,assignment]


class _Unavailable(Exception):
    """A file call got ``NotFoundError("Sandbox is unavailable")`` while ``poll()`` says running."""


def task_dockerfile_commands(text: str, where: str) -> list[str]:
    """See :func:`rollouts.sandbox.modal_dockerfile.modal_dockerfile_commands`."""
    return modal_dockerfile_commands(text, where)


def has_credentials(env: dict[str, str] | None = None) -> bool:
    """Whether Modal credentials are configured: MODAL_TOKEN_ID + MODAL_TOKEN_SECRET, an OAuth
    refresh token, or the config file (MODAL_CONFIG_PATH, default ~/.modal.toml; ``modal/config.py``)."""
    env = os.environ if env is None else env
    if (env.get("MODAL_TOKEN_ID") and env.get("MODAL_TOKEN_SECRET")) or env.get("MODAL_OAUTH_REFRESH_TOKEN"):
        return True
    return Path(env.get("MODAL_CONFIG_PATH") or os.path.expanduser("~/.modal.toml")).is_file()


def _capacity(e: BaseException, elapsed: float) -> bool:
    """``Sandbox.create`` gave up after its own capacity wait (not a quick rate limit)."""
    return "capacity" in str(e).lower() or elapsed >= 60


class ModalBackend(SandboxBackend):
    """Sandboxes on Modal. ``sdk``: the ``modal`` module or a stand-in with its surface (App,
    Sandbox, Image, Secret, exception, each call with its ``.aio`` twin). ``retries`` attempts
    with exponential backoff from ``retry_initial`` to ``retry_max`` seconds on transient errors
    (create/terminate/list/files/builds); ``capacity_wait_sec`` bounds one create in total."""

    name = "modal"
    cooperative = aioloop.greenlets_available()

    def __init__(self, sdk: Any = None, *, app_name: str = APP_NAME, base_dockerfile: Path | None = None,
                 retries: int = 5, retry_initial: float = 1.0, retry_max: float = 20.0,
                 capacity_wait_sec: float = CAPACITY_WAIT_SEC, max_live_sandboxes: int | None = None):  # fmt: skip
        self._sdk, self.app_name = sdk, app_name
        self.base_dockerfile = Path(base_dockerfile or BASE_DOCKERFILE)
        self.retries, self.retry_initial, self.retry_max = retries, retry_initial, retry_max
        self.capacity_wait_sec = capacity_wait_sec
        env_limit = os.environ.get("ROLLOUTS_MODAL_MAX_SANDBOXES")
        self.live_sandbox_limit = max_live_sandboxes or (int(env_limit) if env_limit else DEFAULT_LIVE_SANDBOXES)
        self._lock = threading.Lock()
        self._app: Any = None
        self._app_lock: asyncio.Lock | None = None
        self._images: dict[str, tuple[str, Any]] = {}  # recipe/content digest -> (image id, Image)
        self._by_ref: dict[str, Any] = {}  # image id -> Image
        self._build_locks: dict[str, asyncio.Lock] = {}  # used on the loop only
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

    @property
    def transport_errors(self) -> tuple[type[BaseException], ...]:
        """What an SDK call may raise besides its documented errors: the SDK's ``Error``, OSError
        (the socket), grpclib's StreamTerminatedError and the SDK's ValueErrors (stdio stream)."""
        return (self.sdk.exception.Error, OSError, StreamTerminatedError, ValueError, _Unavailable)

    def _transient(self, e: BaseException) -> bool:
        x = self.sdk.exception
        if isinstance(e, (_Unavailable, StreamTerminatedError)) or type(e) is x.SandboxFilesystemError:
            return True
        return isinstance(e, tuple(getattr(x, n) for n in TRANSIENT if hasattr(x, n)))

    async def aretry(self, fn, *args, deadline: float | None = None, **kwargs):
        """``await fn(*args, **kwargs)``, retried with backoff on transient errors (TRANSIENT, a
        dropped stream, a bare SandboxFilesystemError, an unavailable-but-running sandbox)."""
        stop = stop_after_attempt(self.retries)
        if deadline is not None:
            stop = stop | stop_after_delay(deadline)
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(self._transient), stop=stop, reraise=True,
            wait=wait_exponential(multiplier=self.retry_initial, max=self.retry_max) + wait_random(0, self.retry_initial),
        ):  # fmt: skip
            with attempt:
                return await fn(*args, **kwargs)

    async def acall(self, what: str, fn, *args, path: str = "", sandbox: Any = None, **kwargs):
        """:meth:`aretry` with the remaining errors translated by :meth:`translate`. With ``sandbox``
        (a file call), a NotFoundError is a blip while ``sandbox.poll()`` says it still runs."""
        x = self.sdk.exception

        async def attempt():
            try:
                return await fn(*args, **kwargs)
            except x.NotFoundError as e:
                if sandbox is not None and await self._still_running(sandbox):
                    raise _Unavailable(str(e)) from None
                raise

        try:
            return await self.aretry(attempt)
        except self.transport_errors as e:
            raise self.translate(e, what, path=path) from None

    async def _still_running(self, sb: Any) -> bool:
        try:
            return await sb.poll.aio() is None
        except self.transport_errors:
            return False

    def call(self, what: str, fn, *args, path: str = "", **kwargs):
        """Blocking :meth:`acall` of an SDK coroutine function ``fn`` (an ``.aio`` method)."""
        return aioloop.run(self.acall(what, fn, *args, path=path, **kwargs))

    def translate(self, e: BaseException, what: str, *, path: str = "", gone: bool = False) -> Exception:
        """A Modal error as ours: SandboxFilesystemNotFoundError -> SandboxFileNotFound; ImageBuildError
        -> ours; everything else (other filesystem errors, a gone sandbox, auth) -> SandboxError."""
        x = self.sdk.exception
        msg = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        if isinstance(e, x.SandboxFilesystemNotFoundError):
            return SandboxFileNotFound(path or str(e))
        if isinstance(e, _Unavailable):
            return SandboxError(f"{what}: Modal kept reporting the sandbox unavailable although it runs "
                                f"({self.retries} attempts): {e}")  # fmt: skip
        if gone or isinstance(e, (x.ClientClosed, x.SandboxTerminatedError, x.SandboxTimeoutError, x.NotFoundError)):
            return SandboxError(f"{what}: the sandbox is gone (stopped, or its lifetime ended): {msg}")
        if isinstance(e, x.ImageBuildError):
            return ImageBuildError(f"{what}: the Modal image build failed: {msg}")
        if isinstance(e, x.SandboxFilesystemError):
            return SandboxError(f"{what} {path}: {msg}")
        if isinstance(e, (StreamTerminatedError, OSError, ValueError)):
            return SandboxError(f"{what}: the connection to Modal failed: {msg}")
        return SandboxError(
            f"{what} failed on Modal: {msg}" + (f"; {AUTH_HELP}" if isinstance(e, x.AuthError) else "")
        )

    async def acreate_sandbox(self, *args, **kwargs) -> Any:
        """``Sandbox.create`` with rate limits retried within ``capacity_wait_sec``; the SDK's own
        capacity wait ending (``ResourceExhaustedError`` after up to 21 min) is not retried:
        SandboxCapacityError. Other failures: SandboxError."""
        x = self.sdk.exception
        t0 = time.monotonic()

        async def attempt():
            t = time.monotonic()
            try:
                return await self.sdk.Sandbox.create.aio(*args, **kwargs)
            except x.ResourceExhaustedError as e:
                if _capacity(e, time.monotonic() - t):
                    raise SandboxCapacityError(
                        f"Modal had no capacity for the sandbox within its own wait "
                        f"({time.monotonic() - t0:.0f} s): {e}") from None  # fmt: skip
                raise

        try:
            return await self.aretry(attempt, deadline=self.capacity_wait_sec)
        except self.transport_errors as e:
            raise self.translate(e, "create sandbox") from None

    async def aapp(self) -> Any:
        """The App every sandbox belongs to: ``App.lookup(app_name, create_if_missing=True)``, once."""
        if self._app is None:
            if self._app_lock is None:
                self._app_lock = asyncio.Lock()
            async with self._app_lock:
                if self._app is None:
                    self._app = await self.acall("app lookup", self.sdk.App.lookup.aio, self.app_name,
                                                 create_if_missing=True)  # fmt: skip
        return self._app

    def app(self) -> Any:
        return self._app if self._app is not None else aioloop.run(self.aapp())

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
        if self._app is not None:
            return
        try:  # no retries of ours: the SDK already tried for about a minute
            self._app = aioloop.run(self.sdk.App.lookup.aio(self.app_name, create_if_missing=True))
        except x.AuthError as e:
            raise EnvironmentNotReady(f"Modal rejected the credentials ({e}): {AUTH_HELP}") from None
        except x.Error as e:
            raise EnvironmentNotReady(f"cannot reach Modal ({type(e).__name__}: {e})") from None

    def check_task(self, task) -> None:
        """ConfigError (the Dockerfile and line named) if Modal cannot build ``task``'s image."""
        check_task_dockerfile(task)

    def _built(self, key: str, make, log) -> str:
        return aioloop.run(self._abuilt(key, make, log))

    async def _abuilt(self, key: str, make, log) -> str:
        """One build per key, however many runs ask at once (an asyncio lock: cooperative runs
        must not block the loop thread on a threading lock)."""
        if key in self._images:
            return self._images[key][0]
        lock = self._build_locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._images:
                (log or (lambda _line: None))(f"building Modal image {key} (minutes the first time)")

                async def build():
                    return await make().build.aio(await self.aapp())

                image = await self.acall(f"image {key}", build)
                with self._lock:
                    self._images[key] = (image.object_id, image)
                    self._by_ref[image.object_id] = image
        return self._images[key][0]

    def _suite(self) -> str:
        from rollouts.images import _host_suite

        return _host_suite()

    def _base_key(self) -> str:
        try:
            recipe = self.base_dockerfile.read_bytes()
        except OSError as e:
            raise EnvironmentNotReady(f"base image recipe {self.base_dockerfile}: {e.strerror}") from None
        return "base-" + hashlib.sha256(recipe + b"\0suite=" + self._suite().encode()).hexdigest()[:12]

    def base_image(self, log=None) -> str:
        """Image id of ``docker/base/Dockerfile`` (``debian:<host suite>-slim`` + BASE_PACKAGES, the
        local recipe) built by Modal, once per recipe digest. ImageBuildError if the build fails."""
        df, suite = self.base_dockerfile, self._suite()
        return self._built(
            self._base_key(),
            lambda: self.sdk.Image.from_dockerfile(df, context_dir=df.parent, build_args={"DEBIAN_SUITE": suite}),
            log,
        )

    def task_image(self, task, log=None) -> str:
        """Image id for ``task``: its Dockerfile's lines after ``FROM ${BASE_IMAGE}`` on the base
        image (``Image.dockerfile_commands``, context = the Dockerfile's dir), built once per content
        digest; the base image without a Dockerfile. ConfigError when Modal cannot build it
        (:meth:`check_task`), ImageBuildError when the build fails."""
        from rollouts.images import task_image_digest

        cmds = check_task_dockerfile(task)
        if cmds is None:
            return self.base_image(log)
        df = (task.dir / task.meta.environment.dockerfile).resolve()
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
        return aioloop.run(self.alist_leftovers(rollout_id))

    async def alist_leftovers(self, rollout_id: str | None = None) -> list[dict]:
        tags = {base.LABEL_TOOL: base.TOOL_NAME, **({base.LABEL_ROLLOUT: rollout_id} if rollout_id else {})}
        app_id = (await self.aapp()).app_id

        async def listing():
            return [sb async for sb in self.sdk.Sandbox.list.aio(app_id=app_id, tags=tags)]

        out = []
        for sb in await self.acall("list sandboxes", listing):
            try:
                labels = await self.acall("get tags", sb.get_tags.aio)
            except SandboxError:  # finished meanwhile
                continue
            out.append({"id": sb.object_id, "name": None, "labels": labels, "status": "running"})
        return out

    def remove(self, sandbox_id: str) -> None:
        """Terminate one sandbox by id (``Sandbox.from_id`` + ``terminate``); a gone one is fine."""
        aioloop.run(self.aremove(sandbox_id))

    async def aremove(self, sandbox_id: str) -> None:
        x = self.sdk.exception
        try:
            sb = await self.aretry(self.sdk.Sandbox.from_id.aio, sandbox_id)
            await self.aretry(sb.terminate.aio)
            await sb.detach.aio()
        except (x.NotFoundError, x.SandboxTerminatedError, x.SandboxTimeoutError):
            return
        except self.transport_errors as e:
            raise self.translate(e, f"terminate {sandbox_id}") from None
