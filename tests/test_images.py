"""Base and task images against the real Docker engine (no mocks).

The first run builds the base image with mmdebstrap (~1 min); later runs reuse it. Task images
get a fresh nonce per test so the cache from earlier runs never hides a build; every image and
container a test creates is removed.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from pathlib import Path

import docker.errors
import pytest

from rollouts.errors import ConfigError, ImageBuildError
from rollouts.images import (
    BASE_PACKAGES,
    base_recipe_digest,
    ensure_base_image,
    ensure_task_image,
    remove_build_leftovers,
    task_image_digest,
)
from rollouts.task import load_task

ROOT = Path(__file__).resolve().parents[1]
GOOD_DOCKERFILE = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo {nonce} > /nonce && echo built-{nonce}\n"


def make_task(root: Path, dockerfile: str | None, nonce: str = "", name: str = "imgtest"):
    """A minimal prepared task dir; ``dockerfile`` text goes to environment/Dockerfile."""
    root.mkdir(parents=True, exist_ok=True)
    meta = {
        "schema_version": 1,
        "name": name,
        "environment": {"dockerfile": "environment/Dockerfile" if dockerfile is not None else None},
        "workspace": None,
        "tests": {"dir": "tests"},
    }
    (root / "tb_meta.json").write_text(json.dumps(meta))
    (root / "instruction.md").write_text("Do nothing.\n")
    (root / "tests").mkdir(exist_ok=True)
    (root / "tests" / "test.sh").write_text("exit 0\n")
    if dockerfile is not None:
        (root / "environment").mkdir(exist_ok=True)
        (root / "environment" / "Dockerfile").write_text(dockerfile.replace("{nonce}", nonce))
    return load_task(root)


def dockerfile_packages(text: str) -> list[str]:
    """Package names of the ``apt-get install`` in a Dockerfile (continuations joined)."""
    joined = text.replace("\\\n", " ")
    m = re.search(r"apt-get install((?:\s+[^\s&]+)+)", joined)
    assert m, "no apt-get install in the Dockerfile"
    return [t for t in m.group(1).split() if not t.startswith("-")]


def test_base_dockerfile_matches_base_packages():
    text = (ROOT / "docker" / "base" / "Dockerfile").read_text()
    assert sorted(dockerfile_packages(text)) == sorted(BASE_PACKAGES)
    assert "git config --system --add safe.directory '*'" in text
    # the release is the host's, as for the local image; Modal passes it as DEBIAN_SUITE
    assert re.search(r"^ARG DEBIAN_SUITE=\w+$", text, re.M) and "\nFROM debian:${DEBIAN_SUITE}-slim\n" in text


def test_task_digest_covers_context_and_base(tmp_path):
    task = make_task(tmp_path / "t", GOOD_DOCKERFILE, nonce="a")
    d1 = task_image_digest(task, "sha256:base1")
    assert d1 == task_image_digest(task, "sha256:base1")
    assert d1 != task_image_digest(task, "sha256:base2")
    (tmp_path / "t" / "environment" / "extra.txt").write_text("x")
    assert d1 != task_image_digest(task, "sha256:base1")
    # files outside the build context do not matter
    d2 = task_image_digest(task, "sha256:base1")
    (tmp_path / "t" / "instruction.md").write_text("changed")
    assert d2 == task_image_digest(task, "sha256:base1")


@pytest.fixture(scope="module")
def client():
    try:
        c = docker.from_env()
        c.ping()
    except docker.errors.DockerException as e:
        pytest.skip(f"no Docker engine: {e}")
    yield c
    c.close()


@pytest.fixture(scope="module")
def base_ref(client):
    return ensure_base_image(client, log=print)


@pytest.fixture
def cleanup_images(client):
    refs: list[str] = []
    yield refs
    for ref in refs:
        try:
            client.images.remove(ref, force=True)
        except docker.errors.ImageNotFound:
            pass


@pytest.fixture
def build_counter(client):
    """Count calls of the real ``client.api.build`` (a spy, not a mock)."""
    real = client.api.build
    calls: list[str] = []
    lock = threading.Lock()

    def counting(*args, **kwargs):
        with lock:
            calls.append(kwargs.get("tag"))
        return real(*args, **kwargs)

    client.api.build = counting
    yield calls
    client.api.build = real


def run_in(client, image: str, script: str) -> tuple[int, str]:
    """Run ``bash -c script`` in a new container; always removes the container."""
    c = client.containers.create(image, ["bash", "-c", script], labels={"rollouts.test": "images"})
    try:
        c.start()
        rc = c.wait(timeout=60)["StatusCode"]
        return rc, c.logs().decode()
    finally:
        c.remove(force=True)


@pytest.mark.docker
def test_base_image_contents(client, base_ref):
    assert base_ref == f"rollouts-base:{base_recipe_digest()}"
    img = client.images.get(base_ref)
    assert "rollouts-base:latest" in img.tags
    assert img.labels.get("rollouts.tool") == "rollouts" and img.labels.get("rollouts.kind") == "base"
    assert "LANG=C.UTF-8" in img.attrs["Config"]["Env"]
    assert ensure_base_image(client) == base_ref  # exists: no rebuild
    assert client.images.get(base_ref).id == img.id
    script = (
        "set -e; bash --version | head -1; python3 --version; git --version; patch --version | head -1; "
        "python3 -m pytest --version; ps -p 1 -o comm=; python3 -m venv /tmp/v && /tmp/v/bin/python -V; "
        "echo SAFE=$(git config --system --get-all safe.directory); timeout 5 true; diff --version | head -1; "
        "ls /var/lib/apt/lists | grep -c _Packages || true"
    )
    rc, out = run_in(client, base_ref, script)
    assert rc == 0, out
    assert "Python 3" in out and "git version" in out and "GNU patch" in out and "pytest" in out
    assert "SAFE=*" in out
    assert out.strip().splitlines()[-1] == "0"  # apt lists were cleaned


@pytest.mark.docker
def test_task_without_dockerfile_uses_base(client, base_ref, tmp_path, build_counter):
    task = make_task(tmp_path / "t", None)
    assert ensure_task_image(client, task) == base_ref
    assert build_counter == []


@pytest.mark.docker
def test_task_image_built_once_then_cached(client, base_ref, tmp_path, cleanup_images, build_counter):
    nonce = uuid.uuid4().hex
    task = make_task(tmp_path / "t", GOOD_DOCKERFILE, nonce)
    lines: list[str] = []
    ref = ensure_task_image(client, task, log=lines.append)
    cleanup_images.append(ref)
    assert re.fullmatch(r"rollouts-task-imgtest:[0-9a-f]{12}", ref)
    assert any(f"built-{nonce}" in line for line in lines)
    img = client.images.get(ref)
    assert img.labels["rollouts.kind"] == "task" and img.labels["rollouts.tool"] == "rollouts"
    assert len(build_counter) == 1

    again = ensure_task_image(client, make_task(tmp_path / "t", GOOD_DOCKERFILE, nonce))
    assert again == ref
    assert client.images.get(ref).id == img.id
    assert len(build_counter) == 1  # second call built nothing
    rc, out = run_in(client, ref, "cat /nonce; git config --system --get-all safe.directory")
    assert rc == 0 and nonce in out and "*" in out


@pytest.mark.docker
def test_concurrent_callers_build_once(client, base_ref, tmp_path, cleanup_images, build_counter):
    task = make_task(tmp_path / "t", GOOD_DOCKERFILE, uuid.uuid4().hex)
    barrier = threading.Barrier(4)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker():
        try:
            barrier.wait()
            results.append(ensure_task_image(client, task))
        except BaseException as e:  # surfaced by the asserts below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    cleanup_images.extend(set(results))
    assert errors == []
    assert len(results) == 4 and len(set(results)) == 1
    assert len(build_counter) == 1


@pytest.mark.docker
def test_bad_run_raises_image_build_error(client, base_ref, tmp_path, build_counter):
    nonce = uuid.uuid4().hex
    df = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo boom-{nonce} && exit 3\n"
    task = make_task(tmp_path / "t", df, nonce)
    with pytest.raises(ImageBuildError) as ei:
        ensure_task_image(client, task)
    msg = str(ei.value)
    assert f"boom-{nonce}" in msg and "rollouts-task-imgtest" in msg
    assert len(build_counter) == 1
    # forcerm: the failed step's container is gone
    leftovers = [
        c for c in client.containers.list(all=True) if nonce in " ".join(c.attrs["Config"]["Cmd"] or [])
    ]
    assert leftovers == []


@pytest.mark.docker
def test_dockerfile_must_use_base_image(client, base_ref, tmp_path, build_counter):
    task = make_task(tmp_path / "t", "FROM debian:bookworm\nRUN true\n")
    with pytest.raises(ConfigError, match="BASE_IMAGE"):
        ensure_task_image(client, task)
    assert build_counter == []


@pytest.mark.docker
def test_remove_build_leftovers_only_of_dead_owners(client, base_ref, tmp_path):
    """A failed build leaves its first layer dangling, labelled with the builder's owner labels.
    While the builder lives (this process) ``clean`` keeps it; a builder that exited (a
    subprocess) has its layer and its owner tag removed."""
    import subprocess
    import sys

    dangling = lambda: {i.id for i in client.images.list(filters={"dangling": True, "label": "rollouts.tool=rollouts"})}  # noqa: E731
    df = "ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nRUN echo {nonce} > /a\nRUN exit 4\n"
    before = dangling()
    with pytest.raises(ImageBuildError):
        ensure_task_image(client, make_task(tmp_path / "live", df.format(nonce=uuid.uuid4().hex), "live"))
    mine = dangling() - before
    assert mine, "the failed build should leave its first layer as a dangling image"
    task = make_task(tmp_path / "dead", df.format(nonce=uuid.uuid4().hex), "dead")
    code = ("import docker, sys; from rollouts.images import ensure_task_image; from rollouts.task import load_task\n"
            "try:\n    ensure_task_image(docker.from_env(), load_task(__import__('pathlib').Path(sys.argv[1])))\n"
            "except Exception as e:\n    print(type(e).__name__)\n")
    p = subprocess.run([sys.executable, "-c", code, str(task.dir)], capture_output=True, text=True, cwd=ROOT)
    assert "ImageBuildError" in p.stdout, p.stdout + p.stderr
    theirs = dangling() - before - mine
    assert theirs
    listed = remove_build_leftovers(client, dry_run=True)
    for image_id in theirs:
        assert f"image:{image_id.split(':')[-1][:12]}" in listed
        client.images.get(image_id)  # dry run removed nothing
    assert any(x.startswith("owner-tag:rollouts-owner:") for x in listed)
    removed = remove_build_leftovers(client)
    for image_id in theirs:
        assert f"image:{image_id.split(':')[-1][:12]}" in removed
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(image_id)
    for image_id in mine:  # the live owner's: kept
        assert f"image:{image_id.split(':')[-1][:12]}" not in removed
        client.images.get(image_id)
        client.images.remove(image_id)
