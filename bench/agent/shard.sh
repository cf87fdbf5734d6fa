#!/usr/bin/env bash
# Sharded agent replicas (issue 19), one replica against three in the same run, on a real control
# plane and a real Git server (smart HTTP):
#  1. one `gantry agent --shard`: cold start (every Application Synced), then a push that changes
#     every Application: seconds until all are Synced at the new commit (reconcile throughput).
#  2. it stops (SIGTERM releases its Lease); three replicas start (fresh caches): seconds until the
#     claims are spread over the three, then the same push measurement.
#  3. failover: kill -9 one of the three; seconds until none of the Applications is claimed by it
#     any more (each claim is taken right before the new owner's reconcile of it).
#
#   bench/agent/shard.sh             (defaults: APPS=1000 OBJECTS=5 WORKERS=4 LEASE=15s INTERVAL=5s:
#                                    a push is found by polling, up to INTERVAL late, alike for both)
#   GANTRY_BIN=path/to/gantry        run that binary, build nothing
#   KEEP=1                           copy the agents' logs to /tmp/bench-shard-*.log
set -euo pipefail
cd "$(dirname "$0")/../.."
APPS=${APPS:-1000} OBJECTS=${OBJECTS:-5} WORKERS=${WORKERS:-4} LEASE=${LEASE:-15s} INTERVAL=${INTERVAL:-5s}
if [[ -n ${GANTRY_BIN:-} ]]; then
  gantry=$(realpath "$GANTRY_BIN")
else
  cmake --preset default >/dev/null
  cmake --build build/default --target gantry >/dev/null
  gantry=$(realpath build/default/src/exe/gantry)
fi

