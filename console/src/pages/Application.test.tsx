import {cleanup, fireEvent, render, screen, waitFor, within} from '@testing-library/react';
import {afterEach, describe, expect, it} from 'vitest';

import {Client} from '../api/client';
import type {ResourceNode} from '../api/contract';
import {layout} from '../components/ResourceGraph';
import {FakeServer, kToken} from '../test/fake';
import {Application, terminateMessage} from './Application';

afterEach(cleanup);

const node = (kind: string, name: string, uid: string, owners: string[], health: string, sync: string): ResourceNode => ({
  group: kind === 'Pod' ? '' : 'apps', version: 'v1', kind, namespace: 'web', name, uid, owners, sync, health: {status: health, message: ''},
});

function appFake(): FakeServer {
  const fake = new FakeServer();
  const op = {release: 3, phase: 'healthy', revision: 'abc', trigger: 'bob', started_at: '2026-12-06T10:00:00Z', finished_at: '2026-12-06T10:01:00Z', message: ''};
  fake.data.apps.web = {
    detail: {
      app: 'web', project: 'default', latest_release: 3, warnings: [],
      targets: [
        {environment: 'dev', cluster: 'dev-1', mode: 'push', release: 3, revision: 'abc1234567', sync: 'OutOfSync', health: 'Progressing',
         behind: 0, message: '', namespace: '', last_operation: op},
        {environment: 'prod', cluster: 'edge-1', mode: 'pull', release: 2, revision: 'abd', sync: 'Synced', health: 'Healthy',
         behind: 1, message: '', namespace: 'gantry', last_operation: null},
      ],
    },
    resources: {
      'dev/dev-1': {environment: 'dev', cluster: 'dev-1', mode: 'push', items: [
        node('Deployment', 'web', 'u1', [], 'Progressing', 'OutOfSync'),
        node('ReplicaSet', 'web-1', 'u2', ['u1'], 'Healthy', ''),
        node('Pod', 'web-1-a', 'u3', ['u2'], 'Degraded', ''),
      ]},
      'prod/edge-1': {environment: 'prod', cluster: 'edge-1', mode: 'pull', items: [node('Deployment', 'web', '', [], 'Healthy', 'Synced')]},
    },
    diff: {'dev/dev-1': {environment: 'dev', cluster: 'dev-1', mode: 'push', items: [{
      group: 'apps', version: 'v1', kind: 'Deployment', namespace: 'web', name: 'web', sync: 'OutOfSync', health: {status: 'Progressing', message: ''},
      diff: '-        image: registry/web:0\n+        image: registry/web:1\n', live: {kind: 'Deployment', metadata: {name: 'web'}},
    }]}},
    events: {'dev/dev-1': {environment: 'dev', cluster: 'dev-1', mode: 'push', items: [{
      type: 'Warning', reason: 'BackOff', message: 'Back-off restarting failed container', count: 3, first_time: null,
      last_time: '2026-12-06T10:00:00Z', object: {kind: 'Pod', namespace: 'web', name: 'web-1-a'}}]},
    'prod/edge-1': {environment: 'prod', cluster: 'edge-1', mode: 'pull', items: []}},
  };
  fake.data.releases.web = [
    {id: 3, app: 'web', config_revision: 'cfg3', source_revision: 'abc1234567', image_digests: {}, supply_chain: {}, started_by: 'bob', run: 7,
     created_at: '2026-12-06T10:00:00Z', targets: [],
     links: {source: 'https://github.com/org/web/commit/abc1234567', config: null, images: {}},
     commit: {title: 'Speed up the cache', author: {name: 'Ada Lovelace', email: 'ada@example.org'}, authored_at: '2026-12-06T09:00:00Z'},
     pull_request: {number: 12, url: 'https://gitea.example/shop/config/pulls/12',
                    merge: {state: 'waiting', method: 'squash', message: 'waiting for required check ci/test (pending)'}}},
    {id: 2, app: 'web', config_revision: 'cfg2', source_revision: 'abd', image_digests: {}, supply_chain: {}, started_by: 'bob', run: null,
     created_at: '2026-12-05T10:00:00Z', targets: [], links: {source: null, config: null, images: {}}, commit: null,
     pull_request: null},
  ];
  return fake;
}

