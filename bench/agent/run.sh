#!/usr/bin/env bash
# The pull agent's benchmarks, on a real control plane and a real Git server (smart HTTP):
#  1. commit → applied latency: PUSHES commits changing a ConfigMap, each announced by a signed
#     push webhook; then POLL_PUSHES commits found by polling (interval POLL_INTERVAL). p50 and p99.
#  2. steady state: APPS applications × OBJECTS objects (ConfigMaps) in sync, nothing changing,
#     measured over STEADY_SECONDS: agent RSS, CPU seconds per minute, its API requests per minute,
#     and the writes the apiserver saw on Applications and ConfigMaps.
#
#   bench/agent/run.sh            (defaults: PUSHES=50 POLL_PUSHES=10 POLL_INTERVAL=5s APPS=100
#                                  OBJECTS=100 STEADY_SECONDS=120)
#   GANTRY_BUILD_DIR=build/x      use (and build) that tree instead of build/default
#   GANTRY_BIN=path/to/gantry     run that binary, build nothing
#   AGENT_WRAPPER="heaptrack -o /tmp/agent"   run the agent under a profiler (RSS and CPU are then
#                                  the agent's own process, the wrapper's child)
#   KEEP=1                        copy the agent log to /tmp/bench-agent-last.log
set -euo pipefail
cd "$(dirname "$0")/../.."
PUSHES=${PUSHES:-50} POLL_PUSHES=${POLL_PUSHES:-10} POLL_INTERVAL=${POLL_INTERVAL:-5s}
APPS=${APPS:-100} OBJECTS=${OBJECTS:-100} STEADY_SECONDS=${STEADY_SECONDS:-120}
if [[ -n ${GANTRY_BIN:-} ]]; then
  gantry=$(realpath "$GANTRY_BIN")
else
  build=${GANTRY_BUILD_DIR:-build/default}
  [[ -n ${GANTRY_BUILD_DIR:-} ]] || cmake --preset default >/dev/null
  cmake --build "$build" --target gantry >/dev/null
  gantry=$(realpath "$build/src/exe/gantry")
fi

source bench/agent/servers.sh
work=$(mktemp -d /tmp/gantry-bench-agent.XXXXXX)
cleanup() {
  [[ -n ${agent_pid:-} ]] && kill "$agent_pid" 2>/dev/null || true
  [[ -n ${wrapper_pid:-} ]] && wait "$wrapper_pid" 2>/dev/null || true
  stop_servers "$work"
  [[ -n ${KEEP:-} ]] && cp "$work/agent.log" /tmp/bench-agent-last.log; rm -rf "$work"
}
trap cleanup EXIT
start_servers "$work"

# The config repository: APPS directories of OBJECTS ConfigMaps, plus the latency app.
clone=$work/clone
git -c init.defaultBranch=main init -q "$clone"
for ((a = 0; a < APPS; a++)); do
  mkdir -p "$clone/apps/a$a"
  for ((o = 0; o < OBJECTS; o++)); do
    printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%d}\ndata: {app: "a%d", index: "%d"}\n' "$o" "$a" "$o"
    echo ---
  done > "$clone/apps/a$a/objects.yaml"
done
mkdir -p "$clone/latency"
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: latency}\ndata: {round: "0"}\n' > "$clone/latency/cm.yaml"
g() { git -C "$clone" -c user.name=bench -c user.email=b@example.com "$@"; }
auth_url="http://$GIT_USER:$GIT_PASSWORD@$host/config.git"
g add -A && g commit -qm init && g push -q "$auth_url" main

