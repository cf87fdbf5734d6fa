#!/usr/bin/env bash
# End to end: time from `git push` of the application to the new image Healthy in dev (push mode,
# deployed by gantry server) and in staging (pull mode, synced by its agent), over PUSHES commits.
#
#   GANTRY_BINARY=build/ci/src/exe/gantry PUSHES=10 bench/e2e/run.sh
#
# It runs scripts/quickstart in a state directory of its own (three clusters, registry, Git server
# with a push webhook, gantry server, two agents), then pushes PUSHES commits one after the other,
# each after the previous one reached both environments. Times are read by polling `gantry status`
# every 100 ms (so they carry up to ~0.1 s of polling plus one status call). No peer runs this flow
# as one tool, so there is no side-by-side ratio; the published numbers of Argo CD and Flux for the
# pull half are in docs/end-to-end.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
: "${GANTRY_BINARY:=$root/build/ci/src/exe/gantry}"
export GANTRY_BINARY
PUSHES=${PUSHES:-10}
export GANTRY_STATE
GANTRY_STATE=$(mktemp -d "${TMPDIR:-/tmp}/gantry-bench-e2e.XXXXXX")
trap '"$root/scripts/quickstart" down >/dev/null 2>&1 || true; rm -rf "$GANTRY_STATE"' EXIT

"$root/scripts/quickstart" >"$GANTRY_STATE/quickstart.log" 2>&1 || { tail -30 "$GANTRY_STATE/quickstart.log"; exit 1; }
qs=$GANTRY_STATE/quickstart
export GANTRY_HOME=$qs/home
# shellcheck disable=SC1091
source "$qs/server.env"; export GANTRY_SERVER GANTRY_TOKEN
work=$qs/work/hello-app
now() { date +%s.%N; }

results=$GANTRY_STATE/results
: >"$results"
for i in $(seq "$PUSHES"); do
  echo "<h1>release $i at $(date +%s%N)</h1>" >"$work/site/index.html"
  git -C "$work" -c user.name=Dev -c user.email=dev@example.com commit -qam "bench $i"
  commit=$(git -C "$work" rev-parse HEAD)
  t0=$(now)
  git -C "$work" push -q origin main 2>/dev/null
  dev="" staging=""
  while [[ -z $dev || -z $staging ]]; do
    if (($(echo "$(now) - $t0 > 120" | bc) )); then echo "push $i: timed out" >&2; exit 1; fi
    out=$("$GANTRY_BINARY" status hello 2>/dev/null || true)
    t=$(now)
    [[ -z $dev ]] && grep -E "^hello +dev .* ${commit:0:12} +Healthy" <<<"$out" >/dev/null && dev=$(echo "$t - $t0" | bc)
    [[ -z $staging ]] && grep -E "^hello +staging .* ${commit:0:12} +Healthy" <<<"$out" >/dev/null && staging=$(echo "$t - $t0" | bc)
    sleep 0.1
  done
  printf '%s %s\n' "$dev" "$staging" >>"$results"
  printf 'push %2d: dev (push) %.2f s, staging (pull) %.2f s\n' "$i" "$dev" "$staging"
done
python3 - "$results" <<'PY'
import statistics, sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
def q(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]
print()
print("| git push → Healthy | p50 s | p90 s | max s |")
print("|---|---|---|---|")
for name, col in (("dev (push, gantry server)", 0), ("staging (pull, agent)", 1)):
    xs = [r[col] for r in rows]
    print(f"| {name} | {statistics.median(xs):.2f} | {q(xs, 0.9):.2f} | {max(xs):.2f} |")
PY
