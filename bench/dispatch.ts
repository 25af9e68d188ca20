import { join } from 'node:path';
import { benchServer, cpuUs, delegatingPair, profiled, round, runChild, sleep, type Bench, type Wan } from './lib.js';

export interface DispatchRun {
  jobsPerS: number;
  /** CPU time of the server's process per job handed out and taken back (both servers' when delegated). */
  serverCpuUs: number;
  /** CPU time of the simulated workers' process per job. */
  clientCpuUs: number;
  /** Journal figures over the same window as jobsPerS (first job handed out to last result). */
  fsyncs: number;
  fsyncsPerS: number;
  changesPerFsync: number;
}

/**
 * Dispatch: trivial jobs through claim + result over the real API with fsync
 * on, simulated workers in a separate process. Jobs are queued first, so the
 * figure is the server's rate of handing out and taking back attempts.
 *
 * `queuedBeyond` more jobs stay queued behind the ones handed out, so the
 * same work can be timed against a short and a long queue (scheduling cost
 * must not grow with the queue).
 *
 * Delegated: the jobs are queued on a peer (home) and the workers belong to
 * the asking server, so every job goes claim → peer claim → result → peer
 * result over the link.
 */
export async function dispatch(
  jobs: number,
  workers: number,
  opts: {
    delegated?: boolean;
    /** Delegated across a delaying relay (lib.ts delegatingPair). */
    wan?: Wan;
    queuedBeyond?: number;
    cores?: number;
    /** Each job runs `true` as a child process in the simulated workers (sim-workers.ts). */
    spawn?: boolean;
    /** Started on the home server before the jobs are queued, stopped once they are done (chatty.ts). */
    beside?: (home: Bench) => Promise<() => Promise<void>>;
  } = {},
): Promise<DispatchRun> {
  const pair = opts.delegated ? await delegatingPair(opts.wan) : null;
  const asking = pair?.asking ?? (await benchServer());
  const home: Bench = pair?.home ?? asking;
  try {
    const stopBeside = opts.beside ? await opts.beside(home) : undefined;
    const total = jobs + (opts.queuedBeyond ?? 0);
    for (let i = 0; i < total; i += 10_000) {
      const n = Math.min(10_000, total - i);
      await home.admin.submit(home.project, Array.from({ length: n }, () => ({ argv: ['true'] })));
    }
    const stats = () => home.server.ctx.store.journalStats();
    let before = stats();
    let cpu0 = cpuUs();
    const { done, ms, clientCpuUs } = await profiled(opts.delegated ? 'dispatch-delegated' : 'dispatch', () =>
      runChild<{ done: number; ms: number; clientCpuUs: number }>(
        'sim-workers.ts',
        [
          asking.server.url,
          join(asking.server.identity.dir, 'ca.pem'),
          asking.server.serverId,
          asking.workerToken,
          String(workers),
          String(jobs),
          String(opts.cores ?? 1),
          ...(opts.spawn ? ['spawn'] : []),
        ],
        {
          onLine: (line) => {
            if (!line.includes('"started"')) return;
            before = stats();
            cpu0 = cpuUs();
          },
        },
      ),
    );
    const after = stats();
    const cpu = cpuUs() - cpu0;
    await stopBeside?.();
    // Delegated results reach home a moment after the worker hears "accepted".
    // With jobs left queued, workers still claiming when the last result came
    // in may finish a few more than asked.
    const deadline = Date.now() + 30_000;
    while (home.server.model.countsOf(home.project).done < jobs && Date.now() < deadline) await sleep(20);
    const counted = home.server.model.countsOf(home.project).done;
    if (counted < jobs || (!opts.queuedBeyond && counted !== jobs)) {
      throw new Error(`dispatch: the home server counts ${counted} done jobs, expected ${jobs}`);
    }
    const fsyncs = after.fsyncs - before.fsyncs;
    return {
      jobsPerS: round((done / ms) * 1000, 0),
      serverCpuUs: round(cpu / done, 1),
      clientCpuUs: round(clientCpuUs, 1),
      fsyncs,
      fsyncsPerS: round((fsyncs / ms) * 1000, 0),
      changesPerFsync: round((after.records - before.records) / Math.max(1, fsyncs)),
    };
  } finally {
    await (pair ? pair.close() : asking.close());
  }
}
