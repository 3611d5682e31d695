#!/usr/bin/env bash
# A multi-process Herald cluster on this machine: real etcd, NATS JetStream,
# Redis and Cassandra (via the scripts beside this one) plus two instances of
# every Herald service, each a separate process that registers in etcd under
# a lease and finds the others through etcd's gRPC resolver.
#
#   cluster.sh up       start (or reuse) everything; prints the addresses
#   cluster.sh down     stop the instances, then the servers
#   cluster.sh status   show what runs
#
# Instances: post 127.0.0.1:7171-7172, graph :7181-7182, fanout :7191-7192,
# timeline :7201-7202; each serves /metrics on its port + 2000.
#
# HERALD_BUS=kafka (make cluster BUS=kafka) runs the event log on Kafka (kafka.sh) instead
# of NATS JetStream; NATS is then not started.
#
# HERALD_HA=1 (make cluster HA=1) replicates every server, instead of the single ones:
#   etcd       three members (etcd-cluster.sh)
#   NATS       three nodes, every write fsynced before its ack (nats-cluster.sh); the
#              instances create the event stream with -nats-replicas 3
#   Kafka      (BUS=kafka) three KRaft brokers (kafka-cluster.sh); topics with replication
#              factor 3, min.insync.replicas 2
#   Cassandra  a three-node ring on 127.0.0.1-3 (cassandra-cluster.sh); keyspace with
#              replication factor 3, LOCAL_QUORUM
#   Redis      a primary, a replica and three Sentinels (redis-sentinel.sh); the instances
#              follow the primary the Sentinels name (-redis-master)
# It takes about 6 GiB of memory; the first start of the ring takes a few minutes. `down`
# stops the HA servers too.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SERVICES=(graph post fanout timeline)
INSTANCES=${HERALD_CLUSTER_INSTANCES:-2}
HBIN="$BIN_DIR/herald"
NS=${HERALD_NAMESPACE:-herald}
BUS=${HERALD_BUS:-jetstream}
case $BUS in
  jetstream) EVENT_SERVER=nats ;;
  kafka) EVENT_SERVER=kafka ;;
  *) die "HERALD_BUS=$BUS: want jetstream or kafka" ;;
esac
HA=${HERALD_HA:-0}
[[ $HA == 0 || $HA == 1 ]] || die "HERALD_HA=$HA: want 0 or 1"
declare -A BASE=([post]=7170 [graph]=7180 [fanout]=7190 [timeline]=7200)

# The addresses, and Herald's logins (HERALD_*_USER, HERALD_*_PASSWORD_FILE), which the
# instances inherit: every flag of theirs has its variable.
eval "$("$LOCAL_SCRIPTS/env.sh")"
# etcd gives Herald's role the keys of the default namespace and the cluster tests'
# (etcd.sh); another namespace's too, when the cluster runs under one.
if [[ $NS != herald ]]; then
  export HERALD_ETCD_KEY_PREFIXES="${HERALD_ETCD_KEY_PREFIXES:-herald/ ct} $NS/"
fi

# The deployment's signing keys (feedctl keygen): users' tokens are signed with
# auth-dev-key.pem, which every instance trusts through its public half, and calls
# between services with auth-service-key.pem. feedctl --data and feedload --data sign
# with the same directory.
AUTH_DIR="$SECRETS_DIR/auth"

# With HA, the instances take the replicated servers instead.
REDIS_ARGS=(-redis "$HERALD_REDIS_ADDR")
CASSANDRA_ARGS=(-cassandra "$HERALD_CASSANDRA_HOSTS")
if [[ $HA == 1 ]]; then
  eval "$("$LOCAL_SCRIPTS/etcd-cluster.sh" env)"
  eval "$("$LOCAL_SCRIPTS/nats-cluster.sh" env)"
  eval "$("$LOCAL_SCRIPTS/kafka-cluster.sh" env)"
  eval "$("$LOCAL_SCRIPTS/cassandra-cluster.sh" env)"
  eval "$("$LOCAL_SCRIPTS/redis-sentinel.sh" env)"
  REDIS_ARGS=(-redis "$HERALD_REDIS_SENTINELS" -redis-master "$HERALD_REDIS_MASTER")
  CASSANDRA_ARGS=(-cassandra "$HERALD_CASSANDRA_HOSTS" -cassandra-replication "$HERALD_CASSANDRA_REPLICATION")
fi
# Every replicated server's process, by the name its script gives it, and the scripts that
# stop them.
HA_SERVERS=(etcd-ha-{1,2,3} nats-ha-{1,2,3} kafka-ha-{1,2,3} redis-ha-{0,1} redis-sentinel-{0,1,2} cassandra-ring-{1,2,3})
HA_SCRIPTS=(nats-cluster.sh kafka-cluster.sh redis-sentinel.sh cassandra-cluster.sh etcd-cluster.sh)

