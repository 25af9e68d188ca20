import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiClient } from '../src/client/api/client.js';
import { benchServer, cpuUs, profiled, round, runChild, tempHome } from './lib.js';

export interface HeartbeatRun {
  perS: number;
  /** CPU time of the server's process per heartbeat. */
  serverCpuUs: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  requests: number;
}

/** What each simulated worker sends: its id and the attempts it runs. */
export interface Assignment {
  workerId: string;
  attempts: { jobId: string; attempt: number }[];
}

/**
 * Heartbeats: `workers` workers of `perWorker` cores each hold `perWorker`
 * one-core jobs apiece; a child process heartbeats for them (each heartbeat
 * lists that worker's attempts, as a real worker's does), `concurrency`
 * requests in flight, for `seconds` after a warm-up second. The lease table
 * is built once and measured `runs` times.
 *
 * Heartbeats are not journaled one by one, so this is the request path, the
 * body check and the lease renewals. Varying `workers` at a fixed
 * `perWorker` keeps each heartbeat the same and changes only how many leases
 * the server holds.
 */
export async function heartbeats(opts: {
  workers: number;
  perWorker: number;
  seconds: number;
  runs: number;
  concurrency?: number;
}): Promise<HeartbeatRun[]> {
  const { workers, perWorker, seconds, runs } = opts;
  const concurrency = opts.concurrency ?? 64;
  const total = workers * perWorker;
  const b = await benchServer({ maxJobsPerSubmit: Math.max(100_000, total) });
  const dir = tempHome();
  const client = new ApiClient({ url: b.server.url, caPem: b.server.caPem, serverId: b.server.serverId, token: b.workerToken, connections: 32 });
  try {
    for (let i = 0; i < total; i += 50_000) {
      await b.admin.submit(b.project, Array.from({ length: Math.min(50_000, total - i) }, () => ({ argv: ['true'] })));
    }
    const assignments: Assignment[] = [];
    for (let i = 0; i < workers; i += 50) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(50, workers - i) }, async (_, k): Promise<Assignment> => {
          const { workerId } = await client.register({ name: `hb-${i + k}`, host: 'bench', cores: perWorker, memoryMb: 1024 });
          const { jobs } = await client.claim(workerId, { waitS: 0, max: perWorker });
          if (jobs.length !== perWorker) throw new Error(`heartbeats: worker got ${jobs.length} jobs, expected ${perWorker}`);
          return { workerId, attempts: jobs.map((j) => ({ jobId: j.id, attempt: j.attempt })) };
        }),
      );
      assignments.push(...batch);
    }
    const leases = b.server.model.leases;
    if (leases.size !== total) throw new Error(`heartbeats: ${leases.size} leases, expected ${total}`);
    const file = join(dir, 'assignments.json');
    writeFileSync(file, JSON.stringify(assignments));

    const out: HeartbeatRun[] = [];
    for (let r = 0; r < runs; r++) {
      const probe = assignments[r % assignments.length]!.attempts[0]!.jobId;
      const deadlineBefore = leases.get(probe)!.deadline;
      const cpu0 = cpuUs();
      const res = await profiled(`heartbeats-${total}`, () =>
        runChild<{ requests: number; sent: number; ms: number; p50: number; p90: number; p99: number; max: number; abandoned: number }>('heartbeat-load.ts', [
          b.server.url,
          join(b.server.identity.dir, 'ca.pem'),
          b.server.serverId,
          b.workerToken,
          file,
          String(seconds),
          String(concurrency),
        ]),
      );
      const serverCpuUs = round((cpuUs() - cpu0) / res.sent, 1);
      if (res.abandoned !== 0) throw new Error(`heartbeats: the server told workers to abandon ${res.abandoned} attempts`);
      if (leases.size !== total || !(leases.get(probe)!.deadline > deadlineBefore)) throw new Error('heartbeats: leases were not renewed');
      out.push({ perS: round((res.requests / res.ms) * 1000, 0), serverCpuUs, p50: res.p50, p90: res.p90, p99: res.p99, max: res.max, requests: res.requests });
    }
    return out;
  } finally {
    await client.close();
    await b.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
