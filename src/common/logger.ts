import { pino, type Logger as PinoLogger } from 'pino';

/**
 * Structured log lines through pino, the one log format of every cpc program:
 * one JSON object per line on stderr, `{"level":"info","time":"…","program":"cpc-server",…fields,"msg":"…"}`,
 * or the same lines made readable (prettyLine) on a terminal or with CPC_LOG_FORMAT=pretty.
 * A program may add fields of its own to every line (setLogContext: the server
 * adds `reqId`, the id of the HTTP request being handled). Fields are plain values;
 * callers never pass secrets (tokens and passwords are never put in fields or
 * messages).
 */

/** Fields every line gets at the moment it is written, or undefined for none. */
export type LogContext = () => Record<string, unknown> | undefined;

// One per process, as the context it reads (the request being handled) is the process's.
let context: LogContext = () => undefined;

/** Sets the fields every logger of this process adds to each line as it is written. */
export function setLogContext(c: LogContext): void {
  context = c;
}

export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';

const ORDER: Record<Level, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50 };

export interface Logger {
  /** Present only when trace lines are wanted, so that callers skip building them otherwise. */
  trace?: (msg: string, fields?: Record<string, unknown>) => void;
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** A logger whose lines all carry these fields. */
  child?(fields: Record<string, unknown>): Logger;
  /** Changes the level from now on (`cpc-server config set logLevel`); loggers made by child() before keep theirs. */
  setLevel?(level: Level): void;
}

export interface LogOptions {
  /** The program, as every line's `program` field: cpc-server, cpc-worker. */
  name?: string;
  /** `json`, or `pretty` for people; by default CPC_LOG_FORMAT, else pretty on a terminal and JSON otherwise. */
  format?: 'json' | 'pretty';
}

/** How this process logs to stderr: CPC_LOG_FORMAT (json, pretty), else pretty on a terminal. */
export function logFormat(env: NodeJS.ProcessEnv = process.env, tty: boolean = process.stderr.isTTY === true): 'json' | 'pretty' {
  if (env.CPC_LOG_FORMAT === 'json' || env.CPC_LOG_FORMAT === 'pretty') return env.CPC_LOG_FORMAT;
  return tty ? 'pretty' : 'json';
}

const LEVEL_COLOUR: Record<string, string> = { trace: '90', debug: '36', info: '32', warn: '33', error: '31' };

/**
 * One JSON log line as people read it, the same for every program:
 * `17:20:01.123 INFO  cpc-server  listening securePort=13807`. Fields keep
 * their JSON form, so nothing is lost against the JSON line.
 */
export function prettyLine(json: string, colour = false): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const { level, time, program, msg, ...fields } = o;
  const lvl = String(level ?? '');
  const clock = typeof time === 'string' ? time.replace(/^.*T/, '').replace(/Z$/, '') : '';
  const tag = lvl.toUpperCase().padEnd(5);
  const shown = colour && LEVEL_COLOUR[lvl] ? `\x1b[${LEVEL_COLOUR[lvl]}m${tag}\x1b[39m` : tag;
  const rest = Object.entries(fields).map(([k, v]) => `${k}=${typeof v === 'string' && /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v)}`);
  return `${[clock, shown, program === undefined ? '' : String(program), String(msg ?? ''), ...rest].filter((p) => p !== '').join(' ')}\n`;
}

/**
 * A pino logger at `level`, writing to stderr, or to `write` (one call per
 * line). stderr is written synchronously, as Node writes it to pipes and
 * files anyway, so the last lines before a crash are not lost.
 */
export function createLogger(level: Level = 'info', write?: (line: string) => void, opts: LogOptions = {}): Logger {
  const format = opts.format ?? logFormat();
  const destination = write
    ? { write }
    : format === 'pretty'
      ? { write: (line: string) => void process.stderr.write(prettyLine(line, process.stderr.isTTY === true)) }
      : pino.destination({ dest: 2, sync: true });
  const p = pino(
    {
      level,
      base: opts.name ? { program: opts.name } : undefined,
      messageKey: 'msg',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      mixin: () => context() ?? {},
    },
    destination,
  );
  return wrap(p, level);
}

function wrap(p: PinoLogger, level: Level): Logger {
  const at = (lvl: Level) => (msg: string, fields?: Record<string, unknown>) => {
    if (fields) p[lvl](fields, msg);
    else p[lvl](msg);
  };
  const log: Logger = {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (fields) => wrap(p.child(fields), level),
    setLevel: (next) => {
      p.level = next;
      if (ORDER[next] <= ORDER.trace) log.trace = at('trace');
      else delete log.trace;
    },
  };
  if (ORDER[level] <= ORDER.trace) log.trace = at('trace');
  return log;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** Accepts a Logger, a plain function (tests: one line of text per call), or nothing (stderr). */
export function toLogger(log: Logger | ((msg: string) => void) | undefined, level: Level = 'info', name?: string): Logger {
  if (!log) return createLogger(level, undefined, { name });
  if (typeof log === 'function') return functionLogger(log, level, {});
  return log;
}

function functionLogger(f: (msg: string) => void, initial: Level, bound: Record<string, unknown>): Logger {
  let level = initial;
  const at = (lvl: Level) => (msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[lvl] < ORDER[level]) return;
    const all = { ...bound, ...context(), ...fields };
    f(`${lvl} ${msg}${Object.keys(all).length > 0 ? ' ' + JSON.stringify(all) : ''}`);
  };
  const log: Logger = {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (fields) => functionLogger(f, level, { ...bound, ...fields }),
    setLevel: (next) => {
      level = next;
      if (ORDER[next] <= ORDER.trace) log.trace = at('trace');
      else delete log.trace;
    },
  };
  if (ORDER[level] <= ORDER.trace) log.trace = at('trace');
  return log;
}
