# The Tenantry image: one static-ish binary on a slim Debian, run as a non-root user.
#
#   docker build -t tenantry .
#       compiles in the Rust image, then copies the binary into the runtime image;
#   docker build --target prebuilt --build-arg BINARY=target/release/tenantry -t tenantry .
#       packs a binary built beforehand (`cargo build --release`), without a toolchain
#       (BINARY names a file called `tenantry` in the build context).
#
# The base images are build arguments, so the same file builds on a local base image (an
# air-gapped registry, or `debootstrap` + `docker import` as CI does).
ARG RUST_IMAGE=rust:1-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# What every variant shares: the user, the data volume, the defaults, the health check.
FROM ${RUNTIME_IMAGE} AS runtime
RUN groupadd --system --gid 10001 tenantry \
 && useradd --system --uid 10001 --gid tenantry --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin tenantry \
 && mkdir -p /data \
 && chown tenantry:tenantry /data
# Configuration is by environment only; these are the image's defaults (SQLite in /data).
ENV DATA_DIR=/data \
    HOST=0.0.0.0 \
    PORT=4000 \
    LOG_FORMAT=json
WORKDIR /data
VOLUME ["/data"]
EXPOSE 4000
USER tenantry:tenantry
# `tenantry healthcheck` asks /health on $PORT (the image has no curl).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["tenantry", "healthcheck"]
ENTRYPOINT ["tenantry"]
CMD ["serve"]

# A binary built beforehand, from the build context (its file name must be `tenantry`).
# The classic builder (no BuildKit) builds every stage of a plain `docker build .`, this one
# too: the glob lets it pass without a binary (Cargo.lock is always there), and only the
# `prebuilt` target needs one. The binary is copied once (one layer).
FROM scratch AS prebuilt-files
ARG BINARY=target/release/tenantry
COPY Cargo.lock ${BINARY}* /prebuilt/

FROM runtime AS prebuilt
ARG BINARY=target/release/tenantry
USER root
COPY --from=prebuilt-files /prebuilt/ /usr/local/bin/
RUN rm -f /usr/local/bin/Cargo.lock; \
    [ -x /usr/local/bin/tenantry ] \
    || echo "no binary at $BINARY in the build context: cargo build --release first" >&2
USER tenantry:tenantry

# The toolchain stage of the default build.
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tenantry \
 && strip target/release/tenantry \
 && cp target/release/tenantry /tenantry

# The default: the runtime with the binary compiled above.
FROM runtime
COPY --from=build /tenantry /usr/local/bin/tenantry
