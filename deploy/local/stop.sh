#!/usr/bin/env bash
# Stop local servers started by the deploy/local scripts.
#   stop.sh redis|nats|etcd|cassandra|cassandra-ring|kafka|zookeeper|prometheus|jaeger|all [more names...]
# (zookeeper is the single test node; zookeeper.sh stop ensemble stops the lab's ensemble)
# Sends TERM to the pid in .local/run/<server>.pid, waits (HERALD_STOP_TIMEOUT, default 30 s),
# then KILL; removes the pidfile. Only ever signals that pid, and only if it is still our server.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SERVERS=(redis nats etcd cassandra cassandra-ring kafka zookeeper redis-sentinel prometheus jaeger)
TIMEOUT="${HERALD_STOP_TIMEOUT:-30}"

usage() { die "usage: $0 <$(IFS='|'; echo "${SERVERS[*]}")|all> [...]"; }
(($# > 0)) || usage

names=()
for arg in "$@"; do
  case $arg in
    all) names+=(jaeger prometheus cassandra-ring kafka-cluster redis-sentinel zookeeper kafka cassandra etcd nats redis) ;; # reverse start order
    redis | nats | etcd | cassandra | cassandra-ring | kafka | zookeeper | redis-sentinel | prometheus | jaeger) names+=("$arg") ;;
    *) usage ;;
  esac
done

for name in "${names[@]}"; do
  if [[ $name == redis-sentinel || $name == kafka-cluster ]]; then
    "$(dirname "${BASH_SOURCE[0]}")/$name.sh" stop
  elif [[ $name == cassandra-ring ]]; then
    "$(dirname "${BASH_SOURCE[0]}")/cassandra-cluster.sh" stop
  else
    stop_server "$name" "$TIMEOUT"
  fi
done
