# Builds the `mesh` binary. Used by docker-compose.yml and deploy/k8s.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev libssl-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --bin mesh

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libcurl4 libssl3 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/mesh /usr/local/bin/mesh
USER 65534
ENTRYPOINT ["/usr/local/bin/mesh"]
CMD ["up"]
