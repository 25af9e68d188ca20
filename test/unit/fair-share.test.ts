/**
 * The queue under many distinct priorities and many users: its work stays
 * O(log P) per job (counted, not timed), users take turns by weight whatever
 * priorities they choose, priorities outside the range are refused, and the
 * turns survive replay and snapshots exactly.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { planClaim, planFinish, planLoadProject, planSetWeight, planSubmit } from '../../src/core/commands.js';
import type { Event } from '../../src/core/events.js';
import { Heap } from '../../src/core/heap.js';
import { IndexedHeap } from '../../src/core/indexed-heap.js';
import { Model } from '../../src/core/model.js';
import { ReadyQueue } from '../../src/core/ready-queue.js';
import { PRIORITY_MAX, PRIORITY_MIN, type Job, type JobSpec } from '../../src/core/types.js';
import { World, exited, queuedJob, replay, res, rng, spec, throwsCode } from '../helpers/core.js';

// ---- counting the queue's work ------------------------------------------------

/**
 * Counts the steps a data structure takes: every comparison in a heap, every
 * call of a callback given to an array method (sort, filter, …), and (for
 * jobs wrapped by `metered`) every read of a job's fields. Past `budget` the
 * next step throws, so an algorithm that is quadratic fails at once instead
 * of running for minutes.
 */
const meter = { steps: 0, budget: Infinity };
function step(): void {
  if (++meter.steps > meter.budget) throw new Error(`work budget of ${meter.budget} steps exceeded`);
}

const ARRAY_METHODS = ['sort', 'filter', 'map', 'some', 'every', 'find', 'findIndex', 'forEach', 'reduce'] as const;
let restore: (() => void) | undefined;

function startMetering(budget: number): void {
  meter.steps = 0;
  meter.budget = budget;
  // Every heap's comparisons are counted: its `less` is wrapped the first time the heap is used.
  type Less = { less: (a: unknown, b: unknown) => boolean };
  const counted = new WeakSet<object>();
  const wrap = (h: Less) => {
    if (counted.has(h)) return;
    counted.add(h);
    const less = h.less;
    h.less = (a, b) => (step(), less(a, b));
  };
  const patched: [Record<string, (this: Less, ...a: unknown[]) => unknown>, string, (this: Less, ...a: unknown[]) => unknown][] = [];
  for (const proto of [Heap.prototype, IndexedHeap.prototype] as unknown as Record<string, (this: Less, ...a: unknown[]) => unknown>[]) {
    for (const name of ['push', 'pop', 'peek', 'remove', 'update']) {
      const original = proto[name];
      if (!original) continue;
      patched.push([proto, name, original]);
      proto[name] = function (...a) {
        wrap(this);
        return original.apply(this, a);
      };
    }
  }
  const proto = Array.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
  const saved = ARRAY_METHODS.map((m) => [m, proto[m]!] as const);
  for (const [m, original] of saved) {
    proto[m] = function (this: unknown[], fn?: unknown, ...rest: unknown[]) {
      const f = typeof fn === 'function' ? (...a: unknown[]) => (step(), (fn as (...a: unknown[]) => unknown)(...a)) : fn;
      return original.call(this, f, ...rest);
    };
  }
  restore = () => {
    for (const [proto, name, original] of patched) proto[name] = original;
    for (const [m, original] of saved) proto[m] = original;
    meter.budget = Infinity;
    restore = undefined;
  };
}

function stopMetering(): number {
  restore?.();
  return meter.steps;
}

afterEach(() => restore?.());

/** A job whose every field read is a counted step. */
function metered(job: Job): Job {
  const counting = <T extends object>(o: T): T =>
    new Proxy(o, {
      get(target, key, receiver) {
        step();
        return Reflect.get(target, key, receiver);
      },
    });
  return counting({ ...job, spec: counting({ ...job.spec, resources: counting({ ...job.spec.resources }) }) });
}

let seq = 0;
const job = (project: string, priority: number): Job => queuedJob(++seq, project, { priority });

const roomy = res(1_000, 1_000_000);
const N = 40_000;
const log2 = (n: number) => Math.log2(n);

/** Shuffles in place with a seeded generator, so a failure repeats. */
function shuffle<T>(xs: T[], seed: number): T[] {
  const random = rng(seed);
  for (let i = xs.length - 1; i > 0; i--) {
    const k = Math.floor(random() * (i + 1));
    [xs[i], xs[k]] = [xs[k]!, xs[i]!];
  }
  return xs;
}

