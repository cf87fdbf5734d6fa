import {act, cleanup, fireEvent, render, screen, waitFor, within} from '@testing-library/react';
import {afterEach, beforeEach, describe, expect, it} from 'vitest';

import {App} from '../App';
import {Client} from '../api/client';
import {FakeServer, kToken, run} from '../test/fake';
import {navigate} from '../router';
import {Overview} from './Overview';
import {RunDetail} from './RunDetail';

afterEach(cleanup);
beforeEach(() => {
  sessionStorage.clear();
  localStorage.clear();
  history.replaceState(null, '', '/');
});

function matrixFake(): FakeServer {
  const fake = new FakeServer();
  const cell = (environment: string, cluster: string, mode: 'push' | 'pull', rel: number | null, latest: number,
                state: 'healthy' | 'failed' | 'applying') => ({
    environment, cluster, mode, behind: rel === null ? latest : latest - rel,
    running: rel === null ? null : {release: rel, config_revision: `cfg${rel}0000000`, source_revision: `src${rel}`, image_digests: {}},
    latest: {release: latest, state, message: state === 'failed' ? 'probe failed' : ''},
  });
  fake.data.matrix = {
    environments: ['dev', 'staging', 'prod'],
    warnings: [],
    apps: [
      {app: 'web', cells: [cell('dev', 'dev-1', 'push', 13, 13, 'healthy'), cell('staging', 'stg-1', 'pull', 12, 13, 'applying'),
                           cell('prod', 'prod-1', 'pull', 11, 13, 'failed'), cell('prod', 'prod-2', 'pull', null, 13, 'failed')]},
      {app: 'api', cells: [cell('dev', 'dev-1', 'push', 4, 4, 'healthy')]},
    ],
  };
  return fake;
}

describe('Overview', () => {
  it('shows apps × environments × clusters with release, state, behind and mode', async () => {
    const fake = matrixFake();
    render(<Overview client={new Client({token: kToken, fetch: fake.fetch})} />);
    const table = await screen.findByRole('table');
    const heads = within(table).getAllByRole('columnheader').map((h) => h.textContent);
    expect(heads).toEqual(['App', 'dev', 'staging', 'prod', 'dev-1', 'stg-1', 'prod-1', 'prod-2']);
    const web = within(table).getByRole('row', {name: /^web/});
    const cells = within(web).getAllByRole('cell');
    expect(cells[0].textContent).toContain('#13');
    expect(cells[0].textContent).toContain('healthy');
    expect(cells[0].textContent).toContain('push');
    expect(cells[1].textContent).toContain('1 behind (#13)');
    expect(cells[1].textContent).toContain('pull');
    expect(cells[2].textContent).toContain('probe failed');
    expect(cells[3].textContent).toContain('none');
    // api runs only in dev: the other clusters are empty cells.
    const api = within(table).getByRole('row', {name: /^api/});
    expect(within(api).getAllByRole('cell').slice(1).map((c) => c.textContent)).toEqual(['—', '—', '—']);
  });

  it('filters by app name and links to the app', async () => {
    const fake = matrixFake();
    render(<Overview client={new Client({token: kToken, fetch: fake.fetch})} />);
    await screen.findByRole('table');
    fireEvent.change(screen.getByRole('searchbox', {name: 'Filter apps'}), {target: {value: 'WE'}});
    expect(screen.getAllByRole('row').map((r) => r.textContent?.split('#')[0])).toContain('web');
    expect(screen.queryByRole('link', {name: 'api'})).toBeNull();
    expect(screen.getByRole('link', {name: 'web'}).getAttribute('href')).toBe('/apps/web');
    fireEvent.change(screen.getByRole('searchbox', {name: 'Filter apps'}), {target: {value: 'zzz'}});
    expect(screen.getByText(/No app matches/)).toBeTruthy();
  });

  it('says so when there is nothing yet, and shows the server\'s problem', async () => {
    const fake = new FakeServer();
    render(<Overview client={new Client({token: kToken, fetch: fake.fetch})} />);
    expect(await screen.findByText(/No releases yet/)).toBeTruthy();
    cleanup();
    const broken = async () => new Response(JSON.stringify({type: 'about:blank', title: 'Service Unavailable', status: 503,
                                                            detail: 'store: database is locked', code: 'Unavailable', reason: ''}),
                                            {status: 503, headers: {'Content-Type': 'application/problem+json'}});
    render(<Overview client={new Client({token: kToken, fetch: broken})} />);
    const alert = await screen.findByRole('alert');
    expect(alert.textContent).toContain('503 Service Unavailable');
    expect(alert.textContent).toContain('store: database is locked');
  });

  it('reloads when a release event arrives', async () => {
    const fake = new FakeServer();
    render(<Overview client={new Client({token: kToken, fetch: fake.fetch})} />);
    await screen.findByText(/No releases yet/);
    await waitFor(() => expect(fake.openStreams).toBe(1));
    fake.data.matrix = matrixFake().data.matrix;
    act(() => fake.emit('release', {app: 'web', release: 13, environment: 'dev', cluster: 'dev-1', state: 'healthy'}));
    expect(await screen.findByRole('link', {name: 'web'}, {timeout: 2000})).toBeTruthy();
  });
});

