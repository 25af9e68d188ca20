/**
 * Heartbeats for the heartbeats figure, in their own process: `concurrency`
 * loops take the workers in turn and send each one's heartbeat with
 * ApiClient.heartbeat, after a warm-up second; prints the number of
 * requests (measured, and sent in all), elapsed ms, latency percentiles and how many attempts the server
 * said to abandon (none is expected).
 * argv: url caFile serverId token assignmentsFile seconds concurrency
 */
import { readFileSync } from 'node:fs';
import { ApiClient } from '../src/client/api/client.js';
import type { Assignment } from './heartbeats.js';
import { percentiles, profiled, reply } from './lib.js';

const [url, caFile, serverId, token, file, secondsArg, concurrencyArg] = process.argv.slice(2);
const seconds = Number(secondsArg);
const concurrency = Number(concurrencyArg);
const assignments = JSON.parse(readFileSync(file!, 'utf8')) as Assignment[];
const client = new ApiClient({ url: url!, caPem: readFileSync(caFile!, 'utf8'), serverId, token, connections: concurrency });

let next = 0;
let measuring = false;
let stop = false;
let requests = 0;
let sent = 0;
let abandoned = 0;
const latencies: number[] = [];

async function loop(): Promise<void> {
  while (!stop) {
    const w = assignments[next++ % assignments.length]!;
    const t0 = performance.now();
    const { abandon } = await client.heartbeat(w.workerId, { attempts: w.attempts });
    abandoned += abandon.length;
    sent++;
    if (measuring) {
      requests++;
      latencies.push(performance.now() - t0);
    }
  }
}

const loops = Array.from({ length: concurrency }, () => loop());
await new Promise((r) => setTimeout(r, Math.min(1000, seconds * 500)));
const result = await profiled('heartbeats-client', async () => {
  measuring = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  measuring = false;
  return { requests, ms: performance.now() - t0 };
});
stop = true;
await Promise.all(loops);
await client.close();
reply({ ...result, sent, ...percentiles(latencies), abandoned });