"$gantry" install --print | awk '/^---/{n++} n==1' > "$work/crd.yaml"
kubectl --kubeconfig "$KUBECONFIG" apply --server-side -f "$work/crd.yaml" >/dev/null
kubectl --kubeconfig "$KUBECONFIG" create namespace bench >/dev/null
kubectl --kubeconfig "$KUBECONFIG" wait --for condition=Established crd/applications.gantry.dev >/dev/null
{
  for ((a = 0; a < APPS; a++)); do
    printf -- '---\napiVersion: gantry.dev/v1alpha1\nkind: Application\nmetadata: {name: a%d, namespace: bench}\nspec:\n  source: {repoURL: "%s", path: apps/a%d}\n  destination: {namespace: a%d}\n  syncPolicy: {automated: {prune: true, selfHeal: true}, syncOptions: [CreateNamespace=true]}\n' "$a" "$repo" "$a" "$a"
  done
  printf -- '---\napiVersion: gantry.dev/v1alpha1\nkind: Application\nmetadata: {name: latency, namespace: bench}\nspec:\n  source: {repoURL: "%s", path: latency}\n  destination: {namespace: bench}\n  syncPolicy: {automated: {prune: true}}\n' "$repo"
} > "$work/apps.yaml"
kubectl --kubeconfig "$KUBECONFIG" apply --server-side -f "$work/apps.yaml" >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port) metrics_port=$(free_port)
start_agent() {
  # shellcheck disable=SC2086 # the wrapper is a command line
  WEBHOOK_SECRET=bench GIT_CREDS="$host=$GIT_USER:$GIT_PASSWORD" ${AGENT_WRAPPER:-} "$gantry" agent --kubeconfig "$KUBECONFIG" -n bench \
    --cache-dir "$work/cache" --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$metrics_port" --webhook-secret-env WEBHOOK_SECRET \
    --git-credentials-env GIT_CREDS --no-leader-election --interval "$1" --workers 4 >>"$work/agent.log" 2>&1 &
  agent_pid=$! wrapper_pid=
  if [[ -n ${AGENT_WRAPPER:-} ]]; then
    wrapper_pid=$agent_pid agent_pid=
    until agent_pid=$(pgrep -P "$wrapper_pid" -f "^$gantry agent"); do sleep 0.1; done
  fi
}
stop_agent() {
  kill "$agent_pid"; wait "$agent_pid" 2>/dev/null || true
  [[ -n $wrapper_pid ]] && { wait "$wrapper_pid" 2>/dev/null || true; }
  agent_pid= wrapper_pid=
}
synced_count() {
  api "$KUBE_SERVER/apis/gantry.dev/v1alpha1/namespaces/bench/applications" |
    python3 -c 'import json,sys; print(sum(1 for i in json.load(sys.stdin)["items"] if i.get("status",{}).get("sync",{}).get("status")=="Synced"))'
}
revision_of() {
  api "$KUBE_SERVER/apis/gantry.dev/v1alpha1/namespaces/bench/applications/latency" |
    python3 -c 'import json,sys; s=json.load(sys.stdin).get("status",{}); print(s.get("sync",{}).get("revision","") if s.get("sync",{}).get("status")=="Synced" else "")'
}

# --- 1. latency, webhook path ---------------------------------------------------------------------
start_agent 10m
t0=$(date +%s.%N)
until [[ $(synced_count) -ge $((APPS + 1)) ]]; do sleep 1; done
initial=$(python3 -c "import time; print(round(time.time() - $t0, 1))")
echo "initial sync of $APPS x $OBJECTS objects + 1 app: ${initial}s" >&2

push_and_wait() {  # push_and_wait ROUND WEBHOOK(0|1) → prints seconds from push to applied
  local round=$1 hook=$2 sha before
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: latency}\ndata: {round: "%d"}\n' "$round" > "$clone/latency/cm.yaml"
  g add -A && g commit -qm "round $round"
  before=$(g rev-parse HEAD~1); sha=$(g rev-parse HEAD)
  g push -q "$auth_url" main
  local t=$(date +%s.%N)
  if ((hook)); then
    local body="{\"ref\":\"refs/heads/main\",\"before\":\"$before\",\"after\":\"$sha\",\"repository\":{\"full_name\":\"org/config\",\"clone_url\":\"$repo\"},\"commits\":[]}"
    local sig; sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac bench -hex | awk '{print $NF}')
    curl -sf -o /dev/null -H 'X-GitHub-Event: push' -H "X-GitHub-Delivery: r$round" \
      -H "X-Hub-Signature-256: sha256=$sig" --data-binary "$body" "http://127.0.0.1:$port/webhook"
  fi
  until [[ $(revision_of) == "$sha" ]]; do sleep 0.02; done
  python3 -c "import time; print(time.time() - $t)"
}
percentiles() { sort -n | python3 -c 'import sys; v=[float(x) for x in sys.stdin]; p=lambda q: v[min(len(v)-1, int(q*len(v)))]; print(f"{p(0.5)*1000:.0f} {p(0.99)*1000:.0f}")'; }
for ((i = 1; i <= PUSHES; i++)); do push_and_wait "$i" 1; done > "$work/webhook.txt"
read -r hook_p50 hook_p99 < <(percentiles < "$work/webhook.txt")

