import {act, cleanup, fireEvent, render, screen, waitFor, within} from '@testing-library/react';
import {afterEach, beforeEach, describe, expect, it} from 'vitest';

import {App} from '../App';
import {Client} from '../api/client';
import type {Cluster, ReleaseFlow as Flow} from '../api/contract';
import {navigate} from '../router';
import {FakeServer, kToken, run} from '../test/fake';
import {Overview} from './Overview';
import {ReleaseFlow, duration} from './ReleaseFlow';
import {Runs} from './Runs';

afterEach(cleanup);
beforeEach(() => {
  sessionStorage.clear();
  history.replaceState(null, '', '/');
});

function flow(over: Partial<Flow> = {}): Flow {
  return {
    id: 14, app: 'web', project: 'default', started_by: 'webhook:github', note: '', created_at: '2026-12-06T10:00:00Z', pull_request: null,
    commit: {repo: 'https://github.com/org/web', ref: 'refs/heads/main', revision: 'c0ffee1234567890', message: 'Speed up the cache\n\nDetails.', url: 'https://github.com/org/web/commit/c0ffee1234567890',
             title: 'Speed up the cache', author: {name: 'Ada Lovelace', email: 'ada@example.org'}, authored_at: '2026-12-06T09:57:00Z'},
    run: {id: 7, pipeline: 'app', state: 'succeeded', started_at: '2026-12-06T09:58:00Z', finished_at: '2026-12-06T09:59:30Z', duration_seconds: 90},
    images: [{name: 'quay.io/org/web', digest: 'sha256:0123456789abcdef0123', reference: 'quay.io/org/web@sha256:0123456789abcdef0123',
              url: 'https://quay.io/repository/org/web/manifest/sha256:0123456789abcdef0123',
              supply_chain: {signature: 'sha256:5151515151515151', provenance: 'sha256:a7a7a7a7a7a7a7a7', sbom: ''}}],
    config: {repo: 'https://git.example/org/config', revision: 'cfg14000000', url: null},
    environments: [
      {name: 'dev', gate: {approval: false, healthy: true, soak_seconds: 0}, approved: false, waiting_approval: false,
       clusters: [{name: 'dev-1', mode: 'push', state: 'healthy', message: '', health: 'Healthy', sync: 'Synced', behind: 0, at: '2026-12-06T10:01:00Z'}]},
      {name: 'prod', gate: {approval: true, healthy: true, soak_seconds: 600}, approved: false, waiting_approval: true,
       clusters: [{name: 'edge-1', mode: 'pull', state: 'behind', message: '', health: 'Healthy', sync: 'Synced', behind: 1, at: null},
                  {name: 'prod-1', mode: 'push', state: 'pending', message: 'waiting for approval', health: null, sync: null, behind: 1, at: null}]},
    ],
    ...over,
  };
}

