import type { z } from 'zod';
import { fail } from '../../core/errors.js';
import { jobFilter, jobOrder, pageOf, type Listed } from '../../core/job-query.js';
import type { Job, Project } from '../../core/types.js';
import type { JobList } from '../../core/wire.js';
import type { Store } from './store.js';
import type { jobListQuery } from './schemas.js';
import { jobView } from './views.js';

type Query = z.output<typeof jobListQuery>;

/** The smallest UUID v7 made at `ms` or later: archived jobs created since then have ids above it. */
function idAt(ms: number): string {
  const hex = Math.max(0, Math.floor(ms) - 1).toString(16).padStart(12, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-7fff-bfff-ffffffffffff`;
}

/**
 * A page of a project's jobs (GET /projects/:p/jobs). Live jobs in
 * submission order, the default, are walked in that order (backwards for
 * newest first) and the walk stops once the page is full; other orders
 * take one pass over the live jobs, keeping only a few pages in hand.
 * Archived jobs are read from the archive, all of them that pass the state
 * and age filters, so listings that include them cost a read of its files.
 */
export async function listJobs(store: Pick<Store, 'model' | 'archive'>, project: Project, q: Query, now = Date.now()): Promise<JobList> {
  const m = store.model;
  const onlyArchived = q.archived === '1' || q.archived === 'true';
  const withArchived = onlyArchived || q.archived === 'include';
  const since = q.since === undefined ? undefined : now - q.since * 1000;
  const keep = jobFilter({ state: q.state, name: q.name, since });
  const desc = q.order === 'desc';
  const order = jobOrder(q.sort, desc);

  // The previous page's last job, live or archived: its place in the order is the cursor.
  let cursor: Listed | undefined;
  if (q.after !== undefined) {
    const archivedHere = m.archivedProjectOf(q.after) === project.name;
    const found: Listed | null | undefined = m.job(q.after) ?? (archivedHere ? ((await store.archive.get(q.after, project.name)) as unknown as Job | null) : null);
    if (!found || typeof found.seq !== 'number' || (m.job(q.after) && m.job(q.after)!.project !== project.name)) {
      throw fail('INVALID_FIELD', `query.after: no job '${q.after}' in project '${project.name}'`);
    }
    cursor = found;
  }

  // Archived jobs alone, oldest first, as the archive keeps them: read only up to the page.
  if (onlyArchived && q.sort === 'submitted' && !desc && q.name === undefined && since === undefined) {
    const jobs = (await store.archive.list(project.name, { state: q.state, limit: q.limit + 1, afterId: q.after })) as unknown as Job[];
    return reply(jobs.slice(0, q.limit).map((j) => jobView(j, true)), jobs.length > q.limit);
  }
  // No live job in the state asked for: nothing to walk.
  if (!withArchived && q.state !== undefined && m.liveCountsOf(project.name)[q.state] === 0) return { jobs: [] };
  if (!withArchived && q.sort === 'submitted') {
    // The project's ids are in submission order: a page starts where the cursor's number falls, found by halving.
    const ids = [...m.jobIdsOf(project.name)];
    const firstWhere = (before: (seq: number) => boolean): number => {
      let lo = 0;
      let hi = ids.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (before(m.job(ids[mid]!)!.seq)) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    };
    // Ascending: from the first job after the cursor on. Descending: down from the last job before it.
    const from = cursor === undefined ? (desc ? ids.length - 1 : 0) : desc ? firstWhere((seq) => seq < cursor!.seq) - 1 : firstWhere((seq) => seq <= cursor!.seq);
    const out: Job[] = [];
    for (let i = from; i >= 0 && i < ids.length && out.length <= q.limit; i += desc ? -1 : 1) {
      const job = m.job(ids[i]!)!;
      if (keep(job)) out.push(job);
    }
    return reply(out.slice(0, q.limit).map((j) => jobView(j)), out.length > q.limit);
  }

  const live: Job[] = [];
  if (!onlyArchived) {
    for (const id of m.jobIdsOf(project.name)) {
      const job = m.job(id)!;
      if (keep(job)) live.push(job);
    }
  }
  let archived: Job[] = [];
  if (withArchived) {
    const read = (await store.archive.list(project.name, {
      state: q.state,
      limit: Number.MAX_SAFE_INTEGER,
      ...(since !== undefined ? { afterId: idAt(since) } : {}),
    })) as unknown as Job[];
    // A job archived a moment ago can still be live too: the live record wins.
    archived = read.filter((j) => typeof j.seq === 'number' && !m.job(j.id) && keep(j));
  }
  const { page, more } = pageOf([...live, ...archived], order, q.limit, cursor);
  const wasArchived = new Set(archived.map((j) => j.id));
  return reply(page.map((j) => jobView(j, wasArchived.has(j.id))), more);
}

function reply(jobs: JobList['jobs'], more: boolean): JobList {
  return more && jobs.length > 0 ? { jobs, next: jobs[jobs.length - 1]!.id } : { jobs };
}
