#!/usr/bin/env bash
# A local three-node Cassandra 5.0 ring for Herald's HA cluster and failure drills, beside the
# single test node of cassandra.sh (which keeps 127.0.0.1:9043), with the same logins: clients
# log in as the role herald (secrets/cassandra-password), herald_admin is the superuser, and
# the default superuser cassandra cannot log in.
#
#   cassandra-cluster.sh start      start (or reuse) the three nodes; waits until each answers
#                                   CQL and every node's `nodetool status` shows three nodes Up
#                                   and Normal, then sets up the roles
#   cassandra-cluster.sh start N    start node N only (after kill N or stop N); waits until it
#                                   answers CQL and every running node sees it Up and Normal
#   cassandra-cluster.sh stop [N]   stop all nodes (or node N): TERM, then KILL after
#                                   HERALD_STOP_TIMEOUT (default 30 s)
#   cassandra-cluster.sh kill N     KILL node N (a crash, for drills); waits until every other
#                                   running node has marked it down, and prints how long that took
#   cassandra-cluster.sh status     each node's process, and the ring as a running node's
#                                   `nodetool status` shows it
#   cassandra-cluster.sh env        the HERALD_CASSANDRA_* variables of a client of the ring
#
# Node N (1-3) listens on 127.0.0.N (all of 127.0.0.0/8 is on lo): CQL on port 9044
# (HERALD_CASSANDRA_RING_PORT), storage (gossip and replication) on 7011
# (HERALD_CASSANDRA_RING_STORAGE_PORT), both on every node's own address, and JMX, for
# nodetool, on 127.0.0.1:7210+N (HERALD_CASSANDRA_RING_JMX_PORT_BASE, default 7210). Its
# data, config, pidfile and log are data/cassandra-ring-N/, conf/cassandra-ring-N.yaml,
# run/cassandra-ring-N.pid and logs/cassandra-ring-N.log. The data is kept across stop and
# start: remove the three data dirs, with the nodes stopped, to start afresh. Each node gets a
# heap of HERALD_CASSANDRA_RING_HEAP (default 512m), and HERALD_CASSANDRA_RING_JVM_OPTS (split
# on spaces) is added to its JVM options.
#
# Bootstrap: node 1 is the only seed, and a seed does not bootstrap: on a fresh ring it forms
# the ring alone. Nodes 2 and 3 keep auto_bootstrap: true, and stream what they own from the
# ring when they first join. Bootstrapping nodes must not overlap (Cassandra refuses it), so a
# node without data starts only once the nodes before it answer CQL, which a node does only
# after its bootstrap; nodes with data, which only rejoin, start together. auto_bootstrap:
# false would save each new node about 5 s, but a fresh ring is not empty when node 3 joins:
# node 1 writes the default superuser into system_auth as soon as two nodes are up, and a node
# 3 that joined without streaming would hold a replica of that row without having it.
#
# Logins: system_auth is created with three replicas (-Dcassandra.system_auth.default_rf=3),
# so there is no ALTER KEYSPACE to make, and no repair after one: every role is written after
# the keyspace has three replicas. Roles are read at LOCAL_ONE (cassandra-ring.yaml says why),
# so a login works with two nodes down. The roles are set up (cassandraroles, as cassandra.sh
# does) once all three nodes are up.
#
# A client of the ring uses replication 3 for its keyspaces (`env` prints the map) and the
# default LOCAL_QUORUM, which goes on with one node down. With two down, a request at ONE is
# still served, but not a logged batch (Herald's CreatePost) at any level: Cassandra writes its
# batchlog to other nodes than the coordinator, and refuses it when none is up.
set -euo pipefail
# cassandra.sh, sourced, starts nothing: it defines the install (install_cassandra, java_bin,
# check_java), the CQL probe (cql_ready, on $HOST:$PORT), the login set-up (cassandra_roles, on
# $ADDR), the password files and JAVA17_OPTS.
source "$(dirname "${BASH_SOURCE[0]}")/cassandra.sh"

