/**
 * Marking a worker or one attempt lost now (worker-failed, command-failed):
 * the planning functions build the same `attempts-lost` event the lease
 * expiry builds, so the jobs follow the same rules, and replay agrees. The
 * worker may in truth still run them, so each attempt is only stopping: its
 * job waits, queued, until the worker confirms the process gone or the lease
 * lapses.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { planAttemptLost, planFinish, planWorkerLost, renewLeases } from '../../src/core/commands.js';
import { MAX_LOST_ATTEMPTS } from '../../src/core/model.js';
import { World, exited, replay, res, spec, throwsCode } from '../helpers/core.js';

function world(): World {
  const w = new World();
  w.project('alpha');
  w.worker('w1', res(4, 8192));
  w.worker('w2', res(4, 8192));
  return w;
}

describe('planWorkerLost', () => {
  it('loses every attempt the worker holds now and re-queues the jobs, which wait for the worker to confirm before they run again', () => {
    const w = world();
    const ids = w.submit('alpha', [{ spec: spec() }, { spec: spec() }, { spec: spec() }]);
    const mine = w.claimIds('w1', 2);
    const other = w.claimIds('w2', 1);
    assert.equal(mine.length, 2);
    assert.deepEqual(other, ids.filter((id) => !mine.includes(id)));
    const before = w.lease(mine[0]!).deadline;
    assert.ok(before > w.now, 'the leases are still in time');

    const { lost, closed } = planWorkerLost(w.model, 'w1', 'marked lost by admin', w.tick());
    assert.equal(closed, null);
    assert.ok(lost);
    assert.equal(lost.t, 'attempts-lost');
    assert.equal(lost.how, 'worker-lost');
    assert.deepEqual(new Set(lost.attempts.map(([id]) => id)), new Set(mine));
    assert.ok(lost.attempts.every(([, n]) => n === 1));
    w.apply(lost);

    for (const id of mine) {
      const job = w.job(id);
      assert.equal(job.state, 'queued');
      assert.equal(job.reason, 'waiting for attempt 1 to stop on worker w1-name');
      assert.equal(job.lost, 1);
      assert.equal(job.failures, 0, 'a loss does not use a retry');
      const a = job.attempts[0]!;
      assert.equal(a.how, 'worker-lost');
      assert.match(a.reason!, /marked lost by admin/);
      assert.equal(a.endedAt, w.now);
      assert.equal(w.model.attemptLive(id, 1), 'stopping');
    }
    assert.equal(w.state(other[0]!), 'running', "the other worker's job is untouched");
    assert.deepEqual(w.model.usedBy('w1'), res(2, 200), 'the stopping attempts still take their room');
    assert.deepEqual(w.claim('w2', 10), [], 'a job whose attempt may still run is not handed out');
    assert.deepEqual(replay(w.events).toSnapshot(), w.model.toSnapshot());
    // The worker names them while they stop, and then no more.
    const beat = w.heartbeat('w1', mine.map((id) => [id, 1]));
    assert.deepEqual(new Set(beat.abandon.map((a) => a.jobId)), new Set(mine));
    assert.deepEqual(beat.stopped, []);
    assert.deepEqual(new Set(w.heartbeat('w1').stopped.map(([id]) => id)), new Set(mine));
    for (const id of mine) assert.match(w.job(id).reason, /^attempt 1 stopped; ready to run$/);
    assert.deepEqual(w.model.usedBy('w1'), res(0, 0));
    assert.ok(w.model.workers.has('w1'), 'the worker stays registered');
    assert.deepEqual(new Set(w.claimIds('w2', 10)), new Set(mine));
    assert.deepEqual(replay(w.events).toSnapshot(), w.model.toSnapshot());
  });

  it('leaves the worker with stale attempts: its heartbeat is told to abandon them and its result is refused', () => {
    const w = world();
    const [id] = w.submit('alpha', [spec()]);
    w.claimIds('w1');
    const { lost } = planWorkerLost(w.model, 'w1', 'marked lost', w.tick());
    w.apply(lost!);
    const beat = renewLeases(w.model, 'w1', [{ jobId: id!, attempt: 1 }], w.now + 30_000, w.now);
    assert.equal(beat.renewed, 0);
    assert.deepEqual(beat.abandon.map((a) => a.jobId), [id]);
    assert.deepEqual(beat.stopping, [[id, 1]], 'its lease is renewed all the same: the process still runs');
    throwsCode(() => planFinish(w.model, 'w1', id!, 1, exited(0), w.tick()), 'STALE_ATTEMPT');
    assert.deepEqual(w.claim('w2'), []);
    // Its process gone, the worker names it no more; the next attempt runs normally.
    assert.deepEqual(w.heartbeat('w1').stopped, [[id, 1]]);
    const again = w.claim('w2');
    assert.deepEqual(again, [[id, 2]]);
    w.finish(id!, 0);
    assert.equal(w.state(id!), 'done');
  });

  it('fails a job lost too often, as lease expiry does, and cancels its dependants', () => {
    const w = world();
    const [a, b] = w.submit('alpha', [{ key: 'a', spec: spec() }, { spec: spec({ after: ['a'] }) }]);
    for (let i = 0; i <= MAX_LOST_ATTEMPTS; i++) {
      assert.deepEqual(w.claimIds('w1'), [a]);
      w.apply(planWorkerLost(w.model, 'w1', 'marked lost', w.tick()).lost!);
      // The lease lapses: the worker never confirmed.
      assert.deepEqual(w.expireAll(), [[a, i + 1]]);
    }
    assert.equal(w.state(a!), 'failed');
    assert.match(w.job(a!).reason, /lost 6 times/);
    assert.equal(w.state(b!), 'cancelled');
  });

  it('is a no-op for a registered worker without attempts, and refuses an unknown one', () => {
    const w = world();
    assert.deepEqual(planWorkerLost(w.model, 'w2', 'x', w.now), { lost: null, closed: null });
    throwsCode(() => planWorkerLost(w.model, 'nobody', 'x', w.now), 'WORKER_NOT_FOUND');
  });

  it("takes back the attempts of a peer's worker that holds leases here without being registered", () => {
    const w = world();
    const [id] = w.submit('alpha', [spec()]);
    w.apply({ t: 'jobs-claimed', at: w.tick(), workerId: 'far-worker', workerName: 'far', via: 'peer-1', deadline: w.now + 30_000, claims: [[id!, 1]] });
    const { lost } = planWorkerLost(w.model, 'far-worker', 'marked lost', w.tick());
    assert.deepEqual(lost!.attempts, [[id, 1]]);
    w.apply(lost!);
    assert.equal(w.state(id!), 'queued');
    assert.equal(w.job(id!).reason, 'waiting for attempt 1 to stop on worker far via peer-1');
  });

  it("closes the peers' jobs the worker runs for them, but not those whose result waits to go home", () => {
    const w = world();
    w.apply({
      t: 'foreign-claimed',
      at: w.tick(),
      home: 'peer-1',
      workerId: 'w1',
      deadline: w.now + 30_000,
      claims: [
        { jobId: 'f-1', attempt: 1, resources: res(1, 100) },
        { jobId: 'f-2', attempt: 3, resources: res(1, 100) },
      ],
    });
    w.apply({ t: 'foreign-finished', at: w.tick(), jobId: 'f-2', attempt: 3, result: { exitCode: 0 } });
    assert.deepEqual(w.model.usedBy('w1'), res(1, 100));
    const { lost, closed } = planWorkerLost(w.model, 'w1', 'marked lost', w.tick());
    assert.equal(lost, null);
    assert.deepEqual(closed!.attempts, [['f-1', 1]]);
    w.apply(closed!);
    assert.equal(w.model.foreign.has('f-1'), false);
    assert.equal(w.model.foreign.has('f-2'), true);
    assert.deepEqual(w.model.usedBy('w1'), res(0, 0));
  });
});

describe('planAttemptLost', () => {
  it('loses the running attempt of one job and re-queues it; the next claim is attempt 2', () => {
    const w = world();
    const [a, b] = w.submit('alpha', [spec(), spec()]);
    w.claimIds('w1');
    const e = planAttemptLost(w.model, a!, 'marked lost by alice', w.tick());
    assert.deepEqual(e, { t: 'attempts-lost', at: w.now, how: 'worker-lost', reason: 'marked lost by alice', attempts: [[a, 1]] });
    w.apply(e);
    assert.equal(w.state(a!), 'queued');
    assert.equal(w.state(b!), 'running', 'the other job on the same worker runs on');
    assert.deepEqual(w.claim('w2', 1), [], 'not while attempt 1 may run');
    w.heartbeat('w1', [[a!, 1], [b!, 1]]);
    assert.deepEqual(w.heartbeat('w1', [[b!, 1]]).stopped, [[a, 1]]);
    assert.deepEqual(w.claim('w2', 1), [[a, 2]]);
    assert.deepEqual(replay(w.events).toSnapshot(), w.model.toSnapshot());
  });

  it('refuses a job that is not running, and an unknown job', () => {
    const w = world();
    const [queued, done] = w.submit('alpha', [spec({ priority: -1 }), spec({ priority: 5 })]);
    w.claimIds('w1', 1);
    w.finish(done!, 0);
    for (const id of [queued!, done!]) {
      const err = throwsCode(() => planAttemptLost(w.model, id, 'x', w.now), 'INVALID_STATE');
      assert.match(err.message, /not running/);
    }
    throwsCode(() => planAttemptLost(w.model, 'no-such-job', 'x', w.now), 'JOB_NOT_FOUND');
  });
});
