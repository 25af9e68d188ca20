import { pino, type Logger as PinoLogger } from 'pino';

/**
 * Structured log lines through pino, the one log format of every cpc program:
 * one JSON object per line on stderr, `{"level":"info","time":"…",…fields,"msg":"…"}`.
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
}

/**
 * A pino logger at `level`, writing to stderr, or to `write` (one call per
 * line). stderr is written synchronously, as Node writes it to pipes and
 * files anyway, so the last lines before a crash are not lost.
 */
export function createLogger(level: Level = 'info', write?: (line: string) => void): Logger {
  const destination = write ? { write } : pino.destination({ dest: 2, sync: true });
  const p = pino(
    {
      level,
      base: undefined,
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
  };
  if (ORDER[level] <= ORDER.trace) log.trace = at('trace');
  return log;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** Accepts a Logger, a plain function (tests: one line of text per call), or nothing (stderr). */
export function toLogger(log: Logger | ((msg: string) => void) | undefined, level: Level = 'info'): Logger {
  if (!log) return createLogger(level);
  if (typeof log === 'function') return functionLogger(log, level, {});
  return log;
}

function functionLogger(f: (msg: string) => void, level: Level, bound: Record<string, unknown>): Logger {
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
  };
  if (ORDER[level] <= ORDER.trace) log.trace = at('trace');
  return log;
}
