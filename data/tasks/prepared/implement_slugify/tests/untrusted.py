"""Call functions of the agent's module in a separate process, as an unprivileged user.

The hidden tests must not import the agent's code into the pytest process: code that runs
there could forge pytest's results (write junit.xml, ``os._exit(0)``). Each call here starts
``python3`` as uid/gid 65534 (``nobody``, by number: no user database the agent could edit is
consulted), loads the module by path, runs one function on JSON arguments and prints a JSON
result. The agent's code can only decide what its function returns or raises — which is what is
tested. It can read neither the hidden tests (``/tests`` is root-only) nor write the verifier's
output.

Fail closed: if the privileges cannot be dropped (the verifier is not root, ``setpriv`` fails),
if the unprivileged user can read this tests directory, or cannot read the module (e.g. a
symlink into ``/proc``), nothing runs as root instead: the reason is written to
``$LOGS_DIR/integrity_error.txt`` (the harness then records a counted agent failure,
``GradingIntegrityError``) and the call raises. Running these tests outside a sandbox (a
developer's machine, ``tests/test_example_tasks.py``) needs the explicit ``UNTRUSTED_SAME_USER=1``
(the harness never sets it, and nothing in a workspace can set the verifier's environment).
"""

import builtins
import functools
import json
import os
import subprocess
import sys

_CHILD = r"""
import importlib.util, json, sys
path, name, payload = sys.argv[1], sys.argv[2], json.loads(sys.stdin.read())
def arg(v):
    return iter(v["__iter__"]) if isinstance(v, dict) and "__iter__" in v else v
try:
    spec = importlib.util.spec_from_file_location("agent_module", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = {"value": getattr(mod, name)(*map(arg, payload["args"]),
                                       **{k: arg(v) for k, v in payload["kwargs"].items()})}
except BaseException as e:
    out = {"error": type(e).__name__, "message": str(e)}
sys.stdout.write("\n" + json.dumps(out))
"""


DROP = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
CHILD_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}


class IntegrityError(RuntimeError):
    """The agent's code cannot be run with the guarantees above: nothing ran."""


def _fail_closed(why: str):
    logs = os.environ.get("LOGS_DIR", "/logs/verifier")
    try:
        with open(os.path.join(logs, "integrity_error.txt"), "a") as f:
            f.write(why + "\n")
    except OSError:
        pass
    raise IntegrityError(why)


def _as_nobody(*argv: str) -> int:
    try:
        return subprocess.run([*DROP, *argv], capture_output=True, timeout=30, cwd="/", env=CHILD_ENV).returncode
    except (OSError, subprocess.SubprocessError) as e:
        return -1 if isinstance(e, OSError) else -2


@functools.cache
def _drop_privileges(path: str) -> list:
    """The ``setpriv`` prefix that runs a command as uid 65534; fails closed (module docstring)."""
    if os.environ.get("UNTRUSTED_SAME_USER") == "1":
        return []
    if os.geteuid() != 0:
        _fail_closed(f"the verifier is not root (euid {os.geteuid()}): cannot drop privileges to run {path}")
    if _as_nobody("true") != 0:
        _fail_closed("setpriv cannot switch to uid 65534: refusing to run the agent's code as root")
    here = os.path.dirname(os.path.abspath(__file__))
    if _as_nobody("test", "-r", os.path.join(here, os.path.basename(__file__))) == 0:
        _fail_closed(f"the unprivileged user can read the hidden tests in {here}: refusing to run the agent's code")
    if not os.path.lexists(path):
        raise FileNotFoundError(f"{path} does not exist")
    if _as_nobody("test", "-r", path) != 0:
        _fail_closed(f"the unprivileged user cannot read {path} (missing, unreadable, or a link it may not follow)")
    return DROP


def _plain(v):
    if isinstance(v, (list, tuple, dict, str, int, float, bool)) or v is None:
        return v
    return {"__iter__": list(v)}  # generators and other iterables


class Untrusted:
    """``Untrusted(path).func(*args, **kwargs)`` runs ``func`` of the module at ``path`` in a
    child process; builtin exceptions it raises are raised again here (others: RuntimeError)."""

    def __init__(self, path):
        self.path = str(path)

    def __getattr__(self, name):
        def call(*args, **kwargs):
            payload = json.dumps({"args": [_plain(a) for a in args],
                                  "kwargs": {k: _plain(v) for k, v in kwargs.items()}})
            p = subprocess.run(
                [*_drop_privileges(self.path), sys.executable, "-I", "-c", _CHILD, self.path, name],
                input=payload, capture_output=True, text=True, timeout=60, cwd="/", env=CHILD_ENV,
            )
            lines = p.stdout.strip().splitlines()
            try:
                out = json.loads(lines[-1])
            except (IndexError, ValueError):
                raise RuntimeError(f"{name}() gave no result (exit {p.returncode}): {p.stderr[-500:]}") from None
            if "error" in out:
                exc = getattr(builtins, out["error"], None)
                if not (isinstance(exc, type) and issubclass(exc, Exception)):
                    exc = RuntimeError
                raise exc(out["message"])
            return out["value"]

        return call
