// The repositories the server builds: each pipeline's project, newest run, and its steps as a DAG
// (as its pipeline file was parsed at the newest run that has steps).

import type {Client} from '../api/client';
import {ErrorBox, StateBadge, short, time, useLoad} from '../components/common';
import {StepDag} from '../components/StepDag';
import {Link, navigate} from '../router';

export function Pipelines({client}: {client: Client}) {
  const list = useLoad(() => client.pipelines(), [client]);
  return (
    <section aria-labelledby="pipelines-title">
      <h1 id="pipelines-title">Pipelines</h1>
      {list.error && <ErrorBox error={list.error} />}
      {list.data && list.data.items.length === 0 && (
        <p className="empty-state">No pipelines you may see: the server builds the repositories given with --repo.</p>
      )}
      {list.data?.items.map((p) => (
        <article key={p.repo} className="pipeline" aria-label={p.repo}>
          <h2 className="wrap">{p.repo}</h2>
          <dl className="facts">
            <dt>Project</dt><dd>{p.project || '—'}</dd>
            <dt>Last run</dt>
            <dd>
              {p.last_run ? (
                <>
                  <Link href={`/runs/${p.last_run.id}`}>#{p.last_run.id}</Link> <StateBadge state={p.last_run.state} />{' '}
                  {p.last_run.ref} <span className="mono">{short(p.last_run.commit)}</span> {time(p.last_run.created_at)}
                </>
              ) : 'never ran'}
            </dd>
          </dl>
          {p.steps.length > 0 ? (
            <>
              <p className="muted">Steps as run #{p.steps_from_run} parsed them:</p>
              <div className="dag-wrap">
                <StepDag steps={p.steps} onSelect={() => p.steps_from_run !== null && navigate(`/runs/${p.steps_from_run}`)} />
              </div>
            </>
          ) : <p className="muted">No run has steps yet.</p>}
        </article>
      ))}
    </section>
  );
}
