// One CI run: its steps and its log (components/LogView.tsx: ANSI colours, search), growing live
// from the server's `log` events while the run is not final. The log is read once (GET .../logs) and then extended by events;
// events that arrived while that read was in flight and are already at its end are not repeated.
// The steps are drawn as their DAG (components/StepDag.tsx); selecting one shows its part of the
// log. Retry (a finished run) and "Approve and run" (a run awaiting approval) ask for confirmation;
// when the server refuses one for want of a permission (403), its button is disabled with why.

import {useEffect, useMemo, useRef, useState} from 'react';

import {AnsiParser, type Segment} from '../ansi';
import {ApiError, type Client} from '../api/client';
import {subscribe} from '../api/events';
import type {Events, RunDetail as RunDetailT, Step} from '../api/contract';
import {ErrorBox, StateBadge, short, time, useLoad} from '../components/common';
import {LogView} from '../components/LogView';
import {StepDag} from '../components/StepDag';
import {Link, navigate} from '../router';

const kFinal = new Set(['succeeded', 'failed', 'cancelled', 'canceled', 'error', 'rejected', 'skipped']);

// A run's log as read (GET .../logs: "==> step <==" before each step's part) by step. Live `log`
// events name their step and carry no such line: they are added to their step as they come.
export function splitLog(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  let step: string | null = null;
  for (const line of text.split(/(?<=\n)/)) {
    const m = line.match(/^==> (.*) <==\n$/);
    if (m) {
      step = m[1];
      out[step] = out[step] ?? '';
    } else if (step !== null) {
      out[step] += line;
    }
  }
  return out;
}

type RunAction = 'cancel' | 'approve' | 'retry';
const kConfirm: Record<RunAction, string> = {
  cancel: 'Cancel this run? Its running steps are stopped.',
  approve: 'Approve and run? This run is untrusted (a pull request from a fork, or a repository that treats pull requests so): its code runs on the server once approved.',
  retry: 'Retry this run? A new run builds the same commit again.',
};

