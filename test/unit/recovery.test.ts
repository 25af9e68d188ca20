import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { planExpiry, planFinish } from '../../src/core/commands.js';
import { Model } from '../../src/core/model.js';
import { planLeaseRecovery } from '../../src/core/recovery.js';
import { World, exited, replay, res, spec } from '../helpers/core.js';

/**
 * Three running jobs whose leases end before the last recorded event, between
 * it and the restart, and after the restart.
 */
function stoppedServer() {
  const w = new World();
  w.leaseMs = 10_000;
  w.project('alpha');
  w.worker('w1', res(1, 1000));
  w.worker('w2', res(1, 1000));
  w.worker('w3', res(1, 1000));
  const [early, middle, late] = w.submit('alpha', [spec(), spec(), spec()]);
  w.claim('w1'); // early
  w.tick(4_000);
  w.claim('w2'); // middle
  w.tick(4_000);
  w.claim('w3'); // late
  // The server recorded one more event after early's deadline, then stopped.
  w.now = w.lease(early!).deadline + 500;
  w.apply({ t: 'members-changed', at: w.now, project: 'alpha', members: ['bob'] });
  const lastEventAt = w.now;
  const now = w.lease(middle!).deadline + 1_000; // restart: middle's deadline fell while down
  assert.ok(w.lease(late!).deadline > now);
  return { w, early: early!, middle: middle!, late: late!, lastEventAt, now };
}

describe('planLeaseRecovery', () => {
  it('loses leases that ended before the last event (held back, stopping, for one more period), extends those that ended while down, leaves the rest', () => {
    const { w, early, middle, late, lastEventAt, now } = stoppedServer();
    const model = replay(w.events);
    assert.equal(model.lastEventAt, lastEventAt);
    const lateDeadline = model.leases.get(late)!.deadline;
    const events = planLeaseRecovery(model, now, 10_000);
    assert.deepEqual(events, [
      { t: 'attempts-lost', at: now, how: 'lease-expired', reason: 'lease had expired before the server stopped', attempts: [[early, 1]], stopping: true },
      { t: 'leases-extended', at: now, deadline: now + 10_000, attempts: [[early, 1], [middle, 1]] },
    ]);
    const r = new World(model);
    r.now = now;
    for (const e of events) r.apply(e);
    assert.equal(r.state(early), 'queued');
    assert.equal(r.job(early).lost, 1);
    assert.equal(r.job(early).attempts[0]!.how, 'lease-expired');
    // Its worker may have been given a later deadline than the journal says: held until it confirms, or a period.
    assert.equal(r.model.attemptLive(early, 1), 'stopping');
    assert.equal(r.lease(early).deadline, now + 10_000);
    assert.equal(r.model.ready.has(early), false);
    assert.equal(r.state(middle), 'running');
    assert.equal(r.lease(middle).deadline, now + 10_000);
    assert.equal(r.lease(late).deadline, lateDeadline);
    assert.deepEqual(model.freeOf('w1'), res(0, 1000 - 100));
    assert.deepEqual(model.freeOf('w2'), res(0, 1000 - 100));
    // The extended attempt's worker can still report; the lost one cannot.
    assert.notEqual(planFinish(model, 'w2', middle, 1, exited(0), now + 1), 'duplicate');
    assert.throws(() => planFinish(model, 'w1', early, 1, exited(0), now + 1), { code: 'STALE_ATTEMPT' });
    // The worker, silent, never confirms: when that period is over, the job goes out.
    r.now = now + 10_000;
    r.apply(planExpiry(r.model, r.now)!);
    assert.equal(r.model.ready.has(early), true);
    assert.deepEqual(model.freeOf('w1'), res(1, 1000));
  });

  it('works the same on a model restored from a snapshot', () => {
    const { w, now } = stoppedServer();
    const restored = Model.fromSnapshot(JSON.parse(JSON.stringify(w.model.toSnapshot())));
    assert.deepEqual(planLeaseRecovery(restored, now, 10_000), planLeaseRecovery(replay(w.events), now, 10_000));
  });

  it('treats a deadline equal to the last event as lost, and one equal to now as extended', () => {
    const w = new World();
    w.project('alpha');
    w.worker('w1', res(2, 1000));
    const [a, b] = w.submit('alpha', [spec(), spec()]);
    w.claim('w1', 1);
    w.tick(5_000);
    w.claim('w1', 1);
    const da = w.lease(a!).deadline;
    const db = w.lease(b!).deadline;
    w.now = da;
    w.apply({ t: 'members-changed', at: da, project: 'alpha', members: [] });
    const events = planLeaseRecovery(w.model, db, 1_000);
    assert.deepEqual(
      events.map((e) => [e.t, e.attempts]),
      [
        ['attempts-lost', [[a, 1]]],
        ['leases-extended', [[a, 1], [b, 1]]],
      ],
    );
  });

  it('plans nothing when every lease is still in time, or when there are none', () => {
    const w = new World();
    w.project('alpha');
    w.worker('w1');
    assert.deepEqual(planLeaseRecovery(w.model, w.now + 1_000_000, 1_000), []);
    w.submit('alpha', [spec()]);
    w.claim('w1');
    assert.deepEqual(planLeaseRecovery(w.model, w.now + 1, 1_000), []);
  });

  it('closes foreign attempts whose deadline passed before the stop, extends those that fell while down, skips those with a result', () => {
    const w = new World();
    w.leaseMs = 10_000;
    w.worker('w1', res(8, 8000));
    const t0 = w.now;
    const claim = (jobId: string, deadline: number) =>
      w.apply({ t: 'foreign-claimed', at: w.now, home: 'peer-3', workerId: 'w1', deadline, claims: [{ jobId, attempt: 1, resources: res(1, 100) }] });
    claim('gone', t0 + 1_000);
    claim('held', t0 + 1_000);
    claim('down', t0 + 5_000);
    claim('fine', t0 + 50_000);
    w.now = t0 + 2_000;
    w.apply({ t: 'foreign-finished', at: w.now, jobId: 'held', attempt: 1, result: { exitCode: 0 } });
    const now = t0 + 20_000;
    const events = planLeaseRecovery(w.model, now, 10_000);
    assert.deepEqual(events, [
      { t: 'foreign-closed', at: now, attempts: [['gone', 1]], reason: 'worker went silent before the server stopped' },
      { t: 'leases-extended', at: now, deadline: now + 10_000, attempts: [['down', 1]] },
    ]);
    w.now = now;
    for (const e of events) w.apply(e);
    assert.equal(w.model.foreign.has('gone'), false);
    assert.equal(w.model.foreign.get('down')!.deadline, now + 10_000);
    assert.equal(w.model.foreign.get('fine')!.deadline, t0 + 50_000);
    assert.ok(w.model.foreign.get('held')!.result);
    assert.deepEqual(w.model.freeOf('w1'), res(6, 7800));
  });

  it('an extension never shortens a lease', () => {
    const w = new World();
    w.project('alpha');
    w.worker('w1');
    const a = w.one('alpha');
    w.claim('w1');
    const d = w.lease(a).deadline;
    w.apply({ t: 'leases-extended', at: w.tick(), deadline: d - 5_000, attempts: [[a, 1]] });
    assert.equal(w.lease(a).deadline, d);
    w.apply({ t: 'leases-extended', at: w.tick(), deadline: d + 5_000, attempts: [[a, 1], [a, 9], ['job-ghost', 1]] });
    assert.equal(w.lease(a).deadline, d + 5_000);
  });
});
