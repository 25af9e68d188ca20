/**
 * The pure rules behind usage: how much more a retry asks for (growAfter)
 * and the statistics over a project's jobs (projectStats).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { growAfter } from '../../src/core/retry-more.js';
import { namePrefix, projectStats, spread, type StatsJob } from '../../src/core/stats.js';
import type { Attempt, Usage } from '../../src/core/types.js';

const u = (wallS: number, cpuS: number, maxRssMb: number): Usage => ({ wallS, userS: cpuS, systemS: 0, maxRssMb });

describe('retry with more', () => {
  const spec = (memoryMb: number, timeoutS: number | null, retry: object) => ({ resources: { cores: 1, memoryMb }, timeoutS, retry });

  it('asks for max(asked × factor, peak × factor), rounded up, within the maximum', () => {
    assert.deepEqual(growAfter(spec(100, null, { oom: { factor: 1.5, maxMemoryMb: 1000 } }), 0, 'oom', u(1, 1, 90), 1000), { memoryMb: 150 });
    assert.deepEqual(growAfter(spec(100, null, { oom: { factor: 1.5, maxMemoryMb: 1000 } }), 0, 'oom', u(1, 1, 301), 1000), { memoryMb: 452 });
    assert.deepEqual(growAfter(spec(800, null, { oom: { factor: 2, maxMemoryMb: 1000 } }), 0, 'oom', u(1, 1, 800), 1000), { memoryMb: 1000 });
    assert.deepEqual(growAfter(spec(10, 60, { timeout: { factor: 2, maxWallTimeS: 1000 } }), 0, 'timeout', u(61.2, 1, 1), 61_200), { timeoutS: 123 });
  });

  it('says why it can grow no more: at the maximum, or out of attempts', () => {
    const atMax = growAfter(spec(1000, null, { oom: { factor: 2, maxMemoryMb: 1000 } }), 0, 'oom', u(1, 1, 999), 1000);
    assert.deepEqual(atMax, { cannot: 'out of memory at 1000 MB, and retry.oom.maxMemoryMb (1000 MB) allows no more' });
    const spent = growAfter(spec(100, null, { oom: { factor: 2, maxMemoryMb: 1000 }, attempts: 2 }), 2, 'oom', u(1, 1, 99), 1000);
    assert.match((spent as { cannot: string }).cannot, /asking for more 2 times/);
  });

  it('leaves other ends, and ends the retry does not cover, to maxRetries', () => {
    assert.equal(growAfter(spec(100, 10, { oom: { factor: 2, maxMemoryMb: 1000 } }), 0, 'timeout', u(10, 1, 1), 10_000), undefined);
    assert.equal(growAfter(spec(100, 10, { oom: { factor: 2, maxMemoryMb: 1000 } }), 0, 'exited', u(10, 1, 1), 10_000), undefined);
    assert.equal(growAfter({ resources: { cores: 1, memoryMb: 100 }, timeoutS: null }, 0, 'oom', u(1, 1, 1), 1000), undefined);
  });
});

describe('project statistics', () => {
  const attempt = (n: number, how: Attempt['how'], usage?: Usage, memoryMb = 0): Attempt => ({
    n,
    workerId: 'w',
    workerName: 'w',
    via: 'local',
    startedAt: 0,
    endedAt: 1,
    how,
    ...(usage ? { usage, limits: { memoryMb, timeoutS: null } } : {}),
  });
  const job = (name: string | undefined, state: StatsJob['state'], cores: number, attempts: Attempt[]): StatsJob => ({
    state,
    attempts,
    spec: { ...(name !== undefined ? { name } : {}), resources: { cores, memoryMb: 0 } },
  });

  it('takes nearest-rank percentiles', () => {
    assert.equal(spread([]), null);
    assert.deepEqual(spread([5]), { n: 1, min: 5, median: 5, p90: 5, max: 5 });
    assert.deepEqual(spread([10, 1, 2, 3, 4, 5, 6, 7, 8, 9]), { n: 10, min: 1, median: 5, p90: 9, max: 10 });
  });

  it('counts states and ends, and efficiency over measured attempts only', () => {
    const s = projectStats('p', [
      job('a-1', 'done', 2, [attempt(1, 'oom', u(10, 5, 200), 100), attempt(2, 'exited', u(10, 20, 150), 300)]),
      job('a-2', 'failed', 1, [attempt(1, 'timeout', u(4, 4, 50), 0)]),
      job(undefined, 'queued', 1, [attempt(1, 'lease-expired')]),
    ], true);
    assert.deepEqual(s.states, { waiting: 0, queued: 1, running: 0, done: 1, failed: 1, cancelled: 0 });
    assert.deepEqual(s.ends, { oom: 1, exited: 1, timeout: 1, 'lease-expired': 1 });
    assert.equal(s.measured, 3);
    assert.deepEqual(s.cpuEfficiency, { n: 3, min: 0.25, median: 1, p90: 1, max: 1 });
    // memory asked only where some was asked: 200/100 and 150/300
    assert.deepEqual(s.memoryEfficiency, { n: 2, min: 0.5, median: 0.5, p90: 2, max: 2 });
    assert.deepEqual(s.groups!.map((g) => [g.name, g.jobs]), [['a', 2], ['(no name)', 1]]);
  });

  it('groups by the name without its trailing number', () => {
    assert.equal(namePrefix('sim-water-042'), 'sim-water');
    assert.equal(namePrefix('run_7'), 'run');
    assert.equal(namePrefix('analyse'), 'analyse');
    assert.equal(namePrefix('2024'), '2024');
    assert.equal(namePrefix(undefined), '(no name)');
  });
});
