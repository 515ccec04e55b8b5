"""Formatting shared by the report renderers (rich tables, markdown, HTML, compare)."""

from __future__ import annotations

import functools
import json


def fmt_options(options: str | dict | None) -> str:
    """Agent options (the JSON string of a row, or a dict) as ``k=v,k=v`` sorted by key ("" when none)."""
    if not options:
        return ""
    if isinstance(options, str):
        return _fmt_options_json(options)
    return _fmt_dict(options)


@functools.lru_cache(maxsize=1024)
def _fmt_options_json(options: str) -> str:
    """:func:`fmt_options` of a JSON string, memoised (reports format the same few thousands of times)."""
    return _fmt_dict(json.loads(options))


def _fmt_dict(d: dict) -> str:
    return ",".join(
        f"{k}={json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in sorted(d.items())
    )


def arm_label(agent: str, model: str, options: str | None = "") -> str:
    """``agent/model [k=v,...]``: the name of one agent × model × options arm in reports."""
    o = fmt_options(options)
    return f"{agent}/{model}" + (f" [{o}]" if o else "")


def fmt(v: float | None, nd: int = 2) -> str:
    """A number with ``nd`` decimals, or "—" when missing."""
    return "—" if v is None else f"{v:.{nd}f}"


def fmt_ci(mean: float | None, lo: float | None, hi: float | None, nd: int = 2) -> str:
    """``mean [lo, hi]`` (or just ``mean`` without a CI; "—" without a mean)."""
    return fmt(mean, nd) + (f" [{fmt(lo, nd)}, {fmt(hi, nd)}]" if lo is not None and hi is not None else "")


def fmt_cost(c: float | None) -> str:
    """USD cost; ``None`` is an unknown price and prints "unknown" (never 0)."""
    return "unknown" if c is None else f"{c:.4f}"


def max_k(pass_at_k: dict) -> int | None:
    """The largest k in a pass@k dict (JSON turns int keys into strings)."""
    return max((int(k) for k in pass_at_k), default=None)


def pk(d: dict, k: int | None) -> float | None:
    """``d[k]`` for a pass@k dict whose keys may be ints or (after JSON) strings."""
    return None if k is None else d.get(k, d.get(str(k)))


def fmt_signed(x: float | None) -> str:
    """A difference with its sign and 3 decimals (``+0.120``), or "n/a"."""
    return "n/a" if x is None else f"{x:+.3f}"


def fmt_pk(row: dict, key: str, k: int | None) -> str:
    """``value [lo, hi]`` of a row's ``pass_at_k`` / ``pass_hat_k`` at k (its ``<key>_ci`` holds
    the interval; JSON turns the int keys into strings), "—" when k is None."""
    if k is None:
        return "—"
    ci = pk(row.get(key + "_ci", {}), k)
    return fmt_ci(pk(row[key], k), *(ci or (None, None)))


def fmt_integrity(row: dict) -> str:
    """A row's grading-integrity labels with their run counts (``isolated 3``), "—" when none."""
    return ", ".join(f"{label} {n}" for label, n in sorted((row.get("integrity") or {}).items())) or "—"
