"""Whole datasets in a config (rollouts/datasets.py): a directory of 24 tasks with include /
exclude / n_tasks, a prepared_dir holding several tasks, a Harbor registry.json resolved against a
local bare git repository into the content-addressed cache (second resolution: 0 git fetches),
unsupported tasks refused or skipped and recorded. No Docker."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from rollouts import datasets
from rollouts.config import load_config
from rollouts.errors import ConfigError
from rollouts.runner import Runner
from rollouts.store import Store
from tests.conftest import ROOT

FIX = ROOT / "tests" / "fixtures"
AGENTS = ("oracle", "nop", "shell")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def tasks_dir(tmp_path) -> Path:
    """24 tasks: 12 Harbor (alpha-00..11), 12 Terminal-Bench 1 (beta-00..11)."""
    root = tmp_path / "ds"
    for i in range(12):
        h = root / f"alpha-{i:02d}"
        shutil.copytree(FIX / "harbor/app-state", h)
        (h / "task.toml").write_text((h / "task.toml").read_text().replace("fixtures/app-state", f"gen/alpha-{i:02d}"))
        shutil.copytree(FIX / "terminal_bench/hello-file", root / f"beta-{i:02d}")
    (root / "not-a-task").mkdir()
    return root


def write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "bench.toml"
    p.write_text('name = "ds"\n' + body)
    return p


def names(cfg) -> list[str]:
    return [e.task.dir.name if e.task.origin is None else e.task.origin.name for e in cfg.entries]


def test_dataset_dir_expands_with_include_exclude_and_n_tasks(tmp_path, tasks_dir):
    cfg = load_config(write(tmp_path, f'[[datasets]]\npath = "{tasks_dir}"\nagent = "oracle"\n'), agents=AGENTS)
    assert len(cfg.entries) == 24 and cfg.expansions[0]["total"] == 24
    assert all(e.where == "datasets[0]" and e.agent == "oracle" for e in cfg.entries)
    body = (f'[[datasets]]\npath = "{tasks_dir}"\ninclude = ["alpha-*", "beta-0[0-4]"]\nexclude = ["alpha-1*"]\n'
            'agent = "nop"\nrollouts = 2\nenvironment_variables = { X = "1" }\n')
    cfg = load_config(write(tmp_path, body), agents=AGENTS)
    got = names(cfg)
    assert sorted(got) == [f"alpha-{i:02d}" for i in range(10)] + [f"beta-{i:02d}" for i in range(5)]
    assert cfg.total_runs == 30 and cfg.entries[0].environment_variables["X"] == "1"
    body += "n_tasks = 4\nseed = 7\n"
    first = names(load_config(write(tmp_path, body), agents=AGENTS))
    again = names(load_config(write(tmp_path, body), agents=AGENTS))
    assert len(first) == 4 and first == again and set(first) <= set(got)  # seeded: same pick every time
    other = names(load_config(write(tmp_path, body.replace("seed = 7", "seed = 8")), agents=AGENTS))
    assert len(other) == 4 and other != first


def test_prepared_dir_of_tasks_expands(tmp_path, tasks_dir):
    cfg = load_config(write(tmp_path, f'[[tasks]]\nprepared_dir = "{tasks_dir}"\nagent = "oracle"\n'), agents=AGENTS)
    assert len(cfg.entries) == 24 and {e.where for e in cfg.entries} == {"tasks[0]"}


def test_check_lists_the_expansion(run_cli, tmp_path, tasks_dir):
    cfg = write(tmp_path, f'[[datasets]]\npath = "{tasks_dir}"\nexclude = ["beta-*"]\nn_tasks = 3\nagent = "oracle"\n'
                '[images]\n"ubuntu:24.04" = "rollouts-base"\n')
    p = run_cli("check", str(cfg))  # ubuntu:24.04 mapped to the locally built base: nothing missing
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"dataset datasets[0] {tasks_dir}: 3 task(s) (24 found, 12 after include/exclude)" in p.stdout
    assert p.stdout.count("ok  datasets[0] gen/alpha-") == 3


def test_bad_dataset_entries(tmp_path, tasks_dir):
    for body, field in [
        (f'[[datasets]]\npath = "{tasks_dir}"\nregistry = "r.json"\n', "datasets[0]"),
        (f'[[datasets]]\npath = "{tasks_dir}"\ninclude = ["nothing-*"]\n', "datasets[0]"),
        ('[[datasets]]\npath = "/nonexistent/dir"\n', "datasets[0].path"),
        (f'[[datasets]]\npath = "{tasks_dir}"\nn_tasks = 0\n', "datasets[0].n_tasks"),
        (f'[[datasets]]\npath = "{tasks_dir}"\nprepared_dir = "x"\n', "datasets[0].prepared_dir"),
    ]:
        with pytest.raises(ConfigError) as e:
            load_config(write(tmp_path, body), agents=AGENTS)
        assert field in str(e.value), (body, str(e.value))


def test_unsupported_refused_or_skipped_and_recorded(tmp_path, tasks_dir):
    shutil.copytree(FIX / "harbor-unsupported/gpu", tasks_dir / "gamma-gpu")
    shutil.copytree(FIX / "terminal_bench-unsupported/multi-service", tasks_dir / "gamma-multi")
    path = write(tmp_path, f'[[datasets]]\npath = "{tasks_dir}"\nagent = "oracle"\n')
    with pytest.raises(ConfigError) as e:
        load_config(path, agents=AGENTS)
    msg = str(e.value)
    assert "2 task(s) cannot run here" in msg and "--skip-unsupported" in msg
    assert "fixtures/gpu" in msg and "environment.gpus = 1" in msg and "2 services (client, db)" in msg
    cfg = load_config(path, agents=AGENTS, skip_unsupported=True)
    assert len(cfg.entries) == 24 and [s.task_name for s in cfg.skipped] == ["fixtures/gpu", "gamma-multi"]
    m = Runner(cfg, Store(tmp_path / "data")).new_manifest()
    assert [s.task_name for s in m.skipped] == ["fixtures/gpu", "gamma-multi"]
    from rollouts.report.html import render_html
    from rollouts.report.markdown import render_markdown
    from rollouts.report.summary import summarize

    s = summarize(m)
    line = s["skipped_line"]
    assert line.startswith("ran 24 of 26 tasks; 2 unsupported: fixtures/gpu (environment.gpus = 1")
    assert "ran 24 of 26 tasks; 2 unsupported" in render_markdown(s)
    assert "ran 24 of 26 tasks; 2 unsupported" in render_html(s, m, tmp_path)


# ------------------------------------------------------------------------------- registry.json
def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@e", "PATH": "/usr/bin:/bin", "HOME": str(cwd)}).stdout.strip()


@pytest.fixture
def registry(tmp_path) -> tuple[Path, str]:
    """A bare repo (the 'remote') with three Harbor tasks under tasks/, and a registry.json."""
    work = tmp_path / "work"
    for name in ("app-state", "metrics", "artifacts"):
        shutil.copytree(FIX / "harbor" / name, work / "tasks" / name)
    (work / "README.md").write_text("big unrelated content\n" * 1000)
    git("init", "-q", "-b", "main", ".", cwd=work)
    git("add", "-A", cwd=work)
    git("commit", "-qm", "tasks", cwd=work)
    commit = git("rev-parse", "HEAD", cwd=work)
    bare = tmp_path / "remote.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path)
    git("config", "uploadpack.allowFilter", "true", cwd=bare)
    git("config", "uploadpack.allowAnySHA1InWant", "true", cwd=bare)
    (work / "tasks/metrics/instruction.md").write_text("changed after the pin\n")  # not in the pinned commit
    git("commit", "-qam", "later", cwd=work)
    url = f"file://{bare}"
    reg = [{"name": "fixtures", "version": "1.0", "description": "d", "tasks": [
        {"name": n, "git_url": url, "git_commit_id": commit, "path": f"tasks/{n}"}
        for n in ("app-state", "metrics", "artifacts")]}]
    p = tmp_path / "registry.json"
    p.write_text(json.dumps(reg))
    return p, commit


def test_registry_resolves_into_the_cache_and_reuses_it(tmp_path, registry):
    reg, commit = registry
    body = f'[[datasets]]\nregistry = "{reg}"\ndataset = "fixtures@1.0"\nexclude = ["artifacts"]\nagent = "oracle"\n'
    before = datasets.GIT_FETCHES["count"]
    cfg = load_config(write(tmp_path, body), agents=AGENTS)
    first = datasets.GIT_FETCHES["count"] - before
    assert first == 2  # one partial fetch per selected task (no fallback), the excluded one never fetched
    assert sorted(e.task.name for e in cfg.entries) == ["fixtures/app-state", "fixtures/metrics"]
    cache = tmp_path / "cache" / "rollouts" / "tasks"
    for e in cfg.entries:
        assert cache in e.task.dir.parents and commit in str(e.task.dir)
        assert e.task.source["git_commit_id"] == commit and e.task.source["path"].startswith("tasks/")
        assert not (e.task.dir / ".git").exists()
    assert not any(p.name == "README.md" for p in cache.rglob("README.md"))  # sparse: only the task dirs
    metrics = next(e for e in cfg.entries if e.task.name == "fixtures/metrics")
    assert "changed after the pin" not in metrics.task.instruction
    before = datasets.GIT_FETCHES["count"]
    cfg2 = load_config(write(tmp_path, body), agents=AGENTS)
    assert datasets.GIT_FETCHES["count"] - before == 0  # second run: everything from the cache
    assert [e.task.digest for e in cfg2.entries] == [e.task.digest for e in cfg.entries]
    m = Runner(cfg2, Store(tmp_path / "data")).new_manifest()
    assert {t.task_source["git_commit_id"] for t in m.tasks} == {commit}
    assert all(t.task_format == "harbor" and len(t.task_digest) == 64 for t in m.tasks)


def test_registry_errors(tmp_path, registry):
    reg, _ = registry
    with pytest.raises(ConfigError, match="not in the registry"):
        load_config(write(tmp_path, f'[[datasets]]\nregistry = "{reg}"\ndataset = "nope@1"\nagent = "oracle"\n'),
                    agents=AGENTS)
    bad = json.loads(reg.read_text())
    bad[0]["tasks"][0]["git_url"] = f"file://{tmp_path}/missing.git"
    bad[0]["tasks"][0]["git_commit_id"] = "0" * 40
    reg.write_text(json.dumps(bad))
    from rollouts.errors import EnvironmentNotReady

    with pytest.raises(EnvironmentNotReady, match="git fetch"):
        load_config(write(tmp_path, f'[[datasets]]\nregistry = "{reg}"\ndataset = "fixtures"\nagent = "oracle"\n'
                          'include = ["app-state"]\n'), agents=AGENTS)


def test_registry_from_an_http_url(tmp_path, registry):
    import functools
    import http.server
    import threading

    reg, _ = registry
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(reg.parent))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/{reg.name}"
        cfg = load_config(write(tmp_path, f'[[datasets]]\nregistry = "{url}"\ndataset = "fixtures@1.0"\n'
                                'include = ["metrics"]\nagent = "oracle"\n'), agents=AGENTS)
        assert [e.task.name for e in cfg.entries] == ["fixtures/metrics"]
    finally:
        srv.shutdown()
        srv.server_close()


def test_check_classifies_unsupported_tasks(run_cli, tmp_path):
    cfg = write(tmp_path, f'[[datasets]]\npath = "{FIX / "harbor-unsupported"}"\nagent = "oracle"\n'
                f'[[datasets]]\npath = "{FIX / "terminal_bench"}"\ninclude = ["hello-*"]\nagent = "oracle"\n'
                '[images]\n"ghcr.io/laude-institute/t-bench/python-3-13:20250620" = "rollouts-base"\n')
    p = run_cli("check", str(cfg))
    assert p.returncode == 2, p.stdout + p.stderr
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("unsupported  ")]
    assert len(lines) == 5
    assert any("datasets[0] fixtures/windows" in ln and "environment.os = 'windows'" in ln for ln in lines)
    assert "1 of 6 tasks runnable" in p.stdout and "5 unsupported" in p.stdout
    p = run_cli("check", str(cfg), "--skip-unsupported")
    assert p.returncode == 0, p.stdout + p.stderr


def test_readme_config_snippets_are_valid_configs():
    import re

    import tomllib

    from rollouts.config_file import BenchmarkFile

    text = (ROOT / "README.md").read_text()
    tb2 = re.search(r"cat > tb2.toml <<'TOML'\n(.*?)\nTOML\n", text, re.S)
    assert tb2, "README lacks the terminal-bench-2 config"
    doc = BenchmarkFile.model_validate(tomllib.loads(tb2.group(1)))
    assert doc.datasets[0].path == "~/terminal-bench-2" and doc.images["ubuntu:24.04"] == "rollouts-base"
    block = re.search(r"## Benchmark config \(TOML\)\n\n```toml\n(.*?)```", text, re.S).group(1)
    doc = BenchmarkFile.model_validate(tomllib.loads(block))
    assert doc.datasets[0].n_tasks == 20 and doc.tasks[0].rollouts == 3
