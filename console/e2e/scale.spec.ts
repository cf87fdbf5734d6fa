// The console at scale: a gantry server of its own (not the one of e2e/server.ts) whose deliver
// configuration has 3 environments × 3 push clusters and whose store holds 200 apps, each with a
// release on all 9 clusters (seeded into its SQLite store with the sqlite3 tool once the server has
// created the schema). The overview must render, scroll to the last app, and keep the DOM bounded:
// the table's rows in the DOM stay a window of the 200; so must the per-environment and per-cluster
// app lists of the Environments and Clusters pages. Time to first render, the DOM's size and the
// time from a webhook's answer to its run's row in the runs list (the run event through SSE) are
// printed (and attached to the test) as figures, not asserted: the machine is shared.
import {execFileSync, spawn, type ChildProcess} from 'node:child_process';
import {createHmac} from 'node:crypto';
import {chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, openSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';

import AxeBuilder from '@axe-core/playwright';
import {expect, test} from '@playwright/test';

const kApps = 200;
const kEnvironments = ['dev', 'staging', 'prod'];
const kToken = 'console-scale-token-0123456789abcdef';
const shots = join(process.env.GANTRY_CONSOLE_ARTIFACTS ?? 'test-results', 'screenshots');

let root = '';
let proc: ChildProcess | null = null;
let url = '';

test.beforeAll(async () => {
  test.setTimeout(90_000);
  const binary = process.env.GANTRY_BINARY;
  if (!binary) throw new Error('GANTRY_BINARY must name the gantry binary (ctest sets it)');
  root = mkdtempSync(join(tmpdir(), 'gantry-console-scale-'));
  chmodSync(root, 0o711);
  // Clusters nobody reaches: the matrix reads push cells from the ledger only.
  const kubeconfig = join(root, 'kubeconfig');
  writeFileSync(kubeconfig, `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`);
  const deliver = join(root, 'deliver');
  mkdirSync(deliver);
  const docs: string[] = [];
  kEnvironments.forEach((env, i) => {
    docs.push(`apiVersion: gantry.dev/v1alpha1
kind: Environment
metadata: {name: ${env}}
spec: {${i > 0 ? `after: [${kEnvironments[i - 1]}]` : ''}}`);
    for (let n = 1; n <= 3; n++) {
      docs.push(`apiVersion: gantry.dev/v1alpha1
kind: Cluster
metadata: {name: ${env}-${n}}
spec: {kubeconfig: ${kubeconfig}, environment: ${env}}`);
    }
  });
  writeFileSync(join(deliver, 'all.yaml'), docs.join('\n---\n') + '\n');
  const db = join(root, 'gantry.db');
  const log = join(root, 'server.log');
  const out = openSync(log, 'w');
  proc = spawn(binary, [
    'server', '--listen', '127.0.0.1:0', '--store', `sqlite:${db}`, '--webhook-secret-env', 'HOOK', '--api-token-env', 'API_TOKEN',
    '--repo', process.env.GANTRY_REPO!, '--data-dir', join(root, 'data'), '--allow-file-repos', '--deliver-config', deliver,
  ], {env: {...process.env, HOOK: 'scale-hook-secret', API_TOKEN: kToken}, stdio: ['ignore', out, out]});
  const deadline = Date.now() + 30_000;
  for (;;) {
    const m = readFileSync(log, 'utf8').match(/listening on 127\.0\.0\.1:(\d+)/);
    if (m) {
      url = `http://127.0.0.1:${m[1]}`;
      break;
    }
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`gantry server did not start:\n${readFileSync(log, 'utf8')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  // 200 releases, each healthy on the 9 clusters (times in microseconds, as the store writes them).
  const now = Date.now() * 1000;
  const sql = ['BEGIN;'];
  for (let a = 0; a < kApps; a++) {
    const id = a + 1;
    const app = `app-${String(a).padStart(3, '0')}`;
    sql.push(`INSERT INTO releases (id, app, source_revision, config_revision, started_by, run_id, note, created_at, project) VALUES ` +
             `(${id}, '${app}', 'src${id}', 'cfg${id}0000000', 'scale-test', NULL, '', ${now}, '');`);
    sql.push(`INSERT INTO release_images (release_id, name, digest) VALUES (${id}, 'registry.example/${app}', 'sha256:${String(id).padStart(64, '0')}');`);
    for (const env of kEnvironments) {
      for (let n = 1; n <= 3; n++) {
        sql.push(`INSERT INTO targets (release_id, env, cluster, state, message, sync_result, version, created_at, updated_at, finished_at) ` +
                 `VALUES (${id}, '${env}', '${env}-${n}', 'healthy', '', '', 1, ${now}, ${now}, ${now});`);
      }
    }
  }
  sql.push('COMMIT;');
  execFileSync('sqlite3', ['-cmd', '.timeout 10000', db], {input: sql.join('\n')});
});

test.afterAll(async () => {
  if (proc && proc.exitCode === null) {
    proc.kill('SIGTERM');
    await new Promise((r) => (proc!.exitCode !== null ? r(null) : proc!.once('exit', r)));
  }
  if (root && !process.env.GANTRY_KEEP_TEMP) rmSync(root, {recursive: true, force: true});
});

test('the overview of 200 apps × 3 environments × 3 clusters renders, scrolls and keeps the DOM bounded', async ({page}, info) => {
  test.setTimeout(90_000);
  await page.goto(url + '/');
  await page.getByLabel('API token').fill(kToken);
  const matrixArrived = page.waitForResponse((r) => r.url().endsWith('/api/v1/matrix') && r.status() === 200);
  const clicked = Date.now();
  await page.getByRole('button', {name: 'Sign in'}).click();
  const response = await matrixArrived;
  await response.finished();
  const arrived = Date.now();
  await expect(page.getByRole('rowheader', {name: 'app-000'})).toBeVisible();
  const rendered = Date.now();
  const table = page.getByRole('table', {name: /Version matrix/});
  await expect(table).toHaveAttribute('aria-rowcount', String(kApps + 2));
  await expect(page.getByRole('columnheader', {name: 'prod-3'})).toBeVisible();
  const count = () => page.evaluate(() => ({
    nodes: document.getElementsByTagName('*').length,
    rows: document.querySelectorAll('table.matrix tbody tr[aria-rowindex]').length,
  }));
  const first = await count();
  expect(first.rows, 'rows of the 200 in the DOM').toBeLessThan(60);
  await page.screenshot({path: join(shots, 'overview-200-apps.png')});
  const axe = await new AxeBuilder({page}).analyze();
  expect(axe.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id}: ${v.help}`),
         'axe-core on the windowed overview').toEqual([]);

  // Scroll to the end: the last app appears, the first leaves, the DOM stays as small.
  const wrap = page.locator('.table-wrap.virtual');
  await wrap.evaluate((el) => { el.scrollTop = el.scrollHeight; });
  await expect(page.getByRole('rowheader', {name: 'app-199'})).toBeVisible();
  await expect(page.getByRole('rowheader', {name: 'app-000'})).toHaveCount(0);
  const last = await count();
  expect(last.rows).toBeLessThan(60);
  expect(last.nodes, 'DOM nodes after scrolling').toBeLessThan(first.nodes * 1.5);
  // Half way, by small steps, as a wheel would.
  for (let i = 0; i < 20; i++) await wrap.evaluate((el) => { el.scrollTop -= 300; });
  await expect(table.getByRole('row').filter({has: page.getByRole('rowheader')}).first()).toBeVisible();
  const middle = await count();
  expect(middle.rows).toBeLessThan(60);

  const figures = `overview of ${kApps} apps × ${kEnvironments.length} environments × 9 clusters: ` +
    `matrix answered ${arrived - clicked} ms after sign-in, first row rendered ${rendered - arrived} ms after the data arrived; ` +
    `DOM ${first.nodes} nodes (${first.rows} of ${kApps} rows), ${last.nodes} after scrolling to the end (${last.rows} rows)`;
  console.log(figures);
  info.annotations.push({type: 'figures', description: figures});
});