# ha_running: one of the HA servers runs.
ha_running() {
  local name
  for name in "${HA_SERVERS[@]}"; do server_pid "$name" >/dev/null && return 0; done
  return 1
}

port_of() { echo $((BASE[$1] + $2)); }

# registered: the instance in $CUR_SVC/$CUR_PORT is in etcd, i.e. up and serving.
# etcdctl logs in as Herald's user, the password in its environment (ETCDCTL_PASSWORD).
registered() {
  [[ -n $(ETCDCTL_USER=$HERALD_ETCD_USER ETCDCTL_PASSWORD=$(<"$HERALD_ETCD_PASSWORD_FILE") \
    "$BIN_DIR/etcdctl" --endpoints "$HERALD_ETCD_ENDPOINTS" get --keys-only \
    "$NS/$CUR_SVC/$HOST:$CUR_PORT" 2>/dev/null) ]]
}

build() {
  say "building Herald services into $HBIN ..."
  mkdir -p "$HBIN"
  (cd "$REPO" && env -u GOWORK go build -o "$HBIN/" ./services/post/cmd/post ./services/graph/cmd/graph \
    ./services/fanout/cmd/fanout ./services/timeline/cmd/timeline ./services/herald/cmd/feedctl)
}

start_instance() {
  local svc=$1 i=$2 name port
  name="$svc-$i"
  port=$(port_of "$svc" "$i")
  CUR_SVC=$svc CUR_PORT=$port
  if pid=$(server_pid "$name"); then
    say "$name already running (pid $pid) at $HOST:$port"
    return 0
  fi
  port_open "$port" && die "$name: port $HOST:$port is in use by a process these scripts did not start"
  # Each binary takes only its own flags: graph keeps no cache, only its
  # rate-limit buckets in Redis.
  local cache=(-cache redis "${REDIS_ARGS[@]}")
  [[ $svc == graph ]] && cache=("${REDIS_ARGS[@]}")
  local events=(-bus jetstream -nats "$HERALD_NATS_URL")
  [[ $BUS == kafka ]] && events=(-bus kafka -kafka-brokers "$HERALD_KAFKA_BROKERS")
  if [[ $HA == 1 ]]; then
    if [[ $BUS == kafka ]]; then events+=(-kafka-replication-factor 3); else events+=(-nats-replicas 3); fi
  fi
  # The timeline instances also serve the HTTP/JSON API, every route of it (post and graph
  # reached through etcd), on their gRPC port + 1000.
  local http=()
  [[ $svc == timeline ]] && http=(-http-addr "$HOST:$((port + 1000))")
  mkdir -p "$(datadir "$name")"
  launch "$name" "$HBIN/$svc" \
    -namespace "$NS" -addr "$HOST:$port" -metrics "$HOST:$((port + 2000))" "${http[@]}" \
    -auth-keys "$AUTH_DIR/auth-dev-key.pub.pem" -auth-service-key "$AUTH_DIR/auth-service-key.pem" \
    -etcd "$HERALD_ETCD_ENDPOINTS" "${events[@]}" \
    -store cassandra "${CASSANDRA_ARGS[@]}" "${cache[@]}"
  wait_ready "$name" "$HOST:$port" registered "${HERALD_INSTANCE_START_TIMEOUT:-60}"
}

