#!/usr/bin/env bash
# Runs the unit tests under the sanitizers. Not part of CI (two more builds of the libraries and
# tests, Debug, each longer than the CI build): run it before a release, after touching threads or
# memory handling, or nightly beside fuzz/nightly.sh.
#   asan              preset asan (ASan + UBSan, every report fatal): every C++ unit test (ctest -L
#                     unit, without the console's Vitest tests)
#   tsan              preset tsan (ThreadSanitizer): the unit tests whose code runs threads (TSAN_TESTS)
#   asan-integration  preset asan: integration tests that start real servers and the gantry binary
#                     (ASAN_INTEGRATION_TESTS; the gantry processes they start are ASan builds too)
# Only the test binaries (and what they link) are built. Sanitizer reports go to files under
# build/<preset>/sanitize/<part>/ (so that those of the gantry processes a test starts are not lost
# with the test's temporary directory) and are printed at the end; scripts/{tsan,ubsan,lsan}.supp
# hold the suppressions, each with why it is not Gantry's bug. It prints, per part, the test
# binaries, the tests passed (from each binary's gtest XML) and the time to build and to run, and
# fails when a test fails or a sanitizer reports.
#
#   scripts/sanitize.sh              asan and tsan
#   scripts/sanitize.sh tsan         one
#   ASAN_TESTS="base_test value_test" TSAN_TESTS="http_test" scripts/sanitize.sh   a subset
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${GANTRY_JOBS:-$(nproc)}
# Tests of code that runs threads: the work queue, leader election and agent loops, the HTTP
# server and client, the kube watch cache and exec streams, the CI runner, the notifier's outbox
# workers, the server's API (handlers on a pool, event streams), deliveries, the mutex wrappers.
# shellcheck disable=SC2206  # TSAN_TESTS is a space-separated list
tsan_tests=(${TSAN_TESTS:-base_test http_test agent_test kube_cache_test kube_exec_stream_test ci_test
                         notify_test server_test deliver_test webhook_test store_test})
# Integration tests under ASan: Git over smart HTTP with the mirrors' pack consolidation, the agent
# processes against a real apiserver, the HTTP server, deliveries to a real registry, the CI
# server with its runs, replicas and workers (a few minutes each under ASan).
# shellcheck disable=SC2206
asan_integration_tests=(${ASAN_INTEGRATION_TESTS:-integration_git_source_test integration_http_server_test
                        integration_agent_test integration_deliver_push_test integration_ci_server_test})
parts=("$@")
((${#parts[@]} > 0)) || parts=(asan tsan)

root=$PWD
options() {  # options() NAME DEFAULTS: $NAME from the caller's environment, else DEFAULTS
  local given=${!1:-}
  echo "${given:-$2}"
}
asan_options=$(options ASAN_OPTIONS detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1)
ubsan_options=$(options UBSAN_OPTIONS print_stacktrace=1:halt_on_error=1)
tsan_options=$(options TSAN_OPTIONS halt_on_error=1:second_deadlock_stack=1)
lsan_options=$(options LSAN_OPTIONS "")
for kind in tsan ubsan lsan; do
  if [[ -f scripts/$kind.supp ]]; then
    var=${kind}_options
    printf -v "$var" '%s' "${!var:+${!var}:}suppressions=$root/scripts/$kind.supp"
  fi
done

# summarize DIR: "T tests: P passed, S skipped, F failed" over the gtest XML files in DIR, and the
# binaries that wrote none (crashed, or stopped by a sanitizer before gtest wrote its report).
summarize() {
  local dir=$1 tests=0 failed=0 skipped=0 n f
  for f in "$dir"/*.xml; do
    [[ -f $f ]] || continue
    n=$(sed -n 's/^<testsuites tests="\([0-9]*\)" failures="\([0-9]*\)" disabled="[0-9]*" errors="\([0-9]*\)".*/\1 \2 \3/p' "$f")
    read -r t fl e <<<"$n"
    tests=$((tests + ${t:-0})) failed=$((failed + ${fl:-0} + ${e:-0}))
    skipped=$((skipped + $(grep -c 'result="skipped"' "$f" || true)))
  done
  echo "$tests tests: $((tests - failed - skipped)) passed, $skipped skipped, $failed failed"
}

status=0
summary=()
for part in "${parts[@]}"; do
  start=$SECONDS
  preset=${part%-integration}
  cmake --preset "$preset" >/dev/null
  targets=()
  case $part in
    asan)
      if [[ -n ${ASAN_TESTS:-} ]]; then
        read -ra tests <<<"$ASAN_TESTS"
      else  # console_*: the console's Vitest tests, no C++ (and no CMake target)
        mapfile -t tests < <(ctest --preset asan -N -L unit | sed -n 's/^ *Test *#[0-9]*: //p' | grep -v '^console_')
      fi ;;
    tsan) tests=("${tsan_tests[@]}") ;;
    asan-integration) tests=("${asan_integration_tests[@]}") targets=(gantry) ;;
    *) echo "sanitize: unknown part $part (asan, tsan or asan-integration)" >&2; exit 2 ;;
  esac
  cmake --build "build/$preset" -j "$jobs" --target "${tests[@]}" "${targets[@]}"
  built=$((SECONDS - start))
  out=$root/build/$preset/sanitize/$part
  rm -rf "$out" && mkdir -p "$out/gtest" "$out/reports"
  log=log_path=$out/reports/report
  regex="^($(IFS='|'; echo "${tests[*]}"))\$"
  # Integration tests share test servers per binary and start their own: one at a time.
  [[ $part == *-integration ]] && run_jobs=1 || run_jobs=$jobs
  ran=ok
  ASAN_OPTIONS=${asan_options:+$asan_options:}$log UBSAN_OPTIONS=${ubsan_options:+$ubsan_options:}$log \
    TSAN_OPTIONS=${tsan_options:+$tsan_options:}$log LSAN_OPTIONS=$lsan_options \
    GTEST_OUTPUT=xml:$out/gtest/ ctest --preset "$preset" -j "$run_jobs" -R "$regex" || ran=failed
  reports=("$out"/reports/report.*)
  [[ -e ${reports[0]} ]] || reports=()
  for r in "${reports[@]}"; do
    echo "== sanitizer report $r:"
    head -n 80 "$r"
  done
  xmls=("$out"/gtest/*.xml)
  [[ -e ${xmls[0]} ]] || xmls=()
  ((${#reports[@]} == 0)) && [[ $ran == ok ]] || status=1
  summary+=("== sanitize $part: ${#tests[@]} test binaries (${#xmls[@]} finished), $(summarize "$out/gtest"), \
ctest $ran, ${#reports[@]} sanitizer reports; built in ${built} s, ran in $((SECONDS - start - built)) s")
  echo "${summary[-1]}"
done
printf '%s\n' "${summary[@]}"
exit $status
