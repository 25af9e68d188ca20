import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  planCancel,
  planClaim,
  planCreateProject,
  planExpiry,
  planFinish,
  planRetry,
  planSubmit,
  renewLeases,
  type SubmitItem,
} from '../../src/core/commands.js';
import { CpcError, ERROR_STATUS, fail, isErrorCode } from '../../src/core/errors.js';
import type { JobState } from '../../src/core/types.js';
import { World, exited, res, rng, spec, throwsCode } from '../helpers/core.js';

function world(): World {
  const w = new World();
  w.project('alpha');
  w.project('beta');
  w.worker('w1', res(4, 8192));
  w.worker('w2', res(4, 8192));
  return w;
}

const ids = (n: number) => Array.from({ length: n }, (_, i) => `new-${i}`);

describe('planCreateProject', () => {
  it('accepts a valid new name and refuses bad names and existing projects', () => {
    const w = world();
    assert.deepEqual(planCreateProject(w.model, 'gamma.v2_x-1', 'bob', 7), { t: 'project-created', at: 7, name: 'gamma.v2_x-1', owner: 'bob' });
    for (const bad of ['', '-lead', '.hidden', 'has space', 'a/b', 'x'.repeat(65)]) {
      throwsCode(() => planCreateProject(w.model, bad, 'bob', 7), 'INVALID_FIELD');
    }
    planCreateProject(w.model, 'x'.repeat(64), 'bob', 7);
    throwsCode(() => planCreateProject(w.model, 'alpha', 'bob', 7), 'PROJECT_EXISTS');
  });
});

