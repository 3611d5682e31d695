#!/usr/bin/env bash
# Start (or reuse) a local single-member etcd on http://127.0.0.1:${HERALD_ETCD_PORT:-2389}
# (peer port ${HERALD_ETCD_PEER_PORT:-2390}).
# etcd is built from the Go module proxy into .local/bin (Debian's etcd-server is too old).
# `go install go.etcd.io/etcd/server/v3@VERSION` refuses (its go.mod has replace
# directives), so we build it from a scratch module that requires it, with etcdctl and etcdutl
# (the offline tool: snapshot restore and status, which etcdctl no longer has since 3.6).
# Authentication is on: Herald logs in as the user herald (password in secrets/etcd-password),
# whose role herald may read and write the keys under HERALD_ETCD_KEY_PREFIXES; the user root
# (secrets/etcd-root-password) administers. etcdctl sets them up, with the passwords on its
# stdin and in its environment, never on its command line.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=etcd
VERSION="${HERALD_ETCD_VERSION:-3.7.3}"
PORT="${HERALD_ETCD_PORT:-2389}"
PEER_PORT="${HERALD_ETCD_PEER_PORT:-2390}"
CLIENT_URL="http://$HOST:$PORT"
PEER_URL="http://$HOST:$PEER_PORT"
TIMEOUT="${HERALD_ETCD_START_TIMEOUT:-30}"
ROOT_PASSWORD_FILE=$(secret etcd-root-password)
PASSWORD_FILE=$(secret etcd-password)
# Herald keeps every key under "<namespace>/": the default namespace is herald, and the
# cluster tests' namespaces are ct and 12 hex digits (services/herald/clustertest).
read -r -a KEY_PREFIXES <<<"${HERALD_ETCD_KEY_PREFIXES:-herald/ ct}"

etcd_ready() {
  [[ $(curl -sf --max-time 2 "$CLIENT_URL/health" 2>/dev/null) == *'"health":"true"'* ]]
}

# ctl USER PASSWORD_FILE ARGS...: etcdctl on our etcd, logged in as USER unless USER is
# empty. The password goes through the environment (ETCDCTL_PASSWORD).
ctl() {
  local user=$1 file=$2
  shift 2
  if [[ -n $user ]]; then
    ETCDCTL_USER=$user ETCDCTL_PASSWORD=$(<"$file") \
      "$BIN_DIR/etcdctl" --endpoints="$CLIENT_URL" --dial-timeout=3s --command-timeout=10s "$@"
  else
    "$BIN_DIR/etcdctl" --endpoints="$CLIENT_URL" --dial-timeout=3s --command-timeout=10s "$@"
  fi
}

# auth_enabled: etcd requires a login. (A client given a login on an etcd without
# authentication goes on without one, so a working login alone does not say it.)
auth_enabled() {
  [[ $(ctl "" "" auth status 2>/dev/null) == *'Authentication Status: true'* ]]
}

# etcd_login: authentication is on, and Herald's user logs in and may read under each of
# its key prefixes.
etcd_login() {
  local p
  auth_enabled || return 1
  for p in "${KEY_PREFIXES[@]}"; do
    ctl "$SERVICE_USER" "$PASSWORD_FILE" get --keys-only --limit=1 "${p}login-probe" >/dev/null 2>&1 || return 1
  done
}

# etcd_auth (ON_READY): unless Herald's user already logs in, set the users up and turn
# authentication on. Every step can run again: on a fresh etcd, on one whose data predates
# authentication, and on one that is missing a key prefix.
etcd_auth() {
  etcd_login && return 0
  local admin=("" "") p
  if auth_enabled; then
    ctl root "$ROOT_PASSWORD_FILE" user get root >/dev/null 2>&1 ||
      die "etcd at $CLIENT_URL has authentication on, but root does not log in with the password in $ROOT_PASSWORD_FILE: its data was set up with other secrets. Start it afresh: $LOCAL_SCRIPTS/stop.sh etcd && rm -rf $(datadir "$NAME")"
    admin=(root "$ROOT_PASSWORD_FILE")
  fi
  say "setting up etcd users: root, and $SERVICE_USER with role $SERVICE_USER (readwrite on prefixes: ${KEY_PREFIXES[*]})"
  {
    set_user root "$ROOT_PASSWORD_FILE"
    ctl "${admin[@]}" role get root >/dev/null 2>&1 || ctl "${admin[@]}" role add root
    ctl "${admin[@]}" user grant-role root root
    ctl "${admin[@]}" role get "$SERVICE_USER" >/dev/null 2>&1 || ctl "${admin[@]}" role add "$SERVICE_USER"
    for p in "${KEY_PREFIXES[@]}"; do
      ctl "${admin[@]}" role grant-permission --prefix=true "$SERVICE_USER" readwrite "$p"
    done
    set_user "$SERVICE_USER" "$PASSWORD_FILE"
    ctl "${admin[@]}" user grant-role "$SERVICE_USER" "$SERVICE_USER"
    ctl "${admin[@]}" auth enable
  } >>"$LOG_DIR/etcd-auth.log" 2>&1 || {
    tail -n 20 "$LOG_DIR/etcd-auth.log" >&2
    die "setting up etcd's users failed (full output: $LOG_DIR/etcd-auth.log)"
  }
  etcd_login || die "$SERVICE_USER still does not log in to etcd after the set-up (see $LOG_DIR/etcd-auth.log)"
  say "  etcd authentication on; login: user $SERVICE_USER, password in $PASSWORD_FILE"
}

