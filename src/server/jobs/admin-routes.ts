/**
 * The Copernicus admin commands: mark a worker lost now (worker-failed) or
 * one job's running attempt (command-failed) instead of waiting for the
 * lease, stop the server, and show this server with its peers (network).
 */
import { z } from 'zod';
import { planAttemptLost, planWorkerLost } from '../../core/commands.js';
import { fail } from '../../core/errors.js';
import type { AttemptsLost } from '../../core/events.js';
import type { LostReply, NetworkView, StopReply } from '../../core/wire.js';
import type { Context } from '../start/context.js';
import type { Router } from '../http/router.js';
import { jobRefParam } from '../http/schemas.js';
import { idMatcher, resolveId } from '../../core/short-ids.js';
import { peerView } from '../federation/views.js';

const jobParams = z.strictObject({ id: jobRefParam });
// Worker ids are made here (uuid v7), but a peer's worker that holds leases here carries its server's id.
const workerParams = z.strictObject({ id: z.string().min(1).max(64).regex(/^[\w-]+$/, 'must be a worker id') });

export function adminRoutes(router: Router, ctx: Context): void {
  const model = ctx.store.model;

  /**
   * The worker `given` names: an id known here as given (a peer's worker may
   * carry any id), else the one known id it is a part of (core/short-ids.ts); anything
   * else is looked up as given, and not found.
   * Workers are listed to every user, so all of them are candidates.
   */
  const workerId = (given: string): string => {
    const known = new Set<string>(model.workers.keys());
    for (const lease of model.leases.all()) known.add(lease.workerId);
    for (const f of model.foreign.values()) known.add(f.workerId);
    return known.has(given) || idMatcher(given) === null ? given : resolveId(given, known, 'worker', 'WORKER_NOT_FOUND');
  };

  const lostView = (event: AttemptsLost | null): LostReply['lost'] =>
    (event?.attempts ?? []).map(([jobId, attempt]) => ({ jobId, attempt, state: model.job(jobId)?.state ?? 'queued' }));

  router.add(
    'POST',
    '/workers/:id/lost',
    { auth: 'superuser', summary: 'mark a worker lost now: every attempt it holds ends as worker-lost and its jobs are re-queued', params: workerParams },
    async (req): Promise<LostReply> => {
      const id = workerId(req.params.id);
      const reason = `worker marked lost by ${req.who.user}`;
      const { lost, closed } = planWorkerLost(model, id, reason, Date.now());
      // A claim the worker still has open would be handed the very jobs taken back from it.
      if (model.workers.has(id)) ctx.dispatcher.release(id);
      const foreign = (closed?.attempts ?? []).map(([jobId, attempt]) => ({ jobId, attempt, home: model.foreign.get(jobId)?.home ?? '' }));
      if (lost) await ctx.store.commit(lost);
      if (closed) {
        await ctx.store.commit(closed);
        // Home re-queues them now rather than when its lease runs out; if it cannot be told, the lease does it.
        for (const home of new Set(foreign.map((f) => f.home))) {
          const attempts = foreign.filter((f) => f.home === home).map((f) => ({ jobId: f.jobId, attempt: f.attempt, workerId: id }));
          void ctx.delegation.links?.link(home)?.call('lost', { attempts }).catch(() => {});
        }
      }
      ctx.log.info('worker marked lost', { worker: id, by: req.who.user, attempts: lost?.attempts.length ?? 0, foreign: foreign.length });
      ctx.dispatcher.kick();
      return { lost: lostView(lost), foreign };
    },
  );

  router.add(
    'POST',
    '/jobs/:id/lost',
    { auth: 'job', summary: "mark a job's running attempt lost now; the job is re-queued as after a lost lease", params: jobParams },
    async (req): Promise<LostReply> => {
      if (req.archived) throw fail('INVALID_STATE', `job ${req.job.id} is ${req.job.state} and archived, not running`);
      const event = planAttemptLost(model, req.job.id, `attempt marked lost by ${req.who.user}`, Date.now());
      await ctx.store.commit(event);
      ctx.log.info('attempt marked lost', { job: req.job.id, attempt: event.attempts[0]![1], by: req.who.user });
      ctx.dispatcher.kick();
      return { lost: lostView(event), foreign: [] };
    },
  );

  router.add('POST', '/server/stop', { auth: 'superuser', summary: 'stop the server cleanly, after this answer' }, (req): StopReply => {
    ctx.log.info('stop requested', { by: req.who.user });
    // After this turn the reply has been written; close() then lets it finish before the connection goes.
    setImmediate(() => ctx.requestStop());
    return { stopping: true, serverId: ctx.identity.serverId };
  });

  router.add('GET', '/network', { auth: 'superuser', summary: 'this server and its peers, with link states and when each was last seen' }, (): NetworkView => ({
    server: {
      serverId: ctx.identity.serverId,
      name: ctx.config.name,
      host: ctx.config.publicHost,
      unsecurePort: ctx.unsecurePort(),
      securePort: ctx.securePort(),
      version: ctx.version,
    },
    peers: ctx.trust.peers().map((p) => ({
      ...peerView(p, ctx.linkState?.(p.serverId) ?? 'down'),
      lastSeen: ctx.peerLastSeen?.(p.serverId) ?? null,
    })),
  }));
}
