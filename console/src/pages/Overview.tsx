// The version matrix: one row per app, one column per cluster grouped by environment in promotion
// order; each cell what runs there (release, revisions), the latest release's state, how far
// behind, push or pull. Release events from the server reload it.

import {useMemo, useState} from 'react';

import type {Client} from '../api/client';
import type {Matrix, MatrixCell} from '../api/contract';
import {ErrorBox, StateBadge, short, useLoad, useReloadOnDeliveryEvents} from '../components/common';
import {Link} from '../router';
import {Spacer, useVirtualRows} from '../components/virtual';

// Environments in promotion order, each with its clusters (sorted) as seen in any app's cells.
export function columns(m: Matrix): {environment: string; clusters: string[]}[] {
  const by = new Map<string, Set<string>>(m.environments.map((e) => [e, new Set<string>()]));
  for (const a of m.apps) {
    for (const c of a.cells) {
      if (!by.has(c.environment)) by.set(c.environment, new Set());
      by.get(c.environment)!.add(c.cluster);
    }
  }
  return [...by].map(([environment, clusters]) => ({environment, clusters: [...clusters].sort()}));
}

function Cell({cell}: {cell: MatrixCell | undefined}) {
  if (!cell) return <td className="cell empty" aria-label="not deployed here">—</td>;
  const r = cell.running;
  const latest = cell.latest;  // null: a pull cluster's app with no release in the ledger
  return (
    <td className="cell">
      <div className="cell-top">
        <span className="rel">{r ? `#${r.release}` : 'none'}</span>
        {latest && <StateBadge state={latest.state} />}
        <span className={`mode mode-${cell.mode}`}>{cell.mode}</span>
      </div>
      {r && <div className="muted mono" title={`config ${r.config_revision}, source ${r.source_revision}`}>{short(r.config_revision)}</div>}
      {latest && cell.behind > 0 && <div className="behind">{cell.behind} behind (#{latest.release})</div>}
      {latest && latest.message && latest.state === 'failed' && <div className="muted">{latest.message}</div>}
    </td>
  );
}

export function Overview({client}: {client: Client}) {
  const matrix = useLoad(() => client.matrix(), [client]);
  const [filter, setFilter] = useState('');
  const {reload} = matrix;
  useReloadOnDeliveryEvents(client, reload);
  const m = matrix.data;
  const cols = useMemo(() => (m ? columns(m) : []), [m]);
  const apps = useMemo(() => {
    const f = filter.trim().toLowerCase();
    return (m?.apps ?? []).filter((a) => a.app.toLowerCase().includes(f));
  }, [m, filter]);

  // 200 apps × 9 clusters: only the rows in view are in the DOM.
  const win = useVirtualRows(apps.length, {estimate: 64});
  const width = 1 + cols.reduce((n, c) => n + Math.max(1, c.clusters.length), 0);
  return (
    <section aria-labelledby="overview-title">
      <div className="page-head">
        <h1 id="overview-title">Overview</h1>
        <label className="filter">
          <span>Filter apps</span>
          <input type="search" value={filter} onChange={(e) => setFilter(e.target.value)} placeholder="app name" />
        </label>
      </div>
      {matrix.error && <ErrorBox error={matrix.error} />}
      {m && m.warnings.length > 0 && (
        <ul className="warnings" aria-label="Clusters that could not be read">
          {m.warnings.map((w) => <li key={w}>{w}</li>)}
        </ul>
      )}
      {!m && matrix.loading && <p aria-live="polite">Loading…</p>}
      {m && m.apps.length === 0 && (
        <p className="empty-state">No releases yet. Apps appear here after their first release (docs/end-to-end.md).</p>
      )}
      {m && m.apps.length > 0 && (
        <div className={`table-wrap${win.on ? ' virtual' : ''}`} ref={win.scrollRef}>
          <table className="matrix" aria-rowcount={apps.length + 2}>
            <caption className="sr-only">Version matrix: apps by environment and cluster</caption>
            <thead>
              <tr>
                <th rowSpan={2} scope="col">App</th>
                {cols.map((c) => <th key={c.environment} colSpan={Math.max(1, c.clusters.length)} scope="colgroup">{c.environment}</th>)}
              </tr>
              <tr>
                {cols.flatMap((c) => (c.clusters.length ? c.clusters : ['']).map((cl) => <th key={`${c.environment}/${cl}`} scope="col">{cl}</th>))}
              </tr>
            </thead>
            <tbody ref={win.bodyRef}>
              <Spacer height={win.padTop} columns={width} />
              {apps.slice(win.start, win.end).map((a, i) => (
                <tr key={a.app} aria-rowindex={win.start + i + 3}>
                  <th scope="row"><Link href={`/apps/${encodeURIComponent(a.app)}`}>{a.app}</Link></th>
                  {cols.flatMap((c) => (c.clusters.length ? c.clusters : ['']).map((cl) => (
                    <Cell key={`${c.environment}/${cl}`} cell={a.cells.find((x) => x.environment === c.environment && x.cluster === cl)} />
                  )))}
                </tr>
              ))}
              <Spacer height={win.padBottom} columns={width} />
            </tbody>
          </table>
          {apps.length === 0 && <p className="empty-state">No app matches “{filter}”.</p>}
        </div>
      )}
    </section>
  );
}
