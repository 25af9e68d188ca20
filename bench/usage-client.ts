/**
 * The worker of the usage figure, in its own process as cpc-worker is: a real
 * Worker running `jobs` trivial jobs (`true`) already queued, measuring their
 * usage by METHOD (`off`, `proc`, `cgroup-v1`); prints jobs per second from
 * its first job's start to the last result.
 *
 *   usage-client.ts METHOD JOBS CORES WORKER_JSON
 *   (JSON: {url, caFile, serverId, token})
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../src/client/api/client.js';
import { detectUsageMethod, type UsageMethodName } from '../src/worker/usage.js';
import { Worker } from '../src/worker/worker.js';
import { reply, sleep } from './lib.js';

const [method, jobsArg, coresArg, workerArg] = process.argv.slice(2) as [string, string, string, string];
const e = JSON.parse(workerArg) as { url: string; caFile: string; serverId: string; token: string };
const usage = method === 'off' ? null : detectUsageMethod(method as UsageMethodName);
if (typeof usage === 'string') throw new Error(usage);
const workDir = mkdtempSync(join(tmpdir(), 'cpc-bench-usage-'));
let first = 0;
let finished = 0;
const jobs = Number(jobsArg);
const worker = new Worker({
  client: new ApiClient({ url: e.url, caPem: readFileSync(e.caFile, 'utf8'), serverId: e.serverId, token: e.token }),
  name: `bench-${method}`,
  cores: Number(coresArg),
  memoryMb: 4096,
  workDir,
  claimWaitS: 1,
  sharedIdentity: true,
  isolation: { level: 'none', why: 'bench' },
  usage,
  log: (_level, msg) => {
    if (msg === 'job started' && first === 0) first = performance.now();
    if (msg === 'result delivered') finished++;
  },
});
await worker.start();
while (finished < jobs) await sleep(5);
const s = (performance.now() - first) / 1000;
await worker.stop({ drain: false });
rmSync(workDir, { recursive: true, force: true });
reply({ jobsPerS: jobs / s });
