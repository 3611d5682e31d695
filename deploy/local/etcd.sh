#!/usr/bin/env bash
# Start (or reuse) a local single-member etcd on http://127.0.0.1:${HERALD_ETCD_PORT:-2389}
# (peer port ${HERALD_ETCD_PEER_PORT:-2390}).
# etcd is built from the Go module proxy into .local/bin (Debian's etcd-server is too old).
# `go install go.etcd.io/etcd/server/v3@VERSION` refuses (its go.mod has replace
# directives), so we build it from a scratch module that requires it; etcdctl comes along
# if it builds.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=etcd
VERSION="${HERALD_ETCD_VERSION:-3.7.3}"
PORT="${HERALD_ETCD_PORT:-2389}"
PEER_PORT="${HERALD_ETCD_PEER_PORT:-2390}"
CLIENT_URL="http://$HOST:$PORT"
PEER_URL="http://$HOST:$PEER_PORT"
TIMEOUT="${HERALD_ETCD_START_TIMEOUT:-30}"

etcd_ready() {
  [[ $(curl -sf --max-time 2 "$CLIENT_URL/health" 2>/dev/null) == *'"health":"true"'* ]]
}

build_etcd() {
  local mod="$BUILD_DIR/etcd-$VERSION" start
  if [[ -x $BIN_DIR/etcd ]] && reports_version "$BIN_DIR/etcd" "etcd Version: $VERSION"; then
    return 0
  fi
  command -v go >/dev/null || die "go is not on PATH; it is needed to build etcd"
  say "building etcd v$VERSION into $BIN_DIR ..."
  start=$(now_ms)
  rm -rf "$mod"
  mkdir -p "$mod"
  printf 'module herald.local/etcdbuild\n\ngo 1.24\n' >"$mod/go.mod"
  if ! (
    cd "$mod"
    go get "go.etcd.io/etcd/server/v3@v$VERSION" "go.etcd.io/etcd/etcdctl/v3@v$VERSION"
    go build -o "$BIN_DIR/etcd" go.etcd.io/etcd/server/v3
  ) >"$LOG_DIR/etcd-build.log" 2>&1; then
    tail -n 30 "$LOG_DIR/etcd-build.log" >&2
    die "etcd build failed (full output: $LOG_DIR/etcd-build.log)"
  fi
  (cd "$mod" && go build -o "$BIN_DIR/etcdctl" go.etcd.io/etcd/etcdctl/v3) >>"$LOG_DIR/etcd-build.log" 2>&1 ||
    warn "etcdctl did not build (optional; see $LOG_DIR/etcd-build.log); continuing"
  say "  built etcd in $(( ($(now_ms) - start) / 1000 )) s"
  reports_version "$BIN_DIR/etcd" "etcd Version: $VERSION" ||
    die "$BIN_DIR/etcd --version does not report $VERSION"
}

reuse_if_running "$NAME" "$CLIENT_URL" etcd_ready "$TIMEOUT" "$PORT" "$PEER_PORT"

build_etcd

launch "$NAME" "$BIN_DIR/etcd" \
  --name default --data-dir "$(datadir "$NAME")" \
  --listen-client-urls "$CLIENT_URL" --advertise-client-urls "$CLIENT_URL" \
  --listen-peer-urls "$PEER_URL" --initial-advertise-peer-urls "$PEER_URL" \
  --initial-cluster "default=$PEER_URL" \
  --log-level warn
wait_ready "$NAME" "$CLIENT_URL" etcd_ready "$TIMEOUT"
say "  $("$BIN_DIR/etcd" --version | head -n 1)"
