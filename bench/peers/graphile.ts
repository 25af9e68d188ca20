/**
 * graphile-worker on PostgreSQL. Settings from its performance page: a local
 * queue of 500 jobs fetched in batches, batched completion
 * (completeJobBatchDelay 0), `concurrentJobs` as the slot count and a pool of
 * one connection more; jobs added with addJobs (one statement per call).
 */
import { Logger, makeWorkerUtils, run, type Runner, type WorkerUtils } from 'graphile-worker';
import type { QueueDriver, Settings } from './queue-driver.js';

export const BULK_CHUNK = 10_000;
const LOCAL_QUEUE = 500;

export function graphileSettings(slots: number): Settings {
  return {
    'bulk add': `WorkerUtils.addJobs, ${BULK_CHUNK} jobs per call`,
    'single add': 'WorkerUtils.addJob',
    workers: `one runner, concurrentJobs ${slots}, maxPoolSize ${slots + 1}`,
    localQueue: `size ${LOCAL_QUEUE}`,
    completeJobBatchDelay: 0,
    failJobBatchDelay: 0,
    pollInterval: '2000 ms (default; new jobs wake workers by LISTEN/NOTIFY)',
    logger: 'silent',
  };
}

// Its default logger writes a line per job; the bench has no use for them.
const silent = new Logger(() => () => {});

export function graphileDriver(connectionString: string): QueueDriver {
  let utils: WorkerUtils | undefined;
  let runner: Runner | undefined;
  const getUtils = async () => (utils ??= await makeWorkerUtils({ connectionString, logger: silent }));
  return {
    setup: async () => (await getUtils()).migrate(),
    addMany: async (n) => {
      const u = await getUtils();
      for (let i = 0; i < n; i += BULK_CHUNK) {
        const m = Math.min(BULK_CHUNK, n - i);
        await u.addJobs(Array.from({ length: m }, () => ({ identifier: 'job', payload: {} })));
      }
    },
    addOne: async () => void (await (await getUtils()).addJob('job', {})),
    work: async (slots, handler) => {
      runner = await run({
        noHandleSignals: true,
        taskList: { job: () => handler() },
        preset: {
          worker: {
            connectionString,
            concurrentJobs: slots,
            maxPoolSize: slots + 1,
            localQueue: { size: LOCAL_QUEUE },
            completeJobBatchDelay: 0,
            failJobBatchDelay: 0,
            logger: silent,
          },
        },
      });
    },
    remaining: async () => {
      const u = await getUtils();
      return u.withPgClient(async (c) => Number((await c.query('select count(*)::int as n from graphile_worker.jobs')).rows[0].n));
    },
    close: async () => {
      await runner?.stop();
      await utils?.release();
    },
  };
}
