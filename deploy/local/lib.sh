# shellcheck shell=bash
# Shared pieces for the deploy/local/*.sh scripts. Source it; do not run it.
#
# State layout (default $REPO/.local, override with HERALD_LOCAL_DIR):
#   bin/               binaries we build (nats-server, etcd, etcdctl); HERALD_BIN_DIR overrides,
#                      so that a second server under another HERALD_LOCAL_DIR reuses the binaries
#   data/<server>/     server data directories
#   logs/<server>.log  stdout+stderr of the current run (previous run: <server>.log.1)
#   run/<server>.pid   pid of the running server
#   conf/              generated config files (cassandra.yaml, redis.conf, nats.conf)
#   build/             scratch Go modules used to build binaries
#   secrets/           the servers' passwords, one file each (mode 0700, files 0600), made
#                      at first start and kept; HERALD_SECRETS_DIR overrides, so that a second
#                      server under another HERALD_LOCAL_DIR takes the same logins
#
# A pidfile only counts if its pid is alive AND that process runs in the server's data dir
# (or names it on its command line): a stale pidfile whose pid was reused by an unrelated
# process is ignored, and that process is never signalled.

set -euo pipefail

LOCAL_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$LOCAL_SCRIPTS/../.." && pwd)"
STATE="${HERALD_LOCAL_DIR:-$REPO/.local}"
BIN_DIR="${HERALD_BIN_DIR:-$STATE/bin}"
DATA_ROOT="$STATE/data"
LOG_DIR="$STATE/logs"
RUN_DIR="$STATE/run"
CONF_DIR="$STATE/conf"
BUILD_DIR="$STATE/build"
SECRETS_DIR="${HERALD_SECRETS_DIR:-$STATE/secrets}"

# The user Herald logs in as, on every server. Its passwords are in $SECRETS_DIR
# (see secret below); env.sh exports the user and the password files' paths.
SERVICE_USER=herald

# Every server listens on loopback only.
HOST=127.0.0.1

# The repo root has a go.work; builds in scratch modules under .local/ must not pick it up.
export GOWORK=off

mkdir -p "$BIN_DIR" "$DATA_ROOT" "$LOG_DIR" "$RUN_DIR" "$CONF_DIR" "$BUILD_DIR"

say() { printf '%s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

pidfile() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }
logfile() { printf '%s/%s.log' "$LOG_DIR" "$1"; }
datadir() { printf '%s/%s' "$DATA_ROOT" "$1"; }

# secret NAME: print the path of the password file $SECRETS_DIR/NAME, creating it on first
# use with a new random password: 128 bits as 32 hex digits, which needs no quoting in any
# server's configuration. The file (0600, in a 0700 directory) appears whole, and is never
# rewritten: a server set up with it keeps working. Of two scripts creating it at once, the
# first one's stays (ln does not replace a file).
# Read a password only into a variable ($(<file)) and hand it to a server through a file,
# stdin or the environment, never as an argument, which every user of the machine can see.
secret() {
  local f="$SECRETS_DIR/$1"
  (
    umask 077
    mkdir -p "$SECRETS_DIR"
    chmod 700 "$SECRETS_DIR"
    if [[ ! -e $f ]]; then
      printf '%s\n' "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >"$f.$$.tmp"
      ln "$f.$$.tmp" "$f" 2>/dev/null || true
      rm -f "$f.$$.tmp"
    fi
    chmod 600 "$f"
  )
  [[ -s $f ]] || die "$f is empty; remove it (and the server set up with it: see deploy/local/README.md)"
  printf '%s\n' "$f"
}

# write_private FILE: write stdin to FILE with mode 0600, replacing it whole.
write_private() {
  (umask 077 && cat >"$1.$$.tmp" && mv -f "$1.$$.tmp" "$1")
}

# now_ms: wall clock in milliseconds.
now_ms() { date +%s%3N; }

