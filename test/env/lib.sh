# Shared helpers of the test/env scripts. Source it; do not run it.
#
# Every server script follows one protocol, which test/env/testenv.h relies on:
#   SCRIPT start RUN_DIR [ARGS...]  starts the server(s) in the background with all state in RUN_DIR
#                                   (which it creates), records each PID in RUN_DIR/pids/NAME.pid,
#                                   logs to RUN_DIR/logs/NAME.log, waits until ready, and prints
#                                   KEY=VALUE lines on stdout (the last line is READY=1). Exit 0.
#   SCRIPT stop RUN_DIR             stops what start recorded (newest first) and keeps RUN_DIR.
# Servers bind 127.0.0.1 on free ports only.

TESTENV_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# A free TCP port on 127.0.0.1 (the kernel picks it; a tiny race with other binders remains).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_for SECONDS DESCRIPTION CMD...: polls CMD every 0.2 s until it succeeds or SECONDS pass.
wait_for() {
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "testenv: timed out after ${limit}s waiting for $what" >&2
      return 1
    fi
    sleep 0.2
  done
}

# watch_owner RUN_DIR: when GANTRY_TESTENV_OWNER_PID names a process (a test binary), starts a
# watchdog that stops RUN_DIR's servers once that process is gone, so a crashed or killed test never
# leaves servers behind. Once per RUN_DIR.
watch_owner() {
  local run=$1 owner=${GANTRY_TESTENV_OWNER_PID:-}
  [[ -n $owner && ! -f $run/pids/.watched ]] || return 0
  touch "$run/pids/.watched"
  setsid bash -c '
    source "$1"
    while alive "$2"; do sleep 1; done
    stop_all "$3"' watchdog "${BASH_SOURCE[0]}" "$owner" "$run" </dev/null >/dev/null 2>&1 &
}

# start_bg RUN_DIR NAME CMD...: starts CMD in its own session, logging to RUN_DIR/logs/NAME.log.
start_bg() {
  local run=$1 name=$2; shift 2
  mkdir -p "$run/pids" "$run/logs"
  watch_owner "$run"
  setsid "$@" </dev/null >>"$run/logs/$name.log" 2>&1 &
  echo $! >"$run/pids/$name.pid"
  # Order of starting, so stop can go in reverse.
  echo "$name" >>"$run/pids/order"
}

# alive PID: true while PID runs (a zombie waiting for its reaper counts as gone).
alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z ]]
}

# stop_all RUN_DIR: SIGTERM each recorded process group (newest first), SIGKILL after 5 s; then runs
# RUN_DIR/cleanup when a script left one (state outside the processes: mounts, links, cgroups).
stop_all() {
  local run=$1 name pid i
  if [[ -f $run/pids/order ]]; then
    for name in $(tac "$run/pids/order"); do
      pid=$(cat "$run/pids/$name.pid" 2>/dev/null) || continue
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do alive "$pid" || break; sleep 0.1; done
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      rm -f "$run/pids/$name.pid"
    done
    rm -f "$run/pids/order"
  fi
  if [[ -x $run/cleanup ]]; then "$run/cleanup" || true; fi
}

# die_with_log RUN_DIR NAME MESSAGE: prints MESSAGE and the tail of NAME's log, stops all, fails.
die_with_log() {
  local run=$1 name=$2 msg=$3
  echo "testenv: $msg" >&2
  [[ -f $run/logs/$name.log ]] && tail -n 40 "$run/logs/$name.log" | sed "s/^/  $name| /" >&2
  stop_all "$run"
  exit 1
}

# make_tls DIR: a CA (DIR/ca.crt) and a server certificate for 127.0.0.1 and localhost signed by it
# (DIR/server.crt, DIR/server.key), for the servers that serve TLS (registry.sh, helm-repo.sh).
make_tls() {
  local dir=$1
  mkdir -p "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=gantry test CA" -keyout "$dir/ca.key" -out "$dir/ca.crt" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    2>"$dir/openssl.log"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=127.0.0.1" -keyout "$dir/server.key" -out "$dir/server.csr" 2>>"$dir/openssl.log"
  printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost' 'basicConstraints=CA:FALSE' \
    'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth' >"$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 30 -extfile "$dir/server.ext" -out "$dir/server.crt" \
    2>>"$dir/openssl.log"
}
