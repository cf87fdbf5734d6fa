// The console in Chromium against a real gantry server (e2e/server.ts): served with its security
// headers, the login screen, signing in, the overview, the CI runs and a run's coloured log, the
// environments and clusters pages, an application deployed to a real cluster with its resource
// tree, a sync through the confirm that shows the server's dry run, and the release's flow; a failed
// run's step DAG, its log search over a 3000-line step, and its retry;
// axe-core on every page (no serious or critical violation); a screenshot of each page under
// GANTRY_CONSOLE_ARTIFACTS.
import {execFileSync} from 'node:child_process';
import {createHmac} from 'node:crypto';
import {mkdirSync, mkdtempSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';

import AxeBuilder from '@axe-core/playwright';
import {expect, test, type Page} from '@playwright/test';

const url = () => process.env.GANTRY_URL!;
const token = () => process.env.GANTRY_TOKEN!;
const shots = join(process.env.GANTRY_CONSOLE_ARTIFACTS ?? 'test-results', 'screenshots');
mkdirSync(shots, {recursive: true});

async function axe(page: Page, what: string) {
  const result = await new AxeBuilder({page}).analyze();
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  expect(bad.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`),
         `axe-core on ${what}`).toEqual([]);
}

async function shot(page: Page, name: string) {
  await page.screenshot({path: join(shots, `${name}.png`), fullPage: true});
}

// Fails the test on anything the Content-Security-Policy blocked or the page threw.
function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content.Security.Policy|Refused to/i.test(m.text())) errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  return errors;
}

async function signIn(page: Page, t = token()) {
  await page.goto(url() + '/');
  await page.getByLabel('API token').fill(t);
  await page.getByRole('button', {name: 'Sign in'}).click();
}

test('the server serves the console with a strict CSP and cache headers', async ({request}) => {
  const index = await request.get(url() + '/');
  expect(index.status()).toBe(200);
  const csp = index.headers()['content-security-policy'];
  expect(csp).toContain("default-src 'self'");
  expect(csp).toContain("script-src 'self'");
  expect(csp).not.toContain('unsafe-inline');
  expect(index.headers()['cache-control']).toBe('no-cache');
  const html = await index.text();
  const script = html.match(/src="(\/assets\/[^"]+\.js)"/);
  expect(script, 'index.html loads a hashed script').not.toBeNull();
  expect(html).not.toMatch(/<script>/); // no inline script
  const asset = await request.get(url() + script![1]);
  expect(asset.status()).toBe(200);
  expect(asset.headers()['cache-control']).toBe('public, max-age=31536000, immutable');
  expect(asset.headers()['content-type']).toContain('javascript');
  // A console route is the page; an API path nobody serves is not.
  expect(await (await request.get(url() + '/runs/42')).text()).toBe(html);
  const api = await request.get(url() + '/api/v1/no-such-route', {headers: {Authorization: `Bearer ${token()}`}});
  expect(api.status()).toBe(404);
  expect(api.headers()['content-type'] ?? '').not.toContain('html');
});

test('the login screen', async ({page}) => {
  const errors = watchErrors(page);
  await page.goto(url() + '/');
  await expect(page.getByRole('heading', {name: 'Gantry'})).toBeVisible();
  await expect(page.getByLabel('API token')).toBeFocused();
  console.log(`console: the login screen was ready ${Math.round(await page.evaluate(() => performance.now()))} ms after navigation`);
  await axe(page, 'the login screen');
  await shot(page, 'login');
  expect(errors).toEqual([]);
});

test('sign in, move by keyboard, switch theme', async ({page}) => {
  const errors = watchErrors(page);
  await page.emulateMedia({colorScheme: 'light'});
  await signIn(page);
  await expect(page.getByRole('heading', {name: 'Overview'})).toBeVisible();
  expect(await page.evaluate(() => sessionStorage.getItem('gantry.token'))).toBe(token());
  // Keyboard only: the skip link first, then the main navigation.
  await page.keyboard.press('Tab');
  await expect(page.getByRole('link', {name: 'Skip to content'})).toBeFocused();
  await page.keyboard.press('Tab');
  await page.keyboard.press('Tab');
  await expect(page.getByRole('link', {name: 'CI runs'})).toBeFocused();
  await page.keyboard.press('Enter');
  await expect(page.getByRole('heading', {name: 'CI runs'})).toBeVisible();
  expect(new URL(page.url()).pathname).toBe('/runs');
  // Reloading a console route keeps the page and the session.
  await page.reload();
  await expect(page.getByRole('heading', {name: 'CI runs'})).toBeVisible();

  await page.getByRole('button', {name: 'Switch to dark theme'}).click();
  await expect(page.locator('html')).toHaveAttribute('data-theme', 'dark');
  await axe(page, 'the runs page, dark theme');
  await shot(page, 'runs-dark');
  await page.getByRole('button', {name: 'Switch to light theme'}).click();
  await expect(page.locator('html')).toHaveAttribute('data-theme', 'light');

  await page.getByRole('button', {name: 'Sign out'}).click();
  await expect(page.getByLabel('API token')).toBeVisible();
  expect(await page.evaluate(() => sessionStorage.getItem('gantry.token'))).toBeNull();
  expect(errors).toEqual([]);
});

// The pages' data comes from /api/v1 (issue 15's API, built beside this console).
test.describe('with the /api/v1 routes', () => {
  test.beforeAll(async ({request}) => {
    const res = await request.get(url() + '/api/v1/openapi.json', {headers: {Authorization: `Bearer ${token()}`}});
    const why = 'SKIPPED: this gantry server has no /api/v1 routes yet (GET /api/v1/openapi.json is 404)';
    if (res.status() === 404) console.log(why);
    test.skip(res.status() === 404, why);
  });

  test('a refused token goes back to the login screen', async ({page}) => {
    await signIn(page, 'not-a-token-of-this-server');
    await expect(page.getByRole('alert')).toContainText('refused the token');
    await expect(page.getByLabel('API token')).toBeVisible();
  });

  test('overview, runs and a run with its coloured log', async ({page, request}) => {
    const errors = watchErrors(page);
    await signIn(page);
    await expect(page.getByRole('heading', {name: 'Overview'})).toBeVisible();
    await expect(page.getByText('No releases yet')).toBeVisible();
    console.log(`console: the overview was rendered ${Math.round(await page.evaluate(() => performance.now()))} ms after navigation`);
    await axe(page, 'the overview');
    await shot(page, 'overview');

    // A signed push webhook makes a run (the policy needs no approval).
    const body = JSON.stringify({
      ref: 'refs/heads/main', before: '0000000000000000000000000000000000000001', after: process.env.GANTRY_COMMIT,
      repository: {full_name: 'org/app', clone_url: process.env.GANTRY_REPO}, pusher: {name: 't'}, commits: [],
    });
    const sig = createHmac('sha256', process.env.GANTRY_HOOK_SECRET!).update(body).digest('hex');
    const hook = await request.post(url() + '/webhook', {
      data: body,
      headers: {'Content-Type': 'application/json', 'X-GitHub-Event': 'push', 'X-GitHub-Delivery': 'e2e-1', 'X-Hub-Signature-256': `sha256=${sig}`},
    });
    expect(hook.status(), await hook.text()).toBe(201);
    const {run} = await hook.json();

    await page.getByRole('link', {name: 'CI runs'}).click();
    await expect(page.getByRole('heading', {name: 'CI runs'})).toBeVisible();
    await expect(page.getByRole('link', {name: `#${run}`})).toBeVisible();
    await axe(page, 'the runs page');
    await shot(page, 'runs');

    await page.getByRole('link', {name: `#${run}`}).click();
    await expect(page.getByRole('heading', {name: `Run #${run}`})).toBeVisible();
    await expect(page.getByRole('heading', {name: `Run #${run}`})).toContainText('succeeded', {timeout: 30_000});
    const log = page.getByLabel('Run log');
    await expect(log).toContainText('green hello from the console test', {timeout: 30_000});
    await expect(log.locator('span.ansi-fg-2')).toHaveText('green hello');
    await expect(page.locator('.dag')).toContainText('hello');
    await axe(page, 'a run');
    await shot(page, 'run');

    // The environments in promotion order and the clusters, from the main navigation. With the
    // Kubernetes test cluster, dev holds dev-1, which answers /version.
    const withCluster = !!process.env.GANTRY_CONFIG_COMMIT;
    await page.getByRole('link', {name: 'Environments'}).click();
    await expect(page.getByRole('heading', {name: 'Environments', level: 1})).toBeVisible();
    if (withCluster) {
      const dev = page.getByRole('listitem', {name: 'dev'});
      await expect(dev).toContainText('dev-1');
      await expect(dev).toContainText('no approval');
    } else {
      await expect(page.getByText('No environments')).toBeVisible();
    }
    await axe(page, 'the environments page');
    await shot(page, 'environments');
    await page.getByRole('link', {name: 'Clusters'}).click();
    await expect(page.getByRole('heading', {name: 'Clusters', level: 1})).toBeVisible();
    if (withCluster) {
      const row = page.getByRole('row', {name: /^dev-1/});
      await expect(row).toContainText('reachable');
      await expect(row).not.toContainText('unreachable');
      await expect(row).toContainText(/v1\.\d+\.\d+/);
    } else {
      await expect(page.getByText('No clusters')).toBeVisible();
    }
    await axe(page, 'the clusters page');
    await shot(page, 'clusters');
    expect(errors).toEqual([]);
  });

  test('a failed run: its step DAG, the log of one step, and a retry that says what it retries', async ({page, request}) => {
    const errors = watchErrors(page);
    // A branch whose pipeline fails: build, then test (needs build) fails; docs needs nothing.
    const repo = process.env.GANTRY_REPO!.replace(/^file:\/\//, '');
    const work = join(mkdtempSync(join(tmpdir(), 'gantry-e2e-')), 'w');
    const env = {...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@e', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@e'};
    execFileSync('git', ['-C', repo, 'worktree', 'add', '-q', '-b', 'e2e-fail', work], {env});
    writeFileSync(join(work, '.gantry', 'pipeline.yaml'),
                  'shell: sh\nsteps:\n  build:\n    run: seq 1 3000 | sed "s/^/line /"; echo built\n' +
                  '  test:\n    needs: [build]\n    run: echo "FAIL x_test"; exit 3\n' +
                  '  docs:\n    run: echo docs\n');
    execFileSync('git', ['-C', work, 'commit', '-q', '-am', 'a failing test'], {env});
    const commit = execFileSync('git', ['-C', work, 'rev-parse', 'HEAD']).toString().trim();
    const body = JSON.stringify({
      ref: 'refs/heads/e2e-fail', before: '0000000000000000000000000000000000000001', after: commit,
      repository: {full_name: 'org/app', clone_url: process.env.GANTRY_REPO}, pusher: {name: 't'}, commits: [],
    });
    const sig = createHmac('sha256', process.env.GANTRY_HOOK_SECRET!).update(body).digest('hex');
    const hook = await request.post(url() + '/webhook', {
      data: body,
      headers: {'Content-Type': 'application/json', 'X-GitHub-Event': 'push', 'X-GitHub-Delivery': 'e2e-fail-1', 'X-Hub-Signature-256': `sha256=${sig}`},
    });
    expect(hook.status(), await hook.text()).toBe(201);
    const {run} = await hook.json();

    await signIn(page);
    await page.goto(`${url()}/runs/${run}`);
    await expect(page.getByRole('heading', {name: `Run #${run}`})).toContainText('failed', {timeout: 30_000});
    // The DAG: one edge, build → test; docs stands alone.
    await expect(page.locator('.dag-node')).toHaveCount(3);
    await expect(page.locator('path[data-edge]')).toHaveCount(1);
    await expect(page.locator('path[data-edge="build->test"]')).toHaveCount(1);
    await expect(page.locator('.dag-node[data-step="test"]')).toContainText('failed');
    await expect(page.locator('.dag-node[data-step="test"]')).toHaveAttribute('title', 'needs build');
    // Search in the whole log: build's 3000 lines are windowed, the view follows the log's end, and
    // the matches are found in lines never rendered and scrolled to, by keyboard.
    const whole = page.getByLabel('Run log');
    await expect(whole).toContainText('FAIL x_test');
    expect(await whole.locator('.log-line').count()).toBeLessThan(500);
    const search = page.getByLabel('Search the log');
    await search.fill('line 12');  // line 12, 120-129, 1200-1299
    const count = page.locator('.log-count');
    await expect(count).toHaveText('1 of 111');
    const current = whole.locator('mark.current');
    await expect(current).toHaveText('line 12');
    await expect(current).toBeInViewport();
    await expect(current.locator('xpath=..')).toHaveText(/^line 12\s*$/);
    await search.press('Enter');
    await expect(count).toHaveText('2 of 111');
    await expect(current.locator('xpath=..')).toHaveText(/^line 120\s*$/);
    await search.press('Shift+Enter');
    await search.press('Shift+Enter');
    await expect(count).toHaveText('111 of 111');
    await expect(current.locator('xpath=..')).toHaveText(/^line 1299\s*$/);
    await expect(current).toBeInViewport();
    await expect(whole.locator('mark.log-match')).not.toHaveCount(0);
    await axe(page, 'a run with a log search');
    await shot(page, 'run-log-search');
    await search.press('Escape');
    await expect(count).toHaveText('');
    // By keyboard: from build, right to test; Enter shows its log only.
    await page.locator('.dag-node[data-step="build"]').focus();
    await page.keyboard.press('ArrowRight');
    await expect(page.locator('.dag-node[data-step="test"]')).toBeFocused();
    await page.keyboard.press('Enter');
    const log = page.getByLabel('Run log');
    await expect(log).toContainText('FAIL x_test');
    await expect(log).not.toContainText('built');
    await expect(log).not.toContainText('docs');
    await axe(page, 'a failed run');
    await shot(page, 'run-failed-dag');

    await page.getByRole('button', {name: 'Retry'}).click();
    await expect(page.getByRole('alertdialog')).toContainText('builds the same commit again');
    await page.getByRole('alertdialog').getByRole('button', {name: 'Retry'}).click();
    await expect(page).toHaveURL(new RegExp(`/runs/${run + 1}$`));
    await expect(page.getByRole('heading', {name: `Run #${run + 1}`})).toBeVisible();
    await expect(page.getByRole('link', {name: `Run #${run}`})).toHaveAttribute('href', `/runs/${run}`);
    await expect(page.getByRole('heading', {name: `Run #${run + 1}`})).toContainText('failed', {timeout: 30_000});
    await expect(page.locator('path[data-edge="build->test"]')).toHaveCount(1);
    await shot(page, 'run-retried');

    // The pipelines page shows the repository with the DAG of its newest run.
    await page.getByRole('link', {name: 'Pipelines'}).click();
    await expect(page.getByRole('heading', {name: 'Pipelines', level: 1})).toBeVisible();
    await expect(page.locator('path[data-edge="build->test"]')).toHaveCount(1);
    await axe(page, 'the pipelines page');
    await shot(page, 'pipelines');
    await page.getByRole('link', {name: 'Projects'}).click();
    await expect(page.getByRole('heading', {name: 'default'})).toBeVisible();
    await axe(page, 'the projects page');
    await shot(page, 'projects');
    await page.getByRole('link', {name: 'Tokens'}).click();
    await expect(page.getByRole('heading', {name: 'API tokens'})).toBeVisible();
    await axe(page, 'the tokens page');
    await shot(page, 'tokens');
    expect(errors).toEqual([]);
  });

  test('an application: its resource tree, and a sync through the diff confirm', async ({page, request}) => {
    const why = 'SKIPPED: no Kubernetes test cluster (GANTRY_KUBE_CLUSTER unset)';
    if (!process.env.GANTRY_CONFIG_COMMIT) console.log(why);
    test.skip(!process.env.GANTRY_CONFIG_COMMIT, why);
    test.setTimeout(120_000);
    const errors = watchErrors(page);
    const headers = {Authorization: `Bearer ${token()}`};
    const kubectl = (...args: string[]) => execFileSync('kubectl', ['--kubeconfig', process.env.GANTRY_KUBECONFIG!, ...args]).toString();
    const deployed = await request.post(url() + '/api/v1/apps/web/deploy',
                                        {headers, data: {revision: process.env.GANTRY_CONFIG_COMMIT, environment: 'dev'}});
    expect(deployed.status(), await deployed.text()).toBe(202);
    await expect.poll(async () => (await (await request.get(url() + '/api/v1/apps/web', {headers})).json()).targets?.[0]?.health,
                      {timeout: 60_000}).toBe('Healthy');
    // Someone deletes the ConfigMap in the cluster: the app drifts. (An edit by another field
    // manager would be a conflict the sync reports, not overwrites, unless forced.)
    kubectl('delete', 'configmap', 'web-config', '-n', 'default');

    await signIn(page);
    await page.getByRole('link', {name: 'web', exact: true}).click();
    await expect(page.getByRole('heading', {name: 'Application web'})).toBeVisible();
    const tree = page.getByRole('list', {name: 'Resource tree'});
    // Deployment → ReplicaSet → Pod, nested by owner reference; the deleted ConfigMap missing.
    const pod = tree.getByRole('button', {name: /^Pod/});
    await expect(pod).toBeVisible({timeout: 30_000});
    console.log(`console: the application page showed its resource tree ${Math.round(await page.evaluate(() => performance.now()))} ms after navigation`);
    await expect(tree.getByRole('listitem').filter({has: page.getByRole('button', {name: /^Deployment/})}).getByRole('button', {name: /^Pod/})).toBeVisible();
    await expect(tree.getByRole('button', {name: /^ConfigMap.*Missing/})).toBeVisible();
    await tree.getByRole('button', {name: /^ConfigMap/}).click();
    await expect(page.getByLabel('Live manifest')).toHaveText('not in the cluster');
    await expect(page.getByLabel('Diff')).toContainText('+  greeting: hello');
    await axe(page, 'the application page');
    await shot(page, 'application');

    await page.getByRole('button', {name: 'Sync', exact: true}).click();
    const dialog = page.getByRole('dialog');
    await expect(dialog.getByLabel('Changes')).toContainText('+  greeting: hello');
    await axe(page, 'the sync confirm');
    await shot(page, 'application-sync-confirm');
    await dialog.getByRole('button', {name: 'Confirm sync'}).click();
    await expect(page.getByRole('status')).toContainText('dev/dev-1: deploying');
    // Until the sync has made it again the ConfigMap is NotFound: kubectl fails, and a throw would
    // end the poll at once instead of asking again.
    const greeting = () => {
      try {
        return kubectl('get', 'configmap', 'web-config', '-n', 'default', '-o', 'jsonpath={.data.greeting}');
      } catch {
        return '';
      }
    };
    await expect.poll(greeting, {timeout: 60_000}).toBe('hello');

    // The newest release's flow, from the release history: its config commit, then dev with dev-1
    // turning healthy by the release events (the page does not poll).
    await page.getByRole('link', {name: /^Flow of release/}).first().click();
    await expect(page.getByRole('heading', {name: /^Release #\d+ of web$/})).toBeVisible();
    const flow = page.getByRole('list', {name: 'Release flow'});
    await expect(flow.getByRole('listitem', {name: 'Config commit'})).toContainText(process.env.GANTRY_CONFIG_COMMIT!.slice(0, 12));
    const dev = flow.getByRole('listitem', {name: 'Environment dev'});
    await expect(dev).toContainText('dev-1');
    await expect(dev).toContainText('healthy', {timeout: 60_000});
    await axe(page, 'the release flow');
    await shot(page, 'release-flow');
    expect(errors).toEqual([]);
  });
});
