import { fail } from '../../core/errors.js';

/**
 * Slows down password guessing, per user name and per client address. Each key gets a number of free failures; after that every further
 * failure makes the key wait, twice as long each time up to a ceiling, and
 * a login tried while waiting is refused with TOO_MANY_REQUESTS and
 * `retryAfterS`, before any password is hashed.
 *
 * An attempt counts as a failure from the moment it starts and is taken back
 * when it succeeds, so a burst of guesses sent all at once is held to the same
 * budget as guesses sent one after another.
 *
 * Names count whether or not such a user exists, so the answers tell nothing
 * about which names do. A key left alone for twice the ceiling is forgotten,
 * and the tables are bounded so that made-up names cannot fill the memory.
 *
 * The tables live in memory and are saved (`save`/`restore`, throttle-file.ts),
 * so that restarting the server does not hand a guesser a fresh budget.
 */

/** A key's state as saved: key, failures, no attempt before (ms), last failure (ms). */
export type SavedEntry = [key: string, failures: number, until: number, last: number];

export interface SavedThrottle {
  users: SavedEntry[];
  addresses: SavedEntry[];
}

export interface ThrottleOptions {
  perUser: number;
  perAddress: number;
  maxDelayMs: number;
  /** First delay past the free failures; it doubles with each failure. */
  baseDelayMs?: number;
  maxEntries?: number;
  now?: () => number;
}

interface Entry {
  failures: number;
  /** No attempt before this time. */
  until: number;
  last: number;
}

class Table {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly free: number,
    private readonly opts: Required<Omit<ThrottleOptions, 'perUser' | 'perAddress'>>,
  ) {}

  /** Seconds to wait before `key` may try again, or 0. */
  wait(key: string, now: number): number {
    const e = this.get(key, now);
    return e && e.until > now ? Math.ceil((e.until - now) / 1000) : 0;
  }

  fail(key: string, now: number): void {
    const e = this.get(key, now) ?? { failures: 0, until: 0, last: now };
    e.failures++;
    e.last = now;
    const over = e.failures - this.free;
    if (over >= 0) e.until = now + Math.min(this.opts.maxDelayMs, this.opts.baseDelayMs * 2 ** Math.min(over, 40));
    // Re-inserted so the Map's order is least recently failed first.
    this.entries.delete(key);
    this.entries.set(key, e);
    while (this.entries.size > this.opts.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }

  /** Takes one failure back (the attempt succeeded); `clear` forgets the key. */
  undo(key: string, now: number, clear: boolean): void {
    const e = this.get(key, now);
    if (!e) return;
    if (clear) {
      this.entries.delete(key);
      return;
    }
    e.failures = Math.max(0, e.failures - 1);
    if (e.failures < this.free) e.until = 0;
  }

  /** The keys still remembered, least recently failed first. */
  save(now: number): SavedEntry[] {
    const out: SavedEntry[] = [];
    for (const key of [...this.entries.keys()]) {
      const e = this.get(key, now);
      if (e && e.failures > 0) out.push([key, e.failures, e.until, e.last]);
    }
    return out;
  }

  restore(saved: SavedEntry[], now: number): void {
    for (const [key, failures, until, last] of saved) {
      this.entries.set(key, { failures, until, last });
      // Forgotten now if it would have been by now.
      this.get(key, now);
    }
    while (this.entries.size > this.opts.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }

  private get(key: string, now: number): Entry | undefined {
    const e = this.entries.get(key);
    if (e && now - e.last > 2 * this.opts.maxDelayMs && now >= e.until) {
      this.entries.delete(key);
      return undefined;
    }
    return e;
  }
}

export class LoginThrottle {
  private readonly users: Table;
  private readonly addresses: Table;
  private readonly now: () => number;

  constructor(opts: ThrottleOptions) {
    const common = {
      maxDelayMs: opts.maxDelayMs,
      baseDelayMs: opts.baseDelayMs ?? 1000,
      maxEntries: opts.maxEntries ?? 100_000,
      now: opts.now ?? Date.now,
    };
    this.now = common.now;
    this.users = new Table(opts.perUser, common);
    this.addresses = new Table(opts.perAddress, common);
  }

  /** Grows with every change, so a saver can tell whether there is anything new to save. */
  changes = 0;

  /**
   * Starts a login attempt, or refuses it with TOO_MANY_REQUESTS. Call
   * `succeeded` on the result when the password was right.
   */
  begin(user: string, address: string): { succeeded(): void } {
    const now = this.now();
    const wait = Math.max(this.users.wait(user, now), this.addresses.wait(address, now));
    if (wait > 0) {
      throw fail('TOO_MANY_REQUESTS', `too many failed logins; try again in ${wait} s`, { retryAfterS: wait });
    }
    this.users.fail(user, now);
    this.addresses.fail(address, now);
    this.changes++;
    return {
      succeeded: () => {
        const at = this.now();
        this.users.undo(user, at, true);
        this.addresses.undo(address, at, false);
        this.changes++;
      },
    };
  }

  save(): SavedThrottle {
    const now = this.now();
    return { users: this.users.save(now), addresses: this.addresses.save(now) };
  }

  restore(saved: SavedThrottle): void {
    const now = this.now();
    this.users.restore(saved.users, now);
    this.addresses.restore(saved.addresses, now);
  }
}
