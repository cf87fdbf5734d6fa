#!/usr/bin/env bash
# The pull agent at scale, one binary against another in the same run (issue 13's measured goals).
# For each binary, on a fresh control plane (kube-apiserver + etcd + kwok, 1 node) and a fresh Git
# server (smart HTTP), with the same repository: APPS Applications × OBJECTS ConfigMaps, all in ONE
# repository (apps/aN/), automated sync with prune and self-heal, --workers 4. Then:
#  1. cold start: from starting `gantry agent` to every Application Synced at HEAD;
#     agent RSS: VmHWM (peak) and VmRSS (idle, after the pushes of step 2) from /proc/PID/status.
#  2. PUSHES pushes, each changing cm-0 of ONE application (a different one each time), each
#     announced by a signed push webhook; latency from the webhook POST to the new data seen by a
#     watch on that ConfigMap (the apiserver's watch, not polling). Each push starts from an idle
#     agent: the next waits until its reconcile/render counters have been still for 3 s. Per push
#     also: reconciles (Δ gantry_agent_reconciles_total), renders (Δ gantry_agent_renders_total if
#     the binary exports it, else the log lines "agent: NS/NAME synced|reconciled", which count
#     reconciles, not the extra renders of the before binary), and when the last one ended.
#  3. PUSHES more pushes with a CI build stand-in running alongside: a shell loop compiling a small
#     template- and regex-heavy C++ file with c++ -O2, one compile at a time (about one core busy;
#     CI_LOAD='command' replaces it).
#  4. no-op reconciles: the agent restarted with --interval NOOP_INTERVAL, nothing changing; over
#     NOOP_SECONDS, after the restart's reconciles and one more interval: the agent's API requests
#     per reconcile (Δ gantry_agent_api_requests / Δ reconciles), apiserver_request_total by verb on
#     applications/configmaps/namespaces/events per reconcile, and agent CPU (utime+stime of
#     /proc/PID/stat) per reconcile per 100 objects.
# Prints a table with one column per binary and the AFTER/BEFORE ratio (bench/agent/README.md).
#
#   BEFORE=path/gantry AFTER=path/gantry bench/agent/scale.sh     both, before first
#   GANTRY_BIN=path/gantry bench/agent/scale.sh                   one binary
#   APPS=1000 OBJECTS=10 PUSHES=20 NOOP_INTERVAL=10s NOOP_SECONDS=60   (defaults)
#   APPS=100 OBJECTS=100 ...                                      the other shape of the goals
#   KEEP=1   keep the work directory (agent logs, per-binary JSON) and say where it is
set -euo pipefail
cd "$(dirname "$0")/../.."
APPS=${APPS:-1000} OBJECTS=${OBJECTS:-10} PUSHES=${PUSHES:-20}
NOOP_INTERVAL=${NOOP_INTERVAL:-10s} NOOP_SECONDS=${NOOP_SECONDS:-60} WORKERS=${WORKERS:-4}

labels=() bins=()
if [[ -n ${BEFORE:-} || -n ${AFTER:-} ]]; then
  [[ -n ${BEFORE:-} ]] && { labels+=(before); bins+=("$BEFORE"); }
  [[ -n ${AFTER:-} ]] && { labels+=(after); bins+=("$AFTER"); }
elif [[ -n ${GANTRY_BIN:-} ]]; then
  labels+=(gantry); bins+=("$GANTRY_BIN")
else
  echo "usage: BEFORE=path AFTER=path $0   or   GANTRY_BIN=path $0   (env: APPS OBJECTS PUSHES ...)" >&2
  exit 2
fi
for i in "${!bins[@]}"; do
  [[ -x ${bins[$i]} ]] || { echo "scale.sh: ${labels[$i]} binary ${bins[$i]}: not an executable file" >&2; exit 2; }
  bins[$i]=$(realpath "${bins[$i]}")
done
for v in APPS OBJECTS PUSHES NOOP_SECONDS WORKERS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "scale.sh: $v=${!v}: expected a positive integer" >&2; exit 2; }
done
source test/env/lib.sh
source bench/agent/servers.sh

