import { planCancel, planRetry } from '../../core/commands.js';
import { fail } from '../../core/errors.js';
import type { Job } from '../../core/types.js';
import type { JobList, JobView, LeaseView } from '../../core/wire.js';
import { archivedStates } from '../archived.js';
import { canSee, requireUser, type UserIdentity } from '../auth.js';
import type { Context } from '../context.js';
import { Reply, type Router } from '../http.js';
import { check, idsSchema, jobIdParam, limitQuery, logsQuery, queryObject } from '../schemas.js';
import { jobView } from '../views.js';
import { fitsInTail } from '../results.js';

export function jobRoutes(router: Router, ctx: Context): void {
  const model = ctx.store.model;

  router.add('GET', '/jobs/:id', async (req): Promise<JobView> => {
    const who = requireUser(ctx, req);
    const { job, archived } = await findJob(ctx, who, req.params.id!);
    return jobView(job, archived);
  });

  router.add('GET', '/jobs/:id/logs', async (req) => {
    const who = requireUser(ctx, req);
    const { job } = await findJob(ctx, who, req.params.id!);
    const q = check(logsQuery, queryObject(req.query), 'query');
    const attempt = q.attempt ?? job.attempts[job.attempts.length - 1]?.n;
    if (attempt === undefined) throw fail('LOG_NOT_FOUND', `job ${job.id} has not run yet`);
    if (!job.attempts.some((x) => x.n === attempt)) throw fail('ATTEMPT_NOT_FOUND', `job ${job.id} has no attempt ${attempt}`);
    const a = job.attempts.find((x) => x.n === attempt)!;
    const tail = q.stream === 'stdout' ? a.stdoutTail : a.stderrTail;
    const bytes = q.stream === 'stdout' ? a.stdoutBytes : a.stderrBytes;
    const text = tail !== undefined && bytes !== undefined && fitsInTail(tail, bytes) ? tail : await ctx.logs.read(job.id, attempt, q.stream);
    if (text === null) throw fail('LOG_NOT_FOUND', `attempt ${attempt} of job ${job.id} has no ${q.stream} (it has not finished, or it was lost)`);
    return Reply.text(text);
  });

  router.add('POST', '/jobs/cancel', async (req) => {
    const who = requireUser(ctx, req);
    const { ids } = check(idsSchema, req.body);
    for (const id of ids) liveJob(ctx, who, id);
    const event = planCancel(model, ids, `cancelled by ${who.user}`, Date.now());
    await ctx.store.commit(event);
    // Cancelling a running job frees room on its worker.
    ctx.dispatcher.kick();
    return { cancelled: event.ids };
  });

  router.add('POST', '/jobs/retry', async (req) => {
    const who = requireUser(ctx, req);
    const { ids } = check(idsSchema, req.body);
    const jobs = ids.map((id) => liveJob(ctx, who, id));
    const archived = new Map();
    for (const job of jobs) for (const [id, state] of await archivedStates(ctx, job.project, job.spec.after)) archived.set(id, state);
    const event = planRetry(model, ids, Date.now(), archived);
    await ctx.store.commit(event);
    ctx.dispatcher.kick();
    return { retried: event.ids };
  });

  router.add('GET', '/queue', (req): JobList => {
    const who = requireUser(ctx, req);
    const { limit } = check(limitQuery, queryObject(req.query), 'query');
    const queued: Job[] = [];
    for (const job of model.jobs.values()) {
      if (job.state === 'queued' && canSee(who, model.project(job.project))) queued.push(job);
    }
    queued.sort((a, b) => b.spec.priority - a.spec.priority || a.seq - b.seq);
    return { jobs: queued.slice(0, limit).map((j) => jobView(j)) };
  });

  router.add('GET', '/heartbeats', (req): { leases: LeaseView[] } => {
    const who = requireUser(ctx, req);
    const leases: LeaseView[] = [];
    for (const lease of model.leases.all()) {
      const job = model.job(lease.jobId);
      if (!job || !canSee(who, model.project(job.project))) continue;
      leases.push({
        ...lease,
        project: job.project,
        workerName: model.workers.get(lease.workerId)?.name ?? lease.workerId,
      });
    }
    leases.sort((a, b) => a.deadline - b.deadline);
    return { leases };
  });
}

/** A live job the user may see; jobs of hidden projects are reported missing. */
function liveJob(ctx: Context, who: UserIdentity, id: string): Job {
  check(jobIdParam, id, 'id');
  const job = ctx.store.model.job(id);
  const project = job && ctx.store.model.projects.get(job.project);
  if (!job || !project || !canSee(who, project)) throw fail('JOB_NOT_FOUND', `no job with id '${id}'`);
  return job;
}

async function findJob(ctx: Context, who: UserIdentity, id: string): Promise<{ job: Job; archived: boolean }> {
  check(jobIdParam, id, 'id');
  const live = ctx.store.model.job(id);
  if (live) return { job: liveJob(ctx, who, id), archived: false };
  const job = (await ctx.store.archive.get(id)) as Job | null;
  const project = job && ctx.store.model.projects.get(job.project);
  if (!job || !project || !canSee(who, project)) throw fail('JOB_NOT_FOUND', `no job with id '${id}'`);
  return { job, archived: true };
}
