/**
 * A step of the wall clock moves the lease deadlines given before it, and
 * only those (planClockStep): a step forward does not end every lease, a
 * step back does not keep dead ones alive, and replay gives the same model.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planClockStep, planExpiry } from '../../src/core/commands.js';
import { replay, World } from '../helpers/core.js';

const HOUR = 3_600_000;

/** A world with two running jobs on one worker, their leases given at the world's now. */
function running(): { w: World; ids: string[] } {
  const w = new World();
  w.project('p');
  w.worker('w1');
  const ids = [w.one('p'), w.one('p')];
  w.claim('w1');
  return { w, ids };
}

describe('a step of the wall clock', () => {
  it('forward: leases given before it move with it and do not expire', () => {
    const { w, ids } = running();
    const before = ids.map((id) => w.model.leases.get(id)!.deadline);
    w.now += HOUR; // the wall clock jumps an hour
    assert.ok(planExpiry(w.model, w.now), 'without the move, every lease would expire');
    const event = planClockStep(w.model, HOUR, w.now, w.leaseMs, 2000)!;
    assert.deepEqual(event.attempts.map(([id]) => id).sort(), [...ids].sort());
    w.apply(event);
    assert.deepEqual(ids.map((id) => w.model.leases.get(id)!.deadline), before.map((d) => d + HOUR));
    assert.equal(planExpiry(w.model, w.now), null, 'no lease expires');
    assert.deepEqual(replay(w.events).leases.get(ids[0]!)!.deadline, before[0]! + HOUR);
  });

  it('forward: a lease renewed on the new clock stays where it is', () => {
    const { w, ids } = running();
    w.now += HOUR;
    // A heartbeat between the step and its discovery renews one lease on the new clock.
    w.model.leases.renew(ids[0]!, 1, w.now + w.leaseMs);
    const event = planClockStep(w.model, HOUR, w.now + 500, w.leaseMs, 2000)!;
    assert.deepEqual(event.attempts, [[ids[1]!, 1]]);
  });

  it('back: leases given before it move back, and a dead worker’s lease expires a lease after its last word', () => {
    const { w, ids } = running();
    const given = w.model.leases.get(ids[0]!)!.deadline;
    w.now -= HOUR;
    assert.equal(planExpiry(w.model, w.now + w.leaseMs + 1), null, 'without the move, the leases would live another hour');
    const event = planClockStep(w.model, -HOUR, w.now, w.leaseMs, 2000)!;
    assert.equal(event.attempts.length, 2);
    w.apply(event);
    assert.equal(w.model.leases.get(ids[0]!)!.deadline, given - HOUR);
    const expiry = planExpiry(w.model, w.now + w.leaseMs + 1);
    assert.deepEqual(expiry?.attempts.map(([id]) => id).sort(), [...ids].sort());
  });

  it('moves nothing when nothing was given before the step', () => {
    const w = new World();
    w.project('p');
    w.worker('w1');
    assert.equal(planClockStep(w.model, HOUR, w.now, w.leaseMs, 2000), null);
  });
});
