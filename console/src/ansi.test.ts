import {describe, expect, it} from 'vitest';

import {AnsiParser, parseAnsi} from './ansi';

describe('parseAnsi', () => {
  it('maps SGR colours and bold to classes and resets', () => {
    expect(parseAnsi('plain \x1b[1;31mred bold\x1b[0m \x1b[92mbright\x1b[39m done')).toEqual([
      {text: 'plain ', classes: ''},
      {text: 'red bold', classes: 'ansi-bold ansi-fg-1'},
      {text: ' ', classes: ''},
      {text: 'bright', classes: 'ansi-fg-10'},
      {text: ' done', classes: ''},
    ]);
  });
  it('drops other escape sequences and unmapped 256-colour codes', () => {
    expect(parseAnsi('a\x1b[2Kb\x1b]0;title\x07c\x1b[38;5;200md')).toEqual([{text: 'abcd', classes: ''}]);
  });
  it('carries the colour across pieces of a live log', () => {
    const p = new AnsiParser();
    expect(p.parse('\x1b[32mgre')).toEqual([{text: 'gre', classes: 'ansi-fg-2'}]);
    expect(p.parse('en\x1b[m!')).toEqual([{text: 'en', classes: 'ansi-fg-2'}, {text: '!', classes: ''}]);
  });
});
