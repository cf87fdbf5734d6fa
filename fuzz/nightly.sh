#!/usr/bin/env bash
# The long fuzz run, not part of CI: every target (or those named) for SECONDS (default 600), with
# the corpora libFuzzer grows kept between runs in a cache outside the repository
# (${GANTRY_FUZZ_CACHE:-~/.cache/gantry/fuzz}/<target>), merged (minimised) before each run, so
# each night starts where the last one stopped. The targets are built at -O1 (preset fuzz-long), for
# more executions per second than CI's -O0 build. A crash leaves its input in build/fuzz-long/artifacts/
# and makes this script fail; fix it with a regression test next to the parser's tests and add the
# input to fuzz/corpus/<target> when it is small.
#
#   fuzz/nightly.sh                     every target, 10 min each
#   fuzz/nightly.sh 1800 http_request   one target, 30 min
set -euo pipefail
cache=${GANTRY_FUZZ_CACHE:-$HOME/.cache/gantry/fuzz}
mkdir -p "$cache"
GANTRY_FUZZ_PRESET=${GANTRY_FUZZ_PRESET:-fuzz-long} GANTRY_FUZZ_ALL=1 GANTRY_FUZZ_CORPUS_DIR=$cache exec "$(dirname "$0")/run.sh" "${1:-600}" "${@:2}"
