#!/usr/bin/env bash
# Start (or reuse) a local single-node Kafka 4 in KRaft mode (no ZooKeeper) with its client
# listener on 127.0.0.1:${HERALD_KAFKA_PORT:-9092} and its controller listener on
# 127.0.0.1:${HERALD_KAFKA_CONTROLLER_PORT:-9093}. The one node is both broker and controller.
# The broker jars (org.apache.kafka:kafka_2.13, its runtime dependencies and an slf4j binding
# for log4j 2) are fetched with `mvn dependency:copy-dependencies` (kafka/pom.xml) into
# .local/kafka-<ver>/lib, like cassandra.sh does, and run with our own kafka/server.properties
# and kafka/log4j2.xml. Needs Java 17 or later.
# Clients log in with SASL/PLAIN as the user herald, with the password in
# secrets/kafka-password; the client listener takes no other login. The controller listener
# is plain text without a login (loopback only; it serves the metadata quorum, not produce
# or fetch).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=kafka
VERSION="${HERALD_KAFKA_VERSION:-4.1.1}"
PORT="${HERALD_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${HERALD_KAFKA_CONTROLLER_PORT:-9093}"
ADDR="$HOST:$PORT"
TIMEOUT="${HERALD_KAFKA_START_TIMEOUT:-60}"
KAFKA_HOME="$STATE/kafka-$VERSION"
LIB="$KAFKA_HOME/lib"
TEMPLATES="$LOCAL_SCRIPTS/kafka"
PASSWORD_FILE=$(secret kafka-password)
CONF="$CONF_DIR/kafka.properties"
DATA="$(datadir "$NAME")"

# The probes below speak the start of the Kafka protocol from bash (/dev/tcp), like
# cassandra.sh's cql_ready: nothing to install, and the password stays off every command
# line (printf is a builtin). Each request has a v1 header: int32 size, int16 api_key,
# int16 api_version, int32 correlation_id, int16-length client_id.
PROBE_CLIENT_ID=herald-kafka-sh

# be16 N / be32 N: N big-endian, as printf %b escapes.
be16() { printf '\\x%02x\\x%02x' $(($1 >> 8 & 255)) $(($1 & 255)); }
be32() { printf '%s%s' "$(be16 $(($1 >> 16 & 65535)))" "$(be16 $(($1 & 65535)))"; }

# kafka_send API_KEY API_VERSION CORRELATION_ID BODY_LEN BODY: write one request to fd 3;
# BODY is printf %b text, BODY_LEN its length in bytes.
kafka_send() {
  printf '%b' "$(be32 $((10 + ${#PROBE_CLIENT_ID} + $4)))$(be16 "$1")$(be16 "$2")$(be32 "$3")$(be16 ${#PROBE_CLIENT_ID})$PROBE_CLIENT_ID$5" >&3
}

# read_hex N: the next N bytes from fd 3 (fewer if it closes or stays silent for 3 s), in hex.
read_hex() {
  timeout 3 head -c "$1" <&3 | od -An -v -tx1 | tr -d ' \n'
}

