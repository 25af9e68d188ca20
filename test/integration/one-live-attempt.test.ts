/**
 * At most one live attempt per job, with the real parts: a real server, a
 * real `cpc-worker` and cpcc. A job is cancelled and retried at once while
 * its process still runs (and takes its time to stop); the processes of the
 * job, found in /proc by the CPC_JOB_ID its environment carries, are never
 * two at a time, and the retry is handed out only after the first is gone.
 * `cpcc job` says why the job waits meanwhile, and each attempt's state.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { JobView } from '../../src/core/wire.js';
import { cleanup, cpcc, cpccHome, killAtCleanup, spawnWorker, startTestServer, tempDir, until, type CpccRun, type TestServer, type WorkerProcess } from '../helpers/server.js';

after(cleanup);

/** The attempt numbers of the live (not zombie) processes whose environment names job `id`. */
function processesOf(id: string): { pid: number; attempt: number }[] {
  const out: { pid: number; attempt: number }[] = [];
  const key = `CPC_JOB_ID=${id}\0`;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const env = readFileSync(`/proc/${name}/environ`, 'latin1');
      if (!env.includes(key)) continue;
      if (/^State:\s+Z/m.test(readFileSync(`/proc/${name}/status`, 'utf8'))) continue;
      const attempt = Number(/(?:^|\0)CPC_ATTEMPT=(\d+)\0/.exec(env)?.[1]);
      out.push({ pid: Number(name), attempt });
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return out;
}

/** Jobs run as users of their own when the tests run as root; otherwise as the worker, which then needs its token in a file. */
async function startWorker(ts: TestServer, name: string, more: string[] = []): Promise<WorkerProcess> {
  const token = await ts.server.createWorkerToken(name);
  const home = await tempDir('cpc-one-live-token-');
  const args =
    process.getuid?.() === 0
      ? ['--isolation', 'user']
      : (writeFileSync(join(home, 'token'), token, { mode: 0o600 }), ['--isolation', 'none', '--shared-identity', '--token-file', join(home, 'token')]);
  return spawnWorker({ url: ts.server.url, caFile: ts.caFile(), serverId: ts.server.serverId, token, name, cores: 2, memoryMb: 512, workDir: await tempDir('cpc-one-live-work-'), args: [...args, ...more] });
}

function ok(run: CpccRun): string {
  assert.equal(run.code, 0, `cpcc failed: ${run.stderr}`);
  return run.stdout;
}

