"""Sandbox images: the shared base image and per-task images, both cached by content digest.

The base image is made without any registry: ``mmdebstrap`` writes a minimal Debian rootfs
(suite = the host's, mirror = the host's apt sources) to a tar, which ``docker import`` turns into
``rollouts-base:<digest12>`` (also tagged ``rollouts-base:latest``). ``docker/base/Dockerfile``
is the same recipe from ``debian:<suite>-slim`` for machines where a registry is reachable.

A task image is built from the task's Dockerfile, which must start ``ARG BASE_IMAGE`` /
``FROM ${BASE_IMAGE}``; it is tagged ``rollouts-task-<name>:<digest12>`` where the digest covers
the base image id and every file of the build context, so an existing tag means nothing to build.
Concurrent callers (threads and processes) build each image once.

Ownership: a task image is built FROM :func:`owner_base_image` — the base image re-labelled with
this harness process's owner labels (pid, host, process start time; ``rollouts.kind=build``) —
so every intermediate build container and layer names a live owner, and ``clean``
(:func:`remove_build_leftovers`) removes only what is provably orphaned, never a running build.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import docker.errors
from filelock import FileLock

from rollouts.errors import ConfigError, EnvironmentNotReady, ImageBuildError
from rollouts.image_map import images_used  # noqa: F401 - re-exported: run/manifest.py imports it from here
from rollouts.run.owner import is_orphan, owner_labels
from rollouts.task import Task, check_dockerfile, dir_digest

Log = Callable[[str], None]

RECIPE_VERSION = 1  # bump when the base recipe changes in a way the package list does not show
BASE_REPO = "rollouts-base"
TASK_REPO_PREFIX = "rollouts-task-"
LABEL_TOOL = "rollouts.tool"
LABEL_KIND = "rollouts.kind"
TOOL_NAME = "rollouts"
BUILD_LOG_TAIL = 20  # lines of build output kept in an ImageBuildError

# Kept lean: what graders and agent shells commonly need. docker/base/Dockerfile must match.
BASE_PACKAGES: tuple[str, ...] = tuple(
    """
    bash ca-certificates coreutils diffutils findutils gawk git grep patch procps
    python-is-python3 python3 python3-dateutil python3-pip python3-pytest python3-venv sed
    """.split()
)

IMAGE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    "ENV PIP_BREAK_SYSTEM_PACKAGES=1",
    f"LABEL {LABEL_TOOL}={TOOL_NAME} {LABEL_KIND}=base",
    'CMD ["bash"]',
)

# Same trimming as Debian's -slim images: no man pages, docs (bar copyright) or translations.
_DPKG_EXCLUDES = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)
_CUSTOMIZE_HOOKS = (
    "chroot \"$1\" git config --system --add safe.directory '*'",
    'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb',
)

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_locks_guard = threading.Lock()
_thread_locks: dict[str, threading.Lock] = {}


def _host_suite() -> str:
    """Debian codename of the host (VERSION_CODENAME in /etc/os-release)."""
    try:
        text = Path("/etc/os-release").read_text()
    except OSError as e:
        raise EnvironmentNotReady(f"cannot read /etc/os-release: {e.strerror}") from None
    m = re.search(r'^VERSION_CODENAME="?([a-z]+)"?\s*$', text, re.M)
    if not m:
        raise EnvironmentNotReady("no VERSION_CODENAME in /etc/os-release (base image needs a Debian host)")
    return m.group(1)


def _host_sources() -> Path:
    """The host's Debian apt sources file (deb822 or one-line); mmdebstrap copies it into the image."""
    d = Path("/etc/apt/sources.list.d")
    candidates = [d / "debian.sources", Path("/etc/apt/sources.list"), *sorted(d.glob("*.sources"))]
    for p in candidates:
        if p.is_file() and re.search(r"^\s*(Types:|deb\s)", p.read_text(errors="replace"), re.M):
            return p
    raise EnvironmentNotReady("no apt sources found in /etc/apt (needed to build the base image)")


