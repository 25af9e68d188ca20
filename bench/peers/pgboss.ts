/**
 * pg-boss on PostgreSQL. Settings from its documentation for throughput: jobs
 * added with insert (one statement per call), workers fetching batches
 * (`batchSize`) with several fetch loops per process (`localConcurrency`),
 * slots = localConcurrency × batchSize, fetching again at once while batches
 * come back full (burstWhenBatchFull), and LISTEN/NOTIFY on so an idle worker
 * is woken by a new job instead of its next poll.
 */
import { PgBoss } from 'pg-boss';
import type { QueueDriver, Settings } from './queue-driver.js';

const NAME = 'bench';
export const BULK_CHUNK = 10_000;
const BATCH = 8;

export function pgbossSettings(slots: number): Settings {
  return {
    'bulk add': `insert, ${BULK_CHUNK} jobs per call`,
    'single add': 'send',
    workers: `work() with localConcurrency ${Math.ceil(slots / BATCH)} × batchSize ${BATCH} = ${slots} slots, burstWhenBatchFull`,
    pollingIntervalSeconds: 0.5,
    useListenNotify: true,
    'queue options': 'notify: true (policy standard)',
    'pool (max)': 20,
  };
}

export function pgbossDriver(connectionString: string): QueueDriver {
  const boss = new PgBoss({ connectionString, useListenNotify: true, max: 20 });
  boss.on('error', (err: Error) => console.error(`pg-boss: ${err.message}`));
  let started: Promise<unknown> | undefined;
  const start = () => (started ??= boss.start());
  return {
    setup: async () => {
      await start();
      if (!(await boss.getQueue(NAME))) await boss.createQueue(NAME, { notify: true });
    },
    addMany: async (n) => {
      await start();
      for (let i = 0; i < n; i += BULK_CHUNK) {
        const m = Math.min(BULK_CHUNK, n - i);
        await boss.insert(NAME, Array.from({ length: m }, () => ({ data: {} })));
      }
    },
    addOne: async () => {
      await start();
      await boss.send(NAME, {});
    },
    work: async (slots, handler) => {
      await start();
      await boss.work(
        NAME,
        { localConcurrency: Math.ceil(slots / BATCH), batchSize: BATCH, burstWhenBatchFull: true, pollingIntervalSeconds: 0.5 },
        async (jobs) => void (await Promise.all(jobs.map(() => handler()))),
      );
    },
    remaining: async () => {
      await start();
      const r = await boss.getDb().executeSql(`select count(*)::int as n from pgboss.job where name = $1 and state in ('created', 'retry', 'active')`, [NAME]);
      return Number((r.rows[0] as { n: number }).n);
    },
    close: async () => {
      await boss.stop({ graceful: true, timeout: 5000 });
    },
  };
}
