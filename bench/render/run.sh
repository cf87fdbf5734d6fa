#!/usr/bin/env bash
# Side-by-side benchmark of rendering a plain-YAML directory of N manifests (default 5000, one per
# file, half ConfigMaps and half Deployments): `gantry render DIR` (in-process plain renderer, YAML
# out) against `kustomize build DIR` (v5.8.1 from test/env/build-tools.sh) and `kubectl kustomize
# DIR` (kubectl in PATH) on the same files, with a kustomization.yaml listing them (Gantry ignores
# it: it reads the directory as plain YAML, `--renderer`-free). Best of 3 wall times, and ratios.
# Also render::RenderPlain in process with ParseYaml's own scanner and with its libyaml path
# (bench/render/render_plain_bench.cc), the YAML parser's effect end to end.
#
#   bench/render/run.sh [N]        GANTRY_BUILD_DIR (default build/default) holds the gantry binary
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-5000}
build=${GANTRY_BUILD_DIR:-build/default}
[[ -x $build/src/exe/gantry ]] || cmake --build "$build" --target gantry >/dev/null
gantry=$build/src/exe/gantry
tools=$(test/env/build-tools.sh kustomize 2>/dev/null | tail -n 1)
kubectl=$(command -v kubectl || true)

work=$(mktemp -d /tmp/gantry-bench-render.XXXXXX)
trap 'rm -rf "$work"' EXIT
dir=$work/app
mkdir -p "$dir"
python3 - "$dir" "$N" <<'PY'
import sys
d, n = sys.argv[1], int(sys.argv[2])
names = []
for i in range(n):
    name = f"m{i:05d}.yaml"
    names.append(name)
    if i % 2 == 0:
        doc = f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: cm-{i}
  namespace: bench
  labels: {{app: bench, index: "{i}"}}
data:
  key: value-{i}
  config.yaml: |
    server:
      port: 8080
      replicas: 3
"""
    else:
        doc = f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i}
  namespace: bench
  labels: {{app: app-{i}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: app-{i}}}}}
  template:
    metadata: {{labels: {{app: app-{i}}}}}
    spec:
      containers:
      - name: app
        image: registry.example/app:1.{i}
        ports: [{{containerPort: 8080}}]
        resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}
"""
    open(f"{d}/{name}", "w").write(doc)
with open(f"{d}/kustomization.yaml", "w") as f:
    f.write("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n")
    f.writelines(f"- {n}\n" for n in names)
PY
# Gantry's plain renderer reads every .yaml file, so it gets a copy without the kustomization.
mkdir -p "$work/plain" && cp "$dir"/m*.yaml "$work/plain/"

# best NAME CMD... → best wall seconds of 3 runs (output to $work/NAME.out, checked for N objects)
best() {
  local name=$1 t b=
  shift
  for _ in 1 2 3; do
    /usr/bin/time -f '%e' -o "$work/$name.time" "$@" >"$work/$name.out" 2>"$work/$name.err" || {
      echo "bench: $name failed:" >&2; tail -5 "$work/$name.err" >&2; exit 1; }
    t=$(cat "$work/$name.time")
    if [[ -z $b ]] || awk -v a="$t" -v b="$b" 'BEGIN{exit !(a < b)}'; then b=$t; fi
  done
  local objects
  objects=$(grep -c '^kind:' "$work/$name.out")
  [[ $objects == "$N" ]] || { echo "bench: $name rendered $objects objects, want $N" >&2; exit 1; }
  echo "$b"
}

g=$(best gantry "$gantry" render "$work/plain")
# The parser's share, in process: the same plain render on ParseYaml's own scanner and on its
# libyaml path, best of 5 each.
[[ -x $build/bench/render_plain_bench ]] || cmake --build "$build" --target render_plain_bench >/dev/null
inproc=$("$build/bench/render_plain_bench" "$work/plain" 5)
read -r _ own own_n <<<"$(grep '^render-own' <<<"$inproc")"
read -r _ lib lib_n <<<"$(grep '^render-libyaml' <<<"$inproc")"
[[ $own_n == "$N" && $lib_n == "$N" ]] || { echo "bench: RenderPlain gave $own_n/$lib_n objects, want $N" >&2; exit 1; }
k=$(best kustomize "$tools/kustomize" build "$dir")
kc=
[[ -n $kubectl ]] && kc=$(best kubectl "$kubectl" kustomize "$dir")

echo "Render a plain-YAML directory of $N manifests ($(cat "$work"/plain/*.yaml | wc -c) bytes), best of 3 wall times"
printf '%-28s %10s %12s\n' tool "wall (s)" "vs gantry"
printf '%-28s %10s %12s\n' "gantry render" "$g" "1.00x"
printf '%-28s %10s %12s\n' "kustomize build (v5.8.1)" "$k" "$(awk -v a="$k" -v b="$g" 'BEGIN{printf "%.1fx", a / b}')"
printf '%-28s %10s %12s\n' "RenderPlain, own scanner" "$own" "in process"
printf '%-28s %10s %12s\n' "RenderPlain, libyaml path" "$lib" "$(awk -v a="$lib" -v b="$own" 'BEGIN{printf "%.2fx own", a / b}')"
if [[ -n $kc ]]; then
  printf '%-28s %10s %12s\n' "kubectl kustomize ($("$kubectl" version --client 2>/dev/null | sed -n 's/^Kustomize Version: //p'))" "$kc" \
    "$(awk -v a="$kc" -v b="$g" 'BEGIN{printf "%.1fx", a / b}')"
fi
