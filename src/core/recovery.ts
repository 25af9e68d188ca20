import type { AttemptsLost, ForeignClosed, LeasesExtended } from './events.js';
import type { Model } from './model.js';

/**
 * What start-up does with the leases it finds after replay.
 *
 * - A lease whose deadline had passed before the server went down (before
 *   the last event it recorded) is lost: its job is re-queued now. Renewals
 *   are journaled coarsely, so its worker may have been given a later
 *   deadline and may still run it: the attempt is only stopping (see
 *   Lease.stopping), with one lease period from here in which its worker can
 *   confirm it is gone; the job is handed out again then, or when that
 *   period runs out.
 * - A lease whose deadline fell while the server was down gets one lease
 *   period from now, so its worker, which could not reach us, can heartbeat
 *   again. A short outage then never re-runs healthy work, and a long one
 *   re-queues what is truly lost once that period passes. (Nomad resets its
 *   heartbeat timers the same way on a new leader.)
 * - A lease still in time is left alone; its worker's result is accepted.
 *
 * Foreign attempts (peers' jobs run by our workers) follow the same rule with
 * this server's own deadline for them; one given up is closed here, and its
 * home's lease then runs out there.
 */
export function planLeaseRecovery(model: Model, now: number, leaseMs: number): (AttemptsLost | LeasesExtended | ForeignClosed)[] {
  const lastSeen = model.lastEventAt;
  const lost: [string, number][] = [];
  const extended: [string, number][] = [];
  for (const lease of model.leases.all()) {
    if (lease.deadline <= lastSeen) {
      lost.push([lease.jobId, lease.attempt]);
      extended.push([lease.jobId, lease.attempt]);
    } else if (lease.deadline <= now) extended.push([lease.jobId, lease.attempt]);
  }
  const closed: [string, number][] = [];
  for (const f of model.foreign.values()) {
    if (f.result !== undefined) continue;
    if (f.deadline <= lastSeen) closed.push([f.jobId, f.attempt]);
    else if (f.deadline <= now) extended.push([f.jobId, f.attempt]);
  }
  const events: (AttemptsLost | LeasesExtended | ForeignClosed)[] = [];
  if (closed.length > 0) {
    events.push({ t: 'foreign-closed', at: now, attempts: closed, reason: 'worker went silent before the server stopped' });
  }
  if (lost.length > 0) {
    events.push({
      t: 'attempts-lost',
      at: now,
      how: 'lease-expired',
      reason: 'lease had expired before the server stopped',
      attempts: lost,
      stopping: true,
    });
  }
  if (extended.length > 0) events.push({ t: 'leases-extended', at: now, deadline: now + leaseMs, attempts: extended });
  return events;
}