describe('planSubmit', () => {
  it('refuses an unknown project', () => {
    const w = world();
    throwsCode(() => planSubmit(w.model, 'nope', [{ spec: spec() }], ids(1), 1), 'PROJECT_NOT_FOUND');
  });

  it('resolves keys to the new ids and keeps live ids as they are', () => {
    const w = world();
    const live = w.one('alpha');
    const e = planSubmit(
      w.model,
      'alpha',
      [
        { key: 'prep', spec: spec() },
        { key: 'run', spec: spec({ after: ['prep', live, 'prep'] }) },
      ],
      ['id-prep', 'id-run'],
      42,
    );
    assert.equal(e.t, 'jobs-submitted');
    assert.equal(e.at, 42);
    assert.equal(e.project, 'alpha');
    assert.deepEqual(e.jobs.map((j) => j.id), ['id-prep', 'id-run']);
    assert.deepEqual(e.jobs[1]!.spec.after, ['id-prep', live], 'resolved and without repeats');
    assert.deepEqual(e.jobs[0]!.spec.after, []);
  });

  it('does not change the model or the items it was given', () => {
    const w = world();
    const items: SubmitItem[] = [{ key: 'a', spec: spec() }, { spec: spec({ after: ['a'] }) }];
    const copy = structuredClone(items);
    const before = JSON.stringify(w.model.toSnapshot());
    planSubmit(w.model, 'alpha', items, ids(2), 1);
    assert.throws(() => planSubmit(w.model, 'alpha', [{ spec: spec({ after: ['ghost'] }) }], ids(1), 1));
    assert.equal(JSON.stringify(w.model.toSnapshot()), before);
    assert.deepEqual(items, copy);
  });

  it('refuses a dependency on an unknown id', () => {
    const w = world();
    const e = throwsCode(() => planSubmit(w.model, 'alpha', [{ spec: spec() }, { spec: spec({ after: ['ghost'] }) }], ids(2), 1), 'UNKNOWN_DEPENDENCY');
    assert.match(e.message, /jobs\[1\].*ghost/);
  });

  it('refuses a dependency on a job of another project', () => {
    const w = world();
    const other = w.one('beta');
    throwsCode(() => planSubmit(w.model, 'alpha', [{ spec: spec({ after: [other] }) }], ids(1), 1), 'UNKNOWN_DEPENDENCY');
  });

  it('refuses a job that depends on itself', () => {
    const w = world();
    const e = throwsCode(() => planSubmit(w.model, 'alpha', [{ spec: spec() }, { key: 'me', spec: spec({ after: ['me'] }) }], ids(2), 1), 'DEPENDENCY_CYCLE');
    assert.match(e.message, /jobs\[1\]/);
  });

  it('refuses cycles within a batch', () => {
    const w = world();
    throwsCode(
      () => planSubmit(w.model, 'alpha', [{ key: 'a', spec: spec({ after: ['b'] }) }, { key: 'b', spec: spec({ after: ['a'] }) }], ids(2), 1),
      'DEPENDENCY_CYCLE',
    );
    throwsCode(
      () =>
        planSubmit(
          w.model,
          'alpha',
          [
            { key: 'free', spec: spec() },
            { key: 'a', spec: spec({ after: ['c', 'free'] }) },
            { key: 'b', spec: spec({ after: ['a'] }) },
            { key: 'c', spec: spec({ after: ['b'] }) },
            { key: 'tail', spec: spec({ after: ['c'] }) },
          ],
          ids(5),
          1,
        ),
      'DEPENDENCY_CYCLE',
    );
    assert.equal(w.model.jobs.size, 0);
  });

  it('refuses a key used twice', () => {
    const w = world();
    const e = throwsCode(() => planSubmit(w.model, 'alpha', [{ key: 'k', spec: spec() }, { key: 'x', spec: spec() }, { key: 'k', spec: spec() }], ids(3), 1), 'INVALID_FIELD');
    assert.match(e.message, /jobs\[2\]/);
  });

  it('orders a batch given in reverse so that every job follows its dependencies', () => {
    const w = world();
    const e = planSubmit(
      w.model,
      'alpha',
      [
        { key: 'd', spec: spec({ after: ['c', 'a'] }) },
        { key: 'c', spec: spec({ after: ['b'] }) },
        { key: 'b', spec: spec({ after: ['a'] }) },
        { key: 'a', spec: spec() },
      ],
      ['id-d', 'id-c', 'id-b', 'id-a'],
      1,
    );
    assert.deepEqual(e.jobs.map((j) => j.id), ['id-a', 'id-b', 'id-c', 'id-d']);
  });

  it('keeps the given order of a batch that already follows its dependencies', () => {
    const w = world();
    const e = planSubmit(
      w.model,
      'alpha',
      [
        { key: 'a', spec: spec() },
        { key: 'x', spec: spec() },
        { key: 'b', spec: spec({ after: ['a'] }) },
        { key: 'y', spec: spec() },
        { key: 'c', spec: spec({ after: ['x', 'b'] }) },
      ],
      ['a', 'x', 'b', 'y', 'c'],
      1,
    );
    assert.deepEqual(e.jobs.map((j) => j.id), ['a', 'x', 'b', 'y', 'c']);
  });

  it('orders a very long chain given in reverse without running out of stack', () => {
    const w = world();
    const n = 50_000;
    const items: SubmitItem[] = Array.from({ length: n }, (_, i) => ({ key: `k${n - 1 - i}`, spec: spec({ after: i === n - 1 ? [] : [`k${n - 2 - i}`] }) }));
    const newIds = items.map((it) => `id-${it.key}`);
    const e = planSubmit(w.model, 'alpha', items, newIds, 1);
    assert.equal(e.jobs.length, n);
    assert.equal(e.jobs[0]!.id, 'id-k0');
    assert.equal(e.jobs[n - 1]!.id, `id-k${n - 1}`);
    throwsCode(() => planSubmit(w.model, 'alpha', [{ key: 'k0', spec: spec({ after: [`k${n - 1}`] }) }, ...items.slice(0, -1)], newIds, 1), 'DEPENDENCY_CYCLE');
  });

  it('orders random acyclic batches so that every dependency comes first, keeping every job once', () => {
    const random = rng(99);
    const w = world();
    for (let round = 0; round < 50; round++) {
      const n = 1 + Math.floor(random() * 30);
      // A random DAG over a random permutation of positions.
      const rank = Array.from({ length: n }, (_, i) => i).sort(() => random() - 0.5);
      const items: SubmitItem[] = rank.map((r, i) => {
        const after = rank
          .map((r2, j) => [r2, j] as const)
          .filter(([r2]) => r2 < r && random() < 0.3)
          .map(([, j]) => `k${j}`);
        return { key: `k${i}`, spec: spec({ after }) };
      });
      const newIds = items.map((_, i) => `r${round}-${i}`);
      const e = planSubmit(w.model, 'alpha', items, newIds, 1);
      const pos = new Map(e.jobs.map((j, i) => [j.id, i]));
      assert.equal(pos.size, n);
      for (const j of e.jobs) for (const dep of j.spec.after) assert.ok(pos.get(dep)! < pos.get(j.id)!, `${dep} before ${j.id}`);
    }
  });

  it('accepts an archived dependency that is done and refuses one that failed or was cancelled', () => {
    const w = world();
    const archived = new Map<string, JobState>([
      ['old-done', 'done'],
      ['old-failed', 'failed'],
      ['old-cancelled', 'cancelled'],
    ]);
    const e = planSubmit(w.model, 'alpha', [{ spec: spec({ after: ['old-done'] }) }], ids(1), 1, archived);
    assert.deepEqual(e.jobs[0]!.spec.after, ['old-done']);
    throwsCode(() => planSubmit(w.model, 'alpha', [{ spec: spec({ after: ['old-failed'] }) }], ids(1), 1, archived), 'INVALID_STATE');
    throwsCode(() => planSubmit(w.model, 'alpha', [{ spec: spec({ after: ['old-cancelled'] }) }], ids(1), 1, archived), 'INVALID_STATE');
    throwsCode(() => planSubmit(w.model, 'alpha', [{ spec: spec({ after: ['never-was'] }) }], ids(1), 1, archived), 'UNKNOWN_DEPENDENCY');
  });

  it('accepts live dependencies in any state; the model settles the new job from them', () => {
    const w = world();
    const [running, failed] = w.submit('alpha', [spec(), spec()]);
    w.claim('w1');
    w.finish(failed!, 1);
    const e = planSubmit(w.model, 'alpha', [{ spec: spec({ after: [running!] }) }, { spec: spec({ after: [failed!] }) }], ids(2), 1);
    assert.equal(e.jobs.length, 2);
  });
});

