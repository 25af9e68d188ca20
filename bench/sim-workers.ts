/**
 * Simulated workers in their own process: each registers, then loops
 * claim → result with exit code 0 at once (the result riding on the next
 * claim, as cpc-worker sends it), so the server's dispatch path is all that
 * is measured. Prints `{"started":true}` when the first job arrives
 * (so the server side can count fsyncs over the same window) and one JSON
 * line when `expected` results are in.
 * Each worker has `cores` slots and, as cpc-worker does, claims as many jobs
 * as it has free slots and sends all the results it holds with that claim.
 * With `spawn`, each job runs `true` as a child process, as cpc-worker runs a
 * job's command: jobs run side by side in the worker's slots, and as soon as
 * one ends the worker claims for its free slots, sending the results it holds
 * (runSpawning). The peer figures compare it with the queues' workers doing
 * the same.
 * argv: url caFile serverId token workers expected [cores] [spawn]
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { ApiClient } from '../src/client/api/client.js';
import type { ResultRequest } from '../src/core/wire.js';
import { cpuUs, profiled, reply } from './lib.js';

const [url, caFile, serverId, token, workersArg, expectedArg, coresArg, spawnArg] = process.argv.slice(2);
const spawnTrue = (): Promise<void> =>
  new Promise((resolve, reject) => {
    const child = spawn('true', [], { stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`true exited with ${code}`))));
  });
const workers = Number(workersArg);
const cores = Number(coresArg ?? 1);
const expected = Number(expectedArg);
const client = new ApiClient({ url: url!, caPem: readFileSync(caFile!, 'utf8'), serverId, token, connections: workers * 2 });
let done = 0;
let started = 0;
let cpu0 = 0;

async function run(i: number): Promise<void> {
  const { workerId } = await client.register({ name: `sim-${i}`, host: 'bench', cores, memoryMb: 1024 });
  process.send?.({ registered: i });
  // As cpc-worker does: the results of the jobs just run go with the next claim.
  let finished: ResultRequest[] = [];
  while (done < expected) {
    const answer = await client.claim(workerId, finished.length > 0 ? { waitS: 0, max: cores, results: finished } : { waitS: 2, max: cores });
    for (const outcome of answer.results ?? []) {
      if ('error' in outcome) throw new Error(`a result was refused: ${JSON.stringify(outcome)}`);
    }
    if ((answer.results?.length ?? 0) !== finished.length) throw new Error('a result went unanswered');
    const before = done;
    done += finished.length;
    // Other workers are still long-polling an empty queue; their wait is
    // not part of the figure.
    if (before < expected && done >= expected) reply({ done, ms: performance.now() - started, clientCpuUs: (cpuUs() - cpu0) / done });
    finished = [];
    for (const job of answer.jobs) {
      if (started === 0) {
        started = performance.now();
        cpu0 = cpuUs();
        process.stdout.write('{"started":true}\n');
      }
      finished.push({
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
      });
    }
  }
}

const outcome = (jobId: string, attempt: number): ResultRequest => ({
  jobId,
  attempt,
  how: 'exited',
  exitCode: 0,
  signal: null,
  durationMs: 0,
  stdout: '',
  stderr: '',
  stdoutBytes: 0,
  stderrBytes: 0,
});

async function runSpawning(i: number): Promise<void> {
  const { workerId } = await client.register({ name: `sim-${i}`, host: 'bench', cores, memoryMb: 1024 });
  let finished: ResultRequest[] = [];
  let running = 0;
  let ended: (() => void) | null = null;
  while (done < expected) {
    const sending = finished;
    finished = [];
    const answer = await client.claim(workerId, sending.length > 0 ? { waitS: 0, max: cores - running, results: sending } : { waitS: 2, max: cores - running });
    if ((answer.results?.length ?? 0) !== sending.length || answer.results?.some((o) => 'error' in o)) throw new Error('a result was refused or went unanswered');
    const before = done;
    done += sending.length;
    if (before < expected && done >= expected) reply({ done, ms: performance.now() - started, clientCpuUs: (cpuUs() - cpu0) / done });
    for (const job of answer.jobs) {
      if (started === 0) {
        started = performance.now();
        cpu0 = cpuUs();
        process.stdout.write('{"started":true}\n');
      }
      running++;
      void spawnTrue().then(() => {
        running--;
        finished.push(outcome(job.id, job.attempt));
        ended?.();
      });
    }
    // Claim again once a slot is free and a result is in hand (or, idle, at once: a long poll).
    if (running > 0) await new Promise<void>((r) => (ended = r));
    ended = null;
  }
}

await profiled('dispatch-workers', () => Promise.all(Array.from({ length: workers }, (_, i) => (spawnArg === 'spawn' ? runSpawning(i) : run(i)))));