# --- 2. steady state (the same agent, nothing changing) --------------------------------------------
# Each push also records the new revision on the other applications (their reconciles run after the
# changed one's): wait until that work is done, so the window sees only the steady state.
queue_depth() { curl -sf "http://127.0.0.1:$metrics_port/metrics" | awk '/^gantry_agent_queue_depth /{print $2}'; }
until [[ $(queue_depth) == 0 ]]; do sleep 1; done
sleep 5
writes() {
  api "$KUBE_SERVER/metrics" | awk '/^apiserver_request_total\{/ && /resource="(applications|configmaps|events)"/ &&
    /verb="(APPLY|PATCH|CREATE|POST|UPDATE|PUT|DELETE)"/ { s += $NF } END { printf "%d\n", s }'
}
agent_requests() { curl -sf "http://127.0.0.1:$metrics_port/metrics" | awk '/^gantry_agent_api_requests /{print $2}'; }
cpu() { awk '{print $14 + $15}' "/proc/$agent_pid/stat"; }
w0=$(writes); r0=$(agent_requests); c0=$(cpu); rss_max=0 threads_max=0
for ((s = 0; s < STEADY_SECONDS; s++)); do
  rss=$(awk '/VmRSS/{print $2}' "/proc/$agent_pid/status"); ((rss > rss_max)) && rss_max=$rss
  threads=$(awk '/^Threads/{print $2}' "/proc/$agent_pid/status"); ((threads > threads_max)) && threads_max=$threads
  sleep 1
done
w1=$(writes); r1=$(agent_requests); c1=$(cpu)
hz=$(getconf CLK_TCK)
steady=$(python3 -c "m=$STEADY_SECONDS/60; print(f'{$rss_max/1024:.1f} {($c1-$c0)/$hz/m:.2f} {($r1-$r0)/m:.0f} {($w1-$w0)/m:.1f}')")
read -r rss_mib cpu_per_min req_per_min writes_per_min <<<"$steady"
stop_agent

# --- 1b. latency, poll path --------------------------------------------------------------------------
poll_p50=- poll_p99=-
if ((POLL_PUSHES > 0)); then
  start_agent "$POLL_INTERVAL"
  until [[ $(synced_count) -ge $((APPS + 1)) ]]; do sleep 1; done
  for ((i = PUSHES + 1; i <= PUSHES + POLL_PUSHES; i++)); do push_and_wait "$i" 0; done > "$work/poll.txt"
  read -r poll_p50 poll_p99 < <(percentiles < "$work/poll.txt")
fi

cat <<TABLE

Pull agent, $(date -u +%F), 1-node kwok cluster, git http-backend over smart HTTP

| commit → applied | pushes | p50 ms | p99 ms |
|---|---|---|---|
| webhook | $PUSHES | $hook_p50 | $hook_p99 |
| poll (interval $POLL_INTERVAL) | $POLL_PUSHES | $poll_p50 | $poll_p99 |

| steady state: $APPS apps × $OBJECTS objects, ${STEADY_SECONDS}s | value |
|---|---|
| initial sync of all apps | ${initial} s |
| agent RSS (max) | ${rss_mib} MiB |
| agent threads (max) | ${threads_max} |
| agent CPU | ${cpu_per_min} s per minute |
| agent API requests | ${req_per_min} per minute |
| apiserver writes to Applications/ConfigMaps/Events | ${writes_per_min} per minute |
TABLE
