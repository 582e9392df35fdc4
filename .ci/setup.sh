#!/usr/bin/env bash
# Shared set-up for the README's two commands: a virtualenv with the package, and (for the
# tests, as root on Debian/Ubuntu) the real components the integration tests use.
# Sourced by .ci/drill and .ci/test; safe to run again (it only does what is missing).
set -euo pipefail

X402_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${X402_VENV:-$X402_ROOT/.venv}"

log() { printf '[x402console setup] %s\n' "$*" >&2; }

is_root() { [ "$(id -u)" = 0 ]; }

apt_install() {
  # Installs the Debian packages that are missing; only as root on a Debian-like system.
  local missing=() pkg
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if ! is_root || ! command -v apt-get >/dev/null 2>&1; then
    log "not root or no apt-get: cannot install ${missing[*]}"
    return 1
  fi
  log "installing ${missing[*]}"
  if [ -z "${X402_APT_UPDATED:-}" ]; then
    apt-get update -qq >/dev/null || log "apt-get update failed; trying with the lists there are"
    export X402_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_python() {
  local py="${PYTHON:-python3}"
  if ! "$py" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    log "Python 3.11 or newer is needed (found: $("$py" --version 2>&1 || echo none))"
    exit 1
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    if ! "$py" -m venv "$VENV" 2>/dev/null; then
      apt_install python3-venv || { log "cannot create a virtualenv: install python3-venv"; exit 1; }
      "$py" -m venv "$VENV"
    fi
  fi
  # Reinstall only when pyproject.toml changed since the last install.
  local stamp="$VENV/.x402console-installed"
  if [ ! -f "$stamp" ] || [ "$X402_ROOT/pyproject.toml" -nt "$stamp" ]; then
    log "installing x402console and its dependencies into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$X402_ROOT[test]"
    touch "$stamp"
  fi
}

ensure_components() {
  # The real components of the integration tests. As a normal user: use what is there.
  if is_root && command -v apt-get >/dev/null 2>&1; then
    apt_install docker.io prometheus nginx-light tmux sqlite3 ca-certificates || log "some packages could not be installed"
  fi
  ensure_dockerd
}

ensure_dockerd() {
  if docker info >/dev/null 2>&1; then
    return 0
  fi
  if ! is_root || ! command -v dockerd >/dev/null 2>&1; then
    log "no Docker engine answers and none can be started here: Docker tests will skip (fail under CI=true)"
    return 0
  fi
  log "starting dockerd"
  # No bridge and no iptables: the project's containers use host networking on 127.0.0.1.
  nohup dockerd --bridge=none --iptables=false --ip6tables=false \
    >/var/log/x402console-dockerd.log 2>&1 &
  local i
  for i in $(seq 1 60); do
    docker info >/dev/null 2>&1 && { log "dockerd is up"; return 0; }
    sleep 0.5
  done
  log "dockerd did not come up; see /var/log/x402console-dockerd.log"
  tail -n 20 /var/log/x402console-dockerd.log >&2 || true
}
