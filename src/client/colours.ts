/**
 * The few terminal styles cpcc paints with: basic ANSI codes, the ones
 * `printable` (output.ts) lets through. A library for this cost a tenth of
 * a short command's start-up; these are eight functions.
 *
 * A style inside another (a red state in a bold line) is closed by its own
 * code, which would end the outer one too; as chalk does, each inner close
 * code is followed by the outer style's open code again.
 */

type Paint = (text: string | number) => string;

export interface Colours {
  /** 0: plain text; 1: basic colours. */
  readonly level: 0 | 1;
  readonly bold: Paint;
  readonly dim: Paint;
  readonly gray: Paint;
  readonly red: Paint;
  readonly green: Paint;
  readonly yellow: Paint;
  readonly blue: Paint;
  readonly cyan: Paint;
}

function style(open: number, close: number): Paint {
  const o = `\x1b[${open}m`;
  const c = `\x1b[${close}m`;
  return (value: string | number) => {
    const text = String(value);
    return `${o}${text.includes(c) ? text.replaceAll(c, c + o) : text}${c}`;
  };
}

const plain: Paint = (text) => String(text);

export function colours(on: boolean): Colours {
  if (!on) return { level: 0, bold: plain, dim: plain, gray: plain, red: plain, green: plain, yellow: plain, blue: plain, cyan: plain };
  return {
    level: 1,
    bold: style(1, 22),
    dim: style(2, 22),
    gray: style(90, 39),
    red: style(31, 39),
    green: style(32, 39),
    yellow: style(33, 39),
    blue: style(34, 39),
    cyan: style(36, 39),
  };
}