NODES=3
RING_PORT="${HERALD_CASSANDRA_RING_PORT:-9044}"
RING_STORAGE_PORT="${HERALD_CASSANDRA_RING_STORAGE_PORT:-7011}"
RING_JMX_BASE="${HERALD_CASSANDRA_RING_JMX_PORT_BASE:-7210}"
RING_HEAP="${HERALD_CASSANDRA_RING_HEAP:-512m}"
STOP_TIMEOUT="${HERALD_STOP_TIMEOUT:-30}"
# A node marks a killed peer down once its failure detector convicts it: with the default
# phi_convict_threshold (8) and gossip every second, after 18 to 20 s here.
DOWN_TIMEOUT=60

node_name() { echo "cassandra-ring-$1"; }
node_host() { echo "127.0.0.$1"; }
node_addr() { echo "$(node_host "$1"):$RING_PORT"; }
jmx_port() { echo $((RING_JMX_BASE + $1)); }
node_conf() { echo "$CONF_DIR/$(node_name "$1").yaml"; }

HOSTS=""
for ((n = 1; n <= NODES; n++)); do HOSTS+="${HOSTS:+,}$(node_addr "$n")"; done
# cassandra_roles logs in through $ADDR.
ADDR=$HOSTS
REPLICATION="{'class': 'SimpleStrategy', 'replication_factor': $NODES}"

running() { server_pid "$(node_name "$1")" >/dev/null; }

# has_data N: node N has started before (its system keyspace is on disk).
has_data() { [[ -d $(datadir "$(node_name "$1")")/data/system ]]; }

# joined N: node N has joined the ring: it answered CQL once (wait_node marks it), which a node
# does only after its bootstrap.
joined_mark() { echo "$(datadir "$(node_name "$1")")/joined"; }
joined() { [[ -f $(joined_mark "$1") ]]; }

# seeds N: the seeds in node N's config. Node 1 is always one. A node that has joined the ring
# lists all three, itself included: a node that is not a seed gives up at start ("Unable to
# gossip with any peers") when no seed or known peer answers its gossip within twice the ring
# delay (4 s), which a node restarting alone or beside a slow node 1 would hit. Being a seed
# only stops a node from bootstrapping, which a node that has joined never does again; a node
# that has not (new, or killed during its bootstrap) lists node 1 only, and bootstraps.
seeds() {
  local m out
  out="$(node_host 1):$RING_STORAGE_PORT"
  if joined "$1"; then
    for ((m = 2; m <= NODES; m++)); do out+=",$(node_host "$m"):$RING_STORAGE_PORT"; done
  fi
  echo "$out"
}

# check_order N: node N, without data, does not sit below a node with data. Such a node was a
# member whose data was removed, and Cassandra refuses to let it join again under its old
# address.
check_order() {
  local n=$1 m
  has_data "$n" && return 0
  for ((m = n + 1; m <= NODES; m++)); do
    has_data "$m" &&
      die "$(node_name "$n") has no data but $(node_name "$m") has: start afresh with $0 stop && rm -rf $DATA_ROOT/cassandra-ring-*"
  done
  return 0
}

# check_data N: node N may start. A node with data rejoins the ring it belongs to. A node
# without data joins by bootstrapping, which needs the nodes numbered below it running, to
# stream from (the seed, node 1, bootstraps from no one).
check_data() {
  local n=$1 m
  has_data "$n" && return 0
  check_order "$n"
  for ((m = 1; m < n; m++)); do
    running "$m" || die "$(node_name "$n") has no data and bootstraps from the ring: start $(node_name "$m") first ($0 start $m)"
  done
}

# nodetool N ARGS...: Cassandra's nodetool on node N's JMX port. It is a Java tool in the
# server jars; a small client JVM (C1 only, serial GC) starts in about a second.
nodetool() {
  local n=$1
  shift
  "$JAVA" -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:-UsePerfData "${JAVA17_OPTS[@]}" \
    -Dlogback.configurationFile="file://$TEMPLATES/logback-ring-tools.xml" \
    -cp "$LIB/*" org.apache.cassandra.tools.NodeTool -h 127.0.0.1 -p "$(jmx_port "$n")" "$@"
}

