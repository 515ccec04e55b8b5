"""The command line (``eval-rollouts``, ``scripts/eval_rollouts.py``): the group, ``run``, ``view``.

The other commands live in their own modules, imported only when used (``_LAZY_COMMANDS``):
summarize, eval (:mod:`rollouts.commands.results`); check, images build, clean, schema
(:mod:`rollouts.commands.housekeeping`); prepare, tasks, compare, report (the ``commands``
module of their package). Exit codes: 0 completed, 1 runs errored or below ``--fail-under``,
2 bad config or usage, 3 environment not ready, 130 interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import click

from rollouts import __version__
from rollouts.errors import EXIT_ENV, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, ConfigError, RolloutsError
from rollouts.ui import PREFIX, Progress, make_console

console = make_console()
err_console = make_console(stderr=True)


def _fail(e: RolloutsError) -> None:
    kind = {2: "config error", 3: "environment not ready"}.get(e.exit_code, "error")
    err_console.print(f"{PREFIX} {kind}: {e}", markup=False, soft_wrap=True)
    sys.exit(e.exit_code)


class _Group(click.Group):
    """Errors as one line (:meth:`invoke`); subcommands named in ``_LAZY_COMMANDS`` are imported on first use
    (click's documented lazy-loading pattern: ``list_commands`` + ``get_command``)."""

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *_LAZY_COMMANDS})

    def get_command(self, ctx, name):
        if name in _LAZY_COMMANDS and name not in self.commands:
            import importlib

            mod, attr = _LAZY_COMMANDS[name].split(":")
            self.add_command(getattr(importlib.import_module(mod), attr), name)
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        """Turns RolloutsError into one clear line and its exit code (no traceback). An OS error
        (disk full, permission denied under the data dir) is exit 3; any other unexpected exception
        is one ``internal error`` line, exit 1 (``ROLLOUTS_DEBUG=1`` shows the traceback)."""
        try:
            return super().invoke(ctx)
        except RolloutsError as e:
            _fail(e)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except OSError as e:
            if os.environ.get("ROLLOUTS_DEBUG"):
                raise
            where = f": {e.filename}" if getattr(e, "filename", None) else ""
            err_console.print(f"{PREFIX} environment not ready: {e.strerror or e}{where}", markup=False, soft_wrap=True)
            sys.exit(EXIT_ENV)
        except Exception as e:  # noqa: BLE001 - one line, never a traceback, unless debugging
            if os.environ.get("ROLLOUTS_DEBUG"):
                raise
            msg = str(e).splitlines()[0][:300] if str(e) else ""
            err_console.print(f"{PREFIX} internal error: {type(e).__name__}: {msg} "
                              "(set ROLLOUTS_DEBUG=1 for the traceback)", markup=False, soft_wrap=True)
            sys.exit(EXIT_FAILED)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rollouts")
@click.option("--data-dir", default="data", show_default=True, envvar="ROLLOUTS_DATA_DIR",
              help="Root of data/rollouts and data/runs.")
@click.pass_context
def cli(ctx: click.Context, data_dir: str) -> None:
    """Run LLM agents on prepared tasks in isolated sandboxes, grade them, and report."""
    from rollouts.store import Store

    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise ConfigError(f"--data-dir {data_dir!r} exists and is not a directory")
    ctx.obj = Store(data_dir)


def load_benchmark(config: str, skip_unsupported: bool = False):
    """The validated :class:`~rollouts.config.BenchmarkConfig` of the TOML file ``config``, with the
    registered agents and the ``SANDBOX_BACKEND`` environment override; raises ConfigError (exit 2)."""
    from rollouts.agents import REGISTRY
    from rollouts.config import load_config

    return load_config(config, backend_env=os.environ.get("SANDBOX_BACKEND") or None, agents=tuple(REGISTRY),
                       skip_unsupported=skip_unsupported)


@cli.command()
@click.argument("config", required=False)
@click.option("-v", "--verbose", count=True, help="-v progress lines (a live table on a terminal), -vv full container output.")
@click.option("--no-eval", is_flag=True, help="Skip grading (run agents and collect artifacts only).")
@click.option("--resume", is_flag=True, help="Continue an interrupted rollout (CONFIG or benchmark NAME).")
@click.option("--latest", is_flag=True, help="With --resume: the most recent rollout (default).")
@click.option("--rollout", "rollout", default=None, help="With --resume: this rollout id.")
@click.option("--fail-under", type=float, default=None, help="Exit 1 if the mean reward is below this.")
@click.option("--baseline", default=None, metavar="NAME[/ID]",
              help="Exit 1 if significantly worse than NAME/ID (NAME: its latest completed rollout).")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
