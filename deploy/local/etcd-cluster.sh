#!/usr/bin/env bash
# A local three-member etcd cluster for `make cluster HA=1`, with the same authentication as
# etcd.sh's single member: the user root administers, Herald logs in as herald, whose role
# herald may read and write the keys under HERALD_ETCD_KEY_PREFIXES; the same password files
# (secrets/etcd-root-password, secrets/etcd-password).
#
#   etcd-cluster.sh start      start (or reuse) the three members; waits until each answers
#                              `etcdctl endpoint health` with Herald's login
#   etcd-cluster.sh start N    start member N only (after kill N), and wait until it is healthy
#   etcd-cluster.sh stop [N]   stop all members (or member N): TERM, then KILL after HERALD_STOP_TIMEOUT
#   etcd-cluster.sh kill N     KILL member N (a crash, for drills); if it led, waits for a new
#                              leader among the others and prints how long that took
#   etcd-cluster.sh status     `etcdctl endpoint status -w table`, and which member leads
#   etcd-cluster.sh env        export HERALD_ETCD_ENDPOINTS=<the three members>
#
# Member N (1-3) serves clients on 127.0.0.1:2389+2N (2391, 2393, 2395) and peers on the port
# after it (2392, 2394, 2396); HERALD_ETCD_HA_PORT_BASE (default 2389) moves them all. Its data,
# pidfile and log are data/etcd-ha-N/, run/etcd-ha-N.pid and logs/etcd-ha-N.log. The data is
# kept across stop and start, as etcd.sh keeps its own: remove all three data dirs, with the
# members stopped, to start afresh.
set -euo pipefail
# etcd.sh, sourced, builds nothing and starts nothing: it defines build_etcd, the login set-up
# (etcd_auth, etcd_login), the password files and the key prefixes. Its etcdctl (ctl) talks to
# $CLIENT_URL, which is set below to the three members.
source "$(dirname "${BASH_SOURCE[0]}")/etcd.sh"

MEMBERS=3
PORT_BASE="${HERALD_ETCD_HA_PORT_BASE:-2389}"
CLUSTER_TOKEN=herald-local-ha

client_port() { echo $((PORT_BASE + 2 * $1)); }
peer_port() { echo $((PORT_BASE + 2 * $1 + 1)); }
member_name() { echo "etcd-ha-$1"; }
member_url() { echo "http://$HOST:$(client_port "$1")"; }

INITIAL_CLUSTER=""
ENDPOINTS=""
CLIENT_URL=""
for ((n = 1; n <= MEMBERS; n++)); do
  INITIAL_CLUSTER+="${INITIAL_CLUSTER:+,}ha-$n=http://$HOST:$(peer_port "$n")"
  ENDPOINTS+="${ENDPOINTS:+,}$HOST:$(client_port "$n")"
  CLIENT_URL+="${CLIENT_URL:+,}$(member_url "$n")"
done

# The readiness probe of wait_ready takes no arguments; PROBE_URL says which member. /health
# reports true only once the member has a leader, that is once a quorum runs.
PROBE_URL=
member_ready() {
  [[ $(curl -sf --max-time 2 "$PROBE_URL/health" 2>/dev/null) == *'"health":"true"'* ]]
}

# member_arg N: N, checked to be a member number.
member_arg() {
  if [[ ! ${1:-} =~ ^[1-9][0-9]*$ ]] || (($1 > MEMBERS)); then
    die "member number: want 1-$MEMBERS, got '${1:-}'"
  fi
  echo "$1"
}

# has_data N: member N's data dir holds an etcd member (a WAL and snapshots).
has_data() { [[ -d $(datadir "$(member_name "$1")")/member ]]; }

# check_data N: member N may start. A member with data rejoins the cluster it belongs to
# (etcd then ignores the --initial-cluster flags); a member without data joins a new cluster
# only if none of the others has data either: an empty member among members with data would
# be a stranger to their cluster. Checked for every member before any starts, since a member
# writes its data dir at once.
check_data() {
  local m
  has_data "$1" && return 0
  for ((m = 1; m <= MEMBERS; m++)); do
    has_data "$m" && die "$(member_name "$1") has no data but $(member_name "$m") has: start afresh with $0 stop && rm -rf $DATA_ROOT/etcd-ha-*"
  done
  return 0
}