# server_pid NAME: print the pid of our running NAME server and return 0, or return 1.
server_pid() {
  local name=$1 pf pid args cwd dir
  pf=$(pidfile "$name")
  [[ -s $pf ]] || return 1
  pid=$(<"$pf")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # Ours if its working directory is the data dir (launch() starts servers there) or its
  # command line names the data dir. Redis rewrites its command line, hence the cwd check.
  # Zombies have neither, so they fail this check too.
  dir=$(datadir "$name")
  if [[ -d /proc/$pid ]]; then
    cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null || true)
    [[ -n $cwd && $cwd == "$(cd "$dir" 2>/dev/null && pwd -P)" ]] && { printf '%s\n' "$pid"; return 0; }
    args=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
  else
    args=$(ps -p "$pid" -o args= 2>/dev/null || true)
  fi
  [[ $args == *"$dir"* ]] || return 1
  printf '%s\n' "$pid"
}

# pid_exited PID: the process has fully exited (gone, or a zombie with no live threads left).
# A multi-threaded server's main thread can exit before its other threads (which still hold
# its sockets), so "main thread gone" is not enough.
pid_exited() {
  local pid=$1 state tasks
  kill -0 "$pid" 2>/dev/null || return 0
  [[ -r /proc/$pid/stat ]] || return 1
  state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 0
  [[ $state == [ZX] ]] || return 1
  tasks=("/proc/$pid/task/"*)
  ((${#tasks[@]} <= 1))
}

# port_open PORT: something accepts TCP connections on $HOST:PORT.
port_open() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# show_log_tail NAME: the last 30 lines of NAME's log, on stderr.
show_log_tail() {
  local lf
  lf=$(logfile "$1")
  {
    printf -- '----- last 30 lines of %s -----\n' "$lf"
    tail -n 30 "$lf" 2>/dev/null || true
    printf -- '-----\n'
  } >&2
}

# wait_ready NAME ADDR PROBE TIMEOUT_S: poll PROBE (a command) until it succeeds.
# Prints a progress line every 5 s. Fails early if the server process dies.
wait_ready() {
  local name=$1 addr=$2 probe=$3 timeout=$4 start elapsed next=5
  start=$(now_ms)
  while :; do
    if "$probe"; then
      elapsed=$(( $(now_ms) - start ))
      say "$name ready at $addr (logs: $(logfile "$name"))"
      say "  (waited $((elapsed / 1000)).$(printf '%03d' $((elapsed % 1000))) s for readiness)"
      return 0
    fi
    if ! server_pid "$name" >/dev/null; then
      printf 'error: %s exited during startup\n' "$name" >&2
      show_log_tail "$name"
      rm -f "$(pidfile "$name")"
      exit 1
    fi
    elapsed=$(( ($(now_ms) - start) / 1000 ))
    if (( elapsed >= timeout )); then
      printf 'error: %s not ready at %s after %s s (pid %s left running; stop it with %s/stop.sh %s)\n' \
        "$name" "$addr" "$timeout" "$(server_pid "$name")" "$LOCAL_SCRIPTS" "$name" >&2
      show_log_tail "$name"
      exit 1
    fi
    if (( elapsed >= next )); then
      say "  $name: still waiting for $addr (${elapsed}s/${timeout}s)"
      next=$((elapsed + 5))
    fi
    sleep 0.5
  done
}

# reuse_if_running NAME ADDR PROBE TIMEOUT_S PORT...
# If our NAME server is running: exit 0 once it answers PROBE (waiting up to TIMEOUT_S if it
# is still starting) and ON_READY has run. Otherwise remove a stale pidfile, check the PORTs
# are free, and return.
# ON_READY, if the script sets it, names a function that finishes a ready server's setup
# (its users and roles); it must be idempotent, since it runs at every start script run.
ON_READY=
reuse_if_running() {
  local name=$1 addr=$2 probe=$3 timeout=$4 pid port
  shift 4
  if pid=$(server_pid "$name"); then
    if "$probe"; then
      say "$name already running (pid $pid) and ready at $addr (logs: $(logfile "$name"))"
      [[ -z $ON_READY ]] || "$ON_READY"
      exit 0
    fi
    say "$name already running (pid $pid) but not ready yet; waiting"
    wait_ready "$name" "$addr" "$probe" "$timeout"
    [[ -z $ON_READY ]] || "$ON_READY"
    exit 0
  fi
  rm -f "$(pidfile "$name")"
  for port in "$@"; do
    if port_open "$port"; then
      die "$name: port $HOST:$port is already in use by a process these scripts did not start; free it or pick another port (see deploy/local/README.md)"
    fi
  done
}

# stop_if_stale NAME ANSWERS LOGIN: if our NAME server runs and answers (the function
# ANSWERS succeeds) but does not take Herald's login from $SECRETS_DIR (LOGIN fails), stop
# it, so that the script starts it again with that login. Such a server was started before
# these scripts set up credentials, or with secrets since removed. A server still starting
# (not answering yet) is left to reuse_if_running.
stop_if_stale() {
  local name=$1 answers=$2 login=$3
  server_pid "$name" >/dev/null || return 0
  "$answers" || return 0
  "$login" && return 0
  say "$name is running without the login in $SECRETS_DIR (started before these scripts set up credentials, or with other secrets); restarting it"
  stop_server "$name" "${HERALD_STOP_TIMEOUT:-30}"
}

# launch NAME CMD [ARGS...]: start CMD detached (new session, stdin from /dev/null,
# stdout+stderr to logs/NAME.log) and record its pid in run/NAME.pid.
# The previous run's log is kept as logs/NAME.log.1.
launch() {
  local name=$1 pf lf i cmdline
  shift
  pf=$(pidfile "$name")
  lf=$(logfile "$name")
  if [[ -f $lf ]]; then mv -f "$lf" "$lf.1"; fi
  rm -f "$pf"
  mkdir -p "$(datadir "$name")"
  chmod 700 "$(datadir "$name")"
  cmdline=$(printf '%q ' "$@")
  printf '# %s: started by %s: %s\n' "$(date -Is)" "$LOCAL_SCRIPTS" "$cmdline" >"$lf"
  if ((${#cmdline} > 240)); then
    cmdline="${cmdline:0:240}... (full command at the top of $lf)"
  fi
  say "starting $name: $cmdline"
  # The inner bash writes its own pid, then execs the server, so the pid is the server's
  # even if setsid had to fork.
  # It runs in the data dir, which is how server_pid recognises it later. Every step execs,
  # so no shell is left behind holding the caller's stdout/stderr open.
  (
    cd "$(datadir "$name")"
    # shellcheck disable=SC2016 # $$, $0 and $@ belong to the inner bash
    exec nohup setsid bash -c 'echo $$ >"$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"' "$pf" "$@"
  ) >>"$lf" 2>&1 </dev/null &
  for ((i = 0; i < 50; i++)); do
    [[ -s $pf ]] && return 0
    sleep 0.1
  done
  show_log_tail "$name"
  die "$name: no pidfile after 5 s"
}

# stop_server NAME TIMEOUT_S: TERM the pidfile's pid, wait, then KILL; remove the pidfile.
stop_server() {
  local name=$1 timeout=$2 pid i
  if ! pid=$(server_pid "$name"); then
    say "$name not running"
    rm -f "$(pidfile "$name")"
    return 0
  fi
  say "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    pid_exited "$pid" && break
    sleep 0.1
  done
  if ! pid_exited "$pid"; then
    warn "$name (pid $pid) still alive after ${timeout}s; sending KILL"
    kill_wait "$name" "$pid"
  fi
  rm -f "$(pidfile "$name")"
  say "$name stopped (pid $pid gone)"
}

# kill_wait NAME PID: SIGKILL PID, NAME's server, wait up to 10 s until it has exited (or
# die), and remove NAME's pidfile: stop_server's last resort, and the cluster scripts'
# `kill N`, a crash rather than a shutdown.
kill_wait() {
  local name=$1 pid=$2 i
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    pid_exited "$pid" && break
    sleep 0.1
  done
  pid_exited "$pid" || die "$name (pid $pid) did not exit after KILL"
  rm -f "$(pidfile "$name")"
}

# go_install_bin NAME VERSION_PATTERN PKG@VERSION: build a Go main package into $BIN_DIR
# with `go install`, unless $BIN_DIR/NAME exists and its --version output matches.
# reports_version BIN WANT: whether `BIN --version` prints a line holding
# WANT. The output is captured first: piping it into `grep -q`, which exits
# at the first match, can kill the writer with SIGPIPE, and under pipefail
# that fails the check at random.
reports_version() {
  local out
  out=$("$1" --version 2>/dev/null) || return 1
  grep -qF -- "$2" <<<"$out"
}

go_install_bin() {
  local name=$1 want=$2 pkg=$3 start
  if [[ -x $BIN_DIR/$name ]] && reports_version "$BIN_DIR/$name" "$want"; then
    return 0
  fi
  command -v go >/dev/null || die "go is not on PATH; it is needed to build $name"
  say "building $name ($pkg) into $BIN_DIR ..."
  start=$(now_ms)
  GOBIN="$BIN_DIR" go install "$pkg"
  say "  built $name in $(( ($(now_ms) - start) / 1000 )) s"
  reports_version "$BIN_DIR/$name" "$want" ||
    die "$BIN_DIR/$name --version does not report $want"
}

# apt_install CMD PACKAGE: make sure CMD is on PATH, installing Debian PACKAGE if needed.
# `apt-get update` runs only if the first install attempt fails.
apt_install() {
  local cmd=$1 pkg=$2 sudo=()
  command -v "$cmd" >/dev/null && return 0
  command -v apt-get >/dev/null || die "$cmd not found and apt-get is not available; install $pkg yourself"
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || die "$cmd not found; run as root or install $pkg yourself"
    sudo=(sudo)
  fi
  say "installing Debian package $pkg ..."
  if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$pkg"; then
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$pkg"
  fi
  command -v "$cmd" >/dev/null || die "$cmd still not on PATH after installing $pkg"
}

# The scripts that run three nodes of one server (nats-cluster.sh, kafka-cluster.sh,
# cassandra-cluster.sh) share their command line. Each sets NODES, defines start_all,
# start_one N, stop_nodes [N], kill_node N, status and print_env, and ends with
#   cluster_main "$@"

# node_arg N: N, checked to be a node number, 1 to $NODES.
node_arg() {
  if [[ ! ${1:-} =~ ^[1-9][0-9]*$ ]] || (($1 > NODES)); then
    die "node number: want 1-$NODES, got '${1:-}'"
  fi
  echo "$1"
}

# cluster_main ARGS: run the command ARGS names.
cluster_main() {
  local n
  case ${1:-} in
    start)
      (($# <= 2)) || die "usage: $0 start [N]"
      if (($# == 1)); then start_all; else n=$(node_arg "$2") && start_one "$n"; fi
      ;;
    stop)
      (($# <= 2)) || die "usage: $0 stop [N]"
      if (($# == 1)); then stop_nodes; else n=$(node_arg "$2") && stop_nodes "$n"; fi
      ;;
    kill)
      (($# == 2)) || die "usage: $0 kill N"
      n=$(node_arg "$2") && kill_node "$n"
      ;;
    status) status ;;
    env) print_env ;;
    *) die "usage: $0 start [N]|stop [N]|kill N|status|env" ;;
  esac
}

# The scripts probe HTTP health endpoints (etcd, NATS, Prometheus) with curl, which a fresh
# Debian may lack. To stderr: env.sh's output is eval'ed.
command -v curl >/dev/null || apt_install curl curl >&2
