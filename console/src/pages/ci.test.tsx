import {act, cleanup, fireEvent, render, screen, waitFor} from '@testing-library/react';
import {afterEach, beforeEach, describe, expect, it} from 'vitest';

import {Client} from '../api/client';
import {FakeServer, kToken, run} from '../test/fake';
import {Pipelines} from './Pipelines';
import {Projects} from './Projects';
import {RunDetail, splitLog} from './RunDetail';
import {Tokens} from './Tokens';

afterEach(cleanup);
beforeEach(() => history.replaceState(null, '', '/'));

const client = (fake: FakeServer) => new Client({token: kToken, fetch: fake.fetch});

describe('splitLog', () => {
  it('cuts the run log into its steps', () => {
    const text = '==> build <==\ncompiled\n==> test (a, b) <==\nok 1\nok 2\n==> deploy <==\n==> build <==\nmore\n';
    expect(splitLog(text)).toEqual({build: 'compiled\nmore\n', 'test (a, b)': 'ok 1\nok 2\n', deploy: ''});
  });
});

describe('RunDetail actions', () => {
  it('retries a finished run after a confirmation and opens the new run, which says what it retries', async () => {
    const fake = new FakeServer();
    fake.data.runs = [run(7, {state: 'failed', finished_at: '2026-01-02T03:05:00Z',
                              steps: [{name: 'build', state: 'succeeded', exit_code: 0, started_at: null, finished_at: null, needs: [], attempts: 1},
                                      {name: 'test', state: 'failed', exit_code: 1, started_at: null, finished_at: null, needs: ['build'], attempts: 2}]})];
    fake.data.logs[7] = '==> build <==\ncompiled\n==> test <==\nFAIL x_test\n';
    render(<RunDetail client={client(fake)} id={7} />);
    const log = await screen.findByLabelText('Run log');
    await waitFor(() => expect(log.textContent).toContain('FAIL'));
    // The DAG: test needs build; clicking it shows its log only.
    const test = await screen.findByRole('button', {name: /^test/});
    expect(test.getAttribute('title')).toBe('needs build');
    fireEvent.click(test);
    await waitFor(() => expect(log.textContent).toBe('FAIL x_test\n'));
    // A live line of another step is not shown with test's; one of test is.
    await waitFor(() => expect(fake.openStreams).toBe(1));
    act(() => {
      fake.emit('log', {run: 7, step: 'docs', seq: 1, text: 'docs built\n'});
      fake.emit('log', {run: 7, step: 'test', seq: 2, text: 'retrying x_test\n'});
    });
    await waitFor(() => expect(log.textContent).toBe('FAIL x_test\nretrying x_test\n'));
    fireEvent.click(screen.getByRole('button', {name: 'Retry'}));
    expect(screen.getByRole('alertdialog').textContent).toContain('builds the same commit again');
    expect(fake.requests.some((r) => r.method === 'POST')).toBe(false); // not before the confirmation
    fireEvent.click(screen.getAllByRole('button', {name: 'Retry'})[1]);
    await waitFor(() => expect(location.pathname).toBe('/runs/8'));
    expect(fake.data.runs[0].retry_of).toBe(7);
  });

  it('disables Approve and run with the reason when the server answers 403', async () => {
    const fake = new FakeServer();
    fake.data.runs = [run(9, {state: 'awaiting_approval', steps: []})];
    fake.data.forbidden = ['POST /runs/9/approve'];
    render(<RunDetail client={client(fake)} id={9} />);
    fireEvent.click(await screen.findByRole('button', {name: 'Approve and run'}));
    expect(screen.getByRole('alertdialog').textContent).toContain('untrusted');
    fireEvent.click(screen.getAllByRole('button', {name: 'Approve and run'})[1]);
    const button = screen.getByRole('button', {name: 'Approve and run'}) as HTMLButtonElement;
    await waitFor(() => expect(button.disabled).toBe(true));
    expect(button.title).toContain('lacks the permission');
    expect(screen.getByText(/You may not approve this run/)).toBeTruthy();
  });

  it('reads the run and its log again once the event stream is open, so a change before that is not lost', async () => {
    const fake = new FakeServer();
    fake.data.runs = [run(10, {state: 'running', steps: []})];
    fake.data.logs[10] = '==> build <==\ncompiling\n';
    let open!: () => void;
    fake.eventsOpen = new Promise((resolve) => (open = resolve));
    render(<RunDetail client={client(fake)} id={10} />);
    await screen.findByText('running');
    // The run ends while the stream is still opening: its events go to no one.
    fake.data.runs[0].state = 'succeeded';
    fake.data.logs[10] += 'compiled\n';
    open();
    await waitFor(() => expect(screen.getByRole('heading', {name: /Run #10/}).textContent).toContain('succeeded'));
    await waitFor(() => expect(screen.getByLabelText('Run log').textContent).toBe('==> build <==\ncompiling\ncompiled\n'));
  });

  it('shows which run a retry retries', async () => {
    const fake = new FakeServer();
    fake.data.runs = [run(8, {retry_of: 7})];
    render(<RunDetail client={client(fake)} id={8} />);
    expect((await screen.findByRole('link', {name: 'Run #7'})).getAttribute('href')).toBe('/runs/7');
  });
});

describe('Tokens', () => {
  it('creates a token showing its secret once, and revokes after a confirmation', async () => {
    const fake = new FakeServer();
    fake.data.tokens = [{id: 't-1', name: 'old', kind: 'user', owner: 'admin', roles: [], created_by: 'admin', created_at: '2026-01-02T03:04:05Z',
                         expires_at: null, last_used_at: null, revoked_at: null, revoked_by: ''}];
    render(<Tokens client={client(fake)} />);
    expect(await screen.findByText('old')).toBeTruthy();
    fireEvent.change(screen.getByLabelText('Name'), {target: {value: 'ci'}});
    fireEvent.change(screen.getByLabelText(/Robot token of project/), {target: {value: 'team-a'}});
    fireEvent.change(screen.getByLabelText('Role'), {target: {value: 'deployer'}});
    fireEvent.click(screen.getByRole('button', {name: 'Create token'}));
    expect((await screen.findByLabelText('New token secret')).textContent).toMatch(/^gty_f{64}$/);
    expect(fake.requests.find((r) => r.method === 'POST')?.body).toEqual({name: 'ci', project: 'team-a', roles: ['deployer']});
    fireEvent.click(await screen.findByRole('button', {name: 'Revoke t-1 old'}));
    fireEvent.click(screen.getByRole('button', {name: 'Revoke'}));
    await waitFor(() => expect(screen.getByText(/revoked .* by fake-user/)).toBeTruthy());
  });
});

describe('Pipelines and Projects', () => {
  it('list pipelines with their DAG and projects with their rules', async () => {
    const fake = new FakeServer();
    fake.data.pipelines = [{repo: 'https://git.example/org/app', project: 'team-a', last_run: null, steps_from_run: 3,
                            steps: [{name: 'build', state: 'succeeded', exit_code: 0, started_at: null, finished_at: null, needs: [], attempts: 1},
                                    {name: 'test', state: 'succeeded', exit_code: 0, started_at: null, finished_at: null, needs: ['build'], attempts: 1}]}];
    fake.data.projects = [{name: 'team-a', description: 'Team A', built_in: false, source_repos: ['https://git.example/team-a/*'],
                           destinations: [{server: '*', name: '', namespace: 'team-a-*'}], ci_repos: [], roles: null}];
    const {container} = render(<><Pipelines client={client(fake)} /><Projects client={client(fake)} /></>);
    expect(await screen.findByText('never ran')).toBeTruthy();
    expect(container.querySelector('path[data-edge="build->test"]')).toBeTruthy();
    expect(await screen.findByText('* → team-a-*')).toBeTruthy();
    expect(screen.getByText('shown to who manages its roles')).toBeTruthy();
  });
});