# ring_view N: one line "ADDRESS STATE" for each node in node N's `nodetool status`, STATE
# being its two letters (UN: up and normal, DN: down, UJ: up and joining, ...). Fails if node N
# does not answer.
ring_view() {
  local out
  out=$(nodetool "$1" status 2>/dev/null) || return 1
  awk '$1 ~ /^[UD][NLJM]$/ { print $2, $1 }' <<<"$out"
}

# sees N M STATE: node N's view of the ring has node M in STATE.
sees() {
  local view
  view=$(ring_view "$1") || return 1
  grep -qx "$(node_host "$2") $3" <<<"$view"
}

# ring_up: every node sees all three nodes up and normal.
ring_up() {
  local n view
  for ((n = 1; n <= NODES; n++)); do
    view=$(ring_view "$n") || return 1
    (($(grep -c ' UN$' <<<"$view") == NODES)) || return 1
  done
}

# seen_up_by_all N: every other running node sees node N up and normal.
seen_up_by_all() {
  local m
  for ((m = 1; m <= NODES; m++)); do
    if ((m == $1)) || ! running "$m"; then continue; fi
    sees "$m" "$1" UN || return 1
  done
}

# poll WHAT TIMEOUT_S CMD...: run CMD every second until it succeeds, with a progress line
# every 5 s; fail after TIMEOUT_S.
poll() {
  local what=$1 timeout=$2 start elapsed next=5
  shift 2
  start=$(now_ms)
  until "$@"; do
    elapsed=$((($(now_ms) - start) / 1000))
    ((elapsed < timeout)) || return 1
    if ((elapsed >= next)); then
      say "  still waiting for $what (${elapsed}s/${timeout}s)"
      next=$((elapsed + 5))
    fi
    sleep 1
  done
}

# The readiness probe of wait_ready takes no arguments; PROBE_NODE says which node.
PROBE_NODE=
node_ready() { HOST=$(node_host "$PROBE_NODE") PORT=$RING_PORT cql_ready; }

write_node_config() {
  sed -e "s/@HOST@/$(node_host "$1")/g" -e "s/@SEEDS@/$(seeds "$1")/g" \
    -e "s/@NATIVE_PORT@/$RING_PORT/g" -e "s/@STORAGE_PORT@/$RING_STORAGE_PORT/g" \
    "$TEMPLATES/cassandra-ring.yaml" >"$(node_conf "$1")"
}

# launch_node N: start node N, unless it runs.
launch_node() {
  local n=$1 name dir
  name=$(node_name "$n")
  dir=$(datadir "$name")
  if running "$n"; then
    say "$name already running (pid $(server_pid "$name")) at $(node_addr "$n")"
    return 0
  fi
  rm -f "$(pidfile "$name")"
  HOST=$(node_host "$n") port_open "$RING_PORT" &&
    die "$name: port $(node_addr "$n") is in use by a process these scripts did not start; free it or set HERALD_CASSANDRA_RING_PORT"
  HOST=$(node_host "$n") port_open "$RING_STORAGE_PORT" &&
    die "$name: port $(node_host "$n"):$RING_STORAGE_PORT is in use by a process these scripts did not start; free it or set HERALD_CASSANDRA_RING_STORAGE_PORT"
  port_open "$(jmx_port "$n")" &&
    die "$name: port $HOST:$(jmx_port "$n") is in use by a process these scripts did not start; free it or set HERALD_CASSANDRA_RING_JMX_PORT_BASE"
  check_data "$n"
  write_node_config "$n"
  mkdir -p "$dir/triggers"
  has_data "$n" || ((n == 1)) || say "$name has no data: it bootstraps, streaming its ranges from the ring"
  # shellcheck disable=SC2206 # HERALD_CASSANDRA_RING_JVM_OPTS is split on purpose
  local jvm_opts=(
    -Xms"$RING_HEAP" -Xmx"$RING_HEAP" -Xss256k
    -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxGCPauseMillis=300 -XX:+PerfDisableSharedMem
    -XX:+ExitOnOutOfMemoryError
    -Djava.net.preferIPv4Stack=true
    "${JAVA17_OPTS[@]}"
    # Config, storage, logging.
    -Dcassandra.config="file://$(node_conf "$n")"
    -Dcassandra.storagedir="$dir"
    -Dcassandra.triggers_dir="$dir/triggers"
    -Dcassandra.logdir="$LOG_DIR"
    -Dlogback.configurationFile="file://$TEMPLATES/logback.xml"
    -Dcassandra-foreground=yes
    -Dcassandra.jmx.local.port="$(jmx_port "$n")"
    # Fast start. No wait for gossip to settle (a loopback ring settles in a second). The ring
    # delay is how long a bootstrapping node waits after announcing its tokens before it
    # streams, so that the others send it writes meanwhile: 2 s is two gossip rounds, which
    # reach both other nodes here (the default is 30 s).
    -Dcassandra.skip_wait_for_gossip_to_settle=0
    -Dcassandra.ring_delay_ms=2000
    -Dcassandra.superuser_setup_delay_ms=1000
    # The per-row overhead of a memtable, which Cassandra otherwise estimates at each start by
    # building 100,000 rows: 2 to 10 s of a start on two cores. 180 bytes is what 5.0.9
    # estimates on this JVM; it only sizes memtable flushes.
    -Dcassandra.memtable.row_overhead_size=180
    -Dcassandra.system_auth.default_rf="$NODES"
    # Not -Dcassandra.unsafesystem=true, which cassandra.sh sets: it skips the flush of the
    # schema tables after a schema change, so that a node killed soon after a CREATE TABLE
    # loads its schema without the table, skips the table's writes as it replays its commit
    # log, and answers INCOMPATIBLE_SCHEMA for it until it pulls the schema again.
    ${HERALD_CASSANDRA_RING_JVM_OPTS:-}
  )
  launch "$name" "$JAVA" "${jvm_opts[@]}" -cp "$LIB/*" org.apache.cassandra.service.CassandraDaemon
}

