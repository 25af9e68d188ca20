/**
 * Simulated workers in their own process: each registers, then loops
 * claim → result with exit code 0 at once (the result riding on the next
 * claim, as cpc-worker sends it), so the server's dispatch path is all that
 * is measured. Prints `{"started":true}` when the first job arrives
 * (so the server side can count fsyncs over the same window) and one JSON
 * line when `expected` results are in.
 * argv: url caFile serverId token workers expected
 */
import { readFileSync } from 'node:fs';
import { ApiClient } from '../src/client/api/client.js';
import type { ResultRequest } from '../src/core/wire.js';
import { profiled, reply } from './lib.js';

const [url, caFile, serverId, token, workersArg, expectedArg] = process.argv.slice(2);
const workers = Number(workersArg);
const expected = Number(expectedArg);
const client = new ApiClient({ url: url!, caPem: readFileSync(caFile!, 'utf8'), serverId, token, connections: workers * 2 });
let done = 0;
let started = 0;

async function run(i: number): Promise<void> {
  const { workerId } = await client.register({ name: `sim-${i}`, host: 'bench', cores: 1, memoryMb: 1024 });
  process.send?.({ registered: i });
  // As cpc-worker does: the result of the job just run goes with the next claim.
  let finished: ResultRequest | null = null;
  while (done < expected) {
    const answer = await client.claim(workerId, finished ? { waitS: 0, max: 1, results: [finished] } : { waitS: 2, max: 1 });
    if (finished) {
      const outcome = answer.results?.[0];
      if (!outcome || 'error' in outcome) throw new Error(`a result was refused: ${JSON.stringify(outcome)}`);
      finished = null;
      if (++done === expected) {
        // Other workers are still long-polling an empty queue; their wait is
        // not part of the figure.
        reply({ done, ms: performance.now() - started });
      }
    }
    for (const job of answer.jobs) {
      if (started === 0) {
        started = performance.now();
        process.stdout.write('{"started":true}\n');
      }
      finished = {
        jobId: job.id,
        attempt: job.attempt,
        how: 'exited',
        exitCode: 0,
        signal: null,
        durationMs: 0,
        stdout: '',
        stderr: '',
        stdoutBytes: 0,
        stderrBytes: 0,
      };
    }
  }
}

await profiled('dispatch-workers', () => Promise.all(Array.from({ length: workers }, (_, i) => run(i))));
