"""The per-rollout model gateway: the only thing an agent's sandbox can reach.

A host-side HTTP server (starlette on uvicorn, on a thread of the harness process) started once
per rollout. Each run gets its own random bearer token; the gateway maps the token to the run,
forwards the request to the real endpoint with the real credentials (which never enter a
sandbox), translates wire protocols with litellm where the agent and the endpoint differ,
counts tokens and USD per run with :mod:`rollouts.llm.pricing`, enforces per-run budgets and
keeps every exchange.

Python interface (everything an installed agent or the runner needs)::

    from rollouts.gateway import Gateway, UpstreamSpec, RunLimits

    up = UpstreamSpec.for_model("local", local_base_url=server.base_url)   # or "gpt-4o", "claude-…"
    with Gateway(up, prices=None, host="127.0.0.1") as gw:                # start() / stop()
        grant = gw.register_run("run-1", RunLimits(max_total_tokens=200_000),
                                log_path=run_dir / "agent" / "gateway_exchanges.jsonl")
        grant.openai_base_url     # http://HOST:PORT/v1   (POST /chat/completions, /responses; GET /models)
        grant.anthropic_base_url  # http://HOST:PORT      (POST /v1/messages, /v1/messages/count_tokens)
        grant.token               # the run's bearer token (Authorization: Bearer … or x-api-key: …)
        grant.model_name          # the model name to ask for (any name maps to the upstream model)
        grant.env()               # OPENAI_/ANTHROPIC_ BASE_URL + API_KEY pointing at the gateway
        ... the agent runs ...
        gw.usage("run-1")         # rollouts.store.Usage: prompt/completion tokens, calls, cost_usd
        gw.exchanges("run-1")     # list[Exchange]: request, response, usage, latency, status
        gw.limit_hit("run-1")     # True: a request was refused for the budget, or usage exceeds it
        gw.bind_peer("run-1", ip) # optional: the token then works only from this source address
                                  # (the sandbox's IP: rollouts.gateway.network.sandbox_address)
        gw.unregister("run-1")    # the token stops working; the run's records are dropped

``host``: the address to listen on — ``127.0.0.1`` for host-side agents, or the gateway address of
the rollout's internal Docker network (:mod:`rollouts.gateway.network`), the only address a
sandbox on that network can reach. ``prices``: price-table overrides for
:func:`rollouts.llm.pricing.cost_usd` (model → ``(usd_in, usd_out)`` per 1M tokens).

HTTP behaviour: a request without a token or with an unknown/revoked one gets 401 in the agent's
protocol. Budget (per run, :class:`RunLimits`): a request is refused, never sent upstream, when
the tokens already used plus the estimate of its prompt (cl100k tokens of its text) exceed
``max_total_tokens``, or the cost used plus the estimate's input cost exceed ``max_cost_usd``;
OpenAI protocols get 429 ``insufficient_quota``, Anthropic gets 400 ``invalid_request_error``
(both with ``x-should-retry: false``). A response that takes the run over its budget is still
delivered (it has been paid for); the run is then exhausted and every later request is refused.
Upstream failures pass through with the upstream's status (502 when it gave none), the real key
scrubbed from messages. Requests in the endpoint's own protocol are forwarded without translation
(``passthrough``, with the API fields plus ``passthrough.EXTRA_FIELDS``: an aggregator upstream may
route on others); translated ones reach litellm with only their protocol's public API fields
(``proxy.API_FIELDS``: litellm takes keyword arguments such as ``base_url`` from the same dict, so
anything else is dropped and named in ``Exchange.dropped_fields``).

What a request may ask of the provider (:mod:`rollouts.gateway.policy`, every path): text
generation and calls of the agent's own tools only. Provider-side tools (web search/fetch, code
execution, MCP connectors, file search, image generation, another model), URLs the provider would
download, account files and stored prompts get 400 in the agent's protocol
(``invalid_request_error``, ``x-should-retry: false``), are logged with ``refused="policy"`` and are
never forwarded; they do not count as the budget's ``limit``. Nothing else of the request decides
where it goes or with which credentials: the URL is ``UpstreamSpec.base_url`` plus the protocol's
fixed path (the request's path and query are not used), the model is always ``UpstreamSpec.model``
(a ``model`` such as ``ollama/x`` or ``openai/x`` in the body is replaced, never routed), the key is
always ``UpstreamSpec.api_key``, and the only request headers forwarded are ``anthropic-version``
and ``anthropic-beta`` (Messages pass-through).

Binding a token to its sandbox (``bind_peer``; the runner does it for installed agents that run
inside the sandbox, ``AgentGateways.bind``, never for host-side ones such as mini-swe-agent): on
Docker, once the run's sandbox has started on the rollout's :class:`~rollouts.gateway.network.
GatewayNetwork` and before the agent's first request::

    from rollouts.gateway.network import sandbox_address
    ip = sandbox_address(docker_client, sandbox.id, net.name)   # the container's IP on that network
    gw.bind_peer(run_id, ip)

Then the token is accepted only from that address: another sandbox on the same network that got
hold of it is refused (401) like one without a token. Requests are checked against the TCP peer
address the gateway sees, so bind only when every request of the run comes from the sandbox: a
host-side agent (or the host reaching the gateway at the bridge address for a health check with
the run's token) would then be refused. Do not bind where the sandbox's source address is not its
own (Modal tunnels, NAT): there every request arrives from the tunnel's address.
"""

from rollouts.gateway.core import Gateway
from rollouts.gateway.models import Exchange, ExchangeUsage, RunGrant, RunLimits, UpstreamSpec

__all__ = ["Gateway", "UpstreamSpec", "RunLimits", "RunGrant", "Exchange", "ExchangeUsage"]
