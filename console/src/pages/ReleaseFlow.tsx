// A release's journey, left to right: the commit (repository, revision, link to its forge) → the CI
// run that built it (state, duration, its page) → its images (reference and digest, link to the
// registry) → the config commit (with the pull request of a release in pull-request mode: its
// number, linked to the forge, and the state of the server's merge of it) → each environment in
// promotion order with its gate and each cluster's state (push or pull; when). A release stopped at an approval gate shows Approve there.
// Release and app events reload it (GET /api/v1/apps/{app}/releases/{id}); nothing polls.

import {useState, type ReactNode} from 'react';

import type {Client} from '../api/client';
import type {FlowCluster, FlowEnvironment, Release, ReleaseFlow as Flow} from '../api/contract';
import {ErrorBox, StateBadge, short, time, useLoad, useReloadOnDeliveryEvents} from '../components/common';
import {Link} from '../router';

// An external page (forge, registry), or the text alone when the server has no link for it.
export function ExternalLink({href, children, label}: {href: string | null; children: ReactNode; label?: string}) {
  if (!href) return <>{children}</>;
  return <a href={href} target="_blank" rel="noreferrer noopener" aria-label={label}>{children}</a>;
}

export function duration(seconds: number | null): string {
  if (seconds === null) return '—';
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const m = Math.floor(seconds / 60);
  return m < 60 ? `${m} min ${Math.round(seconds % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

const kMergeWords = {waiting: 'merging when checks pass', merged: 'merged', failed: 'merge failed'} as const;

// The pull request of a release in pull-request mode (docs/forges.md): its number, linked to the
// forge, and where the server's auto-merge of this release's head is (what it waits for or why it
// failed in its title). The release history and the flow page show it alike.
export function PullRequestNote({pr}: {pr: NonNullable<Release['pull_request']>}) {
  return (
    <div className="wrap">
      <ExternalLink href={pr.url || null} label={`Pull request ${pr.number}`}>PR #{pr.number}</ExternalLink>
      {pr.merge && <span className="muted" title={pr.merge.message}> · {kMergeWords[pr.merge.state]}</span>}
    </div>
  );
}

// A pull cluster's state and a push cluster's ledger state share the badge colours.
const kFlowState: Record<string, string> = {synced: 'healthy', behind: 'pending', not_started: 'pending'};

function ClusterRow({c}: {c: FlowCluster}) {
  return (
    <li>
      <strong>{c.name}</strong> <span className={`mode mode-${c.mode}`}>{c.mode}</span>{' '}
      <span title={c.state}><StateBadge state={kFlowState[c.state] ?? c.state} /></span>
      {c.state !== (kFlowState[c.state] ?? c.state) && <span className="muted"> {c.state.replace(/_/g, ' ')}</span>}
      {(c.health || c.sync) && <div className="muted">{[c.sync, c.health].filter(Boolean).join(', ')}{c.behind > 0 && `, ${c.behind} behind`}</div>}
      {c.at && <div className="muted">{time(c.at)}</div>}
      {c.message && <div className="muted">{c.message}</div>}
    </li>
  );
}

function EnvironmentStage({client, flow, env, onDone}: {
  client: Client; flow: Flow; env: FlowEnvironment; onDone: (message: string) => void;
}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const approve = () => {
    setBusy(true);
    client.approveRelease(flow.app, flow.project, env.name, flow.id).then(
      (a) => onDone(`Release #${a.release} approved for ${a.environment} by ${a.approved_by}; resume the deploy to continue.`),
      (e: Error) => {
        setBusy(false);
        setError(e);
      });
  };
  const gate = env.gate;
  const gates = [gate.approval && 'approval', gate.healthy && 'healthy', gate.soak_seconds > 0 && `soak ${duration(gate.soak_seconds)}`].filter(Boolean);
  return (
    <li className={env.waiting_approval ? 'waiting' : undefined} aria-label={`Environment ${env.name}`}>
      <h3>{env.name}</h3>
      {gates.length > 0 && <div className="muted">Gate: {gates.join(', ')}{gate.approval && (env.approved ? ' (approved)' : '')}</div>}
      {env.waiting_approval && (
        <div>
          <StateBadge state="awaiting_approval" />{' '}
          <button type="button" disabled={busy} onClick={approve} aria-label={`Approve release ${flow.id} for ${env.name}`}>Approve</button>
        </div>
      )}
      {error && <ErrorBox error={error} />}
      <ul>{env.clusters.map((c) => <ClusterRow key={c.name} c={c} />)}</ul>
      {env.clusters.length === 0 && <p className="muted">No clusters.</p>}
    </li>
  );
}

