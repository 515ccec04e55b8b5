"""One background asyncio event loop per process, for backends whose SDK is asynchronous (Modal).

The Modal adapter does its I/O as coroutines on the SDK's ``.aio`` API (stdout, stderr and the
exit code of an exec read concurrently, as the SDK's own code does) and offers the blocking
:class:`rollouts.sandbox.base.Sandbox` interface on top: :func:`run` submits a coroutine to this
loop and waits for it. Every Modal sandbox of the process shares the one loop thread, so a
thousand live sandboxes cost no thread each. :func:`call_later` gives timers (lifetime backstops,
watchdogs) without a thread per timer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def loop() -> asyncio.AbstractEventLoop:
    """The process-wide background loop (started on first use, in the daemon thread ``aio-loop``)."""
    global _loop, _thread
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive():
            _loop = asyncio.new_event_loop()
            _thread = threading.Thread(target=_loop.run_forever, name="aio-loop", daemon=True)
            _thread.start()
        return _loop


def on_loop_thread() -> bool:
    """Whether the caller runs on the background loop's thread (where :func:`run` cannot block)."""
    return _thread is not None and threading.current_thread() is _thread


def run(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the background loop and return its result (its exception is raised here).

    ``timeout`` seconds (None: no limit) bounds the wait: TimeoutError then, and the coroutine is
    cancelled. In a cooperative run (below) the run is suspended instead of a thread blocked.
    RuntimeError if called from the loop thread outside a cooperative run (it would deadlock)."""
    if cooperative():
        return _await(coro if timeout is None else asyncio.wait_for(coro, timeout))
    if on_loop_thread():
        coro.close()
        raise RuntimeError("aioloop.run() called on the loop thread; await the coroutine instead")
    fut = asyncio.run_coroutine_threadsafe(coro, loop())
    try:
        return fut.result(timeout)
    except BaseException:
        fut.cancel()
        raise


def call_later(delay: float, fn: Callable[[], Any]) -> concurrent.futures.Future:
    """Call the blocking ``fn()`` after ``delay`` seconds, in the loop's default executor (a
    bounded pool), like ``threading.Timer`` but with no thread per pending timer: timers are
    coroutines on the background loop. ``cancel()`` the returned future to disarm it."""

    async def later() -> None:
        await asyncio.sleep(delay)
        await asyncio.get_running_loop().run_in_executor(None, fn)

    return asyncio.run_coroutine_threadsafe(later(), loop())


# ----------------------------------------------------------------------------- cooperative runs
# A run's pipeline (lifecycle, agents, grading) is plain blocking code. To keep a thousand runs in
# flight without a thousand threads, a run can execute as a greenlet on the loop thread: each
# blocking call it makes through :func:`run` (every Modal sandbox call), :func:`sleep` or
# :func:`blocking` suspends that greenlet until the coroutine is done, and the loop serves the
# other runs meanwhile. This is SQLAlchemy's asyncio bridge (``greenlet_spawn``/``await_only``).
# Rule for code that may run cooperatively: never hold a threading lock across such a call.
try:
    import greenlet as _greenlet
except ImportError:  # pragma: no cover - greenlet comes with the modal extra
    _greenlet = None

_OFFLOAD_THREADS = 16
_offload: concurrent.futures.ThreadPoolExecutor | None = None


if _greenlet is not None:

    class _RunGreenlet(_greenlet.greenlet):
        """The synchronous body of one cooperative run; ``driver`` awaits what it hands over."""

        def __init__(self, fn: Callable[..., Any], driver: Any):
            super().__init__(fn, driver)
            self.driver = driver


def greenlets_available() -> bool:
    """Whether cooperative runs are possible here (the greenlet package is installed)."""
    return _greenlet is not None


def cooperative() -> bool:
    """Whether the caller is a cooperative run (a greenlet on the loop thread)."""
    return _greenlet is not None and isinstance(_greenlet.getcurrent(), _RunGreenlet)


async def run_cooperatively(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` as a cooperative run (module comment above); its result or exception.
    RuntimeError without greenlet installed."""
    if _greenlet is None:
        raise RuntimeError("cooperative runs need the greenlet package (pip install -e '.[modal]')")
    g = _RunGreenlet(fn, _greenlet.getcurrent())
    step = g.switch(*args, **kwargs)
    while not g.dead:
        try:
            value = await step
        except BaseException as e:  # noqa: BLE001 - handed to the run's code, which decides
            step = g.throw(e)
        else:
            step = g.switch(value)
    return step


