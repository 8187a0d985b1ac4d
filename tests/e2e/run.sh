#!/usr/bin/env bash
# The kind end-to-end story (make e2e-kind). Needs Docker, kind and kubectl on PATH; Helm comes from
# tools/install-helm.sh. Not runnable on the development machines (no Docker there).
#
# 1. create a kind cluster (tests/e2e/kind-config.yaml), unless it exists;
# 2. build the operator image and the mock OpenAI server image (tests/mock-openai) with the repo's
#    Dockerfile and load both into kind;
# 3. helm install the chart (--wait: the operator is Ready only after its caches synced);
# 4. apply the CPU-only seed scenario (tests/e2e/samples) and assert the story:
#    the on-demand engine stays at 0 replicas with no agent; the AgentNode gets its placement
#    annotations; the on-demand engine is provisioned (1 ready replica of the mock server); the agent
#    (stood in for by kubectl impersonating the agent's own ServiceAccount, which also proves the
#    per-agent Role) reports its objective; the node reports ObjectiveMet and dissolves after its TTL;
#    the idle engine scales back to 0.
#
# Env: CLUSTER (default hypersync-e2e), KEEP_CLUSTER=1 keeps the cluster afterwards, NS (default e2e).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLUSTER="${CLUSTER:-hypersync-e2e}"
NS="${NS:-e2e}"
OPERATOR_IMAGE="ghcr.io/hypersync/hypersync-operator:e2e"
MOCK_IMAGE="hypersync/mock-openai:e2e"
HELM="$ROOT/.tools/bin/helm"
KUBECTL=(kubectl --context "kind-$CLUSTER")

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "e2e: failed to find $tool on PATH" >&2; exit 1; }
done
bash "$ROOT/tools/install-helm.sh"

fail() {
  echo "e2e FAILED: $*" >&2
  "${KUBECTL[@]}" -n "$NS" get hypersync,deploy,jobs,pods -o wide >&2 || true
  "${KUBECTL[@]}" -n "$NS" get events --sort-by=.lastTimestamp >&2 || true
  "${KUBECTL[@]}" -n hypersync-system logs deploy/hypersync-hypersync-operator --tail=100 >&2 || true
  exit 1
}

# Polls `$2` (a shell command) every 2 s until it succeeds or `$1` seconds pass.
eventually() {
  local timeout=$1; shift
  local deadline=$((SECONDS + timeout))
  until eval "$1" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out after ${timeout}s waiting for: $2"
    sleep 2
  done
  echo "ok: $2"
}

cleanup() {
  if [[ "${KEEP_CLUSTER:-0}" != 1 ]]; then kind delete cluster --name "$CLUSTER"; fi
}

if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --config "$ROOT/tests/e2e/kind-config.yaml" --wait 120s
fi
trap cleanup EXIT

docker build -t "$OPERATOR_IMAGE" "$ROOT"
docker build --build-arg PACKAGE=mock-openai --build-arg BIN=mock-openai -t "$MOCK_IMAGE" "$ROOT"
kind load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE" "$MOCK_IMAGE"

"$HELM" --kube-context "kind-$CLUSTER" upgrade --install hypersync "$ROOT/charts/hypersync-operator" \
  --namespace hypersync-system --create-namespace --wait --timeout 3m \
  --set image.repository="${OPERATOR_IMAGE%:*}" --set image.tag="${OPERATOR_IMAGE##*:}" \
  --set image.pullPolicy=IfNotPresent --set logging.format=text

"${KUBECTL[@]}" create namespace "$NS" --dry-run=client -o yaml | "${KUBECTL[@]}" apply -f -
# Models and the recipe first, so the on-demand engine can be seen idle before any agent exists.
rendered="$(mktemp)"
kubectl kustomize "$ROOT/tests/e2e/samples" > "$rendered"
python3 - "$rendered" <<'PY'
import sys
docs = open(sys.argv[1]).read().split("\n---\n")
open(sys.argv[1] + ".models", "w").write("\n---\n".join(d for d in docs if "kind: AgentNode" not in d))
open(sys.argv[1] + ".node", "w").write("\n---\n".join(d for d in docs if "kind: AgentNode" in d))
PY
"${KUBECTL[@]}" -n "$NS" apply -f "$rendered.models"

engine() {
  "${KUBECTL[@]}" -n "$NS" get deploy -l hypersync.io/model-entry=deepseek-coder-33b -o "jsonpath={.items[0].$1}"
}
eventually 120 '[[ "$(engine spec.replicas)" == 0 ]]' "on-demand engine deepseek-coder-33b exists with 0 replicas"
eventually 180 '"${KUBECTL[@]}" -n "$NS" get deploy -l hypersync.io/model-entry=embedding-v3 -o jsonpath="{.items[0].status.readyReplicas}" | grep -qx 1' \
  "always-on engine embedding-v3 is ready (the mock OpenAI server passes vLLM's /health probes)"

"${KUBECTL[@]}" -n "$NS" apply -f "$rendered.node"
node_field() { "${KUBECTL[@]}" -n "$NS" get agentnode security-analyst -o "jsonpath=$1"; }
eventually 120 '[[ -n "$(node_field "{.metadata.annotations.hypersync\.io/r}")" && -n "$(node_field "{.metadata.annotations.hypersync\.io/theta-degrees}")" ]]' \
  "AgentNode has placement annotations hypersync.io/r and hypersync.io/theta-degrees"
eventually 60 '[[ -n "$(node_field "{.status.placement.r}")" ]]' "AgentNode status.placement is set"
eventually 240 '[[ "$(engine spec.replicas)" == 1 && "$(engine status.readyReplicas)" == 1 ]]' \
  "on-demand engine deepseek-coder-33b provisioned: 1 ready replica"
eventually 120 '"${KUBECTL[@]}" -n "$NS" get pods -l hypersync.io/agent-node=security-analyst -o jsonpath="{.items[*].status.phase}" | grep -Eq "Running|Succeeded"' \
  "the agent pod runs"

# The agent reports its objective with its own identity: only its Role allows this patch.
"${KUBECTL[@]}" -n "$NS" patch agentnode security-analyst --subresource=status --type=merge \
  -p '{"status":{"objective":{"observed":10}}}' \
  --as="system:serviceaccount:$NS:security-analyst-agent"
# And the same identity may not touch another object.
if "${KUBECTL[@]}" -n "$NS" auth can-i patch agentstacks --as="system:serviceaccount:$NS:security-analyst-agent" | grep -qx yes; then
  fail "the agent's ServiceAccount may patch AgentStacks"
fi
eventually 60 '[[ "$(node_field "{.status.conditions[?(@.type==\"ObjectiveMet\")].status}")" == True ]] || ! "${KUBECTL[@]}" -n "$NS" get agentnode security-analyst' \
  "AgentNode reports ObjectiveMet"
eventually 120 '! "${KUBECTL[@]}" -n "$NS" get agentnode security-analyst' \
  "the ephemeral AgentNode dissolved (ttlSecondsAfterObjectiveMet 10)"
eventually 240 '[[ "$(engine spec.replicas)" == 0 ]]' \
  "the idle on-demand engine scaled back to 0 (idleSeconds 60)"

echo "e2e: the story passed"
