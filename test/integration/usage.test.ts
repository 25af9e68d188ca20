/**
 * Usage per attempt, measured by real `cpc-worker` processes: a known
 * workload's CPU and memory against the job's own account of them, memory
 * and wall-time limits that end attempts `oom` and `timeout`, retries that
 * ask for more, and the figures kept across a restart, the archive and
 * `cpcc save`/`load`.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Usage } from '../../src/core/types.js';
import type { JobView } from '../../src/core/wire.js';
import { linkedSites, stopSite } from '../helpers/federation.js';
import { cleanup, cpcc, cpccHome, cpccOk, spawnWorker, startTestServer, tempDir, until, type TestServer, type WorkerProcess } from '../helpers/server.js';

after(cleanup);

const FAST = { heartbeatIntervalS: 0.5, leaseS: 5, archiveAfterS: 3600 };

async function startWorker(ts: TestServer, name: string, args: string[] = []): Promise<WorkerProcess> {
  const token = await ts.server.createWorkerToken(name);
  return spawnWorker({
    url: ts.server.url,
    caFile: ts.caFile(),
    serverId: ts.server.serverId,
    token,
    name,
    cores: 2,
    memoryMb: 2048,
    workDir: await tempDir(`cpc-work-${name}-`),
    args,
  });
}

async function finished(ts: TestServer, id: string, timeoutMs = 60_000): Promise<JobView> {
  return until(
    `job ${id} to finish`,
    async () => {
      const j = await ts.admin.job(id);
      return ['done', 'failed', 'cancelled'].includes(j.state) ? j : null;
    },
    { timeoutMs, intervalMs: 200 },
  );
}

/**
 * About 1 CPU second, then 200 MB held for 1.5 s while it sleeps; it prints
 * its own account (getrusage) of both, the truth the worker's figures are held to.
 */
const WORKLOAD = [
  'const t0 = process.cpuUsage();',
  'let x = 0; while (true) { for (let i = 0; i < 1e6; i++) x += i; const u = process.cpuUsage(t0); if (u.user + u.system > 1e6) break; }',
  'const held = Buffer.alloc(200 * 1024 * 1024, 1);',
  'setTimeout(() => { const u = process.cpuUsage(); const r = process.resourceUsage();',
  ' console.log(JSON.stringify({ cpuS: (u.user + u.system) / 1e6, maxRssMb: r.maxRSS / 1024, x: x > 0, held: held.length })); }, 1500);',
].join('\n');

function assertNear(measured: number, truth: number, what: string): void {
  assert.ok(Math.abs(measured - truth) <= truth * 0.2, `${what}: measured ${measured}, truth ${truth} (more than 20 % apart)`);
}

function workerSaysMethod(w: WorkerProcess, method: string): Promise<true> {
  return until(`the worker to say it measures by ${method}`, () => w.stderr().includes(`measuring usage by ${method}`) || null, { timeoutMs: 20_000 });
}