/** Adds every job, then takes until the queue is empty; returns the steps counted and what came out. */
function fillAndDrain(jobs: Job[], budget: number): { steps: number; taken: Job[] } {
  const q = new ReadyQueue();
  const wrapped = jobs.map(metered);
  startMetering(budget);
  const taken: Job[] = [];
  try {
    for (const j of wrapped) q.add(j);
    for (let j = q.take(roomy); j; j = q.take(roomy)) taken.push(j);
  } finally {
    stopMetering();
  }
  assert.equal(q.size, 0);
  return { steps: meter.steps, taken };
}

describe('the ready queue under many distinct priorities', () => {
  // Each job costs O(log n) steps either way: the heap of one priority's jobs,
  // or the heap of priorities. A quadratic queue needs N/2 steps per job.
  const budget = 40 * N * log2(N);

  it('submits and takes 40 000 jobs at 40 000 distinct priorities in O(log P) steps each, as many as at one priority', () => {
    const single = fillAndDrain(Array.from({ length: N }, () => job('p', 0)), budget);
    const distinct = fillAndDrain(shuffle(Array.from({ length: N }, (_, i) => job('p', i - N / 2)), 1), budget);

    assert.equal(distinct.taken.length, N);
    for (let i = 1; i < N; i++) assert.ok(distinct.taken[i - 1]!.spec.priority > distinct.taken[i]!.spec.priority, `take ${i} in priority order`);
    assert.equal(single.taken.length, N);
    for (let i = 1; i < N; i++) assert.ok(single.taken[i - 1]!.seq < single.taken[i]!.seq, 'one priority: oldest first');

    const perJob = distinct.steps / N;
    assert.ok(perJob <= 12 * log2(N), `${perJob.toFixed(1)} steps per job at ${N} priorities; O(log P) allows ${(12 * log2(N)).toFixed(0)}`);
    assert.ok(distinct.steps <= 2 * single.steps, `distinct priorities: ${distinct.steps} steps, one priority: ${single.steps}`);
  });

  it('costs no more per job at 40 000 priorities than at 2 500 beyond the logarithm', () => {
    const small = 2_500;
    const few = fillAndDrain(shuffle(Array.from({ length: small }, (_, i) => job('p', i)), 2), budget).steps / small;
    const many = fillAndDrain(shuffle(Array.from({ length: N }, (_, i) => job('p', i)), 3), budget).steps / N;
    const allowed = (few * log2(N)) / log2(small) + 4;
    assert.ok(many <= allowed, `${many.toFixed(1)} steps per job at ${N}, ${few.toFixed(1)} at ${small}; logarithmic growth allows ${allowed.toFixed(1)}`);
  });

  it('stays within O(log n) steps per job with the priorities spread over 400 projects of 20 users', () => {
    const owners = { ownerOf: (p: string) => `u${Number(p.slice(1)) % 20}`, userWeight: () => 1, projectWeight: () => 1 };
    const q = new ReadyQueue(owners);
    const jobs = shuffle(Array.from({ length: N }, (_, i) => metered(job(`p${i % 400}`, i))), 6);
    startMetering(budget);
    let taken = 0;
    try {
      for (const j of jobs) q.add(j);
      while (q.take(roomy)) taken++;
    } finally {
      stopMetering();
    }
    assert.equal(taken, N);
    assert.ok(meter.steps / N <= 12 * log2(N), `${(meter.steps / N).toFixed(1)} steps per job`);
  });

  it('takes in O(log P) after 40 000 distinct priorities were cancelled: the first take afterwards does not stall', () => {
    const q = new ReadyQueue();
    const jobs = shuffle(Array.from({ length: N }, (_, i) => metered(job('p', i))), 4);
    const last = metered(job('p', -N));
    startMetering(budget);
    try {
      for (const j of jobs) q.add(j);
      q.add(last);
      for (const j of jobs) q.remove(j);
      assert.equal(q.take(roomy)?.id, last.id);
      assert.equal(q.take(roomy), undefined);
    } finally {
      stopMetering();
    }
    assert.ok(meter.steps / N <= 12 * log2(N), `${meter.steps} steps for ${N} jobs`);
  });

  it('restores a model holding 90 000 queued jobs at distinct priorities in O(n log n) steps, and replays them as fast', () => {
    const n = 90_000;
    const model = new Model();
    const specs: JobSpec[] = shuffle(Array.from({ length: n }, (_, i) => spec({ priority: i })), 5);
    // A journal of an older server: priorities were not bounded then, and replay takes what was recorded.
    const events: Event[] = [
      { t: 'project-created', at: 1, name: 'p', owner: 'alice' },
      { t: 'jobs-submitted', at: 2, project: 'p', jobs: specs.map((s, i) => ({ id: `job-${i}`, spec: s })) },
    ];
    const bound = 40 * n * log2(n);
    startMetering(bound);
    let restored: Model;
    try {
      for (const e of events) model.apply(e);
      restored = Model.fromSnapshot(JSON.parse(JSON.stringify(model.toSnapshot())));
    } finally {
      stopMetering();
    }
    assert.ok(meter.steps <= bound);
    assert.equal(restored.ready.size, n);
    model.apply({ t: 'worker-registered', at: 3, id: 'w', name: 'w', host: 'h', resources: res(4, 1000), labels: [], tokenId: 't' });
    restored.apply({ t: 'worker-registered', at: 3, id: 'w', name: 'w', host: 'h', resources: res(4, 1000), labels: [], tokenId: 't' });
    const first = (m: Model) => planClaim(m, 'w', 'local', 4, 1000, 4)!.claims.map(([id]) => m.job(id)!.spec.priority);
    assert.deepEqual(first(restored), [n - 1, n - 2, n - 3, n - 4]);
    assert.deepEqual(first(model), [n - 1, n - 2, n - 3, n - 4]);
  });
});

