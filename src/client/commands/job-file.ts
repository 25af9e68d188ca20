/**
 * Bulk submission from a file: a JSON array, `{ "jobs": [...] }`, or one
 * JobInput per line (NDJSON).
 *
 * The server takes at most SUBMIT_CHUNK jobs per request and resolves `key`
 * references only within one request. So a big file is ordered so that every
 * job comes after the keyed jobs it depends on, cut into chunks, and each
 * chunk's references to keys of earlier chunks are replaced by the ids those
 * jobs were given. Ids come back in the order of the file.
 */
import { JOB_FIELD_NAMES } from '../../core/job-fields.js';
import { closest } from '../../core/suggest.js';
import { MAX_KILL_GRACE_S, PRIORITY_MAX, PRIORITY_MIN } from '../../core/types.js';
import { parseDurationS, parseSizeMb } from '../../core/units.js';
import type { JobInput } from '../../core/wire.js';
import { CliError, EXIT_FAILURE } from '../output.js';
import { checkLimits, withoutAlias } from './limits.js';

export const SUBMIT_CHUNK = 10_000;

export function parseJobFile(text: string, where: string): JobInput[] {
  const trimmed = text.trim();
  if (trimmed === '') throw new CliError(`${where} holds no jobs`, EXIT_FAILURE);
  const lineWise = /\.(ndjson|jsonl)$/i.test(where);
  let items: unknown[];
  if (!lineWise) {
    let whole: unknown;
    let parsed = false;
    try {
      whole = JSON.parse(trimmed);
      parsed = true;
    } catch (err) {
      // Several objects on several lines are NDJSON under another name.
      if (!trimmed.startsWith('{')) throw new CliError(`${where} is not valid JSON: ${(err as Error).message}`, EXIT_FAILURE);
    }
    if (parsed) {
      if (Array.isArray(whole)) items = whole;
      else if (isObject(whole) && Array.isArray(whole.jobs)) items = whole.jobs;
      else if (isObject(whole)) items = [whole];
      else throw new CliError(`${where} must hold an array of jobs, {"jobs": [...]}, or one job per line`, EXIT_FAILURE);
      return checkJobs(items, where, (i) => `job ${i + 1}`);
    }
  }
  items = [];
  const lineOf: number[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    try {
      items.push(JSON.parse(line));
    } catch (err) {
      throw new CliError(`${where}:${i + 1}: not valid JSON: ${(err as Error).message}`, EXIT_FAILURE);
    }
    lineOf.push(i + 1);
  }
  return checkJobs(items, where, (i) => `line ${lineOf[i]}`);
}

/** Fields a job file may use by another name (limits.ts turns them into the wire's). */
const FILE_ALIASES = ['wallTimeS'];

function checkJobs(items: unknown[], where: string, label: (i: number) => string): JobInput[] {
  if (items.length === 0) throw new CliError(`${where} holds no jobs`, EXIT_FAILURE);
  items.forEach((item, i) => {
    if (!isObject(item)) throw new CliError(`${where} ${label(i)}: not an object`, EXIT_FAILURE);
    for (const field of Object.keys(item)) {
      if ((JOB_FIELD_NAMES as string[]).includes(field) || FILE_ALIASES.includes(field)) continue;
      const guess = closest(field, JOB_FIELD_NAMES);
      throw new CliError(`${where} ${label(i)}: unknown field ${JSON.stringify(field)}${guess ? ` (did you mean ${JSON.stringify(guess)}?)` : ''}`, EXIT_FAILURE, 'INVALID_FIELD');
    }
    withUnits(item, where, label(i));
    if (item.after !== undefined && !(Array.isArray(item.after) && item.after.every((a) => typeof a === 'string'))) {
      throw new CliError(`${where} ${label(i)}: after must be a list of ids or keys`, EXIT_FAILURE);
    }
    if (item.key !== undefined && typeof item.key !== 'string') {
      throw new CliError(`${where} ${label(i)}: key must be a string`, EXIT_FAILURE);
    }
    const g = item.killGraceS;
    if (g !== undefined && !(typeof g === 'number' && Number.isFinite(g) && g >= 0 && g <= MAX_KILL_GRACE_S)) {
      throw new CliError(`${where} ${label(i)}: killGraceS must be a number of seconds from 0 to ${MAX_KILL_GRACE_S}`, EXIT_FAILURE, 'INVALID_FIELD');
    }
    const wrong = checkLimits(item);
    if (wrong !== undefined) throw new CliError(`${where}: ${label(i)}: ${wrong}`, EXIT_FAILURE, 'INVALID_FIELD');
    const p = item.priority;
    if (p !== undefined && !(typeof p === 'number' && Number.isInteger(p) && p >= PRIORITY_MIN && p <= PRIORITY_MAX)) {
      throw new CliError(`${where} ${label(i)}: priority must be a whole number from ${PRIORITY_MIN} to ${PRIORITY_MAX}`, EXIT_FAILURE, Number.isInteger(p) ? 'PRIORITY_OUT_OF_RANGE' : 'INVALID_FIELD');
    }
  });
  return (items as JobInput[]).map(withoutAlias);
}