test('the environments and clusters pages window their 200-app lists', async ({page}, info) => {
  test.setTimeout(90_000);
  await page.goto(url + '/environments');
  await page.getByLabel('API token').fill(kToken);
  const arrived = page.waitForResponse((r) => r.url().includes('/api/v1/environments') && r.status() === 200);
  await page.getByRole('button', {name: 'Sign in'}).click();
  await (await arrived).finished();
  const dataAt = Date.now();
  const prod = page.getByRole('list', {name: 'Apps in prod'});
  await expect(prod.getByRole('link', {name: 'app-000'})).toBeVisible();
  const envRendered = Date.now() - dataAt;
  const items = (name: string) => page.getByRole('list', {name}).getByRole('link').count();
  for (const env of kEnvironments) expect(await items(`Apps in ${env}`), `apps of ${env} in the DOM`).toBeLessThan(60);
  await prod.evaluate((el) => { el.parentElement!.scrollTop = el.parentElement!.scrollHeight; });
  await expect(prod.getByRole('link', {name: 'app-199'})).toBeVisible();
  await expect(prod.getByRole('link', {name: 'app-000'})).toHaveCount(0);
  const envNodes = await page.evaluate(() => document.getElementsByTagName('*').length);
  await page.screenshot({path: join(shots, 'environments-200-apps.png')});
  const axe = await new AxeBuilder({page}).analyze();
  expect(axe.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id}: ${v.help}`),
         'axe-core on the windowed environments').toEqual([]);

  const clustersArrived = page.waitForResponse((r) => r.url().includes('/api/v1/clusters') && r.status() === 200);
  await page.getByRole('link', {name: 'Clusters'}).click();
  await (await clustersArrived).finished();
  const clustersAt = Date.now();
  await expect(page.getByRole('list', {name: 'Apps on prod-3'}).getByRole('link', {name: 'app-000'})).toBeVisible();
  const clustersRendered = Date.now() - clustersAt;
  const links = await page.locator('ul[aria-label^="Apps on"] a').count();
  expect(links, 'app links of the 9 clusters in the DOM (of 1800)').toBeLessThan(9 * 60);
  const clusterNodes = await page.evaluate(() => document.getElementsByTagName('*').length);
  await page.screenshot({path: join(shots, 'clusters-200-apps.png')});

  const figures = `environments page: first app list rendered ${envRendered} ms after the data arrived, ${envNodes} DOM nodes; ` +
    `clusters page: ${clustersRendered} ms, ${links} of 1800 app links and ${clusterNodes} DOM nodes in the DOM`;
  console.log(figures);
  info.annotations.push({type: 'figures', description: figures});
});

test('a run event reaches the runs list within a second of the webhook\'s answer', async ({page, request}, info) => {
  test.setTimeout(60_000);
  await page.goto(url + '/runs');
  await page.getByLabel('API token').fill(kToken);
  await page.getByRole('button', {name: 'Sign in'}).click();
  await expect(page.getByRole('heading', {name: 'CI runs'})).toBeVisible();
  // The runs page subscribes to the events once it has loaded; then the webhook makes a run.
  await page.waitForTimeout(500);
  const figures: number[] = [];
  for (let i = 0; i < 3; i++) {
    // A commit of its own each time (a second push of one commit is a duplicate); the run's row
    // appears whatever the run then does.
    const body = JSON.stringify({
      ref: 'refs/heads/main', before: '0000000000000000000000000000000000000001', after: `${'a'.repeat(39)}${i}`,
      repository: {full_name: 'org/app', clone_url: process.env.GANTRY_REPO}, pusher: {name: 't'}, commits: [],
    });
    const sig = createHmac('sha256', 'scale-hook-secret').update(body).digest('hex');
    // The page notes when a new run's link enters the DOM (a MutationObserver, no polling).
    await page.evaluate(() => {
      const before = new Set([...document.querySelectorAll('a')].map((a) => a.textContent));
      (window as unknown as {seen: Promise<number>}).seen = new Promise<number>((resolve) => {
        const observer = new MutationObserver(() => {
          if ([...document.querySelectorAll('a')].some((a) => /^#\d+$/.test(a.textContent ?? '') && !before.has(a.textContent))) {
            observer.disconnect();
            resolve(Date.now());
          }
        });
        observer.observe(document.body, {subtree: true, childList: true, characterData: true});
      });
    });
    const hook = await request.post(url + '/webhook', {data: body, headers: {
      'Content-Type': 'application/json', 'X-GitHub-Event': 'push', 'X-GitHub-Delivery': `scale-${i}`, 'X-Hub-Signature-256': `sha256=${sig}`}});
    const answered = Date.now();
    expect(hook.status(), await hook.text()).toBe(201);
    const {run} = await hook.json();
    await page.getByRole('link', {name: `#${run}`}).waitFor({timeout: 10_000});
    figures.push(await page.evaluate(() => (window as unknown as {seen: Promise<number>}).seen) - answered);
  }
  const text = `run event → runs list DOM after the webhook's answer: ${figures.join(', ')} ms`;
  console.log(text);
  info.annotations.push({type: 'figures', description: text});
  expect(Math.min(...figures), 'the event arrives (not a reload)').toBeLessThan(10_000);
});
