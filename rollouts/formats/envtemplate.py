"""``${VAR}`` / ``${VAR:-default}`` templates in a task's env tables (Harbor's template syntax,
also used by tb_meta.json and TB1's compose files), expanded from the host's environment at load.
Templated entries are kept apart so that ``tasks convert`` and ``tasks show --json`` never write a
host value (e.g. a key) to disk."""

from __future__ import annotations

import re
from typing import Any

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(values: dict[str, Any], where: str, environ: dict[str, str], problems: list[str]) -> dict[str, str]:
    """Resolve ``${VAR}`` / ``${VAR:-default}`` in each value from ``environ`` (Harbor's template
    syntax). A ``${VAR}`` without default whose VAR is unset adds a problem naming ``where.key``
    (and stays unexpanded); a non-string value is stringified like TOML prints it."""
    out: dict[str, str] = {}
    for k, v in values.items():
        text = v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)

        def sub(m: re.Match, k: str = k) -> str:
            var, default = m.group(1), m.group(2)
            if var in environ:
                return environ[var]
            if default is not None:
                return default
            problems.append(f"{where}.{k}: ${{{var}}} is not set on this host and has no default")
            return m.group(0)

        out[str(k)] = _VAR.sub(sub, text)
    return out


def templated(values: dict[str, Any]) -> dict[str, str]:
    """The entries of an env table whose value is a ``${VAR}`` template (kept unexpanded so that
    ``tasks convert`` and ``tasks show --json`` never write a host value, e.g. a key, to disk)."""
    return {str(k): v for k, v in values.items() if isinstance(v, str) and _VAR.search(v)}


# tb_meta env maps that may hold templates → (path in the tb_meta dict, the Harbor key named in messages)
ENV_MAPS = {"environment.env": (("environment", "env"), "environment.env"),
            "tests.env": (("tests", "env"), "verifier.env"),
            "solution_env": (("solution_env",), "solution.env")}


def expand_meta_env(raw: dict, environ: dict[str, str], problems: list[str]) -> dict[str, dict[str, str]]:
    """Expand the templates in a tb_meta dict's env maps in place (``environment.env``,
    ``tests.env``, ``solution_env``); returns the templated entries per map."""
    out: dict[str, dict[str, str]] = {}
    for name, (path, shown) in ENV_MAPS.items():
        parent = raw
        for k in path[:-1]:
            parent = parent.get(k) if isinstance(parent, dict) else None
        values = parent.get(path[-1]) if isinstance(parent, dict) else None
        if isinstance(values, dict) and values:
            t = templated(values)
            if t:
                out[name] = t
                parent[path[-1]] = {**values, **expand_env(t, shown, environ, problems)}
    return out
