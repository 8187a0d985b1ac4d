#!/usr/bin/env bash
# Installs the Python-based lint/validation tools into a venv at <workspace>/.tools/venv (PyPI only):
#   yamllint             (YAML lint for charts, kustomize and CI files)
#   kubernetes-validate  (offline schema validation of Kubernetes manifests)
# Their entry points are linked into <workspace>/.tools/bin.
#
# Idempotent: skips the install when both tools already run from the venv at the pinned versions.
# Usage: tools/install-python-tools.sh [--force]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROOT}/.tools/venv"
BIN_DIR="${ROOT}/.tools/bin"

YAMLLINT_VERSION="1.38.0"
KUBERNETES_VALIDATE_VERSION="1.37.0"

force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "install-python-tools: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

installed_ok() {
  [[ -x "$VENV/bin/python" ]] || return 1
  "$VENV/bin/python" - "$YAMLLINT_VERSION" "$KUBERNETES_VALIDATE_VERSION" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
ok = version("yamllint") == sys.argv[1] and version("kubernetes-validate") == sys.argv[2]
sys.exit(0 if ok else 1)
PY
}

if [[ $force -eq 0 ]] && installed_ok; then
  echo "python tools already installed in $VENV"
else
  PYTHON="${PYTHON:-$(command -v python3 || command -v python || true)}"
  if [[ -z "$PYTHON" ]]; then
    echo "install-python-tools: failed to find python3" >&2
    exit 1
  fi
  if [[ $force -eq 1 ]]; then
    rm -rf "$VENV"
  fi
  if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "yamllint==${YAMLLINT_VERSION}" "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}"
fi

mkdir -p "$BIN_DIR"
ln -sf "../venv/bin/yamllint" "$BIN_DIR/yamllint"
ln -sf "../venv/bin/kubernetes-validate" "$BIN_DIR/kubernetes-validate"

echo "yamllint: $("$BIN_DIR/yamllint" --version)"
echo "kubernetes-validate: $("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("kubernetes-validate"))')"
