/**
 * Finding a project's jobs: which ones a listing asks for (state, name
 * pattern, age), in which order, and where a page starts. Pure, so the list
 * route and its tests share one rule.
 */
import { JOB_STATES, type Job, type JobState } from './types.js';

/** What a listing can be ordered by; ties are broken by submission order. */
export const JOB_SORTS = ['submitted', 'updated', 'name', 'state'] as const;
export type JobSort = (typeof JOB_SORTS)[number];

/** The fields of a job the order and the filters read (live jobs and archived records alike). */
export type Listed = Pick<Job, 'id' | 'seq' | 'state' | 'createdAt' | 'updatedAt'> & { spec: { name?: string } };

export interface JobFilter {
  state?: JobState;
  /** A pattern over the job's name: `*` any run of characters, `?` one; everything else literal. */
  name?: string;
  /** Only jobs created at or after this time (ms). */
  since?: number;
}

/**
 * A job name pattern as a test: `*` and `?` are wildcards, the rest is
 * matched as written, over the whole name. A job without a name matches `*`
 * alone.
 */
export function nameMatcher(glob: string): (name: string | undefined) => boolean {
  let re = '';
  for (const c of glob) re += c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  const pattern = new RegExp(`^${re}$`, 's');
  return (name) => pattern.test(name ?? '');
}

export function jobFilter(f: JobFilter): (job: Listed) => boolean {
  const named = f.name === undefined ? undefined : nameMatcher(f.name);
  return (job) =>
    (f.state === undefined || job.state === f.state) &&
    (f.since === undefined || job.createdAt >= f.since) &&
    (named === undefined || named(job.spec.name));
}

const STATE_RANK = new Map(JOB_STATES.map((s, i) => [s, i]));

/** Ascending order by `sort`, then submission order; `desc` turns the whole order round. */
export function jobOrder(sort: JobSort, desc: boolean): (a: Listed, b: Listed) => number {
  const key = (a: Listed, b: Listed): number => {
    switch (sort) {
      case 'submitted':
        return 0;
      case 'updated':
        return a.updatedAt - b.updatedAt;
      case 'state':
        return (STATE_RANK.get(a.state) ?? 99) - (STATE_RANK.get(b.state) ?? 99);
      case 'name': {
        const x = a.spec.name ?? '';
        const y = b.spec.name ?? '';
        return x < y ? -1 : x > y ? 1 : 0;
      }
    }
  };
  const asc = (a: Listed, b: Listed) => key(a, b) || a.seq - b.seq || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  return desc ? (a, b) => asc(b, a) : asc;
}

/**
 * The first `limit` of `jobs` in `order` that come after `cursor` (the last
 * job of the previous page), and whether more follow. Keeps at most a few
 * pages in hand while it walks, so a page of a project of 100 000 jobs costs
 * one pass and no sort of them all.
 */
export function pageOf<T extends Listed>(jobs: Iterable<T>, order: (a: Listed, b: Listed) => number, limit: number, cursor?: Listed): { page: T[]; more: boolean } {
  const keep = limit + 1;
  let held: T[] = [];
  // Once trimmed, the last job kept: one that comes after it cannot be on the page.
  let bar: T | undefined;
  for (const job of jobs) {
    if (cursor !== undefined && order(job, cursor) <= 0) continue;
    if (bar !== undefined && order(job, bar) >= 0) continue;
    held.push(job);
    if (held.length >= keep * 4 + 64) {
      held = held.sort(order).slice(0, keep);
      bar = held[keep - 1];
    }
  }
  held.sort(order);
  return { page: held.slice(0, limit), more: held.length > limit };
}
