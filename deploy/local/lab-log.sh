#!/usr/bin/env bash
# Herald's event-log lab (`make lab-log`; docs/lab/log.md): start the lab's own NATS and Kafka
# servers on loopback, run the lab (loadtest/cmd/lablog) against them and against the running
# nats-server and Kafka broker of `make servers`, and stop every server this script started.
#
#   lab-log.sh [lablog run flags...]   e.g. --sections produce,ordering --events 5000
#   lab-log.sh stop                    stop the lab's servers left by a run that was killed
#
# The shared servers (nats.sh's nats-server on 4233, kafka.sh's broker on 9092) are started or
# reused through up.sh and left running; the lab logs in to them as Herald. The lab's own
# servers, with no login (loopback only, throwaway data, wiped at every start), are:
#   - nats-server with `sync_interval: always` (an fsync before every ack): client 4331;
#   - a three-node NATS cluster, default sync: clients 4341-4343, routes 5341-5343;
#   - a three-node NATS cluster with sync always: clients 4351-4353, routes 5351-5353;
#     (each NATS server's monitoring port is its client port + 4000; HERALD_LAB_LOG_NATS_BASE,
#     default 4330, moves them all);
#   - a three-broker Kafka KRaft cluster, each node broker and controller, from the jars
#     kafka.sh fetched: clients 9391-9393, controllers 9491-9493 (HERALD_LAB_LOG_KAFKA_BASE,
#     default 9390), heap 384 MB each, replication factor 3 and min.insync.replicas 2.
#     HERALD_LAB_LOG_KAFKA_CLUSTER=0 leaves it out (and its table rows "not run").
# Their data, configs, pidfiles and logs are under $HERALD_LOCAL_DIR/lab-log/ (default
# .local/lab-log/). They run the nats-server that nats.sh builds into the bin dir; the lab and
# the all-in-one it runs are built into .local/lab-log/bin/.
#
# A lab server that was already running is reused and left running; the ones this script
# starts are stopped on exit (also after a failure or Ctrl-C), by their pids. The report goes
# to loadtest/out/lab-log/ (HERALD_LAB_OUT); the last line of the output is
# `lab-log: json=<path>`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NATS_VERSION="${HERALD_NATS_VERSION:-v2.15.2}"
KAFKA_VERSION="${HERALD_KAFKA_VERSION:-4.1.1}"
NATS_BASE="${HERALD_LAB_LOG_NATS_BASE:-4330}"
KAFKA_BASE="${HERALD_LAB_LOG_KAFKA_BASE:-9390}"
KAFKA_CLUSTER="${HERALD_LAB_LOG_KAFKA_CLUSTER:-1}"
LAB_DIR="$STATE/lab-log"
LAB_BIN="$LAB_DIR/bin"
LAB_CONF="$LAB_DIR/conf"
OUT="${HERALD_LAB_OUT:-$REPO/loadtest/out/lab-log}"
KAFKA_LIB="$STATE/kafka-$KAFKA_VERSION/lib"
NATS_TIMEOUT="${HERALD_NATS_START_TIMEOUT:-30}"
KAFKA_TIMEOUT="${HERALD_KAFKA_START_TIMEOUT:-120}"

# The lab's NATS servers: name, then client port. The cluster nodes' routes are at client
# port + 1000, every server's monitoring at client port + 4000.
NATS_SERVERS=(
  "nats-sync $((NATS_BASE + 1))"
  "nats-r3-1 $((NATS_BASE + 11))" "nats-r3-2 $((NATS_BASE + 12))" "nats-r3-3 $((NATS_BASE + 13))"
  "nats-r3sync-1 $((NATS_BASE + 21))" "nats-r3sync-2 $((NATS_BASE + 22))" "nats-r3sync-3 $((NATS_BASE + 23))"
)
kafka_port() { echo $((KAFKA_BASE + $1)); }
kafka_controller_port() { echo $((KAFKA_BASE + 100 + $1)); }

# in_lab CMD...: run a lib.sh function with the lab's own data, run and log dirs, so that the
# lab's servers never share a pidfile or log with the servers of up.sh.
in_lab() {
  local DATA_ROOT="$LAB_DIR" RUN_DIR="$LAB_DIR/run" LOG_DIR="$LAB_DIR/logs"
  mkdir -p "$DATA_ROOT" "$RUN_DIR" "$LOG_DIR"
  "$@"
}

