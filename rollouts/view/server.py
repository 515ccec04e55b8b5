"""``eval-rollouts view``: serve the viewer with uvicorn on a local address.

Binding: ``127.0.0.1`` by default. A host that is not a loopback address exposes every
trajectory, diff and log of the data directory to the network, so it needs ``allow_remote``
(the CLI's ``--allow-remote``); without it :func:`check_host` raises ConfigError (exit 2). A
local viewer answers only requests whose Host header is a local name (DNS-rebinding guard).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from pathlib import Path

from rollouts.errors import ConfigError


def is_local(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, allow_remote: bool) -> None:
    """ConfigError unless ``host`` is local or ``allow_remote`` is set."""
    if not is_local(host) and not allow_remote:
        raise ConfigError(
            f"--host {host}: not a local address; the viewer shows every trajectory, diff and log of the "
            "data directory to whoever reaches it. Add --allow-remote to serve it on the network anyway"
        )


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0 = a free port). OSError if taken."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def make_server(data_dir: str | Path, sock: socket.socket, log_level: str = "warning", any_host: bool = False):
    """A ``uvicorn.Server`` for the viewer app (``server.run(sockets=[sock])`` serves until
    ``server.should_exit`` is set). Only local Host headers are answered unless ``any_host``."""
    import uvicorn

    from rollouts.view.app import LOCAL_HOSTS, create_app

    app = create_app(data_dir, allowed_hosts=["*"] if any_host else LOCAL_HOSTS)
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off")
    return uvicorn.Server(config)


def serve(data_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, allow_remote: bool = False,
          say: Callable[[str], None] = print) -> None:
    """Serve until interrupted. Raises ConfigError for a non-local host without ``allow_remote``;
    OSError (exit 3 in the CLI) if the port is taken."""
    check_host(host, allow_remote)
    sock = bind(host, port)
    server = make_server(data_dir, sock, any_host=not is_local(host))  # imports and the app first: the first page is not kept waiting
    where = "local only" if is_local(host) else "REACHABLE FROM THE NETWORK (--allow-remote)"
    shown = f"[{host}]" if ":" in host else host
    say(f"[rollouts] viewer on http://{shown}:{sock.getsockname()[1]}/ ({where}; read-only view of "
        f"{Path(data_dir).resolve()}); Ctrl-C stops it")
    server.run(sockets=[sock])
