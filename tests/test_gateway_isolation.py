"""Network isolation of a sandbox on the rollout's gateway network (real Docker, real iptables):
from inside, the gateway answers and nothing else does — proven against listeners this test
starts on this machine (the Docker bridge address, another host port, another sandbox); DNS fails;
no Docker socket; a key planted in the host's environment appears nowhere in the container."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading

import pytest

from rollouts.gateway import Gateway, RunLimits, UpstreamSpec
from rollouts.gateway.network import (
    COMMENT_PREFIX,
    GatewayNetwork,
    list_gateway_networks,
    remove_leftover_networks,
    sandbox_address,
)
from rollouts.gateway.scripted import Reply, ScriptedEndpoint
from rollouts.sandbox.base import SandboxSpec
from rollouts.sandbox.docker import DockerSandbox
from tests.conftest import ROOT

pytestmark = pytest.mark.docker

PROBE = r"""
import json, os, socket, sys, threading, urllib.request
targets = json.loads(sys.argv[1])
out = {}
def probe(name, host, port):
    try:
        s = socket.create_connection((host, port), timeout=2)
        s.settimeout(2)
        data = s.recv(64)
        out[name] = "connected:" + data.decode(errors="replace")
        s.close()
    except Exception as e:
        out[name] = "failed:" + type(e).__name__
def lookup(name):
    try:
        socket.getaddrinfo(name, 443)
        out["dns:" + name] = "resolved"
    except OSError as e:
        out["dns:" + name] = "failed"
ts = [threading.Thread(target=probe, args=(n, h, p)) for n, (h, p) in targets.items()]
ts += [threading.Thread(target=lookup, args=(n,)) for n in ("pypi.org", "deb.debian.org", "host.docker.internal")]
[t.start() for t in ts]; [t.join() for t in ts]
out["docker_sock"] = [p for p in ("/var/run/docker.sock", "/run/docker.sock") if os.path.exists(p)]
req = urllib.request.Request(os.environ["OPENAI_BASE_URL"] + "/chat/completions", method="POST",
    data=json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode(),
    headers={"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"], "Content-Type": "application/json"})
try:
    out["gateway"] = json.load(urllib.request.urlopen(req, timeout=10))["choices"][0]["message"]["content"]
except Exception as e:
    out["gateway"] = "failed:" + repr(e)
