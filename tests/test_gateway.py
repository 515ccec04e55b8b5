"""The model gateway in front of scripted endpoints: real HTTP, real wire protocols, the real
``openai`` and ``anthropic`` SDKs as the agents' side. Translation both ways, streaming, tokens,
budgets, the exchange log."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest

from rollouts.errors import ConfigError
from rollouts.gateway import Gateway, RunLimits, UpstreamSpec
from rollouts.gateway.core import read_exchanges
from rollouts.gateway.scripted import Reply, ScriptedEndpoint, ToolCall

REAL_KEY = "sk-real-upstream-key-123456"
TOOLS_OPENAI = [{"type": "function", "function": {
    "name": "write_file", "description": "write a file",
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "text": {"type": "string"}}}}}]
TOOLS_RESPONSES = [{"type": "function", "name": "write_file", "description": "write a file",
                    "parameters": TOOLS_OPENAI[0]["function"]["parameters"]}]
TOOLS_ANTHROPIC = [{"name": "write_file", "description": "write a file",
                    "input_schema": TOOLS_OPENAI[0]["function"]["parameters"]}]
CALL = ToolCall("write_file", {"path": "hello.txt", "text": "Hello, world!"}, id="call_1")
SCRIPT = [Reply(tool_calls=(CALL,), prompt_tokens=40, completion_tokens=12),
          Reply("Done.", prompt_tokens=60, completion_tokens=3)]


@pytest.fixture
def endpoint():
    with ScriptedEndpoint(SCRIPT, api_key=REAL_KEY) as ep:
        yield ep


def _gateway(ep: ScriptedEndpoint, kind: str = "openai", **kw) -> Gateway:
    if kind == "openai":
        up = UpstreamSpec("openai", ep.openai_base_url, "qwen-scripted", api_key=REAL_KEY, price_model="gpt-4o")
    else:
        up = UpstreamSpec("anthropic", ep.anthropic_base_url, "claude-sonnet-4-5", api_key=REAL_KEY)
    return Gateway(up, **kw)


def _oa(grant) -> openai.OpenAI:
    return openai.OpenAI(base_url=grant.openai_base_url, api_key=grant.token, max_retries=0)


def _an(grant) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=grant.anthropic_base_url, api_key=grant.token, max_retries=0)


def _upstream_saw_only_real_key(ep: ScriptedEndpoint, grant) -> None:
    assert ep.requests
    for r in ep.requests:
        auth = r.headers.get("authorization", "") + r.headers.get("x-api-key", "")
        assert REAL_KEY in auth and grant.token not in json.dumps(r.headers)


@pytest.mark.parametrize("stream", [False, True])
def test_chat_passthrough_with_tool_calls(endpoint, stream):
    with _gateway(endpoint) as gw:
        g = gw.register_run("run-a")
        oa = _oa(g)
        msgs = [{"role": "user", "content": "write hello.txt"}]
        if stream:
            calls, text = {}, ""
            for ch in oa.chat.completions.create(model=g.model_name, messages=msgs, tools=TOOLS_OPENAI, stream=True):
                assert ch.choices, "no usage-only chunk unless the agent asked for it"
                for tc in ch.choices[0].delta.tool_calls or []:
                    c = calls.setdefault(tc.index, {"name": "", "args": ""})
                    c["name"] += tc.function.name or ""
                    c["args"] += tc.function.arguments or ""
            assert calls[0]["name"] == "write_file" and json.loads(calls[0]["args"]) == CALL.arguments
            r2 = oa.chat.completions.create(model="anything", messages=msgs, stream=True,
                                            stream_options={"include_usage": True})
            for ch in r2:
                text += ch.choices[0].delta.content or "" if ch.choices else ""
            assert text == "Done."
        else:
            r = oa.chat.completions.create(model=g.model_name, messages=msgs, tools=TOOLS_OPENAI)
            tc = r.choices[0].message.tool_calls[0]
            assert (tc.function.name, json.loads(tc.function.arguments)) == ("write_file", CALL.arguments)
            assert r.usage.prompt_tokens == 40 and r.usage.completion_tokens == 12
            r2 = oa.chat.completions.create(model="anything", messages=msgs)
            assert r2.choices[0].message.content == "Done."
        u = gw.usage("run-a")
        assert (u.prompt_tokens, u.completion_tokens, u.calls) == (100, 15, 2)
        assert u.cost_usd == pytest.approx((100 * 2.5 + 15 * 10.0) / 1e6)  # gpt-4o prices
        ex = gw.exchanges("run-a")
        assert [e.stream for e in ex] == [stream, stream] and all(e.latency_sec > 0 for e in ex)
        assert ex[0].request["messages"] == msgs and ex[0].response["choices"][0]["message"]["tool_calls"]
        assert endpoint.requests[0].body["model"] == "qwen-scripted"
        _upstream_saw_only_real_key(endpoint, g)


@pytest.mark.parametrize("stream", [False, True])
def test_responses_translated_to_chat(endpoint, stream):
    """Codex speaks the Responses API; a Chat Completions endpoint gets chat requests."""
    with _gateway(endpoint) as gw:
        g = gw.register_run("run-r")
        oa = _oa(g)
        kw = dict(model=g.model_name, input="write hello.txt", instructions="be brief", tools=TOOLS_RESPONSES)
        if stream:
            with oa.responses.stream(**kw) as s:
                kinds = [ev.type for ev in s]
                final = s.get_final_response()
            assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
        else:
            final = oa.responses.create(**kw)
        call = [o for o in final.output if o.type == "function_call"][0]
        assert call.name == "write_file" and json.loads(call.arguments) == CALL.arguments
        assert final.usage.input_tokens == 40 and final.usage.output_tokens == 12
        # the follow-up turn carries the tool output back (the Responses way)
        follow = oa.responses.create(model=g.model_name, input=[
            {"type": "message", "role": "user", "content": "write hello.txt"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "ok"}], tools=TOOLS_RESPONSES)
        assert follow.output_text == "Done."
        sent = endpoint.requests[-1]
        assert sent.path == "/v1/chat/completions"
        roles = [m["role"] for m in sent.body["messages"]]
        assert "tool" in roles and any(m.get("tool_calls") for m in sent.body["messages"])
        assert endpoint.requests[0].body["messages"][0] == {"role": "system", "content": "be brief"}
        assert gw.usage("run-r").total_tokens if hasattr(gw.usage("run-r"), "total_tokens") else True
        assert gw.usage("run-r").prompt_tokens == 100


@pytest.mark.parametrize("stream", [False, True])
def test_messages_translated_to_chat(endpoint, stream):
    """Claude Code speaks Anthropic Messages; an OpenAI-compatible endpoint gets chat requests."""
    with _gateway(endpoint) as gw:
        g = gw.register_run("run-m")
        an = _an(g)
        kw = dict(model="claude-whatever", max_tokens=256, system="be brief", tools=TOOLS_ANTHROPIC,
                  messages=[{"role": "user", "content": "write hello.txt"}])
        if stream:
            with an.messages.stream(**kw) as s:
                for _ in s:
                    pass
                msg = s.get_final_message()
        else:
            msg = an.messages.create(**kw)
        tu = [b for b in msg.content if b.type == "tool_use"][0]
        assert tu.name == "write_file" and tu.input == CALL.arguments and msg.stop_reason == "tool_use"
        assert msg.usage.input_tokens == 40 and msg.usage.output_tokens == 12
        msg2 = an.messages.create(model="claude-whatever", max_tokens=256, tools=TOOLS_ANTHROPIC, messages=[
            {"role": "user", "content": "write hello.txt"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": tu.id, "name": tu.name, "input": tu.input}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tu.id, "content": "ok"}]}])
        assert msg2.content[0].text == "Done."
        assert all(r.path == "/v1/chat/completions" for r in endpoint.requests)
        assert any(m["role"] == "tool" for m in endpoint.requests[-1].body["messages"])
        ex = gw.exchanges("run-m")
        assert ex[0].response["content"][0]["type"] == "tool_use" and ex[0].usage.prompt_tokens == 40
        _upstream_saw_only_real_key(endpoint, g)


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_upstream_all_protocols(endpoint, stream):
    """Chat and Responses translated to Messages; Messages passed through (beta header kept)."""
    with _gateway(endpoint, kind="anthropic") as gw:
        g = gw.register_run("run-x")
        oa, an = _oa(g), _an(g)
        msgs = [{"role": "user", "content": "write hello.txt"}]
        if stream:
            args = ""
            for ch in oa.chat.completions.create(model="m", messages=msgs, tools=TOOLS_OPENAI, stream=True):
                for tc in (ch.choices[0].delta.tool_calls or []) if ch.choices else []:
                    args += tc.function.arguments or ""
            assert json.loads(args) == CALL.arguments
            with an.messages.stream(model="m", max_tokens=64, messages=msgs,
                                    extra_headers={"anthropic-beta": "test-beta-1"}) as s:
                for _ in s:
                    pass
                assert s.get_final_message().content[0].text == "Done."
        else:
            r = oa.chat.completions.create(model="m", messages=msgs, tools=TOOLS_OPENAI)
            assert json.loads(r.choices[0].message.tool_calls[0].function.arguments) == CALL.arguments
            m = an.messages.create(model="m", max_tokens=64, messages=msgs,
                                   extra_headers={"anthropic-beta": "test-beta-1"})
            assert m.content[0].text == "Done."
        r3 = oa.responses.create(model="m", input="hi")
        assert r3.output_text == "Done."
        assert all(r.path == "/v1/messages" and r.body["model"] == "claude-sonnet-4-5" for r in endpoint.requests)
        assert endpoint.requests[1].headers.get("anthropic-beta") == "test-beta-1"
        u = gw.usage("run-x")
        assert (u.prompt_tokens, u.completion_tokens, u.calls) == (160, 18, 3)
        assert u.cost_usd == pytest.approx((160 * 3 + 18 * 15) / 1e6)
        _upstream_saw_only_real_key(endpoint, g)


def test_tokens_refused(endpoint):
    other = _gateway(endpoint)
    with _gateway(endpoint) as gw, other:
        a = gw.register_run("run-a")
        b = gw.register_run("run-b")
        foreign = other.register_run("run-a")
        assert len({a.token, b.token, foreign.token}) == 3
        url = a.openai_base_url + "/chat/completions"
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        for headers in ({}, {"Authorization": f"Bearer {foreign.token}"},
                        {"x-api-key": "rgw-guess"}, {"Authorization": REAL_KEY}):
            r = httpx.post(url, json=body, headers=headers)
            assert r.status_code == 401, headers
            assert r.json()["error"]["message"]
        r = httpx.post(a.anthropic_base_url + "/v1/messages", json={**body, "max_tokens": 5})
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=a.openai_base_url, api_key=foreign.token, max_retries=0).models.list()
        # a run's token only counts for that run
        assert _oa(b).chat.completions.create(model="m", messages=body["messages"]).choices
        assert gw.usage("run-a").calls == 0 and gw.usage("run-b").calls == 1
        # revoked at the end of the run
        gw.unregister("run-b")
        with pytest.raises(openai.AuthenticationError):
            _oa(b).chat.completions.create(model="m", messages=body["messages"])
        assert len(endpoint.requests) == 1 and gw.unauthenticated >= 7


def test_budget_max_total_tokens_200(endpoint, tmp_path):
    log = tmp_path / "agent" / "gateway_exchanges.jsonl"
    with _gateway(endpoint) as gw:
        g = gw.register_run("run-l", RunLimits(max_total_tokens=200), log_path=log)
        oa = _oa(g)
        oa.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])  # 40 + 12 tokens
        assert not gw.limit_hit("run-l")
        big = "word " * 400  # ~400 prompt tokens: 52 used + 400 > 200
        with pytest.raises(openai.RateLimitError) as ei:
            oa.chat.completions.create(model="m", messages=[{"role": "user", "content": big}])
        assert ei.value.code == "insufficient_quota" and "max_total_tokens=200" in str(ei.value)
        assert ei.value.response.headers["x-should-retry"] == "false"
        assert len(endpoint.requests) == 1, "the overshooting request never reached the upstream"
        assert gw.limit_hit("run-l")
        with pytest.raises(anthropic.BadRequestError, match="budget"):
            _an(g).messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": big}])
        u = gw.usage("run-l")
        assert (u.prompt_tokens + u.completion_tokens, u.calls) == (52, 1)
        logged = read_exchanges(log)
        assert [(e.status_code, e.refused) for e in logged] == [(200, None), (429, "limit"), (400, "limit")]
        assert logged == gw.exchanges("run-l")


def test_budget_crossed_by_a_response_blocks_the_next(endpoint):
    with _gateway(endpoint) as gw:
        g = gw.register_run("run-c", RunLimits(max_total_tokens=50))
        oa = _oa(g)
        oa.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])  # 52 > 50: delivered
        assert gw.limit_hit("run-c")
        with pytest.raises(openai.RateLimitError):
            oa.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert len(endpoint.requests) == 1


def test_budget_max_cost_usd(endpoint):
    with _gateway(endpoint) as gw:  # gpt-4o: $2.5 / $10 per 1M
        g = gw.register_run("run-$", RunLimits(max_cost_usd=0.0002))
        oa = _oa(g)
        oa.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])  # $0.00022
        assert gw.limit_hit("run-$")
        with pytest.raises(openai.RateLimitError, match="max_cost_usd"):
            oa.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])


def test_cost_limit_needs_a_price(endpoint):
    up = UpstreamSpec("openai", endpoint.openai_base_url, "mystery-model", api_key=REAL_KEY)
    with Gateway(up) as gw:
        with pytest.raises(ConfigError, match="mystery-model"):
            gw.register_run("r", RunLimits(max_cost_usd=1.0))
        gw.register_run("r2")
        assert gw.usage("r2").cost_usd is None  # unknown price is never reported as 0


def test_upstream_error_reaches_the_agent_without_the_key():
    with ScriptedEndpoint(SCRIPT, api_key="sk-some-other-key-999") as ep:  # our key is rejected
        with _gateway(ep) as gw:
            g = gw.register_run("run-e")
            with pytest.raises(openai.AuthenticationError) as ei:
                _oa(g).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            assert REAL_KEY not in str(ei.value)
            ex = gw.exchanges("run-e")
            assert ex[0].status_code == 401 and REAL_KEY not in ex[0].model_dump_json()
            assert gw.usage("run-e").calls == 0


def test_upstream_unreachable_is_502():
    up = UpstreamSpec("openai", "http://127.0.0.1:9/v1", "m", api_key=REAL_KEY)
    with Gateway(up) as gw:
        g = gw.register_run("run-u")
        with pytest.raises(openai.APIStatusError) as ei:
            _oa(g).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert ei.value.status_code >= 500


def test_upstream_for_model_names(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    env = {"OPENAI_API_KEY": "sk-x", "ANTHROPIC_API_KEY": "sk-ant-y"}
    assert UpstreamSpec.for_model("local", local_base_url="http://127.0.0.1:5/v1").model == "local"
    up = UpstreamSpec.for_model("claude-sonnet-4-5", environ=env)
    assert (up.kind, up.api_key, up.base_url) == ("anthropic", "sk-ant-y", "https://api.anthropic.com")
    up = UpstreamSpec.for_model("gpt-4o", environ=env)
    assert (up.kind, up.responses_api) == ("openai", True) and "sk-x" not in repr(up)
    from rollouts.errors import EnvironmentNotReady

    with pytest.raises(EnvironmentNotReady, match="OPENAI_API_KEY"):
        UpstreamSpec.for_model("gpt-4o", environ={})


def test_gateway_usage_reaches_summaries_and_the_report(endpoint):
    """What the gateway metered is the run's usage: summarize rows and the HTML report show it
    like any agent's (a run refused for its budget has status ``limit``)."""
    from rollouts.report.html import render_html
    from rollouts.report.summary import summarize
    from tests.test_report import manifest, rec

    with _gateway(endpoint) as gw:
        g = gw.register_run("run-u", RunLimits(max_total_tokens=60))
        oa = _oa(g)
        oa.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.RateLimitError):
            oa.chat.completions.create(model="m", messages=[{"role": "user", "content": "word " * 50}])
        usage, hit = gw.usage("run-u"), gw.limit_hit("run-u")
    r = rec("hello", 0.0, agent="codex", model="gpt-4o", status="limit" if hit else "completed")
    r.usage = usage
    m = manifest([r])
    s = summarize(m)
    row = s["rows"][0]
    assert (row["prompt_tokens"], row["completion_tokens"], row["llm_calls"]) == (40, 12, 1)
    assert row["cost_usd"] == pytest.approx((40 * 2.5 + 12 * 10) / 1e6)
    html = render_html(s, m)
    assert "40/12" in html and "limit" in html


