# Multi-stage build of the `agora` binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p agora-api --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/agora agora
COPY --from=build /src/target/release/agora /usr/local/bin/agora
USER 10001
ENV AGORA__MODE=production AGORA__SERVER__BIND=0.0.0.0:8080 AGORA__DATA_DIR=/var/lib/agora
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/agora"]
CMD ["serve"]
