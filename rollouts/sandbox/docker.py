"""Docker backend of the sandbox interface: creates DockerSandboxes, caches task images, lists leftovers.

docker-py against the local engine: task images looked up once per process, leftovers listed and
removed by label, the base image built on demand.

One container per run is a :class:`~rollouts.sandbox.docker_sandbox.DockerSandbox`; the engine
client and its errors are in :mod:`rollouts.sandbox.docker_engine`.
"""

from __future__ import annotations

import threading

import docker
import docker.errors

from rollouts.errors import SandboxError
from rollouts.sandbox.base import (
    LABEL_TOOL,
    TOOL_NAME,
    Sandbox,
    SandboxBackend,
    SandboxSpec,
)
from rollouts.sandbox.docker_engine import (
    TRANSPORT_ERRORS,
    docker_client,
    engine_cpus,
    force_remove,
    shared_client,
    short_error,
)
from rollouts.sandbox.docker_sandbox import DockerSandbox

__all__ = ["DockerBackend", "DockerSandbox", "docker_client", "engine_cpus"]


class DockerBackend(SandboxBackend):
    """Sandboxes on the local Docker engine; images from ``rollouts.images``."""

    name = "docker"
    prewarm_grading = True
    lists_changed_paths = True

    def __init__(self, client: docker.DockerClient | None = None):
        self._client = client
        self._images: dict[tuple[str, str], str] = {}  # (task dir, task digest) -> image ref
        self._images_lock = threading.Lock()

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = shared_client()
        return self._client

    def preflight(self) -> None:
        _ = self.client

    def task_image(self, task, log=None) -> str:
        """``rollouts.images.ensure_task_image``, looked up once per task content in this process
        (no image API calls and no context digest per run); forgotten if a start finds it gone."""
        from rollouts.images import ensure_task_image

        key = (str(task.dir), task.digest)
        with self._images_lock:
            ref = self._images.get(key)
        if ref is None:
            ref = ensure_task_image(self.client, task, log=log)
            with self._images_lock:
                self._images[key] = ref
        return ref

    def _forget_image(self, ref: str) -> None:
        with self._images_lock:
            for k in [k for k, v in self._images.items() if v == ref]:
                del self._images[k]

    def create(self, spec: SandboxSpec) -> Sandbox:
        sb = DockerSandbox(self.client, spec)
        sb.on_missing_image = self._forget_image
        return sb

    def prepare(self, log=None) -> None:
        """Build the base image if it is missing (mmdebstrap + docker import, ~1 min once)."""
        from rollouts.images import ensure_base_image

        ensure_base_image(self.client, log=log)

    def list_leftovers(self, rollout_id: str | None = None) -> list[dict]:
        from rollouts.sandbox.base import LABEL_ROLLOUT

        filters = {"label": [f"{LABEL_TOOL}={TOOL_NAME}"]}
        if rollout_id:
            filters["label"].append(f"{LABEL_ROLLOUT}={rollout_id}")
        try:  # one list request; containers.list() would inspect every container one by one
            cs = self.client.api.containers(all=True, filters=filters)
        except TRANSPORT_ERRORS as e:
            raise SandboxError(f"cannot list containers: {short_error(e)}") from None
        return [{"id": c["Id"], "name": (c.get("Names") or ["?"])[0].lstrip("/"), "labels": c.get("Labels") or {},
                 "status": c.get("State")} for c in cs]

    def remove(self, sandbox_id: str) -> None:
        try:
            c = self.client.containers.get(sandbox_id)
        except docker.errors.NotFound:
            return
        except TRANSPORT_ERRORS as e:
            raise SandboxError(f"cannot remove container {sandbox_id[:12]}: {short_error(e)}") from None
        force_remove(c)
