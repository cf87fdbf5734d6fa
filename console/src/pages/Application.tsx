// One application: its targets (environment × cluster, push or pull), the selected target's
// resource tree, an object's live manifest and diff (a pull target's rendered as its agent does),
// its Kubernetes events; Sync (with prune and dry-run, after a confirm that shows the diff),
// Refresh, Rollback to a chosen release, Terminate the deploy the server runs (after a confirm);
// and the release history. It reloads when the server's events say the app changed.

import {useEffect, useRef, useState} from 'react';

import type {Client, TargetRef} from '../api/client';
import {subscribe} from '../api/events';
import type {AppTargetDetail, ResourceNode, SyncPreview, Terminated} from '../api/contract';
import {ErrorBox, StateBadge, short, time, useLoad} from '../components/common';
import {ResourceGraph, healthClass, nodeKey} from '../components/ResourceGraph';
import {Link} from '../router';
import {Releases} from './Releases';

const targetKey = (t: TargetRef) => `${t.environment}/${t.cluster}`;

function TargetRow({t, selected, onSelect}: {t: AppTargetDetail; selected: boolean; onSelect: () => void}) {
  const op = t.last_operation;
  return (
    <tr aria-selected={selected}>
      <td>
        <button type="button" aria-pressed={selected} onClick={onSelect}>{t.environment}/{t.cluster}</button>
      </td>
      <td>{t.mode}</td>
      <td>{t.release !== null ? `#${t.release}` : '—'}<div className="muted mono">{short(t.revision)}</div></td>
      <td>{t.sync || '—'}</td>
      <td><span className={`badge badge-${healthClass(t.health)}`}>{t.health || '—'}</span></td>
      <td>{t.behind > 0 ? `${t.behind} behind` : 'current'}</td>
      <td>{op ? <><StateBadge state={op.phase.toLowerCase()} /> <span className="muted">{time(op.finished_at ?? op.started_at)}</span>
        {op.message && <div className="muted">{op.message}</div>}</> : '—'}</td>
    </tr>
  );
}

