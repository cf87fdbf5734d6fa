#!/usr/bin/env bash
# A throwaway Gitea (code.gitea.io/gitea, built by build-tools.sh) with SQLite on 127.0.0.1: the
# forge of the tests that talk to a forge API (commit statuses, webhooks set up through the API).
#
#   gitea.sh start RUN_DIR   (protocol of lib.sh) prints
#     GITEA_URL=http://127.0.0.1:PORT        (no trailing slash)
#     GITEA_ADMIN_USER=... GITEA_ADMIN_PASSWORD=...
#     GITEA_ADMIN_TOKEN=...                  an access token of the admin with every scope
#     READY=1
#   gitea.sh stop RUN_DIR
# The app.ini is written here: installed (INSTALL_LOCK), no registration, no mailer, no SSH, no
# Actions or packages, no update checker, and webhooks allowed to any host (the tests' receivers
# and `gantry server` listen on 127.0.0.1, which Gitea refuses by default). Users, organisations,
# repositories and tokens are made over the API by the test (test/env/testenv.h: testenv::Gitea).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { echo "usage: $0 start RUN_DIR | stop RUN_DIR" >&2; exit 2; }

start() {
  local run=$1
  mkdir -p "$run/logs" "$run/pids" "$run/data" "$run/repos" "$run/work"
  run=$(cd "$run" && pwd)
  local bin gitea share
  bin=${GANTRY_TOOLS_BIN:-$("$TESTENV_DIR/build-tools.sh" gitea)}
  [[ -x $bin/gitea ]] || bin=$("$TESTENV_DIR/build-tools.sh" gitea)
  gitea=$(readlink -f "$bin/gitea")
  share=$(dirname "$gitea")/../share/gitea
  [[ -d $share/templates ]] || { echo "gitea.sh: no templates in $share (rebuild: build-tools.sh gitea)" >&2; exit 1; }
  share=$(cd "$share" && pwd)

  local config=$run/app.ini.in root_ok=""
  [[ $(id -u) == 0 ]] && root_ok="I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true"
  cat >"$config" <<INI
APP_NAME = gantry-test
RUN_MODE = prod
RUN_USER = $(id -un)
WORK_PATH = $run/work
$root_ok

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = @PORT@
DOMAIN = 127.0.0.1
ROOT_URL = http://127.0.0.1:@PORT@/
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false
STATIC_ROOT_PATH = $share
APP_DATA_PATH = $run/data

[database]
DB_TYPE = sqlite3
PATH = $run/data/gitea.db
SQLITE_JOURNAL_MODE = WAL

[repository]
ROOT = $run/repos
DEFAULT_BRANCH = main

[security]
INSTALL_LOCK = true
SECRET_KEY = $(openssl rand -hex 32)
INTERNAL_TOKEN = $(openssl rand -hex 48)

[oauth2]
ENABLED = false

[service]
DISABLE_REGISTRATION = true

[mailer]
ENABLED = false

[webhook]
ALLOWED_HOST_LIST = *
DELIVER_TIMEOUT = 10

[actions]
ENABLED = false

[packages]
ENABLED = false

[cron.update_checker]
ENABLED = false

[indexer]
REPO_INDEXER_ENABLED = false

[session]
PROVIDER = memory

[log]
MODE = console
LEVEL = Warn
ROOT_PATH = $run/logs
INI

  local gitea_env=(env -i "PATH=$PATH" "HOME=$run/work" "GITEA_WORK_DIR=$run/work")
  # The database and the admin first (the CLI writes the SQLite file directly), then the server.
  sed "s/@PORT@/0/" "$config" >"$run/app.ini"
  "${gitea_env[@]}" "$gitea" --config "$run/app.ini" migrate >"$run/logs/migrate.log" 2>&1 ||
    die_with_log "$run" migrate "gitea migrate failed"
  local user=gantry-admin password
  password=$(openssl rand -hex 16)
  "${gitea_env[@]}" "$gitea" --config "$run/app.ini" admin user create --admin --username "$user" \
    --password "$password" --email "$user@example.com" --must-change-password=false \
    >"$run/logs/admin.log" 2>&1 || die_with_log "$run" admin "gitea admin user create failed"
  local token
  # --raw prints the token on the last line (Gitea may log before it on stdout).
  token=$("${gitea_env[@]}" "$gitea" --config "$run/app.ini" admin user generate-access-token \
    --username "$user" --token-name testenv --scopes all --raw 2>>"$run/logs/admin.log" | tail -n 1)
  [[ $token =~ ^[0-9a-f]{40}$ ]] || die_with_log "$run" admin "gitea admin user generate-access-token printed no token"

  launch_gitea() {
    sed "s/@PORT@/$PORT/" "$config" >"$run/app.ini"
    start_bg "$run" gitea "${gitea_env[@]}" "$gitea" --config "$run/app.ini" web
  }
  gitea_up() { curl -sf --noproxy '*' --max-time 2 -o /dev/null "http://127.0.0.1:$PORT/api/v1/version"; }
  start_retrying "$run" gitea 120 gitea_up launch_gitea

  echo "GITEA_URL=http://127.0.0.1:$PORT"
  echo "GITEA_ADMIN_USER=$user"
  echo "GITEA_ADMIN_PASSWORD=$password"
  echo "GITEA_ADMIN_TOKEN=$token"
  echo "READY=1"
}

(($# == 2)) || usage
case $1 in
  start) start "$2" ;;
  stop) stop_all "$2" ;;
  *) usage ;;
esac
