#!/usr/bin/env bash
# Start (or reuse) a local NATS server with JetStream on nats://127.0.0.1:${HERALD_NATS_PORT:-4233},
# HTTP monitoring on 127.0.0.1:${HERALD_NATS_MONITOR_PORT:-8233}.
# The binary is built with `go install` into .local/bin (Debian's nats-server is too old).
# Clients log in as the user herald, with the password in secrets/nats-password; the server
# refuses a client without it (Authorization Violation).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=nats
VERSION="${HERALD_NATS_VERSION:-v2.15.2}"
PORT="${HERALD_NATS_PORT:-4233}"
MONITOR_PORT="${HERALD_NATS_MONITOR_PORT:-8233}"
ADDR="nats://$HOST:$PORT"
TIMEOUT="${HERALD_NATS_START_TIMEOUT:-30}"
PASSWORD_FILE=$(secret nats-password)
CONF="$CONF_DIR/nats.conf"
USERS_CONF="$SECRETS_DIR/nats-users.conf"

nats_healthy() {
  curl -sf --max-time 2 "http://$HOST:$MONITOR_PORT/healthz?js-enabled-only=true" >/dev/null
}

# nats_connect [PASSWORD]: a client connects (as Herald's user with PASSWORD, or without a
# login), i.e. gets PONG to its PING. It speaks the start of the NATS protocol from bash
# (INFO, CONNECT, PING; a refused client gets -ERR 'Authorization Violation' instead), so
# that the password stays out of every command line.
nats_connect() {
  local login='' line
  (($# == 0)) || login=$(printf ',"user":"%s","pass":"%s"' "$SERVICE_USER" "$1")
  (
    exec 3<>"/dev/tcp/$HOST/$PORT" || exit 1
    IFS= read -r -t 3 line <&3 && [[ $line == INFO* ]] || exit 1
    printf 'CONNECT {"verbose":false,"pedantic":false%s}\r\nPING\r\n' "$login" >&3
    IFS= read -r -t 3 line <&3 && [[ $line == PONG* ]]
  ) 2>/dev/null
}

# nats_login: Herald's user connects, and a client without a login does not. (A server
# without authorization lets in every client, a login or not.)
nats_login() {
  nats_connect "$(<"$PASSWORD_FILE")" && ! nats_connect
}

nats_ready() { nats_healthy && nats_login; }

# write_config: the server's settings in conf/nats.conf, which includes the login from
# secrets/nats-users.conf (0600; an include path is relative to the including file). The
# user may publish and subscribe to every subject, JetStream's API included.
write_config() {
  write_private "$USERS_CONF" <<CONF
# Written by deploy/local/nats.sh at each start; edits are lost.
authorization {
  users: [{user: "$SERVICE_USER", password: "$(<"$PASSWORD_FILE")"}]
}
CONF
  cat >"$CONF" <<CONF
# Written by deploy/local/nats.sh at each start; edits are lost.
server_name: herald-local
listen: "$HOST:$PORT"
http: "$HOST:$MONITOR_PORT"
jetstream {
  store_dir: "$(datadir "$NAME")"
}
include "$(realpath --relative-to="$CONF_DIR" "$USERS_CONF")"
CONF
}

# Sourced (nats-cluster.sh does), it only defines the settings and functions above.
[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0

stop_if_stale "$NAME" nats_healthy nats_login
reuse_if_running "$NAME" "$ADDR" nats_ready "$TIMEOUT" "$PORT" "$MONITOR_PORT"

go_install_bin nats-server "$VERSION" "github.com/nats-io/nats-server/v2@$VERSION"

write_config
"$BIN_DIR/nats-server" -c "$CONF" -t >/dev/null 2>&1 ||
  die "nats-server does not accept $CONF: $("$BIN_DIR/nats-server" -c "$CONF" -t 2>&1 | tail -n 3)"
launch "$NAME" "$BIN_DIR/nats-server" -c "$CONF"
wait_ready "$NAME" "$ADDR" nats_ready "$TIMEOUT"
say "  nats-server $("$BIN_DIR/nats-server" --version | sed 's/^nats-server: //'), monitoring http://$HOST:$MONITOR_PORT"
say "  login: user $SERVICE_USER, password in $PASSWORD_FILE"
