// CI runs, newest first; run and step events update the states shown without a reload.

import {useEffect, useRef, useState} from 'react';

import type {Client} from '../api/client';
import {subscribe} from '../api/events';
import type {Run} from '../api/contract';
import {ErrorBox, StateBadge, short, time, useLoad} from '../components/common';
import {Link} from '../router';
import {Spacer, useVirtualRows} from '../components/virtual';

export function Runs({client}: {client: Client}) {
  const first = useLoad(() => client.runs(), [client]);
  const [extra, setExtra] = useState<Run[]>([]);
  const [next, setNext] = useState<string | null | undefined>(undefined);
  const [states, setStates] = useState<Record<number, string>>({});
  const {reload, data} = first;
  const shown = useRef(data);
  shown.current = data;
  useEffect(() => {
    // The list read before the stream was open may have missed a run: read it again on open.
    return subscribe(client, (name, ev) => {
      if (name !== 'run') return;
      const {id, state} = ev as {id: number; state: string};
      setStates((s) => ({...s, [id]: state}));
      if (!shown.current?.items.some((r) => r.id === id)) reload(); // a new run
    }, {onOpen: reload});
  }, [client, reload]);
  const items = [...(first.data?.items ?? []), ...extra];
  const cursor = next === undefined ? first.data?.next : next;
  const win = useVirtualRows(items.length, {estimate: 36});
  const more = () => {
    if (cursor) client.runs(cursor).then((l) => {
      setExtra((e) => [...e, ...l.items]);
      setNext(l.next);
    }, () => reload());
  };
  return (
    <section aria-labelledby="runs-title">
      <h1 id="runs-title">CI runs</h1>
      {first.error && <ErrorBox error={first.error} />}
      {first.data && items.length === 0 && <p className="empty-state">No runs yet: push to a repository the server builds.</p>}
      {items.length > 0 && (
        <div className={`table-wrap${win.on ? ' virtual' : ''}`} ref={win.scrollRef}>
          <table className="runs" aria-rowcount={items.length + 1}>
            <thead>
              <tr><th scope="col">Run</th><th scope="col">State</th><th scope="col">Pipeline</th><th scope="col">Repository</th>
                <th scope="col">Ref</th><th scope="col">Commit</th><th scope="col">Created</th></tr>
            </thead>
            <tbody ref={win.bodyRef}>
              <Spacer height={win.padTop} columns={7} />
              {items.slice(win.start, win.end).map((r, i) => (
                <tr key={r.id} aria-rowindex={win.start + i + 2}>
                  <td><Link href={`/runs/${r.id}`}>#{r.id}</Link></td>
                  <td><StateBadge state={states[r.id] ?? r.state} /></td>
                  <td>{r.pipeline}</td>
                  <td className="wrap">{r.repo}</td>
                  <td>{r.ref}</td>
                  <td className="mono">{short(r.commit)}</td>
                  <td>{time(r.created_at)}</td>
                </tr>
              ))}
              <Spacer height={win.padBottom} columns={7} />
            </tbody>
          </table>
        </div>
      )}
      {cursor && <button type="button" onClick={more}>Load more</button>}
    </section>
  );
}
