/**
 * What a page of a big project's job listing costs the server: the list
 * route's own work (server/jobs/job-listing.ts) on a model of `jobs` live
 * jobs in one project, in this process, for the orders and filters cpcc asks
 * for. Run on its own: `npm run build:bench` (or `tsc -p tsconfig.bench.json`),
 * then `node dist/bench/job-list.js [JOBS]`; prints JSON.
 */
import { planSubmit } from '../src/core/commands.js';
import { Model } from '../src/core/model.js';
import type { JobSpec } from '../src/core/types.js';
import { jobListQuery } from '../src/server/jobs/schemas.js';
import { listJobs } from '../src/server/jobs/job-listing.js';
import type { Store } from '../src/server/jobs/store.js';
import { round } from './lib.js';

const CHUNK = 10_000;

export async function jobList(jobs: number): Promise<Record<string, number>> {
  const model = new Model();
  model.apply({ t: 'project-created', at: 1, name: 'p', owner: 'alice' });
  let n = 0;
  for (let done = 0; done < jobs; done += CHUNK) {
    const count = Math.min(CHUNK, jobs - done);
    const items = Array.from({ length: count }, (_, i): { spec: JobSpec } => ({
      spec: { argv: ['true'], env: {}, resources: { cores: 1, memoryMb: 0 }, priority: 0, maxRetries: 0, timeoutS: null, after: [], name: `run-${(done + i) % 1000}` },
    }));
    const ids = items.map(() => `01900000-0000-7000-8000-${String(++n).padStart(12, '0')}`);
    model.apply(planSubmit(model, 'p', items, ids, 1_700_000_000_000 + done, new Map()));
  }
  const store = { model, archive: null as unknown as Store['archive'] };
  const project = model.project('p');
  const time = async (query: Record<string, string>): Promise<number> => {
    const q = jobListQuery.parse(query);
    let best = Infinity;
    for (let i = 0; i < 5; i++) {
      const t = process.hrtime.bigint();
      await listJobs(store, project, q);
      best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e6);
    }
    return round(best, 2);
  };
  const last = [...model.jobIdsOf('p')][Math.floor(jobs / 2)]!;
  return {
    jobs,
    newestFirstMs: await time({ order: 'desc', limit: '100' }),
    oldestFirstMs: await time({ limit: '100' }),
    middlePageNewestFirstMs: await time({ order: 'desc', limit: '100', after: last }),
    byNameMs: await time({ sort: 'name', limit: '100' }),
    byNameMiddlePageMs: await time({ sort: 'name', limit: '100', after: last }),
    namePatternMs: await time({ order: 'desc', name: 'run-99*', limit: '100' }),
    emptyStateMs: await time({ order: 'desc', state: 'failed', limit: '100' }),
    updatedNewestFirstMs: await time({ sort: 'updated', order: 'desc', limit: '100' }),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const jobs = Number(process.argv[2] ?? 100_000);
  console.log(JSON.stringify(await jobList(jobs), null, 2));
}