// The confirm of a sync: its options and what it would change, as the server's dry run of this very
// sync says (POST .../sync with dry_run: a push sync deploys every cluster of the environment, so
// each of them is shown; a pull target is rendered as its agent would, or the server says why not).
function SyncConfirm({client, app, target, onDone, onCancel}: {
  client: Client; app: string; target: AppTargetDetail; onDone: (message: string) => void; onCancel: () => void;
}) {
  const [prune, setPrune] = useState(false);
  const [dryRun, setDryRun] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const diff = useLoad<SyncPreview>(() => client.syncPreview(app, target, false), [client, app, target]);
  const unknown = (diff.data?.targets ?? []).filter((t) => t.items === null);
  const changes = (diff.data?.targets ?? []).flatMap((t) => (t.items ?? []).filter((d) => d.sync !== 'Synced').map((d) => ({cluster: t.cluster, d})));
  const confirm = () => {
    if (dryRun) {
      onDone(`Dry run: ${changes.length} object(s) would change; nothing was synced.`);
      return;
    }
    setBusy(true);
    client.sync(app, target, prune).then(
      (r) => onDone(r.targets.map((t) => `${t.environment}/${t.cluster}: ${t.result}${t.release !== null ? ` (release #${t.release})` : ''}`).join('; ')),
      (e: Error) => {
        setBusy(false);
        setError(e);
      });
  };
  return (
    <div className="confirm" role="dialog" aria-modal="false" aria-labelledby="sync-title">
      <h3 id="sync-title">Sync {app} to {targetKey(target)}</h3>
      <div className="actions">
        <label><input type="checkbox" checked={prune} disabled={target.mode === 'pull'} onChange={(e) => setPrune(e.target.checked)} /> Prune</label>
        <label><input type="checkbox" checked={dryRun} onChange={(e) => setDryRun(e.target.checked)} /> Dry run</label>
      </div>
      {target.mode === 'pull' && <p className="muted">The agent of {target.cluster} syncs it; it prunes as the Application's syncPolicy says.</p>}
      {diff.error && <ErrorBox error={diff.error} />}
      {unknown.map((t) => <p key={t.cluster} className="muted">{t.cluster}: no diff ({t.message})</p>)}
      {diff.data && unknown.length === 0 && (changes.length === 0 ? <p>Live matches desired: nothing to change.</p> : (
        <div aria-label="Changes">
          {changes.map(({cluster, d}) => (
            <details key={`${cluster}/${nodeKey(d)}`} open>
              <summary>{cluster}: {d.kind} {d.namespace ? `${d.namespace}/` : ''}{d.name} — {d.sync}</summary>
              <pre className="diff">{d.diff}</pre>
            </details>
          ))}
        </div>
      ))}
      {error && <ErrorBox error={error} />}
      <div className="actions">
        <button type="button" onClick={confirm} disabled={busy || diff.loading}>
          {dryRun ? 'Preview only' : 'Confirm sync'}
        </button>
        <button type="button" onClick={onCancel}>Cancel</button>
      </div>
    </div>
  );
}

// The confirm of Terminate: the app's deploy, resume or rollback the server runs stops at its next
// check, and so do its pull targets' running syncs (their agents stop them); a deploy's pending
// targets stay for Resume.
// What a terminate answered, for the user: what the server stops, and which agents were asked.
export function terminateMessage(app: string, r: Terminated): string {
  const parts: string[] = [];
  if (r.stopping !== 'sync') parts.push(`Stopping the ${r.stopping} of ${app} at its next step.`);
  if (r.pull_targets.length > 0) {
    parts.push(`Asked the agent${r.pull_targets.length > 1 ? 's' : ''} of ${r.pull_targets.map((t) => t.cluster).join(', ')} to stop the sync of ${app}.`);
  }
  return parts.join(' ');
}

function TerminateConfirm({client, app, onDone, onCancel}: {
  client: Client; app: string; onDone: (message: string) => void; onCancel: () => void;
}) {
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  const confirm = () => {
    setBusy(true);
    client.terminate(app).then((r) => onDone(terminateMessage(app, r)), (e: Error) => {
      setBusy(false);
      setError(e);
    });
  };
  return (
    <div className="confirm" role="dialog" aria-modal="false" aria-labelledby="terminate-title">
      <h3 id="terminate-title">Terminate the running operation of {app}?</h3>
      <p>The deploy, resume or rollback the server runs for {app} stops at its next step, also while it waits
        for health; a deploy's pending targets stay pending, for Resume. A pull target's running sync is
        stopped by its agent, which does not sync that revision again until asked.</p>
      {error && <ErrorBox error={error} />}
      <div className="actions">
        <button type="button" onClick={confirm} disabled={busy}>Confirm terminate</button>
        <button type="button" onClick={onCancel}>Cancel</button>
      </div>
    </div>
  );
}

function Rollback({client, app, project, environment, onDone}: {
  client: Client; app: string; project: string; environment: string; onDone: (message: string) => void;
}) {
  const releases = useLoad(() => client.releases(app), [client, app]);
  const [to, setTo] = useState('');
  const [error, setError] = useState<Error | null>(null);
  const go = () => {
    client.rollback(app, project, environment, Number(to)).then(
      (r) => onDone(`Rolling back ${environment} to release #${r.release} (from #${r.from_release ?? '—'})`), setError);
  };
  return (
    <div className="actions">
      <label htmlFor="rollback-to">Roll back {environment} to</label>
      <select id="rollback-to" value={to} onChange={(e) => setTo(e.target.value)}>
        <option value="">choose a release</option>
        {(releases.data?.items ?? []).map((r) => <option key={r.id} value={r.id}>#{r.id} {short(r.source_revision)} ({time(r.created_at)})</option>)}
      </select>
      <button type="button" onClick={go} disabled={!to}>Roll back</button>
      {error && <ErrorBox error={error} />}
    </div>
  );
}

export function Application({client, app}: {client: Client; app: string}) {
  const detail = useLoad(() => client.app(app), [client, app]);
  const [picked, setPicked] = useState<string | null>(null);
  const targets = detail.data?.targets ?? [];
  const target = targets.find((t) => targetKey(t) === picked) ?? targets[0] ?? null;
  const ref = target ? {environment: target.environment, cluster: target.cluster} : null;
  const refKey = ref ? targetKey(ref) : '';
  const tree = useLoad(() => (ref ? client.resources(app, ref) : Promise.resolve(null)), [client, app, refKey]);
  const events = useLoad(() => (ref ? client.events(app, ref) : Promise.resolve(null)), [client, app, refKey]);
  const diff = useLoad(() => (ref ? client.diff(app, ref) : Promise.resolve(null)), [client, app, refKey]);
  const [node, setNode] = useState<ResourceNode | null>(null);
  const [syncing, setSyncing] = useState(false);
  const [terminating, setTerminating] = useState(false);
  const [releasesVersion, setReleasesVersion] = useState(0);
  const [notice, setNotice] = useState<string | null>(null);
  const [actionError, setActionError] = useState<Error | null>(null);
  // Another target shown closes what was open for the last one. Not the first target shown: a
  // click on Sync as the page first loads could land before this effect and be undone by it.
  const shownKey = useRef('');
  useEffect(() => {
    const was = shownKey.current;
    shownKey.current = refKey;
    if (was === '' || was === refKey) return;
    setNode(null);
    setSyncing(false);
  }, [refKey]);

  // Live: a release target or a pull Application of this app changed.
  const reloadDetail = detail.reload;
  const reloadTree = tree.reload;
  const reloadDiff = diff.reload;
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let releases = false;
    const stop = subscribe(client, (name, data) => {
      if ((name !== 'release' && name !== 'app') || (data as {app: string}).app !== app) return;
      releases = releases || name === 'release';
      clearTimeout(timer);
      timer = setTimeout(() => {
        reloadDetail();
        reloadTree();
        reloadDiff();
        if (releases) setReleasesVersion((v) => v + 1);
        releases = false;
      }, 200);
    }, {
      // What was read before the stream was open may have changed unannounced.
      onOpen: () => {
        reloadDetail();
        reloadTree();
        reloadDiff();
      },
    });
    return () => {
      clearTimeout(timer);
      stop();
    };
  }, [client, app, reloadDetail, reloadTree, reloadDiff]);

  const done = (message: string) => {
    setSyncing(false);
    setTerminating(false);
    setNotice(message);
    detail.reload();
    tree.reload();
    diff.reload();
  };
  const refresh = () => {
    if (!ref) return;
    client.refresh(app, ref).then((r) => done(r.targets.map((t) => `${t.environment}/${t.cluster}: ${t.result}`).join('; ')), setActionError);
  };
  const objectDiff = node ? diff.data?.items.find((d) => nodeKey(d) === nodeKey(node)) : undefined;

  return (
    <section aria-labelledby="app-title">
      <p><Link href="/">← Overview</Link></p>
      <h1 id="app-title">Application {app}</h1>
      {detail.error && <ErrorBox error={detail.error} />}
      {detail.data && (
        <>
          <p className="muted">Project {detail.data.project}{detail.data.latest_release !== null ? ` · newest release #${detail.data.latest_release}` : ''}</p>
          {detail.data.warnings.map((w) => <div key={w} className="error" role="alert">{w}</div>)}
          <h2>Targets</h2>
          <div className="table-wrap">
            <table>
              <thead>
                <tr><th scope="col">Target</th><th scope="col">Mode</th><th scope="col">Running</th><th scope="col">Sync</th>
                  <th scope="col">Health</th><th scope="col">Behind</th><th scope="col">Last operation</th></tr>
              </thead>
              <tbody>
                {targets.map((t) => <TargetRow key={targetKey(t)} t={t} selected={t === target} onSelect={() => setPicked(targetKey(t))} />)}
              </tbody>
            </table>
          </div>
          {targets.length === 0 && <p className="empty-state">{app} has no targets yet.</p>}
        </>
      )}
      {target && (
        <>
          <div className="actions">
            <button type="button" onClick={() => setSyncing(true)}>Sync</button>
            <button type="button" onClick={refresh} disabled={target.mode === 'push'} title={target.mode === 'push' ? 'push targets are read live' : undefined}>Refresh</button>
            <button type="button" onClick={() => setTerminating(true)}>Terminate</button>
          </div>
          {target.mode === 'push' && detail.data && (
            <Rollback client={client} app={app} project={detail.data.project} environment={target.environment} onDone={done} />
          )}
          {notice && <p role="status">{notice}</p>}
          {actionError && <ErrorBox error={actionError} />}
          {terminating && <TerminateConfirm client={client} app={app} onDone={done} onCancel={() => setTerminating(false)} />}
          {syncing && <SyncConfirm client={client} app={app} target={target} onDone={done} onCancel={() => setSyncing(false)} />}
          <div className="app-grid">
            <div>
              <h2>Resources of {targetKey(target)}</h2>
              {tree.error && <ErrorBox error={tree.error} />}
              {tree.data && <ResourceGraph nodes={tree.data.items} selected={node ? nodeKey(node) : null} onSelect={setNode} />}
            </div>
            <div>
              <h2>Object</h2>
              {!node && <p className="muted">Select an object of the tree.</p>}
              {node && (
                <div aria-label="Object detail">
                  <h3>{node.kind} {node.namespace ? `${node.namespace}/` : ''}{node.name}</h3>
                  <p>Health <span className={`badge badge-${healthClass(node.health.status)}`}>{node.health.status}</span>
                    {node.health.message && ` ${node.health.message}`}{node.sync && ` · ${node.sync}`}</p>
                  {target.mode === 'pull' && <p className="muted">Health and sync as its agent reports them; the diff renders its source as the agent does.</p>}
                  {diff.error && <ErrorBox error={diff.error} />}
                  {objectDiff && (
                    <>
                      <h4>Diff (live → desired)</h4>
                      {objectDiff.diff ? <pre className="diff" aria-label="Diff">{objectDiff.diff}</pre> : <p>In sync.</p>}
                      <h4>Live manifest</h4>
                      <pre className="manifest" aria-label="Live manifest">{objectDiff.live ? JSON.stringify(objectDiff.live, null, 2) : 'not in the cluster'}</pre>
                    </>
                  )}
                  {diff.data && !objectDiff && <p className="muted">Not rendered by the app: an owned child.</p>}
                </div>
              )}
            </div>
          </div>
          <h2>Events</h2>
          {events.error && <ErrorBox error={events.error} />}
          {events.data && (events.data.items.length === 0 ? <p className="empty-state">No events.</p> : (
            <div className="table-wrap">
              <table>
                <thead><tr><th scope="col">Last seen</th><th scope="col">Type</th><th scope="col">Reason</th><th scope="col">Object</th><th scope="col">Message</th></tr></thead>
                <tbody>
                  {events.data.items.map((e, i) => (
                    <tr key={i}>
                      <td>{time(e.last_time)}{e.count > 1 && <div className="muted">×{e.count}</div>}</td>
                      <td>{e.type}</td><td>{e.reason}</td><td>{e.object.kind}/{e.object.name}</td><td>{e.message}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          ))}
        </>
      )}
      <Releases client={client} app={app} embedded version={releasesVersion} />
    </section>
  );
}
