import type { JobInput } from '../src/core/wire.js';
import { benchServer, profiled, round } from './lib.js';

export interface BulkRun {
  ms: number;
  jobsPerS: number;
  /** Size of the request body. */
  requestBytes: number;
}

/**
 * Bulk submit: `jobs` jobs in one request, timed from the client's call to
 * its reply, which comes only once the submission is durable (fsynced). The
 * client shares this process with the server, as in wake-up; it only
 * serialises the request and parses the reply (one id per job).
 */
export async function bulk(jobs: number): Promise<BulkRun> {
  const b = await benchServer({ maxJobsPerSubmit: Math.max(100_000, jobs) });
  try {
    // Warm-up: the first submit compiles the schemas a server builds once.
    await b.admin.submit(b.project, [{ argv: ['true'] }]);
    const input: JobInput[] = Array.from({ length: jobs }, (_, i) => ({ name: `step-${i}`, argv: ['true'] }));
    const requestBytes = Buffer.byteLength(JSON.stringify({ jobs: input }));
    const store = b.server.ctx.store;
    const before = store.journalStats();
    const t0 = performance.now();
    const { ids } = await profiled('bulk', () => b.admin.submit(b.project, input));
    const ms = performance.now() - t0;
    const after = store.journalStats();
    if (ids.length !== jobs) throw new Error(`bulk: ${ids.length} ids for ${jobs} jobs`);
    const queued = b.server.model.liveCountsOf(b.project).queued;
    if (queued !== jobs + 1) throw new Error(`bulk: ${queued} jobs queued, expected ${jobs + 1}`);
    if (after.fsyncs <= before.fsyncs) throw new Error('bulk: the submission was answered without an fsync');
    return { ms: round(ms, 0), jobsPerS: round((jobs / ms) * 1000, 0), requestBytes };
  } finally {
    await b.close();
  }
}
