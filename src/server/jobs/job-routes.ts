import { z } from 'zod';
import { planCancel, planRetry } from '../../core/commands.js';
import { fail } from '../../core/errors.js';
import { FINAL_STATES, type Job, type JobSpec } from '../../core/types.js';
import type { JobList, JobView, LeaseView } from '../../core/wire.js';
import { archivedStates } from './archived.js';
import { canSee, visibleJob, visibleLiveJob, visibleProject } from '../http/auth.js';
import type { Context } from '../start/context.js';
import { Reply, type Router } from '../http/router.js';
import { textPart } from '../files/log-part.js';
import type { KeptPart } from '../files/log-store.js';
import { fitsInTail } from './results.js';
import { jobRefParam, limitQuery } from '../http/schemas.js';
import { bulkSchema, idsSchema, logsQuery, runningQuery, statesSchema } from './schemas.js';
import { bulkAction } from './bulk.js';
import { explain } from './why.js';
import { CpcError } from '../../core/errors.js';
import type { BulkReply, JobStatesReply, WhyView } from '../../core/job-reports.js';

/** Log reads one user may have waiting for output at once (TOO_MANY_REQUESTS past it). */
const MAX_LOG_WAITS_PER_USER = 32;
import { jobView, leaseViews, peerNames } from './views.js';

const jobParams = z.strictObject({ id: jobRefParam });

