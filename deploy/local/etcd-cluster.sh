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
#   etcd-cluster.sh snapshot FILE
#                              back up: `etcdctl snapshot save` from one healthy member, as root
#                              (a snapshot needs admin rights), into FILE.tmp.PID, then renamed to
#                              FILE (mode 0600: it holds every key, and the users' password
#                              hashes); prints its size, revision and key count
#   etcd-cluster.sh restore FILE
#                              replace the cluster's data with the snapshot FILE: a FRESH
#                              three-member cluster (new cluster token, so new member and cluster
#                              IDs) with the same names and URLs, so clients keep their endpoints.
#                              Restores into new data dirs first (etcdutl snapshot restore), and
#                              only then stops the members (together; SIGKILL after 2 s), moves
#                              their data dirs aside to data/etcd-ha-N.before-restore-<time> and
#                              the restored ones in, keeps etcd down HERALD_ETCD_RESTORE_FENCE s
#                              (below), and starts them; waits until Herald logs in (the snapshot
#                              holds the users, roles and auth config; the members sign tokens
#                              with the same JWT key pair, so tokens issued before still hold)
#
# A restore puts the keys and leases back as they were at the snapshot: what was written since is
# gone, and each lease in the snapshot lives one more TTL from the restart (its holder, if alive,
# keeps renewing it). The restored revision is the snapshot's plus HERALD_ETCD_RESTORE_BUMP
# (default 1000000000, as Kubernetes' etcd restore uses: more revisions than the cluster can have
# written since the snapshot; 0 keeps the snapshot's), marked compacted. A client's watch resumes
# at the revision after the last event it saw, which without the bump the restored cluster may
# not have reached: the watch would skip every event until it does. With it, the watch fails
# with "required revision has been compacted", and the client knows to read afresh.
# The restored members start no sooner than HERALD_ETCD_RESTORE_FENCE seconds (default 11: Herald's
# default lease TTL, 10 s, and a second for the etcd client's once-a-second deadline check) after
# the last member stopped. By then every client's session has ended and every post instance's
# lease clock (services/platform/discovery/leaseclock.go) has lapsed, so every process takes a
# new lease and writes its keys again. A restore faster than a lease TTL lets a process go on as
# if etcd had not gone back: one whose lease is newer than the snapshot keeps minting with its
# worker ID until it next hears from etcd, while another may claim that ID at once (the snapshot
# lacks the claim); one whose lease is older but whose registration, election key or worker-ID
# claim is newer keeps a lease that holds none of them, and never writes them again. Set the
# fence to the longest lease TTL the cluster's clients use (the cluster tests use 3 s), plus one.
# HERALD_ETCD_RESTORE_KEEP=0 deletes the old data dirs once the restored cluster is healthy,
# instead of keeping them (each is ~120 MB, mostly preallocated WAL).
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
    --bcrypt-cost "$BCRYPT_COST" \
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
  local n=$1 name pid leader others="" m start
  name=$(member_name "$n")
  pid=$(server_pid "$name") || die "$name is not running"
  leader=$(leader_of "$CLIENT_URL") || leader=""
  for ((m = 1; m <= MEMBERS; m++)); do
    ((m == n)) || others+="${others:+,}$(member_url "$m")"
  done
  say "killing $name (pid $pid) with SIGKILL${leader:+; the leader is $leader}"
  start=$(now_ms)
  kill_wait "$name" "$pid"
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

# healthy_member: print the number of the first member whose /health is true (it has a leader);
# return 1 if none is.
healthy_member() {
  local n
  for ((n = 1; n <= MEMBERS; n++)); do
    PROBE_URL=$(member_url "$n")
    member_ready && { echo "$n"; return 0; }
  done
  return 1
}

# snapshot_status FILE: print "SIZE REVISION KEYS HASH" of the snapshot FILE, from
# `etcdutl snapshot status` (which also checks that it is an etcd database).
snapshot_status() {
  local out
  out=$("$BIN_DIR/etcdutl" snapshot status -w json "$1" 2>&1) ||
    die "$1 is not an etcd snapshot: etcdutl snapshot status says: $(tail -n 3 <<<"$out")"
  jq -r '"\(.totalSize) \(.revision) \(.totalKey) \(.hash)"' <<<"$out" 2>/dev/null ||
    die "etcdutl snapshot status $1 printed no JSON: $out"
}

