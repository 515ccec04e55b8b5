"""On-disk layout: atomic writes, unique rollout ids, --latest resolution."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone

import pytest

from rollouts.errors import ConfigError
from rollouts.store import ROLLOUT_ID_RE, Store, atomic_write, atomic_write_json


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "a" / "m.json"
    atomic_write_json(p, {"x": 1})
    atomic_write_json(p, {"x": 2})
    assert json.loads(p.read_text()) == {"x": 2}
    assert [f.name for f in p.parent.iterdir()] == ["m.json"]


def test_atomic_write_failure_keeps_old_content(tmp_path):
    p = tmp_path / "m.json"
    atomic_write(p, "old")

    with pytest.raises(TypeError):
        atomic_write(p, 123)  # type: ignore[arg-type]
    assert p.read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["m.json"]


def test_rollout_ids_unique_in_same_second(tmp_path):
    store = Store(tmp_path)
    now = datetime(2025, 8, 24, 12, 34, 56, tzinfo=timezone.utc)
    ids: list[str] = []
    lock = threading.Lock()

    def take():
        rid = Store(tmp_path).reserve_rollout_id(now)
        with lock:
            ids.append(rid)

    threads = [threading.Thread(target=take) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(set(ids)) == 8
    assert all(ROLLOUT_ID_RE.match(i) for i in ids)
    assert min(ids) == "20250824__12-34-56"
    assert store.list_rollouts("none") == []


def test_resolve_latest_and_errors(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(ConfigError, match="no rollouts found"):
        store.resolve("bench", None, True)
    for rid in ("20250101__00-00-00", "20250102__00-00-00"):
        d = store.rollout_dir("bench", rid)
        d.mkdir(parents=True)
        (d / "manifest.json").write_text("{}")
    assert store.resolve("bench", None, True) == "20250102__00-00-00"
    assert store.resolve("bench", "20250101__00-00-00", False) == "20250101__00-00-00"
    with pytest.raises(ConfigError, match="no rollout"):
        store.resolve("bench", "20990101__00-00-00", False)
    with pytest.raises(ConfigError, match="invalid manifest"):
        store.load_manifest("bench", "20250102__00-00-00")


def test_models_written_as_json_dumps_would(tmp_path):
    """A model is serialised by pydantic-core (fast, straight to bytes): the same JSON as
    ``json.dumps(model_dump())`` (non-ASCII kept, NaN/Infinity as constants that read back)."""
    from rollouts.store import RunRecord, Usage

    rec = RunRecord(run_id="r-0", run_dir="/runs/r-0", task_dir="t", task_name="tâche ✓", entry_index=0,
                    rollout_index=0, agent="a", model="m", reward=1e-7, error="line\n\u2028\x00",
                    metrics={"nan": float("nan"), "inf": float("inf")}, usage=Usage(cost_usd=0.1 + 0.2))
    p = tmp_path / "r.json"
    atomic_write_json(p, rec)
    text = p.read_text(encoding="utf-8")
    assert "tâche ✓" in text and text.endswith("}\n") and "NaN" in text and "Infinity" in text
    expect = json.loads(json.dumps(rec.model_dump(mode="json"), indent=2, ensure_ascii=False))
    got = json.loads(text)
    assert str(got.pop("metrics")) == str(expect.pop("metrics")) and got == expect
    back = RunRecord.model_validate_json(p.read_bytes())
    assert back.usage.cost_usd == 0.1 + 0.2 and back.metrics["inf"] == float("inf")
