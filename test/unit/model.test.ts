import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { archivable, planClaim, planFinish, planRetry } from '../../src/core/commands.js';
import { MAX_LOST_ATTEMPTS, Model } from '../../src/core/model.js';
import { emptyCounts } from '../../src/core/types.js';
import { World, exited, replay, res, spec, throwsCode } from '../helpers/core.js';

function world(): World {
  const w = new World();
  w.project('alpha');
  w.worker('w1', res(4, 8192));
  return w;
}

describe('job states', () => {
  it('a job without dependencies is queued at submission, one with unfinished dependencies waits', () => {
    const w = world();
    const a = w.one('alpha');
    const b = w.one('alpha', { after: [a] });
    assert.equal(w.state(a), 'queued');
    assert.equal(w.job(a).reason, 'ready to run');
    assert.equal(w.state(b), 'waiting');
    assert.equal(w.job(b).reason, 'waiting for 1 dependency');
    assert.deepEqual(w.model.countsOf('alpha'), { ...emptyCounts(), queued: 1, waiting: 1 });
  });

  it('a claim runs the job as attempt 1 under a lease on the claiming worker', () => {
    const w = world();
    const a = w.one('alpha', { resources: res(2, 1000) });
    const claims = w.claim('w1');
    assert.deepEqual(claims, [[a, 1]]);
    const job = w.job(a);
    assert.equal(job.state, 'running');
    assert.match(job.reason, /w1-name/);
    assert.equal(job.attempts.length, 1);
    assert.equal(job.attempts[0]!.n, 1);
    assert.equal(job.attempts[0]!.workerId, 'w1');
    assert.equal(job.attempts[0]!.workerName, 'w1-name');
    assert.equal(job.attempts[0]!.startedAt, w.now);
    assert.deepEqual(w.lease(a), { jobId: a, attempt: 1, workerId: 'w1', via: 'local', deadline: w.now + w.leaseMs });
    assert.deepEqual(w.model.freeOf('w1'), res(2, 7192));
  });

  it('exit code 0 makes the job done with its result, and gives the worker its room back', () => {
    const w = world();
    const a = w.one('alpha', { resources: res(3, 3000) });
    w.claim('w1');
    w.finish(a, exited(0, { stdoutTail: 'hello\n', stdoutBytes: 6, durationMs: 42 }));
    const job = w.job(a);
    assert.equal(job.state, 'done');
    assert.equal(job.reason, 'exit code 0 on w1-name');
    assert.equal(job.failures, 0);
    assert.deepEqual(job.result, {
      attempt: 1,
      exitCode: 0,
      signal: null,
      durationMs: 42,
      stdoutTail: 'hello\n',
      stderrTail: '',
      stdoutBytes: 6,
      stderrBytes: 0,
    });
    assert.equal(job.attempts[0]!.how, 'exited');
    assert.equal(job.attempts[0]!.endedAt, w.now);
    assert.equal(w.model.leases.get(a), undefined);
    assert.deepEqual(w.model.freeOf('w1'), res(4, 8192));
  });

  it('a non-zero exit with retries left re-queues the job, and the next claim is attempt 2', () => {
    const w = world();
    const a = w.one('alpha', { maxRetries: 2 });
    w.claim('w1');
    w.finish(a, 3);
    let job = w.job(a);
    assert.equal(job.state, 'queued');
    assert.equal(job.reason, 'exit code 3; retry 1 of 2');
    assert.equal(job.failures, 1);
    assert.equal(job.attempts[0]!.reason, 'exit code 3');
    assert.deepEqual(w.claim('w1'), [[a, 2]]);
    w.finish(a, exited(1, { how: 'exited', signal: 'SIGKILL', exitCode: null }));
    job = w.job(a);
    assert.equal(job.state, 'queued');
    assert.equal(job.reason, 'killed by SIGKILL; retry 2 of 2');
    assert.deepEqual(w.claim('w1'), [[a, 3]]);
    w.finish(a, 1);
    job = w.job(a);
    assert.equal(job.state, 'failed');
    assert.equal(job.reason, 'exit code 1');
    assert.equal(job.failures, 3);
    assert.deepEqual(job.attempts.map((x) => x.n), [1, 2, 3]);
    assert.equal(job.result?.attempt, 3);
  });

  it('a non-zero exit without retries fails the job at once', () => {
    const w = world();
    const a = w.one('alpha');
    w.claim('w1');
    w.finish(a, 2);
    assert.equal(w.state(a), 'failed');
    assert.equal(w.job(a).reason, 'exit code 2');
  });

  it('a timeout and a failed start count as failures against the retry budget', () => {
    const w = world();
    const a = w.one('alpha', { maxRetries: 1, timeoutS: 5 });
    w.claim('w1');
    w.finish(a, exited(0, { how: 'timeout', exitCode: null, signal: 'SIGTERM' }));
    assert.equal(w.state(a), 'queued');
    assert.equal(w.job(a).reason, 'timed out after 5s; retry 1 of 1');
    assert.equal(w.job(a).attempts[0]!.how, 'timeout');
    w.claim('w1');
    w.finish(a, exited(0, { how: 'start-failed', exitCode: null }));
    assert.equal(w.state(a), 'failed');
    assert.equal(w.job(a).reason, 'could not start');
    assert.equal(w.job(a).failures, 2);
  });

  it('an expired lease re-queues the job and counts it as lost, not as a failure', () => {
    const w = world();
    const a = w.one('alpha');
    w.claim('w1');
    assert.deepEqual(w.expireAll(), [[a, 1]]);
    const job = w.job(a);
    assert.equal(job.state, 'queued');
    assert.equal(job.reason, 're-queued: no heartbeat before the lease deadline');
    assert.equal(job.lost, 1);
    assert.equal(job.failures, 0);
    assert.equal(job.attempts[0]!.how, 'lease-expired');
    assert.equal(job.attempts[0]!.exitCode, null);
    assert.deepEqual(w.model.freeOf('w1'), res(4, 8192));
    assert.deepEqual(w.claim('w1'), [[a, 2]]);
  });

  it(`a job lost ${MAX_LOST_ATTEMPTS + 1} times fails, and one lost ${MAX_LOST_ATTEMPTS} times is still queued`, () => {
    const w = world();
    const a = w.one('alpha', { maxRetries: 10 });
    for (let i = 1; i <= MAX_LOST_ATTEMPTS; i++) {
      assert.deepEqual(w.claim('w1'), [[a, i]]);
      w.expireAll();
      assert.equal(w.state(a), 'queued');
      assert.equal(w.job(a).lost, i);
    }
    w.claim('w1');
    w.expireAll();
    const job = w.job(a);
    assert.equal(job.state, 'failed');
    assert.equal(job.reason, `lost ${MAX_LOST_ATTEMPTS + 1} times, last: no heartbeat before the lease deadline`);
    assert.equal(job.attempts.length, MAX_LOST_ATTEMPTS + 1);
  });

  it('a lost-attempts event for an attempt that is no longer current changes nothing', () => {
    const w = world();
    const a = w.one('alpha', { maxRetries: 1 });
    w.claim('w1');
    w.finish(a, 1);
    w.claim('w1');
    const before = structuredClone(w.job(a));
    w.apply({ t: 'attempts-lost', at: w.tick(), how: 'lease-expired', reason: 'late', attempts: [[a, 1], ['job-nope', 1]] });
    assert.deepEqual(w.job(a), before);
  });

  it('removing a worker re-queues its running jobs as worker-lost and forgets its room', () => {
    const w = world();
    w.worker('w2', res(8, 8192));
    const [a, b] = w.submit('alpha', [spec(), spec()]);
    w.claim('w1', 1);
    w.claim('w2', 1);
    w.apply({ t: 'worker-removed', at: w.tick(), id: 'w1', reason: 'worker w1 stopped heartbeating' });
    assert.equal(w.state(a!), 'queued');
    assert.equal(w.job(a!).reason, 're-queued: worker w1 stopped heartbeating');
    assert.equal(w.job(a!).attempts[0]!.how, 'worker-lost');
    assert.equal(w.job(a!).lost, 1);
    assert.equal(w.state(b!), 'running');
    assert.equal(w.model.workers.has('w1'), false);
    throwsCode(() => w.model.freeOf('w1'), 'WORKER_NOT_FOUND');
  });
});

