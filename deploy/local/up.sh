#!/usr/bin/env bash
# Start (or reuse) all local servers in sequence: redis, nats, etcd, cassandra.
# Pass names to start only some of them: up.sh redis nats
# Kafka, ZooKeeper and the Redis Sentinel set are not in the default list; start them by
# name: up.sh kafka zookeeper redis-sentinel (kafka-cluster: the three-broker Kafka of
# kafka-cluster.sh; cassandra-ring: the three-node Cassandra ring of cassandra-cluster.sh)
# (make test's TEST_SERVERS names them: the Kafka bus and the coordination lab are tested).
# Then: eval "$(deploy/local/env.sh)"  — and stop them with: deploy/local/stop.sh all
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

servers=("$@")
((${#servers[@]} > 0)) || servers=(redis nats etcd cassandra)
for s in "${servers[@]}"; do
  case $s in
    redis | nats | etcd | cassandra | kafka | zookeeper | redis-sentinel) "$here/$s.sh" ;;
    kafka-cluster) "$here/kafka-cluster.sh" start ;;
    cassandra-ring) "$here/cassandra-cluster.sh" start ;;
    *) echo "usage: $0 [redis|nats|etcd|cassandra|kafka|zookeeper|redis-sentinel|kafka-cluster|cassandra-ring ...]" >&2; exit 1 ;;
  esac
done
echo "all started; use them with: eval \"\$($here/env.sh)\""
