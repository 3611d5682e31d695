#!/usr/bin/env bash
# A local three-node NATS cluster with JetStream for `make cluster HA=1`. Clients log in as
# nats.sh's: the user herald with the password in secrets/nats-password; a client without it
# is refused. The nodes' routes log in to each other as the user route, with the password in
# secrets/nats-route-password.
#
#   nats-cluster.sh start      start (or reuse) the three nodes; waits until each is healthy with
#                              JetStream, takes Herald's login, and knows the JetStream meta leader
#   nats-cluster.sh start N    start node N only (after kill N), and wait until it is healthy
#   nats-cluster.sh stop [N]   stop all nodes (or node N): TERM, then KILL after HERALD_STOP_TIMEOUT
#   nats-cluster.sh kill N     KILL node N (a crash, for drills); if it was the JetStream meta
#                              leader, waits for a new one and prints how long that took
#   nats-cluster.sh status     each node: pid, health, routes, the meta leader
#   nats-cluster.sh env        export HERALD_NATS_URL=<the three nodes>
#
# Node N (1-3) takes clients on 127.0.0.1:4260+N, routes on 6260+N and serves HTTP monitoring on
# 8260+N (HERALD_NATS_HA_PORT_BASE, default 4260, moves the client ports; the others follow at
# +2000 and +4000). Its JetStream store, config, pidfile and log are data/nats-ha-N/,
# conf/nats-ha-N.conf (0600: it holds the passwords; rewritten when the node starts),
# run/nats-ha-N.pid and logs/nats-ha-N.log. The store is kept across stop and start.
# HERALD_LOCAL_DIR moves all of them (and secrets/), for a private set on ports of its own.
#
# HERALD_NATS_SYNC is each node's JetStream sync_interval, taking effect at the node's next
# start: always (the default: an fsync before every ack, so that an acked message outlives a
# power cut of all three nodes at once), a duration such as 10s (fsync that often), or
# default (the server's own, an fsync every 2 minutes: an acked message lives in three page
# caches until then).
set -euo pipefail
# nats.sh, sourced, starts nothing: it defines the build version, the password file and the
# login probe (nats_connect, nats_login), which asks $PORT, set below to each node's.
source "$(dirname "${BASH_SOURCE[0]}")/nats.sh"

NODES=3
PORT_BASE="${HERALD_NATS_HA_PORT_BASE:-4260}"
CLUSTER_NAME=herald-ha
ROUTE_USER=route
ROUTE_PASSWORD_FILE=$(secret nats-route-password)
SYNC="${HERALD_NATS_SYNC:-always}"
SYNC_CONF="" # the line in each node's jetstream block, after a newline
if [[ $SYNC != default ]]; then
  [[ $SYNC == always || $SYNC =~ ^([0-9]+(ms|s|m|h))+$ ]] ||
    die "HERALD_NATS_SYNC: want always, default or a duration such as 10s, got '$SYNC'"
  SYNC_CONF=$'\n  sync_interval: "'"$SYNC"'"'
fi

client_port() { echo $((PORT_BASE + $1)); }
route_port() { echo $((PORT_BASE + 2000 + $1)); }
monitor_port() { echo $((PORT_BASE + 4000 + $1)); }
node_name() { echo "nats-ha-$1"; }
server_name() { echo "herald-ha-$1"; }

URLS=""
for ((n = 1; n <= NODES; n++)); do URLS+="${URLS:+,}nats://$HOST:$(client_port "$n")"; done

# meta_leader N: print the server name of the JetStream meta leader as node N sees it (/jsz),
# or return 1 if it knows none.
meta_leader() {
  local leader
  leader=$(curl -sf --max-time 2 "http://$HOST:$(monitor_port "$1")/jsz" 2>/dev/null |
    jq -r '.meta_cluster.leader // empty' 2>/dev/null) || return 1
  [[ -n $leader ]] && printf '%s\n' "$leader"
}

# The readiness probe of wait_ready takes no arguments; PROBE says which node (PORT too, for
# nats_login). Ready: healthy with JetStream, Herald's login works and no other does, and the
# node knows the meta leader.
PROBE=
node_ready() {
  curl -sf --max-time 2 "http://$HOST:$(monitor_port "$PROBE")/healthz?js-enabled-only=true" >/dev/null &&
    nats_login && meta_leader "$PROBE" >/dev/null
}

# write_node_config N: node N's config, written whole with mode 0600.
write_node_config() {
  local n=$1 m routes="" route_password
  route_password=$(<"$ROUTE_PASSWORD_FILE")
  for ((m = 1; m <= NODES; m++)); do
    routes+="${routes:+, }\"nats-route://$ROUTE_USER:$route_password@$HOST:$(route_port "$m")\""
  done
  write_private "$CONF_DIR/$(node_name "$n").conf" <<CONF
# Written by deploy/local/nats-cluster.sh when the node starts; edits are lost.
server_name: $(server_name "$n")
listen: "$HOST:$(client_port "$n")"
http: "$HOST:$(monitor_port "$n")"
jetstream {
  store_dir: "$(datadir "$(node_name "$n")")"$SYNC_CONF
}
authorization {
  users: [{user: "$SERVICE_USER", password: "$(<"$PASSWORD_FILE")"}]
}
cluster {
  name: $CLUSTER_NAME
  listen: "$HOST:$(route_port "$n")"
  authorization {
    user: "$ROUTE_USER"
    password: "$route_password"
  }
  routes: [$routes]
}
CONF
}

