"""The Docker network of a rollout whose sandboxes may reach the model gateway and nothing else.

Design (verified on Docker Engine 20.10 here, see ``tests/test_gateway_isolation.py``):

- One user-defined bridge network per rollout (a free /24 of 10.213.0.0/16, ``ROLLOUTS_GATEWAY_SUBNETS``, not one of Docker's ~30 default /16 pools), ``internal=True`` (Docker drops every packet
  forwarded between it and any other interface: no route out, no NAT) with
  ``com.docker.network.bridge.enable_icc=false`` (Docker drops packets between two containers of
  the network: sandboxes cannot reach each other). Its bridge interface on the host is named
  ``rlt<10 hex>`` (``com.docker.network.bridge.name``) so rules can name it.
- The gateway listens on the network's gateway address (the host end of the bridge,
  e.g. ``172.18.0.1``), the one address a container on the network can route to.
- Traffic *to the host itself* is not forwarded but delivered locally (iptables ``INPUT``), which
  Docker does not filter: every host service on ``0.0.0.0`` (and on any host address, e.g. the
  default bridge's ``172.17.0.1``) would be reachable. So two rules go first in ``INPUT``:
  accept TCP from the bridge to ``gateway address:gateway port``, drop everything else from the
  bridge (``ip6tables`` drops all IPv6 from it: link-local addresses exist even without IPv6
  networking). Each rule carries the comment ``rollouts-gw:<bridge>``.
- DNS: the network is internal, so Docker's embedded resolver answers container names only;
  every other lookup fails. No Docker socket is mounted into sandboxes.
- Labels: tool, rollout id, harness pid and host (as on containers), so ``clean`` removes the
  networks (and their rules) of dead harnesses; :meth:`GatewayNetwork.remove` at the rollout's end.

Needs root (or CAP_NET_ADMIN) for ``iptables``; otherwise EnvironmentNotReady (exit 3) says so.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import random
import shutil
import subprocess

import docker
import docker.errors
import docker.types

from rollouts.errors import EnvironmentNotReady, SandboxError
from rollouts.run.owner import is_orphan, owner_labels
from rollouts.sandbox.base import (
    LABEL_ROLLOUT,
    LABEL_TOOL,
    TOOL_NAME,
    NetworkAttachment,
)

LABEL_KIND = "rollouts.kind"
KIND_GATEWAY_NET = "gateway-network"
COMMENT_PREFIX = "rollouts-gw:"
BRIDGE_PREFIX = "rlt"


def _iptables(binary: str, args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    exe = shutil.which(binary)
    if exe is None:
        raise EnvironmentNotReady(f"{binary} not found: the gateway network needs it (apt-get install iptables)")
    r = subprocess.run([exe, "-w", "5", *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        hint = " (run as root, or with CAP_NET_ADMIN)" if "ermission" in r.stderr or os.geteuid() != 0 else ""
        raise EnvironmentNotReady(f"{binary} {' '.join(args)} failed: {r.stderr.strip()[:300]}{hint}")
    return r


def _rules(bridge: str, gw_ip: str, port: int) -> list[tuple[str, list[str]]]:
    """(binary, rule spec) in the order they must appear at the top of INPUT."""
    c = ["-m", "comment", "--comment", COMMENT_PREFIX + bridge]
    return [
        ("iptables", ["-i", bridge, "-p", "tcp", "-d", gw_ip, "--dport", str(port), "-j", "ACCEPT", *c]),
        ("iptables", ["-i", bridge, "-j", "DROP", *c]),
        ("ip6tables", ["-i", bridge, "-j", "DROP", *c]),
    ]


SUBNET_SPACE = ipaddress.ip_network(os.environ.get("ROLLOUTS_GATEWAY_SUBNETS", "10.213.0.0/16"))


def _free_subnets(client: docker.DockerClient) -> list[ipaddress.IPv4Network]:
    """/24s of SUBNET_SPACE that overlap no Docker network and no host route, in random order
    (concurrent creators rarely pick the same). Empty when the host's routes cannot be read."""
    ip = shutil.which("ip")
    if ip is None:
        return []
    r = subprocess.run([ip, "-4", "route", "show", "table", "all"], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        return []
    used = []
    for line in r.stdout.splitlines():
        word = line.split()[0] if line.split() else ""
        word = line.split()[1] if word in ("local", "broadcast", "unicast") and len(line.split()) > 1 else word
        try:
            used.append(ipaddress.ip_network(word if word != "default" else "0.0.0.0/32", strict=False))
        except ValueError:
            continue
    for n in client.api.networks():
        for c in (n.get("IPAM") or {}).get("Config") or []:
            try:
                used.append(ipaddress.ip_network(c.get("Subnet", ""), strict=False))
            except ValueError:
                continue
    free = [n for n in SUBNET_SPACE.subnets(new_prefix=24)
            if not any(u.version == 4 and n.overlaps(u) for u in used)]
    random.shuffle(free)
    return free


class GatewayNetwork:
    """A rollout's internal network. ``create()`` → gateway address; ``restrict_to(port)``
    installs the host rules once the gateway listens; ``attachment()`` is what SandboxSpec.network
    takes; ``remove()`` deletes rules and network (idempotent)."""

    def __init__(self, client: docker.DockerClient, rollout_id: str):
        self.client = client
        self.rollout_id = rollout_id
        digest = hashlib.sha256(f"{rollout_id}:{os.getpid()}:{os.urandom(8).hex()}".encode()).hexdigest()
        self.bridge = BRIDGE_PREFIX + digest[:10]  # ≤ 15 chars (IFNAMSIZ)
        self.name = f"rollouts-gw-{rollout_id}-{digest[:6]}"
        self.gateway_ip: str | None = None
        self.port: int | None = None
        self._net = None
        self._rules: list[tuple[str, list[str]]] = []

    def create(self) -> str:
        """Create the network; returns the host's address on it (where the gateway listens).

        The subnet is a free /24 of ``SUBNET_SPACE`` (overlapping no Docker network and no host
        route), so gateway networks do not use up Docker's default pools (~30 networks of /16);
        Docker's default pool is the fallback when none is free or the routes cannot be read."""
        labels = {**owner_labels(self.rollout_id), LABEL_KIND: KIND_GATEWAY_NET}  # pid, host, start time
        opts = {"com.docker.network.bridge.enable_icc": "false", "com.docker.network.bridge.name": self.bridge}
        try:
            for subnet in [*_free_subnets(self.client)[:8], None]:
                ipam = None if subnet is None else docker.types.IPAMConfig(pool_configs=[
                    docker.types.IPAMPool(subnet=str(subnet), gateway=str(subnet[1]))])
                try:
                    self._net = self.client.networks.create(self.name, driver="bridge", internal=True, labels=labels,
                                                            check_duplicate=True, options=opts, ipam=ipam)
                    break
                except docker.errors.APIError as e:
                    if subnet is None or "overlap" not in str(e).lower():
                        raise
                    # taken meanwhile by another network: try the next
            self._net.reload()
            cfg = (self._net.attrs.get("IPAM") or {}).get("Config") or []
            self.gateway_ip = next((c["Gateway"] for c in cfg if c.get("Gateway")), None)
        except docker.errors.APIError as e:
            self.remove()
            raise SandboxError(f"cannot create the gateway network {self.name}: {e.explanation or e}") from None
        if not self.gateway_ip:
            self.remove()
            raise SandboxError(f"network {self.name} has no IPv4 gateway address")
        return self.gateway_ip

    def restrict_to(self, port: int) -> None:
        """Allow only TCP ``gateway_ip:port`` from the network to the host; drop all else."""
        if self.gateway_ip is None:
            raise RuntimeError("create() first")
        self.port = port
        rules = _rules(self.bridge, self.gateway_ip, port)
        try:
            for binary, spec in reversed(rules):  # each inserted at position 1: final order = rules
                if binary == "ip6tables" and shutil.which("ip6tables") is None:
                    continue
                _iptables(binary, ["-I", "INPUT", "1", *spec])
                self._rules.append((binary, spec))
        except EnvironmentNotReady:
            self.remove()
            raise

    def attachment(self) -> NetworkAttachment:
        """The SandboxSpec.network value for sandboxes of this rollout."""
        if self.gateway_ip is None or self.port is None:
            raise RuntimeError("create() and restrict_to() first")
        return NetworkAttachment(name=self.name, gateway_host=self.gateway_ip, gateway_port=self.port)

    def remove(self) -> None:
        """Delete the host rules and the network (containers still attached are disconnected)."""
        for binary, spec in self._rules:
            _iptables(binary, ["-D", "INPUT", *spec], check=False)
        self._rules = []
        if self._net is not None:
            _remove_network(self._net)
            self._net = None

    def __enter__(self) -> GatewayNetwork:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def _remove_network(net) -> None:
    try:
        net.reload()
        for cid in list((net.attrs.get("Containers") or {}).keys()):
            try:
                net.disconnect(cid, force=True)
            except docker.errors.APIError:
                pass  # the container went away meanwhile
        net.remove()
    except docker.errors.NotFound:
        pass


def sandbox_address(client: docker.DockerClient, container_id: str, network_name: str) -> str:
    """The IPv4 address a started container has on ``network_name`` (for ``Gateway.bind_peer``).
    Raises SandboxError if it is not attached."""
    nets = client.api.inspect_container(container_id)["NetworkSettings"]["Networks"] or {}
    addr = (nets.get(network_name) or {}).get("IPAddress")
    if not addr:
        raise SandboxError(f"container {container_id[:12]} has no address on network {network_name}")
    return addr


def list_gateway_networks(client: docker.DockerClient, rollout_id: str | None = None) -> list[dict]:
    """Gateway networks of this tool (optionally of one rollout): dicts id, name, labels."""
    filters = {"label": [f"{LABEL_TOOL}={TOOL_NAME}", f"{LABEL_KIND}={KIND_GATEWAY_NET}"]}
    if rollout_id:
        filters["label"].append(f"{LABEL_ROLLOUT}={rollout_id}")
    return [{"id": n["Id"], "name": n["Name"], "labels": n.get("Labels") or {},
             "bridge": (n.get("Options") or {}).get("com.docker.network.bridge.name")}
            for n in client.api.networks(filters=filters)]


def owner_gone(labels: dict, all_hosts: bool = False) -> bool:
    """Whether the harness that labelled a network is provably gone (``rollouts.run.owner.is_orphan``:
    its pid is not alive, or is a reused pid with another start time); from another host, only
    with ``all_hosts`` (as ``clean`` treats sandboxes). A network without an owner pid is kept."""
    return is_orphan(labels, all_hosts)


def remove_leftover_networks(client: docker.DockerClient, is_dead=owner_gone, dry_run: bool = False) -> list[dict]:
    """Remove gateway networks whose owner ``is_dead(labels)`` says is gone (default: its
    harness process has ended), and every ``rollouts-gw:`` host rule whose bridge no longer
    exists. Returns the networks (dicts of :func:`list_gateway_networks`) removed."""
    gone = [n for n in list_gateway_networks(client) if is_dead(n["labels"])]
    if not dry_run:
        for n in gone:
            try:
                _remove_network(client.networks.get(n["id"]))
            except docker.errors.NotFound:
                pass
        remove_stale_rules()
    return gone


def remove_stale_rules() -> int:
    """Delete ``rollouts-gw:`` rules in INPUT whose bridge interface no longer exists. Returns
    how many were deleted (0 when iptables is unavailable)."""
    n = 0
    for binary in ("iptables", "ip6tables"):
        if shutil.which(binary) is None:
            continue
        r = _iptables(binary, ["-S", "INPUT"], check=False)
        for line in r.stdout.splitlines():
            if COMMENT_PREFIX not in line or not line.startswith("-A INPUT "):
                continue
            bridge = line.split(COMMENT_PREFIX, 1)[1].split()[0].strip('"')
            if os.path.exists(f"/sys/class/net/{bridge}"):
                continue
            import shlex

            _iptables(binary, ["-D", "INPUT", *shlex.split(line)[2:]], check=False)
            n += 1
    return n