describe('cancelling', () => {
  it('a cancelled queued job leaves the ready queue', () => {
    const w = world();
    const a = w.one('alpha');
    w.cancel([a]);
    assert.equal(w.state(a), 'cancelled');
    assert.equal(w.job(a).reason, 'cancelled by alice');
    assert.equal(w.model.ready.has(a), false);
    assert.deepEqual(w.claim('w1'), []);
  });

  it('a cancelled waiting job stays cancelled when its dependency finishes', () => {
    const w = world();
    const a = w.one('alpha');
    const b = w.one('alpha', { after: [a] });
    w.cancel([b]);
    assert.equal(w.state(b), 'cancelled');
    w.claim('w1');
    w.finish(a);
    assert.equal(w.state(b), 'cancelled');
    assert.deepEqual(w.claim('w1'), []);
  });

  it('cancelling a running job ends its attempt as cancelled; the lease stays, stopping, until the worker confirms, then frees the worker', () => {
    const w = world();
    const a = w.one('alpha', { resources: res(3, 5000) });
    w.claim('w1');
    assert.deepEqual(w.model.freeOf('w1'), res(1, 3192));
    w.cancel([a], 'cancelled by bob');
    const job = w.job(a);
    assert.equal(job.state, 'cancelled');
    assert.equal(job.attempts[0]!.how, 'cancelled');
    assert.equal(job.attempts[0]!.reason, 'cancelled by bob');
    assert.equal(job.attempts[0]!.endedAt, w.now);
    assert.deepEqual(w.model.leases.get(a)?.stopping, { resources: res(3, 5000) });
    assert.equal(w.model.attemptLive(a, 1), 'stopping');
    assert.deepEqual(w.model.freeOf('w1'), res(1, 3192), 'the process may still run: its room stays taken');
    // The worker names it while it stops, then no more: its process is gone.
    assert.deepEqual(w.heartbeat('w1', [[a, 1]]).abandon, [{ jobId: a, attempt: 1, reason: 'job was cancelled' }]);
    assert.deepEqual(w.heartbeat('w1').stopped, [[a, 1]]);
    assert.equal(w.model.leases.get(a), undefined);
    assert.equal(w.model.attemptLive(a, 1), 'ended');
    assert.deepEqual(w.model.freeOf('w1'), res(4, 8192));
    assert.equal(w.model.leases.countOfWorker('w1'), 0);
    assert.equal(w.state(a), 'cancelled');
  });

  it('a cancel event naming a finished job leaves it as it was', () => {
    const w = world();
    const a = w.one('alpha');
    w.claim('w1');
    w.finish(a);
    w.apply({ t: 'jobs-cancelled', at: w.tick(), ids: [a, 'job-unknown'], reason: 'too late' });
    assert.equal(w.state(a), 'done');
  });
});

