// An app's releases, newest first: revisions, images, the CI run that made it, each target's state.

import {useState} from 'react';

import type {Client} from '../api/client';
import type {Release} from '../api/contract';
import {ErrorBox, StateBadge, short, time, useLoad} from '../components/common';
import {Link} from '../router';

// `embedded`: a section of the Application page (a heading of its own level, no way back).
export function Releases({client, app, embedded = false}: {client: Client; app: string; embedded?: boolean}) {
  const [pages, setPages] = useState<Release[]>([]);
  const first = useLoad(() => client.releases(app), [client, app]);
  const [next, setNext] = useState<string | null | undefined>(undefined);
  const [moreError, setMoreError] = useState<Error | null>(null);
  const items = [...(first.data?.items ?? []), ...pages];
  const cursor = next === undefined ? first.data?.next : next;
  const more = () => {
    if (!cursor) return;
    client.releases(app, cursor).then((l) => {
      setPages((p) => [...p, ...l.items]);
      setNext(l.next);
    }, setMoreError);
  };
  return (
    <section aria-labelledby="releases-title">
      {!embedded && <p><Link href="/">← Overview</Link></p>}
      {embedded ? <h2 id="releases-title">Release history</h2> : <h1 id="releases-title">Releases of {app}</h1>}
      {first.error && <ErrorBox error={first.error} />}
      {first.data && items.length === 0 && <p className="empty-state">{app} has no releases.</p>}
      {items.length > 0 && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr><th scope="col">Release</th><th scope="col">Created</th><th scope="col">Source</th><th scope="col">Config</th>
                <th scope="col">Images</th><th scope="col">Run</th><th scope="col">Targets</th></tr>
            </thead>
            <tbody>
              {items.map((r) => (
                <tr key={r.id}>
                  <td>#{r.id}</td>
                  <td>{time(r.created_at)}<div className="muted">{r.started_by}</div></td>
                  <td className="mono">{short(r.source_revision)}</td>
                  <td className="mono">{short(r.config_revision)}</td>
                  <td className="mono">{Object.entries(r.image_digests).map(([repo, d]) => <div key={repo} title={d}>{repo}@{short(d.replace(/^sha256:/, ''), 12)}</div>)}</td>
                  <td>{r.run !== null ? <Link href={`/runs/${r.run}`}>run {r.run}</Link> : '—'}</td>
                  <td>{r.targets.map((t) => (
                    <div key={`${t.environment}/${t.cluster}`}>{t.environment}/{t.cluster} <StateBadge state={t.state} /></div>
                  ))}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {moreError && <ErrorBox error={moreError} />}
      {cursor && <button type="button" onClick={more}>Load more</button>}
    </section>
  );
}
