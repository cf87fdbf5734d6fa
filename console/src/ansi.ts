// ANSI SGR colour codes in CI logs → segments with CSS classes (no inline styles: the console's
// Content-Security-Policy allows none). Other escape sequences (cursor movement, OSC titles) are
// dropped so they never show as garbage.

export interface Segment {
  text: string;
  classes: string; // "" or e.g. "ansi-bold ansi-fg-1"
}

interface Sgr {
  bold: boolean;
  fg: number | null; // 0-15
  bg: number | null;
}

function classesOf(s: Sgr): string {
  const c: string[] = [];
  if (s.bold) c.push('ansi-bold');
  if (s.fg !== null) c.push(`ansi-fg-${s.fg}`);
  if (s.bg !== null) c.push(`ansi-bg-${s.bg}`);
  return c.join(' ');
}

function apply(s: Sgr, params: string): Sgr {
  const codes = params === '' ? [0] : params.split(';').map((p) => (p === '' ? 0 : Number(p)));
  let out = {...s};
  for (let i = 0; i < codes.length; i++) {
    const n = codes[i];
    if (n === 0) out = {bold: false, fg: null, bg: null};
    else if (n === 1) out.bold = true;
    else if (n === 22) out.bold = false;
    else if (n >= 30 && n <= 37) out.fg = n - 30;
    else if (n >= 90 && n <= 97) out.fg = n - 90 + 8;
    else if (n === 39) out.fg = null;
    else if (n >= 40 && n <= 47) out.bg = n - 40;
    else if (n >= 100 && n <= 107) out.bg = n - 100 + 8;
    else if (n === 49) out.bg = null;
    else if ((n === 38 || n === 48) && codes[i + 1] === 5) i += 2; // 256 colours: not mapped
    else if ((n === 38 || n === 48) && codes[i + 1] === 2) i += 4; // true colour: not mapped
  }
  return out;
}

// Parses `text`; `state` carries the colour across calls (a live log arrives in pieces).
export class AnsiParser {
  private state: Sgr = {bold: false, fg: null, bg: null};

  parse(text: string): Segment[] {
    const out: Segment[] = [];
    // CSI ... final byte, OSC ... BEL/ST, or a lone ESC + one character.
    const re = /\x1b\[([0-9;?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b./g;
    let last = 0;
    const emit = (t: string) => {
      if (!t) return;
      const classes = classesOf(this.state);
      const prev = out[out.length - 1];
      if (prev && prev.classes === classes) prev.text += t;
      else out.push({text: t, classes});
    };
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      emit(text.slice(last, m.index));
      last = m.index + m[0].length;
      if (m[2] === 'm') this.state = apply(this.state, m[1]);
    }
    emit(text.slice(last));
    return out;
  }
}

export function parseAnsi(text: string): Segment[] {
  return new AnsiParser().parse(text);
}
