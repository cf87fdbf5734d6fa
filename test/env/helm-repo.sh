#!/usr/bin/env bash
# A throwaway classic Helm chart repository: static files (index.yaml, chart archives) served by
# helm_repo_server.py on 127.0.0.1.
#
#   helm-repo.sh start RUN_DIR [--auth]   anonymous HTTP; with --auth: HTTP basic auth behind TLS
#                                         with a self-signed CA made in RUN_DIR (as registry.sh --auth)
#   helm-repo.sh stop RUN_DIR
#
# start prints:
#   HELM_REPO_URL=http://127.0.0.1:PORT   (https://... with --auth)
#   HELM_REPO_ROOT=RUN_DIR/charts         the served directory: put archives there (helm package
#                                         -d) and index them (helm repo index --url HELM_REPO_URL)
#   HELM_REPO_USER=... HELM_REPO_PASSWORD=... HELM_REPO_CA=RUN_DIR/tls/ca.crt   (only with --auth)
#   READY=1
# The protocol is described in lib.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { echo "usage: $0 start RUN_DIR [--auth] | stop RUN_DIR" >&2; exit 2; }

start() {
  local run=$1; shift
  local auth=0
  while (($#)); do
    case $1 in
      --auth) auth=1 ;;
      *) usage ;;
    esac
    shift
  done
  mkdir -p "$run/charts" "$run/logs" "$run/pids"
  run=$(cd "$run" && pwd)
  local user="" password="" scheme=http tls_args=() curl_args=()
  if ((auth)); then
    make_tls "$run/tls"
    user=gantry-$(openssl rand -hex 3)
    password=$(openssl rand -hex 16)
    scheme=https
    tls_args=(--tls-cert "$run/tls/server.crt" --tls-key "$run/tls/server.key")
    curl_args=(--cacert "$run/tls/ca.crt")
  fi
  rm -f "$run/port"
  start_bg "$run" helm-repo env HELM_REPO_USER="$user" HELM_REPO_PASSWORD="$password" \
    python3 "$TESTENV_DIR/helm_repo_server.py" --root "$run/charts" --port-file "$run/port" "${tls_args[@]}"
  local pid
  pid=$(cat "$run/pids/helm-repo.pid")
  repo_up() {
    alive "$pid" || return 0
    [[ -s $run/port ]] || return 1
    local code
    code=$(curl -s --noproxy '*' "${curl_args[@]}" -o /dev/null -w '%{http_code}' --max-time 2 \
      "$scheme://127.0.0.1:$(<"$run/port")/index.yaml")
    [[ $code != 000 ]]
  }
  wait_for 30 "helm repository" repo_up || die_with_log "$run" helm-repo "helm repository did not come up"
  alive "$pid" || die_with_log "$run" helm-repo "helm repository exited during startup"

  echo "HELM_REPO_URL=$scheme://127.0.0.1:$(<"$run/port")"
  echo "HELM_REPO_ROOT=$run/charts"
  if ((auth)); then
    echo "HELM_REPO_USER=$user"
    echo "HELM_REPO_PASSWORD=$password"
    echo "HELM_REPO_CA=$run/tls/ca.crt"
  fi
  echo "READY=1"
}

case ${1:-} in
  start) [[ $# -ge 2 ]] || usage; start "${@:2}" ;;
  stop) [[ $# -eq 2 ]] || usage; stop_all "$2" ;;
  *) usage ;;
esac
