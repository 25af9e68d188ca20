import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { benchServer, connectPeers, round, type Bench } from './lib.js';

/**
 * Dispatch: trivial jobs through claim + result over the real API with fsync
 * on, simulated workers in a separate process. Jobs are queued first, so the
 * figure is the server's rate of handing out and taking back attempts.
 *
 * Delegated: the jobs are queued on a peer (home) and the workers belong to
 * the asking server, so every job goes claim → peer claim → result → peer
 * result over the link.
 */
export async function dispatch(
  jobs: number,
  workers: number,
  opts: { delegated?: boolean } = {},
): Promise<{ jobsPerS: number; fsyncs: number; changesPerFsync: number }> {
  const asking = await benchServer();
  let home: Bench = asking;
  try {
    if (opts.delegated) {
      home = await benchServer();
      await connectPeers(asking, home);
    }
    for (let i = 0; i < jobs; i += 10_000) {
      const n = Math.min(10_000, jobs - i);
      await home.admin.submit(home.project, Array.from({ length: n }, () => ({ argv: ['true'] })));
    }
    const before = home.server.ctx.store.journalStats();
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        join(import.meta.dirname, 'sim-workers.ts'),
        asking.server.url,
        join(asking.server.identity.dir, 'ca.pem'),
        asking.server.serverId,
        asking.workerToken,
        String(workers),
        String(jobs),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    await new Promise<void>((resolve, reject) => child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`sim-workers exited ${code}`)))));
    const { done, ms } = JSON.parse(out.trim().split('\n').pop()!) as { done: number; ms: number };
    // Delegated results reach home a moment after the worker hears "accepted".
    const deadline = Date.now() + 30_000;
    while (home.server.model.countsOf(home.project).done !== jobs && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const counted = home.server.model.countsOf(home.project).done;
    if (counted !== jobs) throw new Error(`dispatch: the home server counts ${counted} done jobs, expected ${jobs}`);
    const after = home.server.ctx.store.journalStats();
    const fsyncs = after.fsyncs - before.fsyncs;
    return { jobsPerS: round((done / ms) * 1000, 0), fsyncs, changesPerFsync: round((after.records - before.records) / Math.max(1, fsyncs)) };
  } finally {
    if (home !== asking) await home.close();
    await asking.close();
  }
}
