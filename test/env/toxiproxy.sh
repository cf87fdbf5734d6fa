#!/usr/bin/env bash
# Toxiproxy (github.com/Shopify/toxiproxy/v2, built by build-tools.sh): a TCP proxy that injects
# network faults (latency, bandwidth limits, resets, timeouts) between Gantry and a real server.
#
#   toxiproxy.sh start RUN_DIR   (protocol of lib.sh) prints TOXIPROXY_URL=http://127.0.0.1:PORT (the
#                                admin API), then READY=1
#   toxiproxy.sh stop RUN_DIR
# Proxies are created over the API with listen 127.0.0.1:0, so the kernel picks their ports
# (test/env/testenv.h: testenv::Toxiproxy).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { echo "usage: $0 start RUN_DIR | stop RUN_DIR" >&2; exit 2; }

start() {
  local run=$1
  mkdir -p "$run/logs" "$run/pids"
  run=$(cd "$run" && pwd)
  local bin
  bin=${GANTRY_TOOLS_BIN:-$("$TESTENV_DIR/build-tools.sh" toxiproxy)}
  [[ -x $bin/toxiproxy-server ]] || bin=$("$TESTENV_DIR/build-tools.sh" toxiproxy)
  launch_toxiproxy() {
    start_bg "$run" toxiproxy "$bin/toxiproxy-server" -host 127.0.0.1 -port "$PORT"
  }
  toxiproxy_up() { curl -sf --noproxy '*' --max-time 2 -o /dev/null "http://127.0.0.1:$PORT/version"; }
  start_retrying "$run" toxiproxy 30 toxiproxy_up launch_toxiproxy
  echo "TOXIPROXY_URL=http://127.0.0.1:$PORT"
  echo "READY=1"
}

(($# == 2)) || usage
case $1 in
  start) start "$2" ;;
  stop) stop_all "$2" ;;
  *) usage ;;
esac
