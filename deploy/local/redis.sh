#!/usr/bin/env bash
# Start (or reuse) a local Redis on 127.0.0.1:${HERALD_REDIS_PORT:-6390}.
# Uses Debian's redis-server package (installed with apt-get if missing); runs our own
# instance, not the system service. No persistence (--save '' --appendonly no).
# Clients log in as the ACL user herald, with the password in secrets/redis-password; the
# default user is off, so a client without that login gets NOAUTH.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=redis
PORT="${HERALD_REDIS_PORT:-6390}"
ADDR="$HOST:$PORT"
TIMEOUT="${HERALD_REDIS_START_TIMEOUT:-30}"
PASSWORD_FILE=$(secret redis-password)
CONF="$CONF_DIR/redis.conf"

# rcli ARGS...: redis-cli logged in as Herald's user. The password goes through the
# environment (REDISCLI_AUTH), not the command line.
rcli() {
  REDISCLI_AUTH=$(<"$PASSWORD_FILE") redis-cli -h "$HOST" -p "$PORT" --user "$SERVICE_USER" "$@"
}

# redis_answers: the server replies to PING at all, be it PONG or NOAUTH.
redis_answers() {
  [[ -n $(redis-cli -h "$HOST" -p "$PORT" ping 2>/dev/null) ]]
}

# redis_ready: Herald's user gets PONG, and a client without a login does not.
redis_ready() {
  [[ $(rcli ping 2>/dev/null) == PONG && $(redis-cli -h "$HOST" -p "$PORT" ping 2>/dev/null) != PONG ]]
}

# write_config: the ACL, in a config file (0600) that holds the password's SHA-256 (Redis's
# #<hash> form), not the password. The default user is reset, which turns it off. herald
# may use every key and channel and every command but the @dangerous ones (FLUSHALL,
# FLUSHDB, CONFIG, DEBUG, SHUTDOWN, MONITOR, SAVE, REPLICAOF, ACL changes, ...), save INFO
# (bench-ceiling.sh and BenchmarkCeiling read INFO cpu) and KEYS (TestRedisRestart lists a
# deployment's keys). Nothing in Herald or its tests flushes or reconfigures Redis: the
# cluster tests restart it with stop.sh and this script.
write_config() {
  local hash
  hash=$(tr -d '\n' <"$PASSWORD_FILE" | sha256sum | cut -d' ' -f1)
  write_private "$CONF" <<CONF
# Written by deploy/local/redis.sh at each start; edits are lost.
user default reset
user $SERVICE_USER reset on #$hash ~* &* +@all -@dangerous +info +keys
CONF
}

# redis-cli comes with redis-server (package redis-tools); check it first so the reuse
# probe can run.
apt_install redis-server redis-server
apt_install redis-cli redis-tools

stop_if_stale "$NAME" redis_answers redis_ready
reuse_if_running "$NAME" "$ADDR" redis_ready "$TIMEOUT" "$PORT"

write_config
# zset-max-listpack-entries 1024: a full home timeline (800 entries plus the
# completeness marker) stays in the compact listpack encoding, about 13 bytes
# an entry instead of about 98 in a skiplist (docs/benchmarks.md).
launch "$NAME" "$(command -v redis-server)" "$CONF" \
  --port "$PORT" --bind "$HOST" --save '' --appendonly no \
  --zset-max-listpack-entries 1024 \
  --dir "$(datadir "$NAME")" --daemonize no --protected-mode yes
wait_ready "$NAME" "$ADDR" redis_ready "$TIMEOUT"
say "  $(redis-server --version)"
say "  login: user $SERVICE_USER, password in $PASSWORD_FILE"
