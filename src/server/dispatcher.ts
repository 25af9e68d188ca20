import { planClaim } from '../core/commands.js';
import type { JobsClaimed } from '../core/events.js';
import type { Store } from './store.js';

/**
 * Long-poll claims. A worker's claim is answered at once when a fitting job
 * is queued; otherwise it waits here until one is (submit, re-queue, a
 * dependency finishing, room freeing up on the worker) or until its wait runs
 * out. A change that may have made work runnable calls `kick()`; the waiting
 * claims are then served in arrival order on the next turn of the event loop,
 * so a burst of changes costs one pass.
 */

interface Taken {
  claim: JobsClaimed;
  durable: Promise<void>;
}

interface Waiter {
  workerId: string;
  via: string;
  max: number;
  resolve: (taken: Taken | null) => void;
  timer: NodeJS.Timeout;
}

export class Dispatcher {
  /** One waiting claim per worker, in arrival order (Map keeps insertion order). */
  private readonly waiting = new Map<string, Waiter>();
  private kicked = false;

  constructor(
    private readonly store: Store,
    private readonly leaseMs: () => number,
  ) {}

  get waitingCount(): number {
    return this.waiting.size;
  }

  /**
   * Claims jobs for a worker, waiting up to `waitS` for some. Resolves with
   * the claim once it is durable, or null when the wait ran out.
   */
  async claim(workerId: string, via: string, max: number, waitS: number, signal: AbortSignal): Promise<JobsClaimed | null> {
    let taken = this.take(workerId, via, max);
    if (!taken && waitS > 0 && !signal.aborted) taken = await this.wait(workerId, via, max, waitS, signal);
    if (!taken) return null;
    await taken.durable;
    if (signal.aborted) {
      // The worker hung up before it could hear of these jobs; leaving them
      // leased would hold them until the lease ran out.
      const { claim } = taken;
      await this.store.commit({ t: 'claims-returned', at: Date.now(), workerId, claims: claim.claims });
      this.kick();
      return null;
    }
    return taken.claim;
  }

  private wait(workerId: string, via: string, max: number, waitS: number, signal: AbortSignal): Promise<Taken | null> {
    // A newer claim from the same worker replaces an older one still waiting.
    this.waiting.get(workerId)?.resolve(null);
    return new Promise<Taken | null>((resolve) => {
      const waiter: Waiter = {
        workerId,
        via,
        max,
        resolve: (c) => {
          clearTimeout(waiter.timer);
          if (this.waiting.get(workerId) === waiter) this.waiting.delete(workerId);
          signal.removeEventListener('abort', onAbort);
          resolve(c);
        },
        timer: setTimeout(() => waiter.resolve(null), waitS * 1000),
      };
      const onAbort = () => waiter.resolve(null);
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiting.set(workerId, waiter);
    });
  }

  /** Something may have become runnable: serve waiting claims soon. */
  kick(): void {
    if (this.kicked || this.waiting.size === 0) return;
    this.kicked = true;
    setImmediate(() => {
      this.kicked = false;
      for (const waiter of [...this.waiting.values()]) {
        if (this.store.model.ready.size === 0) break;
        const taken = this.take(waiter.workerId, waiter.via, waiter.max);
        if (taken) waiter.resolve(taken);
      }
    });
  }

  /** Answers every waiting claim with nothing (shutdown). */
  releaseAll(): void {
    for (const waiter of [...this.waiting.values()]) waiter.resolve(null);
  }

  /** Takes and applies a claim at once; the worker hears of it once it is durable. */
  private take(workerId: string, via: string, max: number): Taken | null {
    const model = this.store.model;
    if (model.ready.size === 0 || !model.workers.has(workerId)) return null;
    const claim = planClaim(model, workerId, via, Date.now(), this.leaseMs(), max);
    if (!claim) return null;
    return { claim, durable: this.store.commit(claim) };
  }
}
