import { archivable, planExpiry } from '../core/commands.js';
import type { Context } from './context.js';

/**
 * The server's clock-driven work, on one timer: expire leases whose deadline
 * passed (re-queueing their jobs) and move old finished jobs to the archive.
 * Leases are checked every `tickMs`, so a lease runs out at most one tick late.
 */
export class Sweeper {
  private timer: NodeJS.Timeout | null = null;
  private archiving = false;
  private lastArchive = 0;

  constructor(
    private readonly ctx: Context,
    private readonly tickMs = Math.min(1000, ctx.leaseMs / 4),
  ) {}

  start(): void {
    this.timer = setInterval(() => this.tick(), this.tickMs);
    this.timer.unref();
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
  }
}
