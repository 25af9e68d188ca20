import { planClaim } from '../../core/commands.js';
import type { Event } from '../../core/events.js';
import type { Resources } from '../../core/types.js';
import type { ClaimedJob } from '../../core/wire.js';
import type { Store } from './store.js';
import { claimedJob } from './views.js';

/**
 * Long-poll claims. A worker's claim is answered at once when a fitting job
 * is queued here; otherwise, when a trusted peer has announced fitting work,
 * the peers are asked; otherwise the claim waits until something may have
 * changed (submit, re-queue, a dependency finishing, room freeing up on the
 * worker, a peer announcing work) or until its wait runs out. Changes call
 * `kick()`; waiting claims are then served in arrival order on the next turn
 * of the event loop, so a burst of changes costs one pass.
 *
 * Local work always goes first: peers are asked only when nothing here fits.
 */

/** Jobs handed to a worker, not yet told to it. */
export interface Grant {
  jobs: ClaimedJob[];
  /** Resolves once the hand-out is durable; the worker hears of it only then. */
  durable: Promise<void>;
  /** Undoes the hand-out (the worker hung up, or its claim was already answered). */
  giveBack(): Promise<void>;
}

/** Where work comes from when nothing local fits: the peers (see federation/delegation.ts). */
export interface RemoteWork {
  /** Has any peer announced work that fits this much room? Cheap; no I/O. */
  fits(free: Resources): boolean;
  ask(workerId: string, free: Resources, max: number): Promise<Grant | null>;
}

/** The worker's side of its claim request: has it hung up, and a signal for when it does (made only if needed). */
export interface Caller {
  gone(): boolean;
  readonly signal: AbortSignal;
}

interface Waiter {
  workerId: string;
  max: number;
  asking: boolean;
  done: boolean;
  resolve: (grant: Grant | null) => void;
  timer: NodeJS.Timeout;
}

export class Dispatcher {
  /** One waiting claim per worker, in arrival order (Map keeps insertion order). */
  private readonly waiting = new Map<string, Waiter>();
  private kicked = false;
  remote: RemoteWork | undefined;

  constructor(
    private readonly store: Store,
    private readonly leaseMs: () => number,
  ) {}

  get waitingCount(): number {
    return this.waiting.size;
  }

  /**
   * Claims jobs for a worker of this server, waiting up to `waitS` for some.
   * Resolves with the jobs once their hand-out is durable, or [] when the
   * wait ran out or the worker went away.
   */
  async claim(workerId: string, max: number, waitS: number, caller: Caller): Promise<ClaimedJob[]> {
    let grant = this.takeLocal(workerId, max) ?? (await this.askRemote(workerId, max));
    if (!grant && waitS > 0 && !caller.gone()) grant = await this.wait(workerId, max, waitS, caller.signal);
    if (!grant) return [];
    await grant.durable;
    if (caller.gone()) {
      // The worker hung up before it could hear of these jobs; leaving them
      // handed out would hold them until their lease ran out.
      await grant.giveBack();
      this.kick();
      return [];
    }
    return grant.jobs;
  }

  /** Something may have become runnable here or at a peer: serve waiting claims soon. */
  kick(): void {
    if (this.kicked || this.waiting.size === 0) return;
    this.kicked = true;
    setImmediate(() => {
      this.kicked = false;
      this.serve();
    });
  }

  /**
   * Commits a change that brings new work (a submit, a retry, a loaded
   * project) and serves waiting claims in the same turn: the hand-outs are
   * journaled in the same group as the change, so an idle worker hears of a
   * job one fsync after it arrived, not two. Safe because the journal is
   * ordered: a worker is answered once its hand-out is durable, and so is
   * the change before it. Resolves once the change is durable, after the
   * waiting workers have been answered.
   */
  async commitWork(event: Event): Promise<void> {
    const durable = this.store.commit(event);
    const served = this.waiting.size > 0 ? this.serve() : 0;
    await durable;
    // Workers that were waiting hear of their jobs first; the caller a moment after.
    if (served > 0) await new Promise((resolve) => setImmediate(resolve));
  }

