#!/usr/bin/env bash
# Herald's coordination lab (`make lab-coordination`; docs/lab/coordination.md): start a
# three-member etcd cluster and a three-node ZooKeeper ensemble on loopback, run the lab
# (loadtest/cmd/labcoord) against them, and stop every server this script started.
#
#   lab-coordination.sh [labcoord run flags...]   e.g. --sections handoff,fencing --contenders 1,10
#   lab-coordination.sh up                        only start the servers, leave them running, and print
#                                                 HERALD_LAB_ZK and HERALD_LAB_ETCD (for the coordlab tests:
#                                                 eval "$(deploy/local/lab-coordination.sh up | grep ^export)")
#   lab-coordination.sh stop                      stop the lab's servers (after up, or a run that was killed)
#
# The etcd members are the lab's own, not the shared test etcd of `make servers` (2389): clients
# on 127.0.0.1:2479, 2579, 2679 and peers on 2480, 2580, 2680 (HERALD_LAB_ETCD_PORT_BASE, default
# 2379, plus 100 N), with data, pidfiles and logs under $HERALD_LOCAL_DIR/lab/ (default
# .local/lab/etcd-N, run/, logs/). They run the etcd binary that etcd.sh builds into the bin dir,
# built here the same way if it is missing. No authentication on them: loopback only, throwaway
# data: a fresh cluster at every start, its data dirs removed when it stops. A ZooKeeper ensemble
# that this script starts whole starts on empty data too (HERALD_ZK_FRESH). The ZooKeeper ensemble is
# zookeeper.sh's (clients 2282, 2382, 2482).
#
# A server that was already running is reused and left running; the ones this script starts
# are stopped on exit (also after a failure or Ctrl-C), by their pids. The report goes to
# loadtest/out/lab-coordination/ (HERALD_LAB_OUT); the last line of the output is
# `lab-coordination: json=<path>`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# etcd.sh, sourced, starts nothing: it defines build_etcd, which builds etcd and etcdctl at
# HERALD_ETCD_VERSION into the bin dir unless they are there (as etcd-cluster.sh uses it).
source "$LOCAL_SCRIPTS/etcd.sh"

ETCD_BASE="${HERALD_LAB_ETCD_PORT_BASE:-2379}"
MEMBERS=3
LAB_DIR="$STATE/lab"
OUT="${HERALD_LAB_OUT:-$REPO/loadtest/out/lab-coordination}"
TIMEOUT="${HERALD_ETCD_START_TIMEOUT:-30}"
ZK="$LOCAL_SCRIPTS/zookeeper.sh"
LABCOORD="$REPO/bin/labcoord"

etcd_client_port() { echo $((ETCD_BASE + 100 * $1)); }
etcd_peer_port() { echo $((ETCD_BASE + 100 * $1 + 1)); }
etcd_name() { echo "etcd-$1"; }

# in_lab CMD...: run a lib.sh function with the lab's own data, run and log dirs, so that the
# lab's etcd members (etcd-N) never share a pidfile or log with the servers of up.sh.
in_lab() {
  local DATA_ROOT="$LAB_DIR" RUN_DIR="$LAB_DIR/run" LOG_DIR="$LAB_DIR/logs"
  mkdir -p "$DATA_ROOT" "$RUN_DIR" "$LOG_DIR"
  "$@"
}

# What this run started, for cleanup: etcd member numbers and ZooKeeper node numbers.
STARTED_ETCD=()
STARTED_ZK=()

# stop_etcd_member N: stop lab member N by its pidfile and remove its data (about 120 MB, mostly
# the preallocated WAL), which the next start would wipe anyway.
stop_etcd_member() {
  in_lab stop_server "$(etcd_name "$1")" "${HERALD_STOP_TIMEOUT:-30}" || return 1
  rm -rf "${LAB_DIR:?}/$(etcd_name "$1")"
}

# stop_started: stop the servers this run started, ZooKeeper first (its nodes only log
# while their quorum goes), by pidfile.
stop_started() {
  local n
  for n in "${STARTED_ZK[@]}"; do "$ZK" stop "$n" || true; done
  for n in "${STARTED_ETCD[@]}"; do stop_etcd_member "$n" || true; done
  STARTED_ZK=() STARTED_ETCD=()
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_started
  exit "$rc"
}

# The readiness probe of wait_ready takes no arguments; PROBE_URL says which member. /health
# reports true only once the member has a leader, that is once a quorum runs.
PROBE_URL=
etcd_ready() {
  [[ $(curl -sf --max-time 2 "$PROBE_URL/health" 2>/dev/null) == *'"health":"true"'* ]]
}

