#!/usr/bin/env bash
# Side-by-side benchmark of rewriting one image tag in N manifest files (default 10000, one
# Deployment per file, with comments, single/double/plain quoting, a sidecar and a look-alike image
# that must stay): `gantry update --dir` (local mode) against mikefarah yq v4.54.3 (`yq -i`, built
# from the Go module proxy into ~/.cache/gantry/tools/yq-v4.54.3, build timed separately and not
# counted) and `sed -i` with an exact expression as the floor. Each run works on a fresh copy of the
# files (not timed); best of RUNS (default 3) wall times, and ratios. Then checks that gantry's
# output is byte-identical to sed's (zero bytes changed elsewhere) and counts the bytes yq changed
# beyond the tag.
#
#   bench/update/run.sh [N]     GANTRY_BUILD_DIR (default build/default) holds the gantry binary
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-10000}
RUNS=${RUNS:-3}
build=${GANTRY_BUILD_DIR:-build/default}
[[ -x $build/src/exe/gantry ]] || cmake --build "$build" --target gantry >/dev/null
gantry=$build/src/exe/gantry

yq_dir=$HOME/.cache/gantry/tools/yq-v4.54.3
yq=$yq_dir/yq
if [[ ! -x $yq ]]; then
  start=$(date +%s.%N)
  GOBIN=$yq_dir go install github.com/mikefarah/yq/v4@v4.54.3
  echo "built yq v4.54.3 in $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e - s}') s (not counted)"
fi
"$yq" --version | grep -q 'v4.54.3' || { echo "bench: $yq is not yq v4.54.3" >&2; exit 1; }

work=$(mktemp -d /tmp/gantry-bench-update.XXXXXX)
trap 'rm -rf "$work"' EXIT
src=$work/src
mkdir -p "$src"
python3 - "$src" "$N" <<'PY'
import sys
d, n = sys.argv[1], int(sys.argv[2])
quotes = ['{}', '"{}"', "'{}'"]
for i in range(n):
    image = quotes[i % 3].format("registry.local:5000/team/web:1.0.0")
    sub = f"{d}/team{i % 50:02d}"
    if i < 50:
        import os
        os.makedirs(sub, exist_ok=True)
    doc = f"""# Deployment {i}: the web tier of service {i}
# (generated; comments and quoting must survive a tag bump)
apiVersion: apps/v1
kind: Deployment
metadata:
  name: "web-{i}"
  namespace: 'bench'
  labels: {{app: web-{i}, tier: "front"}}
  annotations:
    note: "image registry.local:5000/team/web-canary:1.0.0 is the canary"  # not the image
spec:
  replicas: {1 + i % 3}   # scaled by HPA
  selector:
    matchLabels: {{app: web-{i}}}
  template:
    metadata:
      labels: {{app: web-{i}}}
    spec:
      containers:
        - name: web
          image: {image}   # bumped by CI
          args: ["--port=8080", '--name=web-{i}']
          ports:
            - containerPort: 8080   # http
          env:
            - name: MODE
              value: "production"
        - name: sidecar
          image: registry.local:5000/team/sidecar:1.0.0 # stays
          resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}
"""
    open(f"{sub}/web-{i:05d}.yaml", "w").write(doc)
PY
bytes=$(cat "$src"/*/*.yaml | wc -c)
old='registry.local:5000/team/web:1.0.0'
new='registry.local:5000/team/web:1.0.1'
yq_expr='(.spec.template.spec.containers[] | select(.image == "registry.local:5000/team/web:1.0.0") | .image) = "registry.local:5000/team/web:1.0.1"'

run_gantry() { "$gantry" update --dir "$1" --image "registry.local:5000/team/web=$new" >/dev/null; }
# yq -i rewrites one file per invocation; xargs hands it the files in batches of one.
run_yq() { find "$1" -name '*.yaml' -print0 | xargs -0 -n 1 "$yq" -i "$yq_expr"; }
run_sed() { find "$1" -name '*.yaml' -print0 | xargs -0 sed -i "s#${old//./\\.}#$new#"; }

# best NAME → best wall seconds of $RUNS runs of run_NAME on a fresh copy (left in $work/NAME)
best() {
  local name=$1 t b=
  for _ in $(seq "$RUNS"); do
    rm -rf "${work:?}/$name" && cp -r "$src" "$work/$name" && sync
    local TIMEFORMAT=%R
    { time "run_$name" "$work/$name" 2>>"$work/$name.err"; } 2>"$work/$name.time" \
      || { echo "bench: $name failed:" >&2; tail -5 "$work/$name.err" >&2; exit 1; }
    t=$(cat "$work/$name.time")
    if [[ -z $b ]] || awk -v a="$t" -v b="$b" 'BEGIN{exit !(a < b)}'; then b=$t; fi
  done
  echo "$b"
}

g=$(best gantry)
s=$(best sed)
y=$(best yq)
# A second gantry run over its own output: nothing to change, nothing written.
noop_start=$(date +%s.%N)
"$gantry" update --dir "$work/gantry" --image "registry.local:5000/team/web=$new" >"$work/noop.out" 2>&1
noop=$(awk -v s="$noop_start" -v e="$(date +%s.%N)" 'BEGIN{printf "%.2f", e - s}')
grep -q '^made 0 changes in 0 files' "$work/noop.out" || { echo "bench: the second gantry run changed files" >&2; exit 1; }

# Correctness: gantry = sed byte for byte; the tag changed in every file; what yq changed elsewhere.
changed=$(grep -rl "$new" "$work/gantry" | wc -l)
[[ $changed == "$N" ]] || { echo "bench: gantry changed $changed files, want $N" >&2; exit 1; }
if diff -r "$work/gantry" "$work/sed" >/dev/null; then same="identical"; else same="DIFFERENT"; fi
yq_extra=$(python3 - "$work/sed" "$work/yq" <<'PY'
import difflib, os, sys
a_root, b_root = sys.argv[1], sys.argv[2]
files = bytes_ = 0
for dirpath, _, names in os.walk(a_root):
    for name in names:
        a = open(os.path.join(dirpath, name), "rb").read()
        b = open(os.path.join(b_root, os.path.relpath(dirpath, a_root), name), "rb").read()
        if a == b:
            continue
        files += 1
        m = difflib.SequenceMatcher(None, a, b, autojunk=False)
        bytes_ += sum(max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in m.get_opcodes() if op != "equal")
print(files, bytes_)
PY
)

echo "Rewrite one image tag in $N manifest files ($bytes bytes), best of $RUNS wall times"
printf '%-32s %10s %12s\n' tool "wall (s)" "vs gantry"
printf '%-32s %10s %12s\n' "gantry update --dir" "$g" "1.00x"
printf '%-32s %10s %12s\n' "yq -i (mikefarah v4.54.3)" "$y" "$(awk -v a="$y" -v b="$g" 'BEGIN{printf "%.1fx", a / b}')"
printf '%-32s %10s %12s\n' "sed -i (floor)" "$s" "$(awk -v a="$s" -v b="$g" 'BEGIN{printf "%.2fx", a / b}')"
printf '%-32s %10s\n' "gantry update, no-op re-run" "$noop"
echo "gantry output vs sed output: $same"
read -r yf yb <<<"$yq_extra"
echo "yq output vs sed output: $yf files differ, $yb bytes changed beyond the tag"
