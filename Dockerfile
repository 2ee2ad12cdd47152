# replay in a container: a multi-stage build, a small non-root runtime with `pg_dump`.
#
#   docker build -t replay --build-arg REPLAY_COMMIT=$(git rev-parse --short=12 HEAD) .
#   docker run --rm -e DATABASE_URL -e AMQP_URL -v "$PWD/plans:/plans:ro" replay \
#     apply /plans/replay-failed-events.yaml --dry-run
#
# The build step is the command CI runs (`cargo build --release --locked`), so CI exercises it.

FROM rust:1.95-bookworm AS build
WORKDIR /src
ARG REPLAY_COMMIT=""
ENV REPLAY_COMMIT=${REPLAY_COMMIT}
COPY . .
RUN cargo build --release --locked \
 && install -m 0755 target/release/replay /usr/local/bin/replay

FROM debian:bookworm-slim
# pg_dump for `backup.pg_dump` (keep its major at or above the servers' majors: 15 here); the
# CA bundle for TLS to managed PostgreSQL and RabbitMQ.
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-15 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /work --create-home replay
COPY --from=build /usr/local/bin/replay /usr/local/bin/replay
USER 10001:10001
WORKDIR /work
ENTRYPOINT ["replay"]
CMD ["--help"]
