#!/usr/bin/env bash
# YAML parse throughput, side by side on one generated corpus of ~50 MB of realistic manifests:
# Gantry's ParseYaml (its own scanner; "gantry-libyaml" is the same call forced onto libyaml),
# yaml-cpp's YAML::LoadAll, libyaml's bare event loop, Go's sigs.k8s.io/yaml (yaml.Unmarshal per
# document, as kubectl and Argo CD read manifests) and rapidyaml (PyPI's rapidyaml wraps the C++
# library; only its C++ parse of the whole buffer into its tree is timed, no Python objects are
# built; installed into a venv under build/ by this script, never in CI). One thread each
# (GOMAXPROCS=1 for Go), best of RUNS (default 3).
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
  GOMAXPROCS=1 "$out/yamlbench_go" -runs "$runs" "$corpus" | awk '{print "go-sigs.k8s.io/yaml", $NF}'
  "$venv/bin/python" - "$corpus" "$runs" <<'PY'
import sys, time, ryml
data = open(sys.argv[1], "rb").read()
best = 1e100
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    tree = ryml.parse_in_arena(data)
    best = min(best, time.perf_counter() - start)
    del tree
print("rapidyaml", len(data) / 1e6 / best)
PY
} | awk '
  { name[NR] = $1; mbs[NR] = $2; if ($1 == "gantry") g = $2 }
  END {
    printf "%-22s %10s %14s\n", "parser", "MB/s", "gantry is ×"
    for (i = 1; i <= NR; i++) printf "%-22s %10.1f %14.2f\n", name[i], mbs[i], g / mbs[i]
  }'
