#!/bin/bash
# Verifier: run the hidden pytest suite against the workspace and write
# $LOGS_DIR/reward.json = {"reward": 1.0 only if every test passed else 0.0,
#                          "tests_passed": N, "tests_total": M}.
# Paths can be overridden (for running outside the sandbox); defaults match the harness.
# The whole script is one function, parsed before any line runs: nothing written to this file
# while it runs can change what it does (bash otherwise reads scripts incrementally).
main() {
    TESTS_DIR="${TESTS_DIR:-/tests}"
    LOGS_DIR="${LOGS_DIR:-/logs/verifier}"
    WORKSPACE="${WORKSPACE:-/workspace}"
    export TESTS_DIR LOGS_DIR WORKSPACE
    mkdir -p "$LOGS_DIR"
    cd "$TESTS_DIR" || exit 1

    # -c /dev/null + --rootdir/--confcutdir: no ini file or conftest.py from the workspace is used.
    python3 -m pytest -q -p no:cacheprovider -c /dev/null --rootdir="$TESTS_DIR" \
        --confcutdir="$TESTS_DIR" --junitxml="$LOGS_DIR/junit.xml" "$TESTS_DIR"
    status=$?

    python3 - "$LOGS_DIR" "$status" <<'PY'
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

logs, status = Path(sys.argv[1]), int(sys.argv[2])
total = failed = 0
try:
    root = ET.parse(logs / "junit.xml").getroot()
    suites = [root] if root.tag == "testsuite" else root.iter("testsuite")
    for s in suites:
        total += int(s.get("tests", 0))
        failed += int(s.get("failures", 0)) + int(s.get("errors", 0)) + int(s.get("skipped", 0))
except (OSError, ET.ParseError):
    pass
passed = max(total - failed, 0)
reward = 1.0 if status == 0 and total > 0 and passed == total else 0.0
result = {"reward": reward, "tests_passed": passed, "tests_total": total}
(logs / "reward.json").write_text(json.dumps(result) + "\n")
print("verifier:", json.dumps(result))
PY
    return "$status"
}
main "$@"; exit $?  # one line: read whole before it runs