print(json.dumps(out))
"""


class _Listener:
    """A TCP server on this machine that greets every connection (proof a probe got through)."""

    def __init__(self, host: str):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            c.sendall(b"HELLO")
            c.close()

    def close(self):
        self.sock.close()


def _bridge_ip(docker_client) -> str:
    """The host's address on Docker's default bridge (docker0)."""
    attrs = docker_client.networks.get("bridge").attrs
    name = attrs["Options"].get("com.docker.network.bridge.name", "docker0")
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", name], capture_output=True, text=True).stdout
    return out.split(" inet ", 1)[1].split("/", 1)[0]


@pytest.fixture
def planted_key(monkeypatch):
    key = f"sk-test-{secrets.token_hex(16)}"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    return key


@pytest.fixture
def rig(docker_client, base_image, planted_key, monkeypatch, tmp_path):
    """Scripted upstream (accepts only the planted key) → gateway on a fresh gateway network."""
    ep = ScriptedEndpoint([Reply("pong")], api_key=planted_key)
    ep.start()
    monkeypatch.setenv("OPENAI_BASE_URL", ep.openai_base_url)
    net = GatewayNetwork(docker_client, f"test-iso-{secrets.token_hex(3)}")
    sandboxes: list[DockerSandbox] = []
    gw = None
    try:
        gw_ip = net.create()
        gw = Gateway(UpstreamSpec.for_model("gpt-4o"), host=gw_ip)
        gw.start()
        net.restrict_to(gw.port)
        grant = gw.register_run("iso-run", RunLimits(max_total_tokens=10_000),
                                log_path=tmp_path / "data" / "runs" / "iso-run" / "agent" / "gateway_exchanges.jsonl")

        def sandbox(env: dict | None = None) -> DockerSandbox:
            spec = SandboxSpec(image=base_image, labels={"rollouts.tool": "rollouts", "rollouts.pid": str(os.getpid()),
                                                         "rollouts.rollout_id": net.rollout_id},
                               network=net.attachment(), env=env or {}, lifetime_sec=120)
            sb = DockerSandbox(docker_client, spec)
            sandboxes.append(sb)
            sb.start()
            return sb

        yield {"net": net, "gw": gw, "grant": grant, "sandbox": sandbox, "ep": ep, "data": tmp_path / "data"}
    finally:
        for sb in sandboxes:
            sb.stop()
        if gw is not None:
            gw.stop()
        net.remove()
        ep.stop()


def test_only_the_gateway_is_reachable(rig, docker_client, planted_key):
    net, grant = rig["net"], rig["grant"]
    on_host_any = _Listener("0.0.0.0")  # another host port, on every host address
    on_bridge = _Listener(_bridge_ip(docker_client))  # the default Docker bridge address
    try:
        other = rig["sandbox"]()  # another sandbox on the same network, listening
        other.exec("nohup python3 -m http.server 8080 >/dev/null 2>&1 &", timeout=10)
        other_ip = docker_client.api.inspect_container(other.id)["NetworkSettings"]["Networks"][net.name]["IPAddress"]
        sb = rig["sandbox"](env=grant.env())
        targets = {
            "host_port_via_gateway_ip": [net.gateway_ip, on_host_any.port],
            "host_port_via_bridge_ip": [_bridge_ip(docker_client), on_host_any.port],
            "bridge_listener": [_bridge_ip(docker_client), on_bridge.port],
            "other_sandbox": [other_ip, 8080],
            "gateway_port_other_ip": [_bridge_ip(docker_client), rig["gw"].port],
            "upstream_endpoint_port": [net.gateway_ip, int(rig["ep"].url.rsplit(":", 1)[1])],
        }
        wait_up = ("import time, urllib.request\nfor _ in range(100):\n    try:\n"
                   "        urllib.request.urlopen('http://127.0.0.1:8080'); break\n"
                   "    except OSError:\n        time.sleep(0.1)\nelse:\n    raise SystemExit(1)\n")
        assert other.exec(["python3", "-c", wait_up], timeout=30).ok, "the other sandbox's listener works"
        r = sb.exec(["python3", "-c", PROBE, json.dumps(targets)], timeout=60)
        assert r.exit_code == 0, r.output
        out = json.loads(r.stdout)
        assert out["gateway"] == "pong", out  # through the gateway to the upstream, with the real key
        for name in targets:
            assert out[name].startswith("failed:"), (name, out[name])
        assert all(out[k] == "failed" for k in out if k.startswith("dns:")), out
        assert out["docker_sock"] == []
        assert on_host_any.hits == 0 and on_bridge.hits == 0
        # the listeners do answer when asked from the host: the failures are the isolation's doing
        assert socket.create_connection(("127.0.0.1", on_host_any.port), timeout=2).recv(5) == b"HELLO"
        assert rig["gw"].usage("iso-run").calls == 1
        # bound to its sandbox's address, the token is refused from any other sandbox
        rig["gw"].bind_peer("iso-run", sandbox_address(docker_client, sb.id, net.name))
        thief = rig["sandbox"](env=grant.env())
        stolen = thief.exec(["python3", "-c", PROBE, "{}"], timeout=60)
        assert "HTTPError 401" in json.loads(stolen.stdout)["gateway"], stolen.output
        again = sb.exec(["python3", "-c", PROBE, "{}"], timeout=60)
        assert json.loads(again.stdout)["gateway"] == "pong"

        # the planted key: nowhere in the container (env, every process's environ, any file)
        assert planted_key not in sb.exec("env", timeout=10).stdout
        assert sb.exec(f"cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c -F {planted_key}",
                       timeout=10).stdout.strip() == "0"
        g = sb.exec(f"grep -rlF {planted_key} / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev 2>/dev/null",
                    timeout=60)
        assert g.stdout.strip() == "" and g.exit_code == 1, g.output
        assert grant.token in sb.exec("env", timeout=10).stdout  # what it gets instead: the run's token
        # nor under data/ (the run's exchange log is there)
        files = [p for p in rig["data"].rglob("*") if p.is_file()]
        assert files and not any(planted_key in p.read_text(errors="replace") for p in files)
    finally:
        on_host_any.close()
        on_bridge.close()


def test_network_and_rules_are_labelled_and_removed(docker_client):
    rid = f"test-net-{secrets.token_hex(3)}"
    net = GatewayNetwork(docker_client, rid)
    try:
        gw_ip = net.create()
        net.restrict_to(45678)
        listed = list_gateway_networks(docker_client, rid)
        assert [n["name"] for n in listed] == [net.name]
        assert listed[0]["labels"]["rollouts.pid"] == str(os.getpid()) and listed[0]["bridge"] == net.bridge
        attrs = docker_client.networks.get(net.name).attrs
        assert attrs["Internal"] is True and attrs["Options"]["com.docker.network.bridge.enable_icc"] == "false"
        rules = subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True).stdout.splitlines()
        mine = [r for r in rules if COMMENT_PREFIX + net.bridge in r]
        assert len(mine) == 2 and f"-d {gw_ip}/32" in mine[0] and "--dport 45678" in mine[0] and "DROP" in mine[1]
        assert rules.index(mine[0]) < rules.index(mine[1])
    finally:
        net.remove()
    assert list_gateway_networks(docker_client, rid) == []
    rules = subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True).stdout
    assert COMMENT_PREFIX + net.bridge not in rules


def test_clean_removes_networks_and_rules_of_a_killed_harness(docker_client, run_cli):
    """A harness killed without cleanup (os._exit) leaves its network and host rules; ``clean``
    removes both (the owner pid is dead)."""
    rid = f"test-killed-{secrets.token_hex(3)}"
    code = ("import os, docker; from rollouts.gateway.network import GatewayNetwork\n"
            f"n = GatewayNetwork(docker.from_env(), {rid!r}); n.create(); n.restrict_to(45679)\n"
            "print(n.bridge, flush=True); os._exit(9)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    bridge = r.stdout.strip()
    assert r.returncode == 9 and bridge.startswith("rlt"), r.stderr
    assert [n["bridge"] for n in list_gateway_networks(docker_client, rid)] == [bridge]
    assert COMMENT_PREFIX + bridge in subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True).stdout
    out = run_cli("clean", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "would remove gateway network rollouts-gw-" + rid in out.stdout
    assert [n["bridge"] for n in list_gateway_networks(docker_client, rid)] == [bridge]
    gone = remove_leftover_networks(docker_client)  # what `clean` does without --dry-run
    assert rid in [n["labels"]["rollouts.rollout_id"] for n in gone]
    assert list_gateway_networks(docker_client, rid) == []
    assert COMMENT_PREFIX + bridge not in subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True).stdout
