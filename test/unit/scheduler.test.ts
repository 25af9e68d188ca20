import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { planClaim } from '../../src/core/commands.js';
import { ReadyQueue, fits } from '../../src/core/ready-queue.js';
import type { Job, Resources } from '../../src/core/types.js';
import { World, queuedJob, res, rng, spec, throwsCode } from '../helpers/core.js';

function world(...workers: [string, Resources][]): World {
  const w = new World();
  w.project('alpha');
  w.project('beta');
  w.project('gamma');
  for (const [id, r] of workers) w.worker(id, r);
  return w;
}

describe('planClaim', () => {
  it('hands out the highest priority first, whatever its age', () => {
    const w = world(['w1', res(1, 1000)]);
    const [low, mid, high] = w.submit('alpha', [spec({ priority: -3 }), spec({ priority: 0 }), spec({ priority: 7 })]);
    assert.deepEqual(w.claimIds('w1'), [high]);
    w.finish(high!);
    assert.deepEqual(w.claimIds('w1'), [mid]);
    w.finish(mid!);
    assert.deepEqual(w.claimIds('w1'), [low]);
  });

  it('hands out the oldest first within a priority and project', () => {
    const w = world(['w1', res(1, 1000)]);
    const ids = w.submit('alpha', [spec(), spec(), spec(), spec()]);
    const got: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      const [id] = w.claimIds('w1');
      got.push(id!);
      w.finish(id!);
    }
    assert.deepEqual(got, ids);
  });

  it('skips a job at the head that does not fit and hands out smaller ones behind it', () => {
    const w = world(['small', res(2, 1000)], ['large', res(8, 16_384)]);
    const [big, s1, s2, s3] = w.submit('alpha', [spec({ resources: res(8, 100) }), spec(), spec(), spec()]);
    assert.deepEqual(w.claimIds('small'), [s1, s2]);
    assert.equal(w.state(big!), 'queued');
    assert.deepEqual(w.claimIds('large', 1), [big], 'the big job still goes first to a worker with room');
    assert.deepEqual(w.claimIds('large'), [], 'the big job took all the room');
    w.finish(big!);
    assert.deepEqual(w.claimIds('large'), [s3]);
  });

  it('respects free memory as well as free cores', () => {
    const w = world(['w1', res(8, 1000)]);
    const [fat, thin] = w.submit('alpha', [spec({ resources: res(1, 2000) }), spec({ resources: res(1, 600) })]);
    const [thin2] = w.submit('alpha', [spec({ resources: res(1, 600) })]);
    assert.deepEqual(w.claimIds('w1'), [thin]);
    assert.deepEqual(w.model.freeOf('w1'), res(7, 400));
    assert.deepEqual(w.claimIds('w1'), []);
    w.finish(thin!);
    assert.deepEqual(w.claimIds('w1'), [thin2]);
    assert.equal(w.state(fat!), 'queued');
  });

  it('takes a lower priority job that fits when the higher one does not', () => {
    const w = world(['w1', res(2, 1000)]);
    const [high, low] = w.submit('alpha', [spec({ priority: 9, resources: res(4, 100) }), spec({ priority: 1 })]);
    assert.deepEqual(w.claimIds('w1'), [low]);
    assert.equal(w.state(high!), 'queued');
  });

  it('lets projects of equal priority take turns, however many jobs each has queued', () => {
    const w = world(['w1', res(1, 1000)]);
    const a = w.submit('alpha', Array.from({ length: 6 }, () => spec()));
    const b = w.submit('beta', Array.from({ length: 3 }, () => spec()));
    const got: string[] = [];
    for (;;) {
      const [id] = w.claimIds('w1');
      if (!id) break;
      got.push(id);
      w.finish(id);
    }
    assert.deepEqual(got, [a[0], b[0], a[1], b[1], a[2], b[2], a[3], a[4], a[5]]);
  });

  it('takes turns across three projects within one claim of several jobs', () => {
    const w = world(['w1', res(6, 6000)]);
    const a = w.submit('alpha', [spec(), spec(), spec()]);
    const b = w.submit('beta', [spec(), spec(), spec()]);
    const c = w.submit('gamma', [spec(), spec(), spec()]);
    assert.deepEqual(w.claimIds('w1'), [a[0], b[0], c[0], a[1], b[1], c[1]]);
  });

  it('gives the turn to the next project when the current one has nothing that fits', () => {
    const w = world(['w1', res(1, 1000)], ['w8', res(8, 8000)]);
    const [abig, asmall] = w.submit('alpha', [spec({ resources: res(4, 100) }), spec()]);
    const [b1, b2] = w.submit('beta', [spec({ resources: res(4, 100) }), spec()]);
    assert.deepEqual(w.claimIds('w1'), [asmall]);
    assert.deepEqual(w.claimIds('w1'), []);
    assert.deepEqual(w.claimIds('w8'), [b1, abig]);
    w.finish(asmall!);
    assert.deepEqual(w.claimIds('w1'), [b2]);
  });

  it('a higher priority keeps precedence over the turn order', () => {
    const w = world(['w1', res(1, 1000)]);
    const a = w.submit('alpha', [spec({ priority: 1 }), spec({ priority: 1 })]);
    const b = w.submit('beta', [spec(), spec()]);
    const got: string[] = [];
    for (let i = 0; i < 4; i++) {
      const [id] = w.claimIds('w1');
      got.push(id!);
      w.finish(id!);
    }
    assert.deepEqual(got, [a[0], a[1], b[0], b[1]]);
  });

  it('never hands out more than max jobs', () => {
    const w = world(['w1', res(16, 16_000)]);
    w.submit('alpha', Array.from({ length: 10 }, () => spec()));
    assert.equal(w.claim('w1', 3).length, 3);
    assert.equal(w.claim('w1', 1).length, 1);
    assert.equal(planClaim(w.model, 'w1', 'local', w.now, 1000, 0), null);
    assert.equal(w.model.ready.size, 6);
  });

  it('claims several jobs up to the free cores, then nothing until one ends', () => {
    const w = world(['w1', res(4, 8192)]);
    const ids = w.submit('alpha', Array.from({ length: 10 }, () => spec()));
    const claims = w.claim('w1');
    assert.deepEqual(claims, ids.slice(0, 4).map((id) => [id, 1]));
    assert.deepEqual(w.model.freeOf('w1'), res(0, 8192 - 400));
    const e = planClaim(w.model, 'w1', 'local', w.tick(), 1000, 10);
    assert.equal(e, null);
    assert.equal(w.model.ready.size, 6, 'a claim that found nothing took nothing');
    w.finish(ids[2]!);
    assert.deepEqual(w.claimIds('w1'), [ids[4]]);
  });

  it('returns null, taking nothing, for a worker with no room', () => {
    const w = world(['w1', res(1, 50)]);
    w.submit('alpha', [spec()]);
    assert.equal(planClaim(w.model, 'w1', 'local', w.now, 1000, 10), null);
    assert.equal(w.model.ready.size, 1);
  });

  it('refuses an unknown worker', () => {
    const w = world();
    w.submit('alpha', [spec()]);
    throwsCode(() => planClaim(w.model, 'nobody', 'local', w.now, 1000, 1), 'WORKER_NOT_FOUND');
    assert.equal(w.model.ready.size, 1);
  });

  it('records the via and the lease deadline in the claim', () => {
    const w = world(['w1', res(1, 1000)]);
    const [a] = w.submit('alpha', [spec()]);
    const e = planClaim(w.model, 'w1', 'peer-7', 5000, 250, 4);
    assert.deepEqual(e, { t: 'jobs-claimed', at: 5000, workerId: 'w1', via: 'peer-7', deadline: 5250, claims: [[a, 1]] });
  });

  it('a worker’s free room goes down while it runs jobs and back up when they finish, are cancelled or are lost', () => {
    const w = world(['w1', res(8, 8000)], ['w2', res(8, 8000)]);
    const [a, b, c, d] = w.submit('alpha', [
      spec({ resources: res(1, 1000) }),
      spec({ resources: res(2, 2000) }),
      spec({ resources: res(3, 3000) }),
      spec({ resources: res(1, 500), maxRetries: 1 }),
    ]);
    w.claim('w1');
    assert.deepEqual(w.model.freeOf('w1'), res(1, 1500));
    assert.deepEqual(w.model.usedBy('w1'), res(7, 6500));
    w.finish(a!);
    assert.deepEqual(w.model.freeOf('w1'), res(2, 2500));
    w.cancel([b!]);
    assert.deepEqual(w.model.freeOf('w1'), res(2, 2500), 'a cancelled attempt takes its room until its process is gone');
    w.heartbeat('w1', [[b!, 1], [c!, 1], [d!, 1]]);
    w.heartbeat('w1', [[c!, 1], [d!, 1]]);
    assert.deepEqual(w.model.freeOf('w1'), res(4, 4500));
    w.finish(d!, 1); // re-queued for a retry
    assert.deepEqual(w.model.freeOf('w1'), res(5, 5000));
    assert.deepEqual(w.claimIds('w2'), [d]);
    assert.deepEqual(w.model.freeOf('w2'), res(7, 7500));
    w.expireAll();
    assert.equal(w.state(c!), 'queued');
    assert.deepEqual(w.model.freeOf('w1'), res(8, 8000));
    assert.deepEqual(w.model.freeOf('w2'), res(8, 8000));
    assert.deepEqual(w.model.usedBy('w1'), res(0, 0));
  });

  it('a job re-queued for a retry keeps its age and goes before younger jobs', () => {
    const w = world(['w1', res(1, 1000)]);
    const [old] = w.submit('alpha', [spec({ maxRetries: 1 })]);
    w.claim('w1');
    const [young1, young2] = w.submit('alpha', [spec(), spec()]);
    w.finish(old!, 1);
    assert.deepEqual(w.claim('w1'), [[old, 2]]);
    w.finish(old!);
    assert.deepEqual(w.claimIds('w1'), [young1]);
    void young2;
  });

  it('a job re-queued after a lost lease keeps its age', () => {
    const w = world(['w1', res(1, 1000)]);
    const [old] = w.submit('alpha', [spec()]);
    w.claim('w1');
    w.submit('alpha', [spec(), spec()]);
    w.expireAll();
    assert.deepEqual(w.claim('w1'), [[old, 2]]);
  });

  it('a retried failed job keeps its age', () => {
    const w = world(['w1', res(1, 1000)]);
    const [old] = w.submit('alpha', [spec()]);
    w.claim('w1');
    w.finish(old!, 1);
    const [young] = w.submit('alpha', [spec()]);
    w.retry([old!]);
    assert.deepEqual(w.claimIds('w1'), [old]);
    w.finish(old!);
    assert.deepEqual(w.claimIds('w1'), [young]);
  });

  it('never hands out a job cancelled while queued', () => {
    const w = world(['w1', res(8, 8000)]);
    const ids = w.submit('alpha', [spec(), spec(), spec(), spec({ resources: res(2, 100) })]);
    w.cancel([ids[0]!, ids[2]!, ids[3]!]);
    assert.deepEqual(w.claimIds('w1'), [ids[1]]);
    assert.deepEqual(w.claimIds('w1'), []);
    assert.equal(w.model.ready.size, 0);
  });

  it('counts the queued jobs of each resource shape across projects and priorities', () => {
    const w = world(['w1', res(1, 100)]);
    const ids = w.submit('alpha', [spec(), spec({ priority: 3 }), spec({ resources: res(2, 512) }), spec()]);
    w.submit('beta', [spec({ resources: res(2, 512) }), spec()]);
    w.cancel([ids[3]!]);
    w.claim('w1', 1);
    const shapes = w.model.ready.shapes().sort((x, y) => x.resources.cores - y.resources.cores);
    assert.deepEqual(shapes, [
      { resources: res(1, 100), count: 2 },
      { resources: res(2, 512), count: 2 },
    ]);
  });
});

