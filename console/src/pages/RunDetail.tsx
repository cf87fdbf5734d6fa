// One CI run: its steps and its log, with ANSI colours, growing live from the server's `log` events
// while the run is not final. The log is read once (GET .../logs) and then extended by events;
// events that arrived while that read was in flight and are already at its end are not repeated.

import {useEffect, useRef, useState} from 'react';

import {AnsiParser, type Segment} from '../ansi';
import type {Client} from '../api/client';
import {subscribe} from '../api/events';
import type {Events, RunDetail as RunDetailT, Step} from '../api/contract';
import {ErrorBox, StateBadge, short, time, useLoad} from '../components/common';
import {Link} from '../router';

const kFinal = new Set(['succeeded', 'failed', 'cancelled', 'canceled', 'error', 'rejected', 'skipped']);

export function LogView({segments}: {segments: Segment[]}) {
  const ref = useRef<HTMLPreElement>(null);
  const atEnd = useRef(true);
  useEffect(() => {
    const el = ref.current;
    if (el && atEnd.current) el.scrollTop = el.scrollHeight;
  }, [segments]);
  return (
    <pre className="log" ref={ref} tabIndex={0} aria-label="Run log" aria-live="off"
         onScroll={(e) => {
           const el = e.currentTarget;
           atEnd.current = el.scrollTop + el.clientHeight >= el.scrollHeight - 8;
         }}>
      {segments.map((s, i) => (s.classes ? <span key={i} className={s.classes}>{s.text}</span> : s.text))}
    </pre>
  );
}

export function RunDetail({client, id}: {client: Client; id: number}) {
  const run = useLoad(() => client.run(id), [client, id]);
  const reloadRun = useRef(run.reload);
  reloadRun.current = run.reload;
  const [steps, setSteps] = useState<Record<string, string>>({});
  const [state, setState] = useState<string | null>(null);
  const [segments, setSegments] = useState<Segment[]>([]);
  const [logError, setLogError] = useState<Error | null>(null);
  const [action, setAction] = useState<string | null>(null);

  useEffect(() => {
    const parser = new AnsiParser();
    let loaded: string | null = null; // the log as read; null while the read is in flight
    let pending: Events['log'][] = [];
    let cancelled = false;
    const append = (text: string) => setSegments((s) => [...s, ...parser.parse(text)]);
    setSegments([]);
    const stop = subscribe(client, (name, ev) => {
      if (name === 'run' && (ev as Events['run']).id === id) {
        setState((ev as Events['run']).state);
        reloadRun.current(); // its times, message and steps
      }
      if (name === 'step' && (ev as Events['step']).run === id) {
        const s = ev as Events['step'];
        setSteps((m) => ({...m, [s.name]: s.state}));
      }
      if (name === 'log' && (ev as Events['log']).run === id) {
        if (loaded === null) pending.push(ev as Events['log']);
        else append((ev as Events['log']).text);
      }
    });
    client.logs(id).then((text) => {
      if (cancelled) return;
      // Events that came in during the read: skip those the text already ends with.
      let tail = text;
      const rest: string[] = [];
      for (const ev of pending.reverse()) {
        if (tail.endsWith(ev.text)) tail = tail.slice(0, tail.length - ev.text.length);
        else rest.unshift(ev.text);
      }
      pending = [];
      loaded = text;
      append(text + rest.join(''));
    }, (e: Error) => !cancelled && setLogError(e));
    return () => {
      cancelled = true;
      stop();
    };
  }, [client, id]);

  const r: RunDetailT | null = run.data;
  const current = state ?? r?.state ?? '';
  const act = (what: 'cancel' | 'approve') => {
    (what === 'cancel' ? client.cancel(id) : client.approve(id)).then(
      (text) => { setAction(text.trim()); run.reload(); },
      (e: Error) => setAction(e.message));
  };
  const stepState = (s: Step) => steps[s.name] ?? s.state;

  return (
    <section aria-labelledby="run-title">
      <p><Link href="/runs">← CI runs</Link></p>
      <div className="page-head">
        <h1 id="run-title">Run #{id} {current && <StateBadge state={current} />}</h1>
        <div className="actions">
          {current === 'awaiting_approval' && <button type="button" onClick={() => act('approve')}>Approve</button>}
          {current && !kFinal.has(current) && <button type="button" onClick={() => act('cancel')}>Cancel</button>}
        </div>
      </div>
      {action && <p role="status">{action}</p>}
      {run.error && <ErrorBox error={run.error} />}
      {r && (
        <dl className="facts">
          <dt>Pipeline</dt><dd>{r.pipeline}</dd>
          <dt>Repository</dt><dd className="wrap">{r.repo}</dd>
          <dt>Ref</dt><dd>{r.ref} <span className="mono">{short(r.commit, 12)}</span></dd>
          <dt>Event</dt><dd>{r.event}</dd>
          <dt>Started</dt><dd>{time(r.started_at)}</dd>
          <dt>Finished</dt><dd>{time(r.finished_at)}</dd>
          {r.message && <><dt>Message</dt><dd>{r.message}</dd></>}
        </dl>
      )}
      {r && r.steps.length > 0 && (
        <>
          <h2>Steps</h2>
          <ol className="steps">
            {r.steps.map((s) => (
              <li key={s.name}>
                <span className="step-name">{s.name}</span> <StateBadge state={stepState(s)} />
                {s.exit_code !== null && s.exit_code !== 0 && <span className="muted"> exit {s.exit_code}</span>}
              </li>
            ))}
          </ol>
        </>
      )}
      <h2>Log</h2>
      {logError && <ErrorBox error={logError} />}
      <LogView segments={segments} />
    </section>
  );
}