describe('planFinish', () => {
  function running() {
    const w = world();
    const a = w.one('alpha', { maxRetries: 1 });
    w.claim('w1');
    return { w, a };
  }

  it('accepts the report of the worker holding the current attempt', () => {
    const { w, a } = running();
    const r = exited(0);
    assert.deepEqual(planFinish(w.model, 'w1', a, 1, r, 99), { t: 'attempt-finished', at: 99, jobId: a, attempt: 1, ...r });
  });

  it('refuses a report from another worker', () => {
    const { w, a } = running();
    throwsCode(() => planFinish(w.model, 'w2', a, 1, exited(0), w.now), 'STALE_ATTEMPT');
  });

  it('refuses a report for an attempt whose lease expired, even after the job is running again', () => {
    const { w, a } = running();
    w.expireAll();
    const e = throwsCode(() => planFinish(w.model, 'w1', a, 1, exited(0), w.now), 'STALE_ATTEMPT');
    assert.match(e.message, /lease-expired/);
    w.claim('w2');
    throwsCode(() => planFinish(w.model, 'w1', a, 1, exited(0), w.now), 'STALE_ATTEMPT');
    throwsCode(() => planFinish(w.model, 'w1', a, 2, exited(0), w.now), 'STALE_ATTEMPT');
    assert.notEqual(planFinish(w.model, 'w2', a, 2, exited(0), w.now), 'duplicate');
  });

  it('refuses a report for an attempt cancelled while it ran', () => {
    const { w, a } = running();
    w.cancel([a]);
    throwsCode(() => planFinish(w.model, 'w1', a, 1, exited(0), w.now), 'STALE_ATTEMPT');
  });

  it('recognises a repeat of an accepted report, after success and after a re-queue', () => {
    const { w, a } = running();
    w.finish(a, 2);
    assert.equal(w.state(a), 'queued');
    assert.equal(planFinish(w.model, 'w1', a, 1, exited(2), w.now), 'duplicate');
    w.claim('w1');
    w.finish(a, 0);
    assert.equal(planFinish(w.model, 'w1', a, 2, exited(0), w.now), 'duplicate');
    assert.equal(w.state(a), 'done');
  });

  it('refuses a different report for an attempt already reported', () => {
    const { w, a } = running();
    w.finish(a, 0);
    throwsCode(() => planFinish(w.model, 'w1', a, 1, exited(1), w.now), 'STALE_ATTEMPT');
    throwsCode(() => planFinish(w.model, 'w1', a, 1, exited(0, { how: 'timeout', exitCode: 0 }), w.now), 'STALE_ATTEMPT');
  });

  it('refuses an unknown job and an unknown attempt', () => {
    const { w, a } = running();
    throwsCode(() => planFinish(w.model, 'w1', 'job-ghost', 1, exited(0), w.now), 'JOB_NOT_FOUND');
    throwsCode(() => planFinish(w.model, 'w1', a, 2, exited(0), w.now), 'ATTEMPT_NOT_FOUND');
    throwsCode(() => planFinish(w.model, 'w1', a, 0, exited(0), w.now), 'ATTEMPT_NOT_FOUND');
  });

  it('refuses a report naming the right worker id through the wrong way in', () => {
    const { w, a } = running();
    throwsCode(() => planFinish(w.model, 'w1', a, 1, exited(0), w.now, 'peer-1'), 'STALE_ATTEMPT');
    assert.notEqual(planFinish(w.model, 'w1', a, 1, exited(0), w.now, 'local'), 'duplicate');
  });

  it('refuses a report for a job that was archived', () => {
    const { w, a } = running();
    w.finish(a, 0);
    w.archive([a]);
    throwsCode(() => planFinish(w.model, 'w1', a, 1, exited(0), w.now), 'JOB_NOT_FOUND');
  });
});

