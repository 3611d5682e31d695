#!/usr/bin/env bash
# Start (or reuse) a local ZooKeeper 3.9: one standalone node, or a three-node ensemble on
# 127.0.0.1, for Herald's coordination lab (docs/lab/coordination.md) and its tests.
#
#   zookeeper.sh [start]            one node, client port ${HERALD_ZK_PORT:-2182}
#   zookeeper.sh ensemble           three nodes (ports below); starts only the ones not running
#   zookeeper.sh stop [ensemble|N]  TERM (then KILL) by pidfile, as stop.sh does; N: node N only
#   zookeeper.sh status [ensemble]  pid and mode (standalone, leader, follower) of each node
#   zookeeper.sh env [ensemble]     export HERALD_LAB_ZK=<client addresses>, for the tests
#   zookeeper.sh pid N              pid of ensemble node N (1-3)
#   zookeeper.sh kill N             SIGKILL ensemble node N (a crash; `ensemble` restarts it)
#   zookeeper.sh pause N            SIGSTOP ensemble node N (a process that hangs: a GC pause,
#                                   a stuck disk); resume N sends SIGCONT
#
# HERALD_ZK_FRESH=1 starts the nodes that are not running on empty data (their snapshots and
# transaction logs removed): lab-coordination.sh uses it, so that its runs' writes do not pile
# up (autopurge runs only hourly).
#
# Ensemble ports, node N = 1, 2, 3 (base ${HERALD_ZK_ENSEMBLE_PORT_BASE:-2182}, plus 100 N):
#   client 2282, 2382, 2482; quorum (follower to leader) 2283, 2383, 2483; leader election
#   2284, 2384, 2484. The single node's 2182 is not among them, so both can run at once (the
#   tests on the single node, the lab on the ensemble).
#
# The jars (org.apache.zookeeper:zookeeper and its runtime dependencies, plus metrics-core and
# logback, see zookeeper/pom.xml) are fetched with `mvn dependency:copy-dependencies` into
# .local/zookeeper-<ver>/lib and run with `java -cp 'lib/*'
# org.apache.zookeeper.server.quorum.QuorumPeerMain <cfg>` (standalone when the config names
# no servers). Config: zookeeper/zk.cfg; logs: zookeeper/logback.xml to logs/<name>.log.
#
# No authentication: the servers listen on loopback only and keep throwaway data, and no
# Herald service uses ZooKeeper. Do not copy this setup to anything reachable from elsewhere.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VERSION="${HERALD_ZK_VERSION:-3.9.5}"
PORT="${HERALD_ZK_PORT:-2182}"
ENSEMBLE_BASE="${HERALD_ZK_ENSEMBLE_PORT_BASE:-2182}"
ENSEMBLE_SIZE=3
TIMEOUT="${HERALD_ZK_START_TIMEOUT:-60}"
STOP_TIMEOUT="${HERALD_STOP_TIMEOUT:-30}"
HEAP="${HERALD_ZK_HEAP:-256m}"
ZK_HOME="$STATE/zookeeper-$VERSION"
LIB="$ZK_HOME/lib"
TEMPLATES="$LOCAL_SCRIPTS/zookeeper"

usage() {
  die "usage: $0 [start | ensemble | stop [ensemble|N] | status [ensemble] | env [ensemble] | pid N | kill N | pause N | resume N]"
}

# node_name N: the server's name in run/, logs/, data/ and conf/: zookeeper for the single
# node (N = 0), zookeeper-N for ensemble node N.
node_name() { if (($1 == 0)); then echo zookeeper; else echo "zookeeper-$1"; fi; }
client_port() { if (($1 == 0)); then echo "$PORT"; else echo $((ENSEMBLE_BASE + 100 * $1)); fi; }
quorum_port() { echo $((ENSEMBLE_BASE + 100 * $1 + 1)); }
election_port() { echo $((ENSEMBLE_BASE + 100 * $1 + 2)); }

# nodes [ensemble]: the node numbers a command acts on.
nodes() {
  case ${1:-} in
    "") echo 0 ;;
    ensemble) seq 1 "$ENSEMBLE_SIZE" ;;
    *) usage ;;
  esac
}

# zk_word PORT WORD: send a four-letter word and print the reply (empty if none in 3 s).
zk_word() {
  # shellcheck disable=SC2016 # $0, $1, $2 belong to the inner bash
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" || exit 1; printf %s "$2" >&3; cat <&3' \
    "$HOST" "$1" "$2" 2>/dev/null || true
}

