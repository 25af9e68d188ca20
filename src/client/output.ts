/**
 * Everything cpcc shows goes through here, so that `--json`, `--no-color`,
 * `NO_COLOR` and the look of tables hold for every command alike. Colours
 * (colours.ts) and table drawing (table-draw.ts) are used nowhere else.
 *
 * Names, reasons and messages come from servers and from other people, so
 * nothing reaches the terminal with its control characters: lines, notes,
 * table cells, progress and errors are passed through `printable`, which
 * shows them escaped (`\x1b`) and keeps only the colour codes cpcc adds
 * itself. Logs and tokens (`raw`) are the result and are written as they are.
 */
import { CommanderError } from 'commander';
import type { JobState } from '../core/types.js';
import { colours, type Colours } from './colours.js';
import { drawTable, displayWidth, truncate } from './table-draw.js';
import { fitWidths, terminalWidth, type ColumnKind } from './table-fit.js';
import { ApiError } from './api/client.js';
import { ConfigError } from './config.js';
import { userMessage } from './server-messages.js';

import { EXIT_FAILURE, EXIT_USAGE } from './exit-codes.js';

export { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './exit-codes.js';

export interface TextStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  /** A terminal's width. */
  columns?: number;
}

export interface OutputOptions {
  json?: boolean;
  /** false for `--no-color`; colour also needs a terminal, or FORCE_COLOR. */
  color?: boolean;
  env?: NodeJS.ProcessEnv;
}

export interface Column<Row> {
  header: string;
  value: (row: Row) => string | number | null | undefined;
  align?: 'left' | 'right';
  /** Longer cells are cut with an ellipsis, so one long command cannot wreck the table. */
  max?: number;
  /**
   * How the column gives way to a narrow terminal (table-fit.ts): `id` never
   * (ids are pasted back), `text` first. By default columns with a `max` are
   * text, and those headed `id`, `job`, `pilot` or `… id` are ids.
   */
  fit?: ColumnKind;
}

const ID_HEADER = /^(id|job|pilot)$|\bid$/i;
const TEXT_HEADER = /^(name|command|reason|last error|value|message)$/i;

function kindOf(col: Column<never>): ColumnKind {
  if (col.fit) return col.fit;
  if (ID_HEADER.test(col.header)) return 'id';
  return col.max !== undefined || TEXT_HEADER.test(col.header) ? 'text' : 'other';
}

const sum = (ns: readonly number[]) => ns.reduce((a, b) => a + b, 0);

