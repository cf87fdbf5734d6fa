#!/usr/bin/env bash
# YAML parse throughput, side by side on one generated corpus of ~50 MB of realistic manifests:
# Gantry's ParseYaml (its own scanner; "gantry-libyaml" is the same call forced onto libyaml),
# yaml-cpp's YAML::LoadAll, libyaml's bare event loop, Go's sigs.k8s.io/yaml (yaml.Unmarshal per
# document, as kubectl and Argo CD read manifests) and rapidyaml (PyPI's rapidyaml wraps the C++
# library; only its C++ parse of the whole buffer into its tree is timed, no Python objects are
# built; installed into a venv under build/ by this script, never in CI). One thread each
# (GOMAXPROCS=1 for Go), best of RUNS (default 3), in MB per CPU-second of the process (per
# core; the ratios use it) and in MB per wall-clock second (which, on a shared machine, also
# counts the time other processes held the core).
#
#   bench/yaml_parse/run.sh            RUNS=5 bench/yaml_parse/run.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
runs=${RUNS:-3}
out=build/default/bench
cmake --preset default >/dev/null
cmake --build build/default --target yaml_parse_bench
(cd bench/yaml_parse/go && go build -o "$root/$out/yamlbench_go" .)
venv=$out/rapidyaml-venv
if [[ ! -x $venv/bin/python ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet rapidyaml
fi
corpus=$out/yaml_corpus.yaml
if [[ ! -f $corpus ]]; then
  "$out/yaml_parse_bench" --generate "$corpus" 50
fi
echo "corpus: $corpus ($(wc -c <"$corpus") bytes, $(grep -c '^---' "$corpus") documents)"
{
  "$out/yaml_parse_bench" "$corpus" "$runs"
  GOMAXPROCS=1 "$out/yamlbench_go" -runs "$runs" "$corpus" |
    awk '{print "go-sigs.k8s.io/yaml", $(NF-2), $NF}'
  "$venv/bin/python" - "$corpus" "$runs" <<'PY'
import sys, time, ryml
data = open(sys.argv[1], "rb").read()
best, best_cpu = 1e100, 1e100
for _ in range(int(sys.argv[2])):
    cpu, start = time.process_time(), time.perf_counter()
    tree = ryml.parse_in_arena(data)
    best = min(best, time.perf_counter() - start)
    best_cpu = min(best_cpu, time.process_time() - cpu)
    del tree
mb = len(data) / 1e6
print("rapidyaml", mb / best_cpu, mb / best)
PY
} | awk '
  { name[NR] = $1; cpu[NR] = $2; wall[NR] = $3; if ($1 == "gantry") g = $2 }
  END {
    printf "%-22s %12s %12s %14s\n", "parser", "MB/cpu-s", "MB/s (wall)", "gantry is ×"
    for (i = 1; i <= NR; i++)
      printf "%-22s %12.1f %12.1f %14.2f\n", name[i], cpu[i], wall[i], g / cpu[i]
  }'