# zk_mode PORT: print the node's mode (standalone, leader or follower) if it serves clients.
# srvr answers "This ZooKeeper instance is not currently serving requests" while a node has
# no quorum, so a mode means the node serves: it has a leader and a synced copy of the data.
zk_mode() {
  sed -n 's/^Mode: //p' <<<"$(zk_word "$1" srvr)"
}

# The readiness probe of wait_ready takes no arguments; PROBE_PORT says which node.
PROBE_PORT=
zk_ready() { [[ -n $(zk_mode "$PROBE_PORT") ]]; }

java_bin() {
  if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
    printf '%s\n' "$JAVA_HOME/bin/java"
  else
    command -v java || die "java not found; ZooKeeper $VERSION needs Java 11 or later, 17 here (apt-get install -y openjdk-17-jre-headless)"
  fi
}

check_java() {
  local spec
  spec=$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  if ! [[ $spec =~ ^[0-9]+$ ]] || ((spec < 11)); then
    die "$JAVA is Java ${spec:-of unknown version}; ZooKeeper $VERSION needs Java 11 or later (set JAVA_HOME or apt-get install -y openjdk-17-jre-headless)"
  fi
}

install_zookeeper() {
  local build="$BUILD_DIR/zookeeper" start
  [[ -f $ZK_HOME/.installed ]] && return 0
  apt_install mvn maven
  say "downloading ZooKeeper $VERSION jars with Maven into $LIB ..."
  start=$(now_ms)
  mkdir -p "$build" "$ZK_HOME"
  cp "$TEMPLATES/pom.xml" "$build/pom.xml" # keep mvn's target/ out of the repo
  rm -rf "$LIB.tmp"
  if ! mvn -B -f "$build/pom.xml" -Dzookeeper.version="$VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIB.tmp" \
    >"$LOG_DIR/zookeeper-install.log" 2>&1; then
    tail -n 30 "$LOG_DIR/zookeeper-install.log" >&2
    die "Maven could not fetch zookeeper $VERSION (full output: $LOG_DIR/zookeeper-install.log)"
  fi
  [[ -f $LIB.tmp/zookeeper-$VERSION.jar ]] || die "zookeeper-$VERSION.jar missing from $LIB.tmp"
  compgen -G "$LIB.tmp/metrics-core-*.jar" >/dev/null || die "metrics-core missing from $LIB.tmp"
  rm -rf "$LIB"
  mv "$LIB.tmp" "$LIB"
  touch "$ZK_HOME/.installed"
  say "  fetched $(find "$LIB" -name '*.jar' | wc -l) jars ($(du -sh "$LIB" | cut -f1)) in $(( ($(now_ms) - start) / 1000 )) s"
}

# write_config N: conf/<name>.cfg from the template; an ensemble node also gets the server
# lines and its myid file.
write_config() {
  local n=$1 name dir cfg i
  name=$(node_name "$n")
  dir=$(datadir "$name")
  cfg="$CONF_DIR/$name.cfg"
  mkdir -p "$dir"
  chmod 700 "$dir"
  sed -e "s|@DATA_DIR@|$dir|g" -e "s|@CLIENT_PORT@|$(client_port "$n")|g" -e "s|@HOST@|$HOST|g" \
    "$TEMPLATES/zk.cfg" >"$cfg"
  if ((n > 0)); then
    {
      printf '\n# The ensemble (written by zookeeper.sh): server.N=host:quorum port:election port\n'
      for ((i = 1; i <= ENSEMBLE_SIZE; i++)); do
        printf 'server.%d=%s:%d:%d\n' "$i" "$HOST" "$(quorum_port "$i")" "$(election_port "$i")"
      done
    } >>"$cfg"
    printf '%d\n' "$n" >"$dir/myid"
  fi
}

