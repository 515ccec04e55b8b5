"""Scheduling: start runs in order, at most ``parallel`` at once and at most
``limits[backend]`` live at once on each backend (``SandboxBackend.live_sandbox_limit``: a
Modal quota is not ``parallel``). A small swappable module: :func:`run_all` is all the runner
uses. Each run holds a thread while it lives (its sandbox calls block)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")


def run_all(items: Iterable[T], work: Callable[[T], None], *, parallel: int, backend_of: Callable[[T], str],
            limits: dict[str, int | None], cancel: threading.Event, cancel_grace_sec: float = 6.0,
            poll_sec: float = 0.5) -> list[T]:
    """Call ``work(item)`` for every item (in order, a later item may overtake one whose backend
    is at its limit). ``work`` must not raise (it records its own outcome). Returns the items
    never started. On ``cancel``: starts nothing more, waits at most ``cancel_grace_sec`` for
    items in progress and returns without joining the rest (their threads are daemons of the pool
    and end once their sandboxes are removed)."""
    pending = list(items)
    live: dict[str, int] = {}
    futures: dict[Future, T] = {}
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="run")
    try:
        while True:
            i = 0
            while not cancel.is_set() and len(futures) < parallel and i < len(pending):
                b = backend_of(pending[i])
                cap = limits.get(b)
                if cap is not None and live.get(b, 0) >= cap:
                    i += 1
                    continue
                item = pending.pop(i)
                live[b] = live.get(b, 0) + 1
                futures[pool.submit(work, item)] = item
            if not futures or cancel.is_set():
                break
            done, _ = wait(list(futures), timeout=poll_sec, return_when=FIRST_COMPLETED)
            for f in done:
                b = backend_of(futures.pop(f))
                live[b] -= 1
                f.result()  # work never raises; if it did, that is a harness bug: surface it
        if cancel.is_set():
            wait(list(futures), timeout=cancel_grace_sec)
    finally:
        pool.shutdown(wait=not cancel.is_set(), cancel_futures=True)
    return pending
