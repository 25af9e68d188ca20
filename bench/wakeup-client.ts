/**
 * The clients of the wake-up figure, in their own process as cpcc and
 * cpc-worker are: a worker long-polls one server, a user submits one job
 * (to the same server, or to its peer when delegated), and the time from the
 * submit until the worker holds the job is taken, `samples` times.
 *
 *   wakeup-client.ts SAMPLES WORKER_JSON SUBMIT_JSON PROJECT
 *   (each JSON: {url, caFile, serverId, token})
 */
import { readFileSync } from 'node:fs';
import { ApiClient } from '../src/client/api/client.js';
import { percentiles, reply } from './lib.js';

interface Endpoint {
  url: string;
  caFile: string;
  serverId: string;
  token: string;
}

const [samplesArg, workerArg, submitArg, project] = process.argv.slice(2) as [string, string, string, string];
const client = (e: Endpoint) => new ApiClient({ url: e.url, caPem: readFileSync(e.caFile, 'utf8'), serverId: e.serverId, token: e.token });
const worker = client(JSON.parse(workerArg) as Endpoint);
const user = client(JSON.parse(submitArg) as Endpoint);
const { workerId } = await worker.register({ name: 'idle', host: 'bench', cores: 1, memoryMb: 1024 });
const times: number[] = [];
// The first rounds warm up both processes' code and connections; they are not counted.
const WARM_UP = 20;
for (let i = 0; i < WARM_UP + Number(samplesArg); i++) {
  const claim = worker.claim(workerId, { waitS: 10, max: 1 });
  // Let the claim reach the server and start waiting.
  await new Promise((r) => setTimeout(r, 5));
  const t0 = performance.now();
  const submitted = user.submit(project, [{ argv: ['true'] }]);
  const { jobs } = await claim;
  if (i >= WARM_UP) times.push(performance.now() - t0);
  await submitted;
  const job = jobs[0];
  if (!job) throw new Error('the claim came back empty');
  await worker.result(workerId, { jobId: job.id, attempt: job.attempt, how: 'exited', exitCode: 0, signal: null, durationMs: 0, stdout: '', stderr: '', stdoutBytes: 0, stderrBytes: 0 });
}
await Promise.all([worker.close(), user.close()]);
reply(percentiles(times));
