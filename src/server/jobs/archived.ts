import type { JobState } from '../../core/types.js';
import type { Store } from './store.js';

/**
 * Final states of jobs that are no longer in memory, read from the archive.
 * Submit and retry need them for dependencies that finished long ago.
 */
export async function archivedStates(ctx: { store: Pick<Store, 'model' | 'archive'> }, project: string, ids: Iterable<string>): Promise<Map<string, JobState>> {
  const out = new Map<string, JobState>();
  for (const id of new Set(ids)) {
    if (ctx.store.model.job(id) || ctx.store.model.archivedProjectOf(id) !== project) continue;
    const job = (await ctx.store.archive.get(id, project)) as { state?: JobState } | null;
    if (job?.state) out.set(id, job.state);
  }
  return out;
}
