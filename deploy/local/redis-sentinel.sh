#!/usr/bin/env bash
# A local Redis under Sentinel, for failover tests and drills: a primary and a replica, and
# three Sentinels that watch them under the master name herald.
#   redis-sentinel.sh [start]   start (or reuse) all five servers, and wait until the
#                               Sentinels know each other and the replica
#   redis-sentinel.sh stop      stop them, Sentinels first (so that they fail nothing over)
#   redis-sentinel.sh status    who is primary per each Sentinel, and each node's role
#   redis-sentinel.sh kill-primary
#                               SIGKILL the current primary (per the Sentinels), for drills;
#                               `start` brings it back as a replica
#   redis-sentinel.sh env       the variables a client needs: eval "$(redis-sentinel.sh env)"
#
# Ports: nodes on 127.0.0.1:${HERALD_REDIS_HA_PORT:-6490} (the first primary) and the next
# port (its replica); Sentinels on ${HERALD_REDIS_SENTINEL_PORT:-26490} and the next two.
# Which node is primary changes with each failover: ask the Sentinels (status).
#
# Uses Debian's redis-server (redis.sh installs it); Sentinels are redis-server --sentinel.
# No persistence, like redis.sh: a killed node comes back empty, and is started as a replica
# of the current primary so that it never serves (or hands the replica) an empty dataset.
#
# Logins: the ACL user herald with the password in secrets/redis-password (the same as
# redis.sh's), on the nodes and on the Sentinels; the default user is off on both. Sentinels
# log in to the nodes, and to each other, as herald; the replica logs in to the primary as
# herald. That is why herald here may also run the replication and Sentinel commands (PSYNC,
# REPLICAOF, CONFIG, CLIENT, ...) that redis.sh's herald may not.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MASTER_NAME=herald
NODE_PORT="${HERALD_REDIS_HA_PORT:-6490}"
SENTINEL_PORT="${HERALD_REDIS_SENTINEL_PORT:-26490}"
NODES=(redis-ha-0 redis-ha-1)
SENTINELS=(redis-sentinel-0 redis-sentinel-1 redis-sentinel-2)
TIMEOUT="${HERALD_REDIS_START_TIMEOUT:-30}"
PASSWORD_FILE=$(secret redis-password)
# Redis and Sentinel rewrite their config files at run time (CONFIG REWRITE, which leaves
# them mode 0644 less the umask), and these files hold the password in plain text (masterauth,
# sentinel auth-pass): keep them in a directory only we can read, and start the servers
# under umask 077.
HA_CONF_DIR="$CONF_DIR/redis-ha"
mkdir -p "$HA_CONF_DIR"
chmod 700 "$HA_CONF_DIR"
umask 077

