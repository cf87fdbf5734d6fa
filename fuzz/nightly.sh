#!/usr/bin/env bash
# The long fuzz run, not part of CI: every target for SECONDS (default 600), with the corpora
# libFuzzer grows kept between runs in a cache outside the repository
# (${GANTRY_FUZZ_CACHE:-~/.cache/gantry/fuzz}/<target>), so each night starts where the last one
# stopped. Each corpus is merged (minimised) first, which keeps it small. A crash leaves its input
# in build/fuzz/artifacts/ and makes this script fail; fix it with a regression test next to the
# parser's tests and add the input to fuzz/corpus/<target> when it is small.
#
#   fuzz/nightly.sh                 every target, 10 min each
#   fuzz/nightly.sh 1800 http_request
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
secs=${1:-600}
cache=${GANTRY_FUZZ_CACHE:-$HOME/.cache/gantry/fuzz}
targets=()
for f in fuzz/*_fuzz.cc; do
  t=${f#fuzz/}
  targets+=("${t%_fuzz.cc}")
done
[[ $# -ge 2 ]] && targets=("${@:2}")

cmake --preset fuzz >/dev/null
cmake --build build/fuzz --target "${targets[@]/%/_fuzz}"
for target in "${targets[@]}"; do
  # Minimise what earlier nights found (into a fresh dir, then swap).
  if [[ -d $cache/$target ]] && [[ -n $(ls -A "$cache/$target") ]]; then
    rm -rf "$cache/$target.merged"
    mkdir -p "$cache/$target.merged"
    "build/fuzz/fuzz/${target}_fuzz" -merge=1 -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
      "$cache/$target.merged" "$cache/$target" >/dev/null 2>&1
    rm -rf "$cache/$target"
    mv "$cache/$target.merged" "$cache/$target"
  fi
done
GANTRY_FUZZ_CORPUS_DIR=$cache fuzz/run.sh "$secs" "${targets[@]}"