# wait_node N: node N answers CQL (wait_ready exits the shell it runs in, hence the subshell,
# so that the error names the node).
wait_node() {
  PROBE_NODE=$1
  (wait_ready "$(node_name "$1")" "$(node_addr "$1")" node_ready "$TIMEOUT") ||
    die "Cassandra ring node $1 did not answer CQL (log: $(logfile "$(node_name "$1")"); stop the ring with $0 stop)"
  touch "$(joined_mark "$1")"
}

prepare() {
  command -v go >/dev/null || die "go is not on PATH; it is needed to build cassandraroles"
  JAVA=$(java_bin)
  check_java
  install_cassandra
}

rss_line() {
  local n pid out=""
  for ((n = 1; n <= NODES; n++)); do
    pid=$(server_pid "$(node_name "$n")") || continue
    out+="${out:+, }node $n pid $pid $(($(ps -o rss= -p "$pid") / 1024)) MiB"
  done
  say "  RSS: $out"
}

start_all() {
  local n start
  local -A started=()
  prepare
  start=$(now_ms)
  for ((n = 1; n <= NODES; n++)); do running "$n" || check_order "$n"; done
  # Nodes with data rejoin the ring: they start together, because each waits at start (up to
  # 10 s, block_for_peers_timeout_in_secs) until it is connected to its peers, which one
  # after the other would make each wait for the next. Nodes without data bootstrap, which
  # must not overlap: one at a time, after the others (check_order: nodes with data come
  # first).
  for ((n = 1; n <= NODES; n++)); do
    if running "$n" || has_data "$n"; then
      launch_node "$n"
      started[$n]=1
    fi
  done
  for ((n = 1; n <= NODES; n++)); do
    [[ -n ${started[$n]:-} ]] || launch_node "$n"
    wait_node "$n"
  done
  say "waiting until every node's nodetool status shows $NODES nodes Up and Normal ..."
  poll "a ring of $NODES nodes up and normal" "$TIMEOUT" ring_up ||
    die "the ring did not show $NODES nodes Up and Normal after $TIMEOUT s; node 1 sees: $(ring_view 1 | tr '\n' ' ') (status: $0 status)"
  cassandra_roles
  say "Cassandra ring ready in $((($(now_ms) - start) / 1000)) s: $HOSTS (login: role $SERVICE_USER, password in $PASSWORD_FILE)"
  rss_line
  say "  a client's keyspace: replication $REPLICATION (eval \"\$($0 env)\")"
}

