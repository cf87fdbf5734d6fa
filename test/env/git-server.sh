#!/usr/bin/env bash
# A throwaway Git server speaking smart HTTP: git http-backend behind git_http_server.py.
#
#   git-server.sh start RUN_DIR [--anonymous]  basic auth on every request; --anonymous lets clone
#                                              and fetch through without credentials (push never)
#   git-server.sh create RUN_DIR NAME          makes the bare repository RUN_DIR/repos/NAME.git
#                                              (default branch main); prints REPO_URL, REPO_PATH
#   git-server.sh stop RUN_DIR
#
# start prints:
#   GIT_URL=http://127.0.0.1:PORT   (repositories at $GIT_URL/NAME.git)
#   GIT_USER=... GIT_PASSWORD=...
#   GIT_ROOT=RUN_DIR/repos          (so file://$GIT_ROOT/NAME.git works too)
#   READY=1
# Repositories are never created on demand: an unknown one answers 404.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  echo "usage: $0 start RUN_DIR [--anonymous] | create RUN_DIR NAME | stop RUN_DIR" >&2
  exit 2
}

start() {
  local run=$1; shift
  local server_args=()
  while (($#)); do
    case $1 in
      --anonymous) server_args+=(--anonymous-read) ;;
      *) usage ;;
    esac
    shift
  done
  mkdir -p "$run/repos" "$run/logs" "$run/pids"
  run=$(cd "$run" && pwd)
  local user password
  user=gantry-$(openssl rand -hex 3)
  password=$(openssl rand -hex 16)
  rm -f "$run/port"
  start_bg "$run" git-http env GIT_SERVER_USER="$user" GIT_SERVER_PASSWORD="$password" \
    python3 "$TESTENV_DIR/git_http_server.py" --root "$run/repos" --port-file "$run/port" \
    "${server_args[@]}"
  local pid
  pid=$(cat "$run/pids/git-http.pid")
  # Ready when the server has written its port and answers HTTP (401 or 404 on /), or done
  # waiting when it has died.
  git_up() {
    alive "$pid" || return 0
    [[ -s $run/port ]] || return 1
    local code
    code=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' --max-time 2 \
      "http://127.0.0.1:$(<"$run/port")/")
    [[ $code != 000 ]]
  }
  wait_for 30 "git server" git_up || die_with_log "$run" git-http "git server did not come up"
  alive "$pid" || die_with_log "$run" git-http "git server exited during startup"

  local url=http://127.0.0.1:$(<"$run/port")
  echo "GIT_URL=$url" >"$run/git-url"
  echo "GIT_URL=$url"
  echo "GIT_USER=$user"
  echo "GIT_PASSWORD=$password"
  echo "GIT_ROOT=$run/repos"
  echo "READY=1"
}

create() {
  local run=$1 name=${2:-}
  [[ $name =~ ^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$ ]] ||
    { echo "git-server.sh: bad repository name '$name' (letters, digits, . _ - /)" >&2; exit 2; }
  run=$(cd "$run" && pwd)
  [[ -f $run/git-url ]] || { echo "git-server.sh: no server started in $run" >&2; exit 1; }
  local path=$run/repos/$name.git
  if [[ -e $path ]]; then
    echo "git-server.sh: repository $name already exists at $path" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$path")"
  GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null git init -q --bare -b main "$path"
  echo "REPO_URL=$(sed -n 's/^GIT_URL=//p' "$run/git-url")/$name.git"
  echo "REPO_PATH=$path"
}

(($# >= 2)) || usage
verb=$1 run=$2; shift 2
case $verb in
  start) start "$run" "$@" ;;
  create) (($# == 1)) || usage; create "$run" "$1" ;;
  stop) stop_all "$run" ;;
  *) usage ;;
esac
