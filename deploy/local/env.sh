#!/usr/bin/env bash
# Print the environment for Herald services and tests to reach the local servers:
#   eval "$(deploy/local/env.sh)"
# Ports follow the same HERALD_*_PORT overrides as the start scripts. Besides each server's
# address it prints Herald's login there: the user, and the path of the file holding its
# password (the start scripts create the files; this script only names them). Every Herald
# binary takes these variables as its -<server>-user and -<server>-password-file flags.
# It also passes on HERALD_LOCAL_DIR, HERALD_BIN_DIR, HERALD_SECRETS_DIR and the port
# overrides when they are set, so that a test that restarts a server through the scripts
# (the cluster tests do) restarts this one.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
state="${HERALD_LOCAL_DIR:-$repo/.local}"
secrets="${HERALD_SECRETS_DIR:-$state/secrets}"
h=127.0.0.1
user=herald # SERVICE_USER in lib.sh

for v in HERALD_LOCAL_DIR HERALD_BIN_DIR HERALD_SECRETS_DIR \
  HERALD_REDIS_PORT HERALD_NATS_PORT HERALD_NATS_MONITOR_PORT HERALD_ETCD_PORT HERALD_ETCD_PEER_PORT \
  HERALD_CASSANDRA_PORT HERALD_CASSANDRA_STORAGE_PORT HERALD_CASSANDRA_JMX_PORT \
  HERALD_KAFKA_PORT HERALD_KAFKA_CONTROLLER_PORT HERALD_ZK_PORT HERALD_REDIS_HA_PORT HERALD_REDIS_SENTINEL_PORT; do
  if [[ -n ${!v:-} ]]; then printf 'export %s=%q\n' "$v" "${!v}"; fi
done
echo "export HERALD_REDIS_ADDR=$h:${HERALD_REDIS_PORT:-6390}"
echo "export HERALD_REDIS_USER=$user"
printf 'export HERALD_REDIS_PASSWORD_FILE=%q\n' "$secrets/redis-password"
echo "export HERALD_NATS_URL=nats://$h:${HERALD_NATS_PORT:-4233}"
echo "export HERALD_NATS_USER=$user"
printf 'export HERALD_NATS_PASSWORD_FILE=%q\n' "$secrets/nats-password"
echo "export HERALD_ETCD_ENDPOINTS=$h:${HERALD_ETCD_PORT:-2389}"
echo "export HERALD_ETCD_USER=$user"
printf 'export HERALD_ETCD_PASSWORD_FILE=%q\n' "$secrets/etcd-password"
echo "export HERALD_CASSANDRA_HOSTS=$h:${HERALD_CASSANDRA_PORT:-9043}"
echo "export HERALD_CASSANDRA_USER=$user"
printf 'export HERALD_CASSANDRA_PASSWORD_FILE=%q\n' "$secrets/cassandra-password"
echo "export HERALD_KAFKA_BROKERS=$h:${HERALD_KAFKA_PORT:-9092}"
echo "export HERALD_KAFKA_USER=$user"
printf 'export HERALD_KAFKA_PASSWORD_FILE=%q\n' "$secrets/kafka-password"
echo "export HERALD_ZOOKEEPER_SERVERS=$h:${HERALD_ZK_PORT:-2182}"
# The Sentinels of redis-sentinel.sh (master name herald), for the failover tests. No
# HERALD_REDIS_MASTER here: that would turn every Herald process started from this
# environment into a Sentinel client of -redis.
sp=${HERALD_REDIS_SENTINEL_PORT:-26490}
echo "export HERALD_REDIS_SENTINELS=$h:$sp,$h:$((sp + 1)),$h:$((sp + 2))"
