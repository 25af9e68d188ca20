/**
 * Memory per live job. A server runs in this process; jobs are submitted
 * through the API in batches of 10 000. The first batch warms up what is
 * built once (schemas, maps, buffers), and the baseline is read after it, so
 * the figure is the slope: growth over the next `jobs` jobs, divided by
 * `jobs`. Then every job is claimed (workers of 4 096 cores) and the growth
 * per running job is read the same way. Readings follow full collections.
 * argv: jobs
 */
import { ApiClient } from '../src/client/api/client.js';
import { benchServer, reply, round } from './lib.js';

const jobs = Number(process.argv[2]);
const BATCH = 10_000;
const CORES = 4096;

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('memory-child needs --expose-gc');

async function settled(): Promise<{ rss: number; heap: number }> {
  // Several passes with turns of the event loop between them, so that
  // finalisers and weak references let go of everything they can.
  for (let i = 0; i < 4; i++) {
    gc!();
    await new Promise((r) => setTimeout(r, 20));
  }
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed };
}

const b = await benchServer({ maxJobsPerSubmit: BATCH });
const worker = new ApiClient({ url: b.server.url, caPem: b.server.caPem, serverId: b.server.serverId, token: b.workerToken });
const total = jobs + BATCH;
const workerIds: string[] = [];
for (let i = 0; i < Math.ceil(total / CORES); i++) {
  workerIds.push((await worker.register({ name: `mem-${i}`, host: 'bench', cores: CORES, memoryMb: 1024 })).workerId);
}
const submit = () => b.admin.submit(b.project, Array.from({ length: BATCH }, () => ({ argv: ['true'] })));

await submit();
const base = await settled();
for (let i = 0; i < jobs; i += BATCH) await submit();
const queued = await settled();
const model = b.server.model;
if (model.liveCountsOf(b.project).queued !== total) throw new Error('memory: not every job is queued');

for (const id of workerIds) await worker.claim(id, { waitS: 0, max: CORES });
if (model.leases.size !== total) throw new Error(`memory: ${model.leases.size} leases, expected ${total}`);
const running = await settled();

const result = {
  rssPerQueued: round((queued.rss - base.rss) / jobs, 0),
  heapPerQueued: round((queued.heap - base.heap) / jobs, 0),
  rssPerRunning: round((queued.rss - base.rss) / jobs + (running.rss - queued.rss) / total, 0),
  heapPerRunning: round((queued.heap - base.heap) / jobs + (running.heap - queued.heap) / total, 0),
};
await worker.close();
await b.close();
reply(result);
