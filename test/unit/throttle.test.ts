import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CpcError } from '../../src/core/errors.js';
import { LoginThrottle } from '../../src/server/accounts/throttle.js';

function waitOf(fn: () => unknown): number | null {
  try {
    fn();
    return null;
  } catch (err) {
    assert.ok(err instanceof CpcError && err.code === 'TOO_MANY_REQUESTS');
    return err.details!.retryAfterS as number;
  }
}

describe('login throttle', () => {
  const make = (now: { t: number }) => new LoginThrottle({ perUser: 3, perAddress: 5, maxDelayMs: 8000, now: () => now.t });

  it('lets the free failures through, then doubles the wait up to the ceiling', () => {
    const now = { t: 0 };
    const th = make(now);
    for (let i = 0; i < 2; i++) th.begin('u', `a${i}`);
    th.begin('u', 'a2'); // the third failure starts the wait
    assert.equal(waitOf(() => th.begin('u', 'a3')), 1);
    const waits: number[] = [];
    let wait = 1;
    for (let i = 0; i < 5; i++) {
      now.t += wait * 1000; // just past the wait: allowed, and counted as one more failure
      assert.equal(waitOf(() => th.begin('u', `b${i}`)), null);
      wait = waitOf(() => th.begin('u', `c${i}`))!;
      waits.push(wait);
    }
    assert.deepEqual(waits, [2, 4, 8, 8, 8]);
  });

  it('carries its state through save and restore, and forgets there what it would have forgotten', () => {
    const now = { t: 0 };
    const th = make(now);
    for (let i = 0; i < 3; i++) th.begin('u', `a${i}`);
    const saved = JSON.parse(JSON.stringify(th.save()));
    // Restored a moment later: still waiting, with the same failures counted.
    now.t = 500;
    const again = make(now);
    again.restore(saved);
    assert.equal(waitOf(() => again.begin('u', 'b')), 1);
    now.t = 1000;
    assert.equal(waitOf(() => again.begin('u', 'c')), null);
    assert.equal(waitOf(() => again.begin('u', 'd')), 2, 'the fifth failure doubles the wait, as without the restart');
    // Restored long after: nothing left to hold against the name.
    now.t = 100_000;
    const late = make(now);
    late.restore(saved);
    assert.deepEqual(late.save(), { users: [], addresses: [] });
  });

  it('takes a failure back on success and forgets the name', () => {
    const now = { t: 0 };
    const th = make(now);
    th.begin('u', 'a');
    th.begin('u', 'a');
    th.begin('u', 'a').succeeded();
    for (let i = 0; i < 2; i++) th.begin('u', 'a');
    assert.equal(waitOf(() => th.begin('u', 'a')), null, 'the name starts again from zero');
  });

  it('counts an address across names', () => {
    const now = { t: 0 };
    const th = make(now);
    for (let i = 0; i < 5; i++) th.begin(`n${i}`, 'addr');
    assert.equal(waitOf(() => th.begin('other', 'addr')), 1);
    assert.equal(waitOf(() => th.begin('other', 'elsewhere')), null);
  });

  it('forgets a key left alone for twice the ceiling', () => {
    const now = { t: 0 };
    const th = make(now);
    for (let i = 0; i < 3; i++) th.begin('u', `a${i}`);
    now.t += 16_001;
    th.begin('u', 'z');
    assert.equal(waitOf(() => th.begin('u', 'z2')), null);
  });
});
