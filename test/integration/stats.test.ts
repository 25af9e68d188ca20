/**
 * `cpcc stats` and the usage figures behind it, over a known set of jobs
 * whose attempts a simulated worker reports with chosen usage; a running
 * attempt's usage from heartbeats in `cpcc job`; /metrics counters; and bad
 * usage reports and limits refused in the user's terms.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request, Agent } from 'undici';
import { ApiError } from '../../src/client/api/client.js';
import type { ProjectStats } from '../../src/core/stats.js';
import type { Usage } from '../../src/core/types.js';
import { cleanup, cpcc, cpccHome, cpccOk, resultOf, startTestServer, tempDir, type SimWorker, type TestServer } from '../helpers/server.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

after(cleanup);

const METRICS_TOKEN = 'scrape-token-0123456789abcdef';

function usage(wallS: number, cpuS: number, maxRssMb: number): Usage {
  return { wallS, userS: cpuS * 0.75, systemS: cpuS * 0.25, maxRssMb };
}

async function claimAll(w: SimWorker, n: number): Promise<{ id: string; attempt: number }[]> {
  const reply = await w.client.claim(w.workerId, { waitS: 0, max: n });
  return reply.jobs.map((j) => ({ id: j.id, attempt: j.attempt }));
}

describe('usage statistics', () => {
  let ts: TestServer;
  let w: SimWorker;
  let home: string;
  const ids: Record<string, string> = {};

  before(async () => {
    ts = await startTestServer({ metrics: 'token', metricsToken: METRICS_TOKEN, heartbeatIntervalS: 0.5, leaseS: 3600 });
    w = await ts.worker({ name: 'sim', cores: 16, memoryMb: 64 * 1024 });
    await ts.admin.createProject('known');
    home = await cpccHome(ts, 'known');
    // sim-1..sim-4 (2 cores, 1000 MB each) and fit-1 (1 core, 400 MB), each reported with chosen figures.
    const { ids: got } = await ts.admin.submit('known', [
      { name: 'sim-1', argv: ['x'], cores: 2, memoryMb: 1000 },
      { name: 'sim-2', argv: ['x'], cores: 2, memoryMb: 1000 },
      { name: 'sim-3', argv: ['x'], cores: 2, memoryMb: 1000 },
      { name: 'sim-4', argv: ['x'], cores: 2, memoryMb: 1000 },
      { name: 'fit-1', argv: ['x'], cores: 1, memoryMb: 400 },
      { name: 'waits', argv: ['x'], cores: 1, memoryMb: 400 },
    ]);
    ['s1', 's2', 's3', 's4', 'f1', 'run'].forEach((k, i) => (ids[k] = got[i]!));
    const claims = await claimAll(w, 6);
    const attempt = (id: string) => claims.find((c) => c.id === id)!.attempt;
    const report = (id: string, u: Usage, over = {}) => w.client.result(w.workerId, resultOf(id, attempt(id), { usage: u, durationMs: u.wallS * 1000, ...over }));
    await report(ids.s1!, usage(10, 10, 100));
    await report(ids.s2!, usage(20, 30, 200));
    await report(ids.s3!, usage(30, 60, 300));
    await report(ids.s4!, usage(40, 80, 1200), { how: 'oom', exitCode: null, signal: 'SIGKILL' });
    await report(ids.f1!, usage(100, 50, 200), { exitCode: 1 });
  });

  it('counts states and ends and gives min, median, p90 and max of wall, CPU, memory and efficiency (cpcc stats --json)', async () => {
    const s = JSON.parse(await cpccOk(cpcc(home, ['stats', '--json']))) as ProjectStats;
    assert.equal(s.project, 'known');
    assert.equal(s.jobs, 6);
    assert.deepEqual(s.states, { waiting: 0, queued: 0, running: 1, done: 3, failed: 2, cancelled: 0 });
    assert.deepEqual(s.ends, { exited: 4, oom: 1 });
    assert.equal(s.measured, 5);
    assert.deepEqual(s.wallS, { n: 5, min: 10, median: 30, p90: 100, max: 100 });
    assert.deepEqual(s.cpuS, { n: 5, min: 10, median: 50, p90: 80, max: 80 });
    assert.deepEqual(s.maxRssMb, { n: 5, min: 100, median: 200, p90: 1200, max: 1200 });
    // CPU ÷ (cores × wall): 0.5, 0.75, 1, 1, 0.5
    assert.deepEqual(s.cpuEfficiency, { n: 5, min: 0.5, median: 0.75, p90: 1, max: 1 });
    // peak ÷ asked: 0.1, 0.2, 0.3, 1.2, 0.5
    assert.deepEqual(s.memoryEfficiency, { n: 5, min: 0.1, median: 0.3, p90: 1.2, max: 1.2 });
    assert.equal(s.totalCpuS, 230);
    assert.equal(s.groups, undefined);
  });

  it('groups by name prefix with --by name, and prints a table', async () => {
    const s = JSON.parse(await cpccOk(cpcc(home, ['stats', 'known', '--by', 'name', '--json']))) as ProjectStats;
    assert.deepEqual(s.groups!.map((g) => [g.name, g.jobs, g.measured]), [['sim', 4, 4], ['fit', 1, 1], ['waits', 1, 0]]);
    const sim = s.groups![0]!;
    assert.deepEqual(sim.wallS, { n: 4, min: 10, median: 20, p90: 40, max: 40 });
    const text = await cpccOk(cpcc(home, ['stats', '--by', 'name']));
    assert.match(text, /project known.*6 jobs/);
    assert.match(text, /attempts ended: 4 exited, 1 oom/);
    assert.match(text, /peak memory\s+100 MB\s+200 MB\s+1200 MB\s+1200 MB\s+5/);
    assert.match(text, /\bsim\b.*4 jobs/);
    const bad = await cpcc(home, ['stats', '--by', 'colour']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--by/);
  });

  it('shows a running attempt\'s latest usage from heartbeats, and counts CPU seconds and ends in /metrics', async () => {
    const running = ids.run!;
    const job = await ts.admin.job(running);
    const n = job.attempts[0]!.n;
    await w.client.heartbeat(w.workerId, { attempts: [{ jobId: running, attempt: n, started: true }], usage: [{ jobId: running, attempt: n, usage: usage(5, 4, 321) }] });
    const seen = await ts.admin.job(running);
    assert.equal(seen.attempts[0]!.live, 'running');
    assert.equal(seen.attempts[0]!.usage?.maxRssMb, 321);
    const shown = await cpccOk(cpcc(home, ['job', running]));
    assert.match(shown, /4\.00s cpu, 321M/);

    const dispatcher = new Agent({ connect: { ca: ts.server.caPem, rejectUnauthorized: false } });
    try {
      const res = await request(ts.server.url + '/metrics', { dispatcher, headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
      const text = await res.body.text();
      assert.match(text, /^cpc_attempt_cpu_seconds_total\{mode="user"\} 172\.5$/m);
      assert.match(text, /^cpc_attempt_cpu_seconds_total\{mode="system"\} 57\.5$/m);
      assert.match(text, /^cpc_attempts_finished_total\{how="oom",success="false"\} 1$/m);
    } finally {
      await dispatcher.close();
    }
  });

  it('refuses usage that cannot be true: negative figures with INVALID_FIELD; CPU far past cores × wall is not kept (the result is)', async () => {
    const { ids: [a, b] } = await ts.admin.submit('known', [{ argv: ['x'] }, { argv: ['x'] }]);
    const claims = await claimAll(w, 2);
    const attempt = (id: string) => claims.find((c) => c.id === id)!.attempt;
    await assert.rejects(
      w.client.result(w.workerId, resultOf(a!, attempt(a!), { usage: { wallS: 1, userS: -1, systemS: 0, maxRssMb: 1 } })),
      (e: unknown) => e instanceof ApiError && e.status === 400 && e.code === 'INVALID_FIELD',
    );
    assert.equal((await ts.admin.job(a!)).state, 'running', 'the refused report changed nothing');
    await w.client.result(w.workerId, resultOf(b!, attempt(b!), { usage: { wallS: 1, userS: 500, systemS: 0, maxRssMb: 1 } }));
    const done = await ts.admin.job(b!);
    assert.equal(done.state, 'done');
    assert.equal(done.attempts[0]!.usage, undefined);
  });

  it('refuses bad limits and retries in the user\'s terms (cpcc flags, job files, the API)', async () => {
    const flag = await cpcc(home, ['submit', '--retry-oom', '0.5:4G', '--', 'true']);
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /--retry-oom.*factor '0\.5' must be a number above 1/);
    const time = await cpcc(home, ['submit', '--time', '0', '--', 'true']);
    assert.equal(time.code, 2);
    assert.match(time.stderr, /--time/);
    const dir = await tempDir('cpc-stats-files-');
    const file = join(dir, 'jobs.json');
    writeFileSync(file, JSON.stringify([{ argv: ['true'], retry: { oom: { factor: 2, maxMemoryMb: -5 } } }]));
    const fromFile = await cpcc(home, ['submit', '--file', file]);
    assert.equal(fromFile.code, 1);
    assert.match(fromFile.stderr, /retry\.oom\.maxMemoryMb must be a whole number/);
    writeFileSync(file, JSON.stringify([{ argv: ['true'], wallTimeS: 5, timeoutS: 6 }]));
    assert.match((await cpcc(home, ['submit', '--file', file])).stderr, /wallTimeS and timeoutS name the same limit/);
    writeFileSync(file, JSON.stringify([{ argv: ['true'], wallTimeS: 90 }]));
    await cpccOk(cpcc(home, ['submit', '--file', file]));
    const before = (await ts.admin.jobs('known', { limit: 1000 })).jobs.length;
    await assert.rejects(
      ts.admin.submit('known', [{ argv: ['true'], retry: { timeout: { factor: 1, maxWallTimeS: 10 } } }]),
      (e: unknown) => e instanceof ApiError && e.code === 'INVALID_FIELD',
    );
    assert.equal((await ts.admin.jobs('known', { limit: 1000 })).jobs.length, before, 'nothing submitted');
    const timed = (await ts.admin.jobs('known', { limit: 1000 })).jobs.find((j) => j.timeoutS === 90);
    assert.ok(timed, 'wallTimeS in a job file is the time limit');
  });
});