export function jobRoutes(router: Router, ctx: Context): void {
  const model = () => ctx.store.model;

  router.add('GET', '/jobs/:id', { auth: 'job', summary: 'one job, live or archived', params: jobParams }, (req): JobView =>
    jobView(req.job, req.archived, model()),
  );

  /** Log reads waiting for more output, per user: they hold a connection each, like any long request. */
  const logWaits = new Map<string, number>();

  router.add(
    'GET',
    '/jobs/:id/logs',
    {
      auth: 'job',
      summary:
        "an attempt's stdout or stderr (the last attempt by default), as far as it has arrived while the attempt runs; offset and limit, or tail, ask for a part (in bytes); wait=S waits up to S seconds for output past offset while the attempt runs. Headers: x-log-offset, x-log-end, x-log-size, x-log-start (bytes before it are not kept), x-log-running",
      params: jobParams,
      query: logsQuery,
      text: true,
    },
    async (req) => {
      const { query: q } = req;
      const id = req.job.id;
      // The live record: an attempt may end (or a new one start) while this request waits.
      const current = (): Job => (req.archived ? req.job : (model().job(id) ?? req.job));
      const attempt = q.attempt ?? current().attempts[current().attempts.length - 1]?.n;
      if (attempt === undefined) throw fail('LOG_NOT_FOUND', `job ${id} has not run yet`);
      if (!current().attempts.some((x) => x.n === attempt)) throw fail('ATTEMPT_NOT_FOUND', `job ${id} has no attempt ${attempt}`);
      const running = (): boolean => !req.archived && model().leases.get(id)?.attempt === attempt;
      if (q.wait !== undefined && q.wait > 0 && q.tail === undefined && running()) {
        const user = req.who.user;
        const open = logWaits.get(user) ?? 0;
        if (open >= MAX_LOG_WAITS_PER_USER) {
          throw fail('TOO_MANY_REQUESTS', `${open} log reads of yours are waiting for output already, the most allowed`, { retryAfterS: 1 });
        }
        logWaits.set(user, open + 1);
        try {
          await ctx.logs.waitFor(id, attempt, q.stream, q.offset ?? 0, q.wait * 1000, req.signal, running);
        } finally {
          const left = (logWaits.get(user) ?? 1) - 1;
          if (left > 0) logWaits.set(user, left);
          else logWaits.delete(user);
        }
      }
      // Asked before reading: once the attempt is seen ended, all of its output is stored (results make it durable first).
      const live = running();
      const a = current().attempts.find((x) => x.n === attempt)!;
      const tail = q.stream === 'stdout' ? a.stdoutTail : a.stderrTail;
      const bytes = q.stream === 'stdout' ? a.stdoutBytes : a.stderrBytes;
      const kept = !live && tail !== undefined && bytes !== undefined && fitsInTail(tail, bytes) ? tail : null;
      const part: KeptPart | null =
        kept !== null ? { ...(await textPart(kept, q)), start: 0 } : await ctx.logs.readPart(id, attempt, q.stream, q, live);
      if (part === null && !live) throw fail('LOG_NOT_FOUND', `attempt ${attempt} of job ${id} has no ${q.stream} (it was lost before its output arrived)`);
      const p = part ?? { text: '', offset: 0, end: 0, size: 0, start: 0 };
      return Reply.text(p.text, 200, {
        'x-log-offset': String(p.offset),
        'x-log-end': String(p.end),
        'x-log-size': String(p.size),
        'x-log-start': String(p.start),
        'x-log-running': live ? '1' : '0',
        'x-log-attempt': String(attempt),
      });
    },
  );

  router.add('POST', '/jobs/cancel', { auth: 'user', summary: 'cancel jobs (all or none)', body: idsSchema }, async (req) => {
    const ids = [...new Set(req.body.ids.map((id) => visibleLiveJob(ctx, req.who, id).id))];
    const event = planCancel(model(), ids, `cancelled by ${req.who.user}`, Date.now());
    await ctx.store.commit(event);
    // Cancelling a running job frees room on its worker.
    ctx.dispatcher.kick();
    return { cancelled: event.ids };
  });

  router.add('POST', '/jobs/retry', { auth: 'user', summary: 'give failed or cancelled jobs a fresh budget (all or none)', body: idsSchema }, async (req) => {
    const jobs = [...new Map(req.body.ids.map((id) => visibleLiveJob(ctx, req.who, id)).map((j) => [j.id, j])).values()];
    const ids = jobs.map((j) => j.id);
    const archived = new Map();
    for (const job of jobs) for (const [id, state] of await archivedStates(ctx, job.project, job.spec.after)) archived.set(id, state);
    // Checked again after the waits: another request may have removed a job or its project meanwhile.
    for (const id of ids) visibleLiveJob(ctx, req.who, id);
    // Jobs given another go are unfinished again, and count as such against their projects' owners.
    const byOwner = new Map<string, JobSpec[]>();
    for (const job of jobs) {
      const owner = model().projects.get(job.project)?.owner;
      if (owner !== undefined && FINAL_STATES.has(job.state)) byOwner.set(owner, [...(byOwner.get(owner) ?? []), job.spec]);
    }
    for (const [owner, specs] of byOwner) ctx.usage.checkRoom(owner, specs);
    const event = planRetry(model(), ids, Date.now(), archived);
    await ctx.dispatcher.commitWork(event);
    return { retried: event.ids };
  });

  router.add(
    'POST',
    '/jobs/bulk',
    {
      auth: 'user',
      summary:
        'cancel or retry many jobs, each on its own: every id gets an outcome (done, ended, not-found, skipped, refused), and what can be done is done',
      body: bulkSchema,
    },
    (req): Promise<BulkReply> => bulkAction(ctx, req.who, req.body.action, req.body.ids),
  );

  router.add('POST', '/jobs/states', { auth: 'user', summary: 'the states of jobs named by id (live or archived), for a wait; ids no job answers to are listed as missing', body: statesSchema }, async (req): Promise<JobStatesReply> => {
    const reply: JobStatesReply = { jobs: [], missing: [] };
    for (const given of req.body.ids) {
      try {
        const { job } = await visibleJob(ctx, req.who, given);
        reply.jobs.push({ given, id: job.id, project: job.project, ...(job.spec.name !== undefined ? { name: job.spec.name } : {}), state: job.state, reason: job.reason });
      } catch (err) {
        if (err instanceof CpcError && err.code === 'JOB_NOT_FOUND') reply.missing.push(given);
        else throw err;
      }
    }
    return reply;
  });

  router.add('GET', '/jobs/:id/why', { auth: 'job', summary: 'why a job is not running: dependencies, no worker big enough, an old attempt still stopping, or waiting for room and its turn', params: jobParams }, (req): WhyView =>
    explain(model(), req.archived ? req.job : (model().job(req.job.id) ?? req.job), req.archived, ctx.delegation.offers()),
  );

  router.add('GET', '/queue', { auth: 'user', summary: 'queued jobs this user may see, by priority, then age (users take turns between them; see the scheduling rule)', query: limitQuery }, (req): JobList => {
    const m = model();
    const queued: Job[] = [];
    for (const job of m.jobs.values()) {
      if (job.state === 'queued' && canSee(req.who, m.project(job.project))) queued.push(job);
    }
    queued.sort((a, b) => b.spec.priority - a.spec.priority || a.seq - b.seq);
    return { jobs: queued.slice(0, req.query.limit).map((j) => jobView(j, false, m)) };
  });

  router.add('GET', '/running', { auth: 'user', summary: 'running jobs this user may see (or of one project), oldest start first', query: runningQuery }, (req): JobList => {
    const m = model();
    const only = req.query.project === undefined ? undefined : visibleProject(ctx, req.who, req.query.project);
    const running: { job: Job; startedAt: number }[] = [];
    for (const lease of m.leases.all()) {
      const job = m.job(lease.jobId);
      // A stopping attempt's job is no longer running (it is cancelled, or queued again).
      if (!job || lease.stopping || (only ? job.project !== only.name : !canSee(req.who, m.project(job.project)))) continue;
      running.push({ job, startedAt: job.attempts.find((a) => a.n === lease.attempt)?.startedAt ?? job.updatedAt });
    }
    running.sort((a, b) => a.startedAt - b.startedAt || a.job.seq - b.job.seq);
    return { jobs: running.slice(0, req.query.limit).map((r) => jobView(r.job, false, m)) };
  });

  router.add('GET', '/heartbeats', { auth: 'user', summary: "running attempts this user may see, with their lease deadlines; for super users also peers' jobs this server's workers run" }, (req): { leases: LeaseView[] } => {
    const m = model();
    // Peers' jobs belong to no user here: only super users, who see every worker, see them.
    return { leases: leaseViews(m, (project) => canSee(req.who, m.project(project)), peerNames(ctx), req.who.superuser === true) };
  });
}
