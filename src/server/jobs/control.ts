import type { Event } from '../../core/events.js';
import type { Store } from './store.js';

/**
 * Control polls: the channel that tells whoever runs an attempt, at once,
 * that it must stop.
 *
 * A holder (one of this server's workers, or a trusted peer that borrowed
 * jobs from here) keeps one control request open, naming the attempts it
 * runs. The request is held until a committed change ends one of them, and
 * answered then with the attempts to stop; or, after its wait, with none.
 *
 * Which attempts must stop is not decided here: each watch carries the rule
 * its holder's heartbeat uses (renewLeases, and delegation's for foreign
 * attempts), asked without renewing anything. This file only knows when to
 * ask: after a change that may end an attempt became durable (a cancel, an
 * attempt taken back, a project or worker removed, a foreign attempt closed),
 * for the watches that hold one of the jobs it names, or for every watch when
 * it names none. An attempt handed to the holder while it waits joins its
 * watch, so the holder need not ask again after every claim.
 */

export interface HeldAttempt {
  jobId: string;
  attempt: number;
  workerId: string;
}

export interface StopOrder {
  jobId: string;
  attempt: number;
  reason: string;
}

/** Who holds a watch: one of this server's workers, or a peer for all the attempts it borrowed from here. */
export type Holder = { worker: string } | { peer: string };

export interface WatchSpec {
  /** One open watch per holder: a newer one answers the older at once, with nothing. */
  holder: Holder;
  /** The attempts the holder names. */
  held: HeldAttempt[];
  /**
   * Attempts handed to the holder that it may not know of yet (a claim's
   * answer on its way): watched from now on, but one that must stop already
   * is left out instead of answered, as the holder has let go of it (or will
   * name it once it knows of it, and be answered then).
   */
  unnamed?: HeldAttempt[];
  /** The holder's heartbeat rule, without renewal: which of these must stop, and why. */
  mustStop: (held: HeldAttempt[]) => StopOrder[];
  waitS: number;
  signal: AbortSignal;
}

/** The watch a hand-out joins: the worker's own for this server's workers (foreign claims too), else the peer's it went to. */
function keyOf(holder: Holder): string {
  return 'worker' in holder ? `worker:${holder.worker}` : `peer:${holder.peer}`;
}

const attemptKey = (a: { jobId: string; attempt: number }): string => `${a.jobId}#${a.attempt}`;

interface Watch {
  key: string;
  spec: WatchSpec;
  /** By jobId#attempt. */
  held: Map<string, HeldAttempt>;
  resolve: (orders: StopOrder[]) => void;
  done: boolean;
  timer: NodeJS.Timeout;
}

/** Events that cannot end an attempt; every other kind (including kinds added later) may. */
const HARMLESS = new Set<Event['t']>([
  'project-created',
  'members-changed',
  'project-retry-set',
  'project-loaded',
  'jobs-submitted',
  'worker-registered',
  'worker-stopped',
  'leases-renewed',
  'leases-extended',
  'clock-stepped',
  'value-set',
  'file-received',
  'files-collected',
  'weight-set',
]);

/** The jobs an event names, when it names them; null: it may touch any. */
function jobsOf(e: Event): string[] | null {
  switch (e.t) {
    case 'jobs-cancelled':
    case 'jobs-retried':
    case 'jobs-archived':
      return e.ids;
    case 'attempts-lost':
    case 'foreign-closed':
      return e.attempts.map(([jobId]) => jobId);
    case 'claims-returned':
      return e.claims.map(([jobId]) => jobId);
    default:
      return null;
  }
}

export class Control {
  private readonly watches = new Map<string, Watch>();
  /** Watches by the jobs they hold, for the changes that name their jobs. */
  private readonly byJob = new Map<string, Set<Watch>>();
  /** Checks waiting for their change to become durable, in journal order. */
  private readonly pending: { seq: number; jobs: string[] | null }[] = [];

  constructor(store: Store) {
    store.onEvent((event, seq) => this.observe(event, seq));
    store.onDurable((seq) => this.durable(seq));
  }

  get watchCount(): number {
    return this.watches.size;
  }

