import {act, cleanup, fireEvent, render, screen, waitFor, within} from '@testing-library/react';
import {afterEach, beforeEach, describe, expect, it} from 'vitest';

import {App} from '../App';
import {Client} from '../api/client';
import type {Environment} from '../api/contract';
import {navigate} from '../router';
import {FakeServer, kToken} from '../test/fake';
import {Clusters} from './Clusters';
import {Environments} from './Environments';

afterEach(cleanup);
beforeEach(() => {
  sessionStorage.clear();
  history.replaceState(null, '', '/');
});

function env(name: string, over: Partial<Environment> = {}): Environment {
  return {name, after: [], clusters: [], gate: {approval: false, healthy: true, soak_seconds: 0}, waiting: [], apps: [], summary: {}, ...over};
}

function fakeWithData(): FakeServer {
  const fake = new FakeServer();
  fake.data.clusters = [
    {name: 'dev-1', environment: 'dev', mode: 'push', server: 'https://10.0.0.1:6443', reachable: true, kube_version: 'v1.31.2',
     labels: {region: 'eu'}, last_error: null,
     apps: [{app: 'web', environment: 'dev', release: 13, revision: 'abc', state: 'healthy', health: 'Healthy', behind: 0}]},
    {name: 'edge-1', environment: 'prod', mode: 'pull', server: null, reachable: false, kube_version: null, labels: {},
     last_error: 'unreachable: dial tcp 10.0.0.9:6443: connection refused', apps: []},
  ];
  fake.data.environments = [
    env('dev', {clusters: [{name: 'dev-1', mode: 'push'}], apps: [{app: 'web', health: 'Healthy', release: 13, behind: 0}],
                summary: {Healthy: 1}}),
    env('prod', {after: ['dev'], clusters: [{name: 'edge-1', mode: 'pull'}, {name: 'prod-1', mode: 'push'}],
                 gate: {approval: true, healthy: true, soak_seconds: 600},
                 waiting: [{app: 'web', release: 13, project: 'shop', source_revision: 'abc', config_revision: 'def0123456789',
                            created_at: '2026-01-02T03:04:05Z'}],
                 apps: [{app: 'web', health: 'Degraded', release: 12, behind: 1}], summary: {Degraded: 1}}),
  ];
  return fake;
}

describe('Clusters', () => {
  it('shows each cluster with its mode, reachability, version, labels and apps', async () => {
    const fake = fakeWithData();
    render(<Clusters client={new Client({token: kToken, fetch: fake.fetch})} />);
    const table = await screen.findByRole('table');
    const dev = within(table).getByRole('row', {name: /^dev-1/});
    expect(dev.textContent).toContain('https://10.0.0.1:6443');
    expect(dev.textContent).toContain('push');
    expect(dev.textContent).toContain('reachable');
    expect(dev.textContent).toContain('v1.31.2');
    expect(dev.textContent).toContain('region=eu');
    expect(within(dev).getByRole('link', {name: 'web'}).getAttribute('href')).toBe('/apps/web');
    const edge = within(table).getByRole('row', {name: /^edge-1/});
    expect(edge.textContent).toContain('unreachable');
    expect(edge.textContent).toContain('connection refused');
    expect(edge.textContent).toContain('pull');
  });

  it('says so when the server has no clusters', async () => {
    render(<Clusters client={new Client({token: kToken, fetch: new FakeServer().fetch})} />);
    expect(await screen.findByText(/No clusters/)).toBeTruthy();
  });
});

