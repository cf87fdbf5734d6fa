#!/usr/bin/env bash
# Builds the libFuzzer targets with the "fuzz" preset (clang, ASan+UBSan) and runs each one for
# SECONDS (default 30), starting from fuzz/corpus/<target>. New inputs go to a temp dir; a crash
# leaves its input in build/fuzz/artifacts/ and makes this script fail.
#
#   fuzz/run.sh 30            every target
#   fuzz/run.sh 30 webhook    one target
set -euo pipefail
secs=${1:-30}
targets=(yaml yaml_diff json webhook project pipeline jwt)
[[ $# -ge 2 ]] && targets=("${@:2}")
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cmake --preset fuzz >/dev/null
cmake --build build/fuzz --target "${targets[@]/%/_fuzz}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p build/fuzz/artifacts
for target in "${targets[@]}"; do
  mkdir -p "$work/$target"
  dict=()
  [[ -f fuzz/$target.dict ]] && dict=(-dict="fuzz/$target.dict")
  echo "== ${target}_fuzz for ${secs}s"
  "build/fuzz/fuzz/${target}_fuzz" -max_total_time="$secs" -max_len=16384 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" \
    -artifact_prefix="build/fuzz/artifacts/${target}-" "$work/$target" "fuzz/corpus/$target"
done