@click.option("--parallel", type=click.IntRange(1, 1000), default=None, help="Override the config's parallel.")
@click.option("--rollouts", "n_rollouts", type=click.IntRange(1, 10000), default=None,
              help="Run every selected entry N times.")
@click.option("--max-tasks", type=click.IntRange(1), default=None, help="Only the first N (selected) entries.")
@click.option("--task", "task_globs", multiple=True, metavar="PATTERN", help="Only tasks whose name matches (glob; repeatable).")
@click.option("--agent", "agents", multiple=True, metavar="NAME", help="Only entries with this agent (repeatable).")
@click.option("--model", "models", multiple=True, metavar="NAME", help="Only entries with this model (repeatable).")
@click.option("--dry-run", is_flag=True, help="Print the runs this would start and exit 0 (starts nothing).")
@click.option("--skip-unsupported", is_flag=True,
              help="Run the supported tasks and record the unsupported ones as skipped (else: exit 2).")
@click.pass_obj
def run(store, config: str | None, verbose: int, no_eval: bool, resume: bool, latest: bool,
        rollout: str | None, fail_under: float | None, baseline: str | None, as_json: bool,
        parallel: int | None, n_rollouts: int | None, max_tasks: int | None, task_globs: tuple[str, ...],
        agents: tuple[str, ...], models: tuple[str, ...], dry_run: bool, skip_unsupported: bool) -> None:
    """Run every task × rollout of CONFIG (a benchmark TOML) and grade each run.

    The quick-run flags (--parallel, --rollouts, --max-tasks, --task, --agent, --model) change this
    run only and are recorded in the manifest; --dry-run lists the runs and starts nothing.
    --skip-unsupported runs a config naming tasks this harness cannot run (else exit 2)."""
    from rollouts.report.summary import render_table, summarize
    from rollouts.runner import Runner
    from rollouts.selection import (
        Selection,
        apply_selection,
        print_dry_run,
        record_selection,
        selection_from_manifest,
    )

    sel = Selection(parallel=parallel, rollouts=n_rollouts, max_tasks=max_tasks, tasks=list(task_globs),
                    agents=list(agents), models=list(models))

    if not config:
        raise ConfigError("missing CONFIG (a benchmark TOML, or with --resume a benchmark NAME)")
    manifest = None
    if resume:
        if Path(config).is_file():
            name = load_benchmark(config, skip_unsupported).name
        else:
            name = config
        rid = store.resolve(name, rollout, True)
        manifest = store.load_manifest(name, rid)
        if not Path(config).is_file():
            config = manifest.config
    elif latest or rollout:
        raise ConfigError("--latest/--rollout are only valid with --resume")
    if manifest is not None:
        if not sel.model_copy(update={"parallel": None}).empty:
            raise ConfigError("--resume reuses the rollout's own selection: only --parallel may be given")
        sel = selection_from_manifest(manifest)
        if parallel is not None:
            sel = sel.model_copy(update={"parallel": parallel})
    cfg = apply_selection(load_benchmark(config, skip_unsupported), sel)
    if not cfg.entries:
        raise ConfigError(f"no runnable task: all {len(cfg.skipped)} task(s) are unsupported", file=config)
    if dry_run:
        print_dry_run(cfg, sel, console if not as_json else None)
        return
    from rollouts.check import missing_images_lines
    from rollouts.errors import EnvironmentNotReady

    total = cfg.total_runs
    progress = Progress(err_console if as_json else console, total, verbose)
    runner = Runner(cfg, store, on_event=progress.event, echo=progress.echo if verbose >= 2 else None,
                    grade=not no_eval)  # starts reading the git revision in the background
    missing = missing_images_lines(cfg)  # before any run: exit 3, one line per image
    if missing:
        raise EnvironmentNotReady(f"{len(missing)} base image(s) missing:\n" + "\n".join(missing))
    if baseline:
        from rollouts.report.compare import preflight_baseline

        preflight_baseline(store, baseline, cfg.name)  # exit 2 before any container starts
    progress.line(f"{PREFIX} config={config} name={cfg.name} tasks={total} parallel={cfg.parallel}")
    if manifest is not None:
        runner.resume(manifest)  # refuses before touching anything if the config/tasks changed
    runner.preflight(log=lambda s: progress.line(f"{PREFIX} {s}"))
    if runner.manifest is None:
        record_selection(store, runner.new_manifest(), sel)
    m = runner.manifest
    progress.line(f"{PREFIX} output={store.rollout_dir(cfg.name, m.rollout_id)}")
    if manifest is not None:
        progress.line(f"{PREFIX} resuming: {len(m.resumes[-1]['reran'])} unfinished run(s) to run again")
    if verbose == 0:
        progress.line(f"{PREFIX} Running in quiet mode - use -vv for full output")
    todo = sum(r.status == "pending" for r in m.results)
    progress.line(f"{PREFIX} Starting {todo} tasks with parallel={cfg.parallel}")
    progress.total = todo

    signals = {"n": 0}

    def on_signal(signum, frame):
        signals["n"] += 1
        runner.cancel()
        if signals["n"] == 1:
            progress.line(f"{PREFIX} interrupted: stopping runs and removing their containers …")

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    progress.start()
    try:
        m = runner.run()
    finally:
        progress.stop()
    summary = summarize(m)
    if m.status == "cancelled":
        progress.line(f"{PREFIX} cancelled: {sum(r.status == 'cancelled' for r in m.results)} run(s) not finished")
    else:
        progress.line(f"✓ All {todo} tasks completed!")
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        render_table(summary, console)
    if m.status == "cancelled":
        # Worker threads may still be inside a model call; their sandboxes are gone and the
        # manifest is final, so leave now rather than wait for them.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
    for s, h in old.items():
        signal.signal(s, h)
    rc = _exit_code(m, fail_under)
    if baseline:
        from rollouts.report.compare import check_baseline

        worse, msg = check_baseline(store, m, baseline)
        progress.line(f"{PREFIX} baseline {baseline}: {msg}")
        if worse:
            rc = EXIT_FAILED
    sys.exit(rc)