# The names of the servers this run started, for cleanup.
STARTED=()

stop_started() {
  local name stoppers=()
  # The Kafka brokers first, and all three at once: a broker stopped after the other two
  # waits for a controller quorum that is gone, until stop_server's KILL. (Only these jobs
  # are waited for: the servers launch started are background jobs of this shell too.)
  for name in "${STARTED[@]}"; do
    if [[ $name == kafka-* ]]; then
      { in_lab stop_server "$name" "${HERALD_STOP_TIMEOUT:-30}" || true; } &
      stoppers+=($!)
    fi
  done
  ((${#stoppers[@]} == 0)) || wait "${stoppers[@]}"
  for name in "${STARTED[@]}"; do [[ $name == kafka-* ]] || { in_lab stop_server "$name" "${HERALD_STOP_TIMEOUT:-30}" || true; }; done
  STARTED=()
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_started
  exit "$rc"
}

all_names() {
  local s
  for s in "${NATS_SERVERS[@]}"; do echo "${s%% *}"; done
  echo kafka-1 kafka-2 kafka-3 | tr ' ' '\n'
}

if [[ ${1:-} == stop ]]; then
  (($# == 1)) || die "usage: $0 stop"
  stoppers=()
  for name in kafka-1 kafka-2 kafka-3; do
    in_lab stop_server "$name" "${HERALD_STOP_TIMEOUT:-30}" &
    stoppers+=($!)
  done
  wait "${stoppers[@]}"
  for name in $(all_names); do [[ $name == kafka-* ]] || in_lab stop_server "$name" "${HERALD_STOP_TIMEOUT:-30}"; done
  exit 0
fi

# nats_conf NAME PORT SYNC ROUTES: the config of one lab nats-server. SYNC is "always" or "";
# ROUTES the cluster's route ports (none for a single server).
nats_conf() {
  local name=$1 port=$2 sync=$3 routes=$4 conf="$LAB_CONF/$1.conf" r list=""
  {
    printf '# Written by deploy/local/lab-log.sh at each start; edits are lost.\n'
    printf 'server_name: lablog-%s\nlisten: "%s:%s"\nhttp: "%s:%s"\n' "$name" "$HOST" "$port" "$HOST" $((port + 4000))
    printf 'jetstream {\n  store_dir: "%s"\n  max_memory_store: 64MB\n  max_file_store: 1GB\n' "$LAB_DIR/$name"
    [[ -z $sync ]] || printf '  sync_interval: %s\n' "$sync"
    printf '}\n'
    if [[ -n $routes ]]; then
      for r in $routes; do list+="${list:+, }\"nats-route://$HOST:$r\""; done
      printf 'cluster {\n  name: lablog-%s\n  listen: "%s:%s"\n  routes: [%s]\n}\n' "${name%-*}" "$HOST" $((port + 1000)) "$list"
    fi
  } >"$conf"
  "$BIN_DIR/nats-server" -c "$conf" -t >/dev/null 2>&1 ||
    die "nats-server does not accept $conf: $("$BIN_DIR/nats-server" -c "$conf" -t 2>&1 | tail -n 3)"
  printf '%s\n' "$conf"
}

# The readiness probe of wait_ready takes no arguments; PROBE_PORT says which server.
# /healthz answers ok once JetStream is up, in a cluster once it has a meta leader.
PROBE_PORT=
nats_ready() { curl -sf --max-time 2 "http://$HOST:$PROBE_PORT/healthz" >/dev/null; }
kafka_ready() { port_open "$PROBE_PORT"; }

# start_nats: start the lab's NATS servers (all of them, or reuse all of them).
start_nats() {
  local s name port sync routes running=0 conf p
  for s in "${NATS_SERVERS[@]}"; do
    in_lab server_pid "${s%% *}" >/dev/null && running=$((running + 1))
  done
  if ((running == ${#NATS_SERVERS[@]})); then
    say "the lab's NATS servers already run; reusing them (and leaving them running)"
    return 0
  fi
  ((running == 0)) || die "only some of the lab's NATS servers run; stop them with $0 stop, then run again"
  for s in "${NATS_SERVERS[@]}"; do
    port=${s##* }
    for p in "$port" $((port + 1000)) $((port + 4000)); do
      port_open "$p" && die "port $HOST:$p is in use by a process these scripts did not start; set HERALD_LAB_LOG_NATS_BASE"
    done
  done
  for s in "${NATS_SERVERS[@]}"; do
    name=${s%% *} port=${s##* } sync="" routes=""
    [[ $name == *sync* ]] && sync=always
    case $name in
      nats-r3-*) routes="$((NATS_BASE + 1011)) $((NATS_BASE + 1012)) $((NATS_BASE + 1013))" ;;
      nats-r3sync-*) routes="$((NATS_BASE + 1021)) $((NATS_BASE + 1022)) $((NATS_BASE + 1023))" ;;
    esac
    rm -rf "${LAB_DIR:?}/$name"
    conf=$(nats_conf "$name" "$port" "$sync" "$routes")
    in_lab launch "$name" "$BIN_DIR/nats-server" -c "$conf"
    STARTED+=("$name")
  done
}

wait_nats() {
  local s
  for s in "${NATS_SERVERS[@]}"; do
    PROBE_PORT=$((${s##* } + 4000))
    # wait_ready exits the shell it runs in; the subshell keeps the cleanup trap in charge.
    (in_lab wait_ready "${s%% *}" "nats://$HOST:${s##* }" nats_ready "$NATS_TIMEOUT") ||
      die "lab NATS server ${s%% *} did not become ready (log: $LAB_DIR/logs/${s%% *}.log)"
  done
}

# storage_tool ARGS...: Kafka's kafka-storage tool, as kafka.sh runs it.
storage_tool() {
  "$JAVA" -Xmx256m -Dlog4j2.configurationFile="file://$LOCAL_SCRIPTS/kafka/log4j2.xml" \
    -Dherald.kafka.log.level=WARN -Dherald.kafka.log.target=SYSTEM_ERR \
    -cp "$KAFKA_LIB/*" kafka.tools.StorageTool "$@"
}

# kafka_conf N VOTERS: the config of lab broker N, broker and controller both, in a static
# quorum of the three (controller.quorum.voters), plain text with no login.
kafka_conf() {
  local n=$1 voters=$2 conf="$LAB_CONF/kafka-$1.properties"
  cat >"$conf" <<CONF
# Written by deploy/local/lab-log.sh at each start; edits are lost.
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://$HOST:$(kafka_port "$n"),CONTROLLER://$HOST:$(kafka_controller_port "$n")
advertised.listeners=PLAINTEXT://$HOST:$(kafka_port "$n")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$LAB_DIR/kafka-$n
offsets.topic.replication.factor=3
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
default.replication.factor=3
min.insync.replicas=2
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
CONF
  printf '%s\n' "$conf"
}

# start_kafka: format and start the three brokers (or reuse all three). Returns 1 if the
# cluster cannot be started here (no jars, no Java), so that the lab runs without it.
start_kafka() {
  local n running=0 voters="" cid conf p
  for n in 1 2 3; do in_lab server_pid "kafka-$n" >/dev/null && running=$((running + 1)); done
  if ((running == 3)); then
    say "the lab's Kafka brokers already run; reusing them (and leaving them running)"
    return 0
  fi
  ((running == 0)) || die "only some of the lab's Kafka brokers run; stop them with $0 stop, then run again"
  [[ -f $KAFKA_LIB/kafka_2.13-$KAFKA_VERSION.jar ]] || { warn "no Kafka $KAFKA_VERSION jars in $KAFKA_LIB (kafka.sh fetches them)"; return 1; }
  JAVA=$(command -v java) || { warn "java not found"; return 1; }
  for n in 1 2 3; do
    for p in "$(kafka_port "$n")" "$(kafka_controller_port "$n")"; do
      port_open "$p" && die "port $HOST:$p is in use by a process these scripts did not start; set HERALD_LAB_LOG_KAFKA_BASE"
    done
    voters+="${voters:+,}$n@$HOST:$(kafka_controller_port "$n")"
  done
  cid=$(storage_tool random-uuid 2>>"$LAB_DIR/logs/kafka-format.log") || { warn "kafka-storage random-uuid failed (see $LAB_DIR/logs/kafka-format.log)"; return 1; }
  [[ $cid =~ ^[A-Za-z0-9_-]{22}$ ]] || { warn "kafka-storage random-uuid printed '$cid', not a cluster id"; return 1; }
  for n in 1 2 3; do
    rm -rf "${LAB_DIR:?}/kafka-$n"
    conf=$(kafka_conf "$n" "$voters")
    storage_tool format -t "$cid" -c "$conf" >>"$LAB_DIR/logs/kafka-format.log" 2>&1 ||
      { warn "formatting kafka-$n failed (see $LAB_DIR/logs/kafka-format.log)"; return 1; }
  done
  for n in 1 2 3; do
    in_lab launch "kafka-$n" "$JAVA" -Xms384m -Xmx384m \
      -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
      -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true -XX:+ExitOnOutOfMemoryError \
      -Dlog4j2.configurationFile="file://$LOCAL_SCRIPTS/kafka/log4j2.xml" \
      -cp "$KAFKA_LIB/*" kafka.Kafka "$LAB_CONF/kafka-$n.properties"
    STARTED+=("kafka-$n")
  done
}

# wait_kafka: each broker serves its client port once it has caught up with the quorum; the
# lab then waits for all three in the cluster's metadata.
wait_kafka() {
  local n
  for n in 1 2 3; do
    PROBE_PORT=$(kafka_port "$n")
    (in_lab wait_ready "kafka-$n" "$HOST:$PROBE_PORT" kafka_ready "$KAFKA_TIMEOUT") || return 1
  done
}

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v go >/dev/null || die "go is not on PATH; it is needed to build the lab"
command -v curl >/dev/null || die "curl is not on PATH; the NATS readiness probe uses it"
mkdir -p "$LAB_BIN" "$LAB_CONF" "$LAB_DIR/logs" "$OUT"

# The shared servers the lab also runs on, started or reused (and left running).
"$LOCAL_SCRIPTS/up.sh" nats kafka
eval "$("$LOCAL_SCRIPTS/env.sh")"

go_install_bin nats-server "$NATS_VERSION" "github.com/nats-io/nats-server/v2@$NATS_VERSION"
say "building lablog and the all-in-one into $LAB_BIN ..."
(cd "$REPO" && env -u GOWORK go build -o "$LAB_BIN/lablog" ./loadtest/cmd/lablog && env -u GOWORK go build -o "$LAB_BIN/herald" ./services/herald/cmd/herald)

start_nats
kafka3=""
if [[ $KAFKA_CLUSTER != 0 ]]; then
  if start_kafka; then
    kafka3="$HOST:$(kafka_port 1),$HOST:$(kafka_port 2),$HOST:$(kafka_port 3)"
  else
    warn "the three-broker Kafka cluster is left out; its rows will read \"not run\""
  fi
fi
wait_nats
if [[ -n $kafka3 ]] && ! wait_kafka; then
  warn "the three-broker Kafka cluster did not become ready (logs: $LAB_DIR/logs/kafka-N.log); its rows will read \"not run\""
  kafka3=""
fi

nats_list() {
  local s out=""
  for s in "${NATS_SERVERS[@]}"; do
    [[ ${s%% *} == "$1"* ]] && out+="${out:+,}nats://$HOST:${s##* }"
  done
  printf '%s\n' "$out"
}

log="$OUT/lab-log.log"
say "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
set +e
"$LAB_BIN/lablog" run --out "$OUT" --herald "$LAB_BIN/herald" \
  --nats "$HERALD_NATS_URL" --nats-user "$HERALD_NATS_USER" --nats-password-file "$HERALD_NATS_PASSWORD_FILE" \
  --nats-sync "$(nats_list nats-sync)" --nats-r3 "$(nats_list nats-r3-)" --nats-r3-sync "$(nats_list nats-r3sync-)" \
  --kafka "$HERALD_KAFKA_BROKERS" --kafka-user "$HERALD_KAFKA_USER" --kafka-password-file "$HERALD_KAFKA_PASSWORD_FILE" \
  --kafka3 "$kafka3" "$@" 2>&1 | tee "$log" | grep -v '^lab-log: json='
status=${PIPESTATUS[0]}
set -e
say "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
stop_started
((status == 0)) || die "lablog failed (exit $status; its output is in $log)"
# Printed after the servers stopped, so that it is the last line.
grep '^lab-log: json=' "$log" | tail -n 1
