"""``check``, ``images build``, ``clean``, ``schema``: validate, build images, remove leftovers.

``check`` validates a config and its tasks without running anything; ``images build`` builds the
base (and task) images; ``clean`` removes what rollouts whose harness is gone left on this host;
``schema`` prints the JSON Schema of tb_meta.json."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from rollouts.cli import console, load_benchmark
from rollouts.ui import PREFIX


@click.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--skip-unsupported", is_flag=True, help="Unsupported tasks are listed but do not fail the check.")
def check(config: str, skip_unsupported: bool) -> None:
    """Validate CONFIG and every task it names, without running anything (exit 2: invalid or an
    unsupported task; exit 3: base images missing that cannot be pulled)."""
    from rollouts.check import check_report
    from rollouts.sandbox import get_backend

    cfg = load_benchmark(config, skip_unsupported=True)
    backends: dict = {}
    for e in cfg.entries:
        if e.backend not in backends:
            backends[e.backend] = get_backend(e.backend)  # no network: checks are static
        backends[e.backend].check_task(e.task)  # e.g. a Dockerfile Modal cannot build (line named)
    sys.exit(check_report(cfg, config, skip_unsupported, console.print))


@click.group()
def images() -> None:
    """Base and task images."""


@images.command("build")
@click.option("--force", is_flag=True, help="Rebuild the base image even if it exists.")
@click.option("--config", "config", default=None, help="Also build the task images of this config.")
def images_build(force: bool, config: str | None) -> None:
    """Build the base image locally (mmdebstrap + docker import; no registry needed)."""
    from rollouts.images import ensure_base_image, ensure_task_image
    from rollouts.sandbox.docker_engine import docker_client

    client = docker_client()
    ref = ensure_base_image(client, log=lambda s: console.print(f"{PREFIX} {s}", markup=False), force=force)
    console.print(f"{PREFIX} base image: {ref}", markup=False)
    if config:
        for e in load_benchmark(config).entries:
            console.print(f"{PREFIX} task image {e.task.name}: {ensure_task_image(client, e.task)}", markup=False)


@click.command()
@click.option("--dry-run", is_flag=True, help="List what would be removed.")
@click.option("--backend", "backends", multiple=True, type=click.Choice(["docker", "modal"]),
              help="Backends to clean (default: docker, or SANDBOX_BACKEND).")
@click.option("--all-hosts", is_flag=True, help="Also sandboxes started from other hosts (shared Modal workspace).")
@click.option("--agent-layers", type=click.Choice(["stale", "all"]), default=None,
              help="Also remove installed-agent layers: stale (not the current build of an agent version) or all.")
def clean(dry_run: bool, backends: tuple[str, ...], all_hosts: bool, agent_layers: str | None) -> None:
    """Remove sandboxes (and image build leftovers) of rollouts whose harness is gone."""
    from rollouts.runner import reap_dead
    from rollouts.sandbox import get_backend

    verb = "would remove" if dry_run else "removed"
    names = backends or (os.environ.get("SANDBOX_BACKEND") or "docker",)
    total_c = total_i = 0
    for name in names:
        backend = get_backend(name)
        backend.preflight()
        dead = reap_dead(backend, dry_run=dry_run, all_hosts=all_hosts)
        for c in dead:
            labels = c.get("labels") or {}
            console.print(f"{verb} {name} sandbox {c['name']} rollout={labels.get('rollouts.rollout_id')} "
                          f"run={labels.get('rollouts.run_id')}", markup=False)
        total_c += len(dead)
        if name == "docker":
            from rollouts.images import remove_build_leftovers

            left = remove_build_leftovers(backend.client, dry_run=dry_run)
            for i in left:
                console.print(f"{verb} {i}", markup=False)
            total_i += len(left)
            from rollouts.gateway.network import owner_gone, remove_leftover_networks

            nets = remove_leftover_networks(backend.client, lambda lb: owner_gone(lb, all_hosts), dry_run=dry_run)
            for n in nets:
                console.print(f"{verb} gateway network {n['name']} rollout={n['labels'].get('rollouts.rollout_id')}",
                              markup=False)
            if agent_layers:
                from rollouts.agents.installed.layer import clean_layers

                for v in clean_layers(backend.client, all_layers=agent_layers == "all", dry_run=dry_run):
                    console.print(f"{verb} agent layer {v}", markup=False)
    console.print(f"{PREFIX} {verb} {total_c} sandbox(es), {total_i} image build leftover(s)", markup=False)


@click.command()
@click.option("-o", "--output", default=None, help="Write to this file instead of stdout.")
def schema(output: str | None) -> None:
    """Print the JSON Schema of tb_meta.json."""
    from rollouts.store import atomic_write
    from rollouts.task import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if output:
        atomic_write(Path(output), text)
    else:
        click.echo(text, nl=False)