# snapshot FILE: save a snapshot from one healthy member (etcd 3.x saves from exactly one
# endpoint), as root, under a temporary name in FILE's directory, then rename it to FILE.
snapshot() {
  local file=$1 n tmp out st size rev keys hash start attempt
  [[ -n $file ]] || die "usage: $0 snapshot FILE"
  [[ -d $(dirname "$file") ]] || die "snapshot $file: directory $(dirname "$file") does not exist"
  [[ ! -d $file ]] || die "snapshot $file: is a directory; name the file to write"
  build_etcd
  apt_install jq jq
  tmp="$file.tmp.$$"
  # Three tries, with longer timeouts than ctl's: on a busy machine the login alone (bcrypt, and
  # a write through Raft) can outlast its 3 s.
  for attempt in 1 2 3; do
    n=$(healthy_member) || die "no etcd member is healthy (none of $CLIENT_URL reports a leader): nothing to snapshot"
    rm -f "$tmp" "$tmp.part"
    say "saving a snapshot from etcd-ha-$n ($(member_url "$n")) into $tmp ..."
    start=$(now_ms)
    out=$(umask 077 && CLIENT_URL=$(member_url "$n") ctl root "$ROOT_PASSWORD_FILE" \
      --dial-timeout=15s --command-timeout=120s snapshot save "$tmp" 2>&1) && break
    rm -f "$tmp" "$tmp.part"
    ((attempt < 3)) || die "etcdctl snapshot save from $(member_url "$n") as root failed 3 times; the last said: $(tail -n 3 <<<"$out")"
    warn "etcdctl snapshot save from $(member_url "$n") failed (attempt $attempt of 3): $(tail -n 1 <<<"$out"); trying again"
    sleep 1
  done
  # The database's size (etcdutl's totalSize) is the file's less the checksum etcdctl appends.
  st=$(snapshot_status "$tmp") || { rm -f "$tmp"; exit 1; }
  read -r size rev keys hash <<<"$st"
  mv -f "$tmp" "$file"
  say "snapshot $file: $(stat -c %s "$file") bytes (database $size), revision $rev, $keys keys, hash $hash (from etcd-ha-$n in $(($(now_ms) - start)) ms)"
}

# start_restored: start the members on restored data, and wait until Herald logs in. The
# snapshot holds the users and roles: etcd_auth (start_all's set-up) runs only if Herald's login
# never works, since on a slow cluster its probe can fail once and its set-up then bumps the
# auth revision, which makes every client's token stale at once.
start_restored() {
  local n start
  for ((n = 1; n <= MEMBERS; n++)); do launch_member "$n"; done
  for ((n = 1; n <= MEMBERS; n++)); do wait_member "$n"; done
  start=$(now_ms)
  until healthy_with_login; do
    if (($(now_ms) - start >= TIMEOUT * 1000)); then
      warn "Herald's login does not work on the restored cluster after $TIMEOUT s; setting the users up"
      etcd_auth
      break
    fi
    sleep 0.5
  done
  until healthy_with_login; do
    (($(now_ms) - start < 2 * TIMEOUT * 1000)) ||
      die "etcdctl endpoint health as $SERVICE_USER fails on $CLIENT_URL: $(ctl "$SERVICE_USER" "$PASSWORD_FILE" endpoint health 2>&1 | tail -n 3)"
    sleep 0.5
  done
  say "etcd cluster ready: $ENDPOINTS (login: user $SERVICE_USER, password in $PASSWORD_FILE)"
}

