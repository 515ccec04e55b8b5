"""Read-only access to the data directory for the viewer: manifests (cached by file version),
rollout lists, summaries (the same :func:`rollouts.report.summary.summarize` numbers as the CLI),
filtered and paginated run lists, and the files of one run.

Nothing here writes to the data directory. A manifest is parsed once per (mtime, size) of its
file, so a 10,000-run rollout costs one parse when it changes, and lists never open a run folder
(trajectories are read only by the run page, one at a time).
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from rollouts.errors import ConfigError
from rollouts.report.compare import compare_manifests  # imported at start-up (scipy: ~1 s), not on
from rollouts.report.summary import summarize  # the first request
from rollouts.store import ROLLOUT_ID_RE, Manifest, RunRecord, Store

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
RUN_ID_RE = re.compile(r"^(\d{8}__\d{2}-\d{2}-\d{2})-(\d{1,7})$")
#: Bytes of a text file shown inline (logs: the tail; diffs: the head); the rest via /raw.
MAX_INLINE_BYTES = 512 * 1024
MAX_JSON_BYTES = 64 * 1024 * 1024


class NotFound(Exception):
    """A benchmark, rollout, run or file that does not exist (HTTP 404)."""


@dataclass
class RolloutInfo:
    """One line of the rollouts page."""

    name: str
    rollout_id: str
    status: str  # manifest status; "interrupted" when it says running but its harness is gone
    runs: int
    counts: dict[str, int]
    overall: list[dict[str, Any]]  # summarize()["overall"]: per arm macro mean + CI, cost
    started_at: str
    finished_at: str | None
    cost_usd: float | None
    done: int  # runs in a final state
    error: str | None = None  # the manifest could not be read (status "unreadable")


class Catalog:
    """Cached, read-only view of a :class:`rollouts.store.Store` (thread-safe)."""

    #: A manifest that changed is re-read at most this often (seconds): a running rollout rewrites
    #: it every 0.5 s, and a 10,000-run summary costs ~0.4 s of CPU on an idle 2-core machine.
    MIN_AGE_SEC = 2.0

    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}
        self._cache: dict[tuple, tuple[tuple, float, Any]] = {}
        self._refreshing: set[tuple] = set()

    # ------------------------------------------------------------------ caching
    def _cached(self, key: tuple, version: tuple, make: Callable[[], Any], stale_ok: bool = False) -> Any:
        """``make()`` once per ``version`` of ``key`` (one computation at a time per key: a second
        request waits for the first instead of repeating it); a value younger than
        :data:`MIN_AGE_SEC` is served even if the version moved on. ``stale_ok``: when the version
        moved on, serve the previous value now and compute the new one in a background thread
        (the rollout list: a running rollout's line lags by one refresh, the page never waits)."""
        with self._lock:
            klock = self._key_locks.setdefault(key, threading.Lock())
            hit = self._cache.get(key)
            if hit is not None and (hit[0] == version or time.monotonic() - hit[1] < self.MIN_AGE_SEC):
                return hit[2]
            if hit is not None and stale_ok:
                if key not in self._refreshing:
                    self._refreshing.add(key)
                    threading.Thread(target=self._refresh, args=(key, klock, version, make), daemon=True,
                                     name="view-refresh").start()
                return hit[2]
        with klock:
            with self._lock:
                hit = self._cache.get(key)
            if hit is not None and hit[0] == version:  # computed by another request meanwhile
                return hit[2]
            value = make()
            with self._lock:
                self._cache[key] = (version, time.monotonic(), value)
            return value

    def _refresh(self, key: tuple, klock: threading.Lock, version: tuple, make: Callable[[], Any]) -> None:
        try:
            with klock:
                value = make()
                with self._lock:
                    self._cache[key] = (version, time.monotonic(), value)
        except (ConfigError, NotFound):
            with self._lock:  # broken or gone now: the next request computes it and reports why
                self._cache.pop(key, None)
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def refreshing(self) -> int:
        """How many background refreshes are in progress (the bench waits for 0)."""
        with self._lock:
            return len(self._refreshing)

    def warm(self) -> None:
        """Read and summarise every rollout now (the server calls this in a background thread at
        start-up, so the first page finds them cached)."""
        self.rollouts()

    def _manifest_path(self, name: str, rid: str) -> Path:
        if not NAME_RE.match(name) or not ROLLOUT_ID_RE.match(rid):
            raise NotFound(f"no rollout {name}/{rid}")
        p = self.store.rollout_dir(name, rid) / "manifest.json"
        if not p.is_file():
            raise NotFound(f"no rollout {name}/{rid}")
        return p

    @staticmethod
    def _version(p: Path) -> tuple:
        st = p.stat()
        return (st.st_mtime_ns, st.st_size)

    def manifest(self, name: str, rid: str) -> Manifest:
        """The validated manifest of ``name/rid`` (NotFound / ConfigError if missing/invalid)."""
        p = self._manifest_path(name, rid)
        return self._cached(("m", name, rid), self._version(p), lambda: self.store.load_manifest(name, rid))

    def summary(self, name: str, rid: str) -> dict[str, Any]:
        """``summarize()`` of the rollout (the dict ``summarize --json`` prints), cached."""
        p = self._manifest_path(name, rid)
        return self._cached(("s", name, rid), self._version(p), lambda: summarize(self.manifest(name, rid)))

    def compare(self, a: tuple[str, str], b: tuple[str, str], match: str) -> dict[str, Any]:
        """``compare_manifests(A, B)``: the dict ``compare --json`` prints, cached."""
        version = (self._version(self._manifest_path(*a)), self._version(self._manifest_path(*b)))
        return self._cached(("c", a, b, match), version,
                            lambda: compare_manifests(self.manifest(*a), self.manifest(*b), match=match))

    # ------------------------------------------------------------------ lists
    def rollouts(self, per_benchmark: int | None = 20, only: str | None = None
                 ) -> tuple[dict[str, list[RolloutInfo]], dict[str, int]]:
        """(benchmark name -> its newest ``per_benchmark`` rollouts, newest first; benchmark ->
        how many rollouts it has). Benchmarks by their newest rollout; ``only``: one benchmark
        (with ``per_benchmark=None``: all its rollouts). Older rollouts are never read for the
        list, so a year of nightlies costs 20 manifests per benchmark, not 365."""
        out: dict[str, list[RolloutInfo]] = {}
        totals: dict[str, int] = {}
        for name in self.store.list_benchmarks():
            if not NAME_RE.match(name) or (only and name != only):
                continue
            ids = list(reversed(self.store.list_rollouts(name)))
            totals[name] = len(ids)
            infos = []
            for rid in ids[:per_benchmark] if per_benchmark else ids:
                try:
                    infos.append(self.rollout_info(name, rid))
                except NotFound:
                    continue  # removed since it was listed
                except ConfigError as e:  # broken manifest: listed with the reason
                    infos.append(RolloutInfo(name=name, rollout_id=rid, status="unreadable", runs=0, counts={},
                                             overall=[], started_at="", finished_at=None, cost_usd=None, done=0,
                                             error=str(e)))
            if infos:
                out[name] = infos
        return dict(sorted(out.items(), key=lambda kv: kv[1][0].rollout_id, reverse=True)), totals

    def rollout_info(self, name: str, rid: str) -> RolloutInfo:
        """The list line of ``name/rid`` (cached; after the manifest changed the previous line is
        served while the new one is computed). ConfigError if the manifest is invalid, NotFound if
        it is gone. The status is re-checked on every call (a harness may have died since)."""
        p = self._manifest_path(name, rid)
        info, m = self._cached(("i", name, rid), self._version(p), lambda: self._info(name, rid), stale_ok=True)
        return dataclasses.replace(info, status=live_status(m))

    def _info(self, name: str, rid: str) -> tuple[RolloutInfo, Manifest]:
        m = self.manifest(name, rid)
        s = self.summary(name, rid)
        costs = [o["cost_usd"] for o in s["overall"]]
        return RolloutInfo(
            name=name, rollout_id=rid, status=m.status, runs=len(m.results), counts=s["counts"],
            overall=s["overall"], started_at=m.started_at, finished_at=m.finished_at,
            cost_usd=None if any(c is None for c in costs) else round(sum(costs), 6),
            done=sum(r.status not in ("pending", "running") for r in m.results),
        ), m

    def runs(self, name: str, rid: str, *, status: str = "", error_kind: str = "", agent: str = "",
             model: str = "", q: str = "", task: str = "", page: int = 1, per_page: int = 100
             ) -> tuple[list[RunRecord], int]:
        """Runs of a rollout after the filters (``q``: substring of the task name, case-insensitive;
        ``task``: exact task name), one page of them, and the number that matched."""
        m = self.manifest(name, rid)
        ql = q.lower()
        rows = [
            r for r in m.results
            if (not status or r.status == status) and (not error_kind or r.error_kind == error_kind)
            and (not agent or r.agent == agent) and (not model or r.model == model)
            and (not ql or ql in r.task_name.lower()) and (not task or r.task_name == task)
        ]
        start = (max(page, 1) - 1) * per_page
        return rows[start:start + per_page], len(rows)

    # ------------------------------------------------------------------ one run
    def find_run(self, run_id: str) -> tuple[str, Manifest, RunRecord]:
        """(benchmark name, manifest, record) of ``run_id`` (``<rollout id>-<i>``); NotFound."""
        mm = RUN_ID_RE.match(run_id)
        if not mm:
            raise NotFound(f"no run {run_id}")
        rid, i = mm.group(1), int(mm.group(2))
        for name in self.store.list_benchmarks():
            if NAME_RE.match(name) and (self.store.rollout_dir(name, rid) / "manifest.json").is_file():
                m = self.manifest(name, rid)
                if i < len(m.results) and m.results[i].run_id == run_id:
                    return name, m, m.results[i]
                for r in m.results:
                    if r.run_id == run_id:
                        return name, m, r
        raise NotFound(f"no run {run_id}")

    def run_dir(self, run_id: str, attempt: int | None = None) -> Path:
        """The run's folder (or ``attempts/<n>/`` of it); only ever under ``data/runs``."""
        if not RUN_ID_RE.match(run_id):
            raise NotFound(f"no run {run_id}")
        d = self.store.run_dir(run_id)
        if attempt is not None:
            d = d / "attempts" / str(int(attempt))
        return d

    def safe_file(self, run_id: str, rel: str) -> Path:
        """``rel`` inside the run folder, refusing anything that resolves outside it (``..``,
        absolute paths, symlinks planted by an agent). NotFound if absent."""
        base = self.store.run_dir(run_id).resolve() if RUN_ID_RE.match(run_id) else None
        if base is None or "\0" in rel:
            raise NotFound(rel)
        p = (base / rel).resolve()
        if not p.is_relative_to(base) or not p.is_file():
            raise NotFound(rel)
        return p


def warm_up() -> None:
    """Pay the one-time costs of the statistics at start-up, not on the first page: the summary's
    t quantiles import ``scipy.stats`` lazily (seconds on a busy machine)."""
    import scipy.stats  # noqa: F401

    from rollouts.report.stats import clustered_mean_ci, macro_stats

    macro_stats([0.25, 0.75])
    clustered_mean_ci([0.0, 1.0, 1.0], ["a", "b", "b"])


def live_status(m: Manifest) -> str:
    """The manifest's status, or "interrupted" when it says running but its harness process on
    this host is gone (killed; ``run --resume`` continues it)."""
    if m.status == "running" and m.host == socket.gethostname() and not psutil.pid_exists(m.pid):
        return "interrupted"
    return m.status


def read_text(p: Path, limit: int = MAX_INLINE_BYTES, tail: bool = False) -> tuple[str | None, int]:
    """(text, bytes left out) of a file: its head, or its ``tail``, at most ``limit`` bytes,
    decoded as UTF-8 with replacement; (None, 0) if the file does not exist."""
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            if size > limit and tail:
                f.seek(size - limit)
            data = f.read(limit)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None, 0
    return data.decode("utf-8", errors="replace"), max(0, size - limit)


def read_json(p: Path) -> Any:
    """A JSON file (None if absent); a broken or oversized file gives ``{"_unreadable": why}``
    so the page says so instead of failing."""
    try:
        if p.stat().st_size > MAX_JSON_BYTES:
            return {"_unreadable": f"{p.name} is larger than {MAX_JSON_BYTES} bytes (see the raw file)"}
        return json.loads(p.read_bytes())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (ValueError, UnicodeDecodeError) as e:
        return {"_unreadable": f"{p.name} is not valid JSON: {e}"}


def list_files(d: Path, limit: int = 500) -> list[tuple[str, int]]:
    """(relative path, size in bytes) of the files under ``d`` (not following symlinks), sorted."""
    if not d.is_dir():
        return []
    out = []
    for p in sorted(d.rglob("*")):
        if len(out) >= limit:
            break
        if p.is_file() and not p.is_symlink():
            out.append((str(p.relative_to(d)), p.stat().st_size))
    return out