  /**
   * Resolves with the attempts that must stop: at once when some already
   * must, else once a durable change ends one, else with [] after waitS, when
   * a newer watch of the same key comes, or when the holder hangs up.
   */
  watch(spec: WatchSpec): Promise<StopOrder[]> {
    const key = keyOf(spec.holder);
    this.watches.get(key)?.resolve([]);
    const named = new Set(spec.held.map(attemptKey));
    const unnamed = (spec.unnamed ?? []).filter((a) => !named.has(attemptKey(a)));
    // One look at all of them: the rule may hand out what it had queued for the holder only once.
    const orders = spec.mustStop([...spec.held, ...unnamed]);
    const stopping = new Set(orders.map(attemptKey));
    const unnamedKeys = new Set(unnamed.map(attemptKey));
    const now = orders.filter((o) => !unnamedKeys.has(attemptKey(o)));
    if (now.length > 0 || spec.waitS <= 0 || spec.signal.aborted) return Promise.resolve(now);
    return new Promise((resolve) => {
      const watch: Watch = {
        key,
        spec,
        held: new Map(),
        done: false,
        resolve: (orders) => {
          if (watch.done) return;
          watch.done = true;
          clearTimeout(watch.timer);
          spec.signal.removeEventListener('abort', onAbort);
          if (this.watches.get(key) === watch) this.watches.delete(key);
          for (const a of watch.held.values()) this.unindex(a.jobId, watch);
          resolve(orders);
        },
        timer: setTimeout(() => watch.resolve([]), spec.waitS * 1000),
      };
      const onAbort = () => watch.resolve([]);
      spec.signal.addEventListener('abort', onAbort, { once: true });
      for (const a of spec.held) this.hold(watch, a);
      for (const a of unnamed) if (!stopping.has(attemptKey(a))) this.hold(watch, a);
      this.watches.set(key, watch);
    });
  }

  /** Answers every watch with nothing (shutdown). */
  releaseAll(): void {
    for (const w of [...this.watches.values()]) w.resolve([]);
  }

  private hold(watch: Watch, a: HeldAttempt): void {
    watch.held.set(attemptKey(a), a);
    let set = this.byJob.get(a.jobId);
    if (!set) this.byJob.set(a.jobId, (set = new Set()));
    set.add(watch);
  }

  /** Takes the watch off a job's index (the watch may hold more than one attempt of a job; the index counts it once). */
  private unindex(jobId: string, watch: Watch): void {
    const set = this.byJob.get(jobId);
    if (!set) return;
    set.delete(watch);
    if (set.size === 0) this.byJob.delete(jobId);
  }

  private observe(e: Event, seq: number): void {
    if (this.watches.size === 0) return;
    // Attempts handed out while their holder waits join its watch.
    if (e.t === 'jobs-claimed' || e.t === 'foreign-claimed') {
      const holder = e.t === 'jobs-claimed' && e.via !== 'local' ? { peer: e.via } : { worker: e.workerId };
      const w = this.watches.get(keyOf(holder));
      if (!w) return;
      if (e.t === 'jobs-claimed') for (const [jobId, attempt] of e.claims) this.hold(w, { jobId, attempt, workerId: e.workerId });
      else for (const c of e.claims) this.hold(w, { jobId: c.jobId, attempt: c.attempt, workerId: e.workerId });
      return;
    }
    // A worker's own report ends its attempt: nothing to tell it.
    if (e.t === 'attempt-finished' || e.t === 'foreign-finished') {
      const key = attemptKey(e);
      for (const w of [...(this.byJob.get(e.jobId) ?? [])]) {
        if (!w.held.delete(key)) continue;
        let other = false;
        for (const a of w.held.values()) if (a.jobId === e.jobId) other = true;
        if (!other) this.unindex(e.jobId, w);
      }
      return;
    }
    if (HARMLESS.has(e.t)) return;
    const jobs = jobsOf(e);
    if (jobs && !jobs.some((id) => this.byJob.has(id))) return;
    this.pending.push({ seq, jobs });
  }

  /**
   * Looks again at the watches that hold these jobs, now: for a change that
   * is not an event of its own (delegation marking a foreign attempt
   * stopping on home's word, to be confirmed by its worker).
   */
  recheck(jobs: string[]): void {
    const watches = new Set<Watch>();
    for (const id of jobs) for (const w of this.byJob.get(id) ?? []) watches.add(w);
    this.check(watches);
  }

  private durable(seq: number): void {
    let n = 0;
    while (n < this.pending.length && this.pending[n]!.seq <= seq) n++;
    if (n === 0) return;
    const due = this.pending.splice(0, n);
    const watches = new Set<Watch>();
    for (const { jobs } of due) {
      if (jobs === null) {
        for (const w of this.watches.values()) watches.add(w);
        break;
      }
      for (const id of jobs) for (const w of this.byJob.get(id) ?? []) watches.add(w);
    }
    this.check(watches);
  }

  private check(watches: Set<Watch>): void {
    for (const w of watches) {
      if (w.done) continue;
      let orders: StopOrder[];
      try {
        orders = w.spec.mustStop([...w.held.values()]);
      } catch {
        // The holder asks again, and its heartbeat has the last word.
        orders = [];
        w.resolve([]);
      }
      if (orders.length > 0) w.resolve(orders);
    }
  }
}