# restore FILE: replace the members' data with the snapshot FILE, as a fresh cluster. The new
# data dirs are made before any member stops, so that a snapshot that does not restore costs no
# downtime; the old ones are kept (or, with HERALD_ETCD_RESTORE_KEEP=0, deleted) only once the
# restored cluster is healthy.
restore() {
  local file=$1 st size rev keys hash ts token bump=${HERALD_ETCD_RESTORE_BUMP:-1000000000}
  local n name dir d port down stopped wait_ms bumpargs=() log pids pid
  local fence=${HERALD_ETCD_RESTORE_FENCE:-11}
  [[ -n $file ]] || die "usage: $0 restore FILE"
  [[ -f $file && -r $file ]] || die "restore: snapshot $file does not exist or is not a readable file"
  [[ $bump =~ ^[0-9]+$ ]] || die "HERALD_ETCD_RESTORE_BUMP: want a number of revisions, got '$bump'"
  [[ $fence =~ ^[0-9]+$ ]] || die "HERALD_ETCD_RESTORE_FENCE: want whole seconds, got '$fence'"
  build_etcd
  apt_install jq jq
  st=$(snapshot_status "$file") || exit 1
  read -r size rev keys hash <<<"$st"
  say "restoring $file (database $size bytes, revision $rev, $keys keys, hash $hash) into a fresh cluster"
  ((bump == 0)) || bumpargs=(--bump-revision "$bump" --mark-compacted)
  ts=$(date +%Y%m%dT%H%M%S)
  token="$CLUSTER_TOKEN-restored-$ts"
  log="$LOG_DIR/etcd-restore.log"
  : >"$log"
  for ((n = 1; n <= MEMBERS; n++)); do
    name=$(member_name "$n")
    dir=$(datadir "$name")
    for d in "$dir.restoring-$ts" "$dir.before-restore-$ts"; do
      [[ ! -e $d ]] || die "restore: $d exists already (two restores in one second?); remove it or try again"
    done
    # The etcdutl flags are those launch_member gives etcd: the same member name and peer URL.
    "$BIN_DIR/etcdutl" snapshot restore "$file" --name "ha-$n" --data-dir "$dir.restoring-$ts" \
      --initial-cluster "$INITIAL_CLUSTER" --initial-cluster-token "$token" \
      --initial-advertise-peer-urls "http://$HOST:$(peer_port "$n")" "${bumpargs[@]}" >>"$log" 2>&1 || {
      tail -n 10 "$log" >&2
      rm -rf "$DATA_ROOT"/etcd-ha-*.restoring-"$ts"
      die "etcdutl snapshot restore of $file for $name failed (full output: $log); the cluster was not touched"
    }
    chmod 700 "$dir.restoring-$ts"
  done
  say "  restored the snapshot into data/etcd-ha-{1..$MEMBERS}.restoring-$ts (cluster token $token${bumpargs:+, revision bumped by $bump and marked compacted})"

  # All together, and SIGKILL after 2 s: a graceful stop waits up to 7 s (etcd's request
  # timeout) for the clients' watch and keep-alive streams, which a restore ends anyway, and
  # renews leases meanwhile. etcd's data survives a SIGKILL; this data is only kept to go back to.
  down=$(now_ms)
  say "stopping the members"
  pids=()
  for ((n = 1; n <= MEMBERS; n++)); do
    stop_server "$(member_name "$n")" 2 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || die "stopping the members failed (see above); the restored data waits in $DATA_ROOT/etcd-ha-*.restoring-$ts"; done
  stopped=$(now_ms)
  say "  stopped in $((stopped - down)) ms"
  for ((n = 1; n <= MEMBERS; n++)); do
    name=$(member_name "$n")
    ! server_pid "$name" >/dev/null || die "$name (pid $(server_pid "$name")) is still running after stop; the restored data waits in $(datadir "$name").restoring-$ts"
    for port in "$(client_port "$n")" "$(peer_port "$n")"; do
      ! port_open "$port" || die "$name stopped but port $HOST:$port is still in use (by a process these scripts did not start?); free it and restore again (old data untouched; the restored data waits in $DATA_ROOT/etcd-ha-*.restoring-$ts)"
    done
  done
  for ((n = 1; n <= MEMBERS; n++)); do
    dir=$(datadir "$(member_name "$n")")
    [[ ! -e $dir ]] || mv "$dir" "$dir.before-restore-$ts"
    mv "$dir.restoring-$ts" "$dir"
  done
  say "  moved the old data dirs aside to data/etcd-ha-{1..$MEMBERS}.before-restore-$ts and the restored ones in"
  wait_ms=$((fence * 1000 - ($(now_ms) - stopped)))
  if ((wait_ms > 0)); then
    say "  keeping etcd down $fence s in all (HERALD_ETCD_RESTORE_FENCE), so that every client's lease has lapsed by its own clock: $wait_ms ms more"
    sleep "$((wait_ms / 1000)).$(printf '%03d' $((wait_ms % 1000)))"
  fi
  # The members start on their restored data (etcd ignores the --initial-cluster flags of
  # launch_member when the data dir holds a member). A failure exits the script: the trap says
  # how to go back.
  # shellcheck disable=SC2064 # expanded now, on purpose
  trap "warn 'the restored cluster did not come up. To go back to the old data: $0 stop; then for each N: rm -rf $DATA_ROOT/etcd-ha-N && mv $DATA_ROOT/etcd-ha-N.before-restore-$ts $DATA_ROOT/etcd-ha-N; and $0 start'" EXIT
  start_restored
  trap - EXIT
  say "etcd cluster restored from $file at revision $((rev + bump)) (snapshot revision $rev + $bump); etcd was down for at most $(($(now_ms) - down)) ms (from the first member's stop to Herald's login working)"
  if [[ ${HERALD_ETCD_RESTORE_KEEP:-1} == 0 ]]; then
    rm -rf "$DATA_ROOT"/etcd-ha-*.before-restore-"$ts"
    say "  deleted the old data dirs (HERALD_ETCD_RESTORE_KEEP=0)"
  else
    say "  the old data is kept in $DATA_ROOT/etcd-ha-N.before-restore-$ts ($(du -shc "$DATA_ROOT"/etcd-ha-*.before-restore-"$ts" 2>/dev/null | tail -n 1 | cut -f1)); remove it once the restore is known good"
  fi
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
  snapshot)
    (($# == 2)) || die "usage: $0 snapshot FILE"
    snapshot "$2"
    ;;
  restore)
    (($# == 2)) || die "usage: $0 restore FILE"
    restore "$2"
    ;;
  *) die "usage: $0 start [N]|stop [N]|kill N|status|env|snapshot FILE|restore FILE" ;;
esac