start_etcd() {
  local n running=() cluster="" url port
  for ((n = 1; n <= MEMBERS; n++)); do
    if in_lab server_pid "$(etcd_name "$n")" >/dev/null; then running+=("$n"); fi
    cluster+="${cluster:+,}lab-$n=http://$HOST:$(etcd_peer_port "$n")"
  done
  if ((${#running[@]} == MEMBERS)); then
    say "the lab's etcd members already run; reusing them (and leaving them running)"
  elif ((${#running[@]} > 0)); then
    die "only some of the lab's etcd members run (${running[*]}); stop them with $0 stop, then run again"
  else
    for ((n = 1; n <= MEMBERS; n++)); do
      for port in "$(etcd_client_port "$n")" "$(etcd_peer_port "$n")"; do
        port_open "$port" && die "port $HOST:$port is in use by a process these scripts did not start; set HERALD_LAB_ETCD_PORT_BASE"
      done
    done
    for ((n = 1; n <= MEMBERS; n++)); do
      url="http://$HOST:$(etcd_client_port "$n")"
      # A fresh cluster every time: the members' old data would hold the last run's keys
      # and a cluster ID that a changed member list no longer matches.
      rm -rf "${LAB_DIR:?}/$(etcd_name "$n")"
      in_lab launch "$(etcd_name "$n")" "$BIN_DIR/etcd" \
        --name "lab-$n" --data-dir "$LAB_DIR/$(etcd_name "$n")" \
        --listen-client-urls "$url" --advertise-client-urls "$url" \
        --listen-peer-urls "http://$HOST:$(etcd_peer_port "$n")" \
        --initial-advertise-peer-urls "http://$HOST:$(etcd_peer_port "$n")" \
        --initial-cluster "$cluster" --initial-cluster-state new \
        --initial-cluster-token herald-lab-coordination \
        --log-level warn
      STARTED_ETCD+=("$n")
    done
  fi
  for ((n = 1; n <= MEMBERS; n++)); do
    PROBE_URL="http://$HOST:$(etcd_client_port "$n")"
    # wait_ready exits the shell it runs in; the subshell keeps the cleanup trap in charge.
    (in_lab wait_ready "$(etcd_name "$n")" "$PROBE_URL" etcd_ready "$TIMEOUT") ||
      die "lab etcd member $n did not become ready (log: $LAB_DIR/logs/$(etcd_name "$n").log)"
  done
}

start_zookeeper() {
  local n fresh=
  for n in 1 2 3; do
    "$ZK" pid "$n" >/dev/null 2>&1 || STARTED_ZK+=("$n")
  done
  # A fresh ensemble when none of it runs: the lab's data is throwaway, and a quorum of nodes
  # that all start empty agrees on it (a single wiped node among running ones would not).
  ((${#STARTED_ZK[@]} == 3)) && fresh=1
  # The trap (set before) stops the nodes even if the start fails half-way.
  HERALD_ZK_FRESH=$fresh "$ZK" ensemble
}

stop_all() {
  local n
  for ((n = 1; n <= MEMBERS; n++)); do stop_etcd_member "$n"; done
  "$ZK" stop ensemble
}

lab_env() {
  local n etcd_eps=() zk_eps=()
  for n in 1 2 3; do
    etcd_eps+=("$HOST:$(etcd_client_port "$n")")
    zk_eps+=("$HOST:$((${HERALD_ZK_ENSEMBLE_PORT_BASE:-2182} + 100 * n))")
  done
  LAB_ETCD=$(IFS=,; echo "${etcd_eps[*]}")
  LAB_ZK=$(IFS=,; echo "${zk_eps[*]}")
}

case ${1:-} in
  stop)
    (($# == 1)) || die "usage: $0 stop"
    stop_all
    exit 0
    ;;
  up)
    (($# == 1)) || die "usage: $0 up"
    trap cleanup EXIT # stops what started if the rest fails
    build_etcd
    start_etcd
    start_zookeeper
    trap - EXIT
    lab_env
    printf 'export HERALD_LAB_ZK=%s\nexport HERALD_LAB_ETCD=%s\n' "$LAB_ZK" "$LAB_ETCD"
    say "left running; stop them with $0 stop"
    exit 0
    ;;
esac

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v go >/dev/null || die "go is not on PATH; it is needed to build labcoord"
command -v curl >/dev/null || die "curl is not on PATH; the etcd readiness probe uses it"
build_etcd
say "building labcoord into $LABCOORD ..."
(cd "$REPO" && env -u GOWORK go build -o "$LABCOORD" ./loadtest/cmd/labcoord)

start_etcd
start_zookeeper

lab_env
mkdir -p "$OUT"
log="$OUT/lab-coordination.log"
say "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
set +e
"$LABCOORD" run --zk "$LAB_ZK" --etcd "$LAB_ETCD" --out "$OUT" "$@" 2>&1 |
  tee "$log" | grep -v '^lab-coordination: json='
status=${PIPESTATUS[0]}
set -e
say "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
stop_started
((status == 0)) || die "labcoord failed (exit $status; its output is in $log)"
# Printed after the servers stopped, so that it is the last line.
grep '^lab-coordination: json=' "$log" | tail -n 1
