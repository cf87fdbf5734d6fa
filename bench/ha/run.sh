#!/usr/bin/env bash
# CI runs per minute with 1 and with 3 `gantry server` replicas on one PostgreSQL database, and with
# 1 and with 3 remote `gantry worker`s of one server that has none of its own, in the same run, and
# the failover time of a replica killed with SIGKILL mid-step (docs/scaling.md).
#
#   bench/ha/run.sh [GANTRY_BINARY] [PUSHES] [STEP_SECONDS] [WORKERS]
#
# A file:// repository gets PUSHES branches (default 50), each a commit of its own whose pipeline
# is one step sleeping STEP_SECONDS (default 1: a stand-in for a build, so that capacity shows).
# For 1, then 3 replicas (each --workers WORKERS, default 2, on a fresh database): every push is
# sent as a signed webhook, round-robin over the replicas, and the time from the first webhook to
# the last run's end is measured. Then the same with one server (--workers 0) and 1, then 3, remote
# workers (one run at a time each), on fresh databases. Then, with 3 replicas and --run-lease 5s, the replica running a
# 20 s step is killed and the time until another replica has claimed the run is measured.
# Reports runs per minute, the ratio 3:1, the failover time, and that no run was built twice.
set -euo pipefail
GANTRY=${1:-${GANTRY_BINARY:-$(dirname "$0")/../../build/default/src/exe/gantry}}
GANTRY=$(realpath "$GANTRY")
PUSHES=${2:-50}
STEP=${3:-1}
WORKERS=${4:-2}
ENV_DIR=$(cd "$(dirname "$0")/../../test/env" && pwd)
work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$ENV_DIR/postgres.sh" stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

pg_env=$("$ENV_DIR/postgres.sh" start "$work/pg")
PG_URL=$(sed -n 's/^PG_URL=//p' <<<"$pg_env")
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
export HOOK=bench-hook-secret API_TOKEN=bench-api-token-0123456789 GANTRY_TOKEN=bench-api-token-0123456789

new_db() {  # a fresh database; prints its URL
  "$PG_BIN/psql" -q "$PG_URL" -c "CREATE DATABASE $1" >/dev/null
  echo "${PG_URL%/*}/$1"
}

# The repository: one branch per push, each with its own commit.
repo=$work/repo
mkdir -p "$repo/.gantry"
printf 'shell: sh\nsteps:\n  build: {run: "sleep %s; echo built"}\n' "$STEP" >"$repo/.gantry/pipeline.yaml"
export GIT_AUTHOR_NAME=b GIT_AUTHOR_EMAIL=b@e GIT_COMMITTER_NAME=b GIT_COMMITTER_EMAIL=b@e
git -C "$repo" init -q -b main && git -C "$repo" add -A && git -C "$repo" commit -q -m init
declare -a shas
for i in $(seq 0 $((PUSHES - 1))); do
  git -C "$repo" checkout -q -B "b$i" main
  echo "$i" >"$repo/f.txt"
  git -C "$repo" add -A && git -C "$repo" commit -q -m "b$i"
  shas[i]=$(git -C "$repo" rev-parse HEAD)
done
git -C "$repo" checkout -q main
url="file://$repo"

declare -a ports
start_replicas() {  # start_replicas N DB_URL LEASE: N replicas, their ports in ports[]
  local n=$1 db=$2 lease=$3
  ports=()
  for r in $(seq 0 $((n - 1))); do
    local dir=$work/run-$RANDOM-$r
    mkdir -p "$dir" && chmod 755 "$dir"
    "$GANTRY" server --listen 127.0.0.1:0 --store "$db" --webhook-secret-env HOOK --api-token-env API_TOKEN \
      --repo "$url" --allow-file-repos --data-dir "$dir/data" --worker "replica-$r" --workers "$WORKERS" \
      --run-lease "$lease" >"$dir/log" 2>&1 &
    pids+=($!)
    for _ in $(seq 200); do
      grep -q "listening on" "$dir/log" 2>/dev/null && break
      sleep 0.1
    done
    ports+=("$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$dir/log" | head -n 1)")
  done
}
stop_replicas() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}
push() {  # push PORT I
  local body
  body=$(printf '{"ref":"refs/heads/b%s","before":"0000000000000000000000000000000000000001","after":"%s","repository":{"full_name":"org/app","clone_url":"%s"},"pusher":{"name":"b"},"commits":[]}' "$2" "${shas[$2]}" "$url")
  local sig
  sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$HOOK" | sed 's/.*= //')
  curl -s -o /dev/null -X POST --data-binary "$body" -H "X-GitHub-Event: push" -H "X-GitHub-Delivery: d$2-$RANDOM" \
    -H "X-Hub-Signature-256: sha256=$sig" "http://127.0.0.1:$1/webhook"
}
sql() { "$PG_BIN/psql" -qtA "$1" -c "$2"; }