describe('ResourceGraph layout', () => {
  it('nests children under their owners and keeps unowned objects as roots', () => {
    const {roots, children} = layout([node('Deployment', 'web', 'u1', [], 'Healthy', 'Synced'), node('ReplicaSet', 'web-1', 'u2', ['u1'], 'Healthy', ''),
                                      node('Pod', 'orphan', 'u9', ['gone'], 'Healthy', '')]);
    expect(roots.map((r) => r.name)).toEqual(['web', 'orphan']);
    expect(children.get('u1')!.map((c) => c.name)).toEqual(['web-1']);
  });
});

describe('Application', () => {
  it('shows targets, the tree by owner with health colours, events and the release history', async () => {
    const fake = appFake();
    render(<Application client={new Client({token: kToken, fetch: fake.fetch})} app="web" />);
    expect(await screen.findByRole('heading', {name: 'Application web'})).toBeTruthy();
    const tree = await screen.findByRole('list', {name: 'Resource tree'});
    const deployment = within(tree).getByRole('button', {name: /Deployment\s*web\/web/});
    expect(deployment.className).toContain('rg-busy');
    const pod = within(tree).getByRole('button', {name: /Pod\s*web\/web-1-a/});
    expect(pod.className).toContain('rg-bad');
    // The Pod is drawn inside its ReplicaSet, inside the Deployment.
    expect(deployment.parentElement!.contains(pod)).toBe(true);
    expect(await screen.findByText('Back-off restarting failed container')).toBeTruthy();
    expect(await screen.findByRole('heading', {name: 'Release history'})).toBeTruthy();
    expect(await screen.findByRole('link', {name: 'run 7'})).toBeTruthy();
    expect(screen.getByText('Speed up the cache').textContent).toBe('Speed up the cache');
    expect(screen.getByText('by Ada Lovelace')).toBeTruthy();
    // Release 3 went through a pull request the server merges once ci/test passes.
    const pr = screen.getByRole('link', {name: 'Pull request 12'});
    expect(pr.getAttribute('href')).toBe('https://gitea.example/shop/config/pulls/12');
    expect(pr.textContent).toBe('PR #12');
    const merge = screen.getByText(/merging when checks pass/);
    expect(merge.getAttribute('title')).toBe('waiting for required check ci/test (pending)');
    expect(screen.getAllByRole('link', {name: /^Pull request/})).toHaveLength(1);

    fireEvent.click(deployment);
    const detail = await screen.findByLabelText('Object detail');
    expect(within(detail).getByLabelText('Diff').textContent).toContain('+        image: registry/web:1');
    expect(within(detail).getByLabelText('Live manifest').textContent).toContain('"kind": "Deployment"');
  });

  it('syncs only after a confirm that shows the server\'s dry run of it, with prune', async () => {
    const fake = appFake();
    render(<Application client={new Client({token: kToken, fetch: fake.fetch})} app="web" />);
    fireEvent.click(await screen.findByRole('button', {name: 'Sync'}));
    const dialog = await screen.findByRole('dialog', {name: /Sync web to dev\/dev-1/});
    await waitFor(() => expect(within(dialog).getByLabelText('Changes').textContent).toContain('registry/web:1'));
    expect(within(dialog).getByLabelText('Changes').textContent).toContain('dev-1: Deployment web/web');
    const dryRun = ['/api/v1/apps/web/sync', {environment: 'dev', cluster: 'dev-1', prune: false, dry_run: true}];
    expect(fake.requests.filter((r) => r.method === 'POST').map((r) => [r.url, r.body])).toEqual([dryRun]);
    fireEvent.click(within(dialog).getByLabelText('Prune'));
    fireEvent.click(within(dialog).getByRole('button', {name: 'Confirm sync'}));
    expect(await screen.findByRole('status')).toHaveProperty('textContent', 'dev/dev-1: deploying (release #99)');
    const posted = fake.requests.filter((r) => r.method === 'POST');
    expect(posted.map((r) => [r.url, r.body])).toEqual([dryRun, ['/api/v1/apps/web/sync', {environment: 'dev', cluster: 'dev-1', prune: true}]]);
  });

  it('a dry run previews and syncs nothing; a pull target refreshes through its agent', async () => {
    const fake = appFake();
    render(<Application client={new Client({token: kToken, fetch: fake.fetch})} app="web" />);
    fireEvent.click(await screen.findByRole('button', {name: 'Sync'}));
    const dialog = await screen.findByRole('dialog');
    await waitFor(() => expect(within(dialog).getByLabelText('Changes')).toBeTruthy());
    fireEvent.click(within(dialog).getByLabelText('Dry run'));
    fireEvent.click(within(dialog).getByRole('button', {name: 'Preview only'}));
    expect((await screen.findByRole('status')).textContent).toContain('1 object(s) would change; nothing was synced');
    expect(fake.requests.filter((r) => r.method === 'POST').map((r) => r.body)).toEqual([{environment: 'dev', cluster: 'dev-1', prune: false, dry_run: true}]);

    fireEvent.click(screen.getByRole('button', {name: 'prod/edge-1'}));
    await screen.findByRole('heading', {name: 'Resources of prod/edge-1'});
    fireEvent.click(screen.getByRole('button', {name: 'Refresh'}));
    await waitFor(() => expect(screen.getByRole('status').textContent).toBe('prod/edge-1: requested'));
    expect(fake.requests.filter((r) => r.method === 'POST').map((r) => r.body)).toEqual([{environment: 'dev', cluster: 'dev-1', prune: false, dry_run: true}, {environment: 'prod', cluster: 'edge-1'}]);
  });

  it('rolls back the selected environment to a chosen release', async () => {
    const fake = appFake();
    render(<Application client={new Client({token: kToken, fetch: fake.fetch})} app="web" />);
    const select = await screen.findByLabelText('Roll back dev to');
    await waitFor(() => expect(within(select).getAllByRole('option').length).toBe(3));
    fireEvent.change(select, {target: {value: '2'}});
    fireEvent.click(screen.getByRole('button', {name: 'Roll back'}));
    expect((await screen.findByRole('status')).textContent).toBe('Rolling back dev to release #2 (from #2)');
    expect(fake.requests.filter((r) => r.method === 'POST').map((r) => [r.url, r.body]))
      .toEqual([['/api/v1/apps/web/rollback', {environment: 'dev', to_release: 2, project: 'default'}]]);
  });

  it('terminates the running deploy only after a confirm', async () => {
    const fake = appFake();
    render(<Application client={new Client({token: kToken, fetch: fake.fetch})} app="web" />);
    fireEvent.click(await screen.findByRole('button', {name: 'Terminate'}));
    const dialog = await screen.findByRole('dialog', {name: 'Terminate the running operation of web?'});
    expect(fake.requests.filter((r) => r.method === 'POST')).toEqual([]);
    fireEvent.click(within(dialog).getByRole('button', {name: 'Confirm terminate'}));
    expect((await screen.findByRole('status')).textContent).toBe('Stopping the deploy of web at its next step.');
    expect(fake.requests.filter((r) => r.method === 'POST').map((r) => [r.url, r.body])).toEqual([['/api/v1/apps/web/terminate', {}]]);
    expect(screen.queryByRole('dialog')).toBeNull();
  });

  it('says which agents a terminate asked to stop their sync', () => {
    const target = (cluster: string) => ({environment: 'prod', cluster});
    expect(terminateMessage('web', {action: 'terminate', app: 'web', stopping: 'sync', pull_targets: [target('edge-1')], last_event_id: 3}))
      .toBe('Asked the agent of edge-1 to stop the sync of web.');
    expect(terminateMessage('web', {action: 'terminate', app: 'web', stopping: 'deploy', pull_targets: [target('edge-1'), target('edge-2')],
                                    last_event_id: 3}))
      .toBe('Stopping the deploy of web at its next step. Asked the agents of edge-1, edge-2 to stop the sync of web.');
  });

  it('shows a pull target\'s diff as the server renders it, and its preview', async () => {
    const fake = appFake();
    fake.data.apps.web.diff['prod/edge-1'] = {environment: 'prod', cluster: 'edge-1', mode: 'pull', items: [{
      group: 'apps', version: 'v1', kind: 'Deployment', namespace: 'web', name: 'web', sync: 'OutOfSync', health: {status: 'Healthy', message: ''},
      diff: '-        image: registry/web:0\n+        image: registry/web:2\n', live: {kind: 'Deployment'}}]};
    render(<Application client={new Client({token: kToken, fetch: fake.fetch})} app="web" />);
    fireEvent.click(await screen.findByRole('button', {name: 'prod/edge-1'}));
    const tree = await screen.findByRole('list', {name: 'Resource tree'});
    await waitFor(() => expect(fake.requests.some((r) => r.url.startsWith('/api/v1/apps/web/diff?environment=prod'))).toBe(true));
    fireEvent.click(within(tree).getByRole('button', {name: /Deployment\s*web\/web/}));
    const detail = await screen.findByLabelText('Object detail');
    await waitFor(() => expect(within(detail).getByLabelText('Diff').textContent).toContain('+        image: registry/web:2'));
    fireEvent.click(screen.getByRole('button', {name: 'Sync'}));
    const dialog = await screen.findByRole('dialog', {name: /Sync web to prod\/edge-1/});
    await waitFor(() => expect(within(dialog).getByLabelText('Changes').textContent).toContain('edge-1: Deployment web/web'));
  });

  it('reloads the release history when a release event of the app arrives', async () => {
    const fake = appFake();
    render(<Application client={new Client({token: kToken, fetch: fake.fetch})} app="web" />);
    await screen.findByRole('link', {name: 'run 7'});
    await waitFor(() => expect(fake.openStreams).toBe(1));
    fake.data.releases.web = [{...fake.data.releases.web[0], id: 4, run: 8}, ...fake.data.releases.web];
    fake.emit('release', {app: 'web', release: 4, environment: 'dev', cluster: 'dev-1', state: 'applying', message: ''});
    expect(await screen.findByRole('link', {name: 'run 8'})).toBeTruthy();
  });

  it('reloads when an event says the app changed', async () => {
    const fake = appFake();
    render(<Application client={new Client({token: kToken, fetch: fake.fetch})} app="web" />);
    await screen.findByRole('list', {name: 'Resource tree'});
    await waitFor(() => expect(fake.openStreams).toBe(1));
    const details = () => fake.requests.filter((r) => r.url === '/api/v1/apps/web').length;
    const before = details();
    fake.data.apps.web.detail.targets[1].health = 'Degraded';
    fake.emit('app', {app: 'other', namespace: 'gantry', cluster: 'edge-1', environment: 'prod', sync: 'Synced', health: 'Degraded',
                      revision: 'abd', phase: '', deleted: false});
    fake.emit('app', {app: 'web', namespace: 'gantry', cluster: 'edge-1', environment: 'prod', sync: 'Synced', health: 'Degraded',
                      revision: 'abd', phase: '', deleted: false});
    await waitFor(() => expect(within(screen.getByRole('row', {name: /prod\/edge-1/})).queryByText('Degraded')).not.toBeNull());
    expect(details()).toBe(before + 1);
  });
});