/** `"memoryMb": "4G"`, `"timeoutS": "2h"`: strings with units become the numbers the server takes. */
function withUnits(item: Record<string, unknown>, where: string, label: string): void {
  const convert = (field: string, parse: (t: string) => number | null, example: string) => {
    const v = item[field];
    if (typeof v !== 'string') return;
    const n = parse(v);
    if (n === null) throw new CliError(`${where} ${label}: ${field} ${JSON.stringify(v)} is not understood (for example ${example})`, EXIT_FAILURE, 'INVALID_FIELD');
    item[field] = n;
  };
  convert('memoryMb', parseSizeMb, '"512M", "4G" or a number of MB');
  convert('timeoutS', parseDurationS, '"90m", "2h" or a number of seconds');
  convert('wallTimeS', parseDurationS, '"90m", "2h" or a number of seconds');
  convert('killGraceS', parseDurationS, '"30s", "2m" or a number of seconds');
}

/** Flags given with --file are defaults for jobs that do not say otherwise. */
export function applyDefaults(jobs: JobInput[], defaults: JobInput): JobInput[] {
  return jobs.map((job) => {
    const out: JobInput = { ...defaults, ...job };
    if (defaults.env || job.env) out.env = { ...defaults.env, ...job.env };
    if (defaults.after || job.after) out.after = [...new Set([...(defaults.after ?? []), ...(job.after ?? [])])];
    return out;
  });
}

/**
 * Indices of `jobs` such that each job follows every job whose key it names;
 * the file's order wherever that already holds. Iterative, because a chain of
 * a hundred thousand jobs would overflow the stack.
 */
export function dependencyOrder(jobs: readonly JobInput[]): number[] {
  const byKey = new Map<string, number>();
  jobs.forEach((job, i) => {
    if (job.key === undefined) return;
    if (byKey.has(job.key)) throw new CliError(`key '${job.key}' is used by more than one job`, EXIT_FAILURE, 'INVALID_FIELD');
    byKey.set(job.key, i);
  });
  const deps = (i: number): number[] => {
    const out: number[] = [];
    for (const ref of jobs[i]!.after ?? []) {
      const j = byKey.get(ref);
      if (j !== undefined) out.push(j);
    }
    return out;
  };
  const NEW = 0;
  const OPEN = 1;
  const DONE = 2;
  const mark = new Uint8Array(jobs.length);
  const order: number[] = [];
  for (let root = 0; root < jobs.length; root++) {
    if (mark[root] !== NEW) continue;
    const stack: { node: number; deps: number[]; next: number }[] = [{ node: root, deps: deps(root), next: 0 }];
    mark[root] = OPEN;
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      if (top.next < top.deps.length) {
        const d = top.deps[top.next++]!;
        if (mark[d] === NEW) {
          mark[d] = OPEN;
          stack.push({ node: d, deps: deps(d), next: 0 });
        } else if (mark[d] === OPEN) {
          const cycle = stack.slice(stack.findIndex((f) => f.node === d)).map((f) => jobs[f.node]!.key);
          throw new CliError(`dependency cycle: ${[...cycle, jobs[d]!.key].join(' -> ')}`, EXIT_FAILURE, 'DEPENDENCY_CYCLE');
        }
      } else {
        mark[top.node] = DONE;
        order.push(top.node);
        stack.pop();
      }
    }
  }
  return order;
}

export type SendChunk = (jobs: JobInput[]) => Promise<string[]>;

/** Thrown when some chunks went in before one failed: those jobs exist now. */
export class PartialSubmitError extends Error {
  constructor(
    readonly submitted: { index: number; id: string }[],
    readonly reason: unknown,
  ) {
    super('submission stopped part way');
    this.name = 'PartialSubmitError';
  }
}

export async function submitInChunks(
  jobs: readonly JobInput[],
  send: SendChunk,
  opts: { chunk?: number; progress?: (sent: number, all: number) => void } = {},
): Promise<string[]> {
  const size = opts.chunk ?? SUBMIT_CHUNK;
  if (jobs.length <= size) return send([...jobs]);
  const order = dependencyOrder(jobs);
  const ids: string[] = new Array<string>(jobs.length);
  const idOfKey = new Map<string, string>();
  const submitted: { index: number; id: string }[] = [];
  for (let start = 0; start < order.length; start += size) {
    const indices = order.slice(start, start + size);
    const chunk = indices.map((i) => {
      const job = jobs[i]!;
      // Keys of this chunk stay keys (the server resolves them); keys of earlier chunks become ids.
      return job.after ? { ...job, after: job.after.map((ref) => idOfKey.get(ref) ?? ref) } : job;
    });
    let got: string[];
    try {
      got = await send(chunk);
    } catch (err) {
      if (submitted.length === 0) throw err;
      throw new PartialSubmitError(submitted, err);
    }
    if (got.length !== chunk.length) {
      throw new CliError(`the server returned ${got.length} ids for ${chunk.length} jobs`, EXIT_FAILURE, 'BAD_RESPONSE');
    }
    indices.forEach((i, k) => {
      ids[i] = got[k]!;
      submitted.push({ index: i, id: got[k]! });
      const key = jobs[i]!.key;
      if (key !== undefined) idOfKey.set(key, got[k]!);
    });
    opts.progress?.(submitted.length, jobs.length);
  }
  return ids;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
