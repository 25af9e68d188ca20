import { mustStop, noteNamed, renewFromMemo, renewalMemo, renewedAttempts, renewLeases, type RenewalMemo } from '../../core/commands.js';
import { CpcError, fail } from '../../core/errors.js';
import type { Model } from '../../core/model.js';
import type { Worker } from '../../core/types.js';
import type {
  ClaimReply,
  ControlReply,
  HeartbeatReply,
  LogChunkOutcome,
  LogChunksReply,
  RegisterReply,
  ResultOutcome,
  ResultReply,
  ResultRequest,
  WorkerTokenCreated,
  BorrowedCount,
  WorkerTokenView,
  WorkerView,
} from '../../core/wire.js';
import { z } from 'zod';
import type { WorkerIdentity } from '../http/auth.js';
import type { Context } from '../start/context.js';
import type { Router } from '../http/router.js';
import { newId } from './ids.js';
import { peerNames, workerView } from './views.js';
import { replacedBy, workerState } from '../../core/worker-presence.js';
import { isClaim, isHeartbeat, isPlainResult, isWorkerPath } from './quick-checks.js';
import { acceptLogChunks, acceptResult } from './results.js';
import { noteUsage } from './live-usage.js';
import { jobIdParam } from '../http/schemas.js';
import { claimSchema, controlSchema, heartbeatSchema, logChunksSchema, registerSchema, resultSchema, tokenNameSchema } from './schemas.js';
import type { HeldAttempt, StopOrder } from './control.js';

export const workerParams = z.strictObject({ id: jobIdParam });
const tokenParams = z.strictObject({ id: z.string().max(64) });

/** The worker a request names, if it was registered with the caller's token. */
export function workerOf(model: Model, who: WorkerIdentity, id: string): Worker {
  const worker = model.workers.get(id);
  if (!worker || worker.tokenId !== who.tokenId) throw fail('WORKER_NOT_FOUND', `no worker with id '${id}'; register again`);
  return worker;
}

