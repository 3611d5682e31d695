#!/usr/bin/env bash
# A local three-node Kafka 4 cluster in KRaft mode for `make cluster HA=1` and the drills: each
# node is both broker and controller, the metadata quorum the three of them (a static quorum,
# controller.quorum.voters). Clients log in as on kafka.sh's single broker: SASL/PLAIN as the
# user herald, with the password in secrets/kafka-password, so that Herald's processes (which
# take HERALD_KAFKA_USER and HERALD_KAFKA_PASSWORD_FILE from env.sh) log in unchanged; the
# brokers log in to each other the same way. The controller listeners are plain text without a
# login, as on kafka.sh's broker (loopback only; they serve the quorum, not produce or fetch).
#
#   kafka-cluster.sh start      start (or reuse) the three nodes; formats their data dirs as
#                               one new cluster the first time; waits until each serves clients
#                               and takes Herald's login, which a broker does once it has caught
#                               up with the quorum and is unfenced
#   kafka-cluster.sh start N    start node N only (after kill N), and wait until it serves
#   kafka-cluster.sh stop [N]   stop all nodes, all at once (or node N): TERM, then KILL after
#                               HERALD_STOP_TIMEOUT
#   kafka-cluster.sh kill N     KILL node N (a crash, for drills); if it led the controller
#                               quorum, waits for a new leader among the others and prints how
#                               long that took
#   kafka-cluster.sh status     each node: pid, RSS, whether it serves; the quorum's leader
#   kafka-cluster.sh env        export HERALD_KAFKA_BROKERS=<the three brokers>
#
# Node N (1-3) serves clients on 127.0.0.1:9293+N (9294-9296) and the quorum on 9493+N
# (9494-9496); HERALD_KAFKA_HA_PORT_BASE (default 9293) moves them both (the controller ports
# follow at +200). The event-log lab (lab-log.sh) has its own three brokers on 9391-9393 and
# 9491-9493, and kafka.sh's single broker is on 9092/9093. Node N's data, config (0600: it
# holds the password; rewritten when the node starts), pidfile and log are data/kafka-ha-N/,
# conf/kafka-ha-N.properties, run/kafka-ha-N.pid and logs/kafka-ha-N.log. The data is kept
# across stop and start: remove all three data dirs, with the nodes stopped, to start afresh.
#
# Every internal topic has three replicas, and two must have a write (min.insync.replicas 2):
# the cluster takes writes with one node down, not with two. Herald creates its own topics with
# the replication factor it is given (-kafka-replication-factor 3 here; it sets
# min.insync.replicas to a majority). Failure detection is Kafka's own, untuned: a killed
# broker is fenced, and its partitions get new leaders, once it has missed its heartbeats to
# the controller for broker.session.timeout.ms (9 s). Heap: HERALD_KAFKA_HA_HEAP (default 384m)
# per node, min and max. The jars are kafka.sh's (.local/kafka-<ver>/lib, fetched with Maven if
# missing). Start timeout: HERALD_KAFKA_HA_START_TIMEOUT (default 120 s per node: three JVMs
# starting at once on two cores are slow).
set -euo pipefail
# kafka.sh, sourced, starts nothing: it defines the version, the jars and their install
# (install_kafka), Java's checks, the storage tool, the password file and the probes
# (kafka_answers, kafka_login, kafka_ready), which ask $PORT, set below to each node's.
source "$(dirname "${BASH_SOURCE[0]}")/kafka.sh"

NODES=3
PORT_BASE="${HERALD_KAFKA_HA_PORT_BASE:-9293}"
TIMEOUT="${HERALD_KAFKA_HA_START_TIMEOUT:-120}"
HEAP="${HERALD_KAFKA_HA_HEAP:-384m}"

client_port() { echo $((PORT_BASE + $1)); }
controller_port() { echo $((PORT_BASE + 200 + $1)); }
node_name() { echo "kafka-ha-$1"; }
node_conf() { printf '%s/%s.properties' "$CONF_DIR" "$(node_name "$1")"; }
node_data() { datadir "$(node_name "$1")"; }

