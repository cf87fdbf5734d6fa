// Windowed table bodies and lists: a long list renders only the rows in view (plus a few either
// side) between two spacers that keep the scroll height, so 200 apps × 9 clusters or thousands of
// runs keep the DOM small. The table (or list) scrolls inside its wrapper (max-height in
// styles.css). Row height is measured from the rows rendered (their average), starting from an
// estimate. Lists up to `threshold` rows render whole (no scroll container, nothing to measure).

import {useCallback, useEffect, useLayoutEffect, useRef, useState, type ReactNode, type RefObject} from 'react';

export interface VirtualRows<Body extends HTMLElement = HTMLTableSectionElement> {
  // The scroll container (the table's wrapper) and the <tbody> (or <ul>) whose rows are measured.
  scrollRef: RefObject<HTMLDivElement | null>;
  bodyRef: RefObject<Body | null>;
  on: boolean;    // windowing is on (more rows than the threshold)
  start: number;  // first row rendered
  end: number;    // one past the last
  padTop: number;  // pixels of the rows above, and below
  padBottom: number;
  rowHeight: number;  // measured (the average of the rows rendered), else the estimate
}

export function useVirtualRows<Body extends HTMLElement = HTMLTableSectionElement>(count: number, {estimate, overscan = 6, threshold = 80}: {
  estimate: number; overscan?: number; threshold?: number;
}): VirtualRows<Body> {
  const scrollRef = useRef<HTMLDivElement | null>(null);
  const bodyRef = useRef<Body | null>(null);
  const [view, setView] = useState({top: 0, height: 800});
  const [rowHeight, setRowHeight] = useState(estimate);
  const on = count > threshold;
  const update = useCallback(() => {
    const el = scrollRef.current;
    if (!el) return;
    setView((v) => {
      const next = {top: el.scrollTop, height: el.clientHeight || 800};
      return v.top === next.top && v.height === next.height ? v : next;
    });
  }, []);
  useEffect(() => {
    const el = scrollRef.current;
    if (!on || !el) return;
    update();
    el.addEventListener('scroll', update, {passive: true});
    window.addEventListener('resize', update);
    return () => {
      el.removeEventListener('scroll', update);
      window.removeEventListener('resize', update);
    };
  }, [on, update]);
  const start = on ? Math.min(count, Math.max(0, Math.floor(view.top / rowHeight) - overscan)) : 0;
  const end = on ? Math.min(count, Math.ceil((view.top + view.height) / rowHeight) + overscan) : count;
  const padTop = start * rowHeight;
  const padBottom = (count - end) * rowHeight;
  // The average height of the rows rendered (spacers excluded) becomes the estimate.
  useLayoutEffect(() => {
    const body = bodyRef.current;
    if (!on || !body || end <= start) return;
    const rows = body.querySelectorAll<HTMLElement>(':scope > :not(.spacer)');
    let total = 0;
    rows.forEach((r) => { total += r.getBoundingClientRect().height; });
    const measured = rows.length ? total / rows.length : 0;
    if (measured > 0 && Math.abs(measured - rowHeight) > 0.5) setRowHeight(measured);
  }, [on, start, end, rowHeight]);
  return {scrollRef, bodyRef, on, start, end, padTop, padBottom, rowHeight};
}

// The spacer row standing for `height` pixels of rows not rendered.
export function Spacer({height, columns}: {height: number; columns: number}) {
  if (height <= 0) return null;
  return <tr className="spacer" aria-hidden="true" style={{height}}><td colSpan={columns} /></tr>;
}

// A windowed list (<ul>) of `items` in a scroll container of its own: an environment's or a
// cluster's apps. `label` names the list for assistive technology.
export function WindowedList<T>({items, keyOf, render, label, estimate = 26}: {
  items: T[]; keyOf: (item: T) => string; render: (item: T) => ReactNode; label: string; estimate?: number;
}) {
  const win = useVirtualRows<HTMLUListElement>(items.length, {estimate, threshold: 40});
  return (
    <div className={`list-wrap${win.on ? ' virtual' : ''}`} ref={win.scrollRef}>
      <ul className="plain" ref={win.bodyRef} aria-label={label}>
        {win.padTop > 0 && <li className="spacer" aria-hidden="true" style={{height: win.padTop}} />}
        {items.slice(win.start, win.end).map((item) => <li key={keyOf(item)}>{render(item)}</li>)}
        {win.padBottom > 0 && <li className="spacer" aria-hidden="true" style={{height: win.padBottom}} />}
      </ul>
    </div>
  );
}