describe('usage measured by real workers', () => {
  const ways = [
    { method: 'cgroup-v1', args: [] as string[] },
    { method: 'proc', args: [] as string[] },
    // The sandbox has a pid namespace of its own: its processes are found from the host side.
    { method: 'proc', args: ['--isolation', 'sandbox'] },
  ];
  for (const { method, args } of ways) {
    it(`measures a known workload within 20 % (${[method, ...args].join(' ')})`, async (t) => {
      const ts = await startTestServer(FAST);
      const w = await startWorker(ts, `meter-${method}`, ['--usage', method, ...args]);
      if (args.includes('sandbox')) {
        await until('the worker to start or refuse', () => (w.stderr().includes('measuring usage by') || w.child.exitCode !== null ? true : null), { timeoutMs: 20_000 });
        if (w.child.exitCode !== null) return t.skip(`no sandbox here: ${w.stderr().slice(-200)}`);
      }
      if (method === 'cgroup-v1') {
        const failed = await until('the worker to start or refuse', () => (w.stderr().includes('measuring usage by') || w.child.exitCode !== null ? true : null), { timeoutMs: 20_000 });
        if (failed && w.child.exitCode !== null) return t.skip(`no cgroups here: ${w.stderr().slice(-200)}`);
      }
      await workerSaysMethod(w, method);
      await ts.admin.createProject('meter');
      const { ids } = await ts.admin.submit('meter', [{ name: 'known', argv: [process.execPath, '-e', WORKLOAD], memoryMb: 1024 }]);
      const job = await finished(ts, ids[0]!);
      assert.equal(job.state, 'done', job.reason);
      const truth = JSON.parse(job.stdoutTail!.trim()) as { cpuS: number; maxRssMb: number };
      const usage = job.attempts[0]!.usage!;
      assert.ok(usage, 'the attempt carries its usage');
      assertNear(usage.userS + usage.systemS, truth.cpuS, 'CPU seconds');
      assertNear(usage.maxRssMb, truth.maxRssMb, 'peak memory (MB)');
      assert.ok(usage.wallS >= 1.5 && usage.wallS < 60, `wall ${usage.wallS}`);
      assert.deepEqual(job.attempts[0]!.limits, { memoryMb: 1024, timeoutS: null });
    });
  }

  it('ends an attempt past its memory oom, and its retry asks for more and succeeds', async () => {
    const ts = await startTestServer(FAST);
    await startWorker(ts, 'oom');
    await ts.admin.createProject('oom');
    // Holds 300 MB: over a 150 MB limit, under the 450 MB the retry asks for (max(150, peak) × 3, at most 1000).
    const hog = `const b = Buffer.alloc(300 * 1024 * 1024, 1); setTimeout(() => console.log('held', b.length), 500);`;
    const { ids } = await ts.admin.submit('oom', [{ name: 'hog', argv: [process.execPath, '-e', hog], memoryMb: 150, retry: { oom: { factor: 3, maxMemoryMb: 1000 } } }]);
    const job = await finished(ts, ids[0]!);
    assert.equal(job.state, 'done', job.reason);
    assert.equal(job.attempts.length, 2);
    const [first, second] = job.attempts as [JobView['attempts'][0], JobView['attempts'][0]];
    assert.equal(first.how, 'oom');
    assert.match(first.reason ?? '', /out of memory \(limit 150 MB/);
    assert.deepEqual(first.limits, { memoryMb: 150, timeoutS: null });
    assert.ok(second.limits!.memoryMb >= 450 && second.limits!.memoryMb <= 1000, `asked ${second.limits!.memoryMb} MB`);
    assert.equal(second.limits!.memoryMb, Math.min(1000, Math.ceil(Math.max(150 * 3, first.usage!.maxRssMb * 3))));
    assert.equal(second.how, 'exited');
    assert.equal(job.resources.memoryMb, second.limits!.memoryMb);
    // cpcc job shows how the attempt ended and what it used.
    const home = await cpccHome(ts, 'oom');
    const shown = await cpccOk(cpcc(home, ['job', ids[0]!]));
    assert.match(shown, /\boom\b/);
    assert.match(shown, /cpu, \d+/);
  });

  it('ends an attempt past its wall time timeout, grows the time to its maximum, then fails saying so', async () => {
    const ts = await startTestServer(FAST);
    await startWorker(ts, 'slow');
    await ts.admin.createProject('slow');
    const { ids } = await ts.admin.submit('slow', [{ name: 'nap', argv: ['sleep', '60'], timeoutS: 1, killGraceS: 0, retry: { timeout: { factor: 2, maxWallTimeS: 4 } } }]);
    const job = await finished(ts, ids[0]!);
    assert.equal(job.state, 'failed');
    assert.ok(job.attempts.length >= 2, `${job.attempts.length} attempts`);
    assert.ok(job.attempts.every((a) => a.how === 'timeout'));
    assert.equal(job.attempts[0]!.limits?.timeoutS, 1);
    // Each next attempt asks for max(limit × 2, measured wall × 2), at most 4 s.
    for (let i = 1; i < job.attempts.length; i++) {
      const prev = job.attempts[i - 1]!;
      assert.equal(job.attempts[i]!.limits?.timeoutS, Math.min(4, Math.ceil(Math.max(prev.limits!.timeoutS! * 2, prev.usage!.wallS * 2))));
    }
    assert.equal(job.attempts.at(-1)!.limits?.timeoutS, 4);
    assert.match(job.reason, /timed out after 4s, and retry.timeout.maxWallTimeS \(4s\) allows no more/);
  });

  it('keeps usage across a restart, in the archive, and through cpcc save and load', async () => {
    const ts = await startTestServer(FAST);
    const w = await startWorker(ts, 'keep');
    await ts.admin.createProject('keep');
    const { ids } = await ts.admin.submit('keep', [{ name: 'burn', shell: 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done' }]);
    const job = await finished(ts, ids[0]!);
    const usage = job.attempts[0]!.usage as Usage;
    assert.ok(usage && usage.wallS > 0, 'measured');
    await w.stop('SIGTERM');

    const home = ts.home;
    await ts.server.close();
    const again = await startTestServer({ ...FAST, home, archiveAfterS: 0 });
    assert.deepEqual((await again.admin.job(ids[0]!)).attempts[0]!.usage, usage, 'after a restart');
    const archived = await until('the job to be archived', async () => {
      const j = await again.admin.job(ids[0]!);
      return j.archived ? j : null;
    }, { timeoutMs: 30_000 });
    assert.deepEqual(archived.attempts[0]!.usage, usage, 'in the archive');

    const data = await tempDir('cpc-usage-save-');
    const cpccA = await cpccHome(again, 'keep');
    await cpccOk(cpcc(cpccA, ['save', 'keep'], { cwd: data }));
    const other = await startTestServer(FAST);
    const cpccB = await cpccHome(other, 'copy');
    await cpccOk(cpcc(cpccB, ['load', join(data, 'keep.tar'), 'copy']));
    assert.deepEqual((await other.admin.job(ids[0]!)).attempts[0]!.usage, usage, 'after save and load');
  });

  it("brings a delegated attempt's usage home with its result", async () => {
    const [home, borrower] = await linkedSites('usage-home', 'usage-borrower');
    try {
      await home.admin.createProject('p');
      const w = spawnWorker({
        url: borrower.url,
        caFile: join(borrower.home, 'identity', 'ca.pem'),
        serverId: borrower.serverId,
        token: borrower.workerToken,
        name: 'borrowing',
        cores: 2,
        memoryMb: 2048,
        workDir: await tempDir('cpc-work-borrowing-'),
      });
      const { ids } = await home.admin.submit('p', [{ name: 'away', argv: [process.execPath, '-e', WORKLOAD], memoryMb: 1024 }]);
      const job = await until(
        'the delegated job to finish at home',
        async () => {
          const j = await home.admin.job(ids[0]!);
          return ['done', 'failed'].includes(j.state) ? j : null;
        },
        { timeoutMs: 60_000, intervalMs: 200 },
      );
      await w.stop('SIGTERM');
      assert.equal(job.state, 'done', job.reason);
      assert.equal(job.attempts[0]!.via, borrower.serverId);
      const truth = JSON.parse(job.stdoutTail!.trim()) as { cpuS: number; maxRssMb: number };
      assertNear(job.attempts[0]!.usage!.maxRssMb, truth.maxRssMb, 'peak memory at home (MB)');
    } finally {
      await Promise.all([stopSite(home), stopSite(borrower)]);
    }
  });
});