@pytest.mark.parametrize("protocol", ["responses", "messages"])
def test_agent_cannot_redirect_the_real_key(endpoint, protocol):
    """litellm reads keyword arguments such as base_url/api_base/custom_llm_provider from the
    same dict as the request: fields outside the protocol's API never reach it."""
    with ScriptedEndpoint(SCRIPT) as evil, _gateway(endpoint) as gw:
        g = gw.register_run("run-evil")
        hijack = {"api_base": evil.openai_base_url, "base_url": evil.openai_base_url,
                  "custom_llm_provider": "openai", "extra_headers": {"x-leak": "1"}, "api_key": "sk-mine",
                  "mock_response": "pwned"}
        if protocol == "responses":
            r = httpx.post(g.openai_base_url + "/responses", headers={"Authorization": f"Bearer {g.token}"},
                           json={"model": "m", "input": "hi", **hijack}, timeout=60)
        else:
            r = httpx.post(g.anthropic_base_url + "/v1/messages", headers={"x-api-key": g.token}, timeout=60,
                           json={"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
                                 **hijack})
        assert r.status_code == 200, r.text
        assert evil.requests == [] and len(endpoint.requests) == 1 and "pwned" not in r.text
        assert "x-leak" not in endpoint.requests[0].headers
        _upstream_saw_only_real_key(endpoint, g)
        assert gw.exchanges("run-evil")[0].dropped_fields == sorted(hijack)


