/**
 * Finding jobs without a server: name patterns, the orders of a listing and
 * its pages (the pages of any order, walked by cursor, are the whole ordered
 * list once each), the progress of a wait from a mark, and why a job waits.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jobFilter, jobOrder, JOB_SORTS, nameMatcher, pageOf, type Listed } from '../../src/core/job-query.js';
import { JOB_STATES, type JobState } from '../../src/core/types.js';
import { progressOf } from '../../src/server/jobs/job-progress.js';
import { explain } from '../../src/server/jobs/why.js';
import { listJobs } from '../../src/server/jobs/job-listing.js';
import { jobListQuery } from '../../src/server/jobs/schemas.js';
import { World, res, rng } from '../helpers/core.js';

describe('job names and filters', () => {
  it('matches * and ? over the whole name, everything else literally', () => {
    const fit = nameMatcher('fit-*.run?');
    assert.ok(fit('fit-a.run1'));
    assert.ok(fit('fit-.runX'));
    assert.ok(!fit('fit-a.run'), '? is exactly one character');
    assert.ok(!fit('xfit-a.run1'), 'the whole name');
    assert.ok(!fit('fit-aXrun1'), '. is literal');
    assert.ok(nameMatcher('*')(undefined), 'a job without a name matches *');
    assert.ok(!nameMatcher('a*')(undefined));
    assert.ok(nameMatcher('(x)[y]+')('(x)[y]+'), 'regular-expression characters are literal');
  });

  it('keeps jobs by state, age and name together', () => {
    const job = (name: string, state: JobState, createdAt: number): Listed => ({ id: name, seq: 1, state, createdAt, updatedAt: createdAt, spec: { name } });
    const keep = jobFilter({ state: 'queued', name: 'a*', since: 100 });
    assert.ok(keep(job('ab', 'queued', 100)));
    assert.ok(!keep(job('ab', 'queued', 99)));
    assert.ok(!keep(job('ba', 'queued', 100)));
    assert.ok(!keep(job('ab', 'done', 100)));
  });
});

describe('orders and pages', () => {
  const random = rng(15);
  const jobs: Listed[] = Array.from({ length: 257 }, (_, i) => ({
    id: `id-${String(i).padStart(4, '0')}`,
    seq: i + 1,
    state: JOB_STATES[Math.floor(random() * JOB_STATES.length)]!,
    createdAt: 1000 + i,
    updatedAt: 1000 + Math.floor(random() * 50),
    spec: random() < 0.1 ? {} : { name: `n${Math.floor(random() * 30)}` },
  }));

  it('walks every order in pages by cursor: the whole list once, in order, with no page more than asked', () => {
    for (const sort of JOB_SORTS) {
      for (const desc of [false, true]) {
        const order = jobOrder(sort, desc);
        const whole = [...jobs].sort(order).map((j) => j.id);
        for (const limit of [1, 7, 100, 300]) {
          const seen: string[] = [];
          let cursor: Listed | undefined;
          for (;;) {
            const { page, more } = pageOf(jobs, order, limit, cursor);
            assert.ok(page.length <= limit);
            seen.push(...page.map((j) => j.id));
            if (!more) break;
            cursor = page[page.length - 1];
          }
          assert.deepEqual(seen, whole, `${sort} ${desc ? 'desc' : 'asc'} by ${limit}`);
        }
      }
    }
  });

  it('submitted order is submission order; desc is newest first; ties go by submission', () => {
    const newest = pageOf(jobs, jobOrder('submitted', true), 3).page.map((j) => j.seq);
    assert.deepEqual(newest, [257, 256, 255]);
    const byState = pageOf(jobs, jobOrder('state', false), 300).page;
    for (let i = 1; i < byState.length; i++) {
      const a = JOB_STATES.indexOf(byState[i - 1]!.state);
      const b = JOB_STATES.indexOf(byState[i]!.state);
      assert.ok(a < b || (a === b && byState[i - 1]!.seq < byState[i]!.seq));
    }
  });
});

describe('progress of a wait and why a job waits', () => {
  it('counts from the mark on; without one, from the oldest unfinished job', () => {
    const w = new World();
    w.project('p');
    w.worker('w1', res(4, 8192));
    const old = w.one('p', { argv: ['false'] });
    w.claim('w1');
    w.finish(old, 1);
    assert.equal(w.state(old), 'failed');
    const later = [w.one('p'), w.one('p')];
    const fromMark = progressOf(w.model, 'p', later[0]);
    assert.equal(fromMark.counts.queued, 2);
    assert.equal(fromMark.counts.failed, 0, 'the failure before the mark does not count');
    const unmarked = progressOf(w.model, 'p');
    assert.equal(unmarked.from, later[0]);
    assert.deepEqual(unmarked.failures, []);
    const all = progressOf(w.model, 'p', old);
    assert.deepEqual(all.failures.map((f) => f.id), [old]);
    assert.equal(progressOf(w.model, 'empty').from, undefined);
  });

  it('names dependencies, a worker too small, and room and turns', () => {
    const w = new World();
    w.project('p');
    w.worker('w1', res(4, 1000));
    const first = w.one('p');
    const next = w.one('p', { after: [first] });
    const big = w.one('p', { resources: res(16, 500) });
    const why = (id: string, offers = [] as { cores: number; memoryMb: number }[]) => explain(w.model, w.job(id), false, offers);

    assert.deepEqual(why(next).reasons, [{ kind: 'dependencies', count: 1, jobs: [{ id: first, state: 'queued' }] }]);
    const fit = why(big).reasons[0]!;
    assert.deepEqual(fit, { kind: 'no-worker-fits', asked: res(16, 500), largest: res(4, 1000), workers: 1, peers: 0 });
    assert.match(why(big).summary, /asks 16 cores, 500 MB; the largest offered is 4 cores, 1000 MB/);
    // A peer whose worker offers enough room makes it fit.
    assert.equal(why(big, [res(32, 4000)]).reasons[0]!.kind, 'waiting-for-room');
    const room = why(first).reasons[0]!;
    assert.equal(room.kind, 'waiting-for-room');
    w.claim('w1');
    assert.match(why(first).summary, /running on worker/);
  });
});

describe('the list route', () => {
  it('pages submission order from a cursor both ways, as the general order does, with a filter', async () => {
    const w = new World();
    w.project('p');
    const ids: string[] = [];
    for (let i = 0; i < 60; i++) ids.push(w.one('p', { name: i % 3 === 0 ? `keep-${i}` : `skip-${i}` }));
    const store = { model: w.model, archive: null as never };
    for (const order of ['asc', 'desc'] as const) {
      for (const name of [undefined, 'keep-*']) {
        const expected = ids.filter((_, i) => name === undefined || i % 3 === 0);
        if (order === 'desc') expected.reverse();
        const seen: string[] = [];
        let after: string | undefined;
        for (;;) {
          const page = await listJobs(store, w.model.project('p'), { ...jobListQuery.parse({ order, limit: '7', ...(name ? { name } : {}) }), after });
          seen.push(...page.jobs.map((j) => j.id));
          if (page.next === undefined) break;
          after = page.next;
        }
        assert.deepEqual(seen, expected, `${order} ${name ?? ''}`);
      }
    }
  });
});
