"""The gateway in front of the real embedded model (llama.cpp's OpenAI-compatible server): the
Responses and Messages protocols translated to its Chat Completions, streamed and not, metered
from what the server reports. Slow (the 0.5B model on 2 cores): ROLLOUTS_SLOW=1."""

from __future__ import annotations

import time

import anthropic
import openai
import pytest

from rollouts.gateway import Gateway, RunLimits, UpstreamSpec
from rollouts.llm.local_model import ensure_model_file
from rollouts.llm.local_server import LocalModelServer

pytestmark = [pytest.mark.llm, pytest.mark.slow]


@pytest.fixture(scope="module")
def gateway():
    srv = LocalModelServer(ensure_model_file(), n_ctx=4096)
    srv.start(timeout=120)
    try:
        with Gateway(UpstreamSpec.for_model("local", local_base_url=srv.base_url)) as gw:
            yield gw
    finally:
        srv.stop()


def test_all_protocols_on_the_local_model(gateway):
    g = gateway.register_run("local-1", RunLimits(max_total_tokens=5000))
    oa = openai.OpenAI(base_url=g.openai_base_url, api_key=g.token, max_retries=0, timeout=300)
    an = anthropic.Anthropic(base_url=g.anthropic_base_url, api_key=g.token, max_retries=0, timeout=300)
    q = "What is 17 + 25? Answer with the number only."
    t0 = time.monotonic()
    r = oa.responses.create(model="local", input=q, max_output_tokens=8)
    with oa.responses.stream(model="local", input=q, max_output_tokens=8) as s:
        for _ in s:
            pass
        rs = s.get_final_response()
    m = an.messages.create(model="local", max_tokens=8, messages=[{"role": "user", "content": q}])
    with an.messages.stream(model="local", max_tokens=8, messages=[{"role": "user", "content": q}]) as s:
        text = "".join(s.text_stream)
    c = "".join(ch.choices[0].delta.content or "" for ch in oa.chat.completions.create(
        model="local", max_tokens=8, stream=True, messages=[{"role": "user", "content": q}]) if ch.choices)
    print(f"5 requests in {time.monotonic() - t0:.1f} s: {r.output_text!r} {rs.output_text!r} "
          f"{m.content[0].text!r} {text!r} {c!r}")
    assert all("42" in t for t in (r.output_text, rs.output_text, m.content[0].text, text, c))
    ex = gateway.exchanges("local-1")
    assert [e.status_code for e in ex] == [200] * 5
    assert all(e.usage.prompt_tokens > 0 and e.usage.completion_tokens > 0 and not e.usage.estimated for e in ex)
    u = gateway.usage("local-1")
    assert u.calls == 5 and u.cost_usd == 0.0
