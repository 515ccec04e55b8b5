"""The gateway server: runs, tokens, budgets, metering, the exchange log. See ``rollouts.gateway``."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from rollouts.errors import ConfigError
from rollouts.gateway import passthrough, policy, proxy, responses_state
from rollouts.gateway.models import Exchange, ExchangeUsage, Protocol, RunGrant, RunLimits, UpstreamSpec
from rollouts.gateway.passthrough import applies as passthrough_ok
from rollouts.gateway.serve import ThreadedServer
from rollouts.llm.client import scrub_all
from rollouts.llm.pricing import cost_usd, lookup_price
from rollouts.store import Usage, now_iso

TOKEN_PREFIX = "rgw-"
_NO_RETRY = {"x-should-retry": "false"}


@dataclass
class _Run:
    run_id: str
    token: str
    limits: RunLimits
    usage: Usage
    log_path: Path | None
    exchanges: list[Exchange] = field(default_factory=list)
    refused: int = 0
    seq: int = 0
    peer: str | None = None  # the only source address the token is accepted from (bind_peer)
    # Responses this run received: id -> (request as sent, response) (previous_response_id)
    responses: dict[str, tuple[dict, dict]] = field(default_factory=dict)


def _texts(obj: Any, out: list[str]) -> None:
    if isinstance(obj, str):
        out.append(obj)
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            if k not in ("type", "role", "id", "call_id", "tool_call_id", "cache_control"):
                _texts(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _texts(v, out)


def estimate_prompt_tokens(body: Mapping[str, Any]) -> int:
    """cl100k tokens of the text a request sends as prompt (messages/input, system/instructions,
    tools); the budget check's estimate. Structure tokens the server adds are not counted."""
    from rollouts.families import token_counter

    parts: list[str] = []
    for key in ("system", "instructions", "messages", "input", "tools"):
        _texts(body.get(key), parts)
    return token_counter().count("\n".join(parts))


