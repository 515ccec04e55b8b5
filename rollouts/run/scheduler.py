"""Scheduling: start runs in order, at most ``parallel`` at once and at most
``limits[backend]`` live at once on each backend (``SandboxBackend.live_sandbox_limit``: a
Modal quota is not ``parallel``). A small swappable module: :func:`run_all` is all the runner
uses. A run of a thread backend (Docker) holds a pool thread while it lives (its sandbox calls
block); a run of a cooperative backend (Modal: ``SandboxBackend.cooperative``) is a greenlet on
the one loop thread (``rollouts.sandbox.aioloop.CooperativeExecutor``), so a thousand runs in
flight, waiting or sleeping, hold no thread each."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")


def run_all(items: Iterable[T], work: Callable[[T], None], *, parallel: int, backend_of: Callable[[T], str],
            limits: dict[str, int | None], cancel: threading.Event, cancel_grace_sec: float = 6.0,
            poll_sec: float = 0.5, cooperative: dict[str, bool] | None = None) -> list[T]:
    """Call ``work(item)`` for every item (in order, a later item may overtake one whose backend
    is at its limit). ``work`` must not raise (it records its own outcome). Returns the items
    never started. On ``cancel``: starts nothing more, waits at most ``cancel_grace_sec`` for
    items in progress and returns without joining the rest (their threads are daemons of the pool
    and end once their sandboxes are removed)."""
    pending = list(items)
    live: dict[str, int] = {}
    futures: dict[Future, T] = {}
    pools: dict[str, Executor] = {}

    def pool_for(backend: str) -> Executor:
        if backend not in pools:
            if (cooperative or {}).get(backend):
                from rollouts.sandbox.aioloop import CooperativeExecutor

                pools[backend] = CooperativeExecutor()
            else:
                pools[backend] = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="run")
        return pools[backend]

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
                futures[pool_for(b).submit(work, item)] = item
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
        for pool in pools.values():
            pool.shutdown(wait=not cancel.is_set(), cancel_futures=True)
    return pending
