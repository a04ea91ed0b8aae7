# syntax=docker/dockerfile:1
# Turnpike's three programs in one small image: `gateway`, `provider-sandbox`, `settlement`.
# Build: docker build -t turnpike .   Run: see deploy/compose.yaml (and docs/deploy.md).

# ---- build ----
FROM rust:1.89-slim-bookworm AS build
WORKDIR /src
# Cargo's registry and the target directory are cached between builds (BuildKit).
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p gateway -p provider-sandbox -p settlement \
    && mkdir -p /out \
    && cp target/release/gateway target/release/provider-sandbox target/release/settlement /out/

# ---- run ----
FROM debian:bookworm-slim
# ca-certificates: the provider's HTTPS; curl: the health check.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=20230311* curl=7.88.* \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 turnpike \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/turnpike --create-home turnpike
COPY --from=build /out/ /usr/local/bin/
# The sandbox's development keys (never a production provider's).
COPY provider-sandbox/dev-keys/ /usr/share/turnpike/dev-keys/
USER 10001:10001
WORKDIR /var/lib/turnpike
# The gateway's ops listener; compose overrides the check for the sandbox and settlement.
EXPOSE 8443 8444 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["curl", "-fsS", "http://127.0.0.1:9090/healthz"]
ENTRYPOINT ["/usr/local/bin/gateway"]
CMD ["serve"]