describe('retrying', () => {
  it('a failed job retried is queued with a fresh budget, and its next attempt is numbered on', () => {
    const w = world();
    const a = w.one('alpha', { maxRetries: 1 });
    w.claim('w1');
    w.finish(a, 1);
    w.claim('w1');
    w.finish(a, 1);
    assert.equal(w.state(a), 'failed');
    w.retry([a]);
    assert.equal(w.state(a), 'queued');
    assert.equal(w.job(a).failures, 0);
    assert.deepEqual(w.claim('w1'), [[a, 3]]);
    w.finish(a, 1);
    assert.equal(w.state(a), 'queued', 'the retry budget was renewed');
    assert.equal(w.job(a).reason, 'exit code 1; retry 1 of 1');
  });

  it('a job failed by losses retried gets its lost count reset', () => {
    const w = world();
    const a = w.one('alpha');
    for (let i = 0; i <= MAX_LOST_ATTEMPTS; i++) {
      w.claim('w1');
      w.expireAll();
    }
    assert.equal(w.state(a), 'failed');
    w.retry([a]);
    assert.equal(w.job(a).lost, 0);
    w.claim('w1');
    w.expireAll();
    assert.equal(w.state(a), 'queued');
  });

  it('a cancelled job retried is queued again, or waits when its dependency is unfinished', () => {
    const w = world();
    const a = w.one('alpha');
    const b = w.one('alpha', { after: [a] });
    const c = w.one('alpha');
    w.cancel([b, c]);
    w.retry([b, c]);
    assert.equal(w.state(b), 'waiting');
    assert.equal(w.state(c), 'queued');
    w.claim('w1', 1);
    w.finish(a);
    assert.equal(w.state(b), 'queued');
  });

  it('retrying a failed dependency revives the dependants it cancelled, transitively, and they then run', () => {
    const w = world();
    const a = w.one('alpha');
    const b = w.one('alpha', { after: [a] });
    const c = w.one('alpha', { after: [b] });
    const d = w.one('alpha'); // unrelated, cancelled by hand
    w.cancel([d]);
    w.claim('w1', 1);
    w.finish(a, 1);
    assert.deepEqual([w.state(a), w.state(b), w.state(c)], ['failed', 'cancelled', 'cancelled']);
    w.retry([a]);
    assert.deepEqual([w.state(a), w.state(b), w.state(c), w.state(d)], ['queued', 'waiting', 'waiting', 'cancelled']);
    assert.deepEqual(w.claimIds('w1'), [a]);
    w.finish(a);
    assert.deepEqual(w.claimIds('w1'), [b]);
    w.finish(b);
    assert.deepEqual(w.claimIds('w1'), [c]);
    w.finish(c);
    assert.equal(w.state(c), 'done');
  });

  it('a revived dependant whose other dependency still failed is cancelled again, naming that one', () => {
    const w = world();
    const [a, x] = w.submit('alpha', [spec(), spec()]);
    const b = w.one('alpha', { after: [a!, x!] });
    w.claim('w1');
    w.finish(a!, 1);
    assert.equal(w.job(b).reason, `dependency ${a} failed`);
    w.finish(x!, 1);
    w.retry([a!]);
    assert.equal(w.state(b), 'cancelled');
    assert.equal(w.job(b).reason, `dependency ${x} failed`);
    w.retry([x!]);
    assert.equal(w.state(b), 'waiting');
    assert.equal(w.job(b).reason, 'waiting for 2 dependencies');
  });

  it('retrying a dependant together with its dependency, in either order, leaves it waiting', () => {
    for (const order of ['dependency first', 'dependant first'] as const) {
      const w = world();
      const a = w.one('alpha');
      const b = w.one('alpha', { after: [a] });
      w.claim('w1');
      w.finish(a, 1);
      w.retry(order === 'dependency first' ? [a, b] : [b, a]);
      assert.equal(w.state(a), 'queued', order);
      assert.equal(w.state(b), 'waiting', order);
    }
  });
});

