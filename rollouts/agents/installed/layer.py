"""Agent layers: an installed agent's files, downloaded once from PyPI and kept in a read-only
Docker volume, built once per (agent, version, platform).

Design (README "Installed agents"): on an agent's first use the host runs
``pip download --only-binary=:all: --no-deps`` for the agent's pinned wheels into
``$XDG_CACHE_HOME/rollouts/agents/wheels/<agent>-<version>-<platform>/`` (default ``~/.cache``),
with a progress bar. The wanted members of the wheels (zip files) are streamed into a tar and
copied into a new Docker volume ``rollouts-agent-<agent>-<version>-<platform>-<digest12>``,
where the digest is the sha256 over the layer recipe and every wheel's sha256 (content
addressed). Each run mounts that volume read-only at :data:`LAYER_MOUNT`: nothing is copied per
run (Claude Code's 402 MB binary included). A host index file
``layers/<agent>-<version>-<platform>.json`` names the volume; a second run reads it and checks
the volume exists (one Docker API call, ~10 ms) and installs nothing. A file lock per key makes
parallel first runs build it once. ``clean --agent-layers`` removes volumes not named by an
index (stale), or all of them.

Containers here cannot reach PyPI (DESIGN.md), so the wheels are never fetched in a sandbox, and
not in ``setup.sh`` (140-180 MB each).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
from filelock import FileLock, Timeout

from rollouts.errors import EnvironmentNotReady, SandboxError
from rollouts.store import atomic_write_json, now_iso

LAYER_MOUNT = "/opt/rollouts-agent"  # where a run sees its agent layer (read-only)
LAYER_RECIPE = 1  # bump when the extraction changes: all digests change
LABEL_LAYER = "rollouts.agent_layer"
LABEL_CACHE = "rollouts.agent_cache"  # which cache directory built it (clean only touches its own)
LABEL_TOOL = "rollouts.tool"

Log = Callable[[str], None]
_thread_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


@dataclass(frozen=True)
class Package:
    """One PyPI wheel of an agent and what of it goes into the layer.

    ``members``: mapping of a path prefix inside the wheel (``codex_cli_bin/``) to a path prefix
    in the layer (``codex/``); members outside every prefix are left out.
    """

    name: str
    version: str
    members: tuple[tuple[str, str], ...]


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/rollouts/agents`` (``~/.cache/rollouts/agents`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rollouts" / "agents"


def sandbox_platform() -> tuple[str, str]:
    """(our platform key, pip ``--platform`` tag) for Linux sandboxes on this host's CPU."""
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine().lower())
    return f"linux-{arch}", f"manylinux_2_17_{arch}"


def cache_id() -> str:
    """12 hex chars naming this cache directory (the volume label :data:`LABEL_CACHE`)."""
    return hashlib.sha256(str(cache_root().resolve()).encode()).hexdigest()[:12]


def _locked(key: str) -> tuple[threading.Lock, FileLock]:
    with _guard:
        tl = _thread_locks.setdefault(key, threading.Lock())
    d = cache_root() / "locks"
    d.mkdir(parents=True, exist_ok=True)
    return tl, FileLock(str(d / f"{key}.lock"))


_RAW = re.compile(r"Progress (\d+) of (\d+)")