# ---------------------------------------------------------------- provider-side tools and steering
_IMG_DATA = "data:image/png;base64,iVBORw0KGgo="
REFUSED = [  # (protocol, upstream kind, body fields, words the refusal names)
    ("chat", "openai", {"tools": [{"type": "web_search_preview"}]}, "web_search_preview"),
    ("chat", "anthropic", {"tools": [TOOLS_OPENAI[0], {"type": "web_search_20250305", "name": "web_search"}]},
     "tools[1]"),
    ("chat", "anthropic", {"web_search_options": {}}, "web_search_options"),
    ("chat", "openai", {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/x.png"}}]}]},
     "image_url"),
    ("chat", "openai", {"messages": [{"role": "user", "content": [
        {"type": "file", "file": {"file_id": "file-abc"}}]}]}, "file_id"),
    ("chat", "openai", {"messages": [{"role": "user", "content": [  # vLLM infers an untyped part's kind
        {"video_url": {"url": "http://127.0.0.1:9/v.mp4"}}]}]}, "video_url"),
    ("responses", "openai", {"tools": [{"type": "web_search"}]}, "'web_search'"),
    ("responses", "openai", {"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "file_search"),
    ("responses", "openai", {"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]},
     "code_interpreter"),
    ("responses", "anthropic", {"tools": [{"type": "mcp", "server_label": "x", "server_url": "http://127.0.0.1:9/mcp"}]},
     "'mcp'"),
    ("responses", "openai", {"tools": [{"type": "image_generation"}]}, "image_generation"),
    ("responses", "openai", {"tools": [{"type": "shell", "environment": {"type": "container_auto"}}]}, "'shell'"),
    ("responses", "openai", {"prompt": {"id": "pmpt_123"}}, "prompt"),
    ("responses", "openai", {"input": [{"role": "user", "content": [
        {"type": "input_file", "file_url": "https://example.invalid/a.pdf"}]}]}, "file_url"),
    ("messages", "anthropic", {"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]},
     "web_search_20250305"),
    ("messages", "anthropic", {"tools": [{"type": "web_fetch_20250910", "name": "web_fetch"}]}, "web_fetch"),
    ("messages", "openai", {"tools": [{"type": "code_execution_20250825", "name": "code_execution"}]},
     "code_execution"),
    ("messages", "anthropic", {"tools": [{"type": "mcp_toolset", "mcp_server_name": "x"}],
                               "mcp_servers": [{"type": "url", "url": "http://127.0.0.1:9/mcp", "name": "x"}]},
     "mcp_servers"),
    ("messages", "anthropic", {"tools": [{"type": "advisor_20260301", "name": "advisor", "model": "claude-opus-4-1"}]},
     "advisor"),
    ("messages", "anthropic", {"container": "container_011"}, "container"),
    ("messages", "anthropic", {"fallbacks": [{"model": "claude-opus-4-1"}]}, "fallbacks"),
    ("messages", "openai", {"messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "url", "url": "http://127.0.0.1:9/doc.pdf"}}]}]}, "source"),
    ("messages", "anthropic", {"messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "shot", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
            {"type": "image", "source": {"type": "file", "file_id": "file_1"}}]}]}]}, "'file'"),
    ("messages", "anthropic", {"metadata": {"user_id": "u", "model_info": {"api_base": "http://127.0.0.1:9"}}},
     "metadata"),
    ("responses", "openai", {"conversation": "conv_123"}, "conversation"),
    ("responses", "openai", {"previous_response_id": "resp_from_elsewhere"}, "previous_response_id"),
]


def _send(g, protocol: str, fields: dict):
    """The request through the real SDK of the protocol (extra fields via ``extra_body``)."""
    if protocol == "chat":
        msgs = fields.pop("messages", [{"role": "user", "content": "hi"}])
        return _oa(g).chat.completions.create(model="m", messages=msgs, extra_body=fields)
    if protocol == "responses":
        inp = fields.pop("input", "hi")
        return _oa(g).responses.create(model="m", input=inp, extra_body=fields)
    msgs = fields.pop("messages", [{"role": "user", "content": "hi"}])
    return _an(g).messages.create(model="m", max_tokens=16, messages=msgs, extra_body=fields)


@pytest.mark.parametrize("protocol,kind,fields,names", REFUSED,
                         ids=[f"{p}-{k}-{n}" for p, k, _, n in REFUSED])
def test_provider_side_tools_and_fetches_refused(endpoint, tmp_path, protocol, kind, fields, names):
    """Server-side tools, provider-fetched URLs and account files would let the agent reach past
    the sandbox through the provider: refused in the agent's protocol, logged, never forwarded."""
    log = tmp_path / "ex.jsonl"
    with _gateway(endpoint, kind=kind) as gw:
        g = gw.register_run("run-p", log_path=log)
        err = anthropic.BadRequestError if protocol == "messages" else openai.BadRequestError
        with pytest.raises(err) as ei:
            _send(g, protocol, json.loads(json.dumps(fields)))
        assert ei.value.status_code == 400 and names in str(ei.value) and "refused" in str(ei.value)
        assert ei.value.response.headers["x-should-retry"] == "false"
        body = ei.value.response.json()
        if protocol == "messages":
            assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        else:
            assert body["error"]["type"] == "invalid_request_error"
        assert endpoint.requests == [], "nothing reached the upstream"
        (ex,) = read_exchanges(log)
        assert (ex.status_code, ex.refused) == (400, "policy") and names in ex.error
        assert not gw.limit_hit("run-p") and gw.usage("run-p").calls == 0


def _chat_texts(body: dict) -> list[tuple[str, str]]:
    """(role, text) of a Chat request's messages (content as a string or text parts)."""
    out = []
    for m in body["messages"]:
        c = m.get("content")
        text = c if isinstance(c, str) else "".join(p.get("text", "") for p in c or [] if isinstance(p, dict))
        out.append((m["role"], text))
    return out


def test_previous_response_id_only_of_the_runs_own_responses(tmp_path):
    """Responses' conversation state: a run may continue from a response it received through the
    gateway — expanded by the gateway into the items it stands for, as the upstream is reached by
    translation — never from another run's (or anything else the account stored)."""
    with ScriptedEndpoint([Reply("one"), Reply("two"), Reply("three")], api_key=REAL_KEY) as endpoint, \
            _gateway(endpoint) as gw:
        a, b = gw.register_run("run-a"), gw.register_run("run-b")
        first = _oa(a).responses.create(model="m", input="hi", instructions="be brief")
        assert first.id and first.output_text
        events = list(_oa(a).responses.create(model="m", input="more", previous_response_id=first.id, stream=True))
        second = next(e.response for e in events if e.type == "response.completed")  # a stream's id chains too
        third = _oa(a).responses.create(model="m", input=[{"role": "user", "content": "last"}],
                                        previous_response_id=second.id)
        assert second.output_text == "two" and third.output_text and len(endpoint.requests) == 3
        sent = _chat_texts(endpoint.requests[2].body)  # what the upstream saw for the third request
        assert sent == [("user", "hi"), ("assistant", "one"), ("user", "more"), ("assistant", "two"),
                        ("user", "last")], sent  # the first request's instructions are not carried over
        assert gw.exchanges("run-a")[1].request["previous_response_id"] == first.id  # logged as sent
        seen = len(endpoint.requests)
        with pytest.raises(openai.BadRequestError) as ei:
            _oa(b).responses.create(model="m", input="steal", previous_response_id=first.id)
        assert "previous_response_id" in str(ei.value) and len(endpoint.requests) == seen
        (ex,) = gw.exchanges("run-b")
        assert (ex.status_code, ex.refused) == (400, "policy")


ALLOWED = [
    ("chat", "openai", {"tools": [TOOLS_OPENAI[0], {"type": "custom", "name": "apply_patch"}],
                        "messages": [{"role": "user", "content": [
                            {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": _IMG_DATA}}]}]}),
    ("responses", "openai", {"tools": TOOLS_RESPONSES}),
    ("messages", "anthropic", {"tools": [*TOOLS_ANTHROPIC, {"type": "bash_20250124", "name": "bash"},
                                         {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}],
                               "metadata": {"user_id": "u-1"}}),
    ("messages", "openai", {"tools": TOOLS_ANTHROPIC, "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "write_file",
                                           "input": {"image_url": "http://not-content.example/x", "file_id": "x"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}]}),
]


@pytest.mark.parametrize("protocol,kind,fields", ALLOWED, ids=[f"{p}-{k}" for p, k, _ in ALLOWED])
def test_agent_tools_and_inline_content_allowed(endpoint, protocol, kind, fields):
    """Function/custom tools, the client-executed Anthropic tools, data: images, and tool
    arguments that merely look like URLs go through."""
    with _gateway(endpoint, kind=kind) as gw:
        g = gw.register_run("run-ok")
        _send(g, protocol, json.loads(json.dumps(fields)))
        assert len(endpoint.requests) == 1 and gw.exchanges("run-ok")[0].refused is None


STEER = [("chat", "openai"), ("chat", "anthropic"), ("responses", "openai"), ("messages", "openai"),
         ("messages", "anthropic")]


@pytest.mark.parametrize("protocol,kind", STEER, ids=[f"{p}-{k}" for p, k in STEER])
def test_request_cannot_steer_destination_model_or_credentials(endpoint, protocol, kind):
    """Whatever model name, headers and query the agent sends, the configured model is called at
    the configured URL with the real key, and the agent's credential headers stay behind."""
    evil = ScriptedEndpoint(SCRIPT)
    with evil, _gateway(endpoint, kind=kind) as gw:
        g = gw.register_run("run-s")
        headers = {"OpenAI-Organization": "org-evil", "OpenAI-Project": "proj-evil", "X-Forwarded-Host": evil.url,
                   "anthropic-dangerous-direct-browser-access": "true", "X-Api-Base": evil.openai_base_url}
        query = {"api-version": "2099-01-01", "base_url": evil.openai_base_url, "beta": "true"}
        model = "ollama/llama3" if protocol == "chat" else "openai/gpt-4o"
        if protocol == "messages":
            an = anthropic.Anthropic(base_url=g.anthropic_base_url, api_key=g.token, max_retries=0,
                                     default_headers=headers, default_query=query)
            an.messages.create(model=model, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
        else:
            oa = openai.OpenAI(base_url=g.openai_base_url, api_key=g.token, max_retries=0, organization="org-evil",
                               default_headers=headers, default_query=query)
            if protocol == "chat":
                oa.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
            else:
                oa.responses.create(model=model, input="hi")
        assert evil.requests == []
        (sent,) = endpoint.requests
        upstream_model = "qwen-scripted" if kind == "openai" else "claude-sonnet-4-5"
        assert sent.body["model"] == upstream_model and sent.query == ""
        assert sent.path == ("/v1/chat/completions" if kind == "openai" else "/v1/messages")
        leaked = {k.lower() for k in headers} | {"openai-organization", "openai-project"}
        assert not leaked & set(sent.headers), sent.headers
        _upstream_saw_only_real_key(endpoint, g)
        assert gw.exchanges("run-s")[0].upstream_model == upstream_model


def test_paths_outside_the_routes_are_not_forwarded(endpoint):
    """Dot segments and encoded slashes are matched literally (no route), never joined to the
    upstream URL. Sent with http.client, which does not normalise the path."""
    import http.client

    with _gateway(endpoint) as gw:
        g = gw.register_run("run-path")
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        for path in ("/v1/../v1/chat/completions", "/v1/chat/completions/../../models", "//v1/chat/completions",
                     "/v1/chat/completions%2F..%2F..%2Fv1%2Fmessages", "/v1/./messages", "/chat/completions"):
            conn = http.client.HTTPConnection(gw.host, gw.port, timeout=10)
            conn.request("POST", path, body, {"Authorization": f"Bearer {g.token}",
                                              "Content-Type": "application/json"})
            assert conn.getresponse().status in (404, 405), path
            conn.close()
        assert endpoint.requests == [] and gw.exchanges("run-path") == []


def test_bind_peer_accepts_the_token_only_from_that_address(endpoint):
    with _gateway(endpoint) as gw:
        g = gw.register_run("run-b")
        gw.bind_peer("run-b", "10.213.7.2")  # the sandbox's address; this test calls from 127.0.0.1
        with pytest.raises(openai.AuthenticationError):
            _oa(g).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        gw.bind_peer("run-b", "127.0.0.1")
        assert _oa(g).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}]).choices
        with pytest.raises(KeyError):
            gw.bind_peer("no-such-run", "127.0.0.1")


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_passthrough_forwards_only_api_fields(endpoint, kind):
    """An OpenAI-/Anthropic-compatible upstream may be an aggregator or proxy that routes on body
    fields (OpenRouter: models/provider/plugins; a LiteLLM proxy: api_base/fallbacks/mock_response):
    on pass-through only the API's fields and known sampler options go upstream."""
    routing = {"models": ["openai/gpt-4o"], "provider": {"order": ["x"]}, "plugins": [{"id": "web"}],
               "route": "fallback", "api_base": "http://127.0.0.1:9", "base_url": "http://127.0.0.1:9",
               "api_key": "sk-mine", "user_config": {"model_list": []}, "mock_response": "pwned",
               "moderation": {"model": "omni-moderation-latest"}}
    with _gateway(endpoint, kind=kind) as gw:
        g = gw.register_run("run-f")
        if kind == "openai":
            _oa(g).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                           temperature=0.1, extra_body={**routing, "top_k": 20})
            kept = {"messages", "model", "temperature", "top_k"}
        else:
            _an(g).messages.create(model="m", max_tokens=16, messages=[{"role": "user", "content": "hi"}],
                                   extra_body={**routing, "output_config": {"effort": "low"}})
            kept = {"messages", "model", "max_tokens", "output_config"}
        (sent,) = endpoint.requests
        assert set(sent.body) == kept, sent.body
        assert gw.exchanges("run-f")[0].dropped_fields == sorted(routing)