describe('dependencies', () => {
  it('a chain runs in order: each job is queued only once the one before is done', () => {
    const w = world();
    const a = w.one('alpha');
    const b = w.one('alpha', { after: [a] });
    const c = w.one('alpha', { after: [b] });
    assert.deepEqual(w.claimIds('w1'), [a]);
    assert.deepEqual(w.claimIds('w1'), []);
    w.finish(a);
    assert.equal(w.state(b), 'queued');
    assert.equal(w.job(b).reason, 'dependencies done');
    assert.equal(w.state(c), 'waiting');
    assert.deepEqual(w.claimIds('w1'), [b]);
    w.finish(b);
    assert.equal(w.state(c), 'queued');
    assert.deepEqual(w.claimIds('w1'), [c]);
  });

  it('a job with several dependencies is queued after the last of them is done', () => {
    const w = world();
    const [a, b, c] = w.submit('alpha', [spec(), spec(), spec()]);
    const d = w.one('alpha', { after: [a!, b!, c!] });
    assert.equal(w.job(d).reason, 'waiting for 3 dependencies');
    w.claim('w1');
    w.finish(b!);
    assert.equal(w.job(d).reason, 'waiting for 2 dependencies');
    w.finish(a!);
    assert.equal(w.state(d), 'waiting');
    assert.equal(w.job(d).reason, 'waiting for 1 dependency');
    w.finish(c!);
    assert.equal(w.state(d), 'queued');
  });

  it('a failed dependency cancels its dependants transitively, each naming the job it depended on', () => {
    const w = world();
    const a = w.one('alpha');
    const b = w.one('alpha', { after: [a] });
    const c = w.one('alpha', { after: [b] });
    const d = w.one('alpha', { after: [a, c] });
    const other = w.one('alpha');
    w.claim('w1', 1);
    w.finish(a, 1);
    assert.equal(w.state(b), 'cancelled');
    assert.equal(w.job(b).reason, `dependency ${a} failed`);
    assert.equal(w.state(c), 'cancelled');
    assert.equal(w.job(c).reason, `dependency ${b} cancelled`);
    assert.equal(w.state(d), 'cancelled');
    assert.match(w.job(d).reason, new RegExp(`^dependency (${a} failed|${c} cancelled)$`));
    assert.equal(w.state(other), 'queued');
  });

  it('cancelling a job cancels what waits on it', () => {
    const w = world();
    const a = w.one('alpha');
    const b = w.one('alpha', { after: [a] });
    w.claim('w1');
    w.cancel([a]);
    assert.equal(w.state(b), 'cancelled');
    assert.equal(w.job(b).reason, `dependency ${a} cancelled`);
  });

  it('a job submitted after a done dependency is queued, after a failed one is cancelled', () => {
    const w = world();
    const [ok, bad] = w.submit('alpha', [spec(), spec()]);
    w.claim('w1');
    w.finish(ok!);
    w.finish(bad!, 1);
    const x = w.one('alpha', { after: [ok!] });
    const y = w.one('alpha', { after: [ok!, bad!] });
    assert.equal(w.state(x), 'queued');
    assert.equal(w.state(y), 'cancelled');
    assert.equal(w.job(y).reason, `dependency ${bad} failed`);
  });

  it('a dependency that was archived as done counts as done', () => {
    const w = world();
    const a = w.one('alpha');
    w.claim('w1');
    w.finish(a);
    w.archive([a]);
    const b = w.one('alpha', { after: [a] });
    assert.equal(w.state(b), 'queued');
  });

  it('a batch that depends on a running job inside and outside the batch waits for both', () => {
    const w = world();
    const a = w.one('alpha');
    w.claim('w1');
    const [y, x] = w.submit('alpha', [
      { key: 'y', spec: spec({ after: ['x', a] }) },
      { key: 'x', spec: spec() },
    ]);
    assert.equal(w.state(y!), 'waiting');
    assert.deepEqual(w.job(y!).spec.after, [x, a]);
    w.finish(a);
    assert.equal(w.state(y!), 'waiting');
    w.claim('w1');
    w.finish(x!);
    assert.equal(w.state(y!), 'queued');
  });
});

describe('claims returned', () => {
  it('a claim the worker never heard of goes back to the queue as if never made', () => {
    const w = world();
    const [a, b] = w.submit('alpha', [spec({ resources: res(2, 1000) }), spec()]);
    const claims = w.claim('w1');
    assert.deepEqual(claims, [
      [a, 1],
      [b, 1],
    ]);
    w.apply({ t: 'claims-returned', at: w.tick(), workerId: 'w1', claims });
    for (const id of [a!, b!]) {
      assert.equal(w.state(id), 'queued');
      assert.equal(w.job(id).reason, 'claim not delivered; back in the queue');
      assert.deepEqual(w.job(id).attempts, []);
      assert.equal(w.job(id).lost, 0);
    }
    assert.deepEqual(w.model.freeOf('w1'), res(4, 8192));
    const c = w.one('alpha');
    assert.deepEqual(w.claim('w1'), [
      [a, 1],
      [b, 1],
      [c, 1],
    ]);
  });

  it('a returned claim that is no longer current changes nothing', () => {
    const w = world();
    w.worker('w2');
    const a = w.one('alpha');
    w.claim('w1');
    w.expireAll();
    w.claim('w2');
    const before = structuredClone(w.job(a));
    w.apply({ t: 'claims-returned', at: w.tick(), workerId: 'w1', claims: [[a, 1], [a, 2], ['job-ghost', 1]] });
    assert.deepEqual(w.job(a), before);
  });
});

