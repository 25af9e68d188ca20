/**
 * Drawing tables: boxes on a terminal, whitespace columns for a pipe.
 * table-fit.ts decides how wide each column may be; this measures cells as
 * the terminal shows them (colour codes take no room, CJK and emoji take
 * two columns, combining marks none) and draws. Pure string work, loaded
 * with the output: a table library and its width tables cost a listing
 * command a fifth of its start-up.
 */

const SGR = /\x1b\[[0-9;]*m/g;

/** Code points the terminal draws two columns wide (East Asian Wide and Fullwidth, emoji). */
const WIDE: readonly (readonly [number, number])[] = [
  [0x1100, 0x115f], [0x231a, 0x231b], [0x2329, 0x232a], [0x23e9, 0x23ec], [0x23f0, 0x23f0], [0x23f3, 0x23f3],
  [0x25fd, 0x25fe], [0x2614, 0x2615], [0x2648, 0x2653], [0x267f, 0x267f], [0x2693, 0x2693], [0x26a1, 0x26a1],
  [0x26aa, 0x26ab], [0x26bd, 0x26be], [0x26c4, 0x26c5], [0x26ce, 0x26ce], [0x26d4, 0x26d4], [0x26ea, 0x26ea],
  [0x26f2, 0x26f3], [0x26f5, 0x26f5], [0x26fa, 0x26fa], [0x26fd, 0x26fd], [0x2705, 0x2705], [0x270a, 0x270b],
  [0x2728, 0x2728], [0x274c, 0x274c], [0x274e, 0x274e], [0x2753, 0x2755], [0x2757, 0x2757], [0x2795, 0x2797],
  [0x27b0, 0x27b0], [0x27bf, 0x27bf], [0x2b1b, 0x2b1c], [0x2b50, 0x2b50], [0x2b55, 0x2b55],
  [0x2e80, 0x303e], [0x3041, 0x33ff], [0x3400, 0x4dbf], [0x4e00, 0x9fff], [0xa000, 0xa4cf], [0xa960, 0xa97f],
  [0xac00, 0xd7a3], [0xf900, 0xfaff], [0xfe10, 0xfe19], [0xfe30, 0xfe6f], [0xff00, 0xff60], [0xffe0, 0xffe6],
  [0x16fe0, 0x16fe4], [0x17000, 0x18cff], [0x1b000, 0x1b2ff], [0x1f004, 0x1f004], [0x1f0cf, 0x1f0cf],
  [0x1f18e, 0x1f18e], [0x1f191, 0x1f19a], [0x1f200, 0x1f251], [0x1f300, 0x1f64f], [0x1f680, 0x1f6ff],
  [0x1f7e0, 0x1f7eb], [0x1f90c, 0x1f9ff], [0x1fa70, 0x1faff], [0x20000, 0x3fffd],
];

/** Code points that take no column: combining marks, joiners, variation selectors. */
const ZERO: readonly (readonly [number, number])[] = [
  [0x0300, 0x036f], [0x0483, 0x0489], [0x0591, 0x05bd], [0x0610, 0x061a], [0x064b, 0x065f], [0x0e31, 0x0e31],
  [0x0e34, 0x0e3a], [0x0e47, 0x0e4e], [0x1ab0, 0x1aff], [0x1dc0, 0x1dff], [0x200b, 0x200f], [0x20d0, 0x20ff],
  [0xfe00, 0xfe0f], [0xfe20, 0xfe2f], [0xe0100, 0xe01ef],
];

function within(cp: number, ranges: readonly (readonly [number, number])[]): boolean {
  let lo = 0;
  let hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const [a, b] = ranges[mid]!;
    if (cp < a) hi = mid - 1;
    else if (cp > b) lo = mid + 1;
    else return true;
  }
  return false;
}

function charWidth(cp: number): number {
  if (cp < 0x300) return 1;
  if (within(cp, ZERO)) return 0;
  return within(cp, WIDE) ? 2 : 1;
}

/** Columns `text` takes on a terminal. */
export function displayWidth(text: string): number {
  let w = 0;
  for (const ch of text.replace(SGR, '')) w += charWidth(ch.codePointAt(0)!);
  return w;
}

/** `text` cut to `width` columns, the last one an ellipsis; colour codes kept, and reset when cut. */
export function truncate(text: string, width: number): string {
  if (displayWidth(text) <= width) return text;
  if (width <= 0) return '';
  let out = '';
  let w = 0;
  let coloured = false;
  for (let i = 0; i < text.length; ) {
    SGR.lastIndex = i;
    const esc = text[i] === '\x1b' ? SGR.exec(text) : null;
    if (esc !== null && esc.index === i) {
      out += esc[0];
      coloured = true;
      i += esc[0].length;
      continue;
    }
    const ch = String.fromCodePoint(text.codePointAt(i)!);
    const cw = charWidth(ch.codePointAt(0)!);
    if (w + cw > width - 1) break;
    out += ch;
    w += cw;
    i += ch.length;
  }
  return `${out}…${coloured ? '\x1b[0m' : ''}`;
}

function pad(text: string, width: number, align: 'left' | 'right'): string {
  const room = ' '.repeat(Math.max(0, width - displayWidth(text)));
  return align === 'right' ? room + text : text + room;
}

export interface DrawOptions {
  aligns: readonly ('left' | 'right')[];
  /** Box drawing (a terminal) or whitespace columns (a pipe). */
  boxed: boolean;
  /** Paints the box's lines (grey on a colour terminal). */
  border?: (text: string) => string;
}

/** The table as lines joined by newlines, without a final one. Cells must already fit their columns. */
export function drawTable(heads: readonly string[], rows: readonly (readonly string[])[], opts: DrawOptions): string {
  const n = heads.length;
  const widths = heads.map((h, i) => Math.max(displayWidth(h), ...rows.map((r) => displayWidth(r[i] ?? ''))));
  const align = (i: number) => opts.aligns[i] ?? 'left';
  if (!opts.boxed) {
    const line = (cells: readonly string[]) =>
      cells.map((c, i) => pad(c, widths[i]!, align(i))).join('  ').replace(/[ \t]+$/, '');
    return [line(heads), ...rows.map(line)].join('\n');
  }
  const paint = opts.border ?? ((s: string) => s);
  const rule = (left: string, mid: string, right: string) => paint(left + widths.map((w) => '─'.repeat(w + 2)).join(mid) + right);
  const bar = paint('│');
  const line = (cells: readonly string[]) =>
    `${bar} ${Array.from({ length: n }, (_, i) => pad(cells[i] ?? '', widths[i]!, align(i))).join(` ${bar} `)} ${bar}`;
  return [rule('┌', '┬', '┐'), line(heads), rule('├', '┼', '┤'), ...rows.map(line), rule('└', '┴', '┘')].join('\n');
}
