#!/usr/bin/env bash
# Installs everything rollouts needs on a fresh Debian/Ubuntu machine with Docker Engine:
#   - system packages: mmdebstrap (builds the base image from the host's Debian mirror, no registry)
#   - a virtualenv in .venv with the project, the embedded local model and the test tools
# Idempotent: a second run only checks. Needs root (or sudo) for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
command -v git >/dev/null 2>&1 || missing+=(git)
command -v docker >/dev/null 2>&1 || missing+=(docker.io)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
# test tools: the HTML report and the viewer are checked in headless Chromium; the nightly script with shellcheck
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)  # view's selenium tests
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v flock >/dev/null 2>&1 || missing+=(util-linux)
# the model gateway's network: host rules that let a sandbox reach only the gateway
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
# the Modal contract-suite variant runs its stand-in sandboxes under dumb-init, as Modal does
command -v dumb-init >/dev/null 2>&1 || missing+=(dumb-init)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    log "starting the Docker daemon"
    ($SUDO service docker start || $SUDO systemctl start docker || true) >/dev/null 2>&1
    for _ in $(seq 1 30); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { log "Docker daemon is not reachable (docker info failed)"; exit 3; }
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    log "creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
stamp=".venv/.rollouts-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    log "installing the project with extras local,dev,modal (pip)"
    if ! { .venv/bin/python -m pip install -q --upgrade pip \
           && .venv/bin/python -m pip install -q -e '.[local,dev,modal,agents]'; } > .venv/pip.log 2>&1; then
        tail -n 40 .venv/pip.log
        log "pip install failed (full log: .venv/pip.log)"
        exit 1
    fi
    touch "$stamp"
fi
# Byte-compile the project: an editable install does not, and with PYTHONDONTWRITEBYTECODE set
# (common in CI images) every command would recompile ~50 modules (~50 ms of its fixed cost).
.venv/bin/python -m compileall -q -j 0 rollouts scripts >/dev/null
log "ready: .venv/bin/eval-rollouts --help"