  /** Serves waiting claims; returns how many were answered with jobs from here. */
  private serve(): number {
    let served = 0;
    for (const waiter of [...this.waiting.values()]) {
      const local = this.takeLocal(waiter.workerId, waiter.max);
      if (local) {
        waiter.resolve(local);
        served++;
        continue;
      }
      if (!waiter.asking) this.askFor(waiter);
    }
    return served;
  }

  /**
   * Answers a worker's waiting claim with nothing. A worker that wants to stop
   * asks for this instead of hanging up, so that a claim already answered
   * with jobs still reaches it: nothing is handed out behind its back.
   */
  release(workerId: string): boolean {
    const waiter = this.waiting.get(workerId);
    waiter?.resolve(null);
    return waiter !== undefined;
  }

  /** Answers every waiting claim with nothing (shutdown). */
  releaseAll(): void {
    for (const waiter of [...this.waiting.values()]) waiter.resolve(null);
  }

  private wait(workerId: string, max: number, waitS: number, signal: AbortSignal): Promise<Grant | null> {
    // A newer claim from the same worker replaces an older one still waiting.
    this.waiting.get(workerId)?.resolve(null);
    return new Promise<Grant | null>((resolve) => {
      const waiter: Waiter = {
        workerId,
        max,
        asking: false,
        done: false,
        resolve: (grant) => {
          if (waiter.done) return;
          waiter.done = true;
          clearTimeout(waiter.timer);
          if (this.waiting.get(workerId) === waiter) this.waiting.delete(workerId);
          signal.removeEventListener('abort', onAbort);
          resolve(grant);
        },
        timer: setTimeout(() => waiter.resolve(null), waitS * 1000),
      };
      const onAbort = () => waiter.resolve(null);
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiting.set(workerId, waiter);
    });
  }

  /** Asks peers for a waiting claim; a grant that comes too late goes back home. */
  private askFor(waiter: Waiter): void {
    const free = this.peerRoomOf(waiter.workerId);
    if (!free || !this.remote?.fits(free)) return;
    waiter.asking = true;
    this.remote.ask(waiter.workerId, free, waiter.max).then(
      (grant) => {
        waiter.asking = false;
        if (!grant) return;
        if (waiter.done) void grant.giveBack();
        else waiter.resolve(grant);
      },
      () => {
        waiter.asking = false;
      },
    );
  }

  private async askRemote(workerId: string, max: number): Promise<Grant | null> {
    const free = this.peerRoomOf(workerId);
    if (!free || !this.remote?.fits(free)) return null;
    try {
      return await this.remote.ask(workerId, free, max);
    } catch {
      return null;
    }
  }

  /** The room a worker offers peers' jobs: none when it runs only one user's (peers' jobs belong to nobody here). */
  private peerRoomOf(workerId: string): Resources | null {
    if (this.store.model.workers.get(workerId)?.onlyUser !== undefined) return null;
    return this.freeOf(workerId);
  }

  private freeOf(workerId: string): Resources | null {
    const model = this.store.model;
    if (!model.workers.has(workerId)) return null;
    const free = model.freeOf(workerId);
    return free.cores > 0 ? free : null;
  }

  /** Takes and applies a claim on this server's queue at once. */
  private takeLocal(workerId: string, max: number): Grant | null {
    const model = this.store.model;
    if (model.ready.size === 0 || !model.workers.has(workerId)) return null;
    const claim = planClaim(model, workerId, 'local', Date.now(), this.leaseMs(), max);
    if (!claim) return null;
    return {
      jobs: claim.claims.map(([jobId, attempt]) => claimedJob(model.job(jobId)!, attempt)),
      durable: this.store.commit(claim),
      giveBack: () => this.store.commit({ t: 'claims-returned', at: Date.now(), workerId, claims: claim.claims }),
    };
  }
}
