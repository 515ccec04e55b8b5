"""The config's ``[images]`` mapping and the external images a task needs (pure: no Docker).

A Harbor or Terminal-Bench task names images from a registry — a prebuilt ``docker_image`` or the
``FROM`` lines of a Dockerfile used as written. On a machine without a registry the config maps
them to local images (``"python:3.13-slim" = "rollouts-base"``); :mod:`rollouts.image_build`
resolves and builds with that mapping, ``check``/``run`` report what is missing, and the manifest
records the mapping each rollout used (:func:`images_used`).
"""

from __future__ import annotations

import re

from rollouts.task import Task

_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", re.M | re.I)


def from_images(dockerfile_text: str) -> list[str]:
    """The external images a Dockerfile's ``FROM`` lines name, in order (stage names, ``scratch``
    and ``${ARG}`` references excluded)."""
    stages: set[str] = set()
    out: list[str] = []
    for m in _FROM.finditer(dockerfile_text):
        ref, alias = m.group(1), m.group(2)
        if ref.lower() != "scratch" and "$" not in ref and ref.lower() not in stages and ref not in out:
            out.append(ref)
        if alias:
            stages.add(alias.lower())
    return out


def base_images_of(task: Task) -> list[str]:
    """Images ``task`` needs from outside (before ``[images]`` mapping): its prebuilt image, or the
    FROM images of a Dockerfile used as written. Empty for our ``FROM ${BASE_IMAGE}`` convention."""
    env = task.meta.environment
    if env.image:
        return [env.image]
    return dockerfile_bases(task)


def dockerfile_bases(task: Task) -> list[str]:
    """The FROM images of the task's Dockerfile when it is used as written (else empty)."""
    env = task.meta.environment
    if env.dockerfile and env.dockerfile_from == "as_written":
        return from_images((task.dir / env.dockerfile).read_text(errors="replace"))
    return []


def images_used(task: Task) -> dict[str, str]:
    """The ``[images]`` mapping as it applies to ``task`` (image → local image), for the manifest:
    its prebuilt image and its Dockerfile's FROM images, where mapped."""
    refs = dict.fromkeys(base_images_of(task) + dockerfile_bases(task))
    mapped = {ref: mapped_image(ref, task.image_map) for ref in refs}
    return {ref: m for ref, m in mapped.items() if m != ref}


def mapped_image(ref: str, mapping: dict[str, str]) -> str:
    """``ref`` through the config's ``[images]`` table (exact name, else the name without a tag or
    digest matching a key without one)."""
    if ref in mapping:
        return mapping[ref]
    bare = re.split(r"[@]", ref)[0]
    bare = bare.rsplit(":", 1)[0] if ":" in bare.rsplit("/", 1)[-1] else bare
    return mapping.get(bare, ref)
