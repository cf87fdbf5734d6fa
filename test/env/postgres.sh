#!/usr/bin/env bash
# A throwaway PostgreSQL server (Debian's postgresql, the newest installed major version).
#
#   postgres.sh start RUN_DIR   initdb into RUN_DIR/pg/data, listen on 127.0.0.1 only with the unix
#                               socket in RUN_DIR/pg/sock, fsync off; a generated superuser with a
#                               scram-sha-256 password and one database
#   postgres.sh stop RUN_DIR    pg_ctl stop -m fast, then whatever is left
#
# start prints:
#   PG_URL=postgresql://USER:PASSWORD@127.0.0.1:PORT/DATABASE
#   PG_HOST=127.0.0.1 PG_PORT=... PG_USER=... PG_PASSWORD=... PG_DATABASE=...
#   READY=1
# PostgreSQL refuses to run as root: as root, the server runs as the `postgres` system user, which
# then owns RUN_DIR/pg (RUN_DIR itself becomes traversable by others, and so must its parents be).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { echo "usage: $0 start RUN_DIR | stop RUN_DIR" >&2; exit 2; }

PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
if [[ ! -x ${PG_BIN:-}/postgres ]]; then
  echo "postgres.sh: no PostgreSQL server in /usr/lib/postgresql (apt-get install postgresql)" >&2
  exit 1
fi

# The prefix that runs a server-side command as the owner of the cluster.
AS_PG=()
if (($(id -u) == 0)); then
  AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups --reset-env)
fi

start() {
  local run=$1
  mkdir -p "$run/logs" "$run/pids" "$run/pg/sock"
  run=$(cd "$run" && pwd)
  local pg=$run/pg port user password db=gantry
  user=gantry_$(openssl rand -hex 3)
  password=$(openssl rand -hex 16)
  chmod 700 "$pg/sock"  # local connections are trusted: only the cluster's owner may use them
  (umask 077; echo "$password" >"$pg/pwfile")
  if ((${#AS_PG[@]})); then
    chmod a+x "$run"
    chown -R postgres:postgres "$pg"
    "${AS_PG[@]}" test -w "$pg" || {
      echo "postgres.sh: the postgres user cannot write $pg;" \
        "make its parent directories traversable (chmod a+x)" >&2
      exit 1
    }
  fi

  "${AS_PG[@]}" "$PG_BIN/initdb" -D "$pg/data" -U "$user" --pwfile="$pg/pwfile" \
    --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --locale=C --no-sync \
    >>"$run/logs/initdb.log" 2>&1 || die_with_log "$run" initdb "initdb failed"
  rm -f "$pg/pwfile"

  launch_postgres() {
    start_bg "$run" postgres "${AS_PG[@]}" "$PG_BIN/postgres" -D "$pg/data" -p "$PORT" \
      -c listen_addresses=127.0.0.1 -c unix_socket_directories="$pg/sock" \
      -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200
  }
  pg_up() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 2; }
  start_retrying "$run" postgres 60 pg_up launch_postgres
  port=$PORT
  # Over TCP with the password: also proves that password authentication works.
  env PGPASSWORD="$password" PGCONNECT_TIMEOUT=10 "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" \
    -U "$user" "$db" >>"$run/logs/initdb.log" 2>&1 ||
    die_with_log "$run" initdb "createdb $db failed"

  echo "PG_URL=postgresql://$user:$password@127.0.0.1:$port/$db"
  echo "PG_HOST=127.0.0.1"
  echo "PG_PORT=$port"
  echo "PG_USER=$user"
  echo "PG_PASSWORD=$password"
  echo "PG_DATABASE=$db"
  echo "READY=1"
}

stop() {
  local run=$1
  if [[ -f $run/pg/data/postmaster.pid ]]; then
    "${AS_PG[@]}" "$PG_BIN/pg_ctl" stop -D "$run/pg/data" -m fast -w -t 20 >/dev/null 2>&1 || true
  fi
  stop_all "$run"
}

(($# == 2)) || usage
case $1 in
  start) start "$2" ;;
  stop) stop "$2" ;;
  *) usage ;;
esac
