// The projects (docs/tenancy.md), read-only: what each may deploy from where to where, the CI
// repositories in it, and, for who manages its roles, who has which.

import {useState} from 'react';

import type {Client} from '../api/client';
import type {Project} from '../api/contract';
import {ErrorBox, useLoad} from '../components/common';

function List({items, none}: {items: string[]; none: string}) {
  return items.length ? <ul className="plain">{items.map((i) => <li key={i} className="mono">{i}</li>)}</ul> : <span className="muted">{none}</span>;
}

function ProjectDetail({client, name}: {client: Client; name: string}) {
  const p = useLoad(() => client.project(name), [client, name]);
  if (p.error) return <ErrorBox error={p.error} />;
  if (!p.data) return <p className="muted">Loading…</p>;
  const d: Project = p.data;
  return (
    <dl className="facts">
      <dt>Source namespaces</dt><dd><List items={d.source_namespaces ?? []} none="none" /></dd>
      <dt>Image repositories</dt><dd><List items={d.image_repos ?? []} none="none" /></dd>
      <dt>Config paths</dt><dd><List items={d.config_paths ?? []} none="none" /></dd>
      <dt>Credentials</dt><dd><List items={d.credentials ?? []} none="none" /></dd>
      <dt>Sync windows</dt>
      <dd>
        {(d.windows ?? []).length === 0 ? <span className="muted">none</span> : (
          <ul className="plain">
            {(d.windows ?? []).map((w, i) => (
              <li key={i}>{w.kind} <span className="mono">{w.schedule}</span> for {w.duration_minutes} min
                {w.environments.length > 0 && ` in ${w.environments.join(', ')}`}{w.manual_sync && ' (manual syncs allowed)'}</li>
            ))}
          </ul>
        )}
      </dd>
    </dl>
  );
}

export function Projects({client}: {client: Client}) {
  const list = useLoad(() => client.projects(), [client]);
  const [open, setOpen] = useState<string | null>(null);
  return (
    <section aria-labelledby="projects-title">
      <h1 id="projects-title">Projects</h1>
      {list.error && <ErrorBox error={list.error} />}
      {list.data && list.data.items.length === 0 && <p className="empty-state">No project you may see.</p>}
      {list.data?.items.map((p) => (
        <article key={p.name} aria-label={`Project ${p.name}`}>
          <h2>{p.name}{p.built_in && <span className="muted"> (built in: allows everything)</span>}</h2>
          {p.description && <p>{p.description}</p>}
          <dl className="facts">
            <dt>Source repositories</dt><dd><List items={p.source_repos} none="none" /></dd>
            <dt>Destinations</dt>
            <dd>
              {p.destinations.length === 0 ? <span className="muted">none</span> : (
                <ul className="plain">
                  {p.destinations.map((d, i) => (
                    <li key={i} className="mono">{d.name || d.server || '*'} → {d.namespace || '*'}</li>
                  ))}
                </ul>
              )}
            </dd>
            <dt>CI repositories</dt><dd><List items={p.ci_repos} none="none" /></dd>
            <dt>Roles</dt>
            <dd>
              {p.roles === null ? <span className="muted">shown to who manages its roles</span> : p.roles.length === 0 ? 'none' : (
                <ul className="plain">
                  {p.roles.map((r) => (
                    <li key={`${r.subject_kind}/${r.subject}/${r.role}/${r.project}`}>
                      {r.subject_kind} {r.subject}: {r.role}{r.project === '*' && ' (every project)'}
                    </li>
                  ))}
                </ul>
              )}
            </dd>
          </dl>
          <button type="button" aria-expanded={open === p.name} onClick={() => setOpen(open === p.name ? null : p.name)}>
            {open === p.name ? 'Less' : 'More'} about {p.name}
          </button>
          {open === p.name && <ProjectDetail client={client} name={p.name} />}
        </article>
      ))}
    </section>
  );
}
