import { planCancel, planRetry } from '../../core/commands.js';
import { CpcError } from '../../core/errors.js';
import type { BulkOutcome, BulkReply } from '../../core/job-reports.js';
import { FINAL_STATES, type Job, type JobSpec, type JobState } from '../../core/types.js';
import { canSee, fullJobId } from '../http/auth.js';
import type { UserIdentity } from '../http/auth.js';
import type { Context } from '../start/context.js';
import { archivedStates } from './archived.js';

/** A given id, looked up: the live job, an archived one's id, or the outcome it already has. */
type Found = { job: Job } | { archived: string } | { outcome: BulkOutcome };

function find(ctx: Context, who: UserIdentity, given: string): Found {
  let id: string;
  try {
    id = fullJobId(ctx, who, given);
  } catch (err) {
    if (err instanceof CpcError) {
      return { outcome: { given, outcome: err.code === 'JOB_NOT_FOUND' ? 'not-found' : 'refused', code: err.code, message: err.message } };
    }
    throw err;
  }
  const m = ctx.store.model;
  const visible = (project: string | undefined) => project !== undefined && m.projects.has(project) && canSee(who, m.projects.get(project)!);
  const job = m.job(id);
  if (job && visible(job.project)) return { job };
  if (!job && visible(m.archivedProjectOf(id))) return { archived: id };
  return { outcome: { given, outcome: 'not-found', code: 'JOB_NOT_FOUND', message: `no job with id '${given}'` } };
}

/**
 * Cancel or retry each of `ids` on its own (POST /jobs/bulk): an id that
 * names no job, or a job this cannot apply to, gets its outcome and the
 * others go ahead, in one event for all that can be done. A retry that
 * would take a project owner past a limit of unfinished jobs is refused
 * for that owner's jobs only.
 */
export async function bulkAction(ctx: Context, who: UserIdentity, action: 'cancel' | 'retry', ids: readonly string[]): Promise<BulkReply> {
  const m = () => ctx.store.model;
  const found = ids.map((given) => ({ given, found: find(ctx, who, given) }));
  const outcomes: (BulkOutcome | undefined)[] = found.map(({ found: f }) => ('outcome' in f ? f.outcome : undefined));
  const chosen = new Map<string, Job>();
  found.forEach(({ given, found: f }, i) => {
    if ('outcome' in f) return;
    if ('archived' in f) {
      outcomes[i] =
        action === 'cancel'
          ? { given, id: f.archived, outcome: 'ended', message: 'it ended and has been archived' }
          : { given, id: f.archived, outcome: 'refused', code: 'INVALID_STATE', message: 'it has been archived; archived jobs cannot be retried' };
      return;
    }
    const { job } = f;
    if (action === 'cancel' && FINAL_STATES.has(job.state)) {
      outcomes[i] = { given, id: job.id, outcome: 'ended', state: job.state, message: `it is already ${job.state}` };
    } else if (action === 'retry' && job.state !== 'failed' && job.state !== 'cancelled') {
      outcomes[i] = { given, id: job.id, outcome: 'skipped', state: job.state, message: `it is ${job.state}; only failed or cancelled jobs are retried` };
    } else chosen.set(job.id, job);
  });

  const refused = new Map<string, { code: string; message: string }>();
  if (chosen.size > 0 && action === 'cancel') {
    await ctx.store.commit(planCancel(m(), [...chosen.keys()], `cancelled by ${who.user}`, Date.now()));
    // Cancelling a running job frees room on its worker.
    ctx.dispatcher.kick();
  } else if (chosen.size > 0) {
    const archived = new Map<string, JobState>();
    for (const job of chosen.values()) for (const [id, state] of await archivedStates(ctx, job.project, job.spec.after)) archived.set(id, state);
    // After the reads: another request may have changed or removed some of them meanwhile.
    const byOwner = new Map<string, { ids: string[]; specs: JobSpec[] }>();
    for (const [id, job] of chosen) {
      const now = m().job(id);
      const owner = now ? m().projects.get(now.project)?.owner : undefined;
      if (!now || owner === undefined) {
        refused.set(id, { code: 'JOB_NOT_FOUND', message: 'it was removed meanwhile' });
        continue;
      }
      try {
        planRetry(m(), [id], Date.now(), archived);
      } catch (err) {
        if (!(err instanceof CpcError)) throw err;
        refused.set(id, { code: err.code, message: err.message });
        continue;
      }
      const group = byOwner.get(owner) ?? { ids: [], specs: [] };
      group.ids.push(id);
      group.specs.push(job.spec);
      byOwner.set(owner, group);
    }
    const go: string[] = [];
    for (const [owner, group] of byOwner) {
      try {
        ctx.usage.checkRoom(owner, group.specs);
        go.push(...group.ids);
      } catch (err) {
        if (!(err instanceof CpcError)) throw err;
        for (const id of group.ids) refused.set(id, { code: err.code, message: err.message });
      }
    }
    if (go.length > 0) await ctx.dispatcher.commitWork(planRetry(m(), go, Date.now(), archived));
  }

  const out = found.map(({ given, found: f }, i): BulkOutcome => {
    const known = outcomes[i];
    if (known) return known;
    const id = (f as { job: Job }).job.id;
    const no = refused.get(id);
    const state = m().job(id)?.state;
    if (no) return { given, id, outcome: 'refused', ...(state ? { state } : {}), ...no };
    return { given, id, outcome: 'done', ...(state ? { state } : {}) };
  });
  return { action, outcomes: out, done: out.filter((o) => o.outcome === 'done').length };
}
