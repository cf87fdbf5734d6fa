#!/usr/bin/env bash
# Per-step overhead of the process executor, side by side with its floor.
#
#   bench/ci/run.sh [GANTRY_BINARY] [REPEATS]
#
# Runs a 20-step pipeline of `true` through `gantry ci run` in two shapes (20 independent steps,
# and a chain where each step needs the previous one), with and without the bubblewrap sandbox, and
# compares the time per step with `for i in $(seq 20); do bash -c true; done` (the floor: one
# process per step) and with the same loop through bwrap (the sandbox's own cost). Reports the
# best of REPEATS runs (default 5), in ms per step, and the ratio to the floor.
set -euo pipefail
GANTRY=${1:-${GANTRY_BINARY:-$(dirname "$0")/../../build/default/src/exe/gantry}}
REPEATS=${2:-5}
N=20
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/flat/.gantry" "$work/chain/.gantry"
{
  echo "name: flat"; echo "steps:"
  for i in $(seq $N); do echo "  s$i: {run: [\"true\"]}"; done
} > "$work/flat/.gantry/pipeline.yaml"
{
  echo "name: chain"; echo "steps:"
  echo "  s1: {run: [\"true\"]}"
  for i in $(seq 2 $N); do echo "  s$i: {run: [\"true\"], needs: [s$((i-1))]}"; done
} > "$work/chain/.gantry/pipeline.yaml"

now_ms() { date +%s%N | awk '{printf "%.3f", $1/1e6}'; }
best() {  # best wall time in ms of REPEATS runs of "$@"
  local b=""
  for _ in $(seq "$REPEATS"); do
    local t0 t1 d
    t0=$(now_ms); "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; t1=$(now_ms)
    d=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
    if [ -z "$b" ] || awk -v d="$d" -v b="$b" 'BEGIN{exit !(d<b)}'; then b=$d; fi
  done
  echo "$b"
}
floor_loop() { for _ in $(seq $N); do bash -c true; done; }
bwrap_loop() {
  for _ in $(seq $N); do
    bwrap --unshare-all --die-with-parent --new-session --ro-bind /usr /usr --symlink usr/bin /bin \
      --symlink usr/lib /lib --symlink usr/lib64 /lib64 --proc /proc --dev /dev --tmpfs /tmp -- bash -c true
  done
}

floor=$(best floor_loop)
rows=()
rows+=("bash -c true loop (floor)|$floor")
if command -v bwrap >/dev/null && bwrap_loop >/dev/null 2>&1; then rows+=("bwrap bash -c true loop|$(best bwrap_loop)"); fi
rows+=("gantry ci run, 20 independent, no sandbox|$(best "$GANTRY" ci run "$work/flat" --no-sandbox --parallel 1 -q)")
rows+=("gantry ci run, 20 chained, no sandbox|$(best "$GANTRY" ci run "$work/chain" --no-sandbox -q)")
rows+=("gantry ci run, 20 independent, bwrap|$(best "$GANTRY" ci run "$work/flat" --parallel 1 -q)")
rows+=("gantry ci run, 20 chained, bwrap|$(best "$GANTRY" ci run "$work/chain" -q)")
rows+=("gantry ci run, 20 independent, bwrap, 4 parallel|$(best "$GANTRY" ci run "$work/flat" --parallel 4 -q)")

printf "%-50s %12s %10s %10s\n" "workload ($N steps, best of $REPEATS)" "total ms" "ms/step" "x floor"
for r in "${rows[@]}"; do
  name=${r%%|*}; ms=${r##*|}
  awk -v n="$name" -v ms="$ms" -v f="$floor" -v N=$N 'BEGIN{printf "%-50s %12.1f %10.2f %10.2f\n", n, ms, ms/N, ms/f}'
done
echo "goal: <= 10 ms/step for the process executor (bwrap rows)"
