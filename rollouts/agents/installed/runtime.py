"""The rollout side of installed agents: their model gateway and sandbox network.

One :class:`AgentGateways` per rollout. On the first run of an installed agent for a given
``model`` it creates the rollout's internal Docker network for that model
(:class:`rollouts.gateway.network.GatewayNetwork`: no route out, no DNS, sandboxes isolated
from each other), starts a :class:`rollouts.gateway.Gateway` listening on the network's host
address with the model's upstream (the real key stays in this process) and restricts the host to
that one port. Each run then gets its own token (:meth:`AgentGateways.grant`): an
:class:`~rollouts.agents.installed.base.Endpoint` for the agent and the network attachment for
its sandbox spec. After the agent, :meth:`AgentGateways.finish` returns the metered usage,
whether the run hit its budget, and writes the exchanges as the run's ATIF trajectory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollouts.agents.installed.base import Endpoint
from rollouts.gateway import Gateway, RunLimits, UpstreamSpec
from rollouts.store import Usage


@dataclass
class GatewayResult:
    """What the gateway saw of one run: metered ``usage``, ``limit_hit`` (a request was refused
    for the budget, or usage went over it), ``exchanges`` (count)."""

    usage: Usage
    limit_hit: bool
    exchanges: int


class AgentGateways:
    """Per-rollout gateways for installed agents (see module docstring). Thread-safe.

    ``client``: docker-py client (the network lives on this engine). ``local_base_url``: a
    callable returning the embedded model server's URL (``model = "local"``). ``prices``: price
    overrides (the config's ``[pricing]``).
    """

    def __init__(self, client: Any, rollout_id: str, *, local_base_url: Callable[[], str] | None = None,
                 prices: Mapping[str, Any] | None = None):
        self.client = client
        self.rollout_id = rollout_id
        self.local_base_url = local_base_url
        self.prices = prices
        self._lock = threading.Lock()
        self._by_model: dict[str, tuple[Any, Gateway]] = {}  # model -> (network, gateway)
        self._runs: dict[str, str] = {}  # run id -> model

    def _for_model(self, model: str) -> tuple[Any, Gateway]:
        from rollouts.gateway.network import GatewayNetwork

        with self._lock:
            if model in self._by_model:
                return self._by_model[model]
            up = UpstreamSpec.for_model(model, local_base_url=self.local_base_url() if model == "local" else None)
            net = GatewayNetwork(self.client, self.rollout_id)
            gw = None
            try:
                host = net.create()
                gw = Gateway(up, self.prices, host=host)
                gw.start()
                net.restrict_to(gw.port)
            except BaseException:
                if gw is not None:
                    gw.stop()
                net.remove()
                raise
            self._by_model[model] = (net, gw)
            return net, gw

    def grant(self, run_id: str, model: str, limits: RunLimits, run_dir: Path) -> tuple[Endpoint, Any]:
        """Register ``run_id``: returns (the agent's Endpoint, the SandboxSpec.network value).
        The exchange log goes to ``<run_dir>/agent/gateway_exchanges.jsonl``."""
        net, gw = self._for_model(model)
        (run_dir / "agent").mkdir(parents=True, exist_ok=True)
        g = gw.register_run(run_id, limits, log_path=run_dir / "agent" / "gateway_exchanges.jsonl")
        with self._lock:
            self._runs[run_id] = model
        # The host reaches the gateway at the same address (its end of the bridge).
        ep = Endpoint(g.anthropic_base_url, g.token, g.model_name, host_base_url=g.anthropic_base_url)
        return ep, net.attachment()

    def bind(self, run_id: str, container_id: str) -> str:
        """Accept ``run_id``'s token only from the started container ``container_id``'s address on
        the gateway network (:meth:`Gateway.bind_peer`): a token that leaks to another sandbox on
        the network is refused (401) there. Call before the agent's first request, only for agents
        whose every request comes from the sandbox. Returns the address; SandboxError if the
        container is not attached to the network."""
        from rollouts.gateway.network import sandbox_address

        with self._lock:
            net, gw = self._by_model[self._runs[run_id]]
        ip = sandbox_address(self.client, container_id, net.name)
        gw.bind_peer(run_id, ip)
        return ip

    def finish(self, run_id: str, agent_meta: Mapping[str, Any], run_dir: Path) -> GatewayResult:
        """Usage and limit state of ``run_id``; writes ``agent/trajectory.json`` (ATIF) from its
        exchanges when :mod:`rollouts.atif` is available; revokes the token."""
        with self._lock:
            model = self._runs.pop(run_id)
        _, gw = self._by_model[model]
        usage = gw.usage(run_id)
        hit = gw.limit_hit(run_id)
        ex = gw.exchanges(run_id)
        try:
            write_trajectory(run_dir / "agent" / "trajectory.json", ex, agent_meta)
        finally:
            gw.unregister(run_id)
        return GatewayResult(usage=usage, limit_hit=hit, exchanges=len(ex))

    def release(self, run_id: str) -> None:
        """Revoke ``run_id``'s token without collecting (the run failed before :meth:`finish`)."""
        with self._lock:
            model = self._runs.pop(run_id, None)
        if model is not None:
            self._by_model[model][1].unregister(run_id)

    def close(self) -> None:
        """Stop every gateway and remove every network (idempotent)."""
        with self._lock:
            items = list(self._by_model.values())
            self._by_model.clear()
        for net, gw in items:
            try:
                gw.stop()
            finally:
                net.remove()


def write_trajectory(path: Path, exchanges: list, agent_meta: Mapping[str, Any]) -> None:
    """The run's ATIF trajectory from the gateway's exchanges (``rollouts.atif``)."""
    from rollouts import atif

    atif.write(path, atif.trajectory_from_exchanges(exchanges, **agent_meta))
