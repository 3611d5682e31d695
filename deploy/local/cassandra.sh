#!/usr/bin/env bash
# Start (or reuse) a local single-node Cassandra 5.0 with CQL on
# 127.0.0.1:${HERALD_CASSANDRA_PORT:-9043}; `cassandra.sh nodetool ARGS...` runs nodetool on it.
# No binary tarball of Cassandra 5.0 is on Maven Central, so the server jars
# (org.apache.cassandra:cassandra-all and its dependencies) are fetched with
# `mvn dependency:copy-dependencies` (cassandra/pom.xml) into .local/cassandra-<ver>/lib, and
# run with our own cassandra/cassandra.yaml and cassandra/logback.xml. Needs Java 17.
# Clients log in (PasswordAuthenticator, CassandraAuthorizer) as the role herald, with the
# password in secrets/cassandra-password; herald_admin (secrets/cassandra-admin-password)
# is the superuser, and the default superuser cassandra cannot log in. The roles are set up
# by services/platform/testenv/cmd/cassandraroles (a Go program with gocql: cqlsh is Python,
# and not installed), built into the bin dir.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=cassandra
VERSION="${HERALD_CASSANDRA_VERSION:-5.0.9}"
PORT="${HERALD_CASSANDRA_PORT:-9043}"
STORAGE_PORT="${HERALD_CASSANDRA_STORAGE_PORT:-7010}"
JMX_PORT="${HERALD_CASSANDRA_JMX_PORT:-7209}"
ADDR="$HOST:$PORT"
TIMEOUT="${HERALD_CASSANDRA_START_TIMEOUT:-180}"
CASS_HOME="$STATE/cassandra-$VERSION"
LIB="$CASS_HOME/lib"
TEMPLATES="$LOCAL_SCRIPTS/cassandra"
PASSWORD_FILE=$(secret cassandra-password)
ADMIN_PASSWORD_FILE=$(secret cassandra-admin-password)