describe('renewLeases', () => {
  it('renews only the listed attempts of that worker and leaves the others to expire', () => {
    const w = world();
    const [a, b, c] = w.submit('alpha', [spec(), spec(), spec()]);
    w.claim('w1', 2);
    w.claim('w2');
    const old = w.lease(a!).deadline;
    const oldC = w.lease(c!).deadline;
    const now = w.tick(10_000);
    const out = renewLeases(w.model, 'w1', [{ jobId: a!, attempt: 1 }], now + w.leaseMs, now);
    assert.deepEqual(out, { renewed: 1, abandon: [], stopping: [], stopped: [], started: [] });
    assert.equal(w.lease(a!).deadline, now + w.leaseMs);
    assert.equal(w.lease(b!).deadline, old, 'a lease not named is not renewed');
    assert.equal(w.lease(c!).deadline, oldC, 'another worker’s lease is not renewed');
    assert.equal(w.model.worker('w1').lastSeen, now);
    assert.deepEqual(planExpiry(w.model, old)?.attempts, [[b, 1]]);
    w.now = oldC;
    w.apply(planExpiry(w.model, oldC)!);
    assert.deepEqual([w.state(a!), w.state(b!), w.state(c!)], ['running', 'queued', 'queued']);
  });

  it('tells the worker to abandon attempts that are unknown, cancelled, re-queued or not its own', () => {
    const w = world();
    const [cancelled, requeued, other, mine] = w.submit('alpha', [spec(), spec(), spec(), spec()]);
    w.claim('w1', 2);
    w.claim('w2', 1);
    w.claim('w1', 1);
    w.cancel([cancelled!]);
    w.apply({ t: 'attempts-lost', at: w.tick(), how: 'lease-expired', reason: 'test', attempts: [[requeued!, 1]] });
    assert.equal(w.lease(mine!).workerId, 'w1');
    const now = w.tick();
    const out = renewLeases(
      w.model,
      'w1',
      [
        { jobId: 'job-ghost', attempt: 1 },
        { jobId: cancelled!, attempt: 1 },
        { jobId: requeued!, attempt: 1 },
        { jobId: other!, attempt: 1 },
        { jobId: mine!, attempt: 7 },
        { jobId: mine!, attempt: 1 },
      ],
      now + w.leaseMs,
      now,
    );
    assert.equal(out.renewed, 1);
    assert.deepEqual(out.abandon, [
      { jobId: 'job-ghost', attempt: 1, reason: 'job no longer exists' },
      { jobId: cancelled, attempt: 1, reason: 'job was cancelled' },
      { jobId: requeued, attempt: 1, reason: 'attempt 1 is no longer current (job is queued)' },
      { jobId: other, attempt: 1, reason: 'attempt 1 is no longer current (job is running)' },
      { jobId: mine, attempt: 7, reason: 'attempt 7 is no longer current (job is running)' },
    ]);
    for (const x of out.abandon) assert.ok(x.reason.length > 0);
    assert.equal(w.lease(other!).deadline < now + w.leaseMs, true, 'another worker’s lease is not renewed');
  });

  it('an attempt re-claimed by the same worker is renewed only under its new number', () => {
    const w = world();
    const a = w.one('alpha');
    w.claim('w1');
    w.expireAll();
    w.claim('w1');
    const now = w.tick();
    const out = renewLeases(w.model, 'w1', [{ jobId: a, attempt: 1 }], now + w.leaseMs, now);
    assert.equal(out.renewed, 0);
    assert.deepEqual(out.abandon, [{ jobId: a, attempt: 1, reason: 'attempt 1 is no longer current (job is running)' }]);
  });

  it('renews a peer’s worker’s lease only through that peer', () => {
    const w = world();
    const a = w.one('alpha');
    const e = planClaim(w.model, 'far-worker', 'peer-1', w.tick(), w.leaseMs, 1, { free: res(1, 1000), workerName: 'far' });
    w.apply(e!);
    const old = w.lease(a).deadline;
    const now = w.tick();
    throwsCode(() => renewLeases(w.model, 'far-worker', [{ jobId: a, attempt: 1 }], now + w.leaseMs, now), 'WORKER_NOT_FOUND');
    const wrong = renewLeases(w.model, 'far-worker', [{ jobId: a, attempt: 1 }], now + w.leaseMs, now, 'peer-2');
    assert.equal(wrong.renewed, 0);
    assert.equal(wrong.abandon.length, 1);
    assert.equal(w.lease(a).deadline, old);
    const right = renewLeases(w.model, 'far-worker', [{ jobId: a, attempt: 1 }], now + w.leaseMs, now, 'peer-1');
    assert.deepEqual(right, { renewed: 1, abandon: [], stopping: [], stopped: [], started: [] });
    assert.equal(w.lease(a).deadline, now + w.leaseMs);
  });

  it('refuses an unknown worker', () => {
    const w = world();
    throwsCode(() => renewLeases(w.model, 'nobody', [], 1, 1), 'WORKER_NOT_FOUND');
  });
});

