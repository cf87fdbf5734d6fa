#!/usr/bin/env bash
# Builds the libFuzzer targets with the "fuzz" preset (clang, ASan+UBSan, -O0: cheap to build for
# CI's brief runs; GANTRY_FUZZ_PRESET=fuzz-long builds them at -O1, as fuzz/nightly.sh does, into
# build/fuzz-long) and runs each one for
# SECONDS (default $GANTRY_FUZZ_SECONDS, else 8: with ~20 targets that is under 3 minutes),
# starting from fuzz/corpus/<target>. The targets are every fuzz/<target>_fuzz.cc. New inputs go
# to $GANTRY_FUZZ_CORPUS_DIR/<target> when it is set (fuzz/nightly.sh keeps them there between
# runs; what is there is merged, i.e. minimised, first), else to a temp dir. A crash leaves its
# input in build/<preset>/artifacts/ and makes this script fail (after the other targets have run).
#
#   fuzz/run.sh                every target, $GANTRY_FUZZ_SECONDS (8) s each
#   fuzz/run.sh 60 webhook     one target for 60 s
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
secs=${1:-${GANTRY_FUZZ_SECONDS:-8}}
targets=()
for f in fuzz/*_fuzz.cc; do
  t=${f#fuzz/}
  targets+=("${t%_fuzz.cc}")
done
# A target with an open finding (its input kept in fuzz/known-findings/<target>-*, listed in
# docs/testing.md) would fail every run until the finding is fixed: it is left out, loudly, unless
# GANTRY_FUZZ_ALL=1 (fuzz/nightly.sh) or it is named. Fixing one means deleting its input there.
# (Building them all is harmless, and the thread-safety check of scripts/test counts on it.)
if [[ $# -lt 2 && ${GANTRY_FUZZ_ALL:-0} != 1 && ${GANTRY_FUZZ_BUILD_ONLY:-0} != 1 ]]; then
  kept=()
  for t in "${targets[@]}"; do
    if compgen -G "fuzz/known-findings/$t-*" >/dev/null; then
      echo "== SKIPPED ${t}_fuzz: open finding $(basename "$(compgen -G "fuzz/known-findings/$t-*" | head -1)")" >&2
    else
      kept+=("$t")
    fi
  done
  targets=("${kept[@]}")
fi
[[ $# -ge 2 ]] && targets=("${@:2}")

preset=${GANTRY_FUZZ_PRESET:-fuzz}
out=build/$preset
cmake --preset "$preset" >/dev/null
start=$SECONDS
cmake --build "$out" -j "$(nproc)" --target "${targets[@]/%/_fuzz}"
echo "== built ${#targets[@]} fuzz targets in $((SECONDS - start)) s"
# GANTRY_FUZZ_BUILD_ONLY=1: build, run nothing (scripts/test builds them beside the tests).
[[ ${GANTRY_FUZZ_BUILD_ONLY:-0} == 1 ]] && exit 0

logs=$(mktemp -d)
work=${GANTRY_FUZZ_CORPUS_DIR:-}
if [[ -z $work ]]; then
  work=$(mktemp -d)
  trap 'rm -rf "$logs" "$work"' EXIT
else
  trap 'rm -rf "$logs"' EXIT
fi
mkdir -p "$out/artifacts"

fuzz_one() {
  local target=$1 dict=()
  mkdir -p "$work/$target" "fuzz/corpus/$target"
  if [[ -n ${GANTRY_FUZZ_CORPUS_DIR:-} ]] && [[ -n $(ls -A "$work/$target") ]]; then
    rm -rf "$work/$target.merged"
    mkdir "$work/$target.merged"
    "$out/fuzz/${target}_fuzz" -merge=1 -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
      "$work/$target.merged" "$work/$target" >/dev/null 2>&1 || true
    rm -rf "$work/$target"
    mv "$work/$target.merged" "$work/$target"
  fi
  [[ -f fuzz/$target.dict ]] && dict=(-dict="fuzz/$target.dict")
  echo "== ${target}_fuzz for ${secs}s"
  "$out/fuzz/${target}_fuzz" -max_total_time="$secs" -max_len=16384 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" \
    -artifact_prefix="$out/artifacts/${target}-" "$work/$target" "fuzz/corpus/$target"
}

# One target per core at a time (each fuzzer is one process on one core); each one's output is
# printed whole when it ends.
declare -A running=()  # pid -> target
failed=()
reap() {
  local pid rc=0 target
  wait -n -p pid || rc=$?
  target=${running[$pid]}
  unset "running[$pid]"
  cat "$logs/$target.log"
  ((rc == 0)) || failed+=("$target")
}
for target in "${targets[@]}"; do
  while ((${#running[@]} >= $(nproc))); do reap; done
  fuzz_one "$target" >"$logs/$target.log" 2>&1 &
  running[$!]=$target
done
while ((${#running[@]} > 0)); do reap; done
if ((${#failed[@]} > 0)); then
  echo "== failed: ${failed[*]} (their inputs are in $out/artifacts/)" >&2
  exit 1
fi