# set_user NAME PASSWORD_FILE: create user NAME, or set its password, as "${admin[@]}" (of
# etcd_auth). etcdctl reads the password from stdin.
set_user() {
  if ctl "${admin[@]}" user get "$1" >/dev/null 2>&1; then
    ctl "${admin[@]}" user passwd --interactive=false "$1" <"$2"
  else
    ctl "${admin[@]}" user add --interactive=false "$1" <"$2"
  fi
}

# tool_is_built NAME: $BIN_DIR/NAME (etcdctl or etcdutl) is $VERSION (they have `version`, not
# --version; output captured first, as in reports_version).
tool_is_built() {
  local out
  out=$("$BIN_DIR/$1" version 2>/dev/null) || return 1
  grep -qF "$1 version: $VERSION" <<<"$out"
}

build_etcd() {
  local mod="$BUILD_DIR/etcd-$VERSION" start
  if [[ -x $BIN_DIR/etcd ]] && reports_version "$BIN_DIR/etcd" "etcd Version: $VERSION" && tool_is_built etcdctl && tool_is_built etcdutl; then
    return 0
  fi
  command -v go >/dev/null || die "go is not on PATH; it is needed to build etcd"
  say "building etcd, etcdctl and etcdutl v$VERSION into $BIN_DIR ..."
  start=$(now_ms)
  rm -rf "$mod"
  mkdir -p "$mod"
  printf 'module herald.local/etcdbuild\n\ngo 1.24\n' >"$mod/go.mod"
  if ! (
    cd "$mod"
    go get "go.etcd.io/etcd/server/v3@v$VERSION" "go.etcd.io/etcd/etcdctl/v3@v$VERSION" "go.etcd.io/etcd/etcdutl/v3@v$VERSION"
    go build -o "$BIN_DIR/etcd" go.etcd.io/etcd/server/v3
    go build -o "$BIN_DIR/etcdctl" go.etcd.io/etcd/etcdctl/v3
    go build -o "$BIN_DIR/etcdutl" go.etcd.io/etcd/etcdutl/v3
  ) >"$LOG_DIR/etcd-build.log" 2>&1; then
    tail -n 30 "$LOG_DIR/etcd-build.log" >&2
    die "etcd build failed (full output: $LOG_DIR/etcd-build.log)"
  fi
  say "  built etcd, etcdctl and etcdutl in $(( ($(now_ms) - start) / 1000 )) s"
  reports_version "$BIN_DIR/etcd" "etcd Version: $VERSION" ||
    die "$BIN_DIR/etcd --version does not report $VERSION"
  tool_is_built etcdctl || die "$BIN_DIR/etcdctl version does not report $VERSION"
  tool_is_built etcdutl || die "$BIN_DIR/etcdutl version does not report $VERSION"
}

# BCRYPT_COST is the cost of the password hashes etcd keeps for its users, and so of every
# Authenticate (each process's login, and again whenever its token expires). etcd's default,
# 10, makes a login cost tens of milliseconds of CPU, serialized in etcd: with the cluster
# tests' instances starting together on a loaded two-core machine, logins queued for over 10
# s and instances failed to start. The passwords here are 128 random bits, which no cost
# makes weaker or stronger against guessing, so the lowest cost etcd allows is used. It
# applies to hashes made from then on: the users of a fresh data dir.
BCRYPT_COST=4

# Sourced (etcd-cluster.sh does), it only defines the settings and functions above.
[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0

# etcdctl does the set-up, also of an etcd that is already running.
build_etcd
ON_READY=etcd_auth
reuse_if_running "$NAME" "$CLIENT_URL" etcd_ready "$TIMEOUT" "$PORT" "$PEER_PORT"

launch "$NAME" "$BIN_DIR/etcd" \
  --name default --data-dir "$(datadir "$NAME")" \
  --listen-client-urls "$CLIENT_URL" --advertise-client-urls "$CLIENT_URL" \
  --listen-peer-urls "$PEER_URL" --initial-advertise-peer-urls "$PEER_URL" \
  --initial-cluster "default=$PEER_URL" \
  --bcrypt-cost "$BCRYPT_COST" \
  --log-level warn
wait_ready "$NAME" "$CLIENT_URL" etcd_ready "$TIMEOUT"
say "  $("$BIN_DIR/etcd" --version | head -n 1)"
etcd_auth
