// The environments in promotion order, as a row of columns: each with its clusters, its gate
// (approval, health, soak) and the releases waiting for its approval, each with an Approve button
// (POST /api/v1/apps/{app}/approve; the deploy is then resumed), and its apps' health. Release
// and app events from the server reload it. Each environment's apps are a windowed list.

import {useState} from 'react';

import type {Client} from '../api/client';
import type {Environment, WaitingRelease} from '../api/contract';
import {ErrorBox, short, time, useLoad, useReloadOnDeliveryEvents} from '../components/common';
import {healthClass} from '../components/ResourceGraph';
import {Link} from '../router';
import {WindowedList} from '../components/virtual';

function gateText(e: Environment): string {
  const parts = [e.gate.approval ? 'approval required' : 'no approval'];
  if (e.gate.healthy) parts.push('must turn healthy');
  if (e.gate.soak_seconds > 0) parts.push(`soak ${e.gate.soak_seconds} s`);
  return parts.join(' · ');
}

function Waiting({client, env, w, onDone}: {client: Client; env: string; w: WaitingRelease; onDone: (msg: string, err?: Error) => void}) {
  const [busy, setBusy] = useState(false);
  const approve = () => {
    setBusy(true);
    client.approveRelease(w.app, w.project, env, w.release).then(
      (a) => onDone(`Release #${a.release} of ${a.app} approved for ${a.environment} by ${a.approved_by}.`),
      (e: Error) => { setBusy(false); onDone('', e); });
  };
  return (
    <li className="waiting">
      <div><Link href={`/apps/${encodeURIComponent(w.app)}`}>{w.app}</Link> <span className="rel">#{w.release}</span></div>
      <div className="muted mono" title={`config ${w.config_revision}, source ${w.source_revision}`}>{short(w.config_revision)} · {time(w.created_at)}</div>
      <button type="button" disabled={busy} onClick={approve} aria-label={`Approve release ${w.release} of ${w.app} for ${env}`}>Approve</button>
    </li>
  );
}

export function Environments({client}: {client: Client}) {
  const envs = useLoad(() => client.environments(), [client]);
  const [notice, setNotice] = useState('');
  const [error, setError] = useState<Error | null>(null);
  const {reload} = envs;
  useReloadOnDeliveryEvents(client, reload);
  const done = (msg: string, err?: Error) => {
    setError(err ?? null);
    setNotice(msg);
    if (!err) reload();
  };
  const items = envs.data?.items ?? [];
  return (
    <section aria-labelledby="environments-title">
      <h1 id="environments-title">Environments</h1>
      {envs.error && <ErrorBox error={envs.error} />}
      {error && <ErrorBox error={error} />}
      {notice && <p role="status">{notice} Resume the deploy from its application.</p>}
      {!envs.data && envs.loading && <p aria-live="polite">Loading…</p>}
      {envs.data && items.length === 0 && (
        <p className="empty-state">No environments: start the server with --deliver-config (docs/deliver.md).</p>
      )}
      {items.length > 0 && (
        <ol className="promotion" aria-label="Promotion order">
          {items.map((e) => (
            <li key={e.name} className="env-col" aria-labelledby={`env-${e.name}`}>
              <h2 id={`env-${e.name}`}>{e.name}</h2>
              {e.after.length > 0 && <p className="muted">after {e.after.join(', ')}</p>}
              <p className={`gate ${e.gate.approval ? 'gate-approval' : ''}`}>Gate: {gateText(e)}</p>
              <h3>Clusters</h3>
              <ul className="plain">
                {e.clusters.length === 0 && <li className="muted">none</li>}
                {e.clusters.map((c) => <li key={c.name}>{c.name} <span className={`mode mode-${c.mode}`}>{c.mode}</span></li>)}
              </ul>
              {e.gate.approval && (
                <>
                  <h3>Waiting for approval</h3>
                  {e.waiting.length === 0 && <p className="muted">nothing</p>}
                  <ul className="plain">
                    {e.waiting.map((w) => <Waiting key={`${w.app}/${w.release}`} client={client} env={e.name} w={w} onDone={done} />)}
                  </ul>
                </>
              )}
              <h3>Apps</h3>
              <p className="muted">
                {Object.keys(e.summary).length === 0 ? 'none' : Object.entries(e.summary).map(([h, n]) => `${n} ${h}`).join(', ')}
              </p>
              <WindowedList items={e.apps} keyOf={(a) => a.app} label={`Apps in ${e.name}`} render={(a) => (
                <>
                  <Link href={`/apps/${encodeURIComponent(a.app)}`}>{a.app}</Link>{' '}
                  {a.release !== null && <span className="rel">#{a.release}</span>}{' '}
                  <span className={`badge badge-${healthClass(a.health)}`}>{a.health}</span>
                  {a.behind > 0 && <span className="behind"> {a.behind} behind</span>}
                </>
              )} />
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}
