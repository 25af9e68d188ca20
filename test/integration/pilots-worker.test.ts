/**
 * What a pilot asks of cpc-worker, without a batch system: `--idle-exit`
 * stops it cleanly once it has had nothing to run for that long, and
 * `--on-term abandon` makes a SIGTERM (a batch system cancelling the pilot)
 * kill its jobs without reporting them, so that they are re-queued as lost
 * instead of counted as failed.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { JobView } from '../../src/core/wire.js';
import { ROOT, cleanup, startTestServer, tempDir, until, type TestServer } from '../helpers/server.js';

const children = new Set<ChildProcess>();
after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await cleanup();
});

async function pilotWorker(ts: TestServer, name: string, extra: string[]) {
  const token = await ts.server.createWorkerToken(name);
  const args = ['--import', 'tsx', join(ROOT, 'bin', 'cpc-worker.ts'), '--server', ts.server.url, '--ca', ts.caFile(), '--server-id', ts.server.serverId];
  args.push('--cores', '1', '--memory', '256', '--name', name, '--work-dir', await tempDir('cpc-pilot-work-'), '--claim-wait', '1', ...extra);
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, CPC_WORKER_TOKEN: token }, stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return { child, exited, stderr: () => stderr };
}

async function job(ts: TestServer, id: string): Promise<JobView> {
  return ts.admin.call<JobView>('GET', `/jobs/${id}`);
}

/** The pilot stopped without reporting: its job comes back queued, its one attempt lost with the lease. */
async function assertRequeued(ts: TestServer, id: string, w: Awaited<ReturnType<typeof pilotWorker>>): Promise<void> {
  const end = await w.exited;
  assert.notEqual(end.code, null, w.stderr());
  const after = await until(
    'the job to leave the running state',
    async () => {
      const j = await job(ts, id);
      return j.state !== 'running' ? j : null;
    },
    { timeoutMs: 30_000 },
  );
  assert.equal(after.state, 'queued', JSON.stringify(after.attempts));
  assert.equal(after.attempts.length, 1);
  assert.equal(after.attempts[0]!.how, 'lease-expired', JSON.stringify(after.attempts[0]));
  assert.doesNotMatch(w.stderr(), /result delivered/);
}

describe('cpc-worker as a pilot', { timeout: 120_000 }, () => {
  it('--idle-exit: runs what there is, then stops by itself with exit code 0', async () => {
    const ts = await startTestServer();
    await ts.admin.createProject('idle');
    const { ids } = await ts.admin.call<{ ids: string[] }>('POST', '/projects/idle/jobs', { jobs: [{ argv: ['sh', '-c', 'echo hi'] }] });
    const w = await pilotWorker(ts, 'idler', ['--idle-exit', '1']);
    await until('the job to be done', async () => (await job(ts, ids[0]!)).state === 'done', { timeoutMs: 30_000 });
    const end = await w.exited;
    assert.deepEqual(end, { code: 0, signal: null }, w.stderr());
    assert.match(w.stderr(), /idle for 1 s; stopping/);
  });

  it('--on-term abandon: a SIGTERM kills the jobs unreported, and they are re-queued, not failed', async () => {
    const ts = await startTestServer({ heartbeatIntervalS: 0.5 });
    await ts.admin.createProject('term');
    const { ids } = await ts.admin.call<{ ids: string[] }>('POST', '/projects/term/jobs', { jobs: [{ argv: ['sleep', '60'], maxRetries: 0 }] });
    const w = await pilotWorker(ts, 'killed', ['--on-term', 'abandon']);
    await until('the job to run', async () => (await job(ts, ids[0]!)).state === 'running', { timeoutMs: 30_000 });
    // As Slurm does: the worker and its job are signalled together.
    const pid = w.child.pid!;
    w.child.kill('SIGTERM');
    try {
      process.kill(-(await until('the job process', async () => findChild(pid), { timeoutMs: 5000 })), 'SIGTERM');
    } catch {
      // already gone with its worker
    }
    await assertRequeued(ts, ids[0]!, w);
  });

  it('--on-term abandon: a job that catches the SIGTERM and exits 0 is re-queued too, not reported done', async () => {
    const ts = await startTestServer({ heartbeatIntervalS: 0.5 });
    await ts.admin.createProject('trap');
    // A script that cleans up and exits 0 when told to stop, as many do.
    const script = "trap 'exit 0' TERM; sleep 60 & wait";
    const { ids } = await ts.admin.call<{ ids: string[] }>('POST', '/projects/trap/jobs', { jobs: [{ argv: ['sh', '-c', script], maxRetries: 0 }] });
    const w = await pilotWorker(ts, 'trapped', ['--on-term', 'abandon']);
    await until('the job to run', async () => (await job(ts, ids[0]!)).state === 'running', { timeoutMs: 30_000 });
    const pid = w.child.pid!;
    const shell = await until('the job process', async () => findChild(pid, 'sh'), { timeoutMs: 5000 });
    // The worst order for the worker: the job hears of it first and has
    // exited 0 by the time the worker's own signal arrives, a moment later.
    process.kill(-shell, 'SIGTERM');
    await new Promise((r) => setTimeout(r, 10));
    w.child.kill('SIGTERM');
    await assertRequeued(ts, ids[0]!, w);
  });
});

/** The pid of the job (`command`) the worker `parent` started (it leads its own process group). */
async function findChild(parent: number, command = 'sleep'): Promise<number | null> {
  const { readdirSync, readFileSync } = await import('node:fs');
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === parent && readFileSync(`/proc/${name}/cmdline`, 'utf8').startsWith(`${command}\0`)) return Number(name);
    } catch {
      // gone
    }
  }
  return null;
}
