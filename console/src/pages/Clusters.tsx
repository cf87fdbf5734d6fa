// Every cluster of the deliver configuration: push or pull, its API server, whether it answers
// (push: a /version probe the server caches for 30 s; pull: the server's watch of its
// Applications), its Kubernetes version, labels, the apps it runs (a windowed list) and why it
// cannot be reached.

import type {Client} from '../api/client';
import type {Cluster} from '../api/contract';
import {ErrorBox, useLoad} from '../components/common';
import {healthClass} from '../components/ResourceGraph';
import {Link} from '../router';
import {WindowedList} from '../components/virtual';

function Reachability({c}: {c: Cluster}) {
  return c.reachable
    ? <span className="badge badge-ok">reachable</span>
    : <span className="badge badge-bad">unreachable</span>;
}

export function Clusters({client}: {client: Client}) {
  const clusters = useLoad(() => client.clusters(), [client]);
  const items = clusters.data?.items ?? [];
  return (
    <section aria-labelledby="clusters-title">
      <div className="page-head">
        <h1 id="clusters-title">Clusters</h1>
        <button type="button" onClick={clusters.reload}>Refresh</button>
      </div>
      {clusters.error && <ErrorBox error={clusters.error} />}
      {!clusters.data && clusters.loading && <p aria-live="polite">Loading…</p>}
      {clusters.data && items.length === 0 && (
        <p className="empty-state">No clusters: start the server with --deliver-config (docs/deliver.md).</p>
      )}
      {items.length > 0 && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr><th scope="col">Cluster</th><th scope="col">Environment</th><th scope="col">Mode</th><th scope="col">Reachability</th>
                <th scope="col">Kubernetes</th><th scope="col">Labels</th><th scope="col">Apps</th></tr>
            </thead>
            <tbody>
              {items.map((c) => (
                <tr key={c.name}>
                  <th scope="row">{c.name}<div className="muted mono wrap">{c.server ?? ''}</div></th>
                  <td>{c.environment}</td>
                  <td><span className={`mode mode-${c.mode}`}>{c.mode}</span></td>
                  <td><Reachability c={c} />{c.last_error && <div className="muted wrap">{c.last_error}</div>}</td>
                  <td className="mono">{c.kube_version ?? '—'}</td>
                  <td>{Object.entries(c.labels).map(([k, v]) => <div key={k} className="mono">{k}={v}</div>)}</td>
                  <td>
                    {c.apps.length === 0 && <span className="muted">none</span>}
                    <WindowedList items={c.apps} keyOf={(a) => `${a.app}/${a.environment}`} label={`Apps on ${c.name}`} render={(a) => (
                      <>
                        <Link href={`/apps/${encodeURIComponent(a.app)}`}>{a.app}</Link>{' '}
                        {a.release !== null && <span className="rel">#{a.release}</span>}{' '}
                        <span className={`badge badge-${healthClass(a.health)}`}>{a.health || 'Unknown'}</span>
                        {a.behind > 0 && <span className="behind"> {a.behind} behind</span>}
                      </>
                    )} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