def base_recipe_digest() -> str:
    """12-hex-char sha256 over the recipe version, host suite and ``BASE_PACKAGES``.

    It is the tag of the base image (``rollouts-base:<digest>``). Raises EnvironmentNotReady
    when the host suite cannot be read from /etc/os-release.
    """
    parts = [f"recipe={RECIPE_VERSION}", f"suite={_host_suite()}", *sorted(BASE_PACKAGES), *IMAGE_CHANGES]
    parts += [*_DPKG_EXCLUDES, *_CUSTOMIZE_HOOKS]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def _lock_dir() -> Path:
    for d in (Path.home() / ".cache" / "rollouts" / "locks", Path(tempfile.gettempdir()) / "rollouts-locks"):
        try:
            d.mkdir(parents=True, exist_ok=True)
            return d
        except OSError:
            continue
    raise EnvironmentNotReady("no writable directory for lock files (~/.cache or the temp dir)")


def _locked(key: str) -> tuple[threading.Lock, FileLock]:
    """A per-key thread lock and a cross-process file lock (acquire in that order)."""
    with _locks_guard:
        tlock = _thread_locks.setdefault(key, threading.Lock())
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)
    return tlock, FileLock(str(_lock_dir() / f"{safe}.lock"))


def _image_exists(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.APIError as e:
        raise ImageBuildError(f"cannot inspect image {ref}: {e.explanation or e}") from None


def ensure_base_image(client: docker.DockerClient, log: Log | None = None, force: bool = False) -> str:
    """Return ``rollouts-base:<digest12>``, building it with mmdebstrap + ``docker import`` if absent.

    Takes ~1 min (45-80 s) and ~250 MB of temp disk when it builds; progress lines go to ``log``.
    ``force`` rebuilds even if the tag exists. Raises EnvironmentNotReady when mmdebstrap, the
    host suite or apt sources are missing, ImageBuildError when mmdebstrap or the import fails.
    """
    log = log or (lambda _line: None)
    ref = f"{BASE_REPO}:{base_recipe_digest()}"
    if not force and _image_exists(client, ref):
        return ref
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise EnvironmentNotReady(
            "mmdebstrap is needed to build the base image: apt-get install -y mmdebstrap"
        )
    tlock, flock = _locked(ref)
    with tlock, flock:
        if not force and _image_exists(client, ref):
            return ref
        with tempfile.TemporaryDirectory(prefix="rollouts-base-") as tmp:
            tar = Path(tmp) / "rootfs.tar"
            cmd = [mmdebstrap, "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES)]
            cmd += [f"--dpkgopt={o}" for o in _DPKG_EXCLUDES]
            cmd += [f"--customize-hook={h}" for h in _CUSTOMIZE_HOOKS]
            cmd += [_host_suite(), str(tar), str(_host_sources())]
            log(f"building {ref} with mmdebstrap (about 1-2 minutes)")
            _run_streaming(cmd, log)
            log(f"importing {tar.stat().st_size / 1e6:.0f} MB rootfs as {ref}")
            try:
                repo, tag = ref.split(":")
                client.api.import_image_from_file(
                    str(tar), repository=repo, tag=tag, changes=list(IMAGE_CHANGES)
                )
                client.images.get(ref).tag(BASE_REPO, "latest")
            except docker.errors.APIError as e:
                raise ImageBuildError(
                    f"docker import of the base image failed: {e.explanation or e}"
                ) from None
    log(f"built {ref}")
    return ref


def _run_streaming(cmd: list[str], log: Log) -> None:
    """Run ``cmd``, sending each output line to ``log``; ImageBuildError with the tail on failure."""
    tail: deque[str] = deque(maxlen=BUILD_LOG_TAIL)
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    try:
        for line in proc.stdout or ():
            line = line.rstrip("\n")
            tail.append(line)
            log(line)
        rc = proc.wait()
    finally:
        if proc.poll() is None:  # interrupted: do not leave mmdebstrap running
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if rc != 0:
        raise ImageBuildError(f"mmdebstrap failed (exit {rc}):\n" + "\n".join(tail))


def _dockerfile(task: Task) -> Path | None:
    rel = task.meta.environment.dockerfile
    return None if rel is None else (task.dir / rel).resolve()


def task_image_digest(task: Task, base_ref: str) -> str:
    """Full sha256 hex over ``base_ref`` (pass the base image *id*), the Dockerfile name and
    every file in the Dockerfile's directory (the build context). Raises ConfigError if the
    task has no Dockerfile."""
    df = _dockerfile(task)
    if df is None:
        raise ConfigError("task has no environment.dockerfile", file=str(task.dir))
    return dir_digest(df.parent, f"\0base={base_ref}\0dockerfile={df.name}".encode())


def task_image_repo(task: Task) -> str:
    """Repository name ``rollouts-task-<name>`` (lowercased, other characters mapped to ``-``)."""
    name = re.sub(r"[^a-z0-9]+", "-", task.name.lower()).strip("-")[:100] or "task"
    return TASK_REPO_PREFIX + name


def ensure_task_image(client: docker.DockerClient, task: Task, log: Log | None = None) -> str:
    """Return the image reference for ``task``, building it at most once per content digest.

    No Dockerfile: the base image ref. Otherwise ``rollouts-task-<name>:<digest12>``, built
    with ``BASE_IMAGE`` set to the base ref and never pulling; build output goes to ``log``.
    Raises ConfigError if the Dockerfile does not use ``FROM ${BASE_IMAGE}``, ImageBuildError
    (with the last ~20 build lines) if the build fails, and whatever ensure_base_image raises.
    """
    log = log or (lambda _line: None)
    env = task.meta.environment
    if env.image or env.dockerfile_from == "as_written":
        from rollouts.image_build import ensure_as_written

        return ensure_as_written(client, task, log, lambda: ensure_base_image(client, log))
    base_ref = ensure_base_image(client, log)
    df = _dockerfile(task)
    if df is None:
        return base_ref
    check_dockerfile(task)  # again: a Task made without load_config reaches here too
    base_id = client.images.get(base_ref).id
    ref = f"{task_image_repo(task)}:{task_image_digest(task, base_id)[:12]}"
    if _image_exists(client, ref):
        return ref
    tlock, flock = _locked(ref)
    with tlock, flock:
        if _image_exists(client, ref):
            return ref
        log(f"building {ref} from {df}")
        build_image(client, ref, task, log, path=str(df.parent), dockerfile=df.name,
                    buildargs={"BASE_IMAGE": owner_base_image(client, base_ref)})
    log(f"built {ref}")
    return ref


def build_image(client: docker.DockerClient, ref: str, task: Task, log: Log,
                timeout_sec: float | None = None, **build_args) -> None:
    """``docker build`` tagged ``ref`` (``client.api.build(**build_args)``: a ``path`` or a
    ``fileobj`` context, ``dockerfile``, ``buildargs`` ...), never pulling, intermediate containers
    removed, labelled a task image; each output line (ANSI colours stripped) goes to ``log``.

    Raises ImageBuildError naming ``ref`` and the task, with the last ``BUILD_LOG_TAIL`` lines, when
    the build reports an error, the engine refuses it, it runs past ``timeout_sec`` seconds (checked
    between output lines; None = no limit) or it ends without an image ``ref``.
    """
    tail: deque[str] = deque(maxlen=BUILD_LOG_TAIL)
    error = None
    deadline = None if timeout_sec is None else time.monotonic() + timeout_sec
    try:
        stream = client.api.build(tag=ref, pull=False, rm=True, forcerm=True, decode=True,
                                  labels={LABEL_TOOL: TOOL_NAME, LABEL_KIND: "task"}, **build_args)
        for chunk in stream:
            if "error" in chunk:
                error = str(chunk["error"]).strip()
            text = _ANSI.sub("", str(chunk.get("stream") or chunk.get("error") or ""))
            for line in text.splitlines():
                if line.strip():
                    tail.append(line)
                    log(line)
            if deadline is not None and time.monotonic() > deadline:
                error = f"build exceeded build_timeout_sec = {timeout_sec:g} s"
                break
    except docker.errors.APIError as e:
        error = str(e.explanation or e)
    if error is not None or not _image_exists(client, ref):
        lines = "\n".join(tail)
        raise ImageBuildError(f"building {ref} for task {task.name} failed: {error or 'no image was produced'}\n{lines}")


OWNER_REPO = "rollouts-owner"
_owner_lock = threading.Lock()


def owner_base_image(client: docker.DockerClient, base_ref: str) -> str:
    """``base_ref`` with this harness process's owner labels and ``rollouts.kind=build`` (a
    never-started container committed: no new files), tagged ``rollouts-owner:<pid>-<start>-<base12>``.
    Builds FROM it, so their intermediate containers and layers carry the owner. Made once per
    process and base. ImageBuildError if the engine refuses."""
    labels = {**owner_labels(), LABEL_KIND: "build"}
    base_id = client.images.get(base_ref).id.split(":")[-1][:12]
    tag = f"{labels['rollouts.pid']}-{labels['rollouts.pid_start'].replace('.', '')}-{base_id}"
    ref = f"{OWNER_REPO}:{tag}"
    with _owner_lock:
        if _image_exists(client, ref):
            return ref
        try:
            c = client.api.create_container(base_ref, command=["true"], labels=labels)
            try:
                client.api.commit(c["Id"], repository=OWNER_REPO, tag=tag)
            finally:
                client.api.remove_container(c["Id"], force=True)
        except docker.errors.APIError as e:
            raise ImageBuildError(f"cannot label the base image for building: {e.explanation or e}") from None
    return ref


def remove_build_leftovers(client: docker.DockerClient, dry_run: bool = False) -> list[str]:
    """Remove (or with ``dry_run`` only list) build leftovers that are provably orphaned: their
    owner labels (:func:`owner_base_image`) name a harness process that is gone
    (:func:`rollouts.run.owner.is_orphan`). Containers that are not sandboxes (no run label, e.g.
    intermediate build containers), dangling images (e.g. the last good layer of a failed build)
    and owner tags. Anything without an owner — or whose owner lives, such as another rollout's
    running build — is left alone. Returns ``"image:<id12>"`` / ``"container:<id12>"`` /
    ``"owner-tag:<tag>"`` entries; items Docker refuses to remove (in use) are skipped. Raises
    docker.errors.APIError if listing fails."""
    label = f"{LABEL_TOOL}={TOOL_NAME}"
    found: list[str] = []
    for c in client.api.containers(all=True, filters={"label": label}):
        labels = c.get("Labels") or {}
        if "rollouts.run_id" in labels or not is_orphan(labels):
            continue
        try:
            if not dry_run:
                client.api.remove_container(c["Id"], force=True)
            found.append(f"container:{c['Id'][:12]}")
        except docker.errors.APIError:  # gone meanwhile (NotFound) or refused
            continue
    for img in client.images.list(filters={"dangling": True, "label": label}):
        if not is_orphan(img.labels or {}):
            continue
        short = img.id.split(":")[-1][:12]
        try:
            if not dry_run:
                client.images.remove(img.id, noprune=False)
            found.append(f"image:{short}")
        except docker.errors.APIError:  # in use by a container or another build: not a leftover
            continue
    for img in client.images.list(name=OWNER_REPO):
        if not is_orphan(img.labels or {}):
            continue
        for tag in img.tags:
            try:
                if not dry_run:
                    client.images.remove(tag, noprune=False)  # only untags while task images use it
                found.append(f"owner-tag:{tag}")
            except docker.errors.APIError:
                continue
    return found
