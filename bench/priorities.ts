import { planClaim } from '../src/core/commands.js';
import { Model } from '../src/core/model.js';
import { ReadyQueue } from '../src/core/ready-queue.js';
import type { Job, JobSpec } from '../src/core/types.js';
import { cpuUs, round } from './lib.js';

export interface PrioritiesRun {
  /** CPU time of the ready queue alone to take `jobs` jobs in and hand them all out, in ms: all at one priority, and each at its own. */
  queueSingleMs: number;
  queueDistinctMs: number;
  /** distinct / single: the scheduler's cost of distinct priorities (1 is none). */
  queueRatio: number;
  /** The same through the model, as the server applies submits and claims. */
  modelSingleMs: number;
  modelDistinctMs: number;
  modelRatio: number;
}

const SUBMIT = 10_000;
const CLAIM = 8;

/**
 * Distinct priorities: `jobs` jobs queued and handed out, all at priority 0,
 * and each at its own priority in shuffled order, measured in CPU time in this
 * process in turn: by the ready queue alone
 * (add, then take until empty), and through the model as the server applies
 * them (submits of 10 000, claims of 8 by one worker).
 *
 * The API takes priorities from -100 to 100 only; these jobs come as a
 * journal of an older server would replay them, which is the structure's
 * worst case: one priority per job. Through the model, distinct priorities
 * also hand the jobs out in an order unrelated to where they sit in memory,
 * which the model's own work on each job (its lease, its state) pays for.
 */
export function priorities(jobs: number, seed: number): PrioritiesRun {
  const order = shuffled(jobs, seed);
  // Each case three times, alternating, and the least of each: on a shared
  // machine the least is the figure least disturbed by other work (and by
  // collecting the garbage of the case before).
  const pair = (run: (p: Int32Array | null) => number): [number, number] => {
    let single = Infinity;
    let distinct = Infinity;
    for (let i = 0; i < 3; i++) {
      single = Math.min(single, run(null));
      distinct = Math.min(distinct, run(order));
    }
    return [single, distinct];
  };
  const [queueSingleMs, queueDistinctMs] = pair((p) => queueOnce(jobs, p));
  const [modelSingleMs, modelDistinctMs] = pair((p) => modelOnce(jobs, p));
  return {
    queueSingleMs: round(queueSingleMs, 1),
    queueDistinctMs: round(queueDistinctMs, 1),
    queueRatio: round(queueDistinctMs / queueSingleMs),
    modelSingleMs: round(modelSingleMs, 1),
    modelDistinctMs: round(modelDistinctMs, 1),
    modelRatio: round(modelDistinctMs / modelSingleMs),
  };
}

function queueOnce(jobs: number, priorities: Int32Array | null): number {
  const list: Job[] = Array.from({ length: jobs }, (_, i) => ({
    id: `job-${i}`,
    project: 'p',
    seq: i + 1,
    spec: { argv: ['true'], env: {}, resources: { cores: 1, memoryMb: 0 }, priority: priorities ? priorities[i]! : 0, maxRetries: 0, timeoutS: null, after: [] },
    state: 'queued',
    reason: 'ready to run',
    createdAt: 0,
    updatedAt: 0,
    attempts: [],
    failures: 0,
    lost: 0,
  }));
  const free = { cores: 1, memoryMb: 0 };
  const cpu0 = cpuUs();
  const queue = new ReadyQueue();
  for (const job of list) queue.add(job);
  let handed = 0;
  while (queue.take(free)) handed++;
  const ms = (cpuUs() - cpu0) / 1000;
  if (handed !== jobs) throw new Error(`priorities: the queue handed out ${handed} of ${jobs} jobs`);
  return ms;
}

function modelOnce(jobs: number, priorities: Int32Array | null): number {
  const model = new Model();
  model.apply({ t: 'project-created', at: 1, name: 'p', owner: 'u' });
  model.apply({ t: 'worker-registered', at: 1, id: 'w', name: 'w', host: 'h', resources: { cores: 1 << 30, memoryMb: 2 ** 50 }, labels: [], tokenId: 't' });
  const batches: { id: string; spec: JobSpec }[][] = [];
  for (let i = 0; i < jobs; i += SUBMIT) {
    batches.push(
      Array.from({ length: Math.min(SUBMIT, jobs - i) }, (_, k) => ({
        id: `job-${i + k}`,
        spec: { argv: ['true'], env: {}, resources: { cores: 1, memoryMb: 0 }, priority: priorities ? priorities[i + k]! : 0, maxRetries: 0, timeoutS: null, after: [] },
      })),
    );
  }
  const cpu0 = cpuUs();
  let at = 2;
  for (const batch of batches) model.apply({ t: 'jobs-submitted', at: at++, project: 'p', jobs: batch });
  let handed = 0;
  for (let claim = planClaim(model, 'w', 'local', at, 60_000, CLAIM); claim; claim = planClaim(model, 'w', 'local', ++at, 60_000, CLAIM)) {
    model.apply(claim);
    handed += claim.claims.length;
  }
  const ms = (cpuUs() - cpu0) / 1000;
  if (handed !== jobs) throw new Error(`priorities: handed out ${handed} of ${jobs} jobs`);
  return ms;
}

/** The priorities -n/2 … n/2 - 1 in an order fixed by `seed`. */
function shuffled(n: number, seed: number): Int32Array {
  const out = Int32Array.from({ length: n }, (_, i) => i - Math.floor(n / 2));
  let s = seed >>> 0 || 1;
  for (let i = n - 1; i > 0; i--) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    const k = (s >>> 0) % (i + 1);
    [out[i], out[k]] = [out[k]!, out[i]!];
  }
  return out;
}