describe('at most one live attempt per job', () => {
  it('an attempt shows running as soon as its process starts, not a heartbeat interval later', async () => {
    // Heartbeats an hour apart: only the heartbeat a start brings can tell the server within the test.
    const ts = await startTestServer({ heartbeatIntervalS: 3600 });
    await ts.admin.createProject('states');
    const worker = await startWorker(ts, 'w-states', ['--on-term', 'abandon']);
    const [id] = (await ts.admin.submit('states', [{ argv: ['sleep', '300'] }])).ids as [string];
    await until('the job to start', () => {
      const procs = processesOf(id);
      for (const p of procs) killAtCleanup(p.pid);
      return procs.length > 0 || null;
    }, { timeoutMs: 30_000, intervalMs: 20 });
    const view = await until('attempt 1 to show as running', async () => {
      const j = await ts.admin.job(id);
      return j.attempts[0]?.live === 'running' ? j : null;
    }, { timeoutMs: 60_000, intervalMs: 50 });
    assert.equal(view.state, 'running');
    const beats = await ts.admin.heartbeats();
    assert.deepEqual(beats.leases.map((l) => [l.jobId, l.live]), [[id, 'running']]);
    // Stopped with its jobs (SIGTERM, --on-term abandon): nothing is left.
    await worker.stop('SIGTERM');
    await until('the job to stop with its worker', () => processesOf(id).length === 0 || null, { timeoutMs: 60_000, intervalMs: 100 });
  });

  it('cancel then retry at once: the retry runs only once the first process is gone, and cpcc job says why it waits', async () => {
    // Heartbeats often, leases long: the retry may go out only on the worker's word, not because a lease ran out.
    const ts = await startTestServer({ heartbeatIntervalS: 0.5, leaseS: 600 });
    await ts.admin.createProject('once');
    const home = await cpccHome(ts, 'once');
    const worker = await startWorker(ts, 'w-once');
    // Told to stop, the job lingers until the test has looked (or the worker's kill grace runs out):
    // a window in which a second copy would show.
    const gate = await tempDir('cpc-one-live-gate-');
    chmodSync(gate, 0o755);
    const release = join(gate, 'release');
    const script = `trap 'while [ ! -e ${release} ]; do sleep 0.1; done; exit 143' TERM; sleep 300 & wait`;
    const id = ok(await cpcc(home, ['submit', '--shell', '--', script])).trim();
    const job = (): Promise<JobView> => ts.admin.job(id);

    await until('attempt 1 to run', () => processesOf(id).some((p) => p.attempt === 1) || null, { timeoutMs: 30_000, intervalMs: 50 });
    for (const p of processesOf(id)) killAtCleanup(p.pid);
    await until('attempt 1 to show as running', async () => ((await job()).attempts[0]?.live === 'running' ? true : null), { timeoutMs: 30_000, intervalMs: 100 });

    // Watch the job's processes from now on: never two attempts alive at once.
    const seen: { at: number; attempts: number[] }[] = [];
    let most = 0;
    const watch = setInterval(() => {
      const procs = processesOf(id);
      for (const p of procs) killAtCleanup(p.pid);
      const attempts = [...new Set(procs.map((p) => p.attempt))];
      most = Math.max(most, attempts.length);
      seen.push({ at: Date.now(), attempts });
    }, 20);
    try {
      ok(await cpcc(home, ['cancel', id]));
      ok(await cpcc(home, ['retry', id]));

      // While attempt 1 stops, the job is queued and says what it waits for.
      const held = await job();
      assert.equal(held.state, 'queued');
      assert.match(held.reason, /^waiting for attempt 1 to stop on worker w-once$/);
      assert.deepEqual(held.heldBy, { attempt: 1, worker: 'w-once', via: 'local' });
      assert.equal(held.attempts[0]!.live, 'stopping');
      assert.equal(held.attempts.length, 1, 'no second attempt yet');
      const text = ok(await cpcc(home, ['job', id]));
      assert.match(text, /waits:\s+attempt 1 is still stopping on worker w-once; the job runs again once that process is gone/);
      assert.match(text, /\bstopping\b/);
      assert.ok(processesOf(id).some((p) => p.attempt === 1), 'attempt 1 was still alive while the job waited');
      assert.ok(!processesOf(id).some((p) => p.attempt === 2));
      writeFileSync(release, '');

      await until('attempt 2 to run', () => processesOf(id).some((p) => p.attempt === 2) || null, { timeoutMs: 60_000, intervalMs: 20 });
      await until('attempt 2 to show as running', async () => {
        const j = await job();
        return j.attempts[1]?.live === 'running' ? j : null;
      }, { timeoutMs: 30_000, intervalMs: 100 }).then((j) => {
        assert.equal(j.state, 'running');
        assert.equal(j.attempts[0]!.live, 'ended');
        assert.equal(j.attempts[0]!.how, 'cancelled');
        assert.equal(j.heldBy, undefined);
      });
      const shown = ok(await cpcc(home, ['job', id]));
      assert.match(shown, /process/);
      assert.match(shown, /\bended\b/);
      assert.match(shown, /\brunning\b/);
      assert.doesNotMatch(shown, /waits:/);
    } finally {
      clearInterval(watch);
    }
    assert.equal(most, 1, `two attempts of the job were alive at once: ${JSON.stringify(seen.filter((s) => s.attempts.length > 1).slice(0, 3))}`);
    const lastOf1 = Math.max(...seen.filter((s) => s.attempts.includes(1)).map((s) => s.at));
    const firstOf2 = Math.min(...seen.filter((s) => s.attempts.includes(2)).map((s) => s.at));
    assert.ok(lastOf1 < firstOf2, 'attempt 2 started only after attempt 1 was gone');

    ok(await cpcc(home, ['cancel', id]));
    await until('the job to stop for good', () => processesOf(id).length === 0 || null, { timeoutMs: 30_000, intervalMs: 100 });
    await worker.stop('SIGTERM');
  });
});
