"""Whole datasets in a config: ``[[datasets]]`` expansion, Harbor ``registry.json`` resolution,
and the content-addressed git task cache.

A ``[[datasets]]`` entry is either a directory of tasks (``path``) or a registry dataset
(``registry`` = a path or http(s) URL of a Harbor ``registry.json`` + ``dataset = "name@version"``).
``include`` / ``exclude`` are glob patterns (``fnmatch``) over the task directory names (and,
for registry tasks, their registry names); ``n_tasks`` keeps the first N after a shuffle seeded
with ``seed`` (default 0), so the same config always picks the same tasks.

Registry format (Harbor's ``registry.json``): a list of ``{name, version, description, tasks:
[{name, git_url, git_commit_id, path}]}``. Each task is fetched with gitpython — a partial clone
(``--filter=blob:none``, only the pinned commit, sparse checkout of ``path``) where the server
allows it, else a plain fetch of the commit — into
``$XDG_CACHE_HOME/rollouts/tasks/<sha256(git_url)[:16]>/<git_commit_id>/<path>``, which is
reused afterwards (a complete entry has a ``.rollouts-complete`` marker; no git call at all).
``GIT_FETCHES`` counts the fetches this process made (the test and ``bench_check`` read it).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rollouts.errors import ConfigError, EnvironmentNotReady
from rollouts.formats import is_task_dir
from rollouts.task import cache_root

COMPLETE = ".rollouts-complete"
GIT_FETCHES = {"count": 0}
MAX_REGISTRY_BYTES = 64 * 1024 * 1024


@dataclass
class DatasetTask:
    """One task of an expanded dataset: its directory and, for registry tasks, where it came from."""

    dir: Path
    name: str
    source: dict[str, str] | None = None


@dataclass
class Expansion:
    """What a ``[[datasets]]`` entry expanded to (``check`` prints it)."""

    tasks: list[DatasetTask]
    total: int  # tasks found before include/exclude/n_tasks
    matched: int  # after include/exclude
    notes: list[str] = field(default_factory=list)


def task_dirs_under(root: Path) -> list[Path]:
    """Task directories directly under ``root`` (any registered format), sorted by name."""
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as e:
        raise ConfigError(f"cannot list the dataset directory: {e.strerror}", file=str(root)) from None
    return [p for p in children if is_task_dir(p)]


def select(items: list[DatasetTask], include: list[str] | None, exclude: list[str] | None,
           n_tasks: int | None, seed: int = 0) -> tuple[list[DatasetTask], int]:
    """Filter by glob patterns, then keep the first ``n_tasks`` after a seeded shuffle (order of
    the result: the shuffled order when n_tasks is given, else by name). Returns (kept, matched)."""

    def hit(t: DatasetTask, pats: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(t.name, p) or fnmatch.fnmatchcase(t.dir.name, p) for p in pats)

    kept = [t for t in items if (not include or hit(t, include)) and not (exclude and hit(t, exclude))]
    matched = len(kept)
    if n_tasks is not None:
        kept = sorted(kept, key=lambda t: t.name)
        random.Random(seed).shuffle(kept)
        kept = kept[:n_tasks]
    return kept, matched


def expand_dir(root: Path, include: list[str] | None = None, exclude: list[str] | None = None,
               n_tasks: int | None = None, seed: int = 0) -> Expansion:
    """A directory of tasks → the selected task dirs. ConfigError if it holds none."""
    dirs = task_dirs_under(root)
    if not dirs:
        raise ConfigError("no task directories in it (each needs tb_meta.json, task.toml or task.yaml)",
                          file=str(root))
    items = [DatasetTask(dir=d, name=d.name) for d in dirs]
    kept, matched = select(items, include, exclude, n_tasks, seed)
    return Expansion(tasks=kept, total=len(items), matched=matched)


# ------------------------------------------------------------------------------------ registries
def read_registry(ref: str, base: Path) -> list[dict]:
    """A Harbor ``registry.json`` from a path (relative to ``base``) or an http(s) URL."""
    if ref.startswith(("http://", "https://")):
        try:
            import urllib.request  # lazy: http.client + ssl cost every command ~40 ms otherwise

            with urllib.request.urlopen(ref, timeout=60) as r:  # noqa: S310 - user-given registry URL
                data = r.read(MAX_REGISTRY_BYTES + 1)
        except OSError as e:
            raise EnvironmentNotReady(f"cannot download the registry {ref}: {e}") from None
        where = ref
    else:
        p = Path(ref) if Path(ref).is_absolute() else base / ref
        where = str(p)
        try:
            data = p.read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read the registry: {e.strerror}", file=where) from None
    if len(data) > MAX_REGISTRY_BYTES:
        raise ConfigError(f"registry is larger than {MAX_REGISTRY_BYTES} bytes", file=where)
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"registry is not valid JSON: {e}", file=where) from None
    if not isinstance(doc, list) or not all(isinstance(d, dict) for d in doc):
        raise ConfigError("expected a JSON list of datasets ({name, version, tasks})", file=where)
    return doc


def find_dataset(registry: list[dict], spec: str, where: str) -> dict:
    """``name@version`` (or ``name``: the only / last listed version) in a registry."""
    name, _, version = spec.partition("@")
    found = [d for d in registry if d.get("name") == name and (not version or str(d.get("version")) == version)]
    if not found:
        have = sorted({f"{d.get('name')}@{d.get('version')}" for d in registry})
        raise ConfigError(f"dataset {spec!r} is not in the registry (it lists: {', '.join(have[:20])})",
                          file=where, field="dataset")
    return found[-1]


def _cache_dir(git_url: str, commit: str) -> Path:
    return cache_root() / "tasks" / hashlib.sha256(git_url.encode()).hexdigest()[:16] / commit


def fetch_task(git_url: str, commit: str, path: str) -> Path:
    """The task dir ``path`` of ``git_url`` at ``commit``, from the cache or fetched into it.

    Partial clone + sparse checkout of ``path`` first; a server that refuses filters or fetching
    by commit gets a full fetch of the repository. Raises EnvironmentNotReady (exit 3) when git
    cannot fetch, ConfigError when the commit lacks ``path``.
    """
    import git

    if not commit or len(commit) < 7 or any(c not in "0123456789abcdef" for c in commit.lower()):
        raise ConfigError(f"git_commit_id {commit!r} is not a commit id")
    if not git_url or git_url.startswith("-") or "::" in git_url.split("/", 1)[0]:
        raise ConfigError(f"git_url {git_url[:200]!r} is not a repository URL or path")  # no options, no ext::
    if path.startswith("/") or ".." in Path(path).parts:
        raise ConfigError(f"task path {path!r} must be relative inside the repository")
    root = _cache_dir(git_url, commit)
    dest = root / path if path not in ("", ".") else root
    if (root / COMPLETE).is_file() and (root / COMPLETE).read_text().find(f"\n{path}\n") >= 0:
        return dest
    root.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    with FileLock(str(root) + ".lock"):
        marker = root / COMPLETE
        if marker.is_file() and f"\n{path}\n" in marker.read_text():
            return dest
        tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=root.parent))
        try:
            repo = git.Repo.init(tmp)
            repo.git.remote("add", "origin", git_url)
            GIT_FETCHES["count"] += 1
            try:
                repo.git.config("extensions.partialClone", "origin")
                repo.git.fetch("--filter=blob:none", "--depth=1", "origin", commit)
            except git.GitCommandError:
                GIT_FETCHES["count"] += 1
                try:
                    repo.git.fetch("origin")
                except git.GitCommandError as e:
                    raise EnvironmentNotReady(f"git fetch from {git_url} failed: {e.stderr.strip()[-300:]}") from None
            try:
                repo.git.execute(["git", "sparse-checkout", "set", "--no-cone", f"/{path.strip('/')}/"]
                                 if path not in ("", ".") else ["git", "sparse-checkout", "disable"])
                repo.git.checkout("--detach", commit)
            except git.GitCommandError as e:
                raise ConfigError(f"cannot check out {commit} of {git_url}: {e.stderr.strip()[-300:]}") from None
            src = tmp / path if path not in ("", ".") else tmp
            if not src.is_dir():
                raise ConfigError(f"{git_url} at {commit} has no directory {path!r}")
            target = root / path if path not in ("", ".") else root
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(src, target, symlinks=True, ignore=shutil.ignore_patterns(".git"))
            prev = marker.read_text() if marker.is_file() else "\n"
            marker.write_text(prev + f"{path}\n")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def expand_registry(registry: str, dataset: str, base: Path, include: list[str] | None = None,
                    exclude: list[str] | None = None, n_tasks: int | None = None, seed: int = 0) -> Expansion:
    """Resolve ``dataset`` in ``registry`` → task dirs in the cache (fetching only the selected
    tasks that are not cached yet)."""
    reg = read_registry(registry, base)
    ds = find_dataset(reg, dataset, registry)
    items = []
    for i, t in enumerate(ds.get("tasks") or []):
        if not isinstance(t, dict) or not all(isinstance(t.get(k), str) for k in ("git_url", "git_commit_id")):
            raise ConfigError(f"dataset {dataset!r} task {i}: needs git_url and git_commit_id strings",
                              file=registry)
        p = t.get("path") or ""
        name = t.get("name") or Path(p).name
        items.append(DatasetTask(dir=Path(p or "."), name=name,
                                 source={"git_url": t["git_url"], "git_commit_id": t["git_commit_id"], "path": p}))
    if not items:
        raise ConfigError(f"dataset {dataset!r} lists no tasks", file=registry)
    kept, matched = select(items, include, exclude, n_tasks, seed)
    for t in kept:
        assert t.source is not None
        t.dir = fetch_task(t.source["git_url"], t.source["git_commit_id"], t.source["path"])
    return Expansion(tasks=kept, total=len(items), matched=matched)
