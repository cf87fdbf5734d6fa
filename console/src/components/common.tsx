import {useCallback, useEffect, useRef, useState} from 'react';

import {ApiError, type Client} from '../api/client';
import {subscribe} from '../api/events';

export interface Loaded<T> {
  data: T | null;
  error: Error | null;
  loading: boolean;
  reload: () => void;
}

// Calls `reload` 200 ms after the last of a burst of release or app events (a deploy sends many),
// and each time the event stream opens (what was loaded before may have changed unannounced).
export function useReloadOnDeliveryEvents(client: Client, reload: () => void): void {
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stop = subscribe(client, (name) => {
      if (name !== 'release' && name !== 'app') return;
      clearTimeout(timer);
      timer = setTimeout(reload, 200);
    }, {onOpen: reload});
    return () => {
      clearTimeout(timer);
      stop();
    };
  }, [client, reload]);
}

// Calls `load` on mount and whenever `deps` change; reload() calls it again keeping the data shown.
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const [loading, setLoading] = useState(true);
  const generation = useRef(0);
  // eslint-disable-next-line react-hooks/exhaustive-deps
  const run = useCallback(load, deps);
  const reload = useCallback(() => {
    const g = ++generation.current;
    setLoading(true);
    run().then(
      (d) => {
        if (g !== generation.current) return;
        setData(d);
        setError(null);
        setLoading(false);
      },
      (e: Error) => {
        if (g !== generation.current) return;
        setError(e);
        setLoading(false);
      },
    );
  }, [run]);
  useEffect(reload, [reload]);
  return {data, error, loading, reload};
}

export function ErrorBox({error}: {error: Error}) {
  const p = error instanceof ApiError ? error.problem : null;
  return (
    <div className="error" role="alert">
      <strong>{p ? `${p.status || ''} ${p.title}`.trim() : 'Error'}</strong>
      <span>{p ? p.detail : error.message}</span>
    </div>
  );
}

const kStateClass: Record<string, string> = {
  healthy: 'ok', succeeded: 'ok', success: 'ok',
  failed: 'bad', error: 'bad', rolled_back: 'bad', cancelled: 'bad', canceled: 'bad', interrupted: 'bad',
  pending: 'wait', queued: 'wait', awaiting_approval: 'wait',
  applying: 'busy', running: 'busy',
};

export function StateBadge({state}: {state: string}) {
  return <span className={`badge badge-${kStateClass[state] ?? 'other'}`}>{state.replace(/_/g, ' ')}</span>;
}

export function short(rev: string, n = 8): string {
  return rev.length > n ? rev.slice(0, n) : rev;
}

export function time(t: string | null): string {
  if (!t) return '—';
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? t : d.toLocaleString();
}