# launch_node N: start node N unless it runs already; say which. Does not wait.
launch_node() {
  local n=$1 name pid port ports
  name=$(node_name "$n")
  if pid=$(server_pid "$name"); then
    say "$name already running (pid $pid; logs: $(logfile "$name"))"
    return 0
  fi
  rm -f "$(pidfile "$name")"
  ports=("$(client_port "$n")")
  ((n == 0)) || ports+=("$(quorum_port "$n")" "$(election_port "$n")")
  for port in "${ports[@]}"; do
    if port_open "$port"; then
      die "$name: port $HOST:$port is already in use by a process these scripts did not start; free it or set HERALD_ZK_PORT / HERALD_ZK_ENSEMBLE_PORT_BASE"
    fi
  done
  if [[ ${HERALD_ZK_FRESH:-} == 1 ]]; then
    rm -rf "$(datadir "$name")/version-2"
  fi
  write_config "$n"
  launch "$name" "$JAVA" -Xms64m -Xmx"$HEAP" -XX:+ExitOnOutOfMemoryError \
    -Djava.net.preferIPv4Stack=true \
    -Dlogback.configurationFile="file://$TEMPLATES/logback.xml" \
    -Dzookeeper.jmx.log4j.disable=true \
    -cp "$LIB/*" org.apache.zookeeper.server.quorum.QuorumPeerMain "$CONF_DIR/$name.cfg"
}

# wait_node N: wait until node N serves clients (for an ensemble node: until the quorum is up).
wait_node() {
  local n=$1 name
  name=$(node_name "$n")
  PROBE_PORT=$(client_port "$n")
  # wait_ready exits the shell it runs in; a subshell lets us name the right stop command.
  if ! (wait_ready "$name" "$HOST:$PROBE_PORT" zk_ready "$TIMEOUT"); then
    die "$name did not become ready; see $(logfile "$name"); stop it with $0 stop${2:+ $2}"
  fi
  say "  $name: mode $(zk_mode "$PROBE_PORT"), pid $(server_pid "$name")"
}

cmd_start() {
  local which=${1:-} n
  JAVA=$(java_bin)
  check_java
  install_zookeeper
  # Every node first, then the waits: an ensemble node serves only once a quorum runs.
  for n in $(nodes "$which"); do launch_node "$n"; done
  for n in $(nodes "$which"); do wait_node "$n" "$which"; done
}

cmd_stop() {
  local n name pid list
  if [[ ${1:-} =~ ^[1-3]$ ]]; then list=$1; else list=$(nodes "${1:-}"); fi
  for n in $list; do
    name=$(node_name "$n")
    # A paused node would not act on TERM until continued.
    if pid=$(server_pid "$name"); then kill -CONT "$pid" 2>/dev/null || true; fi
    stop_server "$name" "$STOP_TIMEOUT"
  done
}

cmd_status() {
  local n name pid mode
  for n in $(nodes "${1:-}"); do
    name=$(node_name "$n")
    if pid=$(server_pid "$name"); then
      mode=$(zk_mode "$(client_port "$n")")
      say "$name: pid $pid, $HOST:$(client_port "$n"), ${mode:-not serving}"
    else
      say "$name: not running"
    fi
  done
}

cmd_env() {
  local n addrs=()
  for n in $(nodes "${1:-}"); do addrs+=("$HOST:$(client_port "$n")"); done
  printf 'export HERALD_LAB_ZK=%s\n' "$(IFS=,; echo "${addrs[*]}")"
}

# ensemble_pid N: the pid of our ensemble node N, or fail.
ensemble_pid() {
  [[ ${1:-} =~ ^[1-3]$ ]] || usage
  server_pid "$(node_name "$1")" || die "$(node_name "$1") is not running"
}

cmd=${1:-start}
(($# == 0)) || shift
case $cmd in
  stop) [[ $# == 0 || ($# == 1 && $1 =~ ^(ensemble|[1-3])$) ]] || usage ;;
  status | env) [[ $# == 0 || ($# == 1 && $1 == ensemble) ]] || usage ;;
esac
case $cmd in
  start) (($# == 0)) || usage; cmd_start ;;
  ensemble) (($# == 0)) || usage; cmd_start ensemble ;;
  stop) cmd_stop "$@" ;;
  status) cmd_status "$@" ;;
  env) cmd_env "$@" ;;
  pid) ensemble_pid "${1:-}" ;;
  kill)
    pid=$(ensemble_pid "${1:-}")
    kill -KILL "$pid"
    say "$(node_name "$1") (pid $pid) killed"
    ;;
  pause)
    pid=$(ensemble_pid "${1:-}")
    kill -STOP "$pid"
    say "$(node_name "$1") (pid $pid) paused (SIGSTOP); $0 resume $1 continues it"
    ;;
  resume)
    pid=$(ensemble_pid "${1:-}")
    kill -CONT "$pid"
    say "$(node_name "$1") (pid $pid) resumed (SIGCONT)"
    ;;
  *) usage ;;
esac