/** A failure the CLI reports as one line; library code throws these, only the CLI exits. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT_FAILURE,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export function fail(message: string, exitCode: number = EXIT_FAILURE, code?: string): never {
  throw new CliError(message, exitCode, code);
}

export function usage(message: string): never {
  throw new CliError(message, EXIT_USAGE);
}

export function colourWanted(stream: TextStream, opts: OutputOptions): boolean {
  const env = opts.env ?? process.env;
  if (opts.color === false) return false;
  // https://no-color.org: present and not empty disables colour.
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined) return env.FORCE_COLOR !== '0' && env.FORCE_COLOR !== 'false';
  return stream.isTTY === true && env.TERM !== 'dumb';
}

const STATE_COLOURS: Record<JobState, (c: Colours, s: string) => string> = {
  waiting: (c, s) => c.gray(s),
  queued: (c, s) => c.cyan(s),
  running: (c, s) => c.blue(s),
  done: (c, s) => c.green(s),
  failed: (c, s) => c.red(s),
  cancelled: (c, s) => c.yellow(s),
};

export class Output {
  readonly json: boolean;
  readonly tty: boolean;
  readonly c: Colours;
  /** What tables and progress lines must fit in; undefined for a pipe without COLUMNS. */
  readonly width: number | undefined;
  private readonly env: NodeJS.ProcessEnv;

  constructor(
    readonly stdout: TextStream,
    readonly stderr: TextStream,
    opts: OutputOptions = {},
  ) {
    this.json = opts.json === true;
    this.tty = stdout.isTTY === true;
    this.c = colours(colourWanted(stdout, opts));
    this.env = opts.env ?? process.env;
    this.width = terminalWidth(this.env, stdout);
  }

  /** A line for people; suppressed under --json so stdout stays one JSON document. */
  line(text = ''): void {
    if (!this.json) this.stdout.write(`${this.printable(text)}\n`);
  }

  /** `text` safe for the terminal, with the colour codes this output may add. */
  printable(text: string, multiline = true): string {
    return printable(text, { colour: this.c.level > 0, multiline });
  }

  /** Text that is the result itself (logs, a token), written as is. */
  raw(text: string): void {
    this.stdout.write(text);
  }

  /** Side remarks go to stderr, where they never mix with the result. */
  note(text: string): void {
    this.stderr.write(`${this.printable(text)}\n`);
  }

  /** A footer or hint beside a result ("N more; use --limit"): on stderr, so pipes get the rows alone; none under --json. */
  hint(text: string): void {
    if (!this.json) this.note(this.c.dim(text));
  }

  data(value: unknown): void {
    this.stdout.write(`${jsonText(value)}\n`);
  }

  /** `value` under --json, otherwise whatever `human` prints. */
  show(value: unknown, human: () => void): void {
    if (this.json) this.data(value);
    else human();
  }

  /** A listing: `value` under --json, a table otherwise. */
  list<Row>(value: unknown, rows: readonly Row[], columns: readonly Column<Row>[], empty = '(none)'): void {
    if (this.json) this.data(value);
    else if (rows.length === 0) this.line(this.c.dim(empty));
    else this.table(rows, columns);
  }

  table<Row>(rows: readonly Row[], columns: readonly Column<Row>[]): void {
    if (this.json) {
      this.data(rows);
      return;
    }
    const cells = rows.map((row) =>
      columns.map((col) => {
        const v = col.value(row);
        const s = v === null || v === undefined ? '' : String(v);
        return this.printable(col.max !== undefined ? clip(s, col.max) : s, false);
      }),
    );
    let heads = columns.map((col) => this.printable(col.header, false));
    let boxed = this.tty;
    if (this.width !== undefined) {
      const n = columns.length;
      const fits = columns.map((col, i) => ({
        header: displayWidth(heads[i]!),
        natural: Math.max(displayWidth(heads[i]!), ...cells.map((r) => displayWidth(r[i]!))),
        kind: kindOf(col as Column<never>),
      }));
      // Borders and padding on a terminal (`│ a │ b │`), two spaces between columns otherwise.
      const room = (box: boolean) => this.width! - (box ? 3 * n + 1 : 2 * (n - 1));
      let widths = fitWidths(fits, room(boxed));
      // A terminal too narrow for the boxes gets the plain columns, which give the cells more room.
      if (boxed && sum(widths) > room(true)) {
        boxed = false;
        widths = fitWidths(fits, room(false));
      }
      const cut = (s: string, i: number) => truncate(s, widths[i]!);
      heads = heads.map(cut);
      for (const r of cells) r.forEach((s, i) => (r[i] = cut(s, i)));
    }
    // Cells are cut to fit above; a row is never wrapped.
    const drawn = drawTable(
      heads.map((h) => this.c.bold(h)),
      cells,
      { aligns: columns.map((col) => col.align ?? 'left'), boxed, border: this.c.gray },
    );
    this.stdout.write(`${drawn}\n`);
  }

  /** Key/value pairs, aligned: how single objects look for people. */
  fields(pairs: readonly [string, string | number | null | undefined][]): void {
    const width = Math.max(0, ...pairs.map(([k]) => k.length));
    for (const [k, v] of pairs) {
      if (v === undefined || v === null || v === '') continue;
      this.line(`${this.c.dim(`${k}:`.padEnd(width + 1))} ${v}`);
    }
  }

  state(state: JobState | string): string {
    const paint = STATE_COLOURS[state as JobState];
    return paint ? paint(this.c, state) : state;
  }

  /** A status line that redraws itself on a terminal and prints plain lines when it changes otherwise. */
  progress(): Progress {
    return new Progress(this.stderr, this.stderr.isTTY === true, (text) => this.printable(text, false), terminalWidth(this.env, this.stderr));
  }
}

export class Progress {
  private last = '';
  private drawn = false;

  constructor(
    private readonly stream: TextStream,
    private readonly live: boolean,
    private readonly safe: (text: string) => string = (text) => printable(text, { multiline: false }),
    /** The line's room, when known: it is cut to fit (a terminal would wrap it, and `\r` then redraws only the last part). */
    private readonly width?: number,
  ) {}

