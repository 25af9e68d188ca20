/**
 * Structured log lines: one JSON object per line on stderr, with a level and
 * a message. Fields are plain values; callers never pass secrets (tokens and
 * passwords are never put in fields or messages).
 */

export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';

const ORDER: Record<Level, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50 };

export interface Logger {
  trace?: (msg: string, fields?: Record<string, unknown>) => void;
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export function createLogger(level: Level = 'info', write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const min = ORDER[level];
  const at = (lvl: Level) => (msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[lvl] < min) return;
    write(JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...fields }) + '\n');
  };
  const log: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  if (min <= ORDER.trace) log.trace = at('trace');
  return log;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** Accepts a Logger, a plain function (tests), or nothing. */
export function toLogger(log: Logger | ((msg: string) => void) | undefined, level: Level = 'info'): Logger {
  if (!log) return createLogger(level);
  if (typeof log === 'function') {
    const f = log;
    const at = (lvl: Level) => (msg: string, fields?: Record<string, unknown>) => {
      if (ORDER[lvl] >= ORDER[level]) f(`${lvl} ${msg}${fields ? ' ' + JSON.stringify(fields) : ''}`);
    };
    return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  }
  return log;
}
