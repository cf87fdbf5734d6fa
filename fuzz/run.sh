#!/usr/bin/env bash
# Builds the libFuzzer targets with the "fuzz" preset (clang, ASan+UBSan) and runs each one for
# SECONDS (default 30), starting from fuzz/corpus/<target>. New inputs go to a temp dir; a crash
# leaves its input in build/fuzz/artifacts/ and makes this script fail.
#
#   fuzz/run.sh 30
set -euo pipefail
secs=${1:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cmake --preset fuzz >/dev/null
cmake --build build/fuzz --target yaml_fuzz json_fuzz
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p build/fuzz/artifacts
for target in yaml json; do
  mkdir -p "$work/$target"
  echo "== ${target}_fuzz for ${secs}s"
  "build/fuzz/fuzz/${target}_fuzz" -max_total_time="$secs" -max_len=16384 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -dict="fuzz/$target.dict" \
    -artifact_prefix="build/fuzz/artifacts/${target}-" "$work/$target" "fuzz/corpus/$target"
done
