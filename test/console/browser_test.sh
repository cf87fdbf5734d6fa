#!/usr/bin/env bash
# The console's browser tests (console/e2e) in Debian's chromium against a real gantry server.
# Exits 77 (ctest: Skipped) only when chromium is not installed; Playwright never downloads one.
# Screenshots and failure traces go to $GANTRY_CONSOLE_ARTIFACTS.
set -euo pipefail
chromium=${GANTRY_CHROMIUM:-/usr/bin/chromium}
if [[ ! -x $chromium ]]; then
  echo "SKIPPED: $chromium is not installed (apt-get install chromium; scripts/setup installs it)" >&2
  exit 77
fi
: "${GANTRY_BINARY:?GANTRY_BINARY must name the gantry binary}"
: "${GANTRY_CONSOLE_WORK:?GANTRY_CONSOLE_WORK must name the console built by cmake}"
export GANTRY_CHROMIUM=$chromium PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
export GANTRY_CONSOLE_ARTIFACTS=${GANTRY_CONSOLE_ARTIFACTS:-$GANTRY_CONSOLE_WORK/test-results}
cd "$GANTRY_CONSOLE_WORK"
exec npx --no-install playwright test