describe('ReadyQueue', () => {
  let seq = 0;
  function job(project: string, over: { priority?: number; cores?: number; memoryMb?: number } = {}): Job {
    return queuedJob(++seq, project, { priority: over.priority ?? 0, resources: res(over.cores ?? 1, over.memoryMb ?? 100) });
  }
  const roomy = res(1_000, 1_000_000);

  it('fits compares cores and memory, boundaries included', () => {
    assert.equal(fits(res(2, 100), res(2, 100)), true);
    assert.equal(fits(res(3, 100), res(2, 100)), false);
    assert.equal(fits(res(2, 101), res(2, 100)), false);
  });

  it('tracks size and membership through add, remove and take', () => {
    const q = new ReadyQueue();
    const a = job('p');
    const b = job('p');
    q.add(a);
    q.add(b);
    q.add(a); // adding again does not duplicate
    assert.equal(q.size, 2);
    q.remove(b);
    q.remove(b);
    assert.equal(q.has(b.id), false);
    assert.equal(q.size, 1);
    assert.equal(q.take(roomy), a);
    assert.equal(q.take(roomy), undefined);
    assert.equal(q.size, 0);
    assert.deepEqual(q.shapes(), []);
  });

  it('a job removed and added again is handed out once, in its age order', () => {
    const q = new ReadyQueue();
    const a = job('p');
    const b = job('p');
    q.add(a);
    q.add(b);
    q.remove(a);
    q.add(a);
    assert.equal(q.take(roomy), a);
    assert.equal(q.take(roomy), b);
    assert.equal(q.take(roomy), undefined);
  });

  it('refills correctly after being emptied', () => {
    const q = new ReadyQueue();
    for (let round = 0; round < 3; round++) {
      const a = job('p', { priority: round });
      const b = job('q', { priority: round });
      q.add(b);
      q.add(a);
      const got = [q.take(roomy), q.take(roomy)];
      assert.deepEqual(new Set(got), new Set([a, b]));
      assert.equal(q.take(roomy), undefined);
    }
  });

  it('within one project matches a simple reference: highest priority, then oldest that fits', () => {
    const random = rng(7);
    const q = new ReadyQueue();
    const live = new Map<string, Job>();
    for (let step = 0; step < 5000; step++) {
      const r = random();
      if (r < 0.5) {
        const j = job('p', { priority: Math.floor(random() * 3), cores: 1 + Math.floor(random() * 4), memoryMb: 100 * (1 + Math.floor(random() * 4)) });
        q.add(j);
        live.set(j.id, j);
      } else if (r < 0.65 && live.size > 0) {
        const ids = [...live.keys()];
        const victim = live.get(ids[Math.floor(random() * ids.length)]!)!;
        q.remove(victim);
        live.delete(victim.id);
      } else {
        const free = res(Math.floor(random() * 5), 100 * Math.floor(random() * 5));
        const expected = [...live.values()]
          .filter((j) => fits(j.spec.resources, free))
          .sort((x, y) => y.spec.priority - x.spec.priority || x.seq - y.seq)[0];
        const got = q.take(free);
        assert.equal(got?.id, expected?.id, `step ${step}`);
        if (got) live.delete(got.id);
      }
      assert.equal(q.size, live.size);
    }
  });

  it('across projects always picks from the best priority that has a fitting job, the oldest fitting one of its project', () => {
    const random = rng(11);
    const q = new ReadyQueue();
    const live = new Map<string, Job>();
    const projects = ['p', 'q', 'r', 's'];
    for (let step = 0; step < 5000; step++) {
      if (random() < 0.55) {
        const j = job(projects[Math.floor(random() * projects.length)]!, { priority: Math.floor(random() * 2), cores: 1 + Math.floor(random() * 3) });
        q.add(j);
        live.set(j.id, j);
        continue;
      }
      const free = res(Math.floor(random() * 4), 1000);
      const fitting = [...live.values()].filter((j) => fits(j.spec.resources, free));
      const got = q.take(free);
      if (fitting.length === 0) {
        assert.equal(got, undefined);
        continue;
      }
      assert.ok(got, `step ${step}: something fits`);
      const best = Math.max(...fitting.map((j) => j.spec.priority));
      assert.equal(got.spec.priority, best);
      const oldest = fitting.filter((j) => j.project === got.project && j.spec.priority === best).sort((x, y) => x.seq - y.seq)[0]!;
      assert.equal(got.id, oldest.id);
      live.delete(got.id);
      assert.equal(q.size, live.size);
    }
  });

  it('serves each project of a level in turn: over a long run of takes, no project waits for another twice', () => {
    const q = new ReadyQueue();
    const projects = ['p', 'q', 'r'];
    for (let i = 0; i < 30; i++) for (const p of projects) q.add(job(p));
    const got: string[] = [];
    for (let i = 0; i < 90; i++) got.push(q.take(roomy)!.project);
    for (let i = 0; i < 90; i += 3) assert.deepEqual(new Set(got.slice(i, i + 3)), new Set(projects), `takes ${i}..${i + 2}`);
  });
});
