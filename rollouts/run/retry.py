"""Infra retries of one run through tenacity: an attempt whose outcome is retryable (kind
``infra``) is tried again after an exponential back-off (2, 4, 8 … s, at most 30 s) up to
``max_retries`` times; the back-off waits on the rollout's cancel event, so Ctrl-C / ``cancel``
ends it at once (:class:`Cancelled`)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from tenacity import Retrying, retry_if_result, stop_after_attempt, wait_exponential

from rollouts.errors import Cancelled
from rollouts.run.outcome import RunOutcome
from rollouts.sandbox import aioloop

DEFAULT_WAIT = wait_exponential(multiplier=1, exp_base=2, min=2, max=30)


def interruptible_sleep(cancel: threading.Event) -> Callable[[float], None]:
    """A ``sleep(seconds)`` for tenacity that returns early — raising Cancelled — when ``cancel`` is set."""

    def sleep(seconds: float) -> None:
        if aioloop.wait_event(cancel, seconds):  # a cooperative run is suspended, not its thread
            raise Cancelled()

    return sleep


def with_retries(attempt: Callable[[int], RunOutcome], *, max_retries: int, cancel: threading.Event,
                 on_retry: Callable[[int, RunOutcome], None] = lambda n, o: None,
                 wait=DEFAULT_WAIT) -> RunOutcome:
    """``attempt(n)`` (n = 1, 2, …) until its outcome is not retryable or ``max_retries`` retries
    are spent; returns the last outcome. ``on_retry(n, outcome)`` runs before the back-off after a
    retryable attempt n (keep its files, log it). Raises Cancelled if cancelled during a back-off."""
    n = {"i": 0}

    def once() -> RunOutcome:
        n["i"] += 1
        return attempt(n["i"])

    retrying = Retrying(
        stop=stop_after_attempt(max_retries + 1),
        wait=wait,
        retry=retry_if_result(lambda o: o.retryable and not cancel.is_set()),
        sleep=interruptible_sleep(cancel),
        before_sleep=lambda rs: on_retry(rs.attempt_number, rs.outcome.result()),
        retry_error_callback=lambda rs: rs.outcome.result(),
    )
    return retrying(once)