  /**
   * `fraction` draws a bar on a terminal; plain lines leave it out, as it
   * says nothing the text does not. `tail` (an ETA) is shown after the text
   * and kept when the text is cut; alone it changes a plain line only
   * together with the text, so a pipe gets a line per change of state and
   * not one per tick of the clock.
   */
  update(raw: string, fraction?: number, tail = ''): void {
    const text = this.safe(raw);
    const end = tail === '' ? '' : this.safe(tail);
    // On a terminal the last column is left free: writing there wraps on some terminals.
    const room = this.width === undefined ? Infinity : this.live ? this.width - 1 : this.width;
    const barText = fraction !== undefined && this.live && room - BAR_WIDTH - 3 >= MIN_TEXT ? `${bar(fraction, BAR_WIDTH)} ` : '';
    const line = barText + fit(text, end, room - barText.length);
    // A plain line is new when what it shows of the text is; a live one at any change.
    const key = this.live ? line : fit(text, '', room);
    if (key === this.last) return;
    this.last = key;
    if (this.live) {
      this.stream.write(`\r\x1b[2K${line}`);
      this.drawn = true;
    } else {
      this.stream.write(`${line}\n`);
    }
  }

  end(): void {
    if (this.drawn) this.stream.write('\n');
    this.drawn = false;
  }
}

const BAR_WIDTH = 30;
/** Below this much room for the text a progress line drops its bar. */
const MIN_TEXT = 30;

/** `text` then `tail` in at most `room` characters: the text is cut (with …) before the tail is. */
function fit(text: string, tail: string, room: number): string {
  const whole = text + tail;
  if ([...whole].length <= room) return whole;
  const t = [...tail];
  if (t.length >= room) return clip(t.join(''), Math.max(1, room));
  return clip(text, room - t.length) + tail;
}

/** The time left at the pace seen so far (`done` more finished in `elapsedMs`, `left` to go), or '' before there is a pace. */
export function eta(done: number, elapsedMs: number, left: number): string {
  if (!(done > 0) || !(elapsedMs > 0) || !(left > 0)) return '';
  return duration((left * elapsedMs) / done);
}