export function RunDetail({client, id}: {client: Client; id: number}) {
  const run = useLoad(() => client.run(id), [client, id]);
  const reloadRun = useRef(run.reload);
  reloadRun.current = run.reload;
  const [steps, setSteps] = useState<Record<string, string>>({});
  const [state, setState] = useState<string | null>(null);
  const [segments, setSegments] = useState<Segment[]>([]);
  const [byStep, setByStep] = useState<Record<string, string>>({});
  const [selected, setSelected] = useState<string | null>(null);
  const [confirming, setConfirming] = useState<RunAction | null>(null);
  const [denied, setDenied] = useState<Partial<Record<RunAction, string>>>({});
  const [logError, setLogError] = useState<Error | null>(null);
  const [action, setAction] = useState<string | null>(null);

  useEffect(() => {
    const parser = new AnsiParser();
    let loaded: string | null = null; // the log as read; null while the read is in flight
    let pending: Events['log'][] = [];
    let cancelled = false;
    const append = (t: string) => setSegments((s) => [...s, ...parser.parse(t)]);
    const addToStep = (ev: Events['log']) => setByStep((m) => ({...m, [ev.step]: (m[ev.step] ?? '') + ev.text}));
    setSegments([]);
    setByStep({});
    // The log is read once the event stream is open (or could not be opened), so that no log event
    // falls between the read and the stream; events that come during the read wait in `pending`.
    let reading = false;
    const readLog = () => {
      if (reading) return;
      reading = true;
      client.logs(id).then((text) => {
        if (cancelled) return;
        // Events that came in during the read: skip those the text already ends with.
        let tail = text;
        const rest: Events['log'][] = [];
        for (const ev of pending.reverse()) {
          if (tail.endsWith(ev.text)) tail = tail.slice(0, tail.length - ev.text.length);
          else rest.unshift(ev);
        }
        pending = [];
        loaded = text;
        append(text + rest.map((ev) => ev.text).join(''));
        setByStep(splitLog(text));
        rest.forEach(addToStep);
      }, (e: Error) => !cancelled && setLogError(e));
    };
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
        else {
          append((ev as Events['log']).text);
          addToStep(ev as Events['log']);
        }
      }
    }, {
      // The run as first loaded may have changed before the stream was open: read it again.
      onOpen: () => {
        reloadRun.current();
        readLog();
      },
      onError: readLog,
    });
    return () => {
      cancelled = true;
      stop();
    };
  }, [client, id]);

  const r: RunDetailT | null = run.data;
  const current = state ?? r?.state ?? '';
  const act = (what: RunAction) => {
    setConfirming(null);
    if (what === 'retry') {
      client.retry(id).then((r) => navigate(`/runs/${r.id}`), (e: Error) => fail(what, e));
      return;
    }
    (what === 'cancel' ? client.cancel(id) : client.approve(id)).then(
      (t) => { setAction(t.trim()); run.reload(); },
      (e: Error) => fail(what, e));
  };
  const fail = (what: RunAction, e: Error) => {
    if (e instanceof ApiError && e.status === 403) setDenied((d) => ({...d, [what]: e.problem.detail || e.message}));
    setAction(e.message);
  };
  const button = (what: RunAction, label: string) => (
    <button type="button" onClick={() => setConfirming(what)} disabled={denied[what] !== undefined}
            title={denied[what] ? `Not allowed: ${denied[what]}` : undefined}
            aria-describedby={denied[what] ? `denied-${what}` : undefined}>{label}</button>
  );
  const stepState = (s: Step) => steps[s.name] ?? s.state;
  const shown = useMemo(() => (selected ? new AnsiParser().parse(byStep[selected] ?? '') : segments),
                        [selected, byStep, segments]);

  return (
    <section aria-labelledby="run-title">
      <p><Link href="/runs">← CI runs</Link></p>
      <div className="page-head">
        <h1 id="run-title">Run #{id} {current && <StateBadge state={current} />}</h1>
        <div className="actions">
          {current === 'awaiting_approval' && button('approve', 'Approve and run')}
          {current && !kFinal.has(current) && button('cancel', 'Cancel')}
          {current && kFinal.has(current) && current !== 'skipped' && button('retry', 'Retry')}
        </div>
      </div>
      {(Object.keys(denied) as RunAction[]).map((w) => (
        <p key={w} id={`denied-${w}`} className="muted">You may not {w === 'approve' ? 'approve' : w} this run: {denied[w]}</p>
      ))}
      {confirming && (
        <div role="alertdialog" aria-modal="false" aria-labelledby="confirm-text" className="confirm">
          <p id="confirm-text">{kConfirm[confirming]}</p>
          <button type="button" autoFocus onClick={() => act(confirming)}>
            {confirming === 'approve' ? 'Approve and run' : confirming === 'retry' ? 'Retry' : 'Cancel the run'}
          </button>{' '}
          <button type="button" onClick={() => setConfirming(null)}>Keep it as it is</button>
        </div>
      )}
      {action && <p role="status">{action}</p>}
      {run.error && <ErrorBox error={run.error} />}
      {r && (
        <dl className="facts">
          <dt>Pipeline</dt><dd>{r.pipeline}</dd>
          <dt>Repository</dt><dd className="wrap">{r.repo}</dd>
          <dt>Ref</dt><dd>{r.ref} <span className="mono">{short(r.commit, 12)}</span></dd>
          <dt>Event</dt><dd>{r.event}</dd>
          {r.retry_of !== null && <><dt>Retry of</dt><dd><Link href={`/runs/${r.retry_of}`}>Run #{r.retry_of}</Link></dd></>}
          <dt>Started</dt><dd>{time(r.started_at)}</dd>
          <dt>Finished</dt><dd>{time(r.finished_at)}</dd>
          {r.message && <><dt>Message</dt><dd>{r.message}</dd></>}
        </dl>
      )}
      {r && r.steps.length > 0 && (
        <>
          <h2>Steps</h2>
          <div className="dag-wrap">
            <StepDag steps={r.steps} stateOf={stepState} selected={selected}
                     onSelect={(name) => setSelected((cur) => (cur === name ? null : name))} />
          </div>
        </>
      )}
      <h2>Log{selected && <> of {selected} <button type="button" onClick={() => setSelected(null)}>Whole log</button></>}</h2>
      {logError && <ErrorBox error={logError} />}
      <LogView segments={shown} />
    </section>
  );
}
