#!/usr/bin/env bash
# YAML parse throughput, side by side on one generated corpus of ~50 MB of realistic manifests:
# Gantry's ParseYaml, yaml-cpp's YAML::LoadAll, libyaml's bare event loop (the floor under
# ParseYaml) and Go's sigs.k8s.io/yaml (yaml.Unmarshal per document, as kubectl and Argo CD read
# manifests). One thread each (GOMAXPROCS=1 for Go), best of RUNS (default 3).
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
corpus=$out/yaml_corpus.yaml
if [[ ! -f $corpus ]]; then
  "$out/yaml_parse_bench" --generate "$corpus" 50
fi
echo "corpus: $corpus ($(wc -c <"$corpus") bytes, $(grep -c '^---' "$corpus") documents)"
{
  "$out/yaml_parse_bench" "$corpus" "$runs"
  GOMAXPROCS=1 "$out/yamlbench_go" -runs "$runs" "$corpus" | awk '{print "go-sigs.k8s.io/yaml", $NF}'
} | awk '
  { name[NR] = $1; mbs[NR] = $2; if ($1 == "gantry") g = $2 }
  END {
    printf "%-22s %10s %14s\n", "parser", "MB/s", "gantry is ×"
    for (i = 1; i <= NR; i++) printf "%-22s %10.1f %14.2f\n", name[i], mbs[i], g / mbs[i]
  }'
