"""``eval-rollouts check CONFIG``: what the config expands to, which tasks cannot run here and why,
and which base images are missing — all before anything runs."""

from __future__ import annotations

from collections.abc import Callable

from rollouts.config import BenchmarkConfig
from rollouts.errors import EXIT_CONFIG, EXIT_ENV, EnvironmentNotReady
from rollouts.grading.integrity import task_label


def missing_images_lines(cfg: BenchmarkConfig) -> list[str]:
    """One line per base image the config's tasks need that is not present locally and cannot be
    pulled (``pull_images = false``), naming the tasks; empty when nothing is missing, Docker is
    not the backend, or no task builds from a public image. EnvironmentNotReady if Docker is down."""
    from rollouts.image_build import missing_base_images

    tasks = [e.task for e in cfg.entries if e.backend == "docker"]
    if not tasks or cfg.pull_images:
        return []
    from rollouts.sandbox.docker_engine import shared_client

    missing = missing_base_images(shared_client(), tasks, cfg.images)
    return [f"missing image {ref} (no registry; map it in [images]): needed by {', '.join(names)}"
            for ref, names in sorted(missing.items())]


def cpu_notes(cfg: BenchmarkConfig) -> list[str]:
    """One note per task asking for more CPUs than the Docker engine has (it runs capped)."""
    entries = [e for e in cfg.entries if e.backend == "docker"]
    if not entries:
        return []
    from rollouts.sandbox.docker_engine import engine_cpus, shared_client

    have = engine_cpus(shared_client())
    seen: dict[str, float] = {e.task.name: e.resources.cpus for e in entries if e.resources.cpus > have}
    return [f"note: {name} asks for {cpus:g} CPUs; the engine has {have:g}: it runs with {have:g}"
            for name, cpus in seen.items()]


def check_report(cfg: BenchmarkConfig, config: str, skip_unsupported: bool, echo: Callable[..., None]) -> int:
    """Print the expansion, entries, unsupported tasks and missing images; return the exit code
    (0 ok, 2 unsupported tasks without ``skip_unsupported`` or grading a backend cannot do,
    3 missing images)."""
    for x in cfg.expansions:
        echo(f"dataset {x['where']} {x['path']}: {len(x['tasks'])} task(s) "
             f"({x['total']} found, {x['matched']} after include/exclude)", markup=False)
    for e in cfg.entries:
        echo(f"ok  {e.where or f'tasks[{e.index}]'} {e.task.name:24} [{e.task.format}] agent={e.agent} "
             f"model={e.model} rollouts={e.rollouts} timeout={e.agent_timeout_sec:g}s "
             f"grading={task_label(e.task.meta)}", markup=False)
    for s in cfg.skipped:
        echo(f"unsupported  {s.where} {s.task_name} ({s.task_dir}): {'; '.join(s.reasons)}", markup=False)
    from rollouts.run.services import agent_backend_problems, grading_problems

    refused = agent_backend_problems(cfg) + grading_problems(cfg)
    for field, msg in refused:
        echo(f"refused  {field}: {msg}", markup=False)
    try:
        lines = missing_images_lines(cfg)
        for note in cpu_notes(cfg):
            echo(note, markup=False)
    except EnvironmentNotReady as e:
        lines = []
        echo(f"note: base images not checked ({e})", markup=False)
    for line in lines:
        echo(line, markup=False)
    n = len(cfg.entries) + len(cfg.skipped)
    echo(f"{config}: {'valid' if not cfg.skipped and not lines and not refused else 'checked'} ({len(cfg.entries)} of {n} "
         f"tasks runnable, {cfg.total_runs} runs"
         + (f"; {len(cfg.skipped)} unsupported" if cfg.skipped else "")
         + (f"; {len(lines)} image(s) missing" if lines else "") + ")", markup=False)
    if refused or (cfg.skipped and not skip_unsupported):
        return EXIT_CONFIG
    return EXIT_ENV if lines else 0
