/**
 * The producers and workers of the peer figures, each in a process of its own
 * (as cpcc and cpc-worker are beside cpc's server):
 *
 *   peer-client.ts PEER TARGET setup
 *   peer-client.ts PEER TARGET add N          producer: N jobs in bulk, timed
 *   peer-client.ts PEER TARGET drain N SLOTS [spawn]
 *                                            workers: N queued jobs run through
 *                                            SLOTS slots; prints {"started":true}
 *                                            at the first job, and the time from
 *                                            it until the server counts none left
 *                                            (and this process's CPU time per job)
 *   peer-client.ts PEER TARGET wakeup SAMPLES
 *                                            an idle worker and a producer: time
 *                                            from an add until the job starts
 *
 * PEER is bullmq, graphile or pgboss; TARGET the Redis port or the
 * PostgreSQL URL. `spawn`: each job runs `true` as a child process, as cpc's
 * workers run a job's command.
 */
import { spawn } from 'node:child_process';
import { cpuUs, percentiles, reply } from '../lib.js';
import { bullmqDriver } from './bullmq.js';
import { graphileDriver } from './graphile.js';
import { pgbossDriver } from './pgboss.js';
import type { QueueDriver } from './queue-driver.js';

const [peer, target, role, ...rest] = process.argv.slice(2) as [string, string, string, ...string[]];

function driverOf(): QueueDriver {
  if (peer === 'bullmq') return bullmqDriver(Number(target));
  if (peer === 'graphile') return graphileDriver(target);
  if (peer === 'pgboss') return pgbossDriver(target);
  throw new Error(`peer-client: no peer '${peer}'`);
}

const spawnTrue = (): Promise<void> =>
  new Promise((resolve, reject) => {
    const child = spawn('true', [], { stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`true exited with ${code}`))));
  });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// An interrupted bench stops the peer's server; its clients must not outlive
// it (its client libraries would retry the connection for ever).
const parent = process.ppid;
setInterval(() => process.ppid !== parent && process.exit(1), 500).unref();
const driver = driverOf();

if (role === 'setup') {
  await driver.setup();
  await driver.close();
  reply({});
} else if (role === 'add') {
  const n = Number(rest[0]);
  await driver.setup();
  const t0 = performance.now();
  await driver.addMany(n);
  const ms = performance.now() - t0;
  await driver.close();
  reply({ ms });
} else if (role === 'drain') {
  const n = Number(rest[0]);
  const slots = Number(rest[1]);
  const job = rest[2] === 'spawn' ? spawnTrue : async () => {};
  let started = 0;
  let cpu0 = 0;
  let ran = 0;
  await driver.work(slots, async () => {
    if (started === 0) {
      started = performance.now();
      cpu0 = cpuUs();
      process.stdout.write('{"started":true}\n');
    }
    ran++;
    await job();
  });
  // Done when the server counts no job left: every job run and its completion durable.
  while (started === 0 || ran < n || (await driver.remaining()) > 0) await sleep(started === 0 || ran < n ? 5 : 2);
  const ms = performance.now() - started;
  const clientCpuUs = (cpuUs() - cpu0) / n;
  await driver.close();
  reply({ ms, ran, clientCpuUs });
} else if (role === 'wakeup') {
  const samples = Number(rest[0]);
  await driver.setup();
  let onStart: (() => void) | null = null;
  await driver.work(1, async () => onStart?.());
  // Let the worker reach its idle wait before the first add.
  await sleep(500);
  const times: number[] = [];
  const WARM_UP = 20;
  for (let i = 0; i < WARM_UP + samples; i++) {
    const startedP = new Promise<number>((resolve) => (onStart = () => resolve(performance.now())));
    const t0 = performance.now();
    await driver.addOne();
    const t1 = await startedP;
    if (i >= WARM_UP) times.push(t1 - t0);
    // The worker is idle again once the job is completed.
    while ((await driver.remaining()) > 0) await sleep(2);
    await sleep(5);
  }
  await driver.close();
  reply(percentiles(times));
} else {
  throw new Error(`peer-client: no role '${role}'`);
}
