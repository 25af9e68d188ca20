/**
 * How wide each column of a table may be so that every row fits the
 * terminal on one line. Pure arithmetic: output.ts measures the cells and
 * cuts them to these widths with an ellipsis.
 *
 * Columns give way in order. Free text (names, commands, reasons) shrinks
 * first, since its start says the most; then the other columns, down to
 * their header; then everything but ids, down to one character. Id columns
 * never shrink: a cut id cannot be pasted back into the next command. A
 * table whose ids alone are wider than the terminal stays too wide rather
 * than lose them.
 */

export type ColumnKind = 'id' | 'text' | 'other';

export interface ColumnFit {
  /** The widest cell, header included. */
  natural: number;
  /** The header's width. */
  header: number;
  kind: ColumnKind;
}

/** The narrowest free text is cut to while other columns still have room to give. */
const TEXT_FLOOR = 10;

/** Widths for `columns` whose cells add up to at most `room` (what is left after borders and gaps). */
export function fitWidths(columns: readonly ColumnFit[], room: number): number[] {
  const widths = columns.map((c) => c.natural);
  let excess = widths.reduce((a, b) => a + b, 0) - room;
  const stages: { kind: (k: ColumnKind) => boolean; floor: (c: ColumnFit) => number }[] = [
    { kind: (k) => k === 'text', floor: (c) => Math.max(c.header, TEXT_FLOOR) },
    { kind: (k) => k === 'other', floor: (c) => c.header },
    { kind: (k) => k === 'text', floor: (c) => Math.min(c.header, 4) },
    { kind: (k) => k !== 'id', floor: () => 1 },
  ];
  for (const stage of stages) {
    // One character at a time from the widest column of this stage, so long columns give way before short ones.
    while (excess > 0) {
      let widest = -1;
      for (let i = 0; i < columns.length; i++) {
        const c = columns[i]!;
        if (!stage.kind(c.kind) || widths[i]! <= Math.min(c.natural, stage.floor(c))) continue;
        if (widest < 0 || widths[i]! > widths[widest]!) widest = i;
      }
      if (widest < 0) break;
      widths[widest]!--;
      excess--;
    }
  }
  return widths;
}

/** The terminal's width for tables: COLUMNS first, then the terminal's own; none for a pipe (no limit). */
export function terminalWidth(env: NodeJS.ProcessEnv, stream: { isTTY?: boolean; columns?: number }): number | undefined {
  const fromEnv = Number(env.COLUMNS);
  if (env.COLUMNS !== undefined && env.COLUMNS !== '' && Number.isSafeInteger(fromEnv) && fromEnv > 0) return fromEnv;
  if (stream.isTTY === true && typeof stream.columns === 'number' && stream.columns > 0) return stream.columns;
  return undefined;
}