class Gateway:
    """The per-rollout gateway (see the package docstring for the interface and behaviour).

    ``upstream``: where requests go. ``prices``: overrides of the price table. ``host``/``port``:
    where to listen (port 0 = a free one). Thread-safe: the harness threads call
    register/usage/exchanges while the server thread serves.
    """

    def __init__(self, upstream: UpstreamSpec, prices: Mapping[str, Any] | None = None, *,
                 host: str = "127.0.0.1", port: int = 0):
        self.upstream = upstream
        self.prices = prices
        self._price_model = upstream.price_model or upstream.model
        self._runs: dict[str, _Run] = {}
        self._by_token: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._secrets = [s for s in (upstream.api_key,) if s and s not in ("local", "none")]
        self.unauthenticated = 0  # requests refused for a missing/unknown token
        routes = [
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/responses", self._responses, methods=["POST"]),
            Route("/v1/messages", self._messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", self._count_tokens, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/health", self._health, methods=["GET"]),
        ]
        self._server = ThreadedServer(Starlette(routes=routes), host, port)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        """Start serving; returns the base URL ``http://host:port``. Raises EnvironmentNotReady.
        Imports litellm first (~3 s once per process) so the first request is not slowed."""
        proxy.litellm()
        return self._server.start()

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        self._server.stop()

    def __enter__(self) -> Gateway:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        if self._server.port is None:
            raise RuntimeError("gateway not started")
        return self._server.port

    # ------------------------------------------------------------------ runs
    def register_run(self, run_id: str, limits: RunLimits | None = None, *, log_path: Path | None = None,
                     model_name: str | None = None) -> RunGrant:
        """Admit a run: a fresh random token. ``log_path``: a JSONL file every exchange of the run
        is appended to as it completes. ``model_name``: the name the agent is told to use
        (default: the upstream's model). Raises ValueError if the run is registered already,
        ConfigError if ``max_cost_usd`` is set but the model has no price.
        """
        limits = limits or RunLimits()
        known_price = lookup_price(self._price_model, self.prices) is not None
        if limits.max_cost_usd is not None and not known_price:
            raise ConfigError(f"max_cost_usd is set but model {self._price_model!r} has no price "
                              "(add it to the price overrides)")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        run = _Run(run_id, token, limits, Usage(cost_usd=0.0 if known_price else None), log_path)
        with self._lock:
            if run_id in self._runs:
                raise ValueError(f"run {run_id!r} is already registered with this gateway")
            self._runs[run_id] = run
            self._by_token[token] = run
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
        return RunGrant(run_id, token, self.url + "/v1", self.url, model_name or self.upstream.model)

    def _run(self, run_id: str) -> _Run:
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            raise KeyError(f"run {run_id!r} is not registered with this gateway")
        return run

    def usage(self, run_id: str) -> Usage:
        """Tokens, successful calls and USD of the run so far (a copy). KeyError if unknown."""
        run = self._run(run_id)
        with self._lock:
            return run.usage.model_copy()

    def exchanges(self, run_id: str) -> list[Exchange]:
        """Every exchange of the run so far, in order (refused ones included)."""
        run = self._run(run_id)
        with self._lock:
            return list(run.exchanges)

    def limit_hit(self, run_id: str) -> bool:
        """Whether the run's budget stopped it: a request was refused, or usage exceeds a limit."""
        run = self._run(run_id)
        with self._lock:
            return run.refused > 0 or self._exhausted(run)

    def bind_peer(self, run_id: str, address: str) -> None:
        """Accept the run's token only from ``address`` (its sandbox's IP on the gateway network,
        :func:`rollouts.gateway.network.sandbox_address`): another sandbox holding the token is
        refused like one without. KeyError if the run is unknown."""
        run = self._run(run_id)
        with self._lock:
            run.peer = address

    def unregister(self, run_id: str) -> None:
        """Revoke the run's token and drop its records (read them first). Idempotent."""
        with self._lock:
            run = self._runs.pop(run_id, None)
            if run is not None:
                self._by_token.pop(run.token, None)

    # ------------------------------------------------------------------ budget
    def _exhausted(self, run: _Run) -> bool:
        lim, u = run.limits, run.usage
        if lim.max_total_tokens is not None and u.prompt_tokens + u.completion_tokens > lim.max_total_tokens:
            return True
        return lim.max_cost_usd is not None and u.cost_usd is not None and u.cost_usd > lim.max_cost_usd

    def _admit(self, run: _Run, estimate: int) -> str | None:
        """None if the request may go upstream, else the refusal message (counted)."""
        lim, u = run.limits, run.usage
        why = None
        with self._lock:
            used = u.prompt_tokens + u.completion_tokens
            if lim.max_total_tokens is not None and used + estimate > lim.max_total_tokens:
                why = (f"token budget of this run exhausted: {used} of max_total_tokens="
                       f"{lim.max_total_tokens} used, this request's prompt is ~{estimate} tokens")
            elif lim.max_cost_usd is not None and u.cost_usd is not None:
                add = cost_usd(self._price_model, estimate, 0, self.prices) or 0.0
                if u.cost_usd + add > lim.max_cost_usd:
                    why = (f"cost budget of this run exhausted: ${u.cost_usd:.4f} of max_cost_usd="
                           f"{lim.max_cost_usd} used, this request's prompt costs ~${add:.4f}")
            if why:
                run.refused += 1
        return why

    def _charge(self, run: _Run, ex: Exchange) -> None:
        with self._lock:
            if ex.status_code < 400 and ex.refused is None:
                u = run.usage
                u.prompt_tokens += ex.usage.prompt_tokens
                u.completion_tokens += ex.usage.completion_tokens
                u.calls += 1
                if u.cost_usd is not None:
                    u.cost_usd = None if ex.usage.cost_usd is None else u.cost_usd + ex.usage.cost_usd
            run.exchanges.append(ex)
            if ex.protocol == "responses" and isinstance(ex.response, Mapping) and isinstance(ex.response.get("id"), str):
                run.responses[ex.response["id"]] = (ex.request, ex.response)
        if run.log_path is not None:
            with open(run.log_path, "a", encoding="utf-8") as f:
                f.write(ex.model_dump_json() + "\n")

    # ------------------------------------------------------------------ HTTP
    def _authenticate(self, request: Request) -> _Run | None:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
        with self._lock:
            run = self._by_token.get(token) if token else None
            if run is not None and run.peer is not None and (request.client is None or request.client.host != run.peer):
                run = None  # a valid token, used from another sandbox
            if run is None:
                self.unauthenticated += 1
        return run

    def _error(self, protocol: Protocol, status: int, message: str, kind: str | None = None,
               headers: dict | None = None) -> JSONResponse:
        msg = scrub_all(message, self._secrets)
        return JSONResponse(proxy.error_body(protocol, status, msg, kind), status_code=status, headers=headers)

    async def _chat(self, request: Request) -> Response:
        return await self._handle(request, "chat")

    async def _responses(self, request: Request) -> Response:
        return await self._handle(request, "responses")

    async def _messages(self, request: Request) -> Response:
        return await self._handle(request, "messages")

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def _models(self, request: Request) -> Response:
        if self._authenticate(request) is None:
            return self._error("chat", 401, "missing or invalid gateway token", "invalid_api_key")
        return JSONResponse({"object": "list", "data": [
            {"id": self.upstream.model, "object": "model", "created": 0, "owned_by": "rollouts-gateway"}]})

    async def _count_tokens(self, request: Request) -> Response:
        if self._authenticate(request) is None:
            return self._error("messages", 401, "missing or invalid gateway token")
        body = await request.json()
        return JSONResponse({"input_tokens": estimate_prompt_tokens(body)})

    async def _handle(self, request: Request, protocol: Protocol) -> Response:
        t0, started = time.monotonic(), now_iso()
        run = self._authenticate(request)
        if run is None:
            return self._error(protocol, 401, "missing or invalid gateway token for this run", "invalid_api_key"
                               if protocol != "messages" else "authentication_error")
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self._error(protocol, 400, "request body must be a JSON object")
        with self._lock:
            run.seq += 1
            seq = run.seq
        stream = bool(body.get("stream"))
        ex = Exchange(seq=seq, run_id=run.run_id, protocol=protocol, stream=stream, started_at=started,
                      upstream_model=self.upstream.model, request=body)
        if passthrough_ok(self.upstream, protocol):  # a proxy upstream may route on unknown fields
            ex.dropped_fields = passthrough.forwarded(protocol, body)[1]
        else:  # litellm reads its own kwargs from the body
            ex.dropped_fields = proxy.api_fields(protocol, body)[1]
        why = policy.refusal(protocol, body)  # provider-side tools, fetched URLs, account files
        if why is None and protocol == "responses":  # provider-stored state: only the run's own
            with self._lock:
                why = policy.stored_state_refusal(body, run.responses.keys())
        if why is not None:
            ex.status_code, ex.refused, ex.error = 400, "policy", why
            ex.latency_sec = time.monotonic() - t0
            self._charge(run, ex)
            return self._error(protocol, 400, why, "invalid_request_error", headers=_NO_RETRY)
        if protocol == "responses" and body.get("previous_response_id") is not None and \
                not passthrough_ok(self.upstream, protocol):  # the translation keeps no state: we do
            with self._lock:
                body = responses_state.expand(body, run.responses)  # ex.request keeps what was sent
        estimate = estimate_prompt_tokens(body)
        why = self._admit(run, estimate)
        if why is not None:
            status, kind = (400, "invalid_request_error") if protocol == "messages" else (429, "insufficient_quota")
            ex.status_code, ex.refused, ex.error = status, "limit", why
            ex.latency_sec = time.monotonic() - t0
            self._charge(run, ex)
            return self._error(protocol, status, "rollouts gateway: " + why, kind, headers=_NO_RETRY)
        try:
            if not stream:
                out = await proxy.complete(self.upstream, protocol, body, request.headers)
            else:
                st = await proxy.open_stream(self.upstream, protocol, body, request.headers)
        except proxy.UpstreamError as e:
            ex.status_code, ex.error = e.status, scrub_all(e.message, self._secrets)
            ex.latency_sec = time.monotonic() - t0
            self._charge(run, ex)
            return self._error(protocol, e.status, e.message)
        if not stream:
            self._meter(ex, out, estimate)
            ex.latency_sec = time.monotonic() - t0
            self._charge(run, ex)
            return JSONResponse(out.body)

        def done() -> None:
            if st.outcome.error:
                ex.status_code, ex.error = 502, scrub_all(st.outcome.error, self._secrets)
            self._meter(ex, st.outcome, estimate)
            ex.latency_sec = time.monotonic() - t0
            self._charge(run, ex)

        async def events():
            async for chunk in st.sse(done):
                if ex.ttft_sec is None:
                    ex.ttft_sec = time.monotonic() - t0
                yield chunk

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache"})

    def _meter(self, ex: Exchange, out: proxy.Outcome, estimate: int) -> None:
        ex.response = out.body
        pt, ct = out.prompt_tokens, out.completion_tokens
        estimated = pt is None or ct is None
        if pt is None:
            pt = estimate
        if ct is None:
            from rollouts.families import token_counter

            parts: list[str] = []
            _texts(out.body or {}, parts)
            ct = token_counter().count("\n".join(parts)) if out.body else 0
        ex.usage = ExchangeUsage(prompt_tokens=int(pt), completion_tokens=int(ct), estimated=estimated,
                                 cost_usd=cost_usd(self._price_model, int(pt), int(ct), self.prices))


def read_exchanges(path: Path) -> list[Exchange]:
    """The exchanges a run's JSONL log holds (see ``register_run(log_path=…)``)."""
    return [Exchange.model_validate(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