export function ReleaseFlow({client, app, id}: {client: Client; app: string; id: number}) {
  const flow = useLoad(() => client.releaseFlow(app, id), [client, app, id]);
  const [message, setMessage] = useState<string | null>(null);
  useReloadOnDeliveryEvents(client, flow.reload);
  const f = flow.data;
  return (
    <section aria-labelledby="flow-title">
      <p><Link href={`/apps/${encodeURIComponent(app)}`}>← {app}</Link></p>
      <h1 id="flow-title">Release #{id} of {app}</h1>
      {flow.error && <ErrorBox error={flow.error} />}
      {!f && flow.loading && <p aria-live="polite">Loading…</p>}
      {message && <p role="status">{message}</p>}
      {f && (
        <>
          <p className="muted">Created {time(f.created_at)} by {f.started_by}{f.project !== 'default' && ` in project ${f.project}`}</p>
          <ol className="flow" aria-label="Release flow">
            <li aria-label="Commit">
              <h2>Commit</h2>
              <div className="mono"><ExternalLink href={f.commit.url} label={`Commit ${f.commit.revision} on its forge`}>{short(f.commit.revision, 12)}</ExternalLink></div>
              {f.commit.title !== null && <div title={f.commit.message ?? undefined}>{f.commit.title}</div>}
              {f.commit.author && (
                <div className="muted" aria-label="Author" title={f.commit.author.email}>
                  by {f.commit.author.name}{f.commit.authored_at && `, ${time(f.commit.authored_at)}`}
                </div>
              )}
              {f.commit.repo && <div className="muted wrap">{f.commit.repo}</div>}
              {f.commit.ref && <div className="muted">{f.commit.ref}</div>}
            </li>
            <li aria-label="CI run">
              <h2>CI run</h2>
              {f.run ? (
                <>
                  <Link href={`/runs/${f.run.id}`}>run #{f.run.id}</Link> <StateBadge state={f.run.state} />
                  <div className="muted">{f.run.pipeline}</div>
                  <div className="muted">{duration(f.run.duration_seconds)}</div>
                </>
              ) : <p className="muted">Not built by a CI run of this server ({f.started_by}).</p>}
            </li>
            <li aria-label="Images">
              <h2>Images</h2>
              {f.images.length === 0 && <p className="muted">None recorded.</p>}
              <ul>
                {f.images.map((im) => (
                  <li key={im.name} className="mono wrap" title={im.reference}>
                    <ExternalLink href={im.url} label={`Image ${im.reference} in its registry`}>{im.name}</ExternalLink>
                    @{short(im.digest.replace(/^sha256:/, ''), 12)}
                    {im.supply_chain && (
                      <div className="muted" aria-label="Supply chain">
                        {([['signed', im.supply_chain.signature], ['provenance', im.supply_chain.provenance], ['SBOM', im.supply_chain.sbom]] as const)
                          .filter(([, d]) => d !== '').map(([what, d]) => `${what} ${short(d.replace(/^sha256:/, ''), 12)}`).join(' · ')}
                      </div>
                    )}
                  </li>
                ))}
              </ul>
            </li>
            <li aria-label="Config commit">
              <h2>Config commit</h2>
              <div className="mono"><ExternalLink href={f.config.url} label={`Config commit ${f.config.revision} on its forge`}>{short(f.config.revision, 12)}</ExternalLink></div>
              {f.config.repo && <div className="muted wrap">{f.config.repo}</div>}
              {f.pull_request && <PullRequestNote pr={f.pull_request} />}
            </li>
            {f.environments.map((e) => (
              <EnvironmentStage key={e.name} client={client} flow={f} env={e} onDone={(m) => { setMessage(m); flow.reload(); }} />
            ))}
          </ol>
        </>
      )}
    </section>
  );
}
