# syntax=docker/dockerfile:1
#
# ringwatch container image: a two-stage build.
#
#   docker build -t ringwatch .
#   docker run --rm -p 127.0.0.1:9466:9466 -p 127.0.0.1:9467:9467 ringwatch
#
# The image's entrypoint is the binary; the default command is `run` (the
# daemon). Other commands work the same way, for example
#   docker run --rm ringwatch check-config
#   docker run --rm ringwatch simulate --url ws://HOST:9467/v1/events --realtime
# A config file can be mounted and given with `--config`:
#   docker run ... -v ./ringwatch.toml:/etc/ringwatch/ringwatch.toml:ro \
#       ringwatch --config /etc/ringwatch/ringwatch.toml run
# See docs/deployment.md.

# ---- build ------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
# build.rs embeds the revision in ringwatch_build_info; .git is not in the
# build context (.dockerignore), so pass it (a build argument is in the
# environment of RUN):
#   docker build --build-arg RINGWATCH_REVISION=$(git rev-parse --short=12 HEAD) .
ARG RINGWATCH_REVISION=unknown
COPY . .
# The cache mounts keep the registry and the target directory between builds
# (BuildKit, the default builder since Docker 23). The binary is copied out of
# the cached target directory because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin ringwatch \
    && install -D -m 0755 target/release/ringwatch /out/ringwatch \
    && install -d -m 0700 /out/data

# ---- runtime ----------------------------------------------------------------
# distroless/cc: glibc, libgcc and CA certificates, no shell, no package
# manager. ringwatch needs nothing else (no TLS library: it serves plain HTTP
# and WebSocket). The :nonroot tag runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ringwatch /usr/local/bin/ringwatch
# The journal and snapshots (docs/durability.md). Mount a volume here to keep
# the state across containers: docker run -v ringwatch-data:/var/lib/ringwatch
COPY --from=build --chown=65532:65532 /out/data /var/lib/ringwatch
ENV RINGWATCH__DURABILITY__DIR=/var/lib/ringwatch
VOLUME /var/lib/ringwatch
# ringwatch binds loopback by default; in a container it must listen on all
# interfaces so that the published ports (and other containers) reach it.
ENV RINGWATCH__INGEST__LISTEN=0.0.0.0:9467
ENV RINGWATCH__HTTP__LISTEN=0.0.0.0:9466
# Numeric user, so that Kubernetes' runAsNonRoot can check it.
USER 65532:65532
# 9467: WebSocket ingest (ws://HOST:9467/v1/events); 9466: /metrics, /healthz, /readyz.
EXPOSE 9466 9467
# No HEALTHCHECK: a Docker HEALTHCHECK runs a command inside the container,
# and distroless has no shell, no curl and no wget to fetch /healthz with
# (ringwatch has no self-probe command either). Probe from outside instead:
# Kubernetes' httpGet probes on /healthz and /readyz (deploy/kubernetes/),
# Prometheus' `up` for the scrape, or `curl http://127.0.0.1:9466/healthz` on
# the host for a published port.
#
# SIGTERM starts the graceful drain (shutdown.drain_timeout, 10 s by default):
# give `docker stop` more than that, e.g. `docker stop -t 30` or
# stop_grace_period in compose (deploy/docker-compose.yml sets 30s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ringwatch"]
CMD ["run"]