# launch_member N: start member N, unless it runs.
# jwt_keys: the RSA key pair the members sign and check auth tokens with, made once in the
# secrets dir. etcd's default "simple" tokens live in the memory of the member that issued
# them: a client whose member restarts, or that moves to another member, holds a token no
# member knows, and a long-running call (a watch, an election's campaign) then fails with
# "invalid auth token". A JWT signed with a key every member shares is valid on all of them,
# and across restarts (until its TTL).
JWT_KEY="$SECRETS_DIR/etcd-jwt.key"
jwt_keys() {
  [[ -s $JWT_KEY && -s $JWT_KEY.pub ]] && return 0
  (
    umask 077
    mkdir -p "$SECRETS_DIR"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$JWT_KEY.$$.tmp" 2>/dev/null
    openssl pkey -in "$JWT_KEY.$$.tmp" -pubout -out "$JWT_KEY.pub" 2>/dev/null
    mv "$JWT_KEY.$$.tmp" "$JWT_KEY"
  ) || die "making the etcd JWT key pair in $SECRETS_DIR with openssl failed"
}

launch_member() {
  local n=$1 name port
  name=$(member_name "$n")
  if server_pid "$name" >/dev/null; then
    say "$name already running (pid $(server_pid "$name")) at $(member_url "$n")"
    return 0
  fi
  rm -f "$(pidfile "$name")"
  jwt_keys
  for port in "$(client_port "$n")" "$(peer_port "$n")"; do
    port_open "$port" && die "$name: port $HOST:$port is in use by a process these scripts did not start; free it or set HERALD_ETCD_HA_PORT_BASE"
  done
  launch "$name" "$BIN_DIR/etcd" \
    --name "ha-$n" --data-dir "$(datadir "$name")" \
    --listen-client-urls "$(member_url "$n")" --advertise-client-urls "$(member_url "$n")" \
    --listen-peer-urls "http://$HOST:$(peer_port "$n")" \
    --initial-advertise-peer-urls "http://$HOST:$(peer_port "$n")" \
    --initial-cluster "$INITIAL_CLUSTER" --initial-cluster-state new \
    --initial-cluster-token "$CLUSTER_TOKEN" \
    --auth-token "jwt,pub-key=$JWT_KEY.pub,priv-key=$JWT_KEY,sign-method=RS256,ttl=10m" \
    --log-level warn
}

# wait_member N: member N reports healthy (wait_ready exits the shell it runs in, hence the
# subshell, so that the error names the member).
wait_member() {
  PROBE_URL=$(member_url "$1")
  (wait_ready "$(member_name "$1")" "$PROBE_URL" member_ready "$TIMEOUT") ||
    die "etcd member $1 did not become healthy (log: $(logfile "$(member_name "$1")"); stop the members with $0 stop)"
}

# healthy_with_login: `etcdctl endpoint health` succeeds on every member, logged in as Herald.
healthy_with_login() {
  ctl "$SERVICE_USER" "$PASSWORD_FILE" endpoint health >/dev/null 2>&1
}

start_all() {
  local n start
  build_etcd
  for ((n = 1; n <= MEMBERS; n++)); do
    server_pid "$(member_name "$n")" >/dev/null || check_data "$n"
  done
  for ((n = 1; n <= MEMBERS; n++)); do launch_member "$n"; done
  for ((n = 1; n <= MEMBERS; n++)); do wait_member "$n"; done
  etcd_auth
  start=$(now_ms)
  until healthy_with_login; do
    (($(now_ms) - start < TIMEOUT * 1000)) ||
      die "etcdctl endpoint health as $SERVICE_USER fails on $CLIENT_URL: $(ctl "$SERVICE_USER" "$PASSWORD_FILE" endpoint health 2>&1 | tail -n 3)"
    sleep 0.5
  done
  say "etcd cluster ready: $ENDPOINTS (login: user $SERVICE_USER, password in $PASSWORD_FILE)"
}

start_one() {
  build_etcd
  server_pid "$(member_name "$1")" >/dev/null || check_data "$1"
  launch_member "$1"
  wait_member "$1"
}

stop_members() {
  local n
  for ((n = MEMBERS; n >= 1; n--)); do
    [[ -n ${1:-} && $1 != "$n" ]] || stop_server "$(member_name "$n")" "${HERALD_STOP_TIMEOUT:-30}"
  done
}

