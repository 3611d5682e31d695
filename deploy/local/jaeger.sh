#!/usr/bin/env bash
# A local Jaeger (v2, the OpenTelemetry Collector-based build) that keeps traces in memory:
# OTLP in on 127.0.0.1:${HERALD_JAEGER_OTLP_GRPC_PORT:-4317} (gRPC) and
# 127.0.0.1:${HERALD_JAEGER_OTLP_HTTP_PORT:-4318} (HTTP), the UI and its API on
# http://127.0.0.1:${HERALD_JAEGER_PORT:-16686}.
#
#   jaeger.sh [start]   start it, or reuse it
#   jaeger.sh stop      stop it (its traces go with it)
#   jaeger.sh build     only build it, if it is not built (make cluster-test does, first)
#   jaeger.sh env       print the OTEL_* variables that send a Herald process's traces to it,
#                       and HERALD_JAEGER_URL
#
# Jaeger is built from the Go module proxy (github.com/jaegertracing/jaeger, cmd/jaeger) into
# .local/bin: `go install` refuses it (its go.mod has a replace directive), so, as for etcd,
# we build it from a scratch module that requires it with the same replace. The first build
# takes about 5 minutes on 2 cores. Loopback only, without a login: it holds only traces.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=jaeger
VERSION="${HERALD_JAEGER_VERSION:-1.76.0}"
PORT="${HERALD_JAEGER_PORT:-16686}"
GRPC_QUERY_PORT="${HERALD_JAEGER_QUERY_GRPC_PORT:-16685}"
OTLP_GRPC_PORT="${HERALD_JAEGER_OTLP_GRPC_PORT:-4317}"
OTLP_HTTP_PORT="${HERALD_JAEGER_OTLP_HTTP_PORT:-4318}"
HEALTH_PORT="${HERALD_JAEGER_HEALTH_PORT:-13133}"
MAX_TRACES="${HERALD_JAEGER_MAX_TRACES:-100000}"
URL="http://$HOST:$PORT"
TIMEOUT="${HERALD_JAEGER_START_TIMEOUT:-30}"
CONF="$CONF_DIR/jaeger.yaml"

ready() { curl -sf --max-time 2 "http://$HOST:$HEALTH_PORT/status" >/dev/null && curl -sf --max-time 2 "$URL/api/services" >/dev/null; }

# built: .local/bin/jaeger is the wanted version. Its --version prints no version (the module
# build sets none), so the module's own version in the binary's build info says it.
built() {
  [[ -x $BIN_DIR/jaeger ]] || return 1
  local info
  info=$(go version -m "$BIN_DIR/jaeger" 2>/dev/null) || return 1
  grep -qE "^[[:space:]]+(mod|dep)[[:space:]]+github.com/jaegertracing/jaeger[[:space:]]+v$VERSION([[:space:]]|$)" <<<"$info"
}

build_jaeger() {
  local mod="$BUILD_DIR/jaeger-$VERSION" start
  built && return 0
  command -v go >/dev/null || die "go is not on PATH; it is needed to build jaeger"
  say "building jaeger v$VERSION into $BIN_DIR (about 5 minutes the first time) ..."
  start=$(now_ms)
  rm -rf "$mod"
  mkdir -p "$mod"
  # The replace is Jaeger's own (its go.mod pins sarama so); without it the build resolves
  # another sarama than Jaeger's release was tested with.
  cat >"$mod/go.mod" <<MOD
module herald.local/jaegerbuild

go 1.25

require github.com/jaegertracing/jaeger v$VERSION

replace github.com/Shopify/sarama => github.com/Shopify/sarama v1.33.0
MOD
  printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/jaegertracing/jaeger/cmd/jaeger"\n' >"$mod/tools.go"
  if ! (
    cd "$mod"
    go mod tidy
    go build -o "$BIN_DIR/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger
  ) >"$LOG_DIR/jaeger-build.log" 2>&1; then
    tail -n 30 "$LOG_DIR/jaeger-build.log" >&2
    die "jaeger build failed (full output: $LOG_DIR/jaeger-build.log)"
  fi
  say "  built jaeger in $(( ($(now_ms) - start) / 1000 )) s"
  built || die "$BIN_DIR/jaeger is not built from jaeger v$VERSION"
}

write_config() {
  cat >"$CONF" <<CONF
# Written by deploy/local/jaeger.sh at each start; edits are lost.
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: none
    logs:
      level: info
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: $HOST:$HEALTH_PORT
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: $HOST:$PORT
    grpc:
      endpoint: $HOST:$GRPC_QUERY_PORT
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: $MAX_TRACES
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: $HOST:$OTLP_GRPC_PORT
      http:
        endpoint: $HOST:$OTLP_HTTP_PORT
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
CONF
}

start() {
  build_jaeger
  if pid=$(server_pid "$NAME"); then
    say "$NAME already running (pid $pid) at $URL"
    return 0
  fi
  rm -f "$(pidfile "$NAME")"
  local p
  for p in "$PORT" "$GRPC_QUERY_PORT" "$OTLP_GRPC_PORT" "$OTLP_HTTP_PORT" "$HEALTH_PORT"; do
    port_open "$p" && die "$NAME: port $HOST:$p is in use by a process these scripts did not start"
  done
  write_config
  launch "$NAME" "$BIN_DIR/jaeger" --config="file:$CONF"
  wait_ready "$NAME" "$URL" ready "$TIMEOUT"
  say "  jaeger v$VERSION, traces in memory (at most $MAX_TRACES); OTLP on $HOST:$OTLP_GRPC_PORT (gRPC) and $HOST:$OTLP_HTTP_PORT (HTTP)"
}

case ${1:-start} in
  start) start ;;
  build) build_jaeger ;;
  stop) stop_server "$NAME" "${HERALD_STOP_TIMEOUT:-30}" ;;
  env)
    printf 'export HERALD_JAEGER_URL=%s\n' "$URL"
    printf 'export OTEL_EXPORTER_OTLP_ENDPOINT=http://%s:%s\n' "$HOST" "$OTLP_GRPC_PORT"
    printf 'export OTEL_EXPORTER_OTLP_PROTOCOL=grpc\n'
    ;;
  *) die "usage: $0 [start|stop|build|env]" ;;
esac
