"""Run an ASGI app (starlette) with uvicorn on a background thread of this process.

:class:`ThreadedServer` binds its own socket first (port 0 = a free port chosen by the kernel),
so the port is known before the server starts, then runs ``uvicorn.Server`` on a daemon thread
with its own asyncio loop. ``stop()`` asks uvicorn to shut down gracefully (open streams get
``shutdown_timeout`` seconds) and joins the thread. Used by the model gateway and by the scripted
endpoints of the tests and benchmarks.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from rollouts.errors import EnvironmentNotReady


class ThreadedServer:
    """``ThreadedServer(app, host, port=0)``; ``start()`` returns once it accepts connections.

    ``host`` is an IPv4 address to bind (``"127.0.0.1"``, a Docker network's gateway address, …).
    Raises EnvironmentNotReady when the address cannot be bound (no such local address, port taken).
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, *, shutdown_timeout: float = 3.0):
        self.app = app
        self.host = host
        self._want_port = port
        self.port: int | None = None
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._shutdown_timeout = shutdown_timeout

    @property
    def url(self) -> str:
        """``http://host:port`` (no trailing slash); only after :meth:`start`."""
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> str:
        """Bind, start serving on a daemon thread and return :attr:`url`."""
        if self._thread is not None:
            return self.url
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: no Nagle wait between a response's header and body
        # writes (with the client's delayed ACK that costs ~40 ms per small JSON response).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((self.host, self._want_port))
        except OSError as e:
            sock.close()
            raise EnvironmentNotReady(f"cannot listen on {self.host}:{self._want_port}: {e.strerror or e}") from None
        sock.listen(512)
        sock.set_inheritable(True)
        self._sock = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off",
            timeout_graceful_shutdown=self._shutdown_timeout, timeout_keep_alive=30,
        )
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # not the main thread: leave signals alone
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise EnvironmentNotReady(f"HTTP server on {self.host}:{self.port} did not start within {timeout} s")
            time.sleep(0.005)
        return self.url

    def stop(self) -> None:
        """Shut down (idempotent); waits for the serving thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=self._shutdown_timeout + 5)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> ThreadedServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