# leader_of ENDPOINTS: print the client URL of the member that the members at ENDPOINTS (a
# comma-separated list) report as leader; return 1 if none reports one. The member IDs are
# compared as text: they are 64-bit, more than jq's numbers hold exactly.
leader_of() {
  local out
  out=$(ETCDCTL_USER=$SERVICE_USER ETCDCTL_PASSWORD=$(<"$PASSWORD_FILE") \
    "$BIN_DIR/etcdctl" --endpoints="$1" --dial-timeout=1s --command-timeout=2s \
    endpoint status -w fields 2>/dev/null) || true
  # One paragraph per endpoint; the IDs compared as strings ("" appended), not as numbers.
  awk -v RS= '
    {
      ep = id = lead = ""
      n = split($0, line, "\n")
      for (i = 1; i <= n; i++) {
        split(line[i], kv, " : ")
        if (kv[1] == "\"Endpoint\"") { ep = kv[2]; gsub(/"/, "", ep) }
        if (kv[1] == "\"MemberID\"") id = kv[2] ""
        if (kv[1] == "\"Leader\"") lead = kv[2] ""
      }
      if (ep != "" && lead != "0" && id == lead) { print ep; found = 1; exit }
    }
    END { exit !found }
  ' <<<"$out"
}

# kill_member N: KILL member N. If it was the leader, poll the other members until one of
# them leads, and print how long the cluster went without a leader (as seen by this poll:
# each round is one etcdctl run, so the figure is an upper bound to within ~50 ms).
kill_member() {
  local n=$1 name pid leader others="" m start i
  name=$(member_name "$n")
  pid=$(server_pid "$name") || die "$name is not running"
  leader=$(leader_of "$CLIENT_URL") || leader=""
  for ((m = 1; m <= MEMBERS; m++)); do
    ((m == n)) || others+="${others:+,}$(member_url "$m")"
  done
  say "killing $name (pid $pid) with SIGKILL${leader:+; the leader is $leader}"
  start=$(now_ms)
  kill -KILL "$pid"
  for ((i = 0; i < 100; i++)); do
    pid_exited "$pid" && break
    sleep 0.1
  done
  pid_exited "$pid" || die "$name (pid $pid) did not exit after KILL"
  rm -f "$(pidfile "$name")"
  if [[ $leader != "$(member_url "$n")" ]]; then
    say "$name killed; it did not lead, and the leader stays $leader"
    return 0
  fi
  until leader=$(leader_of "$others"); do
    (($(now_ms) - start < TIMEOUT * 1000)) || die "no new leader among $others after $TIMEOUT s"
    sleep 0.05
  done
  say "$name killed; new leader $leader after $(($(now_ms) - start)) ms"
}

# status: the members' processes, then `etcdctl endpoint status` of the running ones. (Asked
# with a login, etcdctl fails as a whole when its Authenticate call picks a member that is
# down, so the stopped members are left out.)
status() {
  local n name pid leader live=""
  for ((n = 1; n <= MEMBERS; n++)); do
    name=$(member_name "$n")
    if pid=$(server_pid "$name"); then
      say "$name: running (pid $pid) at $(member_url "$n")"
      live+="${live:+,}$(member_url "$n")"
    else
      say "$name: stopped"
    fi
  done
  [[ -n $live ]] || return 0
  CLIENT_URL=$live ctl "$SERVICE_USER" "$PASSWORD_FILE" endpoint status -w table 2>&1 || true
  if leader=$(leader_of "$live"); then say "leader: $leader"; else say "leader: none"; fi
}

case ${1:-} in
  start)
    (($# <= 2)) || die "usage: $0 start [N]"
    if (($# == 1)); then start_all; else n=$(member_arg "$2") && start_one "$n"; fi
    ;;
  stop)
    (($# <= 2)) || die "usage: $0 stop [N]"
    if (($# == 1)); then stop_members; else n=$(member_arg "$2") && stop_members "$n"; fi
    ;;
  kill)
    (($# == 2)) || die "usage: $0 kill N"
    n=$(member_arg "$2") && kill_member "$n"
    ;;
  status) status ;;
  env) printf 'export HERALD_ETCD_ENDPOINTS=%s\n' "$ENDPOINTS" ;;
  *) die "usage: $0 start [N]|stop [N]|kill N|status|env" ;;
esac