describe('Environments', () => {
  it('shows promotion order as columns with clusters, gates and apps', async () => {
    const fake = fakeWithData();
    render(<Environments client={new Client({token: kToken, fetch: fake.fetch})} />);
    const order = await screen.findByRole('list', {name: 'Promotion order'});
    const cols = within(order).getAllByRole('heading', {level: 2}).map((h) => h.textContent);
    expect(cols).toEqual(['dev', 'prod']);
    const prod = screen.getByRole('listitem', {name: 'prod'});
    expect(prod.textContent).toContain('after dev');
    expect(prod.textContent).toContain('approval required');
    expect(prod.textContent).toContain('soak 600 s');
    expect(prod.textContent).toContain('edge-1');
    expect(prod.textContent).toContain('1 Degraded');
    const dev = screen.getByRole('listitem', {name: 'dev'});
    expect(dev.textContent).toContain('no approval');
    expect(within(dev).queryByRole('button')).toBeNull();
  });

  it('approves a waiting release through POST /apps/{app}/approve', async () => {
    const fake = fakeWithData();
    render(<Environments client={new Client({token: kToken, fetch: fake.fetch})} />);
    const approve = await screen.findByRole('button', {name: 'Approve release 13 of web for prod'});
    fireEvent.click(approve);
    expect(await screen.findByRole('status')).toHaveProperty('textContent', expect.stringContaining('Release #13 of web approved for prod'));
    const post = fake.requests.find((r) => r.method === 'POST');
    expect(post?.url).toBe('/api/v1/apps/web/approve');
    expect(post?.body).toEqual({environment: 'prod', release: 13, project: 'shop'});
    await waitFor(() => expect(screen.queryByRole('button', {name: /^Approve release/})).toBeNull());
    expect(screen.getByRole('listitem', {name: 'prod'}).textContent).toContain('nothing');
  });

  it('shows a refused approval as the server\'s problem', async () => {
    const fake = fakeWithData();
    const refusing: typeof fetch = async (input, init) => {
      if (init?.method === 'POST') {
        return new Response(JSON.stringify({type: 'about:blank', title: 'Forbidden', status: 403, code: 'PermissionDenied', reason: '',
                                            detail: 'alice may not releases.approve on project shop'}),
                            {status: 403, headers: {'Content-Type': 'application/problem+json'}});
      }
      return fake.fetch(input, init);
    };
    render(<Environments client={new Client({token: kToken, fetch: refusing})} />);
    fireEvent.click(await screen.findByRole('button', {name: /^Approve release 13/}));
    const alert = await screen.findByRole('alert');
    expect(alert.textContent).toContain('403 Forbidden');
    expect(alert.textContent).toContain('releases.approve');
    expect((screen.getByRole('button', {name: /^Approve release 13/}) as HTMLButtonElement).disabled).toBe(false);
  });
});

describe('navigation', () => {
  it('links the Environments and Clusters pages from the main navigation', async () => {
    sessionStorage.setItem('gantry.token', kToken);
    const fake = fakeWithData();
    render(<App fetchFn={fake.fetch} />);
    const nav = screen.getByRole('navigation', {name: 'Main'});
    fireEvent.click(within(nav).getByRole('link', {name: 'Environments'}));
    expect(await screen.findByRole('heading', {name: 'Environments', level: 1})).toBeTruthy();
    expect(location.pathname).toBe('/environments');
    fireEvent.click(within(nav).getByRole('link', {name: 'Clusters'}));
    expect(await screen.findByRole('heading', {name: 'Clusters', level: 1})).toBeTruthy();
    expect(within(nav).getByRole('link', {name: 'Clusters'}).getAttribute('aria-current')).toBe('page');
    navigate('/');
  });
});

describe('Per-app lists at scale', () => {
  const names = Array.from({length: 200}, (_, i) => `app-${String(i).padStart(3, '0')}`);

  it('an environment\'s 200 apps are a window that follows the scroll', async () => {
    const fake = new FakeServer();
    fake.data.environments = [env('dev', {apps: names.map((app) => ({app, health: 'Healthy', release: 1, behind: 0})), summary: {Healthy: 200}})];
    render(<Environments client={new Client({token: kToken, fetch: fake.fetch})} />);
    const list = await screen.findByRole('list', {name: 'Apps in dev'});
    const shown = () => within(list).queryAllByRole('link').map((a) => a.textContent);
    expect(shown().length).toBeLessThan(60);
    expect(shown()[0]).toBe('app-000');
    const wrap = list.parentElement!;
    expect(wrap.className).toContain('virtual');
    wrap.scrollTop = 150 * 26;  // the estimated row height (jsdom lays nothing out)
    act(() => { wrap.dispatchEvent(new Event('scroll')); });
    await waitFor(() => expect(shown()).toContain('app-160'));
    expect(shown()).not.toContain('app-000');
    expect(shown().length).toBeLessThan(60);
    expect(screen.getByText('200 Healthy')).toBeTruthy();  // the summary counts every app
  });

  it('a cluster\'s 200 apps are windowed and a short list renders whole', async () => {
    const fake = fakeWithData();
    fake.data.clusters[1].apps = names.map((app) => ({app, environment: 'prod', release: 1, revision: 'abc', state: 'healthy', health: 'Healthy', behind: 0}));
    render(<Clusters client={new Client({token: kToken, fetch: fake.fetch})} />);
    const edge = await screen.findByRole('list', {name: 'Apps on edge-1'});
    expect(within(edge).getAllByRole('link').length).toBeLessThan(60);
    expect(edge.parentElement!.className).toContain('virtual');
    const dev = screen.getByRole('list', {name: 'Apps on dev-1'});
    expect(within(dev).getAllByRole('link').map((a) => a.textContent)).toEqual(['web']);
    expect(dev.parentElement!.className).not.toContain('virtual');
  });
});