work=$(mktemp -d /tmp/gantry-bench-scale.XXXXXX)
cleanup() {
  test/env/kube-cluster.sh stop "$work/cluster" >/dev/null 2>&1 || true
  test/env/git-server.sh stop "$work/git" >/dev/null 2>&1 || true
  if [[ -n ${KEEP:-} ]]; then
    rm -rf "$work/cluster" "$work/git" "$work"/cache-* "$work"/clone
    echo "scale.sh: kept $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
say() { echo "[$(date +%T)] $*" >&2; }

run_one() {  # run_one LABEL BINARY
  local label=$1 gantry=$2
  say "$label: $gantry: starting a cluster and a Git server"
  rm -rf "$work/cluster" "$work/git" "$work/clone"
  test/env/kube-cluster.sh start "$work/cluster" --name "bench-$label" --nodes 1 > "$work/cluster.env"
  test/env/git-server.sh start "$work/git" > "$work/git.env"
  local KUBECONFIG KUBE_SERVER GIT_URL GIT_USER GIT_PASSWORD
  KUBECONFIG=$(sed -n 's/^KUBECONFIG=//p' "$work/cluster.env")
  KUBE_SERVER=$(sed -n 's/^KUBE_SERVER=//p' "$work/cluster.env")
  GIT_URL=$(sed -n 's/^GIT_URL=//p' "$work/git.env")
  GIT_USER=$(sed -n 's/^GIT_USER=//p' "$work/git.env")
  GIT_PASSWORD=$(sed -n 's/^GIT_PASSWORD=//p' "$work/git.env")
  local repo host auth_url
  repo=$(test/env/git-server.sh create "$work/git" config | sed -n 's/^REPO_URL=//p')
  host=${GIT_URL#http://}
  auth_url="http://$GIT_USER:$GIT_PASSWORD@$host/config.git"

  local clone=$work/clone
  push_config "$clone" "$auth_url" "$APPS" "$OBJECTS"

  local k=(kubectl --kubeconfig "$KUBECONFIG")
  "$gantry" install --print | awk '/^---/{n++} n==1' > "$work/crd.yaml"
  "${k[@]}" apply --server-side -f "$work/crd.yaml" >/dev/null
  "${k[@]}" create namespace bench >/dev/null
  "${k[@]}" wait --for condition=Established crd/applications.gantry.dev >/dev/null
  python3 bench/agent/scale.py apps "$repo" "$APPS" > "$work/apps.yaml"
  "${k[@]}" apply --server-side -f "$work/apps.yaml" >/dev/null

  say "$label: $APPS Applications × $OBJECTS ConfigMaps; starting the agent"
  python3 bench/agent/scale.py measure --label "$label" --gantry "$gantry" --work "$work" --clone "$clone" \
    --kube-server "$KUBE_SERVER" --pki "$work/cluster/pki" --kubeconfig "$KUBECONFIG" --repo-url "$repo" \
    --auth-url "$auth_url" --git-creds "$host=$GIT_USER:$GIT_PASSWORD" --apps "$APPS" --objects "$OBJECTS" \
    --pushes "$PUSHES" --port "$(free_port)" --metrics-port "$(free_port)" --workers "$WORKERS" \
    --noop-interval "$NOOP_INTERVAL" --noop-seconds "$NOOP_SECONDS" --ci-load "${CI_LOAD:-}" \
    --agent-args "${AGENT_ARGS:-}"

  test/env/kube-cluster.sh stop "$work/cluster" >/dev/null 2>&1 || true
  test/env/git-server.sh stop "$work/git" >/dev/null 2>&1 || true
}

for i in "${!bins[@]}"; do run_one "${labels[$i]}" "${bins[$i]}"; done
jsons=()
for l in "${labels[@]}"; do jsons+=("$work/$l.json"); done
python3 bench/agent/scale.py table "${jsons[@]}"
