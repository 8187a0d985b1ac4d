# syntax=docker/dockerfile:1
# The operator image: a static (musl) binary on distroless/static, running as non-root (65532).
#
# Build args:
#   RUST_VERSION  Rust toolchain of the build stage (default 1.89, the crate's rust-version).
#   PACKAGE       workspace package to build (default hypersync-operator; tests/e2e uses mock-openai).
#   BIN           binary of that package to ship as the entrypoint (default hypersync-operator).
#   BASE_IMAGE    runtime base (default gcr.io/distroless/static-debian12:nonroot).
#   GIT_SHA       commit shown by the hypersync_build_info metric (default "unknown"; make docker-build sets it).
#
#   docker build -t ghcr.io/hypersync/hypersync-operator:dev .               (make docker-build)
#   docker build --build-arg PACKAGE=mock-openai --build-arg BIN=mock-openai -t hypersync/mock-openai:e2e .
#
# The build stage compiles natively for the platform being built (`docker buildx --platform
# linux/amd64,linux/arm64` emulates the other); the target triple is derived from `uname -m`.
ARG RUST_VERSION=1.89
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
ARG PACKAGE=hypersync-operator
ARG BIN=hypersync-operator
# The commit for hypersync_build_info (the build context has no .git): `make docker-build` passes it.
ARG GIT_SHA=unknown
ENV HYPERSYNC_GIT_SHA=${GIT_SHA}
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# ring (rustls) compiles C: musl-gcc for the musl target. The build fails if the binary is not
# static (distroless/static has no libc). The cache mounts keep the registry and the
# target directory between builds; the binary is copied out of the mount.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eu; \
    target="$(uname -m)-unknown-linux-musl"; \
    rustup target add "$target"; \
    cc_var="CC_$(echo "$target" | tr - _)"; \
    export "$cc_var=musl-gcc"; \
    cargo build --locked --release --target "$target" -p "$PACKAGE" --bin "$BIN"; \
    mkdir -p /out; \
    cp "target/$target/release/$BIN" /out/entrypoint; \
    if ldd /out/entrypoint 2>/dev/null | grep -q '=>'; then echo "not static" >&2; exit 1; fi

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.source="https://github.com/hypersync/hypersync-operator" \
      org.opencontainers.image.description="HyperSync Operator: AI model and agent orchestration" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/entrypoint /usr/local/bin/entrypoint
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/entrypoint"]
