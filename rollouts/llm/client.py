"""Chat-completion client for any OpenAI-compatible endpoint, with retries and usage accounting.

Transient failures (429, 5xx, timeouts, dropped connections) are retried with exponential
backoff and jitter (a 429's ``Retry-After`` is honoured, capped at 60 s). Permanent failures
(401, 403, 404, 400, other 4xx) raise :class:`rollouts.errors.ModelError` at once; a prompt the
server refuses as longer than the context window raises :class:`~rollouts.errors.ContextOverflow`.
With a ``deadline`` (the run's agent deadline, ``time.monotonic()`` seconds) every wait — each
HTTP attempt (queueing in the server included), each back-off — ends by it, and a call that cannot
finish in time raises :class:`~rollouts.errors.DeadlineExceeded` (the run ends as agent_timeout). Error messages
name the model, the endpoint host and the HTTP status, and are scrubbed of the API key and of
every secret-looking environment value.
"""

from __future__ import annotations

import email.utils
import math
import os
import random
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import openai
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
)

from rollouts.errors import ContextOverflow, DeadlineExceeded, EnvironmentNotReady, ModelError
from rollouts.llm.pricing import cost_usd
from rollouts.redact import redact, secret_values

#: Longest wait honoured from a 429's Retry-After header, seconds.
MAX_RETRY_AFTER_SEC = 60.0

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APITimeoutError,
    openai.APIConnectionError,
)

# Key-shaped tokens (OpenAI/Anthropic style, also partially masked ones such as "sk-ab***wxyz"
# that some servers echo back in 401 messages).
_KEY_PATTERN = re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9_\-*.]{4,}")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
# A 400 whose error says the prompt does not fit (OpenAI "context_length_exceeded", llama.cpp
# "exceed_context_size_error" / "exceeds the available context size", vLLM "maximum context length").
_OVERFLOW_CODES = {"context_length_exceeded", "exceed_context_size_error", "string_above_max_length"}
_OVERFLOW_TEXT = re.compile(r"context (?:length|size|window)|maximum context|too many tokens|prompt is too long", re.I)


def is_context_overflow(exc: BaseException) -> bool:
    """Whether an SDK error is the server refusing the prompt as too long: HTTP 400 with one of
    the known error codes, or (servers that send no code) a message naming the context length."""
    if getattr(exc, "status_code", None) != 400:
        return False
    body = getattr(exc, "body", None)
    err = body.get("error", body) if isinstance(body, dict) else None
    code = (err.get("code") or err.get("type")) if isinstance(err, dict) else getattr(exc, "code", None)
    if code in _OVERFLOW_CODES:
        return True
    return bool(_OVERFLOW_TEXT.search(getattr(exc, "message", None) or str(exc)))


@dataclass
class Usage:
    """Accumulated token usage of model calls.

    ``calls`` counts successful completions (retried attempts are not calls). ``cost_usd`` is in
    US dollars; it is ``None`` when any counted call had an unknown price (see
    :mod:`rollouts.llm.pricing`), so an unknown cost is never reported as 0.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    cost_usd: float | None = 0.0

    def add(self, other: Usage) -> None:
        """Add ``other`` into this usage in place (``None`` cost is contagious)."""
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.calls += other.calls
        if self.cost_usd is None or other.cost_usd is None:
            self.cost_usd = None
        else:
            self.cost_usd += other.cost_usd

    @property
    def total_tokens(self) -> int:
        """prompt_tokens + completion_tokens."""
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of the four fields."""
        return asdict(self)


@dataclass
class ChatResult:
    """One chat completion. ``duration_sec`` is wall time including retries and backoff waits."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    duration_sec: float
    cost_usd: float | None = None


class ModelRetriesExhausted(ModelError):
    """Transient failures (429/5xx/timeout/connection) persisted through every retry attempt."""


def _retry_after_seconds(exc: BaseException) -> float | None:
    """Seconds asked by a 429's ``retry-after-ms`` / ``Retry-After`` header (number or HTTP date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            delay = float(value) / divisor
        except ValueError:
            if name == "retry-after":
                try:
                    delay = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
                except (TypeError, ValueError, OverflowError):
                    continue
            else:
                continue
        if math.isfinite(delay):
            return max(0.0, delay)
    return None