describe('claims for a peer’s workers', () => {
  it('a remote claim leases the job to the peer’s worker without charging any local worker', () => {
    const w = world();
    const a = w.one('alpha', { resources: res(2, 100) });
    const e = planClaim(w.model, 'far-worker', 'peer-1', w.tick(), w.leaseMs, 8, { free: res(8, 8000), workerName: 'far' });
    assert.ok(e);
    assert.equal(e.workerName, 'far');
    w.apply(e);
    const job = w.job(a);
    assert.equal(job.state, 'running');
    assert.equal(job.reason, 'running on far via peer-1');
    assert.equal(job.attempts[0]!.workerName, 'far');
    assert.equal(job.attempts[0]!.via, 'peer-1');
    assert.deepEqual(w.lease(a), { jobId: a, attempt: 1, workerId: 'far-worker', via: 'peer-1', deadline: w.now + w.leaseMs });
    assert.deepEqual(w.model.freeOf('w1'), res(4, 8192));
    throwsCode(() => w.model.freeOf('far-worker'), 'WORKER_NOT_FOUND');
    throwsCode(() => planFinish(w.model, 'far-worker', a, 1, exited(0), w.now), 'STALE_ATTEMPT');
    const done = planFinish(w.model, 'far-worker', a, 1, exited(0), w.tick(), 'peer-1');
    assert.notEqual(done, 'duplicate');
    w.apply(done as Exclude<typeof done, 'duplicate'>);
    assert.equal(w.job(a).reason, 'exit code 0 on far');
  });

  it('a remote claim takes only what fits the room the peer reported', () => {
    const w = world();
    const [a, b] = w.submit('alpha', [spec({ resources: res(2, 100) }), spec({ resources: res(2, 100) })]);
    const e = planClaim(w.model, 'far-worker', 'peer-1', w.tick(), w.leaseMs, 8, { free: res(3, 8000), workerName: 'far' });
    assert.deepEqual(e?.claims, [[a, 1]]);
    w.apply(e!);
    assert.equal(w.state(b!), 'queued');
  });
});

describe('foreign attempts', () => {
  function foreignWorld() {
    const w = world();
    w.apply({
      t: 'foreign-claimed',
      at: w.tick(),
      home: 'peer-9',
      workerId: 'w1',
      deadline: w.now + w.leaseMs,
      claims: [
        { jobId: 'far-1', attempt: 3, resources: res(2, 2000) },
        { jobId: 'far-2', attempt: 1, resources: res(1, 1000) },
      ],
    });
    return w;
  }

  it('a peer’s job run by a local worker takes room on it until its result is in', () => {
    const w = foreignWorld();
    assert.deepEqual(w.model.freeOf('w1'), res(1, 5192));
    const local = w.submit('alpha', [spec(), spec()]);
    assert.deepEqual(w.claimIds('w1'), [local[0]], 'the scheduler sees the smaller room');
    w.apply({ t: 'foreign-finished', at: w.tick(), jobId: 'far-1', attempt: 3, result: { exitCode: 0 } });
    assert.deepEqual(w.model.freeOf('w1'), res(2, 7092));
    w.apply({ t: 'foreign-finished', at: w.tick(), jobId: 'far-1', attempt: 3, result: { exitCode: 1 } });
    w.apply({ t: 'foreign-finished', at: w.tick(), jobId: 'far-2', attempt: 7, result: {} });
    assert.deepEqual(w.model.freeOf('w1'), res(2, 7092), 'a repeat or a stale result frees nothing more');
    assert.deepEqual(w.model.foreign.get('far-1')?.result, { exitCode: 0 });
    w.apply({ t: 'foreign-closed', at: w.tick(), attempts: [['far-1', 3], ['far-2', 1]], reason: 'home has them' });
    assert.equal(w.model.foreign.size, 0);
    assert.deepEqual(w.model.freeOf('w1'), res(3, 8092));
  });

  it('heartbeats and extensions move a foreign attempt’s deadline later only', () => {
    const w = foreignWorld();
    const d = w.model.foreign.get('far-1')!.deadline;
    w.apply({ t: 'leases-renewed', at: w.tick(), workerId: 'w1', deadline: d - 10, attempts: [['far-1', 3]] });
    assert.equal(w.model.foreign.get('far-1')!.deadline, d);
    w.apply({ t: 'leases-renewed', at: w.tick(), workerId: 'w1', deadline: d + 10, attempts: [['far-1', 3]] });
    assert.equal(w.model.foreign.get('far-1')!.deadline, d + 10);
    w.apply({ t: 'leases-extended', at: w.tick(), deadline: d + 50, attempts: [['far-2', 1], ['far-1', 2]] });
    assert.equal(w.model.foreign.get('far-2')!.deadline, d + 50);
    assert.equal(w.model.foreign.get('far-1')!.deadline, d + 10, 'another attempt number is not extended');
  });

  it('foreign attempts survive a snapshot with the room they take', () => {
    const w = foreignWorld();
    w.apply({ t: 'foreign-finished', at: w.tick(), jobId: 'far-2', attempt: 1, result: { exitCode: 0 } });
    const restored = Model.fromSnapshot(JSON.parse(JSON.stringify(w.model.toSnapshot())));
    assert.deepEqual([...restored.foreign.values()], [...w.model.foreign.values()]);
    assert.deepEqual(restored.freeOf('w1'), w.model.freeOf('w1'));
    assert.equal(JSON.stringify(replay(w.events).toSnapshot()), JSON.stringify(w.model.toSnapshot()));
  });
});

