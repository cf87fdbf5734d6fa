#!/usr/bin/env bash
# The fault scenarios of test/integration/faults_test.cc (apiserver, etcd, registry, process and
# resource faults), faults_git_test.cc, faults_store_test.cc, the agent's (agent_test.cc: kill -9 at
# seeded points, wall clock steps, out of descriptors) and the server's and workers'
# (ci_server_test.cc CiServerFaults: kill -9 at seeded points of a run and of its push-mode deploy,
# a full data disk) repeated N times with different seeds, all of them (GANTRY_FAULTS_FULL=1: CI
# runs a bounded subset once, seed 1). Prints a table: per scenario the runs, outcomes, time under the
# fault and time to recover (min / median / max); every line is kept in OUT_DIR/faults.log.
#
#   bench/faults/run.sh [N=5] [FIRST_SEED=1]
#       after: cmake --build build/default --target integration_faults_test \
#              integration_faults_git_test integration_faults_store_test integration_agent_test \
#              integration_ci_server_test gantry
# Environment: BUILD_DIR (default build/default, else build/h), GTEST_FILTER (a subset of the
# scenarios), FAULT_TESTS (which binaries, BINARY or BINARY:GTEST_FILTER, default the five).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
n=${1:-5} first=${2:-1}
build=${BUILD_DIR:-$root/build/default}
[[ -d $build ]] || build=$root/build/h
tests=(${FAULT_TESTS:-integration_faults_test integration_faults_git_test integration_faults_store_test
  integration_agent_test:AgentTest.Kill9AtSeededPointsOfASyncWithPruneConverges:AgentTest.WallClockSteps*:AgentTest.OutOfDescriptors*
  integration_ci_server_test:CiServerFaults.*})
for t in "${tests[@]}"; do
  bin=$build/test/integration/${t%%:*}
  [[ -x $bin ]] || { echo "run.sh: build ${t%%:*} first (cmake --build $build --target ${t%%:*})" >&2; exit 2; }
done
gantry_bin=$build/src/exe/gantry
[[ -x $gantry_bin ]] || gantry_bin=$(find "$build" -name gantry -type f -perm -u+x | head -n 1)
out=$(mktemp -d /tmp/gantry-faults.XXXXXX)
report=$out/faults.log
failed=0
for ((seed = first; seed < first + n; seed++)); do
  for t in "${tests[@]}"; do
    name=${t%%:*} filter=${GTEST_FILTER:-*}
    [[ $t == *:* ]] && filter=${t#*:}
    echo "seed $seed: $name" >&2
    GANTRY_SOURCE_DIR=$root GANTRY_BINARY=$gantry_bin GANTRY_FAULT_SEED=$seed GANTRY_FAULTS_REPORT=$report \
      GANTRY_FAULTS_FULL=1 "$build/test/integration/$name" --gtest_filter="$filter" >"$out/seed-$seed-$name.log" 2>&1 || {
      failed=$((failed + 1)); echo "  seed $seed: a test of $name failed (log: $out/seed-$seed-$name.log)" >&2; }
  done
done
python3 - "$report" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = dict(kv.split("=", 1) for kv in line.split()[2:])
    runs[line.split()[1]].append((f["outcome"], float(f["fault_s"]), float(f["recover_s"])))
def spread(xs):
    return f"{min(xs):.2f} / {statistics.median(xs):.2f} / {max(xs):.2f}"
print("| scenario | runs | outcomes | s under the fault (min / median / max) | s to recover (min / median / max) |")
print("|---|---|---|---|---|")
for name, rs in runs.items():
    outcomes = collections.Counter(o for o, _, _ in rs)
    print(f"| {name} | {len(rs)} | {', '.join(f'{k} {v}' for k, v in outcomes.items())} | "
          f"{spread([f for _, f, _ in rs])} | {spread([r for _, _, r in rs])} |")
PY
echo "logs: $out" >&2
((failed == 0))
