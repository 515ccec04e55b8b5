"""Redaction of secret values (API keys, tokens) from text that may be shown, logged or stored."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)
MIN_SECRET_LEN = 6
REDACTED = "***"
#: API-key placeholders of keyless endpoints (the local model server takes any key; clients and
#: docs use these): never secrets, and redacting them mangles ordinary words ("local").
PLACEHOLDER_KEYS = frozenset({"local", "none", "empty", "dummy", "sk-no-key-required", "no-key", "not-needed"})


def is_secret(value: str | None) -> bool:
    """Whether ``value`` is worth redacting: at least MIN_SECRET_LEN characters and not a
    known placeholder key (case-insensitive)."""
    return bool(value) and len(value) >= MIN_SECRET_LEN and value.lower() not in PLACEHOLDER_KEYS


def secret_values(env: Mapping[str, str]) -> list[str]:
    """Return the values of ``env`` whose variable NAME looks secret.

    A name looks secret when it contains KEY, TOKEN, SECRET, PASSWORD, CREDENTIAL or AUTH
    (case-insensitive). Values shorter than 6 characters are ignored (redacting e.g. ``"1"``
    everywhere would mangle text while protecting nothing). The result is de-duplicated and
    sorted longest first, the order :func:`redact` needs.
    """
    found = {value for name, value in env.items() if is_secret(value) and _SECRET_NAME.search(name)}
    return sorted(found, key=lambda v: (-len(v), v))


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret in ``text`` with ``***``.

    Longer secrets are replaced first, so a secret containing another one is fully hidden.
    Values that are no secrets (:func:`is_secret`: empty, shorter than the guard, a placeholder
    key) are skipped, whoever passes them. Never raises for str input.
    """
    ordered = sorted({s for s in secrets if is_secret(s)}, key=len, reverse=True)
    for secret in ordered:
        text = text.replace(secret, REDACTED)
    return text
