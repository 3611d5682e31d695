#!/usr/bin/env bash
# A local Prometheus for Herald's processes, with Herald's alert rules
# (deploy/prometheus/alerts.yml), on http://127.0.0.1:${HERALD_PROMETHEUS_PORT:-9490}.
#
#   prometheus.sh [start]   start it, or reuse it and reload its targets and rules
#   prometheus.sh stop
#   prometheus.sh env       print HERALD_PROMETHEUS_URL
#   prometheus.sh check     check the alert rules (promtool check rules; make lint runs it)
#
# It scrapes HERALD_PROMETHEUS_TARGETS (comma-separated host:port of /metrics; default the
# instances of `make cluster`, each labelled with its service) every
# HERALD_PROMETHEUS_SCRAPE_INTERVAL (default 5s). Uses Debian's prometheus package
# (installed with apt-get if missing). Loopback only, without a login: it holds only metrics.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=prometheus
PORT="${HERALD_PROMETHEUS_PORT:-9490}"
URL="http://$HOST:$PORT"
TIMEOUT="${HERALD_PROMETHEUS_START_TIMEOUT:-30}"
INTERVAL="${HERALD_PROMETHEUS_SCRAPE_INTERVAL:-5s}"
TARGETS="${HERALD_PROMETHEUS_TARGETS:-}"
CONF="$CONF_DIR/prometheus.yml"
RULES="$REPO/deploy/prometheus/alerts.yml"

ready() { curl -sf --max-time 2 "$URL/-/ready" >/dev/null; }

# write_config: conf/prometheus.yml. The targets named in HERALD_PROMETHEUS_TARGETS go in one
# group; the default ones in a group per service, labelled service=..., as the dashboards and
# alerts expect of a split deployment.
write_config() {
  local svc port t
  {
    echo "# Written by deploy/local/prometheus.sh at each start; edits are lost."
    echo "global:"
    echo "  scrape_interval: $INTERVAL"
    echo "  evaluation_interval: $INTERVAL"
    echo "rule_files:"
    echo "  - $RULES"
    echo "scrape_configs:"
    echo "  - job_name: herald"
    echo "    static_configs:"
    if [[ -n $TARGETS ]]; then
      printf '      - targets: ['
      local first=1
      IFS=, read -ra ts <<<"$TARGETS"
      for t in "${ts[@]}"; do
        ((first)) || printf ', '
        printf '"%s"' "$t"
        first=0
      done
      printf ']\n'
    else
      for svc in post graph fanout timeline; do
        case $svc in post) port=9170 ;; graph) port=9180 ;; fanout) port=9190 ;; timeline) port=9200 ;; esac
        echo "      - targets: [\"$HOST:$((port + 1))\", \"$HOST:$((port + 2))\"]"
        echo "        labels:"
        echo "          service: $svc"
      done
    fi
  } >"$CONF"
  promtool check config "$CONF" >/dev/null 2>&1 ||
    die "promtool does not accept $CONF: $(promtool check config "$CONF" 2>&1 | tail -n 5)"
}

start() {
  apt_install prometheus prometheus
  write_config
  if pid=$(server_pid "$NAME"); then
    curl -sf --max-time 5 -X POST "$URL/-/reload" >/dev/null ||
      die "$NAME (pid $pid) did not reload $CONF; see $(logfile "$NAME")"
    say "$NAME already running (pid $pid) at $URL; reloaded $CONF"
    return 0
  fi
  rm -f "$(pidfile "$NAME")"
  port_open "$PORT" && die "$NAME: port $HOST:$PORT is in use by a process these scripts did not start"
  launch "$NAME" "$(command -v prometheus)" --config.file="$CONF" \
    --storage.tsdb.path="$(datadir "$NAME")" --storage.tsdb.retention.time=1d \
    --web.listen-address="$HOST:$PORT" --web.enable-lifecycle
  wait_ready "$NAME" "$URL" ready "$TIMEOUT"
  say "  $(prometheus --version 2>&1 | head -n 1); config $CONF, rules $RULES"
}

case ${1:-start} in
  start) start ;;
  stop) stop_server "$NAME" "${HERALD_STOP_TIMEOUT:-30}" ;;
  env) printf 'export HERALD_PROMETHEUS_URL=%s\n' "$URL" ;;
  check)
    apt_install promtool prometheus
    promtool check rules "$RULES"
    ;;
  *) die "usage: $0 [start|stop|env|check]" ;;
esac
