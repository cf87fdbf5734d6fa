#!/usr/bin/env bash
# Side-by-side benchmark of applying manifests to a real apiserver: Gantry's sync engine against
# `kubectl apply --server-side`, on the same cluster, same objects (in separate namespaces).
#
#   bench/apply/run.sh [N]     N objects (default 1000: N/2 Deployments + N/2 ConfigMaps)
#
# Three rounds per tool: create, update one field on every object, no-op re-apply. Reports wall
# time, client CPU (user+sys of the process), requests per object as each client counts them (Gantry's
# own counter; kubectl's -v=6 request log) and writes seen by the apiserver (apiserver_request_total,
# verbs APPLY/PATCH/CREATE/UPDATE on deployments and configmaps), plus the ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000}
half=$((N / 2))
source test/env/lib.sh

build=${GANTRY_BUILD_DIR:-build/default}
cmake --preset default >/dev/null
cmake --build "$build" --target gantry >/dev/null
gantry=$build/src/exe/gantry

work=$(mktemp -d /tmp/gantry-bench-apply.XXXXXX)
trap 'test/env/kube-cluster.sh stop "$work/cluster" >/dev/null 2>&1; rm -rf "$work"' EXIT
test/env/kube-cluster.sh start "$work/cluster" --name bench --nodes 1 > "$work/env"
export KUBECONFIG=$work/cluster/kubeconfig
PKI=$work/cluster/pki
SERVER=$(sed -n 's/^KUBE_SERVER=//p' "$work/env")

# generate DIR NAMESPACE VALUE
generate() {
  local dir=$1 ns=$2 v=$3 i
  mkdir -p "$dir"
  {
    for ((i = 0; i < half; i++)); do
      cat <<YAML
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cm-$i, namespace: $ns, labels: {bench: "true"}}
data: {value: "$v", index: "$i"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app-$i, namespace: $ns, labels: {bench: "true"}}
spec:
  replicas: 0
  selector: {matchLabels: {app: app-$i}}
  template:
    metadata: {labels: {app: app-$i}, annotations: {value: "$v"}}
    spec:
      containers:
      - name: app
        image: registry.k8s.io/pause:3.10
        resources: {requests: {cpu: 10m, memory: 16Mi}}
YAML
    done
  } > "$dir/objects.yaml"
}

writes() {
  curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$SERVER/metrics" |
    awk '/^apiserver_request_total\{/ && /resource="(deployments|configmaps)"/ && /subresource=""/ &&
         /verb="(APPLY|PATCH|CREATE|POST|UPDATE|PUT)"/ { sum += $NF } END { printf "%d\n", sum }'
}

# measure NAME CMD... → "wall_s cpu_s" on stdout; the command's stderr in $work/NAME.err
measure() {
  local name=$1; shift
  /usr/bin/time -f '%e %U %S' -o "$work/$name.time" "$@" >"$work/$name.out" 2>"$work/$name.err" || {
    echo "bench: $name failed:" >&2; tail -5 "$work/$name.err" >&2; exit 1; }
  awk '{printf "%.3f %.3f\n", $1, $2 + $3}' "$work/$name.time"
}

for ns in bench-gantry bench-kubectl; do
  curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" -X POST -H 'Content-Type: application/json' \
    --data "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"$ns\"}}" "$SERVER/api/v1/namespaces" >/dev/null
done
kubectl_dir=$work/kubectl-home
mkdir -p "$kubectl_dir"

declare -A wall cpu reqs wr
for round in create update noop; do
  value=$([[ $round == create ]] && echo one || echo two)
  generate "$work/g-$round" bench-gantry "$value"
  generate "$work/k-$round" bench-kubectl "$value"

  w0=$(writes)
  read -r wall[gantry-$round] cpu[gantry-$round] < <(measure "gantry-$round" \
    "$gantry" sync "$work/g-$round" --app bench -n bench-gantry)
  w1=$(writes)
  wr[gantry-$round]=$((w1 - w0))
  reqs[gantry-$round]=$(grep -o 'requests=[0-9]*' "$work/gantry-$round.out" | tail -1 | cut -d= -f2 || true)

  w0=$(writes)
  read -r wall[kubectl-$round] cpu[kubectl-$round] < <(measure "kubectl-$round" \
    env HOME="$kubectl_dir" kubectl apply --server-side --field-manager=bench -f "$work/k-$round/objects.yaml" -v=6)
  w1=$(writes)
  wr[kubectl-$round]=$((w1 - w0))
  reqs[kubectl-$round]=$(grep -cE '"Response" verb=|(GET|PATCH|POST|PUT) https://' "$work/kubectl-$round.err" || true)
done

printf '\nApply %d objects (%d Deployments + %d ConfigMaps), 1-node kwok cluster, %s\n\n' "$N" "$half" "$half" "$(date -u +%F)"
printf '| round | tool | wall s | client CPU s | requests/object | apiserver writes | speed-up (wall) |\n|---|---|---|---|---|---|---|\n'
for round in create update noop; do
  for tool in gantry kubectl; do
    r=${reqs[$tool-$round]:-0}
    speed=$(awk -v k="${wall[kubectl-$round]}" -v g="${wall[gantry-$round]}" -v t=$tool 'BEGIN { if (t == "gantry") printf "%.1fx", k / g; else print "1.0x" }')
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$round" "$tool" "${wall[$tool-$round]}" "${cpu[$tool-$round]}" \
      "$(awk -v r="$r" -v n="$N" 'BEGIN { printf "%.3f", r / n }')" "${wr[$tool-$round]}" "$speed"
  done
done
