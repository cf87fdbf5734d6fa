// A run's log (ANSI colours as classes) with search. The log is rendered line by line; a long one
// is windowed (components/virtual.tsx), so only the lines in view are in the DOM. It follows its
// end while the reader is there (a live log grows). The search box finds every occurrence of its
// text in the whole log (logsearch.ts), rendered or not, highlights them, says "3 of 12", and moves
// to the next one with Enter or the Next button and to the previous one with Shift+Enter or
// Previous (both wrap around); moving scrolls the match into view, rendering its part of the log
// first when it is outside the window. Escape clears the search.

import {useEffect, useLayoutEffect, useMemo, useRef, useState, type KeyboardEvent} from 'react';

import type {Segment} from '../ansi';
import {byLine, findMatches, highlight, lineText, stepMatch, toLines, type Line, type Match, type Part} from '../logsearch';
import {useVirtualRows} from './virtual';

function LogLine({line, n, matches, indexes, current}: {
  line: Line; n: number; matches: Match[]; indexes: number[] | undefined; current: number;
}) {
  const parts: Part[] = indexes ? highlight(line, matches, indexes, current) : line.map((s) => ({...s, mark: ''}));
  return (
    <div className="log-line" data-line={n}>
      {parts.map((p, i) => p.mark
        ? <mark key={i} className={`log-match${p.mark === 'current' ? ' current' : ''}${p.classes ? ' ' + p.classes : ''}`}
                aria-current={p.mark === 'current' ? 'true' : undefined}>{p.text}</mark>
        : p.classes ? <span key={i} className={p.classes}>{p.text}</span> : p.text)}
      {'\n' /* copied text keeps its lines */}
    </div>
  );
}

export function LogView({segments}: {segments: Segment[]}) {
  const lines = useMemo(() => toLines(segments), [segments]);
  const texts = useMemo(() => lines.map((l) => lineText(l).toLowerCase()), [lines]);
  const [query, setQuery] = useState('');
  const matches = useMemo(() => findMatches(texts, query), [texts, query]);
  const perLine = useMemo(() => byLine(matches), [matches]);
  const [current, setCurrent] = useState(-1);
  const win = useVirtualRows<HTMLDivElement>(lines.length, {estimate: 19, overscan: 20, threshold: 400});
  const atEnd = useRef(true);
  const seeking = useRef(false); // the current match is to be scrolled into view

  useEffect(() => {
    const el = win.scrollRef.current;
    if (el && atEnd.current && !seeking.current) el.scrollTop = el.scrollHeight;
  }, [segments, win.scrollRef]);

  // A new query starts at its first match; a log that grows keeps the current one.
  useEffect(() => {
    setCurrent(matches.length > 0 ? 0 : -1);
    seeking.current = matches.length > 0;
  }, [query]); // not on matches: more log lines keep the current match
  useEffect(() => {
    if (current >= matches.length) setCurrent(matches.length - 1);
  }, [current, matches.length]);

  // After each render: bring the current match into view once, scrolling the window to it first
  // when its line is not rendered (the scroll renders it, and this runs again).
  useLayoutEffect(() => {
    const scroller = win.scrollRef.current;
    const match = current >= 0 ? matches[current] : undefined;
    if (!seeking.current || !scroller || !match) return;
    const el = scroller.querySelector<HTMLElement>(`[data-line="${match.line}"]`);
    if (el) {
      seeking.current = false;
      atEnd.current = false;
      (el.querySelector<HTMLElement>('mark.current') ?? el).scrollIntoView?.({block: 'center'});
    } else if (win.on) {
      scroller.scrollTop = Math.max(0, match.line * win.rowHeight - scroller.clientHeight / 2);
    }
  });

  const move = (dir: 1 | -1) => {
    if (matches.length === 0) return;
    setCurrent((c) => stepMatch(c, matches.length, dir));
    seeking.current = true;
  };
  const onKey = (e: KeyboardEvent<HTMLInputElement>) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      move(e.shiftKey ? -1 : 1);
    } else if (e.key === 'Escape') {
      setQuery('');
    }
  };
  const count = !query ? '' : matches.length === 0 ? 'No matches' : `${current + 1} of ${matches.length}`;

  return (
    <>
      <div className="log-search" role="search" aria-label="Log search">
        <input type="search" aria-label="Search the log" placeholder="Search the log" value={query}
               onChange={(e) => setQuery(e.target.value)} onKeyDown={onKey} />
        <span className="log-count muted" aria-live="polite">{count}</span>
        <button type="button" onClick={() => move(-1)} disabled={matches.length === 0}
                title="Previous match (Shift+Enter)">Previous</button>
        <button type="button" onClick={() => move(1)} disabled={matches.length === 0}
                title="Next match (Enter)">Next</button>
      </div>
      <div className={`log${win.on ? ' virtual' : ''}`} ref={win.scrollRef} tabIndex={0} role="log" aria-label="Run log"
           aria-live="off"
           onScroll={(e) => {
             const el = e.currentTarget;
             atEnd.current = el.scrollTop + el.clientHeight >= el.scrollHeight - 8;
           }}>
        <div ref={win.bodyRef}>
          {win.padTop > 0 && <div className="spacer" aria-hidden="true" style={{height: win.padTop}} />}
          {lines.slice(win.start, win.end).map((line, k) => (
            <LogLine key={win.start + k} line={line} n={win.start + k} matches={matches}
                     indexes={perLine.get(win.start + k)} current={current} />
          ))}
          {win.padBottom > 0 && <div className="spacer" aria-hidden="true" style={{height: win.padBottom}} />}
        </div>
      </div>
    </>
  );
}
