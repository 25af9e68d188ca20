import { InvalidArgumentError } from 'commander';
import { formatDurationS, formatSizeMb, parseDurationS, parseSizeMb } from '../../core/units.js';
import type { RetrySpec, Usage } from '../../core/types.js';
import type { JobInput } from '../../core/wire.js';

/**
 * Limits and retries with more as cpcc takes them: `--time`, `--retry-oom
 * 1.5:16G`, `--retry-timeout 2:8h`, `--retry-more N`, and the same fields of a
 * job file (`wallTimeS` is another name for `timeoutS`), checked here so that
 * a mistake reads in the user's terms; and usage as `cpcc job` shows it.
 */

export const MAX_MEMORY_MB = 64 * 1024 * 1024;
export const MAX_WALL_TIME_S = 365 * 24 * 3600;
const MAX_FACTOR = 100;

function factorOf(text: string, flag: string): number {
  const f = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || !(f > 1) || f > MAX_FACTOR) throw new InvalidArgumentError(`${flag}: the factor '${text}' must be a number above 1, up to ${MAX_FACTOR}`);
  return f;
}

/** `--retry-oom FACTOR:MAX`: FACTOR above 1, MAX a size (16G). */
export function retryOom(value: string): NonNullable<RetrySpec['oom']> {
  const [factor, max, extra] = value.split(':');
  if (max === undefined || extra !== undefined) throw new InvalidArgumentError(`'${value}' is not FACTOR:MAX (for example 1.5:16G)`);
  const mb = parseSizeMb(max);
  if (mb === null || mb < 1 || mb > MAX_MEMORY_MB) throw new InvalidArgumentError(`the most memory '${max}' must be a size from 1M to ${formatSizeMb(MAX_MEMORY_MB)}`);
  return { factor: factorOf(factor!, 'the factor'), maxMemoryMb: mb };
}

/** `--retry-timeout FACTOR:MAX`: FACTOR above 1, MAX a duration (8h). */
export function retryTimeout(value: string): NonNullable<RetrySpec['timeout']> {
  const [factor, max, extra] = value.split(':');
  if (max === undefined || extra !== undefined) throw new InvalidArgumentError(`'${value}' is not FACTOR:MAX (for example 2:8h)`);
  const s = parseDurationS(max);
  if (s === null || s < 1 || s > MAX_WALL_TIME_S) throw new InvalidArgumentError(`the longest time '${max}' must be a duration from 1s to ${formatDurationS(MAX_WALL_TIME_S)}`);
  return { factor: factorOf(factor!, 'the factor'), maxWallTimeS: s };
}

/** The `retry` the submit flags make, if any. */
export function retryFromFlags(opts: Record<string, unknown>): RetrySpec | undefined {
  const r: RetrySpec = {};
  if (opts.retryOom !== undefined) r.oom = opts.retryOom as RetrySpec['oom'];
  if (opts.retryTimeout !== undefined) r.timeout = opts.retryTimeout as RetrySpec['timeout'];
  if (opts.retryMore !== undefined) {
    if (!r.oom && !r.timeout) throw new InvalidArgumentError('--retry-more goes with --retry-oom or --retry-timeout');
    r.attempts = opts.retryMore as number;
  }
  return r.oom || r.timeout ? r : undefined;
}

/** A retry with more as `cpcc job` and `cpcc status` show it. */
export function retryLine(r: RetrySpec): string {
  const parts: string[] = [];
  if (r.oom) parts.push(`memory ×${r.oom.factor} up to ${r.oom.maxMemoryMb} MB`);
  if (r.timeout) parts.push(`time ×${r.timeout.factor} up to ${r.timeout.maxWallTimeS}s`);
  return `${parts.join(', ')}; at most ${r.attempts ?? 3} times`;
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** What is wrong with a job file's memoryMb, timeoutS/wallTimeS and retry, in the file's words; undefined when nothing. */
export function checkLimits(item: Record<string, unknown>): string | undefined {
  const m = item.memoryMb;
  if (m !== undefined && !(isNum(m) && Number.isInteger(m) && m >= 0 && m <= MAX_MEMORY_MB)) return `memoryMb must be a whole number of MB from 0 to ${MAX_MEMORY_MB}`;
  for (const k of ['timeoutS', 'wallTimeS']) {
    const t = item[k];
    if (t !== undefined && t !== null && !(isNum(t) && Number.isInteger(t) && t >= 1 && t <= MAX_WALL_TIME_S)) return `${k} must be a whole number of seconds from 1 to ${MAX_WALL_TIME_S}`;
  }
  if (item.wallTimeS !== undefined && item.timeoutS !== undefined && item.wallTimeS !== item.timeoutS) return 'wallTimeS and timeoutS name the same limit: give one';
  const r = item.retry;
  if (r === undefined) return undefined;
  if (typeof r !== 'object' || r === null || Array.isArray(r)) return 'retry must be an object: {"oom": {"factor", "maxMemoryMb"}, "timeout": {"factor", "maxWallTimeS"}, "attempts"}';
  const retry = r as Record<string, unknown>;
  for (const k of Object.keys(retry)) if (!['oom', 'timeout', 'attempts'].includes(k)) return `retry.${k} is not known (oom, timeout, attempts)`;
  if (retry.oom === undefined && retry.timeout === undefined) return 'retry needs oom, timeout or both';
  const parts: [string, string, number][] = [
    ['oom', 'maxMemoryMb', MAX_MEMORY_MB],
    ['timeout', 'maxWallTimeS', MAX_WALL_TIME_S],
  ];
  for (const [name, maxKey, most] of parts) {
    const p = retry[name];
    if (p === undefined) continue;
    if (typeof p !== 'object' || p === null || Array.isArray(p)) return `retry.${name} must be an object with factor and ${maxKey}`;
    const o = p as Record<string, unknown>;
    for (const k of Object.keys(o)) if (k !== 'factor' && k !== maxKey) return `retry.${name}.${k} is not known (factor, ${maxKey})`;
    if (!(isNum(o.factor) && o.factor > 1 && o.factor <= MAX_FACTOR)) return `retry.${name}.factor must be a number above 1, up to ${MAX_FACTOR}`;
    const max = o[maxKey];
    if (!(isNum(max) && Number.isInteger(max) && max >= 1 && max <= most)) return `retry.${name}.${maxKey} must be a whole number from 1 to ${most}`;
  }
  const a = retry.attempts;
  if (a !== undefined && !(isNum(a) && Number.isInteger(a) && a >= 1 && a <= 100)) return 'retry.attempts must be a whole number from 1 to 100';
  return undefined;
}

/** `wallTimeS` in a job file is `timeoutS`: one field on the wire and in the server. */
export function withoutAlias(item: JobInput & { wallTimeS?: number | null }): JobInput {
  if (item.wallTimeS === undefined) return item;
  const { wallTimeS, ...rest } = item;
  return { ...rest, timeoutS: wallTimeS };
}

/** `1.2s cpu, 512 MB peak` for a table cell. */
export function usageText(u: Usage | undefined): string {
  if (!u) return '';
  const cpu = u.userS + u.systemS;
  return `${cpu < 10 ? cpu.toFixed(2) : Math.round(cpu)}s cpu, ${formatSizeMb(Math.max(0, Math.round(u.maxRssMb)))}`;
}