describe('Release flow', () => {
  it('shows commit → run → image → config → environments with links, and approves a waiting gate', async () => {
    const fake = new FakeServer();
    fake.data.flows['web/14'] = flow();
    fake.data.environments = [{name: 'prod', after: ['dev'], clusters: [], gate: {approval: true, healthy: true, soak_seconds: 600},
                               waiting: [], apps: [], summary: {}}];
    render(<ReleaseFlow client={new Client({token: kToken, fetch: fake.fetch})} app="web" id={14} />);
    const stages = await screen.findByRole('list', {name: 'Release flow'});
    const names = within(stages).getAllByRole('heading').map((h) => h.textContent);
    expect(names).toEqual(['Commit', 'CI run', 'Images', 'Config commit', 'dev', 'prod']);
    expect(screen.getByRole('link', {name: /Commit c0ffee1234567890 on its forge/}).getAttribute('href'))
      .toBe('https://github.com/org/web/commit/c0ffee1234567890');
    expect(screen.getByRole('link', {name: 'run #7'}).getAttribute('href')).toBe('/runs/7');
    expect(within(screen.getByRole('listitem', {name: 'Commit'})).getByText('Speed up the cache')).toBeTruthy();
    expect(within(screen.getByRole('listitem', {name: 'Commit'})).getByLabelText('Author').textContent).toContain('by Ada Lovelace');
    expect(within(screen.getByRole('listitem', {name: 'CI run'})).getByText('1 min 30 s')).toBeTruthy();
    expect(screen.getByRole('link', {name: /Image quay.io\/org\/web@sha256/}).getAttribute('href')).toContain('quay.io/repository/org/web/manifest');
    expect(screen.getByLabelText('Supply chain').textContent).toBe('signed 515151515151 · provenance a7a7a7a7a7a7');
    expect(within(screen.getByRole('listitem', {name: 'Config commit'})).queryByRole('link')).toBeNull();  // no link configured
    const prod = screen.getByRole('listitem', {name: 'Environment prod'});
    expect(prod.textContent).toContain('Gate: approval, healthy, soak 10 min 0 s');
    expect(prod.textContent).toContain('edge-1 pull');
    expect(prod.textContent).toContain('waiting for approval');
    expect(within(screen.getByRole('listitem', {name: 'Environment dev'})).queryByRole('button')).toBeNull();

    fake.data.flows['web/14'] = flow({environments: [flow().environments[0], {...flow().environments[1], approved: true, waiting_approval: false}]});
    fireEvent.click(within(prod).getByRole('button', {name: 'Approve release 14 for prod'}));
    expect((await screen.findByRole('status')).textContent).toContain('approved for prod by fake-user; resume the deploy');
    const approve = fake.requests.find((r) => r.method === 'POST')!;
    expect([approve.url, approve.body]).toEqual(['/api/v1/apps/web/approve', {environment: 'prod', release: 14, project: 'default'}]);
    await waitFor(() => expect(screen.getByRole('listitem', {name: 'Environment prod'}).textContent).toContain('(approved)'));
  });

  it('follows release events without polling, and routes /apps/{app}/releases/{id}', async () => {
    const fake = new FakeServer();
    fake.data.flows['web/14'] = flow();
    sessionStorage.setItem('gantry.token', kToken);
    render(<App fetchFn={fake.fetch} />);
    act(() => navigate('/apps/web/releases/14'));
    await screen.findByRole('heading', {name: 'Release #14 of web'});
    await waitFor(() => expect(fake.openStreams).toBe(1));
    const gets = () => fake.requests.filter((r) => r.url === '/api/v1/apps/web/releases/14').length;
    const before = gets();
    fake.data.flows['web/14'] = flow({environments: [flow().environments[0],
      {...flow().environments[1], waiting_approval: false, clusters: [{...flow().environments[1].clusters[1], state: 'applying'}]}]});
    fake.emit('release', {app: 'web', release: 14, environment: 'prod', cluster: 'prod-1', state: 'applying'});
    await waitFor(() => expect(screen.getByRole('listitem', {name: 'Environment prod'}).textContent).toContain('applying'));
    expect(gets()).toBe(before + 1);
    expect(screen.queryByRole('button', {name: /Approve/})).toBeNull();
  });

  it('names the pull request of a release in pull-request mode, linked, with its merge', async () => {
    const fake = new FakeServer();
    fake.data.flows['web/14'] = flow({pull_request: {number: 12, url: 'https://gitea.example/shop/config/pulls/12',
      merge: {state: 'failed', method: 'squash', message: 'required check ci/test is failure'}}});
    fake.data.flows['web/13'] = flow({id: 13});
    const client = new Client({token: kToken, fetch: fake.fetch});
    render(<ReleaseFlow client={client} app="web" id={14} />);
    const config = await screen.findByRole('listitem', {name: 'Config commit'});
    const pr = within(config).getByRole('link', {name: 'Pull request 12'});
    expect(pr.getAttribute('href')).toBe('https://gitea.example/shop/config/pulls/12');
    expect(pr.textContent).toBe('PR #12');
    const merge = within(config).getByText(/merge failed/);
    expect(merge.getAttribute('title')).toBe('required check ci/test is failure');
    cleanup();
    // A release that pushed its config commit names no pull request.
    render(<ReleaseFlow client={client} app="web" id={13} />);
    const pushed = await screen.findByRole('listitem', {name: 'Config commit'});
    expect(within(pushed).queryByText(/PR #/)).toBeNull();
    expect(screen.queryAllByRole('link', {name: /^Pull request/})).toHaveLength(0);
  });

  it('says what is missing', async () => {
    const fake = new FakeServer();
    render(<ReleaseFlow client={new Client({token: kToken, fetch: fake.fetch})} app="web" id={3} />);
    expect((await screen.findByRole('alert')).textContent).toContain('no release 3 of web');
    expect(duration(3725)).toBe('1 h 2 min');
  });
});

describe('Windowed tables', () => {
  const apps = 200;
  function bigMatrix(): FakeServer {
    const fake = new FakeServer();
    const envs = ['dev', 'staging', 'prod'];
    fake.data.matrix = {environments: envs, warnings: [], apps: Array.from({length: apps}, (_, i) => ({
      app: `app-${String(i).padStart(3, '0')}`,
      cells: envs.flatMap((e) => [1, 2, 3].map((n) => ({environment: e, cluster: `${e}-${n}`, mode: n === 3 ? 'pull' as const : 'push' as const,
        running: {release: i + 1, config_revision: 'cfg', source_revision: 'src', image_digests: {}},
        latest: {release: i + 1, state: 'healthy' as const, message: ''}, behind: 0}))),
    }))};
    return fake;
  }

  it('the overview keeps only the rows in view in the DOM and follows the scroll', async () => {
    const fake = bigMatrix();
    render(<Overview client={new Client({token: kToken, fetch: fake.fetch})} />);
    const table = await screen.findByRole('table');
    expect(table.getAttribute('aria-rowcount')).toBe(String(apps + 2));
    const rows = () => within(table).getAllByRole('row').filter((r) => r.getAttribute('aria-rowindex'));
    expect(rows().length).toBeLessThan(40);
    expect(rows()[0].textContent).toContain('app-000');
    const wrap = table.parentElement!;
    expect(wrap.className).toContain('virtual');
    wrap.scrollTop = 100 * 64;  // the estimated row height (jsdom lays nothing out)
    act(() => { wrap.dispatchEvent(new Event('scroll')); });
    await waitFor(() => expect(rows().some((r) => r.textContent?.includes('app-100'))).toBe(true));
    expect(rows().some((r) => r.textContent?.includes('app-000'))).toBe(false);
    expect(rows().length).toBeLessThan(40);
    // Filtering works over every app, not only those in view.
    fireEvent.change(screen.getByRole('searchbox'), {target: {value: 'app-199'}});
    await waitFor(() => expect(rows().map((r) => r.querySelector('th')?.textContent)).toEqual(['app-199']));
  });

  it('a short list renders whole and the runs list windows once it is long', async () => {
    const fake = new FakeServer();
    fake.data.runs = Array.from({length: 20}, (_, i) => run(20 - i));
    const {unmount} = render(<Runs client={new Client({token: kToken, fetch: fake.fetch})} />);
    const table = await screen.findByRole('table');
    expect(within(table).getAllByRole('row')).toHaveLength(21);
    expect(table.parentElement!.className).not.toContain('virtual');
    unmount();
    fake.data.runs = Array.from({length: 450}, (_, i) => run(450 - i));
    render(<Runs client={new Client({token: kToken, fetch: fake.fetch})} />);
    const long = await screen.findByRole('table');
    for (let shown = 50; shown < 450; shown += 50) {
      await waitFor(() => expect(long.getAttribute('aria-rowcount')).toBe(String(shown + 1)));
      fireEvent.click(screen.getByRole('button', {name: 'Load more'}));
    }
    await waitFor(() => expect(long.getAttribute('aria-rowcount')).toBe('451'));
    expect(within(long).getAllByRole('row').length).toBeLessThan(50);
  });
});

describe('Paged lists', () => {
  it('the client follows next through every page of clusters', async () => {
    const fake = new FakeServer();
    fake.data.clusters = Array.from({length: 620}, (_, i) => ({name: `c-${i}`, environment: 'dev', mode: 'push', server: null, reachable: true,
      kube_version: null, labels: {}, apps: [], last_error: null}) as Cluster);
    const list = await new Client({token: kToken, fetch: fake.fetch}).clusters();
    expect(list.items).toHaveLength(620);
    expect(list.items[619].name).toBe('c-619');
    expect(fake.requests.map((r) => r.url)).toEqual(['/api/v1/clusters?limit=500', '/api/v1/clusters?limit=500&cursor=501']);
  });
});
