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
    cancelled. RuntimeError if called from the loop thread itself (it would deadlock)."""
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