export function workerRoutes(router: Router, ctx: Context): void {
  const model = ctx.store.model;
  /**
   * Long-polls open per worker token. A worker's newer claim replaces its
   * older one (dispatcher.ts), but one token may register any number of
   * workers, so the token as a whole is capped.
   */
  const claimsOpen = new Map<string, number>();

  const ownWorker = (who: WorkerIdentity, id: string): Worker => workerOf(model, who, id);

  /** What each worker's last heartbeat renewed, for heartbeats that name the same attempts (`{ same }`); gone with the worker. */
  const memos = new WeakMap<Worker, RenewalMemo>();

  /**
   * Renewals only move deadlines, so they are journaled coarsely and not
   * waited for: losing the last few in a crash only shortens a lease, and
   * start-up gives such leases a full period anyway (see recovery.ts).
   */
  const journalRenewal = (workerId: string, deadline: number, now: number, attempts: [string, number][], running: [string, number][] = []): void => {
    const last = ctx.journaledDeadline.get(workerId) ?? 0;
    // Attempts that started are journaled at once, once each: their live state is shown.
    if (deadline - last < ctx.leaseMs / 4 && running.length === 0) return;
    ctx.journaledDeadline.set(workerId, deadline);
    ctx.store.commitLater({ t: 'leases-renewed', at: now, workerId, deadline, attempts, ...(running.length > 0 ? { running } : {}) });
  };

  /** A worker's result, alone or with its next claim. */
  const report = async (workerId: string, body: ResultRequest): Promise<ResultReply> => {
    // Mine or forward: a peer's job goes home through the delegation outbox.
    if (model.foreign.has(body.jobId)) return ctx.delegation.result(workerId, body);
    // A job this server does not hold (anymore) cannot be this worker's to finish.
    if (!model.job(body.jobId)) throw fail('STALE_ATTEMPT', `job ${body.jobId} is not leased to this worker (it may have been given up)`);
    return acceptResult(ctx, workerId, body, 'local');
  };

  /** A refusal of one of several results is that result's answer, not the whole request's. */
  const outcomeOf = (p: Promise<ResultReply>): Promise<ResultOutcome> =>
    p.catch((err: unknown) => {
      if (err instanceof CpcError) return { error: { code: err.code, message: err.message } };
      ctx.log.error('a result sent with a claim failed', { err: String(err) });
      return { error: { code: 'INTERNAL', message: 'internal error; see the server log' } };
    });

  router.add('POST', '/workers', { auth: 'worker', summary: 'register a worker with its resources', body: registerSchema }, async (req): Promise<RegisterReply> => {
    const { who, body } = req;
    // A token handed to a cluster node must not become a fleet: its workers are capped.
    const most = who.maxWorkers ?? ctx.config.maxWorkersPerToken;
    const now = Date.now();
    // Gone workers are only listed: they do not count.
    let registered = 0;
    for (const w of model.workers.values()) if (w.tokenId === who.tokenId && workerState(w, now, ctx.leaseMs, ctx.startedAt) === 'live') registered++;
    if (registered >= most) {
      throw fail('TOO_MANY_WORKERS', `${registered} worker${registered === 1 ? ' is' : 's are'} registered with this token, the most it allows`);
    }
    // The token decides whose jobs a worker gets, not what the worker says of
    // itself: a token taken from a worker whose jobs could read it stays bound.
    const onlyUser = who.user;
    if (body.isolation === 'none' && onlyUser === undefined && !body.sharedIdentity) {
      throw fail(
        'ISOLATION_REQUIRED',
        "this worker's jobs would run as the worker itself (isolation none): give it a token bound to one user (cpcc worker-token create NAME --user USER), or start it with --shared-identity",
      );
    }
    const id = newId();
    // The same worker started again takes the place of its gone entry (see worker-presence.ts).
    const replaced = replacedBy(model, { id, name: body.name, host: body.host, registeredAt: now, ...(onlyUser !== undefined ? { onlyUser } : {}) }, now, ctx.leaseMs, ctx.startedAt);
    for (const old of replaced) {
      ctx.journaledDeadline.delete(old.id);
      await ctx.store.commit({ t: 'worker-removed', at: now, id: old.id, reason: `started again as ${id}` });
    }
    await ctx.store.commit({
      t: 'worker-registered',
      at: now,
      id,
      name: body.name,
      host: body.host,
      resources: { cores: body.cores, memoryMb: body.memoryMb },
      labels: body.labels ?? [],
      tokenId: who.tokenId,
      ...(body.isolation !== undefined ? { isolation: body.isolation } : {}),
      ...(body.sharedIdentity ? { sharedIdentity: true } : {}),
      ...(onlyUser !== undefined ? { onlyUser } : {}),
    });
    ctx.log.info('worker registered', {
      worker: id,
      name: body.name,
      cores: body.cores,
      memoryMb: body.memoryMb,
      isolation: body.isolation,
      onlyUser,
      ...(replaced.length > 0 ? { replaces: replaced.map((w) => w.id) } : {}),
    });
    return { workerId: id, heartbeatIntervalS: ctx.config.heartbeatIntervalS, leaseS: ctx.leaseMs / 1000, ...(onlyUser !== undefined ? { onlyUser } : {}) };
  });

  router.add(
    'POST',
    '/workers/:id/claim',
    { auth: 'worker', summary: 'jobs that fit the worker (long-poll: answered when some fit, or empty after waitS)', params: workerParams, body: claimSchema(ctx.config), quick: { params: isWorkerPath, body: isClaim(ctx.config) }, bulk: true },
    async (req): Promise<ClaimReply> => {
      const { who, body } = req;
      const worker = ownWorker(who, req.params.id);
      // Results first: the room they free is the room this claim fills. They
      // are applied at once and durable with the claim's own record, which
      // the journal writes after them: one fsync to wait for, not two.
      const results = body.results ? Promise.all(body.results.map((r) => outcomeOf(report(worker.id, r)))) : undefined;
      const open = claimsOpen.get(who.tokenId) ?? 0;
      if (open >= ctx.config.maxClaimsPerToken) {
        throw fail('TOO_MANY_REQUESTS', `workers of this token have ${open} claims open already, the most allowed`, { retryAfterS: 1 });
      }
      claimsOpen.set(who.tokenId, open + 1);
      try {
        worker.lastSeen = Date.now();
        const jobs = await ctx.dispatcher.claim(worker.id, body.max ?? 4096, body.waitS, req);
        return results ? { jobs, results: await results } : { jobs };
      } finally {
        const left = (claimsOpen.get(who.tokenId) ?? 1) - 1;
        if (left > 0) claimsOpen.set(who.tokenId, left);
        else claimsOpen.delete(who.tokenId);
      }
    },
  );

  router.add(
    'POST',
    '/workers/:id/stopped',
    { auth: 'worker', summary: 'the worker stops: it is listed as gone (stopped) until the retention (workerRetentionS) ends, then removed', params: workerParams },
    async (req): Promise<{ stopped: true }> => {
      const worker = ownWorker(req.who, req.params.id);
      if (worker.stoppedAt === undefined) {
        ctx.dispatcher.release(worker.id);
        await ctx.store.commit({ t: 'worker-stopped', at: Date.now(), id: worker.id });
        ctx.log.info('worker stopped', { worker: worker.id, name: worker.name });
      }
      return { stopped: true };
    },
  );

  router.add('POST', '/workers/:id/release', { auth: 'worker', summary: "answer the worker's waiting claim now", params: workerParams }, (req) => {
    const worker = ownWorker(req.who, req.params.id);
    return { released: ctx.dispatcher.release(worker.id) };
  });

  router.add(
    'POST',
    '/workers/:id/heartbeat',
    { auth: 'worker', summary: 'renew the leases of the attempts the worker runs; lists those to abandon', params: workerParams, body: heartbeatSchema, quick: { params: isWorkerPath, body: isHeartbeat }, bulk: true },
    (req): HeartbeatReply => {
      const worker = ownWorker(req.who, req.params.id);
      const now = Date.now();
      const deadline = now + ctx.leaseMs;
      const interval = ctx.config.heartbeatIntervalS;
      if (req.body.usage) noteUsage(model.leases, worker.id, req.body.usage);
      if ('same' in req.body) {
        // The attempts the last heartbeat named, if the worker's leases have not changed since.
        const memo = memos.get(worker);
        if (!memo || memo.leases.length !== req.body.same || !renewFromMemo(model, worker.id, memo, deadline, now)) {
          memos.delete(worker);
          return { abandon: [], heartbeatIntervalS: interval, resend: true };
        }
        journalRenewal(worker.id, deadline, now, memo.attempts);
        return { abandon: [], heartbeatIntervalS: interval, kept: true };
      }
      const { attempts } = req.body;
      // Mine or forward: peers' jobs this worker runs are renewed by delegation.
      const local = attempts.filter((a) => !model.foreign.has(a.jobId));
      const foreign = attempts.filter((a) => model.foreign.has(a.jobId));
      const outcome = renewLeases(model, worker.id, local, deadline, now);
      // Stopping attempts this worker no longer names have stopped: their jobs may be handed out again.
      if (outcome.stopped.length > 0) {
        ctx.store
          .commit({ t: 'attempts-stopped', at: now, workerId: worker.id, attempts: outcome.stopped })
          .catch((err: unknown) => ctx.log.error('could not journal stopped attempts', { err: String(err) }));
        ctx.dispatcher.kick();
      }
      const delegated = ctx.delegation.heartbeat(worker.id, foreign, deadline);
      // Delegation's answers come first: they carry home's reason for dropping an attempt.
      const abandon = firstOfEach([...delegated.abandon, ...outcome.abandon]);
      // Stopping attempts are abandoned and renewed both: their processes still run.
      const renewed = [...(abandon.length < attempts.length ? renewedAttempts(attempts, abandon) : []), ...outcome.stopping, ...delegated.stopping];
      if (renewed.length > 0) journalRenewal(worker.id, deadline, now, renewed, outcome.started);
      // Kept when the worker named only this server's attempts and all of them hold.
      if (attempts.length > 0 && foreign.length === 0 && abandon.length === 0) {
        memos.set(worker, renewalMemo(model, worker.id, renewed));
        return { abandon, heartbeatIntervalS: interval, kept: true };
      }
      memos.delete(worker);
      return { abandon, heartbeatIntervalS: interval };
    },
  );

  /** Control polls open per worker token, capped like claims (each worker has at most one of each). */
  const controlsOpen = new Map<string, number>();

  /**
   * The heartbeat's rule for a worker's attempts, asked without renewing,
   * marking or confirming anything (a control poll names only some of what
   * the worker runs): delegation's answer for peers' jobs, the core's
   * mustStop for this server's.
   */
  const stopOrders =
    (workerId: string) =>
    (held: HeldAttempt[]): StopOrder[] => {
      if (!model.workers.has(workerId)) return held.map((a) => ({ jobId: a.jobId, attempt: a.attempt, reason: 'the worker was removed' }));
      const foreign: HeldAttempt[] = [];
      const orders: StopOrder[] = [];
      for (const a of held) {
        if (model.foreign.has(a.jobId)) {
          foreign.push(a);
          continue;
        }
        const reason = mustStop(model, workerId, a.jobId, a.attempt);
        if (reason !== null) orders.push({ jobId: a.jobId, attempt: a.attempt, reason });
      }
      // Delegation's answers come first: they carry home's reason.
      return firstOfEach([...ctx.delegation.stopOrders(workerId, foreign), ...orders]);
    };

  router.add(
    'POST',
    '/workers/:id/control',
    {
      auth: 'worker',
      summary: 'held until an attempt the worker runs must stop (long-poll: answered with those to abandon, or none after waitS)',
      params: workerParams,
      body: controlSchema,
      bulk: true,
    },
    async (req): Promise<ControlReply> => {
      const { who, body } = req;
      const worker = ownWorker(who, req.params.id);
      const open = controlsOpen.get(who.tokenId) ?? 0;
      if (open >= ctx.config.maxClaimsPerToken) {
        throw fail('TOO_MANY_REQUESTS', `workers of this token have ${open} control polls open already, the most allowed`, { retryAfterS: 1 });
      }
      controlsOpen.set(who.tokenId, open + 1);
      try {
        worker.lastSeen = Date.now();
        const held = body.attempts.map((a) => ({ ...a, workerId: worker.id }));
        // Named by the worker: from now on a full heartbeat without one says its process is gone.
        noteNamed(model, worker.id, body.attempts.filter((a) => !model.foreign.has(a.jobId)));
        if (model.foreign.size > 0) ctx.delegation.noteNamed(worker.id, body.attempts.filter((a) => model.foreign.has(a.jobId)));
        // What was handed to the worker but is not in its list yet (the claim's answer is on its way) is watched too.
        const unnamed: HeldAttempt[] = [];
        for (const l of model.leases.ofWorker(worker.id)) if (l.via === 'local') unnamed.push({ jobId: l.jobId, attempt: l.attempt, workerId: worker.id });
        if (model.foreign.size > 0) {
          for (const f of model.foreign.values()) if (f.workerId === worker.id && f.result === undefined) unnamed.push({ jobId: f.jobId, attempt: f.attempt, workerId: worker.id });
        }
        const abandon = await ctx.control.watch({
          holder: { worker: worker.id },
          held,
          unnamed,
          mustStop: stopOrders(worker.id),
          waitS: body.waitS,
          signal: req.signal,
        });
        return { abandon };
      } finally {
        const left = (controlsOpen.get(who.tokenId) ?? 1) - 1;
        if (left > 0) controlsOpen.set(who.tokenId, left);
        else controlsOpen.delete(who.tokenId);
      }
    },
  );

  router.add(
    'POST',
    '/workers/:id/results',
    { auth: 'worker', summary: 'report how an attempt ended, with the ends of its output', params: workerParams, body: resultSchema(ctx.config), quick: { params: isWorkerPath, body: isPlainResult(ctx.config) }, bulk: true },
    (req): Promise<ResultReply> => report(ownWorker(req.who, req.params.id).id, req.body),
  );

  router.add(
    'POST',
    '/workers/:id/logs',
    { auth: 'worker', summary: "output of the worker's running attempts as it is written: chunks placed by byte offset, each answered with the stream's stored end or a refusal", params: workerParams, body: logChunksSchema },
    async (req): Promise<LogChunksReply> => {
      const worker = ownWorker(req.who, req.params.id);
      const { chunks } = req.body;
      // Mine or forward: chunks of a peer's job go home over the link, answered from there.
      const isForeign = chunks.map((c) => model.foreign.has(c.jobId));
      const local = chunks.filter((_, k) => !isForeign[k]);
      const foreign = chunks.filter((_, k) => isForeign[k]);
      const [mine, theirs] = await Promise.all([
        local.length > 0 ? acceptLogChunks(ctx, worker.id, local, 'local') : [],
        foreign.length > 0 ? ctx.delegation.logs(worker.id, foreign) : [],
      ]);
      worker.lastSeen = Date.now();
      let i = 0;
      let j = 0;
      const results: LogChunkOutcome[] = isForeign.map((f) => (f ? theirs[j++]! : mine[i++]!));
      return { results };
    },
  );

  router.add('GET', '/workers', { auth: 'user', summary: 'the workers registered here: live ones, and gone ones until the retention ends' }, (): { workers: WorkerView[] } => {
    const now = Date.now();
    const borrowed = borrowedByWorker();
    return { workers: [...model.workers.values()].map((w) => workerView(model, w, workerState(w, now, ctx.leaseMs, ctx.startedAt), borrowed.get(w.id))) };
  });

  /** Peers' jobs each worker runs, by home server (named as the trust store knows it). */
  const borrowedByWorker = (): Map<string, BorrowedCount[]> => {
    const out = new Map<string, BorrowedCount[]>();
    if (model.foreign.size === 0) return out;
    const nameOf = peerNames(ctx);
    for (const f of model.foreign.values()) {
      if (f.result !== undefined) continue;
      let list = out.get(f.workerId);
      if (!list) out.set(f.workerId, (list = []));
      let entry = list.find((b) => b.serverId === f.home);
      if (!entry) list.push((entry = { serverId: f.home, name: nameOf(f.home) ?? f.home, running: 0 }));
      entry.running++;
    }
    return out;
  };

  router.add('POST', '/worker-tokens', { auth: 'superuser', summary: 'issue a worker token (shown once)', body: tokenNameSchema }, async (req): Promise<WorkerTokenCreated> => {
    const { name, maxWorkers, user } = req.body;
    if (user !== undefined && !ctx.accounts.user(user)) throw fail('USER_NOT_FOUND', `no user named '${user}'`);
    const { token, record } = await ctx.accounts.issue('worker', name, null, {
      ...(maxWorkers !== undefined ? { maxWorkers } : {}),
      ...(user !== undefined ? { user } : {}),
    });
    return { id: record.id, name, token };
  });

  router.add('GET', '/worker-tokens', { auth: 'superuser', summary: 'the worker tokens, valid and revoked' }, (): { tokens: WorkerTokenView[] } => {
    return {
      tokens: ctx.accounts.workerTokens().map((t) => ({ id: t.id, name: t.name, createdAt: t.createdAt, revoked: t.revoked, ...(t.user !== undefined ? { user: t.user } : {}) })),
    };
  });

  router.add('DELETE', '/worker-tokens/:id', { auth: 'superuser', summary: 'revoke a worker token', params: tokenParams }, async (req) => {
    const record = await ctx.accounts.revoke(req.params.id, 'worker');
    return { revoked: record.id };
  });
}

/** The first order for each attempt, in the order given. */
function firstOfEach<T extends { jobId: string; attempt: number }>(list: T[]): T[] {
  const seen = new Set<string>();
  return list.filter((a) => {
    const key = `${a.jobId}#${a.attempt}`;
    return !seen.has(key) && seen.add(key);
  });
}
