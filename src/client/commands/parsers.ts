/**
 * Option value parsers. They throw commander's InvalidArgumentError, which
 * commander turns into a usage error naming the option (exit 2).
 */
import { InvalidArgumentError } from 'commander';
import { idMatcher, idUsage } from '../../core/short-ids.js';
import { formatDurationS, formatSizeMb, parseDurationS, parseSizeMb } from '../../core/units.js';

export function integer(min: number, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value: string) => {
    const n = Number(value.trim());
    if (value.trim() === '' || !Number.isInteger(n)) {
      const range = max === Number.MAX_SAFE_INTEGER ? `at least ${min}` : `from ${min} to ${max}`;
      throw new InvalidArgumentError(`must be a whole number ${range}`);
    }
    if (n < min) throw new InvalidArgumentError(`must be at least ${min}`);
    if (n > max) throw new InvalidArgumentError(`must be at most ${max}`);
    return n;
  };
}

export const positive = integer(1);
export const nonNegative = integer(0);
export const port = integer(1, 65535);
export const anyInteger = integer(Number.MIN_SAFE_INTEGER);

/** For options that may be given many times: `--after A --after B`. */
export function collect(value: string, previous: unknown): string[] {
  return [...(Array.isArray(previous) ? (previous as string[]) : []), value];
}

/** `--env K=V`, many times; a later K wins. */
export function keyValue(value: string, previous: unknown): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError('must look like NAME=VALUE');
  const out = { ...((previous as Record<string, string> | undefined) ?? {}) };
  out[value.slice(0, eq)] = value.slice(eq + 1);
  return out;
}

export function oneOf<T extends string>(choices: readonly T[]): (value: string) => T {
  return (value: string) => {
    if (!(choices as readonly string[]).includes(value)) {
      throw new InvalidArgumentError(`must be one of ${choices.join(', ')}`);
    }
    return value as T;
  };
}

/** A comma-separated list of `choices` (`wall,mem`), each once, in the order given. */
export function listOf<T extends string>(choices: readonly T[]): (value: string) => T[] {
  return (value: string) => {
    const items = value.split(',').map((v) => v.trim());
    for (const v of items) {
      if (!(choices as readonly string[]).includes(v)) throw new InvalidArgumentError(`'${v}' is not a column; give a comma-separated list of ${choices.join(', ')}`);
    }
    return [...new Set(items)] as T[];
  };
}

/**
 * A job or worker id as given on the command line: the whole id, or at least
 * 8 hex digits of its start or end (the server finds the id they name).
 * Anything else is a usage error, before a request is sent.
 */
export function idArg(what: 'job' | 'worker'): (value: string) => string {
  return (value: string) => {
    if (idMatcher(value) === null) throw new InvalidArgumentError(`'${value}': ${idUsage(what)}`);
    return value.trim().toLowerCase();
  };
}
export const jobArg = idArg('job');

/** `--memory 4G`: megabytes, with an optional unit (K, M, G, T; binary). */
export function sizeMb(min: number, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value: string) => {
    const mb = parseSizeMb(value);
    if (mb === null) throw new InvalidArgumentError(`'${value}' is not a size (for example 512M, 4G; a bare number is MB)`);
    if (mb < min || mb > max) throw new InvalidArgumentError(`must be from ${formatSizeMb(min)} to ${formatSizeMb(max)}`);
    return mb;
  };
}

/** `--timeout 2h`: seconds, with an optional unit (s, m, h, d) or a sequence (1h30m). */
export function durationS(min: number, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value: string) => {
    const s = parseDurationS(value);
    if (s === null) throw new InvalidArgumentError(`'${value}' is not a duration (for example 90s, 30m, 2h, 1h30m; a bare number is seconds)`);
    if (s < min || s > max) throw new InvalidArgumentError(`must be from ${formatDurationS(min)} to ${formatDurationS(max)}`);
    return s;
  };
}

const SERVER_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A server id as `connected-servers` and `list-nodes` show it (whole: it is what trust is given to); anything else is a usage error. */
export function serverIdArg(value: string): string {
  const id = value.trim().toLowerCase();
  if (!SERVER_ID.test(id)) throw new InvalidArgumentError(`'${value}': give a whole server id, as 'cpcc connected-servers' shows it`);
  return id;
}