describe('planCancel and planRetry', () => {
  it('cancel refuses unknown and finished jobs, and names each job once', () => {
    const w = world();
    const [a, b] = w.submit('alpha', [spec(), spec()]);
    w.claim('w1', 1);
    w.finish(a!);
    throwsCode(() => planCancel(w.model, ['job-ghost'], 'x', 1), 'JOB_NOT_FOUND');
    throwsCode(() => planCancel(w.model, [b!, a!], 'x', 1), 'INVALID_STATE');
    assert.deepEqual(planCancel(w.model, [b!, b!], 'cancelled by bob', 5), { t: 'jobs-cancelled', at: 5, ids: [b], reason: 'cancelled by bob' });
  });

  it('retry accepts only failed or cancelled jobs, and names each job once', () => {
    const w = world();
    const [done, failed, cancelled, queued, waiting] = w.submit('alpha', [spec(), spec(), spec(), spec(), spec()]);
    w.claim('w1', 2);
    w.finish(done!);
    w.finish(failed!, 1);
    w.cancel([cancelled!]);
    const wait = w.one('alpha', { after: [queued!] });
    throwsCode(() => planRetry(w.model, ['job-ghost'], 1), 'JOB_NOT_FOUND');
    for (const id of [done!, queued!, wait]) throwsCode(() => planRetry(w.model, [failed!, id], 1), 'INVALID_STATE');
    w.claim('w1', 1);
    throwsCode(() => planRetry(w.model, [queued!], 1), 'INVALID_STATE');
    assert.deepEqual(planRetry(w.model, [failed!, cancelled!, failed!], 3), { t: 'jobs-retried', at: 3, ids: [failed, cancelled] });
    void waiting;
  });
});