up() {
  if [[ $HA == 1 ]]; then
    "$LOCAL_SCRIPTS/etcd-cluster.sh" start
    if [[ $BUS == kafka ]]; then "$LOCAL_SCRIPTS/kafka-cluster.sh" start; else "$LOCAL_SCRIPTS/nats-cluster.sh" start; fi
    "$LOCAL_SCRIPTS/redis-sentinel.sh" start
    "$LOCAL_SCRIPTS/cassandra-cluster.sh" start
  else
    "$LOCAL_SCRIPTS/up.sh" redis "$EVENT_SERVER" etcd cassandra
  fi
  build
  "$HBIN/feedctl" keygen "$AUTH_DIR" >/dev/null
  # graph first: the others dial it.
  for svc in "${SERVICES[@]}"; do
    for ((i = 1; i <= INSTANCES; i++)); do start_instance "$svc" "$i"; done
  done
  cat <<MSG

Herald cluster is up (namespace $NS, event log on $BUS$([[ $HA == 0 ]] || echo ", HA: every server replicated")).
  etcd       $HERALD_ETCD_ENDPOINTS     $(if [[ $BUS == kafka ]]; then echo "Kafka $HERALD_KAFKA_BROKERS"; else echo "NATS $HERALD_NATS_URL"; fi)
  Redis      ${REDIS_ARGS[*]:1}     Cassandra $HERALD_CASSANDRA_HOSTS
  each logs in as $HERALD_ETCD_USER, with the passwords in $(dirname "$HERALD_ETCD_PASSWORD_FILE")
MSG
  if [[ $HA == 1 ]]; then
    say "  HA: etcd members ${HERALD_ETCD_ENDPOINTS//,/ } (peers on client port + 1; $LOCAL_SCRIPTS/etcd-cluster.sh status|kill N|start N)"
    if [[ $BUS == kafka ]]; then
      say "      Kafka brokers ${HERALD_KAFKA_BROKERS//,/ } ($LOCAL_SCRIPTS/kafka-cluster.sh status|kill N|start N), replication factor 3"
    else
      say "      NATS nodes ${HERALD_NATS_URL//,/ } (routes 6261-6263, monitoring 8261-8263; $LOCAL_SCRIPTS/nats-cluster.sh status|kill N|start N), streams with 3 replicas"
    fi
    say "      Redis primary and replica under the Sentinels ${HERALD_REDIS_SENTINELS//,/ }, master $HERALD_REDIS_MASTER ($LOCAL_SCRIPTS/redis-sentinel.sh status|kill-primary)"
    say "      Cassandra ring ${HERALD_CASSANDRA_HOSTS//,/ }, replication factor 3 ($LOCAL_SCRIPTS/cassandra-cluster.sh status|kill N|start N)"
  fi
  for svc in "${SERVICES[@]}"; do
    printf '  %-9s' "$svc"
    for ((i = 1; i <= INSTANCES; i++)); do printf ' %s:%s' "$HOST" "$(port_of "$svc" "$i")"; done
    printf '   (metrics on port + 2000)\n'
  done
  printf '  HTTP/JSON  http://%s:%s' "$HOST" "$(( $(port_of timeline 1) + 1000 ))"
  for ((i = 2; i <= INSTANCES; i++)); do printf ' http://%s:%s' "$HOST" "$(( $(port_of timeline "$i") + 1000 ))"; done
  printf '   (every route, on the timeline instances)\n'
  local ha_env=""
  [[ $HA == 0 ]] || ha_env="; eval \"\$($LOCAL_SCRIPTS/etcd-cluster.sh env)\"; eval \"\$($LOCAL_SCRIPTS/nats-cluster.sh env)\""
  cat <<MSG

Try it, finding each service through etcd, as each user (tokens signed with the keys in
$AUTH_DIR):
  eval "\$($LOCAL_SCRIPTS/env.sh)"$ha_env
  $HBIN/feedctl --etcd $HERALD_ETCD_ENDPOINTS --data $AUTH_DIR follow bob alice
  $HBIN/feedctl --etcd $HERALD_ETCD_ENDPOINTS --data $AUTH_DIR post alice "hello, cluster"
  $HBIN/feedctl --etcd $HERALD_ETCD_ENDPOINTS --data $AUTH_DIR timeline bob
Or over HTTP/JSON:
  TOKEN=\$($HBIN/feedctl --data $AUTH_DIR token bob)
  curl -H "Authorization: Bearer \$TOKEN" http://$HOST:$(( $(port_of timeline 1) + 1000 ))/v1/users/bob/home
Logs: $LOG_DIR/<service>-<n>.log. Stop everything with: make cluster-down
MSG
}

down() {
  local svc i
  for ((k = ${#SERVICES[@]} - 1; k >= 0; k--)); do
    svc=${SERVICES[k]}
    for ((i = INSTANCES; i >= 1; i--)); do stop_server "$svc-$i" "${HERALD_STOP_TIMEOUT:-30}"; done
  done
  "$LOCAL_SCRIPTS/stop.sh" all
  if [[ $HA == 1 ]] || ha_running; then
    local script
    for script in "${HA_SCRIPTS[@]}"; do "$LOCAL_SCRIPTS/$script" stop; done
  fi
}

status() {
  local name
  for name in redis nats kafka etcd cassandra; do
    if pid=$(server_pid "$name"); then say "$name: running (pid $pid)"; else say "$name: stopped"; fi
  done
  if [[ $HA == 1 ]] || ha_running; then
    for name in "${HA_SERVERS[@]}"; do
      if pid=$(server_pid "$name"); then say "$name: running (pid $pid)"; else say "$name: stopped"; fi
    done
    say "(kafka-ha-N run with BUS=kafka, nats-ha-N without)"
  fi
  for svc in "${SERVICES[@]}"; do
    for ((i = 1; i <= INSTANCES; i++)); do
      name="$svc-$i"
      if pid=$(server_pid "$name"); then say "$name: running (pid $pid) at $HOST:$(port_of "$svc" "$i")"; else say "$name: stopped"; fi
    done
  done
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  *) die "usage: $0 up|down|status" ;;
esac