describe('transitions', () => {
  it('every transition of a mixed history has a reason, and counts match the jobs after every step', () => {
    const w = world();
    w.project('beta');
    w.worker('w2', res(2, 2048));
    const [a, b, c] = w.submit('alpha', [
      { key: 'a', spec: spec({ maxRetries: 1 }) },
      { key: 'b', spec: spec({ after: ['a'] }) },
      { key: 'c', spec: spec({ after: ['b'] }) },
    ]);
    const [p, q] = w.submit('beta', [spec({ priority: 2 }), spec({ resources: res(2, 2048) })]);
    w.claim('w2');
    w.claim('w1');
    w.finish(a!, 1);
    w.expireAll();
    w.claim('w1');
    w.finish(a!);
    w.claim('w1');
    w.cancel([b!]);
    w.retry([b!, c!]);
    w.claim('w2');
    w.finish(p!, 0);
    w.cancel([q!]);
    w.archive([p!, q!, a!]);
    w.apply({ t: 'worker-removed', at: w.tick(), id: 'w1', reason: 'gone' });
    w.claim('w2');
    assert.ok(w.transitions.length > 20);
    for (const t of w.transitions) assert.ok(t.reason.trim().length > 0, `transition of ${t.id} to ${t.to} has a reason`);
    // Every submission is announced, then settles.
    for (const id of [a, b, c, p, q]) assert.deepEqual(w.transitions.find((t) => t.id === id), { id, from: null, to: 'waiting', reason: 'submitted' });
  });
});

describe('archive', () => {
  it('archiving removes finished jobs from memory but keeps them in the counts', () => {
    const w = world();
    const [done, failed, cancelled, queued, other] = w.submit('alpha', [
      spec(),
      spec(),
      spec({ resources: res(4, 100) }),
      spec({ resources: res(4, 100) }),
      spec(),
    ]);
    w.claim('w1', 2);
    w.finish(done!);
    w.finish(failed!, 9);
    w.cancel([cancelled!]);
    const wait2 = w.one('alpha', { after: [queued!] });
    const before = w.model.countsOf('alpha');
    w.archive([done!, failed!, cancelled!, queued!, other!, wait2, 'job-unknown']);
    for (const id of [done, failed, cancelled]) assert.equal(w.model.job(id!), undefined);
    for (const id of [queued!, other!, wait2]) assert.ok(w.model.job(id), `${id} is not archived`);
    assert.deepEqual(w.model.countsOf('alpha'), before);
    assert.deepEqual(w.model.liveCountsOf('alpha'), { ...emptyCounts(), queued: 2, waiting: 1 });
    assert.equal(w.model.jobIdsOf('alpha').size, 3);
    // A job still waiting on a live one is unaffected.
    w.claim('w1');
    w.finish(queued!);
    assert.equal(w.state(wait2), 'queued');
  });

  it('archivable lists only finished jobs last changed before the cut-off, up to the limit', () => {
    const w = world();
    const [a, b, c, d] = w.submit('alpha', [spec(), spec(), spec(), spec()]);
    w.claim('w1', 3);
    w.finish(a!);
    w.finish(b!, 1);
    const cut = w.tick();
    w.finish(c!);
    assert.deepEqual(archivable(w.model, cut, 10), [a, b]);
    assert.deepEqual(archivable(w.model, cut, 1), [a]);
    assert.deepEqual(archivable(w.model, w.tick(), 10), [a, b, c]);
    assert.equal(w.state(d!), 'queued');
  });
});

describe('projects', () => {
  it('removing a project drops its jobs, takes back their attempts and frees the workers', () => {
    const w = world();
    w.project('beta');
    w.submit('alpha', [spec({ resources: res(2, 100) }), spec()]);
    const [keep] = w.submit('beta', [spec()]);
    w.claim('w1');
    w.apply({ t: 'project-removed', at: w.tick(), name: 'alpha' });
    assert.equal(w.model.projects.has('alpha'), false);
    assert.deepEqual([...w.model.jobs.keys()], [keep]);
    assert.equal(w.model.ready.size, 0);
    // What ran of the removed project may still run: its room is freed when the worker confirms.
    assert.deepEqual(w.model.freeOf('w1'), res(0, 7892));
    w.heartbeat('w1', [...w.model.leases.all()].map((l): [string, number] => [l.jobId, l.attempt]));
    assert.equal(w.heartbeat('w1', [[keep!, 1]]).stopped.length, 2);
    assert.deepEqual(w.model.freeOf('w1'), res(3, 8092));
    throwsCode(() => w.model.project('alpha'), 'PROJECT_NOT_FOUND');
  });
});

/** Runs everything runnable on the workers, one job per claim, in worker order, and lists what ran. */
function drain(model: Model, workers: string[], at: number): string[] {
  const ran: string[] = [];
  for (let round = 0; round < 1000; round++) {
    let progressed = false;
    for (const id of workers) {
      const claim = planClaim(model, id, 'local', at, 60_000, 1);
      if (!claim) continue;
      model.apply(claim);
      progressed = true;
      for (const [jobId, n] of claim.claims) {
        ran.push(jobId);
        const e = planFinish(model, id, jobId, n, exited(0), ++at);
        assert.notEqual(e, 'duplicate');
        model.apply(e as Exclude<typeof e, 'duplicate'>);
      }
    }
    if (!progressed) return ran;
  }
  throw new Error('drain did not finish');
}

