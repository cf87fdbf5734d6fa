// Browser tests of the console against a real `gantry server` (e2e/server.ts starts it) in Debian's
// chromium: never a browser Playwright downloads. Run by ctest (test/console) from the build tree.
import {defineConfig} from '@playwright/test';

const artifacts = process.env.GANTRY_CONSOLE_ARTIFACTS ?? 'test-results';

export default defineConfig({
  testDir: 'e2e',
  outputDir: `${artifacts}/playwright`,
  globalSetup: './e2e/server.ts',
  fullyParallel: false,
  workers: 1,
  retries: 0,
  timeout: 60_000,
  reporter: [['list']],
  use: {
    browserName: 'chromium',
    launchOptions: {executablePath: process.env.GANTRY_CHROMIUM ?? '/usr/bin/chromium'},
    screenshot: 'only-on-failure',
    trace: 'off',
  },
});