describe('RunDetail', () => {
  it('shows steps and the coloured log, then appends live log lines once', async () => {
    const fake = new FakeServer();
    fake.data.runs = [run(7)];
    fake.data.logs[7] = '==> build <==\n\x1b[32mok\x1b[0m compiled\n';
    render(<RunDetail client={new Client({token: kToken, fetch: fake.fetch})} id={7} />);
    const log = await screen.findByLabelText('Run log');
    await waitFor(() => expect(log.textContent).toContain('ok compiled'));
    expect(log.querySelector('.ansi-fg-2')?.textContent).toBe('ok');
    expect(screen.getByText('build', {selector: '.dag-name'})).toBeTruthy();
    await waitFor(() => expect(fake.openStreams).toBe(1));
    act(() => {
      fake.emit('log', {run: 8, step: 'x', seq: 1, text: 'another run\n'});
      fake.emit('log', {run: 7, step: 'build', seq: 3, text: '\x1b[31mboom\x1b[0m\n'});
      fake.emit('step', {run: 7, name: 'build', state: 'failed'});
      fake.emit('run', {id: 7, state: 'failed'});
    });
    await waitFor(() => expect(log.querySelector('.ansi-fg-1')?.textContent).toBe('boom'));
    expect(log.textContent).not.toContain('another run');
    expect(log.textContent?.match(/compiled/g)).toHaveLength(1);
    expect(screen.getByRole('heading', {level: 1}).textContent).toContain('failed');
    expect(screen.queryByRole('button', {name: 'Cancel'})).toBeNull(); // final: nothing to cancel
  });
});

describe('App', () => {
  it('asks for a token, keeps it in sessionStorage, and goes back to login on 401', async () => {
    const fake = new FakeServer();
    render(<App fetchFn={fake.fetch} />);
    fireEvent.change(screen.getByLabelText('API token'), {target: {value: 'wrong'}});
    fireEvent.click(screen.getByRole('button', {name: 'Sign in'}));
    expect((await screen.findByRole('alert')).textContent).toContain('refused the token');
    expect(sessionStorage.getItem('gantry.token')).toBeNull();

    fireEvent.change(screen.getByLabelText('API token'), {target: {value: ` ${kToken} `}});
    fireEvent.click(screen.getByRole('button', {name: 'Sign in'}));
    expect(await screen.findByRole('heading', {name: 'Overview'})).toBeTruthy();
    expect(sessionStorage.getItem('gantry.token')).toBe(kToken);
    expect(screen.getByRole('link', {name: 'Overview'}).getAttribute('aria-current')).toBe('page');
  });

  it('offers single sign-on when the server has an OIDC provider, and keeps the token it brings back', async () => {
    const fake = new FakeServer();
    fake.data.sso = {issuer: 'https://idp.example', login: '/auth/login'};
    history.replaceState(null, '', '/runs');
    const {unmount} = render(<App fetchFn={fake.fetch} />);
    const link = await screen.findByRole('link', {name: 'Sign in with single sign-on'});
    expect(link.getAttribute('href')).toBe('/auth/login?return=%2Fruns');
    expect(screen.getByText('(https://idp.example)')).toBeTruthy();
    unmount();

    // The server's callback lands on /login#id_token=...&return=...: signed in, on that page, and the
    // token is out of the address bar.
    history.replaceState(null, '', `/login#id_token=${kToken}&return=%2Fruns`);
    render(<App fetchFn={fake.fetch} />);
    expect(await screen.findByRole('heading', {name: /CI runs/})).toBeTruthy();
    expect(sessionStorage.getItem('gantry.token')).toBe(kToken);
    expect(location.pathname).toBe('/runs');
    expect(location.hash).toBe('');
  });

  it('routes by path and toggles the theme', async () => {
    const fake = new FakeServer();
    fake.data.runs = [run(5, {state: 'succeeded'})];
    sessionStorage.setItem('gantry.token', kToken);
    render(<App fetchFn={fake.fetch} />);
    act(() => navigate('/runs'));
    expect(await screen.findByRole('link', {name: '#5'})).toBeTruthy();
    fireEvent.click(screen.getByRole('link', {name: '#5'}));
    expect(await screen.findByRole('heading', {name: /Run #5/})).toBeTruthy();
    expect(location.pathname).toBe('/runs/5');

    const toggle = screen.getByRole('button', {name: /Switch to (dark|light) theme/});
    const before = document.documentElement.dataset.theme;
    fireEvent.click(toggle);
    expect(document.documentElement.dataset.theme).not.toBe(before);
    expect(localStorage.getItem('gantry.theme')).toBe(document.documentElement.dataset.theme);
  });
});