def _await(coro: Any) -> Any:
    return _greenlet.getcurrent().driver.switch(coro)


def sleep(seconds: float) -> None:
    """``time.sleep`` that, in a cooperative run, suspends the run instead of the loop thread."""
    if cooperative():
        _await(asyncio.sleep(seconds))
    else:
        import time

        time.sleep(seconds)


def wait_event(event: threading.Event, timeout: float | None = None) -> bool:
    """``event.wait(timeout)`` that, in a cooperative run, polls every 0.1 s while suspending the
    run (an Event cannot wake a greenlet); returns whether the event is set."""
    if not cooperative():
        return event.wait(timeout)
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    while not event.is_set():
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return False
        _await(asyncio.sleep(0.1 if left is None else min(0.1, left)))
    return True


def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` for a call that blocks on I/O other than the sandbox's (an HTTP
    request to a model): in a cooperative run it goes to a bounded pool of ``_OFFLOAD_THREADS``
    threads and the run waits without holding the loop; elsewhere it is simply called."""
    global _offload
    if not cooperative():
        return fn(*args, **kwargs)
    with _lock:
        if _offload is None:
            _offload = concurrent.futures.ThreadPoolExecutor(_OFFLOAD_THREADS, thread_name_prefix="offload")
    return _await(asyncio.get_running_loop().run_in_executor(_offload, lambda: fn(*args, **kwargs)))


def _tune_malloc(arenas: int = 2, mmap_threshold: int = 128 * 1024) -> None:
    """Keep glibc malloc from holding on to freed memory in a long, busy process (a no-op off
    glibc), measured on the Modal fakes:

    - ``M_ARENA_MAX = arenas``: each thread that allocates gets its own arena; memory freed on the
      loop thread but allocated in offload threads (and back) stays in those arenas (parallel
      600: peak RSS 428 MiB with the default arenas vs 154 MiB with 2; ``MALLOC_ARENA_MAX=2``).
    - ``M_MMAP_THRESHOLD = mmap_threshold`` bytes (glibc's default value, now fixed): by default
      glibc raises the threshold to the size of any mmapped block freed (up to 32 MiB), after
      which the large transient buffers (the manifest's JSON, tar archives of uploads) come from
      the heap and fragment it. 5,000 runs at parallel 1000: free-but-kept heap 45 -> 10 MiB,
      peak RSS 203 -> 171 MiB (``MALLOC_MMAP_THRESHOLD_``, the same knob)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return
    m_mmap_threshold, m_arena_max = -3, -8  # <malloc.h>
    mallopt(m_arena_max, arenas)
    mallopt(m_mmap_threshold, mmap_threshold)


class CooperativeExecutor(concurrent.futures.Executor):
    """An Executor whose ``submit(fn, ...)`` starts ``fn`` as a cooperative run on the background
    loop: any number of runs in flight on one thread (plus the bounded offload pool)."""

    def __init__(self) -> None:
        self._futures: set[concurrent.futures.Future] = set()
        self._guard = threading.Lock()
        _tune_malloc()

    def submit(self, fn, /, *args, **kwargs) -> concurrent.futures.Future:
        fut = asyncio.run_coroutine_threadsafe(run_cooperatively(fn, *args, **kwargs), loop())
        with self._guard:
            self._futures.add(fut)
        fut.add_done_callback(lambda f: self._discard(f))
        return fut

    def _discard(self, fut: concurrent.futures.Future) -> None:
        with self._guard:
            self._futures.discard(fut)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._guard:
            futures = list(self._futures)
        if cancel_futures:
            for f in futures:
                f.cancel()
        if wait:
            concurrent.futures.wait(futures)
