#!/usr/bin/env bash
# Push deploy of a 200-object application to 3 clusters (dev → staging → prod), side by side:
#   gantry deploy APP --dir ... (render, server-side apply, wait for health, ledger writes)
#   a shell loop of `kubectl apply --server-side` per cluster (no health wait), and the same loop
#   followed by `kubectl wait --for=condition=Available deployment --all` (comparable to Gantry's gate).
# Three fake nodes per cluster: 150 Pods do not fit the 110 of one.
# Each is run twice: creating everything, then again with nothing to change.
# Wall time and CPU (user+sys of the tool and its children) from /usr/bin/time; ratios peer/gantry.
#
#   bench/deploy/run.sh [GANTRY_BINARY]     (default: $GANTRY or build/default/src/exe/gantry)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
GANTRY=${1:-${GANTRY:-$root/build/default/src/exe/gantry}}
KUBECTL=${KUBECTL:-/usr/bin/kubectl}
[[ -x $GANTRY ]] || { echo "no gantry binary at $GANTRY" >&2; exit 2; }
work=$(mktemp -d); chmod 700 "$work"
envs=(dev staging prod)
cleanup() { for e in "${envs[@]}"; do "$root/test/env/kube-cluster.sh" stop "$work/$e" >/dev/null 2>&1 || true; done; rm -rf "$work"; }
trap cleanup EXIT
trap "exit 130" INT TERM

echo "starting 3 clusters..." >&2
for e in "${envs[@]}"; do "$root/test/env/kube-cluster.sh" start "$work/$e" --name "$e" --nodes 3 > "$work/$e.env" & done
wait
for e in "${envs[@]}"; do grep -q READY=1 "$work/$e.env" || { echo "cluster $e did not start" >&2; exit 1; }; done
kc() { sed -n 's/^KUBECONFIG=//p' "$work/$1.env"; }

# The application: 100 ConfigMaps, 50 Deployments, 50 Services = 200 objects.
app=$work/app
mkdir -p "$app/base"
for i in $(seq -w 1 100); do
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%s}\ndata: {key: "value-%s", other: "x"}\n---\n' "$i" "$i"
done > "$app/base/configmaps.yaml"
for i in $(seq -w 1 50); do
  printf 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web-%s}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: web-%s}}\n  template:\n    metadata: {labels: {app: web-%s}}\n    spec: {containers: [{name: web, image: "nginx:1.27", ports: [{containerPort: 80}]}]}\n---\n' "$i" "$i" "$i"
  printf 'apiVersion: v1\nkind: Service\nmetadata: {name: web-%s}\nspec: {selector: {app: web-%s}, ports: [{port: 80, targetPort: 80}]}\n---\n' "$i" "$i"
done > "$app/base/workloads.yaml"
for e in "${envs[@]}"; do mkdir -p "$app/envs/$e"; cp "$app/base/"*.yaml "$app/envs/$e/"; done
for e in "${envs[@]}"; do
  for ns in bench-gantry bench-kubectl bench-kubectl-nowait; do "$KUBECTL" --kubeconfig "$(kc "$e")" create namespace "$ns" >/dev/null; done
done

state=$work/state
export GANTRY_HOME=$state
for e in "${envs[@]}"; do "$GANTRY" cluster add "$e" --kubeconfig "$(kc "$e")" --env "$e" --reference >/dev/null; done
"$GANTRY" env add dev >/dev/null
"$GANTRY" env add staging --after dev >/dev/null
"$GANTRY" env add prod --after staging >/dev/null

# measure NAME CMD...: appends "NAME wall cpu" to results.
results=$work/results
measure() {
  local name=$1; shift
  /usr/bin/time -f '%e %U %S' -o "$work/time" "$@" > "$work/$name.log" 2>&1 || { echo "$name failed:" >&2; tail -20 "$work/$name.log" >&2; exit 1; }
  read -r wall user sys < "$work/time"
  echo "$name $wall $(echo "$user + $sys" | bc)" >> "$results"
}
kubectl_loop() {  # NAMESPACE
  for e in "${envs[@]}"; do "$KUBECTL" --kubeconfig "$(kc "$e")" apply --server-side -n "$1" -f "$app/envs/$e" >/dev/null; done
}
kubectl_loop_wait() {
  for e in "${envs[@]}"; do
    "$KUBECTL" --kubeconfig "$(kc "$e")" apply --server-side -n bench-kubectl -f "$app/envs/$e" >/dev/null
    "$KUBECTL" --kubeconfig "$(kc "$e")" wait -n bench-kubectl --for=condition=Available deployment --all --timeout=300s >/dev/null
  done
}
export -f kubectl_loop kubectl_loop_wait kc; export KUBECTL app work
envs_list="${envs[*]}"; export envs_list

measure gantry-create "$GANTRY" deploy bench --dir "$app" --revision r1 --namespace bench-gantry
measure kubectl-create bash -c 'envs=($envs_list); kubectl_loop bench-kubectl-nowait'
measure kubectl-wait-create bash -c 'envs=($envs_list); kubectl_loop_wait'
measure gantry-nochange "$GANTRY" deploy bench --dir "$app" --revision r1 --namespace bench-gantry
measure kubectl-nochange bash -c 'envs=($envs_list); kubectl_loop bench-kubectl'

get() { awk -v n="$1" -v f="$2" '$1 == n {print $f}' "$results"; }
ratio() { echo "scale=2; $1 / $2" | bc; }
printf '\n200 objects × 3 clusters (dev → staging → prod), %s\n\n' "$(date -u +%F)"
printf '%-34s %9s %9s   %-28s %9s %9s   %7s %7s\n' "gantry deploy" "wall s" "cpu s" "kubectl loop" "wall s" "cpu s" "wall×" "cpu×"
row() {
  local g=$1 k=$2
  printf '%-34s %9s %9s   %-28s %9s %9s   %7s %7s\n' "$g" "$(get "$g" 2)" "$(get "$g" 3)" "$k" "$(get "$k" 2)" "$(get "$k" 3)" \
    "$(ratio "$(get "$k" 2)" "$(get "$g" 2)")" "$(ratio "$(get "$k" 3)" "$(get "$g" 3)")"
}
row gantry-create kubectl-create
row gantry-create kubectl-wait-create
row gantry-nochange kubectl-nochange
printf '\nratios are kubectl / gantry (> 1: gantry is faster or cheaper). gantry waits for health in\n'
printf 'every environment and writes the ledger; plain kubectl apply does neither.\n'
