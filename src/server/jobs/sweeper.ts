import { archivable, planClockStep, planExpiry } from '../../core/commands.js';
import { moveWorkerClocks, planWorkerRemovals } from '../../core/worker-presence.js';
import type { Files } from '../files/files.js';
import type { Logger } from '../../common/logger.js';
import type { Dispatcher } from './dispatcher.js';
import type { Store } from './store.js';

/** What the sweeper uses: the store, the file store, the settings of its timers, and who to wake. */
export interface SweeperServices {
  store: Pick<Store, 'model' | 'commit' | 'archiveJobs'>;
  files: Pick<Files, 'store'>;
  /** Read at each tick: a setting changed while the server runs applies at once. */
  config: { archiveAfterS: number; fileGraceS: number; workerRetentionS: number };
  dispatcher: Pick<Dispatcher, 'kick'>;
  /** Delegated attempts have their own clock-driven work (renewals, silent workers). */
  delegation: { tick(now: number): void };
  leaseMs: number;
  /** When the server started (see workerState). */
  startedAt: number;
  /** Renewals journaled per worker: a removed worker's entry goes too. */
  journaledDeadline: Map<string, number>;
  log: Logger;
}

/** A difference between the wall and monotonic clocks over one tick that counts as a step of the wall clock. */
const CLOCK_STEP_MS = 2000;

/**
 * The server's clock-driven work, on one timer: expire leases whose deadline
 * passed (re-queueing their jobs) and move old finished jobs to the archive.
 * Leases are checked every `tickMs`, so a lease runs out at most one tick late.
 */
export class Sweeper {
  private timer: NodeJS.Timeout | null = null;
  private archiving = false;
  private lastArchive = 0;
  private collecting = false;
  private removing = false;
  private lastCollect = Date.now();

  constructor(
    private readonly ctx: SweeperServices,
    private readonly tickMs = Math.min(1000, ctx.leaseMs / 4),
  ) {}

  start(): void {
    let wall = Date.now();
    let mono = performance.now();
    this.timer = setInterval(() => {
      const nowWall = Date.now();
      const nowMono = performance.now();
      // Between two ticks the wall clock should move as the monotonic one does; more than that is a step.
      const stepMs = nowWall - wall - (nowMono - mono);
      wall = nowWall;
      mono = nowMono;
      if (Math.abs(stepMs) >= CLOCK_STEP_MS) this.clockStepped(Math.round(stepMs), nowWall);
      this.tick(nowWall);
    }, this.tickMs);
    this.timer.unref();
  }

  /** Moves the deadlines given before a step of the wall clock with it (see planClockStep). */
  clockStepped(stepMs: number, now: number): void {
    const { store, log } = this.ctx;
    const event = planClockStep(store.model, stepMs, now, this.ctx.leaseMs, this.tickMs * 2);
    const workers = moveWorkerClocks(store.model.workers.values(), stepMs, now, this.tickMs * 2);
    log.warn('the wall clock stepped; lease deadlines given before the step move with it', { stepMs, leases: event?.attempts.length ?? 0, foreign: event?.foreign.length ?? 0, workers });
    if (event) store.commit(event).catch((err: unknown) => log.error('could not journal a clock step', { err: String(err) }));
  }

  /** Removes stored files that nothing has referred to for the grace period. */
  async collectFiles(now = Date.now()): Promise<{ removed: number; bytes: number }> {
    const { store, files, config, log } = this.ctx;
    const { gone, ...out } = await files.store.collect((sha) => store.model.files.isHeld(sha), config.fileGraceS * 1000, now);
    if (out.removed > 0) log.info('unused files removed', out);
    // Whoever sent that content may no longer name it. A crash before this
    // commit is made good at the next start (forgetMissingFiles).
    if (gone.length > 0) await store.commit({ t: 'files-collected', at: now, sha256s: gone });
    return out;
  }

  /** Gone workers past the retention, or replaced by the same worker started again, leave the list. */
  removeGoneWorkers(now = Date.now()): void {
    const { store, config, log } = this.ctx;
    if (this.removing || store.model.workers.size === 0) return;
    const removals = planWorkerRemovals(store.model, now, this.ctx.leaseMs, config.workerRetentionS * 1000, this.ctx.startedAt);
    if (removals.length === 0) return;
    this.removing = true;
    for (const e of removals) this.ctx.journaledDeadline.delete(e.id);
    log.info('gone workers removed', { workers: removals.length });
    Promise.all(removals.map((e) => store.commit(e)))
      .catch((err: unknown) => log.error('could not journal removed workers', { err: String(err) }))
      .finally(() => (this.removing = false));
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  tick(now = Date.now()): void {
    const { store, dispatcher, log } = this.ctx;
    const expiry = planExpiry(store.model, now);
    if (expiry) {
      log.info('leases expired; jobs re-queued', { attempts: expiry.attempts.length });
      store.commit(expiry).catch((err: unknown) => log.error('could not journal lease expiry', { err: String(err) }));
      dispatcher.kick();
    }
    this.ctx.delegation.tick(now);
    this.removeGoneWorkers(now);
    const every = Math.max(1000, Math.min(60_000, (this.ctx.config.archiveAfterS * 1000) / 4));
    if (!this.archiving && now - this.lastArchive >= every) {
      this.lastArchive = now;
      const ids = archivable(store.model, now - this.ctx.config.archiveAfterS * 1000, 10_000);
      if (ids.length > 0) {
        this.archiving = true;
        store
          .archiveJobs(ids, now)
          .catch((err: unknown) => log.error('archiving failed; will try again', { err: String(err) }))
          .finally(() => (this.archiving = false));
      }
    }
    const collectEvery = Math.max(1000, Math.min(10 * 60_000, (this.ctx.config.fileGraceS * 1000) / 2));
    if (!this.collecting && now - this.lastCollect >= collectEvery) {
      this.lastCollect = now;
      this.collecting = true;
      this.collectFiles(now)
        .catch((err: unknown) => log.error('collecting unused files failed; will try again', { err: String(err) }))
        .finally(() => (this.collecting = false));
    }
  }
}
