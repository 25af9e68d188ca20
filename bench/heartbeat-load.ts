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
import { closedLoop, reply } from './lib.js';

const [url, caFile, serverId, token, file, secondsArg, concurrencyArg] = process.argv.slice(2);
const seconds = Number(secondsArg);
const concurrency = Number(concurrencyArg);
const assignments = JSON.parse(readFileSync(file!, 'utf8')) as Assignment[];
const client = new ApiClient({ url: url!, caPem: readFileSync(caFile!, 'utf8'), serverId, token, connections: concurrency });

let next = 0;
let sent = 0;
let abandoned = 0;
/** Workers whose last heartbeat the server kept: as cpc-worker does, they then send only how many. */
const kept = new Set<string>();
const result = await closedLoop('heartbeats-client', concurrency, seconds, async () => {
  const w = assignments[next++ % assignments.length]!;
  const same = kept.has(w.workerId);
  const reply = await client.heartbeat(w.workerId, same ? { same: w.attempts.length } : { attempts: w.attempts });
  if (reply.kept) kept.add(w.workerId);
  else kept.delete(w.workerId);
  abandoned += reply.abandon.length;
  if (reply.resend) abandoned++;
  sent++;
});
await client.close();
reply({ ...result, sent, abandoned });