// ---- sharing between users ------------------------------------------------------------

function twoUsers(): World {
  const w = new World();
  w.project('flood', 'mallory');
  w.project('flood2', 'mallory');
  w.project('science', 'alice');
  w.project('notes', 'alice');
  w.worker('w1', res(1, 1000));
  return w;
}

/** Claims one job at a time until nothing is left (finishing each); returns the projects in the order served. */
function drainProjects(w: World, limit = Infinity): string[] {
  const out: string[] = [];
  while (out.length < limit) {
    const [id] = w.claimIds('w1', 1);
    if (!id) break;
    out.push(w.job(id).project);
    w.finish(id);
  }
  return out;
}

describe('users share the queue', () => {
  it('a user who floods the queue at the highest priority and at many others does not starve another user at the lowest', () => {
    const w = twoUsers();
    // 500 jobs at the top priority, and 500 more spread over every priority there is.
    w.submit('flood', Array.from({ length: 500 }, () => spec({ priority: PRIORITY_MAX })));
    w.submit('flood2', Array.from({ length: 500 }, (_, i) => spec({ priority: PRIORITY_MIN + (i % (PRIORITY_MAX - PRIORITY_MIN + 1)) })));
    w.submit('science', Array.from({ length: 10 }, () => spec({ priority: PRIORITY_MIN })));
    const served = drainProjects(w, 20);
    assert.deepEqual(
      served.map((p) => (p === 'science' ? 'alice' : 'mallory')),
      Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? 'mallory' : 'alice')),
      'the two users alternate',
    );
  });

  it('within one user, priority still comes first and projects at one priority take turns', () => {
    const w = twoUsers();
    w.submit('science', [spec({ priority: 1 }), spec({ priority: 1 })]);
    w.submit('notes', [spec({ priority: 5 }), spec(), spec()]);
    w.submit('science', [spec(), spec()]);
    assert.deepEqual(drainProjects(w), ['notes', 'science', 'science', 'notes', 'science', 'notes', 'science']);
  });

  it('gives each user as many turns in a row as their weight, and a project as many among its owner’s', () => {
    const w = twoUsers();
    w.apply(planSetWeight(w.model, 'user', 'mallory', 3, w.tick()));
    w.submit('flood', Array.from({ length: 30 }, () => spec()));
    w.submit('science', Array.from({ length: 30 }, () => spec()));
    const served = drainProjects(w, 24).map((p) => (p === 'science' ? 'a' : 'm')).join('');
    assert.equal(served, 'mmma'.repeat(6));

    const v = twoUsers();
    v.apply(planSetWeight(v.model, 'project', 'notes', 2, v.tick()));
    v.submit('science', Array.from({ length: 10 }, () => spec()));
    v.submit('notes', Array.from({ length: 10 }, () => spec()));
    assert.equal(drainProjects(v, 9).map((p) => (p === 'notes' ? 'n' : 's')).join(''), 'snnsnnsnn');
  });

  it('refuses a weight out of range or for an unknown project', () => {
    const w = twoUsers();
    throwsCode(() => planSetWeight(w.model, 'user', 'alice', 0, 1), 'INVALID_FIELD');
    throwsCode(() => planSetWeight(w.model, 'user', 'alice', 1001, 1), 'INVALID_FIELD');
    throwsCode(() => planSetWeight(w.model, 'user', 'alice', 1.5, 1), 'INVALID_FIELD');
    throwsCode(() => planSetWeight(w.model, 'project', 'nowhere', 2, 1), 'PROJECT_NOT_FOUND');
  });

  it('a user whose jobs are not the next to fit gives the turn on, and gets it back when one fits', () => {
    const w = twoUsers();
    w.worker('big', res(8, 8000));
    const [huge] = w.submit('flood', [spec({ resources: res(8, 100) }), spec()]);
    w.submit('science', [spec(), spec()]);
    assert.deepEqual(drainProjects(w, 3), ['flood', 'science', 'science']);
    assert.deepEqual(w.claimIds('big'), [huge]);
  });
});

