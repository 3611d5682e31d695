#!/usr/bin/env bash
# Print the environment for Herald services and tests to reach the local servers:
#   eval "$(deploy/local/env.sh)"
# Ports follow the same HERALD_*_PORT overrides as the start scripts.
set -euo pipefail
h=127.0.0.1
echo "export HERALD_REDIS_ADDR=$h:${HERALD_REDIS_PORT:-6390}"
echo "export HERALD_NATS_URL=nats://$h:${HERALD_NATS_PORT:-4233}"
echo "export HERALD_ETCD_ENDPOINTS=$h:${HERALD_ETCD_PORT:-2389}"
echo "export HERALD_CASSANDRA_HOSTS=$h:${HERALD_CASSANDRA_PORT:-9043}"
