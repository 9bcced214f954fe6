#!/usr/bin/env bash
# Runs the `mesh` operator binary, installing what a fresh machine lacks.
# Example: scripts/run.sh up --simulate
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_build_tools
exec cargo run --release --quiet --bin mesh -- "$@"
