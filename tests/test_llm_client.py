"""ModelClient against a real scripted OpenAI-compatible HTTP server (no mocks of openai)."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rollouts.errors import ContextOverflow, DeadlineExceeded, ModelError
from rollouts.llm.client import ModelClient, ModelRetriesExhausted, Usage
from rollouts.llm.pricing import cost_usd, lookup_price
from rollouts.redact import redact, secret_values

MODEL = "gpt-4o-mini"


def completion(text: str = "hello", prompt: int = 1000, completion_tokens: int = 500, usage: bool = True):
    body = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
    }
    if usage:
        body["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
        }
    return (200, {}, body)


def error(status: int, message: str, code: str | None = None, headers: dict | None = None):
    return (status, headers or {}, {"error": {"message": message, "type": "test_error", "code": code}})


DROP = "drop"
SLOW = "slow"


class ScriptedServer:
    """Serves scripted responses to POST /v1/chat/completions, one per request, in order."""

    def __init__(self) -> None:
        self.script: list = []
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with outer.lock:
                    outer.requests.append(
                        {
                            "t": time.monotonic(),
                            "path": self.path,
                            "auth": self.headers.get("Authorization"),
                            "body": body,
                        }
                    )
                    action = outer.script.pop(0) if outer.script else completion()
                if isinstance(action, tuple) and action[0] == SLOW:  # (SLOW, seconds, then)
                    time.sleep(action[1])
                    action = action[2]
                if action == DROP:
                    self.close_connection = True
                    self.connection.close()
                    return
                status, headers, payload = action
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (deadline tests)
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    s = ScriptedServer()
    yield s
    s.close()


@pytest.fixture
def key() -> str:
    return f"sk-test-{secrets.token_hex(16)}"


def make_client(server: ScriptedServer, key: str, **kw) -> ModelClient:
    kw.setdefault("backoff_initial", 0.05)
    kw.setdefault("backoff_max", 0.2)
    return ModelClient(MODEL, base_url=server.base_url, api_key=key, **kw)


MESSAGES = [{"role": "user", "content": "hi"}]


def test_success_and_usage(server, key):
    server.script = [completion("a", 1000, 500), completion("b", 10, 5, usage=False)]
    client = make_client(server, key)
    r = client.chat(MESSAGES, max_tokens=7, stop=["\n"])
    assert (r.text, r.prompt_tokens, r.completion_tokens, r.finish_reason) == ("a", 1000, 500, "stop")
    assert r.cost_usd == pytest.approx(0.00045)
    # no usage in the response: 0 tokens but still a call
    r2 = client.chat(MESSAGES)
    assert (r2.text, r2.prompt_tokens, r2.completion_tokens) == ("b", 0, 0)
    assert client.usage.to_dict() == {
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "calls": 2,
        "cost_usd": pytest.approx(0.00045),
    }
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["auth"] == f"Bearer {key}"
    assert req["body"]["max_tokens"] == 7 and req["body"]["stop"] == ["\n"]
    assert req["body"]["temperature"] == 0.0


def test_429_honours_retry_after(server, key):
    server.script = [error(429, "slow down", headers={"Retry-After": "1"}), completion("ok")]
    client = make_client(server, key)
    r = client.chat(MESSAGES)
    assert r.text == "ok"
    assert len(server.requests) == 2
    gap = server.requests[1]["t"] - server.requests[0]["t"]
    assert 0.95 <= gap < 3.0, gap
    assert r.duration_sec >= 0.95
    assert client.usage.calls == 1 and client.retries == 1
    assert client.usage.prompt_tokens == 1000


def test_500_then_200(server, key):
    server.script = [error(500, "boom"), completion("ok")]
    client = make_client(server, key)
    assert client.chat(MESSAGES).text == "ok"
    assert len(server.requests) == 2
    assert client.usage.calls == 1 and client.retries == 1


def test_dropped_connection_then_200(server, key):
    server.script = [DROP, completion("ok")]
    client = make_client(server, key)
    assert client.chat(MESSAGES).text == "ok"
    assert len(server.requests) == 2
    assert client.usage.calls == 1


def test_401_fails_at_once_without_leaking_key(server, key):
    # the server echoes the key, as some proxies do; it must still not reach the message
    server.script = [error(401, f"Incorrect API key provided: {key}", code="invalid_api_key")] * 3
    client = make_client(server, key)
    with pytest.raises(ModelError) as info:
        client.chat(MESSAGES)
    text = str(info.value)
    assert len(server.requests) == 1
    assert key not in text and key[8:] not in text
    assert "401" in text and MODEL in text and "127.0.0.1" in text
    assert client.usage.calls == 0


def test_404_model_not_found(server, key):
    server.script = [error(404, f"The model `{MODEL}` does not exist", code="model_not_found")]
    client = make_client(server, key)
    with pytest.raises(ModelError) as info:
        client.chat(MESSAGES)
    assert not isinstance(info.value, ModelRetriesExhausted)
    assert "404" in str(info.value) and key not in str(info.value)
    assert len(server.requests) == 1


def test_400_bad_request(server, key):
    server.script = [error(400, "context too long")]
    with pytest.raises(ModelError, match="400"):
        make_client(server, key).chat(MESSAGES)
    assert len(server.requests) == 1


def test_retries_exhausted(server, key):
    server.script = [error(503, "overloaded")] * 10
    client = make_client(server, key, max_retries=3)
    with pytest.raises(ModelRetriesExhausted) as info:
        client.chat(MESSAGES)
    assert len(server.requests) == 3
    assert "503" in str(info.value) and key not in str(info.value)
    assert client.usage.calls == 0


def test_usage_thread_safe(server, key):
    client = make_client(server, key)
    threads = [threading.Thread(target=lambda: [client.chat(MESSAGES) for _ in range(5)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.usage.calls == 20
    assert client.usage.prompt_tokens == 20_000 and client.usage.completion_tokens == 10_000


def test_reasoning_models_get_max_completion_tokens(server, key):
    client = ModelClient("gpt-5-mini", base_url=server.base_url, api_key=key)
    client.chat(MESSAGES, max_tokens=9)
    body = server.requests[0]["body"]
    assert body["max_completion_tokens"] == 9
    assert "max_tokens" not in body and "temperature" not in body


# ------------------------------------------------------------------ Usage / pricing / redact


def test_usage_add_none_is_contagious():
    u = Usage()
    u.add(Usage(1, 2, 1, 0.5))
    assert u.to_dict() == {"prompt_tokens": 1, "completion_tokens": 2, "calls": 1, "cost_usd": 0.5}
    u.add(Usage(3, 4, 1, None))
    assert (u.prompt_tokens, u.completion_tokens, u.calls, u.cost_usd) == (4, 6, 2, None)


def test_pricing_known_values():
    assert cost_usd("gpt-4o", 1_000_000, 1_000_000) == pytest.approx(12.50)
    assert cost_usd("gpt-4o-2024-08-06", 1_000_000, 0) == pytest.approx(2.50)
    assert cost_usd("gpt-4o-mini-2024-07-18", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert cost_usd("openai/gpt-4.1", 2_000_000, 500_000) == pytest.approx(8.0)
    assert cost_usd("gpt-4.1-mini", 1_000_000, 1_000_000) == pytest.approx(2.0)
    assert cost_usd("claude-sonnet-4-20250514", 1000, 1000) == pytest.approx(0.018)
    assert cost_usd("o3-mini", 1_000_000, 0) == pytest.approx(1.10)
    assert cost_usd("local", 10**6, 10**6) == 0.0


def test_pricing_unknown_is_none_not_zero():
    assert cost_usd("my-finetune", 10, 10) is None
    assert cost_usd("gpt-4", 10, 10) is None  # "gpt-4" is not "gpt-4o" / "gpt-4.1"
    assert lookup_price("gpt-4ox") is None  # prefix must end at a name boundary


def test_pricing_overrides():
    assert cost_usd("my-finetune", 1_000_000, 1_000_000, {"my-finetune": (1.0, 2.0)}) == 3.0
    assert cost_usd("gpt-4o-2024-11-20", 1_000_000, 0, {"gpt-4o": {"input": 5, "output": 20}}) == 5.0


def test_secret_values_and_redact():
    env = {
        "OPENAI_API_KEY": "sk-abcdef123",
        "github_token": "ghp_123456",
        "DB_PASSWORD": "short",
        "MyAuthHeader": "Bearer xyz",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI",
        "HOME": "/root/home",
        "PATH": "/usr/bin:/bin",
    }
    vals = secret_values(env)
    assert set(vals) == {"sk-abcdef123", "ghp_123456", "Bearer xyz", "wJalrXUtnFEMI"}
    text = "key=sk-abcdef123 tok=ghp_123456 pw=short home=/root/home"
    assert redact(text, vals) == "key=*** tok=*** pw=short home=/root/home"
    # longest first: a secret containing another is fully hidden
    assert redact("abcdefgh", ["abcdef", "abcdefgh"]) == "***"
    assert redact("x", ["", None]) == "x"  # type: ignore[list-item]


# ------------------------------------------------------------------ deadlines and typed errors
def test_deadline_bounds_retries_and_backoff(server, key):
    """A run's deadline ends the retrying: 503s forever with 0.4 s back-offs and 1.2 s left must
    end in ~1.2 s as DeadlineExceeded, not after max_wait as a model error."""
    server.script = [error(503, "overloaded")] * 100
    client = make_client(server, key, max_retries=50, backoff_initial=0.4, backoff_max=0.4)
    client.deadline = time.monotonic() + 1.2
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        client.chat(MESSAGES, timeout=600)
    assert time.monotonic() - t0 < 2.5 and 2 <= len(server.requests) <= 5


def test_deadline_clips_a_slow_attempt(server, key):
    """A server that answers after 5 s (queueing for a model slot looks the same) with 1 s left."""
    server.script = [(SLOW, 5, completion())] * 3
    client = make_client(server, key)
    client.deadline = time.monotonic() + 1.0
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="deadline"):
        client.chat(MESSAGES, timeout=600)
    assert time.monotonic() - t0 < 2.5


def test_past_deadline_sends_nothing(server, key):
    client = make_client(server, key, deadline=time.monotonic() - 1)
    with pytest.raises(DeadlineExceeded):
        client.chat(MESSAGES)
    assert server.requests == []


@pytest.mark.parametrize("payload,overflow", [
    (error(400, "This model's maximum context length is 8192 tokens", "context_length_exceeded"), True),
    ((400, {}, {"error": {"code": 400, "type": "exceed_context_size_error",
                          "message": "the request exceeds the available context size, try increasing it"}}), True),
    (error(400, "prompt is too long: 9000 tokens > 8192 maximum"), True),
    (error(400, "invalid value for temperature"), False),
    (error(413, "maximum context length exceeded"), False),  # not a 400: not this error
])
def test_context_overflow_is_typed(server, key, payload, overflow):
    server.script = [payload]
    with pytest.raises(ModelError) as info:
        make_client(server, key).chat(MESSAGES)
    assert isinstance(info.value, ContextOverflow) is overflow


def test_placeholder_keys_and_short_values_are_never_redacted(server):
    """The local client's placeholder key ("local") is no secret: an error keeps the word."""
    from rollouts.workspace import redact_bytes

    server.script = [error(404, "model not found")]
    client = ModelClient("local", base_url=server.base_url, api_key="local")
    with pytest.raises(ModelError) as info:
        client.chat(MESSAGES)
    assert "model 'local' at 127.0.0.1:" in str(info.value) and "***" not in str(info.value)
    assert redact("local model, key abc", ["local", "abc", "", "EMPTY"]) == "local model, key abc"
    assert redact("token sk-real-123456 here", ["sk-real-123456"]) == "token *** here"
    assert redact_bytes(b"local abc sk-real-123456", ["local", "abc", "sk-real-123456"]) == b"local abc ***"
    assert secret_values({"OPENAI_API_KEY": "local", "X_TOKEN": "short", "Y_SECRET": "longenough"}) == ["longenough"]
