#!/usr/bin/env bash
# Gantry's pull agent and Flux side by side, one after the other in one run, each on a fresh
# control plane (kube-apiserver + etcd + kwok with 1 node, test/env) and a fresh Git server (smart
# HTTP, basic auth) holding the same repository: APPS directories apps/aN of OBJECTS ConfigMaps.
# Bench only: nothing here runs in CI.
#
# For each entry of RUNS, with the controllers running out of cluster with the cluster's kubeconfig:
#  0. the namespaces a0..aN-1 and `bench` are created (for both tools: Flux does not create a
#     target namespace), then the apiserver's request rate on the tools' resources is read for
#     30 s as the background (kwok and the controller manager);
#  1. the controllers are started and left idle until healthy; then the applications are created:
#     Gantry: APPS Applications (automated sync, prune, self-heal); Flux: a GitRepository (interval
#     1m, basic auth Secret) and APPS Kustomizations (interval 10m, prune, targetNamespace). Time
#     from `kubectl apply` of them to every one in sync at HEAD (Application Synced at the commit;
#     Kustomization lastAppliedRevision at the commit, Ready not False), polled every 2 s, and the
#     CPU the tool's processes used meanwhile (utime+stime from /proc);
#  2. once their work queues have been empty for 5 s, STEADY_SECONDS with nothing changing: each
#     process's RSS (max of 1 s samples of VmRSS) and CPU per minute from /proc, and the apiserver's
#     apiserver_request_total by verb over the tools' resources per minute (writes: create, update,
#     patch, apply, delete);
#     If they are not all in sync after SYNC_TIMEOUT seconds, how many are is recorded and the tool
#     is stopped (nothing more is measured of it);
#  3. (NOOP=1) a no-op pass: every application asked to reconcile once more with nothing changed,
#     each tool's way (Gantry: the gantry.dev/refresh-requested annotation, as `gantry app refresh`;
#     Flux: reconcile.fluxcd.io/requestedAt on every Kustomization, as `flux reconcile`, which is what
#     its interval does; Argo CD: argocd.argoproj.io/refresh=normal, as `argocd app get --refresh`,
#     what its 120 s resync does): seconds until every application acknowledged it, the tool's CPU
#     and the apiserver's requests meanwhile (at most NOOP_TIMEOUT seconds);
#  4. WEBHOOKS commits through each tool's webhook path (a signed GitHub push event: Gantry's agent
#     POST /webhook; Flux: notification-controller, started for this, and a `github` Receiver on the
#     GitRepository; Argo CD: argocd-server, started for this, POST /api/webhook), then POLLS commits
#     found by the tool's polling at its documented default (Gantry: --interval 60s ±10%; Flux: the
#     GitRepository's 1m; Argo CD: 120 s + up to 60 s jitter). Each changes cm-0 of one application:
#     seconds from `git push` returning to a watch seeing the new data (at most POLL_TIMEOUT seconds
#     for a polled commit), and to every application at the commit (at most ALL_TIMEOUT).
#
#   bench/peers/run.sh                               (APPS=1000 OBJECTS=10 RUNS="gantry flux flux-tuned")
#   GANTRY_BIN=path/gantry bench/peers/run.sh        that binary (otherwise build/default's, built)
#   RUNS="gantry flux" POLLS=5 STEADY_SECONDS=120 APPS=100 OBJECTS=100 ...
#   RUNS="gantry flux argocd" APPS=20 WEBHOOKS=20 POLLS=0 NOOP=0   the webhook paths
#   FLUX_TUNED_ARGS="--concurrent=20 ..."            kustomize-controller flags of flux-tuned
#   KEEP=1                                           keep the work directory (logs, one JSON per run)
#   PRIORITY=-5                                      the whole run at nice -5, its autogroup too (below)
#   kill -USR1 <pid of peers.py measure>            end the current wait for all in sync (or the
#                                                    no-op pass) now, as if its timeout had passed
#   kill -TERM <pid of peers.py measure>            stop that tool where it stands (JSON written)
# The peers come from bench/peers/build.sh (built on first use, cached).
set -euo pipefail
# PRIORITY=N (e.g. -5, as root): every process of the run (servers and tools alike) at nice N, in a
# session of its own whose autogroup has nice N too. With the kernel's autogroups
# (/proc/sys/kernel/sched_autogroup_enabled), a process's nice only ranks it within its session, and
# each session's group gets an equal share of the CPUs: `nice -n -5 run.sh` alone does not put the
# benchmark ahead of compiles run from other sessions. The servers' autogroups (test/env starts
# each in a session of its own) get nice N as well.
if [[ -n ${PRIORITY:-} ]]; then
  [[ $PRIORITY =~ ^-?[0-9]+$ ]] || { echo "run.sh: PRIORITY=$PRIORITY: expected a nice value (-20..19)" >&2; exit 2; }
  [[ -n ${_PEERS_SESSION:-} ]] || _PEERS_SESSION=1 exec setsid -w nice -n "$PRIORITY" "$0" "$@"
  if [[ -e /proc/self/autogroup ]]; then echo "$PRIORITY" > /proc/$$/autogroup; fi