BROKERS=""
VOTERS=""
ALL=() # the node numbers
for ((n = 1; n <= NODES; n++)); do
  ALL+=("$n")
  BROKERS+="${BROKERS:+,}$HOST:$(client_port "$n")"
  VOTERS+="${VOTERS:+,}$n@$HOST:$(controller_port "$n")"
done

# cluster_id N: the cluster id in node N's meta.properties (empty if it has none).
cluster_id() {
  sed -n 's/^cluster\.id=//p' "$(node_data "$1")/meta.properties" 2>/dev/null || true
}

# has_data N: node N's data dir is formatted.
has_data() { [[ -f $(node_data "$1")/meta.properties ]]; }

# write_node_config N: node N's config, written whole with mode 0600 by bash (a heredoc), so
# that the password stays off every command line.
write_node_config() {
  local n=$1
  write_private "$(node_conf "$n")" <<CONF
# Written by deploy/local/kafka-cluster.sh when the node starts; edits are lost.
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$VOTERS

# CLIENT: Herald's clients and the other brokers (replication), SASL/PLAIN as the user
# $SERVICE_USER. CONTROLLER: the metadata quorum, plain text with no login (loopback only).
listeners=CLIENT://$HOST:$(client_port "$n"),CONTROLLER://$HOST:$(controller_port "$n")
advertised.listeners=CLIENT://$HOST:$(client_port "$n")
listener.security.protocol.map=CLIENT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=CLIENT
controller.listener.names=CONTROLLER
sasl.enabled.mechanisms=PLAIN
sasl.mechanism.inter.broker.protocol=PLAIN
listener.name.client.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$SERVICE_USER" password="$(<"$PASSWORD_FILE")" user_$SERVICE_USER="$(<"$PASSWORD_FILE")";

log.dirs=$(node_data "$n")

# Three replicas of everything, two in sync for a write.
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2

# As on kafka.sh's broker: topics only on purpose; no wait before a group's first rebalance.
auto.create.topics.enable=false
num.partitions=3
group.initial.rebalance.delay.ms=0
CONF
}

