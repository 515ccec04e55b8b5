"""Quick-run selection: ``run``'s ``--parallel``, ``--rollouts``, ``--max-tasks``, ``--task``,
``--agent``, ``--model`` narrow a loaded benchmark config for one run only (the TOML is not
touched) and are recorded in the manifest (``Manifest.selection``) so ``--resume`` re-applies them.

Order (documented in the README): the config's task entries after every expansion (``[[tasks]]``
and, where present, ``[[datasets]]``) → keep entries whose task name matches any ``--task`` glob
(:func:`fnmatch.fnmatchcase`), whose agent is one of ``--agent`` and whose model is one of
``--model`` → the first ``--max-tasks`` of those → every kept entry runs ``--rollouts`` times →
at most ``--parallel`` at once. Entries keep their config index, so the manifest's
``tasks[].index`` still points into the config.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rollouts.errors import ConfigError


class Selection(BaseModel):
    """What the quick-run flags asked for; ``None`` / empty = not given (the config decides)."""

    model_config = ConfigDict(extra="forbid")

    parallel: int | None = Field(None, ge=1, le=1000)
    rollouts: int | None = Field(None, ge=1, le=10000)
    max_tasks: int | None = Field(None, ge=1)
    tasks: list[str] = Field(default_factory=list)  # glob patterns on the task name
    agents: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        """True when no flag was given (the config runs as written)."""
        return self == Selection()

    def as_record(self) -> dict[str, Any]:
        """The flags that were given, for the manifest (``None``/empty ones left out)."""
        return self.model_dump(exclude_defaults=True)


def apply_selection(cfg, sel: Selection):
    """A copy of ``cfg`` (a :class:`rollouts.config.BenchmarkConfig`) narrowed by ``sel``.

    Raises ConfigError (exit 2) naming the flag when a filter leaves no entry, so a typo in
    ``--task`` never starts an empty rollout."""
    if sel.empty:
        return cfg
    entries = list(cfg.entries)
    if sel.tasks:
        entries = [e for e in entries if any(fnmatchcase(e.task.name, p) for p in sel.tasks)]
        _nonempty(entries, cfg, "--task", sel.tasks, sorted({e.task.name for e in cfg.entries}))
    if sel.agents:
        entries = [e for e in entries if e.agent in sel.agents]
        _nonempty(entries, cfg, "--agent", sel.agents, sorted({e.agent for e in cfg.entries}))
    if sel.models:
        entries = [e for e in entries if e.model in sel.models]
        _nonempty(entries, cfg, "--model", sel.models, sorted({e.model for e in cfg.entries}))
    if sel.max_tasks is not None:
        entries = entries[: sel.max_tasks]
    if sel.rollouts is not None:
        entries = [e.model_copy(update={"rollouts": sel.rollouts}) for e in entries]
    return cfg.model_copy(update={
        "entries": entries,
        "parallel": sel.parallel if sel.parallel is not None else cfg.parallel,
    })


def _nonempty(entries: list, cfg, flag: str, asked: list[str], have: list[str]) -> None:
    if not entries:
        shown = ", ".join(have[:20]) + (" …" if len(have) > 20 else "")
        raise ConfigError(
            f"{flag} {' '.join(asked)}: no [[tasks]] entry left after this filter (have: {shown})",
            file=str(cfg.path),
        )


def planned_runs(cfg) -> list[dict[str, Any]]:
    """The runs a config expands to, in run order: ``[{i, entry, where, task, agent, model,
    rollout, backend}]`` (what ``run --dry-run`` prints; ``i`` is the run's index in the rollout,
    ``where`` the config entry it came from: ``tasks[i]`` or ``datasets[i]``)."""
    out, i = [], 0
    for e in cfg.entries:
        for r in range(e.rollouts):
            out.append({"i": i, "entry": e.index, "where": e.where or f"tasks[{e.index}]",
                        "task": e.task.name, "agent": e.agent, "model": e.model, "rollout": r,
                        "backend": e.backend})
            i += 1
    return out


def record_selection(store, manifest, sel: Selection) -> None:
    """Write the flags into ``manifest.selection`` (one atomic manifest write; before any run)."""
    if sel.empty:
        return
    manifest.selection = sel.as_record()
    store.write_manifest(manifest)


def selection_from_manifest(manifest) -> Selection:
    """The selection a rollout was started with (``--resume`` re-applies it)."""
    return Selection.model_validate(manifest.selection or {})


def print_dry_run(cfg, sel: Selection, console) -> None:
    """``run --dry-run``: one line per planned run, then the totals (``console`` None = JSON on
    stdout: ``{name, parallel, selection, runs: [...]}``). Starts nothing, touches no file."""
    runs = planned_runs(cfg)
    if console is None:
        import json

        import click

        click.echo(json.dumps({"name": cfg.name, "parallel": cfg.parallel, "selection": sel.as_record(),
                               "runs": runs}, indent=2))
        return
    for r in runs:
        console.print(f"run {r['i']:>4}  task={r['task']}  agent={r['agent']}  model={r['model']}  "
                      f"rollout={r['rollout']}  backend={r['backend']}  ({r['where']})", markup=False)
    given = " ".join(f"{k}={v}" for k, v in sel.as_record().items())
    console.print(f"dry run: {len(runs)} run(s) of {len(cfg.entries)} entr{'y' if len(cfg.entries) == 1 else 'ies'}, "
                  f"parallel={cfg.parallel}" + (f" (selection: {given})" if given else "")
                  + "; nothing was started", markup=False)