class ModelClient:
    """Chat completions against an OpenAI-compatible endpoint via the ``openai`` SDK.

    ``model`` is the provider's model name (``"local"`` for the embedded model: pass its
    ``LocalModelServer.base_url`` and any ``api_key``). ``base_url`` and ``api_key`` default to
    ``$OPENAI_BASE_URL`` (else OpenAI's API) and ``$OPENAI_API_KEY``. ``max_retries`` is the total
    number of attempts per call (first try included), ``max_wait`` the total seconds spent per
    call across attempts and backoff waits, ``backoff_initial``/``backoff_max`` the exponential
    backoff bounds in seconds. ``price_overrides`` is passed to
    :func:`rollouts.llm.pricing.cost_usd`.

    ``self.usage`` accumulates over all calls and is safe to read while threads call
    :meth:`chat`. Raises EnvironmentNotReady if no API key is available for a remote model.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        max_retries: int = 5,
        max_wait: float = 300.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        price_overrides: Mapping[str, Any] | None = None,
        deadline: float | None = None,
    ) -> None:
        self.model = model
        self.deadline = deadline  # time.monotonic() seconds; every wait of a call ends by it
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        key = api_key or os.environ.get("OPENAI_API_KEY")
        parts = urlsplit(self.base_url)
        self.host = parts.hostname or "?"
        if parts.port:
            self.host = f"{self.host}:{parts.port}"
        if not key:
            if model != "local" and parts.hostname not in _LOOPBACK:
                raise EnvironmentNotReady(
                    f"no API key for model {model!r} at {self.host}: set OPENAI_API_KEY"
                )
            key = "local"
        self.max_retries = max(1, int(max_retries))
        self.max_wait = float(max_wait)
        self.backoff_initial = float(backoff_initial)
        self.backoff_max = float(backoff_max)
        self.price_overrides = price_overrides
        self.usage = Usage()
        self.retries = 0  # failed transient attempts that were retried, over all calls
        self._lock = threading.Lock()
        self._secrets = [key, *secret_values(os.environ)]
        http_client = None
        if parts.hostname in _LOOPBACK:
            # A local server must never be reached through an HTTP(S)_PROXY from the environment.
            http_client = openai.DefaultHttpxClient(trust_env=False)
        self._client = openai.OpenAI(
            api_key=key, base_url=self.base_url, max_retries=0, http_client=http_client
        )

    # ------------------------------------------------------------------ helpers

    def _scrub(self, text: str) -> str:
        return scrub_all(text, self._secrets)

    def _describe(self, exc: BaseException) -> str:
        status = getattr(exc, "status_code", None)
        what = {
            400: "bad request",
            401: "authentication failed (check the API key)",
            403: "permission denied",
            404: "model or endpoint not found",
            429: "rate limited",
        }.get(status or 0, "server error" if (status or 0) >= 500 else type(exc).__name__)
        detail = getattr(exc, "message", None) or str(exc)
        head = f"model {self.model!r} at {self.host}: "
        head += f"HTTP {status} {what}" if status else what
        return self._scrub(f"{head}: {detail}"[:2000])

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        remaining = min(self.max_wait - (time.monotonic() - state.start_time), self._left())
        delay: float | None = None
        if isinstance(exc, openai.RateLimitError):
            delay = _retry_after_seconds(exc)
            if delay is not None:
                delay = min(delay, MAX_RETRY_AFTER_SEC)
        if delay is None:
            # Exponential backoff with jitter: uniform in [c/2, c], c = min(max, initial * 2^n).
            ceiling = min(self.backoff_max, self.backoff_initial * 2 ** (state.attempt_number - 1))
            delay = ceiling * (0.5 + 0.5 * random.random())
        return max(0.0, min(delay, remaining))

    def _left(self) -> float:
        """Seconds until ``deadline`` (inf without one)."""
        return math.inf if self.deadline is None else self.deadline - time.monotonic()

    def _past_deadline(self, state: RetryCallState) -> bool:
        return self._left() <= 0.5  # no time for another attempt

    def _before_sleep(self, state: RetryCallState) -> None:
        with self._lock:
            self.retries += 1

    # ------------------------------------------------------------------ API

    def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int = 512,
        temperature: float = 0.0,
        stop: str | list[str] | None = None,
        timeout: float = 120.0,
    ) -> ChatResult:
        """Send one chat completion request and return its first choice.

        ``max_tokens`` caps generated tokens, ``temperature`` is the sampling temperature,
        ``stop`` up to 4 stop sequences, ``timeout`` seconds per HTTP attempt. For OpenAI
        reasoning models (o1/o3/o4/gpt-5 families) ``max_completion_tokens`` is sent instead of
        ``max_tokens`` and ``temperature`` is omitted, as those models require.

        Raises ModelError at once for 400/401/403/404 and other non-transient errors,
        ContextOverflow (a ModelError) for a prompt over the context window,
        :class:`ModelRetriesExhausted` (a ModelError) when transient errors outlast
        ``max_retries`` attempts or ``max_wait`` seconds, and DeadlineExceeded when ``deadline``
        passes first (no attempt starts, or is left running, past it). Messages never contain
        the API key.
        """
        if self._left() <= 0.5:
            raise DeadlineExceeded(f"model {self.model!r}: the run's agent deadline has passed")
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages}
        bare = self.model.rsplit("/", 1)[-1].lower()
        if bare.startswith(_REASONING_PREFIXES):
            kwargs["max_completion_tokens"] = max_tokens
        else:
            kwargs["max_tokens"] = max_tokens
            kwargs["temperature"] = temperature
        if stop:
            kwargs["stop"] = stop

        retrying = Retrying(
            retry=retry_if_exception_type(TRANSIENT_ERRORS),
            stop=stop_after_attempt(self.max_retries) | stop_after_delay(self.max_wait) | self._past_deadline,
            wait=self._wait,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        t0 = time.monotonic()
        attempts = 0

        def call() -> Any:
            nonlocal attempts
            attempts += 1
            return self._client.chat.completions.create(**kwargs, timeout=max(0.5, min(timeout, self._left())))

        try:
            response = retrying(call)
        except TRANSIENT_ERRORS as exc:
            if self._left() <= 0.5:
                raise DeadlineExceeded(f"{self._describe(exc)} (the run's agent deadline passed during "
                                       f"attempt {attempts}, {time.monotonic() - t0:.1f}s)") from None
            raise ModelRetriesExhausted(
                f"{self._describe(exc)} (gave up after {attempts} attempt(s), {time.monotonic() - t0:.1f}s)"
            ) from None
        except openai.APIError as exc:
            if is_context_overflow(exc):
                raise ContextOverflow(self._describe(exc)) from None
            raise ModelError(self._describe(exc)) from None
        except openai.OpenAIError as exc:
            raise ModelError(self._scrub(f"model {self.model!r} at {self.host}: {exc}")) from None
        duration = time.monotonic() - t0

        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        choices = getattr(response, "choices", None) or []
        text, finish = "", None
        if choices:
            choice = choices[0]
            finish = getattr(choice, "finish_reason", None)
            message = getattr(choice, "message", None)
            text = (getattr(message, "content", None) or "") if message is not None else ""
        cost = cost_usd(self.model, prompt_tokens, completion_tokens, self.price_overrides)
        with self._lock:
            self.usage.add(Usage(prompt_tokens, completion_tokens, 1, cost))
        return ChatResult(text, prompt_tokens, completion_tokens, finish, duration, cost)

    def close(self) -> None:
        """Close the underlying HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> ModelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def scrub_all(text: str, secrets: Iterable[str]) -> str:
    """Redact ``secrets`` and key-shaped tokens (``sk-…``) from ``text``."""
    return _KEY_PATTERN.sub("***", redact(text, secrets))