# format_nodes: on the first start (no node formatted), format the three data dirs as one new
# cluster with a random id. Nodes that all have data are left as they are; a node without data
# among nodes with data would be a voter that forgot the quorum's log, which a static quorum
# cannot take in safely, so that is an error. Checked before any node starts.
format_nodes() {
  local n with=() without=() cid start
  for ((n = 1; n <= NODES; n++)); do
    if has_data "$n"; then with+=("$n"); else without+=("$n"); fi
  done
  if ((${#without[@]} == 0)); then
    cid=$(cluster_id 1)
    for ((n = 2; n <= NODES; n++)); do
      [[ $(cluster_id "$n") == "$cid" ]] ||
        die "$(node_name "$n") belongs to cluster '$(cluster_id "$n")', $(node_name 1) to '$cid': start afresh with $0 stop && rm -rf $DATA_ROOT/kafka-ha-*"
    done
    return 0
  fi
  ((${#with[@]} == 0)) ||
    die "$(node_name "${without[0]}") has no data but $(node_name "${with[0]}") has: start afresh with $0 stop && rm -rf $DATA_ROOT/kafka-ha-*"
  start=$(now_ms)
  cid=$(storage_tool random-uuid 2>"$LOG_DIR/kafka-ha-format.log") || die "kafka-storage random-uuid failed (see $LOG_DIR/kafka-ha-format.log)"
  [[ $cid =~ ^[A-Za-z0-9_-]{22}$ ]] || die "kafka-storage random-uuid printed '$cid', not a cluster id (see $LOG_DIR/kafka-ha-format.log)"
  say "formatting the data dirs of $NODES nodes for a new cluster (id $cid, voters $VOTERS) ..."
  for ((n = 1; n <= NODES; n++)); do
    mkdir -p "$(node_data "$n")"
    chmod 700 "$(node_data "$n")"
    write_node_config "$n"
    if ! storage_tool format -t "$cid" -c "$(node_conf "$n")" >>"$LOG_DIR/kafka-ha-format.log" 2>&1; then
      tail -n 30 "$LOG_DIR/kafka-ha-format.log" >&2
      die "formatting $(node_data "$n") failed (full output: $LOG_DIR/kafka-ha-format.log)"
    fi
  done
  say "  formatted in $(( ($(now_ms) - start) / 1000 )) s"
}

# launch_node N: start node N, unless it runs (a running node that answers without Herald's
# login is restarted first, as kafka.sh does with its broker).
launch_node() {
  local n=$1 name port jvm_opts
  name=$(node_name "$n")
  PORT=$(client_port "$n")
  stop_if_stale "$name" kafka_answers kafka_login
  if server_pid "$name" >/dev/null; then
    say "$name already running (pid $(server_pid "$name")) at $HOST:$PORT"
    return 0
  fi
  rm -f "$(pidfile "$name")"
  for port in "$(client_port "$n")" "$(controller_port "$n")"; do
    port_open "$port" && die "$name: port $HOST:$port is in use by a process these scripts did not start; free it or set HERALD_KAFKA_HA_PORT_BASE"
  done
  write_node_config "$n"
  # shellcheck disable=SC2206 # HERALD_KAFKA_JVM_OPTS is split on purpose
  jvm_opts=(
    -Xms"$HEAP" -Xmx"$HEAP"
    # Kafka's own defaults (KAFKA_JVM_PERFORMANCE_OPTS in bin/kafka-run-class.sh), as kafka.sh.
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
    -XX:+ExitOnOutOfMemoryError
    -Dlog4j2.configurationFile="file://$TEMPLATES/log4j2.xml"
    ${HERALD_KAFKA_JVM_OPTS:-}
  )
  launch "$name" "$JAVA" "${jvm_opts[@]}" -cp "$LIB/*" kafka.Kafka "$(node_conf "$n")"
}

# wait_node N: node N serves clients and takes Herald's login (wait_ready exits the shell it
# runs in, hence the subshell, so that the error names the node).
wait_node() {
  PORT=$(client_port "$1")
  (wait_ready "$(node_name "$1")" "$HOST:$PORT" kafka_ready "$TIMEOUT") ||
    die "Kafka node $1 did not start serving (log: $(logfile "$(node_name "$1")"); stop the nodes with $0 stop)"
}

prepare() {
  JAVA=$(java_bin)
  check_java
  install_kafka
}

start_all() {
  local n start pid rss=""
  start=$(now_ms)
  prepare
  format_nodes
  # All three at once: none serves before a quorum of controllers runs.
  for ((n = 1; n <= NODES; n++)); do launch_node "$n"; done
  for ((n = 1; n <= NODES; n++)); do wait_node "$n"; done
  for ((n = 1; n <= NODES; n++)); do
    pid=$(server_pid "$(node_name "$n")")
    rss+="${rss:+, }node $n pid $pid $(($(ps -o rss= -p "$pid") / 1024)) MiB"
  done
  say "Kafka $VERSION cluster ready: $BROKERS, in $(( ($(now_ms) - start) / 1000 )) s; controller quorum leader: $(leader_text)"
  say "  RSS: $rss (heap $HEAP each)"
  say "  login: SASL/PLAIN user $SERVICE_USER, password in $PASSWORD_FILE"
}

start_one() {
  prepare
  has_data "$1" || die "$(node_name "$1") has no data: start the whole cluster with $0 start"
  launch_node "$1"
  wait_node "$1"
}

# stop_nodes [N]: stop node N, or all of them at once: a node stopped after the other two waits
# for a controller quorum that is gone (its controlled shutdown needs one) until the KILL.
stop_nodes() {
  local n stoppers=() rc=0
  if [[ -n ${1:-} ]]; then
    stop_server "$(node_name "$1")" "${HERALD_STOP_TIMEOUT:-30}"
    return
  fi
  for ((n = NODES; n >= 1; n--)); do
    stop_server "$(node_name "$n")" "${HERALD_STOP_TIMEOUT:-30}" &
    stoppers+=($!)
  done
  for n in "${stoppers[@]}"; do wait "$n" || rc=1; done
  return "$rc"
}

# quorum_state N: "LEADER EPOCH" from the quorum-state file of node N, which the node rewrites
# at each change of its election state (leader -1 while it knows none); fails if node N is not
# running or has no such file.
quorum_state() {
  local f
  server_pid "$(node_name "$1")" >/dev/null || return 1
  f="$(node_data "$1")/__cluster_metadata-0/quorum-state"
  [[ -r $f ]] || return 1
  jq -r '"\(.leaderId) \(.leaderEpoch)"' "$f" 2>/dev/null
}

# quorum_leader N...: print "LEADER EPOCH", the leader as the running nodes among N... know it
# in the highest epoch any of them has seen; fail if in that epoch none of them knows a leader
# (an election is on) or the leader is not one of them.
quorum_leader() {
  local n st leader=-1 epoch=-1 l e live=()
  for n in "$@"; do
    st=$(quorum_state "$n") || continue
    live+=("$n")
    read -r l e <<<"$st"
    [[ $l =~ ^-?[0-9]+$ && $e =~ ^[0-9]+$ ]] || continue
    if ((e > epoch)); then
      epoch=$e leader=$l
    elif ((e == epoch && leader == -1)); then
      leader=$l
    fi
  done
  ((leader > 0)) && [[ " ${live[*]} " == *" $leader "* ]] || return 1
  echo "$leader $epoch"
}

# leader_text: the controller quorum's leader, in words.
leader_text() {
  local l e
  if read -r l e < <(quorum_leader "${ALL[@]}"); then
    echo "node $l (epoch $e)"
  else
    echo "none known"
  fi
}

# kill_node N: KILL node N. If it led the controller quorum, poll the others' quorum-state
# until one of them leads in a later epoch, and print how long the quorum went without a
# leader (as seen by this poll, every 50 ms).
kill_node() {
  local n=$1 name pid leader="" epoch=0 others=() m start l e
  name=$(node_name "$n")
  pid=$(server_pid "$name") || die "$name is not running"
  read -r leader epoch < <(quorum_leader "${ALL[@]}") || true
  for ((m = 1; m <= NODES; m++)); do ((m == n)) || others+=("$m"); done
  say "killing $name (pid $pid) with SIGKILL${leader:+; the controller quorum leader is node $leader (epoch $epoch)}"
  start=$(now_ms)
  kill_wait "$name" "$pid"
  if [[ $leader != "$n" ]]; then
    say "$name killed; it did not lead the controller quorum${leader:+, and node $leader still does}"
    return 0
  fi
  until read -r l e < <(quorum_leader "${others[@]}") && ((e > epoch)); do
    (($(now_ms) - start < TIMEOUT * 1000)) || die "no new controller quorum leader among nodes ${others[*]} after $TIMEOUT s"
    sleep 0.05
  done
  say "$name killed; node $l leads the controller quorum (epoch $e) after $(($(now_ms) - start)) ms"
}

# status: each node's process and whether it serves Herald's login, then the quorum's leader.
status() {
  local n name pid l e seen
  for ((n = 1; n <= NODES; n++)); do
    name=$(node_name "$n")
    PORT=$(client_port "$n")
    if pid=$(server_pid "$name"); then
      seen="knows no quorum leader"
      if read -r l e < <(quorum_state "$n") && ((l > 0)); then seen="sees node $l lead the quorum in epoch $e"; fi
      if kafka_ready; then
        say "$name: running (pid $pid, RSS $(($(ps -o rss= -p "$pid") / 1024)) MiB), serving at $HOST:$PORT; $seen"
      else
        say "$name: running (pid $pid), not serving at $HOST:$PORT (starting, or cut off from the quorum)"
      fi
    else
      say "$name: stopped"
    fi
  done
  say "controller quorum leader: $(leader_text)"
}

print_env() {
  printf 'export HERALD_KAFKA_BROKERS=%s\n' "$BROKERS"
}

cluster_main "$@"
