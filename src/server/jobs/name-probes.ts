import { fail } from '../../core/errors.js';

/**
 * Project names are one namespace per server, so asking for a name that is
 * taken must be refused, and the refusal tells the asker the name is taken
 * even when its project is one they may not see. Nothing more is told (the
 * answer is the same whether or not they may see it), and this budget keeps
 * the question from becoming a way to list other people's projects: each
 * user may run into names of projects hidden from them `free` times per
 * window; past that, every project creation of theirs is refused with
 * TOO_MANY_REQUESTS until the window ends, whatever the name, so the
 * refusal itself says nothing about the name.
 *
 * Kept in memory: a restart gives a fresh budget, which bounds a prober to
 * `free` names per restart and window.
 */
export class NameProbes {
  private readonly users = new Map<string, { count: number; since: number }>();

  constructor(
    private readonly free = 10,
    private readonly windowMs = 60 * 60 * 1000,
    private readonly now: () => number = Date.now,
  ) {}

  /** TOO_MANY_REQUESTS while `user` has used up the budget. */
  check(user: string): void {
    const e = this.current(user);
    if (e && e.count >= this.free) {
      const wait = Math.ceil((e.since + this.windowMs - this.now()) / 1000);
      throw fail('TOO_MANY_REQUESTS', `too many project names were taken already; try again in ${wait} s`, { retryAfterS: wait });
    }
  }

  /** `user` asked for the name of a project hidden from them. */
  hit(user: string): void {
    const e = this.current(user) ?? { count: 0, since: this.now() };
    e.count++;
    this.users.set(user, e);
    // A user removed long ago is not kept forever.
    if (this.users.size > 100_000) this.users.delete(this.users.keys().next().value!);
  }

  private current(user: string): { count: number; since: number } | undefined {
    const e = this.users.get(user);
    if (e && this.now() - e.since >= this.windowMs) {
      this.users.delete(user);
      return undefined;
    }
    return e;
  }
}