describe('planExpiry', () => {
  it('is null while no lease has passed its deadline, then names the expired attempts', () => {
    const w = world();
    const [a, b] = w.submit('alpha', [spec(), spec()]);
    w.claim('w1', 1);
    const deadlineA = w.lease(a!).deadline;
    w.tick(5_000);
    w.claim('w1', 1);
    assert.equal(planExpiry(w.model, deadlineA - 1), null);
    assert.deepEqual(planExpiry(w.model, deadlineA), {
      t: 'attempts-lost',
      at: deadlineA,
      how: 'lease-expired',
      reason: 'no heartbeat before the lease deadline',
      attempts: [[a, 1]],
    });
    assert.deepEqual(planExpiry(w.model, w.lease(b!).deadline)?.attempts, [
      [a, 1],
      [b, 1],
    ]);
  });

  it('leaves alone a lease renewed by a heartbeat', () => {
    const w = world();
    const a = w.one('alpha');
    w.claim('w1');
    const d = w.lease(a).deadline;
    renewLeases(w.model, 'w1', [{ jobId: a, attempt: 1 }], d + 1000, d - 1);
    assert.equal(planExpiry(w.model, d), null);
    assert.deepEqual(planExpiry(w.model, d + 1000)?.attempts, [[a, 1]]);
  });
});

describe('errors', () => {
  it('every code has an HTTP status, and CpcError carries code, status and details', () => {
    for (const [code, status] of Object.entries(ERROR_STATUS)) {
      assert.ok(isErrorCode(code));
      assert.ok(status >= 400 && status < 600, code);
    }
    assert.equal(isErrorCode('NOT_A_CODE'), false);
    assert.equal(isErrorCode(404), false);
    const e = fail('STALE_ATTEMPT', 'late', { attempt: 2 });
    assert.ok(e instanceof CpcError && e instanceof Error);
    assert.equal(e.code, 'STALE_ATTEMPT');
    assert.equal(e.status, 409);
    assert.equal(e.name, 'CpcError');
    assert.deepEqual(e.details, { attempt: 2 });
  });
});

describe('journaled heartbeats', () => {
  it('a journaled heartbeat does not keep alive a lease the worker did not name', () => {
    const w = new World();
    w.project('alpha');
    w.worker('w1', res(4, 8192));
    const [a, b] = w.submit('alpha', [spec(), spec()]);
    w.claim('w1');
    const deadline = w.model.leases.get(b!)!.deadline;
    const now = w.tick(10_000);
    renewLeases(w.model, 'w1', [{ jobId: a!, attempt: 1 }], now + w.leaseMs, now);
    w.apply({ t: 'leases-renewed', at: now, workerId: 'w1', deadline: now + w.leaseMs, attempts: [[a!, 1]] });
    assert.deepEqual(planExpiry(w.model, deadline)?.attempts, [[b, 1]]);
  });
});
