"""``eval-rollouts tasks show DIR`` / ``tasks convert DIR -o OUT``: how a task directory was read,
and the equivalent ``tb_meta.json`` task for users who want to edit one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click

from rollouts.errors import ConfigError
from rollouts.task import META_FILE, Task, load_task


def describe(task: Task) -> list[tuple[str, str]]:
    """(label, value) rows: format, image, timeouts, resources, network, grading mode, unsupported."""
    m = task.meta
    env = m.environment
    if env.image and env.dockerfile:
        image = f"{env.image} (prebuilt; else built from {env.dockerfile}, FROM as written)"
    elif env.image:
        image = f"{env.image} (prebuilt)"
    elif env.dockerfile:
        image = f"{env.dockerfile} ({'FROM as written' if env.dockerfile_from == 'as_written' else 'FROM ${BASE_IMAGE}'})"
    else:
        image = "the base image (rollouts-base)"
    if m.tests.mode == "fresh":
        grading = "fresh (a new sandbox from the image + the agent's diff)"
    elif m.tests.stop == "agent":
        grading = "shared (in the agent's sandbox; the agent's processes stopped, services it started kept)"
    else:
        grading = "shared (in the agent's sandbox; every process stopped: its PID namespace restarted)"
    res = m.resources
    rows = [
        ("name", task.name),
        ("format", task.format),
        ("directory", str(task.origin or task.dir) + (f" (read as {task.dir})" if task.origin else "")),
        ("digest", task.digest[:16]),
        ("image", image),
        ("build timeout", f"{env.build_timeout_sec:g} s"),
        ("workdir", f"{env.workdir} ({'state from the image' if env.state == 'image' else 'workspace copied in'})"),
        ("timeouts", f"agent {m.timeouts.agent_sec:g} s, verifier {m.timeouts.verifier_sec:g} s"),
        ("resources", f"{res.cpus:g} cpu, {res.memory_mb} MiB, {res.pids} pids"
         + (f", storage {res.storage_mb} MiB (not enforced)" if res.storage_mb else "")),
        ("network", f"agent {'on' if m.network else 'off'}, verifier "
         f"{'on' if (m.tests.network if m.tests.network is not None else m.network) else 'off'}"),
        ("grading", grading),
        ("verifier", f"{m.tests.command} (exit code {m.tests.exit_code}; reward from /logs/verifier)"),
        ("solution", m.solution or "none"),
    ]
    if m.artifacts:
        rows.append(("artifacts", ", ".join(a.source for a in m.artifacts)))
    if env.healthcheck:
        rows.append(("healthcheck", env.healthcheck.command))
    for k, label in ((env.env, "environment env"), (m.tests.env, "verifier env"), (m.solution_env, "solution env")):
        if k:
            rows.append((label, ", ".join(sorted(k))))
    if task.source:
        rows.append(("source", f"{task.source['git_url']}@{task.source['git_commit_id'][:12]}:{task.source['path']}"))
    for n in task.notes:
        rows.append(("mapped", n))
    rows.append(("supported", "yes" if task.supported else "NO"))
    for r in task.unsupported:
        rows.append(("unsupported", r))
    return rows


def meta_for_disk(task: Task) -> dict:
    """``task.meta`` as JSON with templated env entries put back as their ``${VAR}`` templates (the
    values resolved from the host, possibly keys, are never written out)."""
    from rollouts.formats.envtemplate import ENV_MAPS

    data = task.meta.model_dump(mode="json")
    for name, t in task.env_templates.items():
        parent = data
        path = ENV_MAPS[name][0]
        for k in path[:-1]:
            parent = parent[k]
        parent[path[-1]] = {**parent[path[-1]], **t}
    return data


def convert(task: Task, out: Path) -> Path:
    """Write ``task`` as a tb_meta.json task directory at ``out`` (created; must not exist or be
    empty): the task's files (with the format's generated files) + ``tb_meta.json``. Returns out.
    ConfigError if ``out`` is a non-empty directory or the task is unsupported."""
    if not task.supported:
        raise ConfigError("cannot convert an unsupported task: " + "; ".join(task.unsupported), file=str(task.dir))
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError("output exists and is not an empty directory", file=str(out))
    shutil.copytree(task.dir, out, symlinks=True, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".rollouts-view", META_FILE))
    (out / "instruction.md").write_text(task.instruction)
    data = meta_for_disk(task)
    data["instruction"] = "instruction.md"
    data["metadata"] = {**data.get("metadata", {}), "converted_from": task.format}
    (out / META_FILE).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    load_task(out)  # what we wrote must read back
    return out


@click.group("tasks")
def tasks_group() -> None:
    """Inspect and convert task directories (tb_meta.json, Harbor task.toml, Terminal-Bench task.yaml)."""


@tasks_group.command("show")
@click.argument("task_dir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def show_cmd(task_dir: str, as_json: bool) -> None:
    """How TASK_DIR is interpreted: format, image, timeouts, resources, grading mode, unsupported keys."""
    task = load_task(Path(task_dir))
    rows = describe(task)
    if as_json:
        click.echo(json.dumps({"format": task.format, "supported": task.supported, "unsupported": task.unsupported,
                               "notes": task.notes, "meta": meta_for_disk(task)}, indent=2))
        return
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        click.echo(f"{k:<{width}}  {v}")


@tasks_group.command("convert")
@click.argument("task_dir", type=click.Path(file_okay=False))
@click.option("-o", "--output", required=True, help="New directory for the tb_meta.json task.")
def convert_cmd(task_dir: str, output: str) -> None:
    """Write the tb_meta.json task equivalent to TASK_DIR (any format) into OUTPUT."""
    task = load_task(Path(task_dir))
    out = convert(task, Path(output))
    click.echo(f"wrote {out / META_FILE} ({task.format} → tb_meta)")