# launch_node N: start node N, unless it runs.
launch_node() {
  local n=$1 name port conf
  name=$(node_name "$n")
  if server_pid "$name" >/dev/null; then
    say "$name already running (pid $(server_pid "$name")) at nats://$HOST:$(client_port "$n")"
    return 0
  fi
  rm -f "$(pidfile "$name")"
  for port in "$(client_port "$n")" "$(route_port "$n")" "$(monitor_port "$n")"; do
    port_open "$port" && die "$name: port $HOST:$port is in use by a process these scripts did not start; free it or set HERALD_NATS_HA_PORT_BASE"
  done
  conf="$CONF_DIR/$name.conf"
  write_node_config "$n"
  "$BIN_DIR/nats-server" -c "$conf" -t >/dev/null 2>&1 ||
    die "nats-server does not accept $conf: $("$BIN_DIR/nats-server" -c "$conf" -t 2>&1 | tail -n 3)"
  launch "$name" "$BIN_DIR/nats-server" -c "$conf"
}

# wait_node N: node N is ready (wait_ready exits the shell it runs in, hence the subshell, so
# that the error names the node).
wait_node() {
  PROBE=$1 PORT=$(client_port "$1")
  (wait_ready "$(node_name "$1")" "nats://$HOST:$PORT" node_ready "$TIMEOUT") ||
    die "NATS node $1 did not become ready (log: $(logfile "$(node_name "$1")"); stop the nodes with $0 stop)"
}

start_all() {
  local n
  go_install_bin nats-server "$VERSION" "github.com/nats-io/nats-server/v2@$VERSION"
  for ((n = 1; n <= NODES; n++)); do launch_node "$n"; done
  for ((n = 1; n <= NODES; n++)); do wait_node "$n"; done
  say "NATS cluster $CLUSTER_NAME ready: $URLS, JetStream meta leader $(meta_leader 1)"
  say "  login: user $SERVICE_USER, password in $PASSWORD_FILE"
}

start_one() {
  go_install_bin nats-server "$VERSION" "github.com/nats-io/nats-server/v2@$VERSION"
  launch_node "$1"
  wait_node "$1"
}

stop_nodes() {
  local n
  for ((n = NODES; n >= 1; n--)); do
    [[ -n ${1:-} && $1 != "$n" ]] || stop_server "$(node_name "$n")" "${HERALD_STOP_TIMEOUT:-30}"
  done
}

# kill_node N: KILL node N. If it was the JetStream meta leader, poll the other nodes' /jsz
# until one reports a new leader, and print how long that took (to within the ~50 ms poll).
kill_node() {
  local n=$1 name pid leader m start
  name=$(node_name "$n")
  pid=$(server_pid "$name") || die "$name is not running"
  leader=$(meta_leader "$n") || leader=""
  say "killing $name (pid $pid) with SIGKILL${leader:+; the JetStream meta leader is $leader}"
  start=$(now_ms)
  kill_wait "$name" "$pid"
  if [[ $leader != "$(server_name "$n")" ]]; then
    say "$name killed; it was not the meta leader, which stays $leader"
    return 0
  fi
  while :; do
    for ((m = 1; m <= NODES; m++)); do
      ((m == n)) && continue
      if leader=$(meta_leader "$m") && [[ $leader != "$(server_name "$n")" ]]; then
        say "$name killed; new JetStream meta leader $leader after $(($(now_ms) - start)) ms"
        return 0
      fi
    done
    (($(now_ms) - start < TIMEOUT * 1000)) || die "no new JetStream meta leader after $TIMEOUT s"
    sleep 0.05
  done
}

status() {
  local n name pid health routes leader
  for ((n = 1; n <= NODES; n++)); do
    name=$(node_name "$n")
    if ! pid=$(server_pid "$name"); then
      say "$name: stopped"
      continue
    fi
    health=$(curl -s --max-time 2 "http://$HOST:$(monitor_port "$n")/healthz?js-enabled-only=true" | jq -r '.status // "no answer"' 2>/dev/null) || health="no answer"
    routes=$(curl -sf --max-time 2 "http://$HOST:$(monitor_port "$n")/routez" | jq -r '.num_routes' 2>/dev/null) || routes="?"
    leader=$(meta_leader "$n") || leader=none
    say "$name ($(server_name "$n")): running (pid $pid) at nats://$HOST:$(client_port "$n"), health $health, $routes routes, meta leader $leader"
  done
}

print_env() {
  printf 'export HERALD_NATS_URL=%s\n' "$URLS"
}

cluster_main "$@"
