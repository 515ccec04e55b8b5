"""The local Docker engine: the pinged client, its CPU count, transport errors, forced removal."""

from __future__ import annotations

import os
import socket
import time

import docker
import docker.errors
import requests.exceptions

from rollouts.errors import EnvironmentNotReady, SandboxError

#: What a docker-py call raises when the engine or the connection to it fails.
TRANSPORT_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException, ConnectionError, socket.error)

MAX_POOL_SIZE = 64  # HTTP connections kept per client: every run in progress streams an exec at once


def docker_client(timeout: int = 120) -> docker.DockerClient:
    """A docker-py client from the environment (``DOCKER_HOST`` etc.), pinged.

    Its connection pool keeps MAX_POOL_SIZE connections (docker-py's default, 10, is below what
    parallel runs use at once: each run streams an exec, a grading sandbox starts alongside).
    Raises EnvironmentNotReady (exit 3) if the daemon cannot be reached.
    """
    try:
        client = docker.from_env(timeout=timeout, max_pool_size=MAX_POOL_SIZE)
        client.ping()
        return client
    except TRANSPORT_ERRORS as e:  # a bad DOCKER_HOST, no socket, a refused connection, an API error
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise EnvironmentNotReady(
            f"cannot reach the Docker daemon at {host}: {str(e).splitlines()[0][:200]}. "
            "Is Docker running (`docker ps`)?"
        ) from None


_SHARED: dict[tuple[str | None, str | None], docker.DockerClient] = {}


def shared_client() -> docker.DockerClient:
    """The process's one :func:`docker_client` for the current ``DOCKER_HOST``/``DOCKER_CONTEXT``
    (made and pinged on first use): ``check``'s image lookups and the backend share it, so a
    command connects and negotiates the API version once (fixed cost per command, issue 13).
    Raises EnvironmentNotReady like :func:`docker_client` (nothing is cached then)."""
    key = (os.environ.get("DOCKER_HOST"), os.environ.get("DOCKER_CONTEXT"))
    if key not in _SHARED:
        _SHARED[key] = docker_client()
    return _SHARED[key]


_ENGINE_CPUS: dict[int, float] = {}


def engine_cpus(client: docker.DockerClient) -> float:
    """CPUs the engine has (``docker info`` NCPU, cached per client). Docker refuses a container
    asking for more (Harbor tasks may ask 4 on a 2-core machine), so limits are capped to it
    (``check`` names the tasks that ask for more)."""
    key = id(client)
    if key not in _ENGINE_CPUS:
        try:
            _ENGINE_CPUS[key] = float(client.info().get("NCPU") or os.cpu_count() or 1)
        except docker.errors.APIError:
            _ENGINE_CPUS[key] = float(os.cpu_count() or 1)
    return _ENGINE_CPUS[key]


def force_remove(container) -> None:
    """Force-remove a container: already gone, or being removed (409: auto_remove, a concurrent
    remove), is done. SandboxError if the engine fails three times."""
    last: BaseException | None = None
    for _ in range(3):
        try:
            container.remove(force=True)
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as e:
            if e.status_code == 409:
                return
            last = e
        except TRANSPORT_ERRORS as e:
            last = e
        time.sleep(0.5)
    raise SandboxError(f"cannot remove container {container.id[:12]}: {short_error(last)}")


def short_error(e: BaseException) -> str:
    """The first line (at most 300 characters) of a docker error's explanation, or its type name."""
    s = getattr(e, "explanation", None) or str(e)
    return str(s).splitlines()[0][:300] if s else type(e).__name__
