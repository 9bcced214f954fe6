# Builds the `mesh` binary. Used by docker-compose.yml and deploy/k8s: every
# role runs this one image as `mesh serve <role>`.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev libssl-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --bin mesh

FROM debian:bookworm-slim
# curl: the compose healthchecks GET each role's /ready (`mesh status`
# exits 0 whenever /live answers, so it cannot tell ready from starting).
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl libcurl4 libssl3 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/mesh /usr/local/bin/mesh
# /models: where `mesh train` writes the model files that fraud and recommend
# hot-reload. Owned by the runtime user so a fresh named volume mounted here
# inherits a directory that user can write.
RUN mkdir -p /models && chown 65534:65534 /models
USER 65534
ENTRYPOINT ["/usr/local/bin/mesh"]
CMD ["up"]
