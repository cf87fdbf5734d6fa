# Shared helpers of the test/env scripts. Source it; do not run it.
#
# Every server script follows one protocol, which test/env/testenv.h relies on:
#   SCRIPT start RUN_DIR [ARGS...]  starts the server(s) in the background with all state in RUN_DIR
#                                   (which it creates), records each PID in RUN_DIR/pids/NAME.pid,
#                                   logs to RUN_DIR/logs/NAME.log, waits until ready, and prints
#                                   KEY=VALUE lines on stdout (the last line is READY=1). Exit 0.
#   SCRIPT stop RUN_DIR             stops what start recorded (newest first) and keeps RUN_DIR.
# Servers bind 127.0.0.1 on free ports only: those that can bind port 0 do and report the port they
# got (git_http_server.py, helm_repo_server.py); the others are started by start_retrying, which
# picks another port when the one it chose was taken before the server bound it.

TESTENV_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# A free TCP port on 127.0.0.1 (the kernel picks it). It is released before the caller's server binds
# it, so another binder may take it first: start servers that cannot bind port 0 with start_retrying.
free_port() {
  python3 -c '
import socket, sys
try:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])
except OSError as e:
    sys.exit(f"testenv: no free TCP port on 127.0.0.1 (ephemeral range exhausted?): {e}")'
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

# forget_bg RUN_DIR NAME: stops what start_bg started as NAME (its whole process group) and forgets
# it, so that NAME can be started again.
forget_bg() {
  local run=$1 name=$2 pid
  pid=$(cat "$run/pids/$name.pid" 2>/dev/null) || return 0
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  rm -f "$run/pids/$name.pid"
  if [[ -f $run/pids/order ]]; then
    grep -vxF -- "$name" "$run/pids/order" >"$run/pids/order.new" || true
    mv "$run/pids/order.new" "$run/pids/order"
  fi
}

# owns_port SID PORT: true when a process of session SID (a process start_bg started, and its
# children) listens on TCP PORT. Tells our server from another that took the port first.
owns_port() {
  local sid=$1 hex inodes p fd link i
  hex=$(printf '%04X' "$2")
  inodes=$(awk -v h="$hex" 'FNR > 1 && $4 == "0A" { n = split($2, a, ":"); if (a[n] == h) print $10 }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null)
  [[ -n $inodes ]] || return 1
  for p in $(ps -o pid= --sid "$sid" 2>/dev/null); do
    for fd in /proc/"$p"/fd/*; do
      link=$(readlink "$fd" 2>/dev/null) || continue
      for i in $inodes; do [[ $link == "socket:[$i]" ]] && return 0; done
    done
  done
  return 1
}

# start_retrying RUN_DIR NAME SECONDS UP LAUNCH: starts a server that cannot bind port 0 on a port
# free_port picked, and tries again on another when that port was taken before the server bound it.
# Sets PORT (a global LAUNCH and UP read), runs LAUNCH (which configures the server for $PORT and
# calls start_bg RUN_DIR NAME ...), then waits up to SECONDS until UP succeeds while NAME's process
# itself listens on $PORT (owns_port: a server of someone else on that port does not count). When
# the process exits first, or its log says the address is in use, it is stopped and started again
# on a new port, up to GANTRY_TESTENV_PORT_ATTEMPTS (default 5) attempts; each retry is reported on
# stderr with its cause, and appended to $GANTRY_TESTENV_RETRY_LOG when set (the stress test counts
# them). Fails (die_with_log) with every attempt's cause after the last one, or on timeout.
start_retrying() {
  local run=$1 name=$2 limit=$3 up=$4 launch=$5
  local attempts=${GANTRY_TESTENV_PORT_ATTEMPTS:-5} attempt pid deadline offset cause causes=""
  local log=$run/logs/$name.log in_use='address already in use|EADDRINUSE|cannot bind any address'
  mkdir -p "$run/logs"
  for ((attempt = 1; attempt <= attempts; attempt++)); do
    PORT=$(free_port)
    offset=$(stat -c %s "$log" 2>/dev/null || echo 0)
    "$launch"
    pid=$(cat "$run/pids/$name.pid")
    deadline=$((SECONDS + limit))
    cause=""
    while alive "$pid"; do
      if tail -c +"$((offset + 1))" "$log" 2>/dev/null | grep -qiE "$in_use"; then break; fi
      if "$up" >/dev/null 2>&1 && owns_port "$pid" "$PORT"; then return 0; fi
      ((SECONDS < deadline)) ||
        die_with_log "$run" "$name" "timed out after ${limit}s waiting for $name on 127.0.0.1:$PORT"
      sleep 0.2
    done
    cause=$(tail -c +"$((offset + 1))" "$log" 2>/dev/null | grep -m1 -iE "$in_use") ||
      cause=$(tail -c +"$((offset + 1))" "$log" 2>/dev/null | grep -v '^[[:space:]]*$' | tail -n 1) ||
      true
    cause=${cause:-exited with no output}
    forget_bg "$run" "$name"
    causes+=$'\n'"  attempt $attempt on port $PORT: $cause"
    echo "testenv: $name could not start on 127.0.0.1:$PORT (attempt $attempt of $attempts): $cause" >&2
    [[ -z ${GANTRY_TESTENV_RETRY_LOG:-} ]] ||
      echo "$name port=$PORT attempt=$attempt cause=$cause" >>"$GANTRY_TESTENV_RETRY_LOG"
  done
  die_with_log "$run" "$name" "$name did not start in $attempts attempts:$causes"
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