def _exit_code(m, fail_under: float | None) -> int:
    if any(r.status == "error" for r in m.results):
        return EXIT_FAILED
    if fail_under is not None:
        rewards = [r.reward or 0.0 for r in m.results if not (r.status == "error" and r.error_kind == "infra")]
        if not rewards or sum(rewards) / len(rewards) < fail_under:
            return EXIT_FAILED
    return EXIT_OK


def pick_rollout(store, name: str, latest: bool, rollout: str | None) -> str:
    """The rollout id of benchmark ``name`` chosen by ``--latest`` or ``--rollout ID``; raises
    ConfigError (exit 2) if neither is given or the rollout does not exist."""
    if not latest and not rollout:
        raise ConfigError("choose a rollout: --latest or --rollout ID")
    return store.resolve(name, rollout, latest)


# Command groups kept in their own modules, imported only when invoked (or listed by --help):
# their imports (task generators, report rendering, format adapters, image builds) stay off
# `run`'s start-up.
_LAZY_COMMANDS = {
    "summarize": "rollouts.commands.results:summarize",
    "eval": "rollouts.commands.results:eval_cmd",
    "check": "rollouts.commands.housekeeping:check",
    "images": "rollouts.commands.housekeeping:images",
    "clean": "rollouts.commands.housekeeping:clean",
    "schema": "rollouts.commands.housekeeping:schema",
    "prepare": "rollouts.families.commands:prepare",
    "tasks": "rollouts.formats.commands:tasks_group",
    "compare": "rollouts.report.commands:compare",
    "report": "rollouts.report.commands:report",
}


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0 = any free port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (local by default).")
@click.option("--allow-remote", is_flag=True, help="Allow a --host reachable from other machines.")
@click.pass_obj
def view(store, port: int, host: str, allow_remote: bool) -> None:
    """Browse rollouts, runs and trajectories in a local web page (read-only)."""
    from rollouts.view.server import serve

    serve(store.root, host=host, port=port, allow_remote=allow_remote,
          say=lambda s: console.print(s, markup=False, soft_wrap=True))


def main() -> None:
    """Console-script entry point: runs the command, then leaves through :func:`_exit`."""
    code: int | str | None = EXIT_OK
    try:
        cli(standalone_mode=True)
    except SystemExit as e:
        code = e.code
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    _exit(code)


def _exit(code: int | str | None) -> None:
    """End the process as the interpreter would (wait for non-daemon threads, run the ``atexit``
    handlers, flush stdout/stderr; a ``str`` code is printed to stderr and exits 1, ``None`` is 0)
    but without tearing down every module and object, which costs ~70 ms with our imports and
    changes nothing we keep: every file is written atomically and closed before this point
    (fixed cost per command, issue 13). Falls back to ``sys.exit`` on a Python without
    ``threading._shutdown``."""
    import atexit
    import threading

    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = EXIT_FAILED
    code = EXIT_OK if code is None else code
    shutdown = getattr(threading, "_shutdown", None)  # what Py_FinalizeEx does first
    if shutdown is None:
        sys.exit(code)
    shutdown()
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader left (`| head`): nothing more to say to it
        pass
    os._exit(code)


if __name__ == "__main__":
    main()
