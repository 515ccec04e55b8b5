"""Value types of the model gateway: the upstream endpoint, per-run limits, grants and exchanges."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from rollouts.errors import EnvironmentNotReady

Protocol = Literal["chat", "responses", "messages"]
"""Wire protocol of one request: OpenAI Chat Completions, OpenAI Responses, Anthropic Messages."""

_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True)
class UpstreamSpec:
    """The endpoint the gateway forwards to, and the real credentials (host side only).

    ``kind``: ``"openai"`` (any OpenAI-compatible Chat Completions endpoint: OpenAI, vLLM,
    llama.cpp's server, the embedded local model) or ``"anthropic"`` (Anthropic Messages API).
    ``base_url``: for openai the URL that ``/chat/completions`` is appended to (``…/v1``); for
    anthropic the URL that ``/v1/messages`` is appended to. ``model``: the model name sent
    upstream, whatever name the agent asked for. ``api_key``: the real key (never shown in
    ``repr``, never sent into a sandbox). ``responses_api``: the endpoint also speaks the OpenAI
    Responses API natively (OpenAI's own API); otherwise Responses requests are translated to Chat
    Completions. ``price_model``: the name looked up in :mod:`rollouts.llm.pricing` (default
    ``model``).
    """

    kind: Literal["openai", "anthropic"]
    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    responses_api: bool = False
    price_model: str | None = None

    @property
    def litellm_model(self) -> str:
        """``provider/model`` as litellm routes it."""
        return f"{self.kind}/{self.model}"

    @classmethod
    def for_model(cls, model: str, *, local_base_url: str | None = None,
                  environ: dict[str, str] | None = None) -> UpstreamSpec:
        """The upstream for a config's ``model`` name.

        ``"local"`` → the embedded model at ``local_base_url`` (required then). ``claude-*`` or
        ``anthropic/…`` → Anthropic at ``$ANTHROPIC_BASE_URL`` (default https://api.anthropic.com)
        with ``$ANTHROPIC_API_KEY``. Anything else → the OpenAI-compatible endpoint
        ``$OPENAI_BASE_URL`` (default https://api.openai.com/v1, which also speaks Responses)
        with ``$OPENAI_API_KEY``. Raises EnvironmentNotReady when a remote endpoint has no key.
        """
        env = os.environ if environ is None else environ
        if model == "local":
            if not local_base_url:
                raise EnvironmentNotReady("model 'local' needs the embedded model server's base URL")
            return cls("openai", local_base_url, "local", api_key="local", price_model="local")
        bare = model.split("/", 1)[1] if model.startswith(("anthropic/", "openai/")) else model
        if model.startswith("anthropic/") or bare.startswith("claude"):
            base = env.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com"
            key = env.get("ANTHROPIC_API_KEY")
            if not key and not base.split("://", 1)[-1].startswith(_LOOPBACK):
                raise EnvironmentNotReady(f"no API key for model {model!r}: set ANTHROPIC_API_KEY")
            return cls("anthropic", base, bare, api_key=key or "local")
        base = env.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        key = env.get("OPENAI_API_KEY")
        if not key and not base.split("://", 1)[-1].startswith(_LOOPBACK):
            raise EnvironmentNotReady(f"no API key for model {model!r}: set OPENAI_API_KEY")
        return cls("openai", base, bare, api_key=key or "local",
                   responses_api=base.rstrip("/") == "https://api.openai.com/v1")


class RunLimits(BaseModel):
    """Per-run budget enforced by the gateway. ``None`` = unlimited. Tokens are prompt +
    completion tokens as the upstream reports them; cost in USD from the price table."""

    max_total_tokens: int | None = Field(None, ge=1)
    max_cost_usd: float | None = Field(None, gt=0)


@dataclass(frozen=True)
class RunGrant:
    """What an agent in the sandbox gets for one run: never the real key.

    ``token``: the run's random bearer token (send as ``Authorization: Bearer`` or
    ``x-api-key``). ``openai_base_url``: ``http://HOST:PORT/v1`` (Chat Completions at
    ``/chat/completions``, Responses at ``/responses``, ``/models``). ``anthropic_base_url``:
    ``http://HOST:PORT`` (Messages at ``/v1/messages``). ``model_name``: the name to ask for (any
    name is accepted and mapped to the upstream model).
    """

    run_id: str
    token: str = field(repr=False)
    openai_base_url: str
    anthropic_base_url: str
    model_name: str

    def env(self) -> dict[str, str]:
        """Environment variables that point the common SDKs/CLIs at the gateway."""
        return {
            "OPENAI_BASE_URL": self.openai_base_url, "OPENAI_API_KEY": self.token,
            "ANTHROPIC_BASE_URL": self.anthropic_base_url, "ANTHROPIC_API_KEY": self.token,
        }


class ExchangeUsage(BaseModel):
    """Tokens of one exchange as reported by the upstream (``estimated`` when it reported none and
    the gateway counted the text itself); ``cost_usd`` None = unknown price."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    estimated: bool = False


class Exchange(BaseModel):
    """One request an agent made through the gateway, and what came back.

    ``request``: the JSON body as the agent sent it. ``response``: the JSON body the agent got (for
    a stream: the assembled final message/response), None if it failed. ``status_code``: HTTP
    status returned to the agent. ``refused``: why the gateway answered itself (``"limit"``: the run's
    budget; ``"policy"``: the request asked the provider for something outside the sandbox, see
    :mod:`rollouts.gateway.policy`), else None. ``dropped_fields``: request fields outside the protocol's public API (plus, on
    pass-through, ``passthrough.EXTRA_FIELDS``), not forwarded. ``latency_sec``: from request received to last byte sent; ``ttft_sec``: to the first
    streamed event (streams only). Times ISO-8601 UTC.
    """

    schema_version: int = 1
    seq: int
    run_id: str
    protocol: Protocol
    stream: bool = False
    started_at: str
    latency_sec: float = 0.0
    ttft_sec: float | None = None
    status_code: int = 200
    refused: str | None = None
    dropped_fields: list[str] = Field(default_factory=list)
    error: str | None = None
    upstream_model: str
    request: dict[str, Any] = Field(default_factory=dict)
    response: dict[str, Any] | None = None
    usage: ExchangeUsage = Field(default_factory=ExchangeUsage)
