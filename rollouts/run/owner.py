"""Ownership: everything a rollout creates carries its owner — rollout id, harness pid, host and
the harness process's START TIME (psutil ``create_time``, so a reused pid is not taken for the
live owner). :func:`is_orphan` says whether a labelled thing is *provably* orphaned; the
start-of-run reaper and ``clean`` (:func:`reap_dead`) remove only those — never the work of a
live rollout, never something without an owner pid (an image build's container, another tool's)."""

from __future__ import annotations

import functools
import os
import socket

import psutil

from rollouts.sandbox.base import (
    LABEL_HOST,
    LABEL_PID,
    LABEL_PID_START,
    LABEL_ROLLOUT,
    LABEL_RUN,
    LABEL_TOOL,
    TOOL_NAME,
    SandboxBackend,
)

START_TOLERANCE_SEC = 1.0  # create_time is reported in 1/100 s; labels keep 2 decimals


def process_start(pid: int) -> float | None:
    """``create_time`` (epoch seconds) of process ``pid``, None if there is no such process."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:  # exists, owned by someone else: alive, start unknown
        return -1.0


@functools.cache
def _me() -> dict[str, str]:
    start = process_start(os.getpid())
    return {LABEL_PID: str(os.getpid()), LABEL_HOST: socket.gethostname(), LABEL_PID_START: f"{start:.2f}"}


def owner_labels(rollout_id: str | None = None) -> dict[str, str]:
    """Labels naming this harness process as the owner (plus the rollout when given)."""
    labels = {LABEL_TOOL: TOOL_NAME, **_me()}
    if os.getpid() != int(labels[LABEL_PID]):  # forked child: recompute
        _me.cache_clear()
        labels.update(_me())
    if rollout_id:
        labels[LABEL_ROLLOUT] = rollout_id
    return labels


def labels_for(rollout_id: str, run_id: str) -> dict[str, str]:
    """Labels of a run's sandboxes: the owner's plus the run id."""
    return {**owner_labels(rollout_id), LABEL_RUN: run_id}


def owner_alive(pid: int, start_label: str | None) -> bool:
    """Whether the process that wrote these labels still runs: ``pid`` exists and, when the
    start time was recorded, it is the same process (same start time)."""
    start = process_start(pid)
    if start is None:
        return False
    if start < 0 or not start_label:
        return True  # exists; cannot tell a reuse without the recorded start: assume alive
    try:
        return abs(start - float(start_label)) <= START_TOLERANCE_SEC
    except ValueError:
        return True


def is_orphan(labels: dict[str, str], all_hosts: bool = False) -> bool:
    """Provably orphaned: carries an owner pid and that owner is gone (on this host), or it was
    started from another host and ``all_hosts`` is given. Anything without an owner pid is not."""
    try:
        pid = int(labels.get(LABEL_PID, ""))
    except ValueError:
        return False
    if pid <= 0:
        return False
    if labels.get(LABEL_HOST, socket.gethostname()) != socket.gethostname():
        return all_hosts
    return not owner_alive(pid, labels.get(LABEL_PID_START))


def reap_dead(backend: SandboxBackend, dry_run: bool = False, all_hosts: bool = False) -> list[dict]:
    """Sandboxes of this tool that are provably orphaned (:func:`is_orphan`); removed unless
    ``dry_run``. Sandboxes started from other hosts (a shared Modal workspace) are left alone
    unless ``all_hosts``: their own harness, or their lifetime backstop, ends them."""
    dead = [c for c in backend.list_leftovers() if is_orphan(c.get("labels") or {}, all_hosts)]
    if not dry_run:
        for c in dead:
            backend.remove(c["id"])
    return dead
