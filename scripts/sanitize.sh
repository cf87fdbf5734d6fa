#!/usr/bin/env bash
# Runs the unit tests under the sanitizers. Not part of CI (two more builds of the libraries and
# tests, Debug, each longer than the CI build): run it before a release, after touching threads or
# memory handling, or nightly beside fuzz/nightly.sh.
#   asan              preset asan (ASan + UBSan, every report fatal): every C++ unit test (ctest -L
#                     unit, without the console's Vitest tests)
#   tsan              preset tsan (ThreadSanitizer): the unit tests whose code runs threads (TSAN_TESTS)
#   asan-integration  preset asan: integration tests that start real servers and the gantry binary
#                     (ASAN_INTEGRATION_TESTS; the gantry processes they start are ASan builds too)
# Only the test binaries (and what they link) are built. It prints the pass counts and the time of
# each part, and fails when a test fails or a sanitizer reports.
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

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

status=0
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
  regex="^($(IFS='|'; echo "${tests[*]}"))\$"
  # Integration tests share test servers per binary and start their own: one at a time.
  [[ $part == *-integration ]] && run_jobs=1 || run_jobs=$jobs
  if ! ctest --preset "$preset" -j "$run_jobs" -R "$regex"; then status=1; fi
  echo "== sanitize $part: ${#tests[@]} test binaries, built in ${built} s, ran in $((SECONDS - start - built)) s"
done
exit $status