// ---- the range of priorities ------------------------------------------------------------

describe('priorities are bounded', () => {
  it('refuses a submit with a priority outside the range, and changes nothing', () => {
    const w = twoUsers();
    for (const priority of [PRIORITY_MAX + 1, PRIORITY_MIN - 1, 1_000_000, 0.5]) {
      const err = throwsCode(() => planSubmit(w.model, 'science', [{ spec: spec() }, { spec: spec({ priority }) }], ['a', 'b'], 1), 'PRIORITY_OUT_OF_RANGE');
      assert.match(err.message, /^jobs\[1\]: priority must be a whole number from -100 to 100$/);
    }
    assert.equal(w.model.jobs.size, 0);
    assert.equal(w.model.ready.size, 0);
    w.submit('science', [spec({ priority: PRIORITY_MIN }), spec({ priority: PRIORITY_MAX })]);
    assert.equal(w.model.ready.size, 2);
  });

  it('refuses to load a saved project whose jobs have a priority outside the range', () => {
    const w = twoUsers();
    const saved = {
      id: 'old-1',
      spec: spec({ priority: 500 }),
      state: 'queued' as const,
      reason: 'ready to run',
      createdAt: 0,
      updatedAt: 0,
      attempts: [],
      failures: 0,
      lost: 0,
    };
    throwsCode(() => planLoadProject(w.model, { name: 'old', owner: 'mallory', createdAt: 0, values: {}, jobs: [saved] }, 1), 'PRIORITY_OUT_OF_RANGE');
    assert.equal(w.model.projects.has('old'), false);
  });
});

// ---- replay and snapshots --------------------------------------------------------------------

describe('turns survive replay and snapshots', () => {
  it('a random history of three users with weights: replay gives the same snapshot, and a restored model serves the same order', () => {
    const random = rng(42);
    const w = new World();
    const projects: [string, string][] = [
      ['a1', 'ann'],
      ['a2', 'ann'],
      ['b1', 'ben'],
      ['c1', 'cat'],
      ['c2', 'cat'],
    ];
    for (const [p, owner] of projects) w.project(p, owner);
    w.worker('w1', res(4, 4000));
    w.worker('w2', res(2, 1000));
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
    for (let stepNo = 0; stepNo < 1500; stepNo++) {
      const r = random();
      if (r < 0.35) {
        const n = 1 + Math.floor(random() * 4);
        w.submit(pick(projects)[0], Array.from({ length: n }, () => spec({ priority: Math.floor(random() * 5) - 2, resources: res(1 + Math.floor(random() * 2), 100 * (1 + Math.floor(random() * 3))) })));
      } else if (r < 0.6) {
        w.claim(pick(['w1', 'w2']), 1 + Math.floor(random() * 3));
      } else if (r < 0.8) {
        const running = [...w.model.leases.all()];
        if (running.length > 0) w.finish(pick(running).jobId, random() < 0.2 ? 1 : 0);
      } else if (r < 0.9) {
        const queued = [...w.model.jobs.values()].filter((j) => j.state === 'queued');
        if (queued.length > 0) w.cancel([pick(queued).id]);
      } else if (r < 0.95) {
        const weight = 1 + Math.floor(random() * 3);
        if (random() < 0.5) w.apply(planSetWeight(w.model, 'user', pick(['ann', 'ben', 'cat']), weight, w.tick()));
        else w.apply(planSetWeight(w.model, 'project', pick(projects)[0], weight, w.tick()));
      } else {
        w.expireAll();
      }
      if (stepNo % 250 === 249) {
        assert.equal(JSON.stringify(replay(w.events).toSnapshot()), JSON.stringify(w.model.toSnapshot()), `replay after step ${stepNo}`);
      }
    }
    for (const [jobId] of [...w.model.leases.all()].map((l) => [l.jobId])) w.finish(jobId!);
    const restored = Model.fromSnapshot(JSON.parse(JSON.stringify(w.model.toSnapshot())));
    assert.ok(w.model.ready.size > 20, `work is left to serve (${w.model.ready.size})`);
    const order = (m: Model) => {
      const out: string[] = [];
      for (let at = w.now + 1; ; at++) {
        const claim = planClaim(m, 'w1', 'local', at, 1000, 1);
        if (!claim) break;
        m.apply(claim);
        const [id, n] = claim.claims[0]!;
        out.push(id);
        const e = planFinish(m, 'w1', id, n, exited(0), at);
        assert.notEqual(e, 'duplicate');
        m.apply(e as Exclude<typeof e, 'duplicate'>);
      }
      return out;
    };
    assert.deepEqual(order(restored), order(w.model));
  });
});
