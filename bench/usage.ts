import { join } from 'node:path';
import { benchServer, round, runChild } from './lib.js';

/**
 * The cost of measuring usage: a real worker (usage-client.ts, in its own
 * process) runs trivial jobs (`true`, one process each) with usage measured
 * by each method and not at all, against a fresh server each; jobs per second
 * from the first start to the last result. Each round starts with another
 * method, after a warm-up run, so that order and a loaded machine weigh on all alike.
 */
let round_ = 0;

export async function usageCost(jobs: number, cores: number, methods: string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  // Each call starts with another method: the first server of a run warms the process up for the rest.
  const shift = round_++ % methods.length;
  const order = [...methods.slice(shift), ...methods.slice(0, shift)];
  // A warm-up run, not counted.
  await runOne(Math.min(jobs, 100), cores, order[0]!);
  for (const method of order) out[method] = await runOne(jobs, cores, method);
  return out;
}

async function runOne(jobs: number, cores: number, method: string): Promise<number> {
  {
    const b = await benchServer({ heartbeatIntervalS: 120 });
    try {
      for (let i = 0; i < jobs; i += 10_000) await b.admin.submit(b.project, Array.from({ length: Math.min(10_000, jobs - i) }, () => ({ argv: ['true'] })));
      const endpoint = JSON.stringify({ url: b.server.url, caFile: join(b.server.identity.dir, 'ca.pem'), serverId: b.server.serverId, token: b.workerToken });
      const r = await runChild<{ jobsPerS: number }>('usage-client.ts', [method, String(jobs), String(cores), endpoint]);
      return round(r.jobsPerS, 1);
    } finally {
      await b.close();
    }
  }
}