# kafka_recv CORRELATION_ID: read one response from fd 3 and print its body in hex; fails
# unless it is whole and answers CORRELATION_ID. Every body below starts with its int16
# error_code.
kafka_recv() {
  local hex size
  hex=$(read_hex 4)
  ((${#hex} == 8)) || return 1
  size=$((16#$hex))
  ((size >= 6 && size <= 1048576)) || return 1
  hex=$(read_hex "$size")
  ((${#hex} == 2 * size)) || return 1
  [[ ${hex:0:8} == "$(printf '%08x' "$1")" ]] || return 1
  printf '%s\n' "${hex:8}"
}

# kafka_answers: the client port answers an ApiVersions v0 request (allowed before the SASL
# handshake) with error_code 0. The broker only starts serving its listeners once it has
# caught up with the metadata quorum and is unfenced.
kafka_answers() {
  (
    exec 3<>"/dev/tcp/$HOST/$PORT" || exit 1
    kafka_send 18 0 1 0 ''
    body=$(kafka_recv 1) || exit 1
    [[ ${body:0:4} == 0000 ]]
  ) 2>/dev/null
}

# kafka_login: Herald's user logs in on the client port with SASL/PLAIN (SaslHandshake v1
# for PLAIN, then SaslAuthenticate v0 with "\0user\0password", RFC 4616) with the password
# in secrets/kafka-password: both answers have error_code 0. A wrong password gets
# SASL_AUTHENTICATION_FAILED (58), and the broker closes the connection.
kafka_login() {
  local pw auth_len
  pw=$(<"$PASSWORD_FILE")
  auth_len=$((2 + ${#SERVICE_USER} + ${#pw}))
  (
    exec 3<>"/dev/tcp/$HOST/$PORT" || exit 1
    kafka_send 17 1 1 7 "$(be16 5)PLAIN"
    body=$(kafka_recv 1) || exit 1
    [[ ${body:0:4} == 0000 ]] || exit 1
    kafka_send 36 0 2 $((4 + auth_len)) "$(be32 "$auth_len")\\x00$SERVICE_USER\\x00$pw"
    body=$(kafka_recv 2) || exit 1
    [[ ${body:0:4} == 0000 ]]
  ) 2>/dev/null
}

kafka_ready() { kafka_answers && kafka_login; }

java_bin() {
  if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
    printf '%s\n' "$JAVA_HOME/bin/java"
  else
    command -v java || die "java not found; Kafka $VERSION needs Java 17 or later (apt-get install -y openjdk-17-jre-headless)"
  fi
}

check_java() {
  local spec
  spec=$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  if ! [[ $spec =~ ^[0-9]+$ ]] || ((spec < 17)); then
    die "$JAVA is Java ${spec:-of unknown version}; Kafka $VERSION's broker needs Java 17 or later (set JAVA_HOME or apt-get install -y openjdk-17-jre-headless)"
  fi
}

install_kafka() {
  local build="$BUILD_DIR/kafka" start
  [[ -f $KAFKA_HOME/.installed ]] && return 0
  apt_install mvn maven
  say "downloading Kafka $VERSION jars (about 45 MB, ~50 jars) with Maven into $LIB ..."
  start=$(now_ms)
  mkdir -p "$build" "$KAFKA_HOME"
  cp "$TEMPLATES/pom.xml" "$build/pom.xml" # keep mvn's target/ out of the repo
  rm -rf "$LIB.tmp"
  if ! mvn -B -f "$build/pom.xml" -Dkafka.version="$VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIB.tmp" \
    >"$LOG_DIR/kafka-install.log" 2>&1; then
    tail -n 30 "$LOG_DIR/kafka-install.log" >&2
    die "Maven could not fetch kafka_2.13 $VERSION (full output: $LOG_DIR/kafka-install.log)"
  fi
  [[ -f $LIB.tmp/kafka_2.13-$VERSION.jar ]] || die "kafka_2.13-$VERSION.jar missing from $LIB.tmp"
  rm -rf "$LIB"
  mv "$LIB.tmp" "$LIB"
  touch "$KAFKA_HOME/.installed"
  say "  fetched $(find "$LIB" -name '*.jar' | wc -l) jars ($(du -sh "$LIB" | cut -f1)) in $(( ($(now_ms) - start) / 1000 )) s"
}

# write_config: conf/kafka.properties from kafka/server.properties, with the password (so
# 0600). The fields are filled in by bash, not sed, to keep the password off command lines.
write_config() {
  local conf
  conf=$(<"$TEMPLATES/server.properties")
  conf=${conf//@HOST@/$HOST}
  conf=${conf//@PORT@/$PORT}
  conf=${conf//@CONTROLLER_PORT@/$CONTROLLER_PORT}
  conf=${conf//@DATA_DIR@/$DATA}
  conf=${conf//@USER@/$SERVICE_USER}
  conf=${conf//@PASSWORD@/$(<"$PASSWORD_FILE")}
  [[ $conf != *@[A-Z_]*@* ]] || die "$TEMPLATES/server.properties has a field kafka.sh does not fill in"
  printf '# Written by deploy/local/kafka.sh at each start from %s; edits are lost.\n%s\n' \
    "$TEMPLATES/server.properties" "$conf" | write_private "$CONF"
}

# storage_tool ARGS...: Kafka's kafka-storage tool (kafka.tools.StorageTool). Its log goes
# to stderr at WARN, its own output to stdout.
storage_tool() {
  "$JAVA" -Xmx256m -Dlog4j2.configurationFile="file://$TEMPLATES/log4j2.xml" \
    -Dherald.kafka.log.level=WARN -Dherald.kafka.log.target=SYSTEM_ERR \
    -cp "$LIB/*" kafka.tools.StorageTool "$@"
}

# format_storage: on first start (no meta.properties in the data dir), format the data dir
# as a new cluster with a random cluster id, this node the only voter of the metadata quorum
# (--standalone). meta.properties keeps the cluster id; a restart reuses the data as it is.
format_storage() {
  local start cid
  [[ -f $DATA/meta.properties ]] && return 0
  mkdir -p "$DATA"
  chmod 700 "$DATA"
  start=$(now_ms)
  cid=$(storage_tool random-uuid 2>"$LOG_DIR/kafka-format.log") || die "kafka-storage random-uuid failed (see $LOG_DIR/kafka-format.log)"
  # A Kafka UUID: 16 bytes in URL-safe base64 without padding.
  [[ $cid =~ ^[A-Za-z0-9_-]{22}$ ]] || die "kafka-storage random-uuid printed '$cid', not a cluster id (see $LOG_DIR/kafka-format.log)"
  say "formatting $DATA for a new cluster (id $cid, node 1 the only controller) ..."
  if ! storage_tool format -t "$cid" -c "$CONF" --standalone >>"$LOG_DIR/kafka-format.log" 2>&1; then
    tail -n 30 "$LOG_DIR/kafka-format.log" >&2
    die "formatting $DATA failed (full output: $LOG_DIR/kafka-format.log)"
  fi
  say "  $(tail -n 1 "$LOG_DIR/kafka-format.log") ($(( ($(now_ms) - start) / 1000 )) s)"
}

# Sourced (kafka-cluster.sh does), it only defines the settings and functions above.
[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0

stop_if_stale "$NAME" kafka_answers kafka_login
reuse_if_running "$NAME" "$ADDR" kafka_ready "$TIMEOUT" "$PORT" "$CONTROLLER_PORT"

JAVA=$(java_bin)
check_java
install_kafka
write_config
format_storage

# shellcheck disable=SC2206 # HERALD_KAFKA_JVM_OPTS is split on purpose
jvm_opts=(
  -Xms"${HERALD_KAFKA_HEAP_MIN:-256m}" -Xmx"${HERALD_KAFKA_HEAP_MAX:-512m}"
  # Kafka's own defaults (KAFKA_JVM_PERFORMANCE_OPTS in bin/kafka-run-class.sh).
  -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
  -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
  -XX:+ExitOnOutOfMemoryError
  -Dlog4j2.configurationFile="file://$TEMPLATES/log4j2.xml"
  ${HERALD_KAFKA_JVM_OPTS:-}
)

launch "$NAME" "$JAVA" "${jvm_opts[@]}" -cp "$LIB/*" kafka.Kafka "$CONF"
wait_ready "$NAME" "$ADDR" kafka_ready "$TIMEOUT"
pid=$(server_pid "$NAME")
say "  Kafka $VERSION (KRaft: node 1, broker and controller on $HOST:$CONTROLLER_PORT), pid $pid, RSS $(( $(ps -o rss= -p "$pid") / 1024 )) MiB"
say "  login: SASL/PLAIN user $SERVICE_USER, password in $PASSWORD_FILE"
