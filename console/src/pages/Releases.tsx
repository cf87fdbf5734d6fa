// An app's releases, newest first: revisions (the source commit's title and author), images, the
// CI run that made it, each target's state, the pull request of a release in pull-request mode and
// the server's merge of it; each links to its flow page, and its commits, images and pull requests
// to their forge and registry. A release event of the app reloads the first page (on the
// Application page, whose subscription says so through `version`).

import {useEffect, useState} from 'react';

import type {Client} from '../api/client';
import {subscribe} from '../api/events';
import type {Release} from '../api/contract';
import {ErrorBox, StateBadge, short, time, useLoad} from '../components/common';
import {Link} from '../router';
import {Spacer, useVirtualRows} from '../components/virtual';
import {ExternalLink, PullRequestNote} from './ReleaseFlow';

// `embedded`: a section of the Application page (a heading of its own level, no way back), which
// changes `version` when a release event of the app arrived.
export function Releases({client, app, embedded = false, version = 0}: {
  client: Client; app: string; embedded?: boolean; version?: number;
}) {
  const [pages, setPages] = useState<Release[]>([]);
  const first = useLoad(() => client.releases(app), [client, app, version]);
  const [next, setNext] = useState<string | null | undefined>(undefined);
  const [moreError, setMoreError] = useState<Error | null>(null);
  const items = [...(first.data?.items ?? []), ...pages];
  const cursor = next === undefined ? first.data?.next : next;
  const win = useVirtualRows(items.length, {estimate: 56});
  // Live: a release of this app was created or one of its targets changed (200 ms after a burst).
  const reload = first.reload;
  useEffect(() => {
    if (embedded) return undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stop = subscribe(client, (name, data) => {
      if (name !== 'release' || (data as {app: string}).app !== app) return;
      clearTimeout(timer);
      timer = setTimeout(reload, 200);
    }, {onOpen: reload}); // a release made before the stream was open
    return () => {
      clearTimeout(timer);
      stop();
    };
  }, [client, app, reload, embedded]);
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
        <div className={`table-wrap${win.on ? ' virtual' : ''}`} ref={win.scrollRef}>
          <table aria-rowcount={items.length + 1}>
            <thead>
              <tr><th scope="col">Release</th><th scope="col">Created</th><th scope="col">Source</th><th scope="col">Config</th>
                <th scope="col">Images</th><th scope="col">Run</th><th scope="col">Targets</th></tr>
            </thead>
            <tbody ref={win.bodyRef}>
              <Spacer height={win.padTop} columns={7} />
              {items.slice(win.start, win.end).map((r, i) => (
                <tr key={r.id} aria-rowindex={win.start + i + 2}>
                  <td><Link href={`/apps/${encodeURIComponent(app)}/releases/${r.id}`} aria-label={`Flow of release ${r.id}`}>#{r.id}</Link></td>
                  <td>{time(r.created_at)}<div className="muted">{r.started_by}</div></td>
                  <td><span className="mono"><ExternalLink href={r.links.source} label={`Commit ${r.source_revision}`}>{short(r.source_revision)}</ExternalLink></span>
                    {r.commit && <div className="wrap" title={r.commit.author.email}><span>{r.commit.title}</span><div className="muted">by {r.commit.author.name}</div></div>}</td>
                  <td className="mono"><ExternalLink href={r.links.config} label={`Config commit ${r.config_revision}`}>{short(r.config_revision)}</ExternalLink>
                    {r.pull_request && <PullRequestNote pr={r.pull_request} />}</td>
                  <td className="mono">{Object.entries(r.image_digests).map(([repo, d]) => (
                    <div key={repo} title={`${repo}@${d}`}><ExternalLink href={r.links.images[repo] ?? null} label={`Image ${repo}@${d}`}>{repo}</ExternalLink>@{short(d.replace(/^sha256:/, ''), 12)}{r.supply_chain[repo] && <span className="muted" title="signed, with provenance and SBOM attestations (docs/supply-chain.md)"> signed</span>}</div>
                  ))}</td>
                  <td>{r.run !== null ? <Link href={`/runs/${r.run}`}>run {r.run}</Link> : '—'}</td>
                  <td>{r.targets.map((t) => (
                    <div key={`${t.environment}/${t.cluster}`}>{t.environment}/{t.cluster} <StateBadge state={t.state} /></div>
                  ))}</td>
                </tr>
              ))}
              <Spacer height={win.padBottom} columns={7} />
            </tbody>
          </table>
        </div>
      )}
      {moreError && <ErrorBox error={moreError} />}
      {cursor && <button type="button" onClick={more}>Load more</button>}
    </section>
  );
}