export function bar(fraction: number, width = 30): string {
  const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
  const full = Math.round(f * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}

/**
 * Characters that act on a terminal instead of showing: C0 controls, DEL, C1
 * controls (some terminals take U+009B as CSI), and the bidirectional marks,
 * embeddings, overrides and isolates that reorder what is shown around them.
 * The same set servers refuse in names (src/core/names.ts).
 */
const UNSAFE = /\x1b\[[0-9;]*m|[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
/** The colour codes cpcc's own output uses (bold, dim, gray, colours, and their resets). */
const OWN_COLOUR = /^\x1b\[(?:1|2|22|3[1-9]|90)m$/;

export interface PrintableOptions {
  /** Keep cpcc's own colour codes (colour is on). */
  colour?: boolean;
  /** Keep newlines and tabs (text cpcc laid out in lines). */
  multiline?: boolean;
}

/** `text` with every character that would act on a terminal shown escaped, as `\x1b` or `\u202e`. */
export function printable(text: string, opts: PrintableOptions = {}): string {
  return text.replace(UNSAFE, (m) => {
    if (m.length > 1) return opts.colour && OWN_COLOUR.test(m) ? m : escapeChars(m);
    if (opts.multiline && (m === '\n' || m === '\t')) return m;
    return escapeChars(m);
  });
}

function escapeChars(s: string): string {
  let out = '';
  for (const ch of s) {
    const n = ch.codePointAt(0)!;
    out += n >= 0x20 && n < 0x7f ? ch : n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
  }
  return out;
}

/** JSON for the terminal: JSON.stringify escapes C0 controls, this also DEL, C1 and bidirectional controls (still valid JSON). */
export function jsonText(value: unknown, indent = true): string {
  return JSON.stringify(value, null, indent ? 2 : undefined).replace(/[\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export function clip(s: string, max: number): string {
  const one = s.replace(/\s*\n\s*/g, ' ');
  return one.length <= max ? one : `${one.slice(0, Math.max(0, max - 1))}…`;
}

export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms < 0) return '';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)}s`;
  const total = Math.round(s);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = total % 60;
  if (h === 0) return `${m}m${String(sec).padStart(2, '0')}s`;
  if (h < 48) return `${h}h${String(m).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, '0')}h`;
}

/** "5s ago", "in 3m": to the coarsest unit that still says something. */
export function ago(ts: number | null | undefined, now: number = Date.now()): string {
  if (ts === null || ts === undefined || !Number.isFinite(ts)) return '';
  const d = now - ts;
  const abs = Math.abs(d);
  let text: string;
  if (abs < 1000) return 'now';
  else if (abs < 60_000) text = `${Math.floor(abs / 1000)}s`;
  else if (abs < 3_600_000) text = `${Math.floor(abs / 60_000)}m`;
  else if (abs < 48 * 3_600_000) text = `${Math.floor(abs / 3_600_000)}h`;
  else text = `${Math.floor(abs / 86_400_000)}d`;
  return d >= 0 ? `${text} ago` : `in ${text}`;
}

export function plural(n: number, word: string, many = `${word}s`): string {
  return `${n} ${n === 1 ? word : many}`;
}

const HINTS: Record<string, string> = {
  UNAUTHENTICATED: "run 'cpcc login'",
  BAD_CREDENTIALS: 'check the user name and password',
  WRONG_SERVER: "the server at that address is not the one you trusted; run 'cpcc add-server' again if it was replaced",
};

/** Codes for failures that carry none of their own: the exit code says which kind. */
export const USAGE_CODE = 'USAGE';
export const FAILURE_CODE = 'FAILED';

export interface DescribedError {
  /** The one line people see: the message, its code in brackets, a hint. */
  line: string;
  exitCode: number;
  /** A stable code scripts can branch on (`--json`). */
  code: string;
  /** The message alone, with the hint but without the code. */
  message: string;
}

/** Turns anything thrown into the one line the user sees, its code and the exit code. */
export function describeError(err: unknown): DescribedError {
  const fallback = (exitCode: number) => (exitCode === EXIT_USAGE ? USAGE_CODE : FAILURE_CODE);
  if (err instanceof CliError) {
    return { line: err.code ? `${err.message} (${err.code})` : err.message, exitCode: err.exitCode, code: err.code ?? fallback(err.exitCode), message: err.message };
  }
  if (err instanceof ApiError) {
    const hint = HINTS[err.code];
    const said = userMessage(oneLine(err.message));
    const message = `${said}${hint ? `; ${hint}` : ''}`;
    return { line: `${said} (${err.code})${hint ? `; ${hint}` : ''}`, exitCode: EXIT_FAILURE, code: err.code, message };
  }
  if (err instanceof ConfigError) return { line: err.message, exitCode: EXIT_FAILURE, code: err.code, message: err.message };
  if (err instanceof CommanderError) {
    const message = commanderMessage(oneLine(err.message.replace(/^error:\s*/, '')));
    return { line: message, exitCode: EXIT_USAGE, code: USAGE_CODE, message };
  }
  const e = err as { message?: unknown; code?: unknown };
  const msg = oneLine(typeof e?.message === 'string' ? e.message : String(err));
  const code = typeof e?.code === 'string' ? e.code : undefined;
  return { line: `${msg}${code ? ` (${code})` : ''}`, exitCode: EXIT_FAILURE, code: code ?? FAILURE_CODE, message: msg };
}

/**
 * Prints what went wrong on stderr and returns the exit code: one line for
 * people, or with `json` one JSON document, `{"error":{"code","message"}}`,
 * the shape the server's own errors have.
 */
export function reportError(err: unknown, stderr: TextStream, env: NodeJS.ProcessEnv = process.env, json = false): number {
  const { line, exitCode, code, message } = describeError(err);
  if (json) stderr.write(`${jsonText({ error: { code, message } }, false)}\n`);
  else stderr.write(`cpcc: ${printable(line)}\n`);
  // A stack is for whoever debugs cpcc itself, never for its users.
  if (env.CPCC_DEBUG && err instanceof Error && err.stack) stderr.write(`${err.stack}\n`);
  return exitCode;
}

/**
 * commander's word for a value a parser refused, in the user's:
 * `option '--limit <n>' argument '0' is invalid. must be at least 1` becomes
 * `--limit must be at least 1`.
 */
function commanderMessage(message: string): string {
  const opt = /^option '(?:-\w, )?(--?[\w-]+)[^']*' argument '.*' is invalid\. (.*)$/s.exec(message);
  if (opt) return `${opt[1]} ${opt[2]}`;
  const arg = /^command-argument value '.*' is invalid for argument '([\w-]+)'\. (.*)$/s.exec(message);
  if (arg) return arg[2]!.startsWith("'") ? `${arg[1]} ${arg[2]}` : `${arg[1]}: ${arg[2]}`;
  return message;
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}
