#!/usr/bin/env bash
# Start (or reuse) a local Redis on 127.0.0.1:${HERALD_REDIS_PORT:-6390}.
# Uses Debian's redis-server package (installed with apt-get if missing); runs our own
# instance, not the system service. No persistence (--save '' --appendonly no).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=redis
PORT="${HERALD_REDIS_PORT:-6390}"
ADDR="$HOST:$PORT"
TIMEOUT="${HERALD_REDIS_START_TIMEOUT:-30}"

redis_ready() {
  [[ $(redis-cli -h "$HOST" -p "$PORT" ping 2>/dev/null) == PONG ]]
}

# redis-cli comes with redis-server (package redis-tools); check it first so the reuse
# probe can run.
apt_install redis-server redis-server
apt_install redis-cli redis-tools

reuse_if_running "$NAME" "$ADDR" redis_ready "$TIMEOUT" "$PORT"

# zset-max-listpack-entries 1024: a full home timeline (800 entries plus the
# completeness marker) stays in the compact listpack encoding, about 13 bytes
# an entry instead of about 98 in a skiplist (docs/benchmarks.md).
launch "$NAME" "$(command -v redis-server)" \
  --port "$PORT" --bind "$HOST" --save '' --appendonly no \
  --zset-max-listpack-entries 1024 \
  --dir "$(datadir "$NAME")" --daemonize no --protected-mode yes
wait_ready "$NAME" "$ADDR" redis_ready "$TIMEOUT"
say "  $(redis-server --version)"
