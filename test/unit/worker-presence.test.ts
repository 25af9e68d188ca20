/**
 * The rules of worker-presence.ts on a model: live, stopped and lost; the
 * retention; which earlier entries a new registration replaces; and a
 * stopped worker's record across a snapshot.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Model } from '../../src/core/model.js';
import type { WorkerRegistered } from '../../src/core/events.js';
import { moveWorkerClocks, planWorkerRemovals, replacedBy, workerState } from '../../src/core/worker-presence.js';

const LEASE = 10_000;
const HOUR = 3_600_000;
const T0 = 1_700_000_000_000;

function registered(id: string, at: number, over: Partial<WorkerRegistered> = {}): WorkerRegistered {
  return { t: 'worker-registered', at, id, name: 'node', host: 'h1', resources: { cores: 2, memoryMb: 1000 }, labels: [], tokenId: 't1', ...over };
}

describe('worker presence', () => {
  it('is live while heard from, lost a lease after, stopped once it says so', () => {
    const m = new Model();
    m.apply(registered('w1', T0));
    const w = m.workers.get('w1')!;
    assert.equal(workerState(w, T0 + LEASE, LEASE), 'live');
    assert.equal(workerState(w, T0 + LEASE + 1, LEASE), 'lost');
    // A server that started later gives it a lease from its own start.
    assert.equal(workerState(w, T0 + LEASE + 1, LEASE, T0 + 5000), 'live');
    w.lastSeen = T0 + LEASE;
    assert.equal(workerState(w, T0 + LEASE + 1, LEASE), 'live');
    m.apply({ t: 'worker-stopped', at: T0 + LEASE + 2, id: 'w1' });
    assert.equal(workerState(w, T0 + LEASE + 3, LEASE), 'stopped');
    // Said once: a second word does not move when.
    m.apply({ t: 'worker-stopped', at: T0 + HOUR, id: 'w1' });
    assert.equal(w.stoppedAt, T0 + LEASE + 2);
    // Kept across a snapshot.
    assert.equal(Model.fromSnapshot(structuredClone(m.toSnapshot())).workers.get('w1')!.stoppedAt, T0 + LEASE + 2);
  });

  it('removes gone workers once the retention has passed since they went, and only those', () => {
    const m = new Model();
    m.apply(registered('stopped', T0, { name: 'a' }));
    m.apply(registered('lost', T0, { name: 'b' }));
    m.apply(registered('live', T0, { name: 'c' }));
    m.apply({ t: 'worker-stopped', at: T0 + 1000, id: 'stopped' });
    const at = (now: number) => {
      m.workers.get('live')!.lastSeen = now;
      return planWorkerRemovals(m, now, LEASE, HOUR).map((e) => e.id).sort();
    };
    assert.deepEqual(at(T0 + HOUR - 1), []);
    assert.deepEqual(at(T0 + HOUR + 1000), ['lost', 'stopped']);
    const [e] = planWorkerRemovals(m, T0 + 2 * HOUR, LEASE, HOUR).filter((x) => x.id === 'stopped');
    assert.equal(e!.reason, 'stopped longer than the retention');
  });

  it('a new registration of the same worker replaces its gone entries, not live ones nor other workers', () => {
    const m = new Model();
    m.apply(registered('old', T0));
    m.apply(registered('other-host', T0, { host: 'h2' }));
    m.apply(registered('other-user', T0, { onlyUser: 'bob' }));
    m.apply(registered('other-name', T0, { name: 'node-2' }));
    const now = T0 + LEASE + 1;
    const next = { id: 'new', name: 'node', host: 'h1', registeredAt: now };
    assert.deepEqual(replacedBy(m, next, now, LEASE).map((w) => w.id), ['old']);
    // Still heard from: two processes may really share a name; both stay.
    m.workers.get('old')!.lastSeen = now;
    assert.deepEqual(replacedBy(m, next, now, LEASE), []);

    // Kept live at registration, it is replaced as soon as it goes lost, retention or not.
    m.apply(registered('new', now));
    assert.deepEqual(planWorkerRemovals(m, now + 1, LEASE, HOUR), []);
    m.workers.get('new')!.lastSeen = now + LEASE + 1;
    const removed = planWorkerRemovals(m, now + LEASE + 1, LEASE, HOUR).filter((e) => e.id === 'old');
    assert.deepEqual(removed.map((e) => e.reason), ['started again as new']);
  });

  it('does not take a worker heard from after the new one registered for the one started again', () => {
    const m = new Model();
    m.apply(registered('a', T0));
    m.apply(registered('b', T0 + 1000));
    // `a` spoke after `b` registered: two processes under one name, not a restart.
    m.workers.get('a')!.lastSeen = T0 + 2000;
    const later = T0 + 2000 + LEASE + 1;
    m.workers.get('b')!.lastSeen = later;
    assert.equal(workerState(m.workers.get('a')!, later, LEASE), 'lost');
    assert.deepEqual(planWorkerRemovals(m, later, LEASE, HOUR), []);
    // The retention still ends its entry.
    m.workers.get('b')!.lastSeen = T0 + 2000 + HOUR;
    assert.deepEqual(planWorkerRemovals(m, T0 + 2000 + HOUR, LEASE, HOUR).map((e) => [e.id, e.reason]), [['a', 'lost longer than the retention']]);
  });

  it('moves with a step of the wall clock what was heard before it, not what was heard since', () => {
    const m = new Model();
    m.apply(registered('before', T0));
    m.apply(registered('since', T0));
    const [before, since] = [m.workers.get('before')!, m.workers.get('since')!];
    before.lastSeen = T0;
    // The clock jumps an hour ahead just after T0; the step is found 2 s later, one worker heard in between.
    const now = T0 + HOUR + 2000;
    since.lastSeen = T0 + HOUR + 1000;
    assert.equal(workerState(before, now, LEASE), 'lost', 'without the move a step forward loses every worker');
    assert.equal(planWorkerRemovals(m, now, LEASE, HOUR).length, 1, '... and removes it at a retention of an hour');
    assert.equal(moveWorkerClocks(m.workers.values(), HOUR, now, 4000), 1);
    assert.equal(before.lastSeen, T0 + HOUR);
    assert.equal(since.lastSeen, T0 + HOUR + 1000);
    assert.equal(workerState(before, now, LEASE), 'live');
    assert.deepEqual(planWorkerRemovals(m, now, LEASE, HOUR), []);
    // And back: a worker heard before the step back would look heard from in the future, live for an hour.
    const back = T0 + HOUR + 3000 - HOUR;
    assert.equal(moveWorkerClocks(m.workers.values(), -HOUR, back, 4000), 2);
    assert.equal(before.lastSeen, T0);
    assert.equal(workerState(since, back + LEASE + 2000, LEASE), 'lost');
  });
});