/**
 * A history touching every state and event kind. Each priority level holds
 * one project's jobs, so the next claims do not depend on whose turn it is.
 */
function mixedHistory(): World {
  const w = new World();
  w.project('alpha');
  w.project('beta');
  w.apply({ t: 'members-changed', at: w.tick(), project: 'beta', members: ['carol'] });
  w.worker('w1', res(4, 8192));
  w.worker('w2', res(2, 1024));
  w.worker('w3', res(1, 512));
  const [a, b, c, big, f, g] = w.submit('alpha', [
    { key: 'a', spec: spec({ maxRetries: 2, resources: res(2, 1000) }) },
    { key: 'b', spec: spec({ after: ['a'] }) },
    { key: 'c', spec: spec({ after: ['b'], env: { X: '1' } }) },
    { spec: spec({ resources: res(4, 4096) }) },
    { key: 'f', spec: spec() },
    { spec: spec({ after: ['f'] }) },
  ]);
  const [h0, h1, h2] = w.submit('beta', [spec({ priority: 5 }), spec({ priority: 5, resources: res(2, 100) }), spec({ priority: 5 })]);
  const [l0, l1, l2, l3] = w.submit('beta', [spec({ priority: -1 }), spec({ priority: -1 }), spec({ priority: -1 }), spec({ priority: -1 })]);
  assert.deepEqual(w.claimIds('w2', 2), [h0, h2]);
  assert.deepEqual(w.claimIds('w1', 3), [h1, a]);
  w.finish(h0!);
  w.finish(a!, 1);
  assert.deepEqual(w.expireAll().map(([id]) => id).sort(), [h1, h2].sort());
  assert.deepEqual(w.claimIds('w1'), [h1, h2, f]);
  w.finish(f!, 1);
  assert.equal(w.state(g!), 'cancelled');
  assert.deepEqual(w.claimIds('w3'), [l0]);
  w.cancel([l1!]);
  w.finish(h2!);
  assert.deepEqual(w.claimIds('w2'), [a]);
  w.apply({
    t: 'leases-renewed',
    at: w.tick(),
    workerId: 'w2',
    deadline: w.now + 2 * w.leaseMs,
    attempts: w.model.leases.ofWorker('w2').map((l): [string, number] => [l.jobId, l.attempt]),
  });
  w.archive(archivable(w.model, w.now + 1, 2));
  assert.equal(w.model.job(f!), undefined);
  assert.equal(w.model.job(g!), undefined);
  w.apply({ t: 'worker-removed', at: w.tick(), id: 'w3', reason: 'retired' });
  assert.deepEqual(
    [a, b, c, big, h0, h1, h2, l0, l1, l2, l3].map((id) => w.state(id!)),
    ['running', 'waiting', 'waiting', 'queued', 'done', 'running', 'done', 'queued', 'cancelled', 'queued', 'queued'],
  );
  assert.deepEqual(w.model.countsOf('alpha'), { ...emptyCounts(), running: 1, waiting: 2, queued: 1, failed: 1, cancelled: 1 });
  return w;
}

