import type { WorkerRemoved } from './events.js';
import type { Model } from './model.js';
import type { Worker } from './types.js';

/**
 * Whether a registered worker is still there, and when its entry goes.
 *
 * A worker is `live` while it is heard from: every heartbeat, claim and
 * control poll moves its `lastSeen`. It is gone once it said it stopped
 * (`stopped`, see the worker-stopped event) or once nothing was heard from
 * it for a lease's length (`lost`: its leases ran out by then too). Gone
 * workers stay listed, with their state and when they were last seen, for
 * the retention (`workerRetentionS`); then their entry is removed.
 *
 * A worker that is started again under the same name on the same host, with
 * a token of the same user (or an unbound token, as before), is the same
 * worker to an admin: its new registration replaces the old entry as soon
 * as the old one is gone, rather than after the retention. An old entry
 * that still looks live is kept (two processes may really run under one
 * name) until it goes lost, and is then replaced at once — if it fell silent
 * before the new one registered: one heard from after that was not the
 * process that was started again.
 */

export type WorkerState = 'live' | 'stopped' | 'lost';

/**
 * `watchedSince`: when this server began hearing from workers (its start).
 * A worker is given a lease's length from then to be heard again, as its
 * leases are after a restart.
 */
export function workerState(w: Worker, now: number, leaseMs: number, watchedSince = 0): WorkerState {
  if (w.stoppedAt !== undefined) return 'stopped';
  return now - Math.max(w.lastSeen, watchedSince) > leaseMs ? 'lost' : 'live';
}

/**
 * The wall clock stepped by `stepMs` (see planClockStep), found out at most
 * `sinceMs` after the step: the times workers were last heard from before
 * the step move with it. Without this a step
 * forward makes every worker look lost at once, and past the retention,
 * removed with its running attempts; a step back keeps dead ones live as
 * long. Times given since the step are on the new clock already and are told
 * apart by where they lie: after a step forward none is earlier than now
 * less `sinceMs`; before a step back, every one was later than now.
 * Not journaled, as `lastSeen` itself is not: it is what this process heard.
 * (A stopped worker's `stoppedAt` is journaled and stays: its retention
 * may end early after a step forward, which loses nothing.)
 */
export function moveWorkerClocks(workers: Iterable<Worker>, stepMs: number, now: number, sinceMs: number): number {
  const given = (t: number): boolean => (stepMs > 0 ? t < now - sinceMs : t > now);
  let moved = 0;
  for (const w of workers) {
    if (given(w.lastSeen)) {
      w.lastSeen += stepMs;
      moved++;
    }
  }
  return moved;
}

/** When a gone worker went: when it said it stopped, or when it was last heard from. */
export function goneSince(w: Worker): number {
  return w.stoppedAt ?? w.lastSeen;
}

/** The same worker started again: same name, same host, a token of the same user (or unbound, both). */
export function sameWorker(a: Pick<Worker, 'name' | 'host' | 'onlyUser'>, b: Pick<Worker, 'name' | 'host' | 'onlyUser'>): boolean {
  return a.name === b.name && a.host === b.host && a.onlyUser === b.onlyUser;
}

/** `next` registered once `old` had fallen silent: it can be `old` started again. */
function follows(next: Pick<Worker, 'registeredAt'>, old: Pick<Worker, 'registeredAt' | 'lastSeen'>): boolean {
  return next.registeredAt >= old.registeredAt && next.registeredAt >= old.lastSeen;
}

function identityOf(w: Pick<Worker, 'name' | 'host' | 'onlyUser'>): string {
  return JSON.stringify([w.name, w.host, w.onlyUser ?? null]);
}

/** Gone workers whose entry a newer registration of the same worker replaces. */
export function replacedBy(model: Model, w: Pick<Worker, 'id' | 'name' | 'host' | 'onlyUser' | 'registeredAt'>, now: number, leaseMs: number, watchedSince = 0): Worker[] {
  const out: Worker[] = [];
  for (const old of model.workers.values()) {
    if (old.id === w.id || !follows(w, old) || !sameWorker(old, w)) continue;
    if (workerState(old, now, leaseMs, watchedSince) !== 'live') out.push(old);
  }
  return out;
}

/**
 * The entries to remove now: gone workers past the retention, and gone
 * workers a newer live registration of the same worker replaces.
 */
export function planWorkerRemovals(model: Model, now: number, leaseMs: number, retentionMs: number, watchedSince = 0): WorkerRemoved[] {
  const out: WorkerRemoved[] = [];
  /** The newest live registration of each worker identity. */
  const live = new Map<string, Worker>();
  const gone: Worker[] = [];
  for (const w of model.workers.values()) {
    if (workerState(w, now, leaseMs, watchedSince) !== 'live') gone.push(w);
    else if ((live.get(identityOf(w))?.registeredAt ?? -Infinity) <= w.registeredAt) live.set(identityOf(w), w);
  }
  for (const w of gone) {
    const successor = live.get(identityOf(w));
    if (successor && follows(successor, w)) {
      out.push({ t: 'worker-removed', at: now, id: w.id, reason: `started again as ${successor.id}` });
    } else if (now - goneSince(w) >= retentionMs) {
      const how = w.stoppedAt !== undefined ? 'stopped' : 'lost';
      out.push({ t: 'worker-removed', at: now, id: w.id, reason: `${how} longer than the retention` });
    }
  }
  return out;
}
