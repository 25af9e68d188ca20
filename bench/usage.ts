import { join } from 'node:path';
import { benchServer, round, runChild } from './lib.js';

/**
 * The cost of measuring usage: a real worker (usage-client.ts, in its own
 * process) runs trivial jobs (`true`, one process each) with usage measured
 * by each method and not at all, against a fresh server each; jobs per second
 * from the first start to the last result. Rounds alternate the methods so
 * that a loaded machine slows them alike.
 */
export async function usageCost(jobs: number, cores: number, methods: string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const method of methods) {
    const b = await benchServer({ heartbeatIntervalS: 120 });
    try {
      for (let i = 0; i < jobs; i += 10_000) await b.admin.submit(b.project, Array.from({ length: Math.min(10_000, jobs - i) }, () => ({ argv: ['true'] })));
      const endpoint = JSON.stringify({ url: b.server.url, caFile: join(b.server.identity.dir, 'ca.pem'), serverId: b.server.serverId, token: b.workerToken });
      const r = await runChild<{ jobsPerS: number }>('usage-client.ts', [method, String(jobs), String(cores), endpoint]);
      out[method] = round(r.jobsPerS, 1);
    } finally {
      await b.close();
    }
  }
  return out;
}