# Ready when the native port answers a CQL OPTIONS request (protocol v4) with SUPPORTED:
# response header = version 0x84, flags 0, stream 1, opcode 0x06.
cql_ready() {
  local hdr
  # shellcheck disable=SC2016 # $0/$1 are expanded by the inner bash
  hdr=$(timeout 3 bash -c '
    exec 3<>"/dev/tcp/$0/$1" || exit 1
    printf "\x04\x00\x00\x01\x05\x00\x00\x00\x00" >&3
    head -c 5 <&3 | od -An -tx1' "$HOST" "$PORT" 2>/dev/null) || return 1
  [[ ${hdr//[[:space:]]/} == 8400000106 ]]
}

# cql_requires_login: the server answers a CQL STARTUP with AUTHENTICATE (opcode 0x03), not
# READY (0x02): it runs with PasswordAuthenticator. A data dir from before these scripts set
# up authentication ran with AllowAllAuthenticator, and such a server is restarted.
cql_requires_login() {
  local hdr
  # shellcheck disable=SC2016 # $0/$1 are expanded by the inner bash
  hdr=$(timeout 3 bash -c '
    exec 3<>"/dev/tcp/$0/$1" || exit 1
    printf "\x04\x00\x00\x01\x01\x00\x00\x00\x16\x00\x01\x00\x0bCQL_VERSION\x00\x053.0.0" >&3
    head -c 5 <&3 | od -An -tx1' "$HOST" "$PORT" 2>/dev/null) || return 1
  [[ ${hdr//[[:space:]]/} == 8400000103 ]]
}

# cassandra_roles (ON_READY): build cassandraroles and set the roles up; it changes nothing
# when Herald's role logs in already and cassandra does not.
cassandra_roles() {
  local bin="$BIN_DIR/cassandraroles"
  if ! (cd "$REPO" && env -u GOWORK go build -o "$bin" ./services/platform/testenv/cmd/cassandraroles) \
    >"$LOG_DIR/cassandraroles-build.log" 2>&1; then
    tail -n 30 "$LOG_DIR/cassandraroles-build.log" >&2
    die "building cassandraroles failed (full output: $LOG_DIR/cassandraroles-build.log)"
  fi
  "$bin" -hosts "$ADDR" -user "$SERVICE_USER" -password-file "$PASSWORD_FILE" \
    -admin-password-file "$ADMIN_PASSWORD_FILE" || die "setting up Cassandra's roles failed"
  say "  login: role $SERVICE_USER, password in $PASSWORD_FILE"
}

java_bin() {
  if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
    printf '%s\n' "$JAVA_HOME/bin/java"
  else
    command -v java || die "java not found; Cassandra $VERSION needs Java 17 (apt-get install -y openjdk-17-jre-headless)"
  fi
}

check_java() {
  local spec
  spec=$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  [[ $spec == 17 ]] ||
    die "$JAVA is Java $spec; this script runs Cassandra $VERSION on Java 17 (set JAVA_HOME or apt-get install -y openjdk-17-jre-headless)"
}

install_cassandra() {
  local build="$BUILD_DIR/cassandra" start
  [[ -f $CASS_HOME/.installed ]] && return 0
  apt_install mvn maven
  say "downloading Cassandra $VERSION jars (about 70 MB, ~100 jars) with Maven into $LIB ..."
  start=$(now_ms)
  mkdir -p "$build" "$CASS_HOME"
  cp "$TEMPLATES/pom.xml" "$build/pom.xml" # keep mvn's target/ out of the repo
  rm -rf "$LIB.tmp"
  if ! mvn -B -f "$build/pom.xml" -Dcassandra.version="$VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIB.tmp" \
    >"$LOG_DIR/cassandra-install.log" 2>&1; then
    tail -n 30 "$LOG_DIR/cassandra-install.log" >&2
    die "Maven could not fetch cassandra-all $VERSION (full output: $LOG_DIR/cassandra-install.log)"
  fi
  [[ -f $LIB.tmp/cassandra-all-$VERSION.jar ]] || die "cassandra-all-$VERSION.jar missing from $LIB.tmp"
  rm -rf "$LIB"
  mv "$LIB.tmp" "$LIB"
  touch "$CASS_HOME/.installed"
  say "  fetched $(find "$LIB" -name '*.jar' | wc -l) jars ($(du -sh "$LIB" | cut -f1)) in $(( ($(now_ms) - start) / 1000 )) s"
}

write_config() {
  sed -e "s/@HOST@/$HOST/g" -e "s/@NATIVE_PORT@/$PORT/g" -e "s/@STORAGE_PORT@/$STORAGE_PORT/g" \
    "$TEMPLATES/cassandra.yaml" >"$CONF_DIR/cassandra.yaml"
}

# JAVA17_OPTS: from Cassandra 5.0's conf/jvm17-server.options (JPMS section; without them it
# dies), and its netty settings. cassandra-cluster.sh, which sources this file, runs its nodes
# with them too.
JAVA17_OPTS=(
  -Djdk.attach.allowAttachSelf=true
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
  --add-exports java.sql/java.sql=ALL-UNNAMED
  --add-exports java.base/java.lang.ref=ALL-UNNAMED
  --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
  --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
  --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
  --add-opens java.base/java.lang.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
  --add-opens java.base/jdk.internal.math=ALL-UNNAMED
  --add-opens java.base/jdk.internal.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
  --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
  -Dio.netty.tryReflectionSetAccessible=true
  -Dio.netty.allocator.useCacheForAllThreads=true
  -Dio.netty.allocator.maxOrder=11
)

# Sourced (by cassandra-cluster.sh), this file defines the above and starts nothing.
[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0

# cassandra.sh nodetool ARGS...: Cassandra's nodetool against this node's JMX port (local
# only, 127.0.0.1:$JMX_PORT). It is a Java tool in the server jars; a small client JVM starts
# in about a second.
if [[ ${1:-} == nodetool ]]; then
  shift
  server_pid "$NAME" >/dev/null || die "$NAME is not running; start it with $0"
  exec "$(java_bin)" -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:-UsePerfData "${JAVA17_OPTS[@]}" \
    -Dlogback.configurationFile="file://$TEMPLATES/logback-ring-tools.xml" \
    -cp "$LIB/*" org.apache.cassandra.tools.NodeTool -h 127.0.0.1 -p "$JMX_PORT" "$@"
fi

command -v go >/dev/null || die "go is not on PATH; it is needed to build cassandraroles"
stop_if_stale "$NAME" cql_ready cql_requires_login
ON_READY=cassandra_roles
reuse_if_running "$NAME" "$ADDR" cql_ready "$TIMEOUT" "$PORT" "$STORAGE_PORT" "$JMX_PORT"

JAVA=$(java_bin)
check_java
install_cassandra
write_config
mkdir -p "$(datadir "$NAME")/triggers"

# shellcheck disable=SC2206 # HERALD_CASSANDRA_JVM_OPTS is split on purpose
jvm_opts=(
  -Xms"${HERALD_CASSANDRA_HEAP_MIN:-512m}" -Xmx"${HERALD_CASSANDRA_HEAP_MAX:-1g}" -Xss256k
  -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxGCPauseMillis=300 -XX:+PerfDisableSharedMem
  -XX:+ExitOnOutOfMemoryError
  -Djava.net.preferIPv4Stack=true
  "${JAVA17_OPTS[@]}"
  # Config, storage, logging.
  -Dcassandra.config="file://$CONF_DIR/cassandra.yaml"
  -Dcassandra.storagedir="$(datadir "$NAME")"
  -Dcassandra.triggers_dir="$(datadir "$NAME")/triggers"
  -Dcassandra.logdir="$LOG_DIR"
  -Dlogback.configurationFile="file://$TEMPLATES/logback.xml"
  -Dcassandra-foreground=yes
  -Dcassandra.jmx.local.port="$JMX_PORT"
  # Fast single-node start.
  -Dcassandra.skip_wait_for_gossip_to_settle=0
  -Dcassandra.ring_delay_ms=100
  -Dcassandra.superuser_setup_delay_ms=100
  -Dcassandra.unsafesystem=true
  ${HERALD_CASSANDRA_JVM_OPTS:-}
)

launch "$NAME" "$JAVA" "${jvm_opts[@]}" -cp "$LIB/*" org.apache.cassandra.service.CassandraDaemon
wait_ready "$NAME" "$ADDR" cql_ready "$TIMEOUT"
pid=$(server_pid "$NAME")
say "  Cassandra $VERSION, pid $pid, RSS $(( $(ps -o rss= -p "$pid") / 1024 )) MiB"
cassandra_roles
say "  cqlsh (optional): pip install cqlsh && cqlsh -u $SERVICE_USER $HOST $PORT (it asks for the password)"
