# syntax=docker/dockerfile:1
#
# agentroom relay image.
#
#   docker build -t agentroom .
#   docker run -d -p 127.0.0.1:8787:8787 -v agentroom-data:/data agentroom
#
# Two stages: a Rust builder (libsodium is built from the source vendored in
# libsodium-sys-stable and linked statically, SQLite is bundled by rusqlite and TLS
# roots come from webpki-roots), then a slim Debian runtime that holds only the
# binary. The runtime needs no apt packages: the health check below uses bash's
# /dev/tcp instead of curl, so the image stays small and has nothing to pin.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /src
# The whole context (.dockerignore keeps out target/, .git, databases and .env):
# the build may read migrations/ or protocol/ beside src/, and Cargo needs every
# declared target (benches/) to exist.
COPY . .
# The cache mounts keep the registry and target/ across builds (BuildKit); the
# binary is copied out in the same step because a cache mount is not in the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin agentroom \
    && install -D -m 0755 target/release/agentroom /out/agentroom

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# A fixed, unprivileged uid/gid (10001) so a bind-mounted ./data can be chowned to
# match, and so orchestrators that check runAsNonRoot see a numeric user.
RUN groupadd --system --gid 10001 agentroom \
    && useradd --system --uid 10001 --gid agentroom --home-dir /data \
       --shell /usr/sbin/nologin agentroom \
    && install -d -o agentroom -g agentroom -m 0700 /data
COPY --from=builder /out/agentroom /usr/local/bin/agentroom

# Inside the container the relay must listen on every interface so the published
# port reaches it; the host decides exposure with the `ports:` mapping.
ENV BIND=0.0.0.0 \
    PORT=8787 \
    AGENTROOM_DB=/data/agentroom.db \
    LOG_LEVEL=info
VOLUME ["/data"]
EXPOSE 8787
USER 10001:10001
WORKDIR /data

# Healthy only when GET /health answers 200 (it answers 503 "degraded" when SQLite
# does not respond). bash's /dev/tcp speaks the one HTTP/1.0 request; no curl needed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT:-8787} && printf 'GET /health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q '^HTTP/1\\.[01] 200 '"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["agentroom"]
CMD ["relay"]