fi
cd "$(dirname "$0")/../.."
APPS=${APPS:-1000} OBJECTS=${OBJECTS:-10} POLLS=${POLLS:-3} STEADY_SECONDS=${STEADY_SECONDS:-120}
RUNS=${RUNS:-gantry flux flux-tuned}
FLUX_TUNED_ARGS=${FLUX_TUNED_ARGS:---concurrent=20 --kube-api-qps=500 --kube-api-burst=1000}
ARGOCD_POLLS=${ARGOCD_POLLS:-$POLLS} ALL_TIMEOUT=${ALL_TIMEOUT:-900} WEBHOOKS=${WEBHOOKS:-0} NOOP=${NOOP:-1}
SYNC_TIMEOUT=${SYNC_TIMEOUT:-2400} NOOP_TIMEOUT=${NOOP_TIMEOUT:-900} POLL_TIMEOUT=${POLL_TIMEOUT:-900}
for v in APPS OBJECTS STEADY_SECONDS ALL_TIMEOUT SYNC_TIMEOUT NOOP_TIMEOUT POLL_TIMEOUT; do
  [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || { echo "run.sh: $v=${!v}: expected a positive integer" >&2; exit 2; }
done
for v in POLLS ARGOCD_POLLS WEBHOOKS; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "run.sh: $v=${!v}: expected a whole number" >&2; exit 2; }
done
[[ $NOOP == 0 || $NOOP == 1 ]] || { echo "run.sh: NOOP=$NOOP: expected 0 or 1" >&2; exit 2; }
for r in $RUNS; do
  [[ $r == gantry || $r == flux || $r == flux-tuned || $r == argocd ]] ||
    { echo "run.sh: RUNS: unknown run '$r' (known: gantry flux flux-tuned argocd)" >&2; exit 2; }
done

if [[ -n ${GANTRY_BIN:-} ]]; then
  gantry=$(realpath "$GANTRY_BIN")
else
  cmake --preset default >/dev/null && cmake --build build/default --target gantry >/dev/null
  gantry=$(realpath build/default/src/exe/gantry)
fi
[[ -x $gantry ]] || { echo "run.sh: $gantry: not an executable file" >&2; exit 2; }

source test/env/lib.sh
source bench/agent/servers.sh
work=$(mktemp -d /tmp/gantry-bench-peers.XXXXXX)
cleanup() {
  stop_servers "$work"
  if [[ -n ${KEEP:-} ]]; then
    rm -rf "$work/cluster" "$work/git" "$work"/cache-* "$work"/storage-* "$work/clone" "$work"/argocd-{tls,ssh}
    echo "run.sh: kept $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
say() { echo "[$(date +%T)] $*" >&2; }

# argocd_setup KUBECTL...: what Argo CD's install manifests would have made: its settings (argocd-cm,
# argocd-secret; the settings informers select app.kubernetes.io/part-of=argocd), the default
# AppProject, and the repository's credentials.
argocd_setup() {
  "$@" apply --server-side -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-cm, namespace: argocd, labels: {app.kubernetes.io/part-of: argocd}}
---
apiVersion: v1
kind: Secret
metadata: {name: argocd-secret, namespace: argocd, labels: {app.kubernetes.io/part-of: argocd}}
stringData: {server.secretkey: "$(openssl rand -hex 16)", webhook.github.secret: bench}
---
apiVersion: v1
kind: Secret
metadata:
  name: repo-config
  namespace: argocd
  labels: {app.kubernetes.io/part-of: argocd, argocd.argoproj.io/secret-type: repository}
stringData: {type: git, url: "$repo", username: "$GIT_USER", password: "$GIT_PASSWORD"}
---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: default, namespace: argocd}
spec:
  sourceRepos: ["*"]
  destinations: [{server: "*", namespace: "*"}]
  clusterResourceWhitelist: [{group: "*", kind: "*"}]
EOF
}