# port NAME: the port of a node or Sentinel.
port() {
  case $1 in
    redis-ha-[0-9]) printf '%s\n' $((NODE_PORT + ${1#redis-ha-})) ;;
    redis-sentinel-[0-9]) printf '%s\n' $((SENTINEL_PORT + ${1#redis-sentinel-})) ;;
    *) die "unknown server $1" ;;
  esac
}

# node_at PORT: the node listening on PORT, or nothing.
node_at() {
  local n
  for n in "${NODES[@]}"; do
    [[ $(port "$n") == "$1" ]] && printf '%s\n' "$n"
  done
  return 0
}

# rcli PORT ARGS...: redis-cli on PORT logged in as Herald's user; the password goes through
# the environment (REDISCLI_AUTH), not the command line.
rcli() {
  local p=$1
  shift
  REDISCLI_AUTH=$(<"$PASSWORD_FILE") redis-cli -h "$HOST" -p "$p" --user "$SERVICE_USER" "$@"
}

# The probes below act on the server at CUR_PORT, since wait_ready and stop_if_stale take
# a command without arguments.
CUR_PORT=

# answers: the server replies to PING at all, be it PONG or NOAUTH.
answers() { [[ -n $(redis-cli -h "$HOST" -p "$CUR_PORT" ping 2>/dev/null) ]]; }

# logged_in: Herald's user gets PONG, and a client without a login does not.
logged_in() {
  [[ $(rcli "$CUR_PORT" ping 2>/dev/null) == PONG && $(redis-cli -h "$HOST" -p "$CUR_PORT" ping 2>/dev/null) != PONG ]]
}

# node_ready: logged_in, and a replica's link to its primary is up (so that a failover
# right after start has a synced replica to promote).
node_ready() {
  logged_in || return 1
  local info
  info=$(rcli "$CUR_PORT" info replication 2>/dev/null | tr -d '\r')
  grep -qx 'role:master' <<<"$info" || grep -qx 'master_link_status:up' <<<"$info"
}

# sentinel_ready: logged_in, and the Sentinel names a primary for herald.
sentinel_ready() {
  logged_in && [[ -n $(master_per_sentinel "$CUR_PORT") ]]
}

# master_per_sentinel PORT: the primary's host:port per the Sentinel on PORT, or nothing.
master_per_sentinel() {
  local out
  out=$(rcli "$1" --raw sentinel get-master-addr-by-name "$MASTER_NAME" 2>/dev/null | tr -d '\r') || return 0
  (($(wc -l <<<"$out") == 2)) || return 0
  printf '%s:%s\n' "$(sed -n 1p <<<"$out")" "$(sed -n 2p <<<"$out")"
}

# role PORT: master, slave, or nothing if the node does not answer.
role() {
  rcli "$1" --raw role 2>/dev/null | head -n 1 | tr -d '\r'
}

# current_primary: the port of the running node that is primary: the one the Sentinels name,
# if it runs and says it is a master, else any running node that says so; nothing if none.
current_primary() {
  local s addr p n
  for s in "${SENTINELS[@]}"; do
    server_pid "$s" >/dev/null || continue
    addr=$(master_per_sentinel "$(port "$s")")
    [[ -n $addr ]] || continue
    p=${addr##*:}
    if [[ -n $(node_at "$p") && $(role "$p") == master ]]; then
      printf '%s\n' "$p"
      return 0
    fi
  done
  for n in "${NODES[@]}"; do
    p=$(port "$n")
    server_pid "$n" >/dev/null || continue
    if [[ $(role "$p") == master ]]; then
      printf '%s\n' "$p"
      return 0
    fi
  done
  return 0
}

# write_node_config NAME PRIMARY_PORT: NAME's config; a replica of PRIMARY_PORT unless that
# is NAME's own port. It holds the password's SHA-256 for the ACL and the password itself
# for masterauth, which has no hashed form. herald gets redis.sh's rights plus what the
# Sentinels and the replica need on a node (the commands Sentinel's documentation lists for
# its user, and the replication handshake). repl-diskless-sync-delay 0: a replica that
# (re)joins gets its full sync at once, not after the default 5 s wait for more replicas.
write_node_config() {
  local name=$1 primary=$2 p hash password
  p=$(port "$name")
  hash=$(tr -d '\n' <"$PASSWORD_FILE" | sha256sum | cut -d' ' -f1)
  password=$(<"$PASSWORD_FILE")
  {
    cat <<CONF
# Written by deploy/local/redis-sentinel.sh at each start of a stopped node; Redis rewrites
# it at run time (replicaof after a failover); edits are lost.
port $p
bind $HOST
protected-mode yes
daemonize no
dir $(datadir "$name")
save ""
appendonly no
zset-max-listpack-entries 1024
repl-diskless-sync-delay 0
user default reset
user $SERVICE_USER reset on #$hash ~* &* +@all -@dangerous +info +keys +role +client +config +slaveof +replicaof +psync +sync +replconf
masteruser $SERVICE_USER
masterauth $password
CONF
    if [[ $primary != "$p" ]]; then
      printf 'replicaof %s %s\n' "$HOST" "$primary"
    fi
  } | write_private "$HA_CONF_DIR/$name.conf"
}

# myid NAME: a Sentinel's run id, made once and kept in its data dir, so that a Sentinel
# started on a fresh config is the same Sentinel to the others.
myid() {
  local f
  f="$(datadir "$1")/myid"
  mkdir -p "$(datadir "$1")"
  chmod 700 "$(datadir "$1")"
  if [[ ! -s $f ]]; then
    od -An -N20 -tx1 /dev/urandom | tr -d ' \n' | write_private "$f"
  fi
  cat "$f"
}

# write_sentinel_config NAME PRIMARY_PORT: a fresh config for a Sentinel watching the
# primary on PRIMARY_PORT. The Sentinel rewrites it with what it learns (replicas, the other
# Sentinels, failovers), so it is written only when the Sentinel is stopped.
write_sentinel_config() {
  local name=$1 primary=$2 hash password id
  hash=$(tr -d '\n' <"$PASSWORD_FILE" | sha256sum | cut -d' ' -f1)
  password=$(<"$PASSWORD_FILE")
  id=$(myid "$name")
  write_private "$HA_CONF_DIR/$name.conf" <<CONF
# Written by deploy/local/redis-sentinel.sh at each start of a stopped Sentinel; the
# Sentinel rewrites it at run time; edits are lost.
port $(port "$name")
bind $HOST
protected-mode yes
daemonize no
dir $(datadir "$name")
sentinel myid $id
user default reset
user $SERVICE_USER reset on #$hash ~* &* +@all
sentinel sentinel-user $SERVICE_USER
sentinel sentinel-pass $password
sentinel monitor $MASTER_NAME $HOST $primary 2
sentinel auth-user $MASTER_NAME $SERVICE_USER
sentinel auth-pass $MASTER_NAME $password
sentinel down-after-milliseconds $MASTER_NAME 2000
sentinel failover-timeout $MASTER_NAME 10000
sentinel parallel-syncs $MASTER_NAME 1
CONF
}

# ensure NAME PROBE WRITE_CONFIG [ARGS...]: reuse NAME if it runs with Herald's login
# (waiting for PROBE), else write its config (WRITE_CONFIG NAME ARGS...) and start it.
ensure() {
  local name=$1 probe=$2 write=$3 pid
  shift 3
  CUR_PORT=$(port "$name")
  stop_if_stale "$name" answers logged_in
  if pid=$(server_pid "$name"); then
    say "$name already running (pid $pid)"
    wait_ready "$name" "$HOST:$CUR_PORT" "$probe" "$TIMEOUT"
    return 0
  fi
  rm -f "$(pidfile "$name")"
  if port_open "$CUR_PORT"; then
    die "$name: port $HOST:$CUR_PORT is already in use by a process this script did not start; free it or pick other ports (HERALD_REDIS_HA_PORT, HERALD_REDIS_SENTINEL_PORT)"
  fi
  "$write" "$name" "$@"
  if [[ $name == redis-sentinel-* ]]; then
    launch "$name" "$(command -v redis-server)" "$HA_CONF_DIR/$name.conf" --sentinel
  else
    launch "$name" "$(command -v redis-server)" "$HA_CONF_DIR/$name.conf"
  fi
  wait_ready "$name" "$HOST:$CUR_PORT" "$probe" "$TIMEOUT"
}

# field NAME: from the key/value lines of a --raw SENTINEL reply on stdin, the value of every
# key NAME, one a line.
field() { awk -v k="$1" 'prev == k { print } { prev = $0 }'; }

# sentinels_settled: every Sentinel sees the primary up, the other two Sentinels, and every
# other node up as a replica, so a failover from now on has its quorum and a replica to
# promote (and a node just restarted has rejoined).
sentinels_settled() {
  local s out
  for s in "${SENTINELS[@]}"; do
    out=$(rcli "$(port "$s")" --raw sentinel master "$MASTER_NAME" 2>/dev/null | tr -d '\r') || return 1
    [[ $(field flags <<<"$out") == master ]] || return 1
    [[ $(field num-other-sentinels <<<"$out") == $((${#SENTINELS[@]} - 1)) ]] || return 1
    out=$(rcli "$(port "$s")" --raw sentinel replicas "$MASTER_NAME" 2>/dev/null | tr -d '\r') || return 1
    [[ $(field flags <<<"$out" | grep -cx slave) == $((${#NODES[@]} - 1)) ]] || return 1
  done
}

start() {
  apt_install redis-server redis-server
  apt_install redis-cli redis-tools
  local n s primary running=0 start_ms
  for n in "${NODES[@]}"; do
    if server_pid "$n" >/dev/null; then running=1; fi
  done
  if ((running == 0)); then
    # No node runs: whatever running Sentinels remember is stale. Start over.
    for s in "${SENTINELS[@]}"; do
      if server_pid "$s" >/dev/null; then stop_server "$s" "${HERALD_STOP_TIMEOUT:-30}"; fi
    done
  fi
  if ((running == 1)) && [[ -z $(current_primary) ]]; then
    # A node runs but none is primary: a failover is under way. A node started now as a
    # primary would be an empty one, which the replicas would then copy.
    say "no running node is primary yet (a failover under way?); waiting up to ${TIMEOUT} s"
    start_ms=$(now_ms)
    until [[ -n $(current_primary) ]]; do
      (($(now_ms) - start_ms < TIMEOUT * 1000)) || die "no running node became primary in ${TIMEOUT} s; see $0 status"
      sleep 0.2
    done
  fi
  for n in "${NODES[@]}"; do
    primary=$(current_primary)
    # With no primary yet (no node runs), the first node becomes it; every later one
    # replicates it.
    [[ -n $primary ]] || primary=$(port "$n")
    ensure "$n" node_ready write_node_config "$primary"
  done
  primary=$(current_primary)
  [[ -n $primary ]] || die "no node is primary; see $LOG_DIR/redis-ha-*.log"
  for s in "${SENTINELS[@]}"; do
    ensure "$s" sentinel_ready write_sentinel_config "$primary"
  done
  start_ms=$(now_ms)
  say "waiting for the Sentinels to find each other and the replica ..."
  until sentinels_settled; do
    if (($(now_ms) - start_ms > TIMEOUT * 1000)); then
      status >&2
      die "the Sentinels did not settle in ${TIMEOUT} s; see $LOG_DIR/redis-sentinel-*.log"
    fi
    sleep 0.2
  done
  say "  (Sentinels settled in $(( ($(now_ms) - start_ms) / 1000 )) s)"
  say "primary: $HOST:$primary; Sentinels: $(sentinel_addrs) (master name $MASTER_NAME)"
  say "  $(redis-server --version)"
  say "  login (nodes and Sentinels): user $SERVICE_USER, password in $PASSWORD_FILE"
  say "  client variables: eval \"\$($0 env)\""
}

stop() {
  local s n
  for s in "${SENTINELS[@]}"; do stop_server "$s" "${HERALD_STOP_TIMEOUT:-30}"; done
  for n in "${NODES[@]}"; do stop_server "$n" "${HERALD_STOP_TIMEOUT:-30}"; done
}

status() {
  local s n p addr pid
  for s in "${SENTINELS[@]}"; do
    p=$(port "$s")
    if ! pid=$(server_pid "$s"); then
      say "$s ($HOST:$p): not running"
      continue
    fi
    addr=$(master_per_sentinel "$p")
    say "$s ($HOST:$p, pid $pid): primary ${addr:-unknown}"
  done
  for n in "${NODES[@]}"; do
    p=$(port "$n")
    if ! pid=$(server_pid "$n"); then
      say "$n ($HOST:$p): not running"
      continue
    fi
    say "$n ($HOST:$p, pid $pid): $(role "$p" | sed 's/^slave$/replica/;s/^master$/primary/;s/^$/not answering/')"
  done
}

# kill_primary: SIGKILL the node the Sentinels name as primary, by its pidfile.
kill_primary() {
  local s addr='' name pid
  for s in "${SENTINELS[@]}"; do
    server_pid "$s" >/dev/null || continue
    addr=$(master_per_sentinel "$(port "$s")")
    [[ -z $addr ]] || break
  done
  [[ -n $addr ]] || die "no running Sentinel names a primary for $MASTER_NAME; start them with $0 start"
  name=$(node_at "${addr##*:}")
  [[ -n $name ]] || die "the Sentinels name $addr, which is none of this script's nodes"
  pid=$(server_pid "$name") || die "$name ($addr), the primary per the Sentinels, is not running (a failover may be under way; see $0 status)"
  say "killing $name ($addr, pid $pid) with SIGKILL"
  kill -KILL "$pid"
  local i
  for ((i = 0; i < 100; i++)); do
    pid_exited "$pid" && break
    sleep 0.1
  done
  pid_exited "$pid" || die "$name (pid $pid) did not exit after KILL"
  rm -f "$(pidfile "$name")"
  say "$name killed; bring it back as a replica with $0 start"
}

sentinel_addrs() {
  local s out=()
  for s in "${SENTINELS[@]}"; do out+=("$HOST:$(port "$s")"); done
  (IFS=,; printf '%s\n' "${out[*]}")
}

env_vars() {
  printf 'export HERALD_REDIS_SENTINELS=%s\n' "$(sentinel_addrs)"
  printf 'export HERALD_REDIS_MASTER=%s\n' "$MASTER_NAME"
  printf 'export HERALD_REDIS_USER=%s\n' "$SERVICE_USER"
  printf 'export HERALD_REDIS_PASSWORD_FILE=%q\n' "$PASSWORD_FILE"
  if [[ -n ${HERALD_LOCAL_DIR:-} ]]; then printf 'export HERALD_LOCAL_DIR=%q\n' "$HERALD_LOCAL_DIR"; fi
  if [[ -n ${HERALD_SECRETS_DIR:-} ]]; then printf 'export HERALD_SECRETS_DIR=%q\n' "$HERALD_SECRETS_DIR"; fi
  if [[ -n ${HERALD_REDIS_HA_PORT:-} ]]; then printf 'export HERALD_REDIS_HA_PORT=%q\n' "$HERALD_REDIS_HA_PORT"; fi
  if [[ -n ${HERALD_REDIS_SENTINEL_PORT:-} ]]; then printf 'export HERALD_REDIS_SENTINEL_PORT=%q\n' "$HERALD_REDIS_SENTINEL_PORT"; fi
}

case ${1:-start} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  kill-primary) kill_primary ;;
  env) env_vars ;;
  *) die "usage: $0 [start|stop|status|kill-primary|env]" ;;
esac
