// Search in a run's log (the CI run page): the log's coloured segments as lines, the matches of a
// query in them, and a line cut at its matches for highlighting. Pure: the view (LogView in
// pages/RunDetail.tsx) renders the lines, windowed when there are many, and scrolls to a match
// wherever it is, rendered or not.

import type {Segment} from './ansi';

// One line of the log: its segments, without the newline.
export type Line = Segment[];

// An occurrence of the query: its line and the offsets of its characters in the line's text.
export interface Match {
  line: number;
  start: number;
  end: number;
}

// A piece of a line as shown: its colours, and whether it is (part of) a match, the current one.
export interface Part extends Segment {
  mark: '' | 'match' | 'current';
}

// Splits the log's segments at its newlines. A log that ends with a newline has no empty last line.
export function toLines(segments: Segment[]): Line[] {
  const lines: Line[] = [[]];
  for (const s of segments) {
    const pieces = s.text.split('\n');
    pieces.forEach((text, i) => {
      if (i > 0) lines.push([]);
      if (text) lines[lines.length - 1].push({text, classes: s.classes});
    });
  }
  if (lines.length > 1 && lines[lines.length - 1].length === 0) lines.pop();
  return lines;
}

export function lineText(line: Line): string {
  return line.map((s) => s.text).join('');
}

// Every occurrence of `query` in the lines (`texts`: lineText of each, lower-cased), in order,
// ignoring case; occurrences on one line do not overlap. An empty query matches nothing.
export function findMatches(texts: string[], query: string): Match[] {
  const q = query.toLowerCase();
  const out: Match[] = [];
  if (!q) return out;
  texts.forEach((text, line) => {
    for (let at = text.indexOf(q); at >= 0; at = text.indexOf(q, at + q.length)) out.push({line, start: at, end: at + q.length});
  });
  return out;
}

// The index of the matches of each line, for the lines that have any.
export function byLine(matches: Match[]): Map<number, number[]> {
  const out = new Map<number, number[]>();
  matches.forEach((m, i) => {
    const list = out.get(m.line);
    if (list) list.push(i);
    else out.set(m.line, [i]);
  });
  return out;
}

// `line` cut at the given matches (of this line, in order); the one at index `current` is marked so.
export function highlight(line: Line, matches: Match[], indexes: number[], current: number): Part[] {
  const cuts = indexes.map((i) => ({start: matches[i].start, end: matches[i].end, mark: (i === current ? 'current' : 'match') as Part['mark']}));
  const out: Part[] = [];
  let offset = 0; // of the segment's first character in the line
  for (const s of line) {
    const end = offset + s.text.length;
    let at = offset;
    for (const c of cuts) {
      if (c.end <= at || c.start >= end) continue;
      if (c.start > at) out.push({text: s.text.slice(at - offset, c.start - offset), classes: s.classes, mark: ''});
      const stop = Math.min(c.end, end);
      out.push({text: s.text.slice(Math.max(c.start, at) - offset, stop - offset), classes: s.classes, mark: c.mark});
      at = stop;
    }
    if (at < end) out.push({text: s.text.slice(at - offset), classes: s.classes, mark: ''});
    offset = end;
  }
  return out;
}

// The match after (dir 1) or before (dir -1) `index` among `count`, wrapping around; -1 when none.
export function stepMatch(index: number, count: number, dir: 1 | -1): number {
  if (count === 0) return -1;
  if (index < 0) return dir === 1 ? 0 : count - 1;
  return (index + dir + count) % count;
}
