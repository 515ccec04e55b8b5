"""The local model's server: llama.cpp (``xllamacpp``) in a child process on 127.0.0.1.

llama.cpp's OpenAI-compatible server, bound to a free port, serves the model file of
:mod:`rollouts.llm.local_model` under the name ``"local"``.

:class:`LocalModelServer` starts the child and waits for ``/health``; the child is ended by
:meth:`LocalModelServer.stop`, at interpreter exit, or by itself as soon as its parent process
dies. :func:`rollout_slots` sizes it for a rollout.

Run as ``python -m rollouts.llm.local_server --model PATH --ctx N --threads N --ready-file F``
(that is what :class:`LocalModelServer` does) to serve in the foreground.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from rollouts.errors import EnvironmentNotReady
from rollouts.llm.local_model import ensure_model_file, model_cache_dir, require_xllamacpp

MODEL_ALIAS = "local"
#: Context window (tokens) each slot of the rollout's server gets: what agents assume for "local".
SLOT_CTX = 8192
#: Slots at most: each holds a SLOT_CTX KV cache (~100 MB for this model); more than this many
#: concurrent requests only share the same CPU cores.
MAX_SLOTS = 8


def rollout_slots(parallel: int) -> int:
    """Slots for a rollout running ``parallel`` runs at once: one per run, at most MAX_SLOTS, so a
    run does not queue for the model behind the others (a queue wait counts against its agent
    time; the client's deadline bounds it). The server's total context is ``slots * SLOT_CTX``."""
    return max(1, min(int(parallel), MAX_SLOTS))


def _http_get_status(url: str, timeout: float) -> int | None:
    """Status of a GET to a loopback URL (no proxies), None if the connection failed."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None


def _prune_logs(log_dir: Path, keep: int = 20) -> None:
    """Delete all but the ``keep`` newest ``local-server-*.log`` files."""
    with contextlib.suppress(OSError):
        logs = sorted(log_dir.glob("local-server-*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in logs[keep:]:
            with contextlib.suppress(OSError):
                old.unlink()


class LocalModelServer:
    """llama.cpp's OpenAI-compatible server for the local model, in a child process.

    Use as a context manager or call :meth:`start` / :meth:`stop`::

        with LocalModelServer() as server:
            client = ModelClient("local", base_url=server.base_url, api_key="local")

    ``n_ctx`` is the total context in tokens, shared by the ``n_parallel`` slots (each concurrent
    request gets ``n_ctx // n_parallel``). ``threads`` defaults to the CPU count. The server binds
    127.0.0.1 only, on a free port, and serves the model under the name ``"local"``. Its stderr
    (verbose) goes to ``log_path`` (default ``model_cache_dir()/logs/local-server-<pid>.log``).
    The child runs in its own process group and exits by itself when this process dies.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int = 8192,
        n_parallel: int = 1,
        threads: int | None = None,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else None
        self.n_ctx = n_ctx
        self.n_parallel = n_parallel
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.log_path = Path(log_path) if log_path is not None else None
        self.address: str | None = None  # "http://127.0.0.1:PORT"
        self.startup_sec: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """OpenAI base URL, ``http://127.0.0.1:PORT/v1``; raises RuntimeError before start()."""
        if self.address is None:
            raise RuntimeError("LocalModelServer is not started")
        return f"{self.address}/v1"

    @property
    def port(self) -> int:
        """TCP port the server listens on; raises RuntimeError before start()."""
        if self.address is None:
            raise RuntimeError("LocalModelServer is not started")
        return int(self.address.rsplit(":", 1)[1])

    @property
    def pid(self) -> int | None:
        """Process id of the child, None when not running."""
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 60.0) -> str:
        """Start the child server and wait until ``/health`` answers 200; returns :attr:`base_url`.

        ``timeout`` (seconds) covers spawning, model loading and the health check. Assembles the
        model first if needed (see :func:`ensure_model_file`). No-op if already running.
        Raises EnvironmentNotReady if the model/packages are missing, the child exits early or
        the server is not healthy in time (the child is then killed; see the log file).
        """
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return self.base_url
            t0 = time.monotonic()
            model = self.model_path or ensure_model_file()
            require_xllamacpp()
            if self.log_path is None:
                self.log_path = model_cache_dir() / "logs" / f"local-server-{os.getpid()}.log"
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            _prune_logs(self.log_path.parent)
            ready_dir = Path(tempfile.mkdtemp(prefix="rollouts-llm-"))
            ready_file = ready_dir / "ready.json"
            cmd = [
                sys.executable,
                "-m",
                "rollouts.llm.local_server",
                "--model",
                str(model),
                "--ctx",
                str(self.n_ctx),
                "--threads",
                str(self.threads),
                "--parallel",
                str(self.n_parallel),
                "--ready-file",
                str(ready_file),
                "--watch-stdin",
            ]
            env = dict(os.environ)
            pkg_root = str(Path(__file__).resolve().parents[2])
            env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
            with open(self.log_path, "wb") as log:
                self._proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.PIPE,  # EOF on our death tells the child to exit
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # own process group: Ctrl-C goes to us, we stop it
                )
            atexit.register(self.stop)
            try:
                self.address = self._wait_ready(ready_file, t0 + timeout, timeout)
            except BaseException:
                self._stop_locked()
                raise
            finally:
                with contextlib.suppress(OSError):
                    ready_file.unlink()
                with contextlib.suppress(OSError):
                    ready_dir.rmdir()
            self.startup_sec = time.monotonic() - t0
            return self.base_url

    def _wait_ready(self, ready_file: Path, deadline: float, timeout: float) -> str:
        assert self._proc is not None
        address: str | None = None
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise EnvironmentNotReady(
                    f"the local model server exited with code {code} during start-up; "
                    f"see {self.log_path}:\n{self._log_tail()}"
                )
            if address is None and ready_file.is_file():
                with contextlib.suppress(OSError, ValueError, KeyError):
                    address = str(json.loads(ready_file.read_text())["address"]).rstrip("/")
            if address is not None and _http_get_status(f"{address}/health", timeout=2.0) == 200:
                return address
            time.sleep(0.05)
        raise EnvironmentNotReady(
            f"the local model server was not healthy within {timeout:.0f}s; see {self.log_path}"
        )

    def _log_tail(self, n: int = 15) -> str:
        try:
            lines = Path(self.log_path or "").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the child (SIGTERM to its process group, SIGKILL after ``timeout`` seconds).

        Idempotent and safe to call from atexit; never raises for an already-dead child.
        """
        with self._lock:
            self._stop_locked(timeout)

    def _stop_locked(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        self.address = None
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()

    def __enter__(self) -> LocalModelServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if self._proc is not None and self._proc.poll() is None:
                os.killpg(self._proc.pid, signal.SIGKILL)


# --------------------------------------------------------------------------- child process


def _watch_stdin(stop: threading.Event) -> None:
    """Set ``stop`` when stdin reaches EOF (the parent closed it or died)."""
    with contextlib.suppress(Exception):
        while sys.stdin.buffer.read(65536):
            pass
    stop.set()


def serve(
    model: str,
    *,
    n_ctx: int,
    threads: int,
    n_parallel: int,
    ready_file: str | None,
    watch_stdin: bool = False,
) -> None:
    """Run the llama.cpp server in this process until SIGTERM/SIGINT or parent death.

    With ``watch_stdin`` it also stops at stdin EOF (the parent holds the pipe's write end, so
    EOF means the parent closed it or died). Binds 127.0.0.1 on a free port and writes ``{"address": "http://127.0.0.1:PORT", "pid": N}``
    atomically to ``ready_file`` once the model is loaded. Exits the process with ``os._exit``.
    """
    import xllamacpp

    parent_pid = os.getppid()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if watch_stdin:
        threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()

    p = xllamacpp.CommonParams()
    p.model.path = model
    p.n_ctx = n_ctx
    p.n_parallel = n_parallel
    p.cpuparams.n_threads = threads
    p.cpuparams_batch.n_threads = threads
    p.hostnames = ["127.0.0.1"]
    p.port = 0
    p.model_alias = {MODEL_ALIAS}  # a set of names: a bare str would become a set of characters
    # Browsers: only pages served from the loopback host may call it (no effect on API clients).
    p.cors_origins = "http://127.0.0.1"
    with contextlib.suppress(AttributeError):
        p.ui = False  # no web UI
    server = xllamacpp.Server(p)
    address = server.listening_address
    if not address.startswith("http://127.0.0.1:"):
        print(f"refusing to serve on {address!r}: expected 127.0.0.1", file=sys.stderr, flush=True)
        os._exit(3)
    print(f"rollouts local model server ready at {address}", file=sys.stderr, flush=True)
    if ready_file:
        tmp = f"{ready_file}.tmp"
        with open(tmp, "w") as f:
            json.dump({"address": address, "pid": os.getpid()}, f)
        os.replace(tmp, ready_file)
    while not stop.wait(0.5):
        if os.getppid() != parent_pid:  # re-parented: our parent died
            break
    sys.stderr.flush()
    # llama.cpp's server has no clean stop; its threads die with the process.
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry of the child process (see module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m rollouts.llm.local_server")
    ap.add_argument("--model", default=None, help="GGUF path (default: assemble the bundled model)")
    ap.add_argument("--ctx", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1))
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--ready-file", default=None)
    ap.add_argument("--watch-stdin", action="store_true", help="exit at stdin EOF (parent death)")
    args = ap.parse_args(argv)
    model = args.model or str(ensure_model_file())
    serve(
        model,
        n_ctx=args.ctx,
        threads=args.threads,
        n_parallel=args.parallel,
        ready_file=args.ready_file,
        watch_stdin=args.watch_stdin,
    )


if __name__ == "__main__":
    main()
