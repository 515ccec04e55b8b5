"""Images for tasks whose Dockerfile is used as written (Harbor, Terminal-Bench) or that name a
prebuilt image: ``FROM ubuntu:24.04`` and the like, mapped through the config's ``[images]``
table on machines without a registry (``"python:3.13-slim" = "rollouts-base"``).

A Dockerfile is built with its FROM lines rewritten to the mapped images (the task's files are
never changed: the build context is streamed as a tar with the rewritten Dockerfile), tagged
``rollouts-task-<name>:<digest12>`` where the digest covers the build context, the Dockerfile
name and the id of every base image, so an existing tag means nothing to build. One build per
digest (thread + file lock), under the task's ``build_timeout_sec``. The engine pulls only when
the config says it can (``pull_images = true``); otherwise a missing base is EnvironmentNotReady
(``check`` and ``run`` report missing images up front with :func:`missing_base_images`, exit 3).
The mapping itself is :mod:`rollouts.image_map`; the docker build loop is :func:`rollouts.images.build_image`.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Callable
from pathlib import Path

import docker.errors

from rollouts.errors import EnvironmentNotReady, ImageBuildError
from rollouts.image_map import base_images_of, dockerfile_bases, from_images, mapped_image
from rollouts.images import (
    BASE_REPO,
    _image_exists,
    _locked,
    build_image,
    task_image_repo,
)
from rollouts.task import Task, dir_digest

Log = Callable[[str], None]


def _resolve_base(client, ref: str, task: Task, ensure_base: Callable[[], str], log: Log) -> str:
    """A (mapped) base reference → a local image reference; pulls only if the config allows."""
    if ref == BASE_REPO or ref.startswith(BASE_REPO + ":"):
        return ensure_base()
    if _image_exists(client, ref):
        return ref
    if not task.pull_images:
        raise EnvironmentNotReady(
            f"image {ref} (needed by task {task.name}) is not present and cannot be pulled here; "
            f"map it in the config's [images] table (e.g. \"{ref}\" = \"rollouts-base\") or set pull_images = true"
        )
    tlock, flock = _locked(f"pull-{ref}")
    with tlock, flock:  # one pull per image, however many runs ask at once
        if _image_exists(client, ref):
            return ref
        log(f"pulling {ref}")
        try:
            client.images.pull(ref)
        except docker.errors.APIError as e:
            raise ImageBuildError(f"pulling {ref} for task {task.name} failed: {e.explanation or e}") from None
    return ref


def rewrite_from(text: str, resolved: dict[str, str]) -> str:
    """``text`` with each ``FROM <ref>`` whose ref is a key of ``resolved`` rewritten to its value."""

    def sub(m: re.Match) -> str:
        ref = m.group(2)
        return m.group(1) + resolved.get(ref, ref)

    return re.sub(r"^(\s*FROM\s+(?:--platform=\S+\s+)?)(\S+)", sub, text, flags=re.M | re.I)


def _context_tar(ctx: Path, dockerfile_rel: str, dockerfile_text: str) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for p in sorted(ctx.rglob("*")):
            rel = p.relative_to(ctx).as_posix()
            if rel == dockerfile_rel:
                continue
            tar.add(p, arcname=rel, recursive=False)
        data = dockerfile_text.encode()
        info = tarfile.TarInfo(dockerfile_rel)
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def ensure_as_written(client, task: Task, log: Log, ensure_base: Callable[[], str]) -> str:
    """The image reference for a task with a prebuilt ``image`` or an as-written Dockerfile. With
    both (Terminal-Bench 2 ships a ``docker_image`` and the Dockerfile it was built from), the
    prebuilt image is used when it is present or may be pulled, else the Dockerfile is built.

    Raises EnvironmentNotReady for a missing base that cannot be pulled, ImageBuildError (with
    the last build lines) when the build fails or exceeds ``build_timeout_sec``.
    """
    env = task.meta.environment
    if env.image and (env.dockerfile is None or task.pull_images or prebuilt_available(client, task)):
        return _resolve_base(client, mapped_image(env.image, task.image_map), task, ensure_base, log)
    assert env.dockerfile is not None  # a prebuilt image not to be had here: build its Dockerfile
    df = (task.dir / env.dockerfile).resolve()
    text = df.read_text(errors="replace")
    resolved = {ref: _resolve_base(client, mapped_image(ref, task.image_map), task, ensure_base, log)
                for ref in from_images(text)}
    ids = "".join(f"\0{k}={client.images.get(v).id}" for k, v in sorted(resolved.items()))
    digest = dir_digest(df.parent, f"\0dockerfile={df.name}{ids}".encode())
    ref = f"{task_image_repo(task)}:{digest[:12]}"
    if _image_exists(client, ref):
        return ref
    tlock, flock = _locked(ref)
    with tlock, flock:
        if _image_exists(client, ref):
            return ref
        changed = {k: v for k, v in resolved.items() if k != v}
        log(f"building {ref} from {df}" + (f" (FROM mapped: {changed})" if changed else ""))
        build_image(client, ref, task, log, timeout_sec=env.build_timeout_sec, custom_context=True,
                    fileobj=_context_tar(df.parent, df.name, rewrite_from(text, resolved)), dockerfile=df.name)
    log(f"built {ref}")
    return ref


def prebuilt_available(client: docker.DockerClient, task: Task) -> bool:
    """Whether the task's prebuilt ``image`` (after mapping) is in the local engine."""
    env = task.meta.environment
    return bool(env.image) and _image_exists(client, mapped_image(env.image, task.image_map))


def missing_base_images(client: docker.DockerClient, tasks: list[Task], mapping: dict[str, str]) -> dict[str, list[str]]:
    """Base images (after mapping) that are not present in the local engine → the task names
    needing them. Looks only at local images (never pulls). ``rollouts-base`` counts as present
    (it is built locally on demand)."""
    need: dict[str, list[str]] = {}
    for t in tasks:
        refs = base_images_of(t)
        if t.meta.environment.image and t.meta.environment.dockerfile:  # prebuilt, else built from its recipe
            refs = [] if prebuilt_available(client, t) else dockerfile_bases(t)
        for ref in refs:
            m = mapped_image(ref, mapping)
            need.setdefault(m, [])
            if t.name not in need[m]:
                need[m].append(t.name)
    missing: dict[str, list[str]] = {}
    for ref, names in need.items():
        if ref == BASE_REPO or ref.startswith(BASE_REPO + ":"):
            continue
        if not _image_exists(client, ref):
            missing[ref] = names
    return missing