start_one() {
  local n=$1 name start
  name=$(node_name "$n")
  prepare
  start=$(now_ms)
  launch_node "$n"
  wait_node "$n"
  say "$name answers CQL $((($(now_ms) - start) / 1000)) s after its start; waiting until the running nodes see it Up and Normal ..."
  poll "the running nodes to see $name up" "$TIMEOUT" seen_up_by_all "$n" ||
    die "$name is not Up and Normal in every running node's nodetool status after $TIMEOUT s (status: $0 status)"
  say "$name back in the ring $((($(now_ms) - start) / 1000)) s after its start"
  rss_line
}

# stop_nodes [N]: stop all nodes at once (or node N).
stop_nodes() {
  local n pids=() failed=0 pid
  for ((n = NODES; n >= 1; n--)); do
    [[ -n ${1:-} && $1 != "$n" ]] && continue
    stop_server "$(node_name "$n")" "$STOP_TIMEOUT" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  ((failed == 0)) || die "not every node stopped (status: $0 status)"
}

# down_pattern N: the line a node logs when it marks node N down.
down_pattern() { echo "InetAddress /$(node_host "$1"):$RING_STORAGE_PORT is now DOWN"; }

# kill_node N: KILL node N, then wait until every other running node has marked it down in
# its log (the gossiper's "InetAddress /ADDR is now DOWN"), and print how long each took.
kill_node() {
  local n=$1 name pid m start lf
  local -A offset=() seen=()
  name=$(node_name "$n")
  pid=$(server_pid "$name") || die "$name is not running"
  for ((m = 1; m <= NODES; m++)); do
    if ((m == n)) || ! running "$m"; then continue; fi
    lf=$(logfile "$(node_name "$m")")
    offset[$m]=$(($(stat -c %s "$lf") + 1))
  done
  say "killing $name (pid $pid) with SIGKILL"
  start=$(now_ms)
  kill_wait "$name" "$pid"
  ((${#offset[@]} > 0)) || { say "$name killed; no other node runs"; return 0; }
  while ((${#seen[@]} < ${#offset[@]})); do
    for m in "${!offset[@]}"; do
      [[ -z ${seen[$m]:-} ]] || continue
      if tail -c "+${offset[$m]}" "$(logfile "$(node_name "$m")")" | grep -qF "$(down_pattern "$n")"; then
        seen[$m]=$(($(now_ms) - start))
        say "  $(node_name "$m") marked $name down after ${seen[$m]} ms"
      fi
    done
    (($(now_ms) - start < DOWN_TIMEOUT * 1000)) ||
      die "not every running node marked $name down within $DOWN_TIMEOUT s (status: $0 status)"
    sleep 0.1
  done
  say "$name killed; the running nodes see it down"
}

status() {
  local n name pid live=""
  for ((n = 1; n <= NODES; n++)); do
    name=$(node_name "$n")
    if pid=$(server_pid "$name"); then
      say "$name: running (pid $pid, RSS $(($(ps -o rss= -p "$pid") / 1024)) MiB) at $(node_addr "$n"), JMX $HOST:$(jmx_port "$n")"
      [[ -n $live ]] || live=$n
    else
      say "$name: stopped"
    fi
  done
  [[ -n $live ]] || return 0
  JAVA=$(java_bin)
  say "the ring as $(node_name "$live") sees it:"
  nodetool "$live" status || warn "nodetool status on $(node_name "$live") (JMX $HOST:$(jmx_port "$live")) failed; it may still be starting"
}

print_env() {
  printf 'export HERALD_CASSANDRA_HOSTS=%s\n' "$HOSTS"
  printf 'export HERALD_CASSANDRA_REPLICATION="%s"\n' "$REPLICATION"
  # The ring's tests (services/platform/cassandrastore/ring_test.go) find it here, so that
  # the single node's tests never run against the ring, nor drills against the single node.
  printf 'export HERALD_CASSANDRA_RING_HOSTS=%s\n' "$HOSTS"
}

cluster_main "$@"
