import { Heap } from './heap.js';
import { fail } from './errors.js';
import type { Lease, Resources } from './types.js';

/**
 * Every running attempt's lease, with one deadline structure for all of them.
 *
 * Renewal only rewrites the lease's deadline (O(1)); the heap keeps the
 * deadline it was pushed with. When an entry reaches the top, the sweeper
 * compares it with the lease's real deadline and pushes it back if the lease
 * was renewed since. So a heartbeat costs a map update per attempt, expiry
 * costs a heap pop, and no timer exists per job.
 */

interface Entry {
  deadline: number;
  jobId: string;
  attempt: number;
}

export class LeaseTable {
  private readonly byJob = new Map<string, Lease>();
  private readonly byWorker = new Map<string, Set<string>>();
  /** Per worker, the jobs whose leases are stopping (see Lease.stopping): few, and looked at on every heartbeat. */
  private readonly stoppingByWorker = new Map<string, Set<string>>();
  private readonly heap = new Heap<Entry>((a, b) => a.deadline < b.deadline);
  /** Per worker, a number that changes whenever one of its leases is added or removed (see versionOf). */
  private readonly versions = new Map<string, number>();
  private changes = 0;

  get size(): number {
    return this.byJob.size;
  }

  get(jobId: string): Lease | undefined {
    return this.byJob.get(jobId);
  }

  /** A job has at most one lease: one whose process may be alive (see Model). Adding a second is refused. */
  add(lease: Lease): void {
    const held = this.byJob.get(lease.jobId);
    if (held) throw fail('INVALID_STATE', `job ${lease.jobId} already has attempt ${held.attempt} leased${held.stopping ? ' (stopping)' : ''}`);
    this.byJob.set(lease.jobId, lease);
    if (lease.stopping) this.indexStopping(lease);
    let jobs = this.byWorker.get(lease.workerId);
    if (!jobs) this.byWorker.set(lease.workerId, (jobs = new Set()));
    jobs.add(lease.jobId);
    this.versions.set(lease.workerId, ++this.changes);
    this.heap.push({ deadline: lease.deadline, jobId: lease.jobId, attempt: lease.attempt });
  }

  remove(jobId: string): Lease | undefined {
    const lease = this.byJob.get(jobId);
    if (!lease) return undefined;
    this.byJob.delete(jobId);
    if (lease.stopping) {
      const stopping = this.stoppingByWorker.get(lease.workerId);
      stopping?.delete(jobId);
      if (stopping && stopping.size === 0) this.stoppingByWorker.delete(lease.workerId);
    }
    const jobs = this.byWorker.get(lease.workerId);
    jobs?.delete(jobId);
    if (jobs && jobs.size === 0) {
      this.byWorker.delete(lease.workerId);
      this.versions.delete(lease.workerId);
    } else this.versions.set(lease.workerId, ++this.changes);
    return lease;
  }

  /**
   * The attempt was ended by the server while its process may still run: the
   * lease stays until the worker confirms or the deadline passes. Changes the
   * worker's version, so a heartbeat that names its attempts by count only
   * is asked to name them (and hears it must abandon this one).
   */
  markStopping(jobId: string, resources: Resources): Lease | undefined {
    const lease = this.byJob.get(jobId);
    if (!lease || lease.stopping) return lease;
    lease.stopping = { resources: { ...resources } };
    this.indexStopping(lease);
    this.versions.set(lease.workerId, ++this.changes);
    return lease;
  }

  /** The jobs of a worker's stopping leases. */
  stoppingOf(workerId: string): ReadonlySet<string> | undefined {
    return this.stoppingByWorker.get(workerId);
  }

  private indexStopping(lease: Lease): void {
    let jobs = this.stoppingByWorker.get(lease.workerId);
    if (!jobs) this.stoppingByWorker.set(lease.workerId, (jobs = new Set()));
    jobs.add(lease.jobId);
  }

  /** Moves a deadline; only later deadlines are taken (a late, reordered renewal must not shorten a lease). */
  renew(jobId: string, attempt: number, deadline: number): boolean {
    const lease = this.byJob.get(jobId);
    if (!lease || lease.attempt !== attempt) return false;
    if (deadline > lease.deadline) lease.deadline = deadline;
    return true;
  }

  /**
   * Moves a lease's deadline by `deltaMs`, earlier as well as later (a step
   * of the wall clock, see planClockStep). The heap holds each lease by the
   * deadline it was pushed with and finds later ones lazily; an earlier one
   * needs an entry of its own.
   */
  move(jobId: string, attempt: number, deltaMs: number): void {
    const lease = this.byJob.get(jobId);
    if (!lease || lease.attempt !== attempt) return;
    lease.deadline += deltaMs;
    if (deltaMs < 0) this.heap.push({ deadline: lease.deadline, jobId, attempt });
  }

  /** Moves the deadline of every lease a worker holds. */
  renewWorker(workerId: string, deadline: number): void {
    const jobs = this.byWorker.get(workerId);
    if (!jobs) return;
    for (const jobId of jobs) {
      const lease = this.byJob.get(jobId)!;
      if (deadline > lease.deadline) lease.deadline = deadline;
    }
  }

  ofWorker(workerId: string): Lease[] {
    const jobs = this.byWorker.get(workerId);
    return jobs ? [...jobs].map((id) => this.byJob.get(id)!) : [];
  }

  /**
   * Changes whenever the worker gains or loses a lease, never to a value it
   * had before: while it stays the same, the leases of the worker are the
   * very same objects (0 when it has none).
   */
  versionOf(workerId: string): number {
    return this.versions.get(workerId) ?? 0;
  }

  countOfWorker(workerId: string): number {
    return this.byWorker.get(workerId)?.size ?? 0;
  }

  all(): IterableIterator<Lease> {
    return this.byJob.values();
  }

  /** Leases whose deadline is at or before `now`; they stay in the table until removed. */
  expired(now: number): Lease[] {
    const out: Lease[] = [];
    const found = new Set<Lease>();
    for (;;) {
      const top = this.heap.peek();
      if (!top || top.deadline > now) break;
      this.heap.pop();
      const lease = this.byJob.get(top.jobId);
      if (!lease || lease.attempt !== top.attempt) continue;
      // A lease moved earlier (move) has a second entry: it is found once.
      if (found.has(lease)) continue;
      if (lease.deadline > now) this.heap.push({ deadline: lease.deadline, jobId: lease.jobId, attempt: lease.attempt });
      else {
        found.add(lease);
        out.push(lease);
      }
    }
    // Expired leases go back on the heap so that a caller who does not remove
    // them sees them again next sweep.
    for (const lease of out) this.heap.push({ deadline: lease.deadline, jobId: lease.jobId, attempt: lease.attempt });
    return out;
  }

  /** The earliest deadline in the heap (possibly of a lease renewed since), for timing the next sweep. */
  nextDeadline(): number | undefined {
    return this.heap.peek()?.deadline;
  }
}
