#!/usr/bin/env bash
# Start (or reuse) a local NATS server with JetStream on nats://127.0.0.1:${HERALD_NATS_PORT:-4233},
# HTTP monitoring on 127.0.0.1:${HERALD_NATS_MONITOR_PORT:-8233}.
# The binary is built with `go install` into .local/bin (Debian's nats-server is too old).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=nats
VERSION="${HERALD_NATS_VERSION:-v2.15.2}"
PORT="${HERALD_NATS_PORT:-4233}"
MONITOR_PORT="${HERALD_NATS_MONITOR_PORT:-8233}"
ADDR="nats://$HOST:$PORT"
TIMEOUT="${HERALD_NATS_START_TIMEOUT:-30}"

nats_ready() {
  curl -sf --max-time 2 "http://$HOST:$MONITOR_PORT/healthz?js-enabled-only=true" >/dev/null
}

reuse_if_running "$NAME" "$ADDR" nats_ready "$TIMEOUT" "$PORT" "$MONITOR_PORT"

go_install_bin nats-server "$VERSION" "github.com/nats-io/nats-server/v2@$VERSION"

launch "$NAME" "$BIN_DIR/nats-server" \
  -n herald-local -js -sd "$(datadir "$NAME")" \
  -a "$HOST" -p "$PORT" -m "$MONITOR_PORT"
wait_ready "$NAME" "$ADDR" nats_ready "$TIMEOUT"
say "  nats-server $("$BIN_DIR/nats-server" --version | sed 's/^nats-server: //'), monitoring http://$HOST:$MONITOR_PORT"
