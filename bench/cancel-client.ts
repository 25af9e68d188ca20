/**
 * The clients of the cancel figure, in their own process: a real worker
 * (the Worker of cpc-worker) on one server, and a user who submits
 * `sleep 300` (to the same server, or to its peer when delegated), waits for
 * it to run, cancels it and takes the time until its process is gone,
 * `samples` times.
 *
 *   cancel-client.ts SAMPLES WORKER_JSON USER_JSON PROJECT
 *   (each JSON: {url, caFile, serverId, token})
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../src/client/api/client.js';
import { Worker } from '../src/worker/worker.js';
import { percentiles, reply, sleep } from './lib.js';

interface Endpoint {
  url: string;
  caFile: string;
  serverId: string;
  token: string;
}

const [samplesArg, workerArg, userArg, project] = process.argv.slice(2) as [string, string, string, string];
const client = (e: Endpoint) => new ApiClient({ url: e.url, caPem: readFileSync(e.caFile, 'utf8'), serverId: e.serverId, token: e.token });
const user = client(JSON.parse(userArg) as Endpoint);
const workDir = mkdtempSync(join(tmpdir(), 'cpc-bench-cancel-'));
const worker = new Worker({ client: client(JSON.parse(workerArg) as Endpoint), name: 'bench', cores: 1, memoryMb: 1024, workDir, claimWaitS: 10, sharedIdentity: true });
await worker.start();

/** Is the process there and not a zombie? Read straight from /proc, as `ps` would. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
}

const times: number[] = [];
const WARM_UP = 3;
for (let i = 0; i < WARM_UP + Number(samplesArg); i++) {
  const { ids } = await user.submit(project, [{ argv: ['sleep', '300'] }]);
  const id = ids[0]!;
  let pid: number | undefined;
  for (let waited = 0; pid === undefined; waited += 5) {
    if (waited > 30_000) throw new Error(`job ${id} did not start`);
    pid = worker.held().find((h) => h.jobId === id && h.phase === 'running')?.pid;
    if (pid === undefined) await sleep(5);
  }
  // The worker's control poll names the attempt once it runs; give it a moment to be open.
  await sleep(20);
  const t0 = performance.now();
  await user.cancel([id]);
  while (alive(pid)) await new Promise((r) => setImmediate(r));
  if (i >= WARM_UP) times.push(performance.now() - t0);
  // The next job starts once this one's cores are free again.
  while (worker.held().length > 0) await sleep(5);
}
await worker.stop({ drain: false });
await user.close();
rmSync(workDir, { recursive: true, force: true });
reply(percentiles(times));