source bench/agent/servers.sh
work=$(mktemp -d /tmp/gantry-bench-shard.XXXXXX)
declare -A pids=()
cleanup() {
  for id in "${!pids[@]}"; do kill "${pids[$id]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  stop_servers "$work"
  if [[ -n ${KEEP:-} ]]; then for f in "$work"/*.log; do cp "$f" "/tmp/bench-shard-$(basename "$f")"; done; fi
  rm -rf "$work"
}
trap cleanup EXIT
start_servers "$work"

clone=$work/clone
git -c init.defaultBranch=main init -q "$clone"
g() { git -C "$clone" -c user.name=bench -c user.email=b@example.com "$@"; }
auth_url="http://$GIT_USER:$GIT_PASSWORD@$host/config.git"
write_repo() {  # write_repo ROUND: every Application's ConfigMaps carry the round
  for ((a = 0; a < APPS; a++)); do
    mkdir -p "$clone/apps/a$a"
    for ((o = 0; o < OBJECTS; o++)); do
      printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a%d-cm-%d}\ndata: {round: "%s"}\n---\n' "$a" "$o" "$1"
    done > "$clone/apps/a$a/objects.yaml"
  done
  g add -A && g commit -qm "round $1" && g push -q "$auth_url" main
  g rev-parse HEAD
}
write_repo 0 >/dev/null

"$gantry" install --print | awk '/^---/{n++} n==1' > "$work/crd.yaml"
kubectl --kubeconfig "$KUBECONFIG" apply --server-side -f "$work/crd.yaml" >/dev/null
kubectl --kubeconfig "$KUBECONFIG" create namespace bench >/dev/null
kubectl --kubeconfig "$KUBECONFIG" wait --for condition=Established crd/applications.gantry.dev >/dev/null
for ((a = 0; a < APPS; a++)); do
  printf -- '---\napiVersion: gantry.dev/v1alpha1\nkind: Application\nmetadata: {name: a%d, namespace: bench}\nspec:\n  source: {repoURL: "%s", path: apps/a%d}\n  destination: {namespace: bench}\n  syncPolicy: {automated: {prune: true}}\n' "$a" "$repo" "$a"
done > "$work/apps.yaml"

start_agent() {  # start_agent IDENTITY
  GIT_CREDS="$host=$GIT_USER:$GIT_PASSWORD" "$gantry" agent --kubeconfig "$KUBECONFIG" -n bench --shard \
    --identity "$1" --lease-duration "$LEASE" --cache-dir "$work/cache-$1" --metrics-listen 127.0.0.1:0 \
    --git-credentials-env GIT_CREDS --interval "$INTERVAL" --workers "$WORKERS" >>"$work/$1.log" 2>&1 &
  pids[$1]=$!
}
# Prints "synced-at-REV claimed-by-others-than-EXCLUDED" over the Applications.
count() {  # count REV EXCLUDED
  api "$KUBE_SERVER/apis/gantry.dev/v1alpha1/namespaces/bench/applications" | python3 -c '
import json, sys
rev, excluded = sys.argv[1], sys.argv[2]
items = json.load(sys.stdin)["items"]
synced = sum(1 for i in items if i.get("status", {}).get("sync", {}).get("status") == "Synced"
             and i["status"]["sync"].get("revision") == rev)
owners = [i["metadata"].get("annotations", {}).get("gantry.dev/shard-owner", "") for i in items]
print(synced, sum(1 for o in owners if o and o != excluded), " ".join(f"{o}={owners.count(o)}" for o in sorted(set(owners))))' "$1" "$2"
}
now() { date +%s.%N; }
since() { python3 -c "import time; print(f'{time.time() - $1:.1f}')"; }
wait_for() {  # wait_for REV EXCLUDED: until every Application is Synced at REV and claimed, not by EXCLUDED
  local synced claimed owners
  while read -r synced claimed owners < <(count "$1" "$2"); ((synced < APPS || claimed < APPS)); do sleep 0.5; done
  echo "$owners" >&2
}
push_all() {  # push_all ROUND → seconds until every Application is Synced at the new commit
  local rev t
  rev=$(write_repo "$1")
  t=$(now)
  wait_for "$rev" -
  since "$t"
}
rev0=$(g rev-parse HEAD)

# --- 1. one replica ---------------------------------------------------------------------------------
start_agent one
sleep 2
t=$(now)
kubectl --kubeconfig "$KUBECONFIG" apply --server-side -f "$work/apps.yaml" >/dev/null
wait_for "$rev0" -
cold1=$(since "$t")
push1=$(push_all 1)
echo "1 replica: cold start ${cold1}s, push to all ${push1}s" >&2
kill -TERM "${pids[one]}"; wait "${pids[one]}" || true; unset 'pids[one]'

# --- 2. three replicas ------------------------------------------------------------------------------
t=$(now)
for id in r1 r2 r3; do start_agent $id; done
rev1=$(g rev-parse HEAD)
until read -r _ _ owners < <(count "$rev1" one) && [[ $owners == "r1="*" r2="*" r3="* && $owners != *"one="* ]]; do sleep 0.5; done
echo "$owners" >&2
takeover3=$(since "$t")
push3=$(push_all 2)
echo "3 replicas: takeover ${takeover3}s, push to all ${push3}s" >&2

# --- 3. failover ------------------------------------------------------------------------------------
rev2=$(g rev-parse HEAD)
read -r _ _ owners < <(count "$rev2" -)
moved=$(tr ' ' '\n' <<<"$owners" | sed -n 's/^r2=//p')
t=$(now)
kill -KILL "${pids[r2]}"; wait "${pids[r2]}" 2>/dev/null || true; unset 'pids[r2]'
wait_for "$rev2" r2
failover=$(since "$t")

cat <<TABLE

Sharded agents, $(date -u +%F), 1-node kwok cluster, git http-backend; $APPS Applications × $OBJECTS
ConfigMaps, --workers $WORKERS per replica, --lease-duration $LEASE; $(nproc) cores, load average at the end $(cut -d' ' -f1-3 /proc/loadavg)

| | 1 replica | 3 replicas | 3/1 |
|---|---|---|---|
| push changing every Application → all Synced at it | ${push1} s | ${push3} s | $(python3 -c "print(f'{$push3/$push1:.2f}')") |
| reconcile+sync throughput | $(python3 -c "print(f'{$APPS/$push1:.1f}')")/s | $(python3 -c "print(f'{$APPS/$push3:.1f}')")/s | $(python3 -c "print(f'{$push1/$push3:.2f}')") |
| cold start (1) / takeover from it with empty caches (3) | ${cold1} s | ${takeover3} s | |

kill -9 of one of three replicas: its ${moved} Applications claimed by the other two after ${failover} s
(lease duration $LEASE).
TABLE
