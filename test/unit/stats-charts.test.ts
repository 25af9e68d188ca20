/**
 * What the dashboard draws from a project's jobs (core/stats.ts): histograms
 * of wall time and peak memory, and how many attempts ran over time.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chartsOf, histogram, projectStats, runningOverTime, type StatsJob } from '../../src/core/stats.js';
import type { Attempt } from '../../src/core/types.js';

describe('histogram', () => {
  it('is null without values, one bin when all values are equal', () => {
    assert.equal(histogram([]), null);
    assert.deepEqual(histogram([3, 3, 3]), { edges: [3, 3], counts: [3] });
  });

  it('bins about √n equal-width bins from least to greatest, the greatest in the last bin', () => {
    // 9 values → 3 bins of width 3 over [0, 9]
    assert.deepEqual(histogram([0, 1, 2.9, 3, 5, 6, 8, 9, 9]), { edges: [0, 3, 6, 9], counts: [3, 2, 4] });
    const h = histogram(Array.from({ length: 10_000 }, (_, i) => i))!;
    assert.equal(h.counts.length, 20, 'at most 20 bins');
    assert.equal(h.counts.reduce((a, b) => a + b, 0), 10_000);
    assert.equal(h.edges.length, 21);
  });
});

describe('running over time', () => {
  it('steps up at each start and down at each end; open attempts run until now', () => {
    const s = runningOverTime([{ startedAt: 0, endedAt: 10 }, { startedAt: 5, endedAt: 10 }, { startedAt: 5 }, { startedAt: 20, endedAt: 30 }], 100);
    assert.deepEqual(s, { t: [0, 5, 10, 20, 30, 100], running: [1, 3, 1, 2, 1, 1] });
    assert.deepEqual(runningOverTime([], 100), { t: [], running: [] });
  });

  it('merges steps past the limit, keeping the most that ran in each span', () => {
    // 100 attempts of 1 ms, one after another, and 5 at once in the middle
    const spans = Array.from({ length: 100 }, (_, i) => ({ startedAt: i * 10, endedAt: i * 10 + 1 }));
    for (let k = 0; k < 4; k++) spans.push({ startedAt: 500, endedAt: 501 });
    const s = runningOverTime(spans, 10_000, 10);
    assert.equal(s.t.length, 10);
    assert.equal(Math.max(...s.running), 5);
    assert.equal(s.running.filter((n) => n === 5).length, 1);
    assert.equal(s.t[0], 0);
  });
});

describe('charts of a project', () => {
  const attempt = (n: number, startedAt: number, endedAt: number | undefined, wallS?: number, maxRssMb?: number): Attempt => ({
    n,
    workerId: 'w',
    workerName: 'w',
    via: 'local',
    startedAt,
    ...(endedAt !== undefined ? { endedAt, how: 'exited' as const } : {}),
    ...(wallS !== undefined ? { usage: { wallS, userS: 0, systemS: 0, maxRssMb: maxRssMb ?? 0 } } : {}),
  });
  const job = (attempts: Attempt[]): StatsJob => ({ state: 'done', attempts, spec: { resources: { cores: 1, memoryMb: 0 } } });

  it('counts measured attempts in the histograms and every attempt in the timeline', () => {
    const jobs = [job([attempt(1, 0, 1000, 1, 100), attempt(2, 1000, 5000, 4, 400)]), job([attempt(1, 500, undefined)]), job([attempt(1, 0, 4000, 4, 100)])];
    const c = chartsOf(jobs, 9000);
    assert.deepEqual(c.wallS, { edges: [1, 2.5, 4], counts: [1, 2] });
    assert.deepEqual(c.maxRssMb, { edges: [100, 250, 400], counts: [2, 1] });
    assert.deepEqual(c.running, { t: [0, 500, 1000, 4000, 5000, 9000], running: [2, 3, 3, 2, 1, 1] });
    assert.equal(projectStats('p', jobs).charts, undefined, 'only when asked');
    assert.deepEqual(projectStats('p', jobs, false, 9000).charts, c);
  });
});
