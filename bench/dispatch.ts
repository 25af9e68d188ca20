import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { benchServer, round } from './lib.js';

/**
 * Dispatch: trivial jobs through claim + result over the real API with fsync
 * on, simulated workers in a separate process. Jobs are queued first, so the
 * figure is the server's rate of handing out and taking back attempts.
 */
export async function dispatch(jobs: number, workers: number): Promise<{ jobsPerS: number; fsyncs: number; changesPerFsync: number }> {
  const b = await benchServer();
  try {
    for (let i = 0; i < jobs; i += 10_000) {
      const n = Math.min(10_000, jobs - i);
      await b.admin.submit(b.project, Array.from({ length: n }, () => ({ argv: ['true'] })));
    }
    const before = b.server.ctx.store.journalStats();
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(import.meta.dirname, 'sim-workers.ts'), b.server.url, join(b.server.identity.dir, 'ca.pem'), b.server.serverId, b.workerToken, String(workers), String(jobs)],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    await new Promise<void>((resolve, reject) => child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`sim-workers exited ${code}`)))));
    const { done, ms } = JSON.parse(out.trim().split('\n').pop()!) as { done: number; ms: number };
    const counted = b.server.model.countsOf(b.project).done;
    if (counted !== jobs) throw new Error(`dispatch: the server counts ${counted} done jobs, expected ${jobs}`);
    const after = b.server.ctx.store.journalStats();
    const fsyncs = after.fsyncs - before.fsyncs;
    return { jobsPerS: round((done / ms) * 1000, 0), fsyncs, changesPerFsync: round((after.records - before.records) / Math.max(1, fsyncs)) };
  } finally {
    await b.close();
  }
}