run_one() {  # run_one LABEL
  local label=$1 tool=${1%-tuned} args= polls=$POLLS
  [[ $label == flux-tuned ]] && args=$FLUX_TUNED_ARGS
  [[ $label == argocd ]] && polls=$ARGOCD_POLLS
  # The peers are built (or found in the cache) just before their first run.
  [[ $tool == flux && -z ${SOURCE_CONTROLLER:-} ]] && eval "$(bench/peers/build.sh flux)"
  [[ $tool == flux && $WEBHOOKS -gt 0 && -z ${NOTIFICATION_CONTROLLER:-} ]] &&
    eval "$(bench/peers/build.sh flux-notification)"
  [[ $tool == argocd && -z ${ARGOCD:-} ]] && eval "$(bench/peers/build.sh argocd)"
  say "$label: starting a cluster and a Git server"
  rm -rf "$work/cluster" "$work/git" "$work/clone" "$work"/argocd-{tls,ssh}
  start_servers "$work"
  # test/env starts each server in a session of its own (its own autogroup): PRIORITY goes there too.
  if [[ -n ${PRIORITY:-} && -e /proc/self/autogroup ]]; then
    for f in "$work"/cluster/pids/*.pid "$work"/git/pids/*.pid; do echo "$PRIORITY" > "/proc/$(cat "$f")/autogroup"; done
  fi
  local auth_url="http://$GIT_USER:$GIT_PASSWORD@$host/config.git" clone=$work/clone
  push_config "$clone" "$auth_url" "$APPS" "$OBJECTS"

  local k=(kubectl --kubeconfig "$KUBECONFIG")
  case $tool in
    gantry) "$gantry" install --print | awk '/^---/{n++} n==1' > "$work/crds.yaml" ;;
    flux) for f in $FLUX_CRDS ${NOTIFICATION_CRDS:-}; do echo ---; cat "$f"; done > "$work/crds.yaml" ;;
    argocd) for f in $ARGOCD_CRDS; do echo ---; cat "$f"; done > "$work/crds.yaml" ;;
  esac
  "${k[@]}" apply --server-side -f "$work/crds.yaml" >/dev/null
  { echo "apiVersion: v1"; echo "kind: List"; echo "items:"
    for ((i = 0; i < APPS; i++)); do echo "- {apiVersion: v1, kind: Namespace, metadata: {name: a$i}}"; done
    echo "- {apiVersion: v1, kind: Namespace, metadata: {name: bench}}"
    echo "- {apiVersion: v1, kind: Namespace, metadata: {name: argocd}}"; } > "$work/namespaces.yaml"
  "${k[@]}" apply --server-side -f "$work/namespaces.yaml" >/dev/null
  [[ $tool == flux ]] && "${k[@]}" -n bench create secret generic git-auth \
    --from-literal=username="$GIT_USER" --from-literal=password="$GIT_PASSWORD" >/dev/null
  "${k[@]}" wait --for condition=Established crd --all >/dev/null
  [[ $tool == argocd ]] && argocd_setup "${k[@]}"
  python3 bench/peers/peers.py apps --tool "$tool" "$repo" "$APPS" > "$work/apps.yaml"

  say "$label: $APPS applications × $OBJECTS ConfigMaps"
  # A tool that fails (its JSON then holds what was measured until then) does not stop the others.
  python3 bench/peers/peers.py measure --tool "$tool" --label "$label" --work "$work" --clone "$clone" \
    --kube-server "$KUBE_SERVER" --pki "$PKI" --kubeconfig "$KUBECONFIG" --auth-url "$auth_url" \
    --apps-file "$work/apps.yaml" --gantry "$gantry" --source-controller "${SOURCE_CONTROLLER:-}" \
    --kustomize-controller "${KUSTOMIZE_CONTROLLER:-}" --notification-controller "${NOTIFICATION_CONTROLLER:-}" \
    --argocd "${ARGOCD:-}" --git-creds "$host=$GIT_USER:$GIT_PASSWORD" --repo-url "$repo" \
    --apps "$APPS" --objects "$OBJECTS" --ports "$(for _ in {1..9}; do free_port; done | paste -sd,)" \
    --args "$args" --polls "$polls" --steady-seconds "$STEADY_SECONDS" --all-timeout "$ALL_TIMEOUT" \
    --webhooks "$WEBHOOKS" --noop "$NOOP" --sync-timeout "$SYNC_TIMEOUT" --noop-timeout "$NOOP_TIMEOUT" \
    --poll-timeout "$POLL_TIMEOUT" || say "$label: failed (see above); going on with the next run"
  stop_servers "$work"
}

say "priority: nice $(nice)$([[ -e /proc/self/autogroup ]] && echo ", $(cat /proc/$$/autogroup)")"
say "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1); load $(cut -d' ' -f1-3 /proc/loadavg)"
jsons=()
for r in $RUNS; do run_one "$r"; jsons+=("$work/$r.json"); done
python3 bench/peers/peers.py table "${jsons[@]}"
