import {describe, expect, it} from 'vitest';

import {parseAnsi} from './ansi';
import {byLine, findMatches, highlight, lineText, stepMatch, toLines} from './logsearch';

describe('log search', () => {
  const lines = toLines(parseAnsi('plain \x1b[32mgreen\nstill green\x1b[0m ok\n\nGREEN again green\n'));

  it('splits coloured segments into lines, keeping colours across the newline', () => {
    expect(lines).toEqual([
      [{text: 'plain ', classes: ''}, {text: 'green', classes: 'ansi-fg-2'}],
      [{text: 'still green', classes: 'ansi-fg-2'}, {text: ' ok', classes: ''}],
      [],
      [{text: 'GREEN again green', classes: ''}],
    ]);
    expect(toLines(parseAnsi('no newline at the end'))).toEqual([[{text: 'no newline at the end', classes: ''}]]);
    expect(toLines([])).toEqual([[]]);
  });

  it('finds every occurrence in every line, ignoring case, in order', () => {
    const texts = lines.map((l) => lineText(l).toLowerCase());
    expect(findMatches(texts, 'Green')).toEqual([
      {line: 0, start: 6, end: 11},
      {line: 1, start: 6, end: 11},
      {line: 3, start: 0, end: 5},
      {line: 3, start: 12, end: 17},
    ]);
    expect(findMatches(texts, '')).toEqual([]);
    expect(findMatches(['aaaa'], 'aa')).toEqual([{line: 0, start: 0, end: 2}, {line: 0, start: 2, end: 4}]);
    expect(findMatches(texts, 'nowhere')).toEqual([]);
  });

  it('cuts a line at its matches across segments and marks the current one', () => {
    const line = toLines(parseAnsi('ab\x1b[31mcd\x1b[0mef cd'))[0];
    const matches = findMatches([lineText(line).toLowerCase()], 'bcd');
    expect(highlight(line, matches, [0], 0)).toEqual([
      {text: 'a', classes: '', mark: ''},
      {text: 'b', classes: '', mark: 'current'},
      {text: 'cd', classes: 'ansi-fg-1', mark: 'current'},
      {text: 'ef cd', classes: '', mark: ''},
    ]);
    const two = findMatches([lineText(line).toLowerCase()], 'cd');
    expect(highlight(line, two, [0, 1], 1)).toEqual([
      {text: 'ab', classes: '', mark: ''},
      {text: 'cd', classes: 'ansi-fg-1', mark: 'match'},
      {text: 'ef ', classes: '', mark: ''},
      {text: 'cd', classes: '', mark: 'current'},
    ]);
  });

  it('finds a line far outside any window of a long log, and indexes matches by line', () => {
    const long = toLines(parseAnsi(Array.from({length: 50_000}, (_, i) => `line ${i}\n`).join('')));
    const texts = long.map((l) => lineText(l).toLowerCase());
    const found = findMatches(texts, 'LINE 43210');
    expect(found).toEqual([{line: 43210, start: 0, end: 10}]);
    expect(byLine(findMatches(texts, 'line 4321'))).toEqual(new Map([[4321, [0]], [43210, [1]], [43211, [2]], [43212, [3]],
      [43213, [4]], [43214, [5]], [43215, [6]], [43216, [7]], [43217, [8]], [43218, [9]], [43219, [10]]]));
  });

  it('steps to the next and previous match, wrapping around', () => {
    expect(stepMatch(0, 3, 1)).toBe(1);
    expect(stepMatch(2, 3, 1)).toBe(0);
    expect(stepMatch(0, 3, -1)).toBe(2);
    expect(stepMatch(-1, 3, -1)).toBe(2);
    expect(stepMatch(-1, 3, 1)).toBe(0);
    expect(stepMatch(0, 0, 1)).toBe(-1);
  });
});