burst() {  # burst DB N: the pushes, round-robin over the N ports, until all runs end; prints
           # "seconds runs_per_min failed duplicates"
  local db=$1 n=$2 t0 t1
  t0=$(date +%s.%N)
  for i in $(seq 0 $((PUSHES - 1))); do push "${ports[$((i % n))]}" "$i"; done
  while :; do
    local done_runs
    done_runs=$(sql "$db" "SELECT count(*) FROM runs WHERE state IN ('succeeded','failed','cancelled')")
    [ "$done_runs" -ge "$PUSHES" ] && break
    sleep 0.2
  done
  t1=$(date +%s.%N)
  local failed dup
  failed=$(sql "$db" "SELECT count(*) FROM runs WHERE state <> 'succeeded'")
  dup=$(sql "$db" "SELECT count(*) - count(DISTINCT commit_sha) FROM runs")
  awk -v a="$t0" -v b="$t1" -v n="$PUSHES" -v f="$failed" -v d="$dup" \
    'BEGIN{s=b-a; printf "%.1f %.1f %d %d\n", s, n*60/s, f, d}'
}

measure() {  # measure N: runs per minute with N replicas; prints burst's line
  local db
  db=$(new_db "bench_$1")
  start_replicas "$1" "$db" 15s
  burst "$db" "$1"
  stop_replicas
}

measure_workers() {  # measure_workers N: runs per minute with one server (--workers 0) and N workers
  local n=$1 db token
  db=$(new_db "bench_workers_$n")
  WORKERS=0 start_replicas 1 "$db" 15s
  token=$(curl -s -X POST -H "Authorization: Bearer $API_TOKEN" -H 'Content-Type: application/json' \
    -d '{"name":"bench","project":"*","roles":["worker"]}' "http://127.0.0.1:${ports[0]}/api/tokens" |
    sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
  for w in $(seq 0 $((n - 1))); do
    local dir=$work/worker-$RANDOM-$w
    mkdir -p "$dir" && chmod 755 "$dir"
    WORKER_TOKEN=$token "$GANTRY" worker --server "http://127.0.0.1:${ports[0]}" --token-env WORKER_TOKEN \
      --name "w$w" --data-dir "$dir/data" --allow-file-repos >"$dir/log" 2>&1 &
    pids+=($!)
  done
  burst "$db" 1
  stop_replicas
}

read -r s1 rpm1 f1 d1 < <(measure 1)
read -r s3 rpm3 f3 d3 < <(measure 3)
read -r sw1 rpmw1 fw1 dw1 < <(measure_workers 1)
read -r sw3 rpmw3 fw3 dw3 < <(measure_workers 3)

# Failover: a 20 s step on one of 3 replicas (5 s lease); the one running it is killed.
printf 'shell: sh\nsteps:\n  build: {run: "sleep 20; echo built"}\n' >"$repo/.gantry/pipeline.yaml"
git -C "$repo" add -A && git -C "$repo" commit -q -m slow
shas[0]=$(git -C "$repo" rev-parse HEAD)
git -C "$repo" branch -q -f b0 HEAD
db=$(new_db bench_failover)
start_replicas 3 "$db" 5s
push "${ports[0]}" 0
while [ "$(sql "$db" "SELECT state FROM steps WHERE run_id = 1")" != running ]; do sleep 0.1; done
holder=$(sql "$db" "SELECT worker FROM runs WHERE id = 1")
kill -9 "${pids[${holder#replica-}]}"
t0=$(date +%s.%N)
while [ "$(sql "$db" "SELECT attempt FROM runs WHERE id = 1 AND state = 'running'")" != 2 ]; do sleep 0.05; done
t1=$(date +%s.%N)
failover=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')
stop_replicas

printf "%-34s %10s %12s %8s %11s\n" "$PUSHES pushes, ${STEP} s step, $WORKERS workers each" "seconds" "runs/minute" "failed" "duplicated"
printf "%-34s %10s %12s %8s %11s\n" "1 replica" "$s1" "$rpm1" "$f1" "$d1"
printf "%-34s %10s %12s %8s %11s\n" "3 replicas" "$s3" "$rpm3" "$f3" "$d3"
awk -v a="$rpm1" -v b="$rpm3" 'BEGIN{printf "ratio 3 replicas : 1 replica = %.2f\n", b/a}'
printf "%-34s %10s %12s %8s %11s\n" "1 server --workers 0, 1 worker" "$sw1" "$rpmw1" "$fw1" "$dw1"
printf "%-34s %10s %12s %8s %11s\n" "1 server --workers 0, 3 workers" "$sw3" "$rpmw3" "$fw3" "$dw3"
awk -v a="$rpmw1" -v b="$rpmw3" 'BEGIN{printf "ratio 3 workers : 1 worker = %.2f\n", b/a}'
echo "failover (5 s lease, kill -9 mid-step to the run claimed by another replica): ${failover} s"