def download_wheels(packages: Iterable[Package], dest: Path, pip_platform: str, log: Log,
                    show_progress: bool = True) -> list[Path]:
    """``pip download`` each package's wheel (no dependencies, binary only, for ``pip_platform``)
    into ``dest``; returns the wheel paths. Shows a rich progress bar on stderr from pip's
    ``--progress-bar raw`` lines. Raises EnvironmentNotReady (exit 3) when pip fails (no index,
    no such version), with pip's last lines."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    dest.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    for p in packages:
        spec = f"{p.name}=={p.version}"
        log(f"downloading {spec} (first use of this agent version; cached in {dest})")
        cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps",
               "--platform", pip_platform, "--progress-bar", "raw", "--disable-pip-version-check",
               "-d", str(dest), spec]
        tail: list[str] = []
        with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                      TransferSpeedColumn(), transient=True, disable=not show_progress) as bar:
            task = bar.add_task(spec, total=None)
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert proc.stdout is not None
            for line in proc.stdout:
                m = _RAW.search(line)
                if m:
                    bar.update(task, completed=int(m.group(1)), total=int(m.group(2)))
                else:
                    tail = (tail + [line.rstrip()])[-8:]
            rc = proc.wait()
        if rc != 0:
            raise EnvironmentNotReady(f"pip download {spec} failed (exit {rc}): " + " | ".join(tail))
        norm = re.sub(r"[-_.]+", "_", p.name).lower()
        found = sorted(w for w in dest.glob("*.whl")
                       if w.name.lower().startswith(f"{norm}-{p.version}-"))
        if not found:
            raise EnvironmentNotReady(f"pip download {spec} left no wheel in {dest}")
        out.append(found[-1])
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


MARKER = ".rollouts-layer.json"  # written last into a layer: its presence means complete


def write_layer_tar(pairs: Iterable[tuple[Path, Package]], out: Path, marker: bytes = b"") -> int:
    """Stream the wanted members of each wheel into the tar file ``out`` (modes kept from the
    wheel's zip attributes, owner root, files read-only for others), then :data:`MARKER` with
    ``marker`` as its content. Returns the member count; raises SandboxError when a package
    contributes no file (wrong ``members``)."""
    n = 0
    with tarfile.open(out, "w") as tar:
        for wheel, pkg in pairs:
            got = 0
            with zipfile.ZipFile(wheel) as z:
                for info in z.infolist():
                    if info.is_dir():
                        continue
                    for src, dst in pkg.members:
                        if info.filename.startswith(src):
                            ti = tarfile.TarInfo(dst + info.filename[len(src):])
                            ti.size = info.file_size
                            mode = (info.external_attr >> 16) & 0o777
                            ti.mode = 0o755 if mode & 0o111 else 0o644
                            ti.mtime = 0
                            with z.open(info) as f:
                                tar.addfile(ti, f)
                            got += 1
                            break
            if not got:
                raise SandboxError(f"wheel {wheel.name} has no member under {[s for s, _ in pkg.members]}")
            n += got
        ti = tarfile.TarInfo(MARKER)
        ti.size, ti.mode = len(marker), 0o644
        tar.addfile(ti, io.BytesIO(marker))
    return n


@dataclass(frozen=True)
class Layer:
    """A built agent layer: the Docker volume and where runs mount it."""

    volume: str
    digest: str
    mount: str = LAYER_MOUNT


def _layer_key(agent: str, version: str) -> tuple[str, str, str]:
    plat, pip_plat = sandbox_platform()
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{agent}-{version}-{plat}"), plat, pip_plat


def _fetch(key: str, pip_plat: str, packages: list[Package], log: Log, show_progress: bool
           ) -> tuple[list[Path], str, float]:
    """Download the wheels; returns (wheel paths, content digest, download seconds)."""
    t0 = time.monotonic()
    wheels = download_wheels(packages, cache_root() / "wheels" / key, pip_plat, log, show_progress)
    h = hashlib.sha256(f"recipe={LAYER_RECIPE}\n".encode())
    for w, p in zip(wheels, packages, strict=True):
        h.update(f"{w.name} {_sha256(w)} {p.members}\n".encode())
    return wheels, h.hexdigest()[:12], time.monotonic() - t0


def ensure_layer(client: docker.DockerClient, agent: str, version: str, packages: list[Package],
                 helper_image: str, log: Log, show_progress: bool = True) -> Layer:
    """The agent layer for (agent, version, this platform), built on first use (see module doc).

    ``helper_image``: any local image; a never-started container of it carries the volume while
    the files are copied in. Thread- and process-safe (one build per key). Raises
    EnvironmentNotReady when the wheels cannot be downloaded, SandboxError on Docker failures.
    """
    key, plat, pip_plat = _layer_key(agent, version)
    index = cache_root() / "layers" / f"{key}.json"
    found = _indexed(client, index)
    if found:
        return found
    tl, fl = _locked(key)
    with tl, fl:
        found = _indexed(client, index)
        if found:
            return found
        t0 = time.monotonic()
        wheels, digest, t_dl = _fetch(key, pip_plat, packages, log, show_progress)
        volume = f"rollouts-agent-{key}-{digest}"
        labels = {LABEL_TOOL: "rollouts", LABEL_LAYER: key, LABEL_CACHE: cache_id(), "rollouts.agent": agent,
                  "rollouts.agent_version": version}
        meta = json.dumps({"volume": volume, "digest": digest, "wheels": [w.name for w in wheels]}).encode()
        if _volume_complete(client, volume, helper_image):  # built by another host index (same content)
            _write_index(index, volume=volume, digest=digest, agent=agent, version=version, platform=plat,
                         files=None, wheels=[w.name for w in wheels], download_sec=t_dl, t0=t0)
            return Layer(volume, digest)
        _remove_volume(client, volume)  # a half-filled one from a crashed build
        with tempfile.TemporaryDirectory(dir=cache_root()) as tmp:
            tar_path = Path(tmp) / "layer.tar"
            n = write_layer_tar(zip(wheels, packages, strict=True), tar_path, meta)
            try:
                client.volumes.create(volume, labels=labels)
                c = client.containers.create(helper_image, command=["true"], network_mode="none",
                                             labels=labels, volumes={volume: {"bind": "/layer", "mode": "rw"}})
                try:
                    with open(tar_path, "rb") as f:
                        if not c.put_archive("/layer", f):
                            raise SandboxError(f"could not copy the {key} layer into volume {volume}")
                finally:
                    c.remove(force=True)
            except docker.errors.DockerException as e:
                _remove_volume(client, volume)
                raise SandboxError(f"building agent layer {volume}: {e}") from None
        _write_index(index, volume=volume, digest=digest, agent=agent, version=version, platform=plat,
                     files=n, wheels=[w.name for w in wheels], download_sec=t_dl, t0=t0)
        log(f"agent layer {volume} built: {n} files in {time.monotonic() - t0:.1f} s")
        return Layer(volume, digest)


def ensure_host_layer(agent: str, version: str, packages: list[Package], log: Log,
                      show_progress: bool = True) -> Path:
    """Like :func:`ensure_layer` for agents that run on the host (pure-Python wheels): the
    members are unpacked once into ``<cache>/host/<key>-<digest>/`` (renamed into place when
    complete); returns that directory (put it on the agent process's PYTHONPATH)."""
    key, plat, pip_plat = _layer_key(agent, version)
    index = cache_root() / "layers" / f"{key}.json"

    def found() -> Path | None:
        if index.is_file():
            p = Path(json.loads(index.read_text())["path"])
            return p if p.is_dir() else None
        return None

    if (p := found()) is not None:
        return p
    tl, fl = _locked(key)
    with tl, fl:
        if (p := found()) is not None:
            return p
        t0 = time.monotonic()
        wheels, digest, t_dl = _fetch(key, pip_plat, packages, log, show_progress)
        dest = cache_root() / "host" / f"{key}-{digest}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
            tar_path = Path(tmp) / "layer.tar"
            n = write_layer_tar(zip(wheels, packages, strict=True), tar_path)
            staging = Path(tmp) / "tree"
            with tarfile.open(tar_path) as tar:
                tar.extractall(staging, filter="data")
            if dest.exists():
                shutil.rmtree(dest)
            staging.rename(dest)
        _write_index(index, path=str(dest), digest=digest, agent=agent, version=version, platform=plat,
                     files=n, wheels=[w.name for w in wheels], download_sec=t_dl, t0=t0)
        log(f"agent layer {dest} built: {n} files in {time.monotonic() - t0:.1f} s")
        return dest


def _write_index(index: Path, *, download_sec: float, t0: float, **fields) -> None:
    atomic_write_json(index, {"schema_version": 1, **fields, "built_at": now_iso(),
                              "download_sec": round(download_sec, 2),
                              "build_sec": round(time.monotonic() - t0, 2)})


def _indexed(client: docker.DockerClient, index: Path) -> Layer | None:
    if not index.is_file():
        return None
    meta = json.loads(index.read_text())
    try:
        client.volumes.get(meta["volume"])
    except docker.errors.NotFound:
        return None
    return Layer(meta["volume"], meta["digest"])


def _volume_complete(client: docker.DockerClient, volume: str, helper_image: str) -> bool:
    """Whether ``volume`` exists and holds :data:`MARKER` (read through a never-started container)."""
    try:
        client.volumes.get(volume)
    except docker.errors.NotFound:
        return False
    c = client.containers.create(helper_image, command=["true"], network_mode="none",
                                 volumes={volume: {"bind": "/layer", "mode": "ro"}})
    try:
        c.get_archive(f"/layer/{MARKER}")
        return True
    except docker.errors.NotFound:
        return False
    finally:
        c.remove(force=True)


def _remove_volume(client: docker.DockerClient, name: str) -> None:
    try:
        client.volumes.get(name).remove(force=True)
    except docker.errors.NotFound:
        pass


def clean_layers(client: docker.DockerClient, *, all_layers: bool = False, dry_run: bool = False) -> list[str]:
    """Remove agent layers built by this cache directory: Docker volumes and host directories
    that no index names (stale: an older digest, a crashed build), or every one with
    ``all_layers`` (index files too). A layer whose build lock is held (being built right now)
    is kept. Returns what was (or, with ``dry_run``, would be) removed. Raises SandboxError when
    Docker refuses (a volume in use by a running sandbox)."""
    live: set[str] = set()
    layers_dir = cache_root() / "layers"
    indexes = sorted(layers_dir.glob("*.json")) if layers_dir.is_dir() else []
    for p in indexes:
        meta = json.loads(p.read_text())
        live.add(meta.get("volume") or meta.get("path"))

    def building(key: str) -> bool:
        lock = FileLock(str(cache_root() / "locks" / f"{key}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return True
        lock.release()
        return False

    gone = []
    for v in client.volumes.list(filters={"label": f"{LABEL_CACHE}={cache_id()}"}):
        key = (v.attrs.get("Labels") or {}).get(LABEL_LAYER, "")
        if (all_layers or v.name not in live) and not building(key):
            gone.append(v.name)
            if not dry_run:
                try:
                    v.remove(force=True)
                except docker.errors.APIError as e:
                    raise SandboxError(f"cannot remove agent layer {v.name}: {e.explanation or e}") from None
    host = cache_root() / "host"
    for d in sorted(host.iterdir()) if host.is_dir() else []:
        key = d.name.rsplit("-", 1)[0]
        if d.is_dir() and not d.name.startswith("tmp") and (all_layers or str(d) not in live) and not building(key):
            gone.append(str(d))
            if not dry_run:
                shutil.rmtree(d)
    if all_layers and not dry_run:
        for p in indexes:
            p.unlink()
    return gone
