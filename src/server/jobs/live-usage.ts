import type { LeaseTable } from '../../core/lease-table.js';
import type { Lease, Usage } from '../../core/types.js';

/**
 * The latest usage of running attempts, as their workers' heartbeats bring
 * it. Only shown (`cpcc job`), never journaled: the figures that are kept come
 * with the result. Held by lease, so a figure goes when its attempt's lease
 * ends, and an attempt that is stopping or no longer this worker's is not noted.
 */
const latest = new WeakMap<Lease, Usage>();

export function noteUsage(leases: Pick<LeaseTable, 'get'>, workerId: string, items: readonly { jobId: string; attempt: number; usage: Usage }[]): void {
  for (const { jobId, attempt, usage } of items) {
    const lease = leases.get(jobId);
    if (lease && lease.attempt === attempt && lease.workerId === workerId && !lease.stopping) latest.set(lease, usage);
  }
}

/** The latest figures of attempt `n` of a job, while its lease holds. */
export function liveUsage(leases: Pick<LeaseTable, 'get'>, jobId: string, n: number): Usage | undefined {
  const lease = leases.get(jobId);
  return lease && lease.attempt === n ? latest.get(lease) : undefined;
}
