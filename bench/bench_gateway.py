"""Added latency of the model gateway per request: median over N requests through the gateway vs
the same requests straight to the endpoint (a scripted OpenAI-compatible / Anthropic-compatible
server on this machine, so the difference is the gateway's own cost: auth, budget check, litellm
translation, metering, exchange log, one more HTTP hop).

    python bench/bench_gateway.py [-n 200]

Prints one line per path (agent protocol → endpoint protocol, stream or not): direct median,
gateway median, added median and p90, in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anthropic  # noqa: E402
import openai  # noqa: E402

from rollouts.gateway import Gateway, RunLimits, UpstreamSpec  # noqa: E402
from rollouts.gateway.scripted import Reply, ScriptedEndpoint, ToolCall  # noqa: E402

MSGS = [{"role": "user", "content": "write hello.txt with Hello, world!"}]
REPLY = Reply("Writing it now.", tool_calls=(ToolCall("bash", {"command": "echo 'Hello, world!' > hello.txt"}),))


def _timed(fn, n: int) -> list[float]:
    fn()  # warm-up (connection, first-call imports)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _chat(client: openai.OpenAI, stream: bool):
    def call():
        if stream:
            for _ in client.chat.completions.create(model="m", messages=MSGS, stream=True):
                pass
        else:
            client.chat.completions.create(model="m", messages=MSGS)
    return call


def _responses(client: openai.OpenAI, stream: bool):
    def call():
        if stream:
            for _ in client.responses.create(model="m", input="write hello.txt", stream=True):
                pass
        else:
            client.responses.create(model="m", input="write hello.txt")
    return call


def _messages(client: anthropic.Anthropic, stream: bool):
    def call():
        if stream:
            with client.messages.stream(model="m", max_tokens=64, messages=MSGS) as s:
                for _ in s:
                    pass
        else:
            client.messages.create(model="m", max_tokens=64, messages=MSGS)
    return call


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200, help="requests per path (default 200)")
    n = ap.parse_args().n
    print(f"gateway added latency, median of {n} requests per path (ms); scripted endpoint on 127.0.0.1")
    print(f"{'path':44} {'direct':>8} {'gateway':>8} {'added':>8} {'added p90':>10}")
    with ScriptedEndpoint([REPLY]) as ep:
        for kind in ("openai", "anthropic"):
            base = ep.openai_base_url if kind == "openai" else ep.anthropic_base_url
            up = UpstreamSpec(kind, base, "m", api_key="sk-bench")
            with Gateway(up) as gw:
                g = gw.register_run("bench", RunLimits())
                via_oa = openai.OpenAI(base_url=g.openai_base_url, api_key=g.token, max_retries=0)
                via_an = anthropic.Anthropic(base_url=g.anthropic_base_url, api_key=g.token, max_retries=0)
                d_oa = openai.OpenAI(base_url=ep.openai_base_url, api_key="sk-bench", max_retries=0)
                d_an = anthropic.Anthropic(base_url=ep.anthropic_base_url, api_key="sk-bench", max_retries=0)
                paths = [("chat", _chat, via_oa, d_oa if kind == "openai" else None),
                         ("responses", _responses, via_oa, None),
                         ("messages", _messages, via_an, d_an if kind == "anthropic" else None)]
                for proto, make, via, direct in paths:
                    for stream in (False, True):
                        # the direct baseline: the endpoint's own protocol (Responses has no direct
                        # endpoint here: compare with a direct chat call, the request it becomes)
                        base_call = make(direct, stream) if direct is not None else (
                            _chat(d_oa, stream) if kind == "openai" else _messages(d_an, stream))
                        t_direct = _timed(base_call, n)
                        t_gw = _timed(make(via, stream), n)
                        md, mg = statistics.median(t_direct), statistics.median(t_gw)
                        added = sorted(g - d for g, d in zip(sorted(t_gw), sorted(t_direct), strict=True))
                        p90 = added[int(0.9 * (len(added) - 1))]
                        name = f"{proto:9} -> {kind:9} {'stream' if stream else 'json':6}"
                        print(f"{name:44} {md:8.2f} {mg:8.2f} {mg - md:8.2f} {p90:10.2f}", flush=True)
                u = gw.usage("bench")
                print(f"  ({kind} gateway metered {u.calls} calls, {u.prompt_tokens + u.completion_tokens} tokens)")


if __name__ == "__main__":
    main()
