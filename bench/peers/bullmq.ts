/**
 * BullMQ on redis-server. Settings as BullMQ's documentation gives them for
 * throughput: jobs added with Queue.addBulk, one Worker whose `concurrency`
 * is the slot count, finished jobs removed (removeOnComplete) so that Redis
 * holds only live jobs.
 */
import { Queue, Worker } from 'bullmq';
import type { QueueDriver, Settings } from './queue-driver.js';

const NAME = 'bench';
export const BULK_CHUNK = 1000;

export function bullmqSettings(slots: number): Settings {
  return {
    client: 'ioredis 5, maxRetriesPerRequest: null',
    'bulk add': `Queue.addBulk, ${BULK_CHUNK} jobs per call`,
    'single add': 'Queue.add',
    workers: `one Worker, concurrency ${slots}`,
    'job options': 'removeOnComplete: true, removeOnFail: true, attempts: 1',
  };
}

export function bullmqDriver(port: number): QueueDriver {
  const connection = { host: '127.0.0.1', port, maxRetriesPerRequest: null };
  const defaultJobOptions = { removeOnComplete: true, removeOnFail: true, attempts: 1 };
  const queue = new Queue(NAME, { connection, defaultJobOptions });
  let worker: Worker | undefined;
  return {
    setup: async () => void (await queue.waitUntilReady()),
    addMany: async (n) => {
      for (let i = 0; i < n; i += BULK_CHUNK) {
        const m = Math.min(BULK_CHUNK, n - i);
        await queue.addBulk(Array.from({ length: m }, () => ({ name: 'job', data: {} })));
      }
    },
    addOne: async () => void (await queue.add('job', {})),
    work: async (slots, handler) => {
      worker = new Worker(NAME, () => handler(), { connection, concurrency: slots });
      await worker.waitUntilReady();
    },
    remaining: async () => {
      const c = await queue.getJobCounts('wait', 'active', 'prioritized', 'delayed', 'waiting-children');
      return Object.values(c).reduce((a, b) => a + b, 0);
    },
    close: async () => {
      await worker?.close();
      await queue.close();
    },
  };
}