describe('snapshots and replay', () => {
  it('a model restored from its snapshot has the same jobs, counts, leases and free room, and hands out the same next claims', () => {
    const w = mixedHistory();
    const original = w.model;
    const restored = Model.fromSnapshot(JSON.parse(JSON.stringify(original.toSnapshot())));
    assertConsistentWith(w, restored);

    const byId = (m: Model) => [...m.jobs.values()].sort((x, y) => x.seq - y.seq);
    assert.deepEqual(byId(restored), byId(original));
    for (const name of ['alpha', 'beta']) {
      assert.deepEqual(restored.countsOf(name), original.countsOf(name));
      assert.deepEqual(restored.liveCountsOf(name), original.liveCountsOf(name));
      assert.deepEqual([...restored.jobIdsOf(name)], [...original.jobIdsOf(name)]);
      assert.deepEqual(restored.project(name), original.project(name));
    }
    const leases = (m: Model) => [...m.leases.all()].map((l) => ({ ...l })).sort((x, y) => x.jobId.localeCompare(y.jobId));
    assert.ok(leases(original).length > 0, 'the history leaves leases');
    assert.deepEqual(leases(restored), leases(original));
    for (const id of original.workers.keys()) {
      assert.deepEqual(restored.freeOf(id), original.freeOf(id));
      assert.deepEqual(restored.usedBy(id), original.usedBy(id));
    }
    assert.equal(restored.lastEventAt, original.lastEventAt);
    assert.equal(restored.ready.size, original.ready.size);
    const shapes = (m: Model) => m.ready.shapes().sort((x, y) => x.resources.cores - y.resources.cores || x.resources.memoryMb - y.resources.memoryMb);
    assert.deepEqual(shapes(restored), shapes(original));
    assert.deepEqual(restored.leases.expired(w.now + 10 * w.leaseMs).map((l) => l.jobId).sort(), original.leases.expired(w.now + 10 * w.leaseMs).map((l) => l.jobId).sort());

    // Running what is left gives the same order, dependants included, and the same end state.
    const runningIds = [...original.leases.all()].map((l) => l.jobId);
    const finishRunning = (m: Model) => {
      for (const id of runningIds) {
        const l = m.leases.get(id)!;
        m.apply(planFinish(m, l.workerId, id, l.attempt, exited(0), w.now + 1) as Exclude<ReturnType<typeof planFinish>, 'duplicate'>);
      }
    };
    finishRunning(original);
    finishRunning(restored);
    const workers = [...original.workers.keys()];
    const ranOriginal = drain(original, workers, w.now + 2);
    const ranRestored = drain(restored, workers, w.now + 2);
    assert.ok(ranOriginal.length >= 3, 'work was left to run');
    assert.deepEqual(ranRestored, ranOriginal);
    assert.deepEqual(JSON.parse(JSON.stringify(restored.toSnapshot())), JSON.parse(JSON.stringify(original.toSnapshot())));
  });

  it('replaying the same events into a fresh model gives an identical snapshot', () => {
    const w = mixedHistory();
    const again = replay(w.events);
    assert.equal(JSON.stringify(again.toSnapshot()), JSON.stringify(w.model.toSnapshot()));
    const third = replay(w.events);
    assert.equal(JSON.stringify(third.toSnapshot()), JSON.stringify(again.toSnapshot()));
  });

  it('a restored model carries on: a snapshot of a snapshot is the same, and restored waiting jobs are released by their dependencies', () => {
    const w = new World();
    w.project('alpha');
    w.worker('w1', res(1, 1000));
    const a = w.one('alpha');
    const b = w.one('alpha', { after: [a] });
    const c = w.one('alpha', { after: [a, b] });
    w.claim('w1');
    const snap = JSON.parse(JSON.stringify(w.model.toSnapshot()));
    const restored = Model.fromSnapshot(snap);
    assert.deepEqual(JSON.parse(JSON.stringify(restored.toSnapshot())), snap);
    const r = new World(restored);
    r.now = w.now;
    r.check();
    r.finish(a);
    assert.equal(r.state(b), 'queued');
    assert.equal(r.state(c), 'waiting');
    assert.equal(r.job(c).reason, 'waiting for 1 dependency');
    r.claim('w1');
    r.finish(b);
    assert.equal(r.state(c), 'queued');
  });
});

function assertConsistentWith(w: World, restored: Model): void {
  const r = new World(restored);
  for (const [k, v] of w.archived) r.archived.set(k, v);
  r.check();
}

describe('regressions', () => {
  it('retrying a dependant whose failed dependency was archived is refused', () => {
    const w = new World();
    w.project('alpha');
    w.worker('w1', res(4, 8192));
    const a = w.one('alpha');
    const b = w.one('alpha', { after: [a] });
    w.claim('w1');
    w.finish(a, 1);
    assert.equal(w.job(b).reason, `dependency ${a} failed`);
    w.archive([a]);
    throwsCode(() => w.retry([b]), 'INVALID_STATE');
    assert.equal(w.state(b), 'cancelled');
    // With the archive saying the dependency succeeded, the retry goes ahead.
    w.apply(planRetry(w.model, [b], w.tick(), new Map([[a, 'done']])));
    assert.equal(w.state(b), 'queued');
  });

  it('a restored or replayed model gives the next turn to the same project as the live one', () => {
    const w = new World();
    w.project('alpha');
    w.project('beta');
    w.worker('w1', res(1, 1000));
    const a = w.submit('alpha', [spec(), spec()]);
    const b = w.submit('beta', [spec(), spec()]);
    assert.deepEqual(w.claimIds('w1'), [a[0]]);
    w.finish(a[0]!);
    const restored = Model.fromSnapshot(JSON.parse(JSON.stringify(w.model.toSnapshot())));
    const replayed = replay(w.events);
    const next = (m: Model) => planClaim(m, 'w1', 'local', w.now, 1000, 1)?.claims.map(([id]) => id);
    assert.deepEqual(next(w.model), [b[0]]);
    assert.deepEqual(next(restored), [b[0]], 'restored from a snapshot');
    assert.deepEqual(next(replayed), [b[0]], 'replayed from the journal');
  });

  it('a second foreign claim of the same job does not leak the first one’s room', () => {
    const w = new World();
    w.worker('w1', res(4, 4000));
    w.worker('w2', res(4, 4000));
    w.apply({ t: 'foreign-claimed', at: w.tick(), home: 'peer-a', workerId: 'w1', deadline: w.now + 1000, claims: [{ jobId: 'x', attempt: 1, resources: res(2, 1000) }] });
    w.apply({ t: 'foreign-claimed', at: w.tick(), home: 'peer-a', workerId: 'w2', deadline: w.now + 1000, claims: [{ jobId: 'x', attempt: 2, resources: res(2, 1000) }] });
    w.apply({ t: 'foreign-closed', at: w.tick(), attempts: [['x', 1], ['x', 2]], reason: 'given up' });
    assert.deepEqual(w.model.freeOf('w1'), res(4, 4000));
    assert.deepEqual(w.model.freeOf('w2'), res(4, 4000));
  });
});
