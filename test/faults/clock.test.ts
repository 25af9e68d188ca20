/**
 * The server's wall clock steps an hour forward, then an hour back, while a
 * worker (on the true clock) runs its jobs: the step forward does not end
 * the running job's lease, and after the step back the lease of a worker
 * that died still runs out a lease after its last word, not an hour later.
 *
 * The server runs under libfaketime (Debian's faketime package), whose
 * offset is read from a file on every call, so the test moves the server's
 * clock while it runs; its monotonic clock is left alone, as a real step
 * leaves it.
 */
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { JobView } from '../../src/core/wire.js';
import { adminPasswordOf, cleanup, loginAdmin, spawnServer, spawnWorker, tempDir, until, type ServerProcess, type WorkerProcess } from '../helpers/server.js';
import type { ApiClient } from '../../src/client/api/client.js';
import { faultsUnavailable } from './netns.js';
import { jobEnded } from './sites.js';

const FAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1';
const skip = faultsUnavailable() ?? (existsSync(FAKETIME) ? null : `${FAKETIME} is missing (apt-get install faketime)`);
if (skip && process.env.CPC_REQUIRE_FAULTS === '1') throw new Error(`CPC_REQUIRE_FAULTS is set, but ${skip}`);
const HEARTBEAT_S = 1;

describe('steps of the server’s wall clock', { skip: skip ?? false, timeout: 300_000 }, () => {
  let home: string;
  let offsetFile: string;
  let server: ServerProcess;
  let admin: ApiClient;
  const workers: WorkerProcess[] = [];

  before(async () => {
    home = await tempDir('cpc-fault-clock-');
    offsetFile = join(await tempDir('cpc-fault-clock-time-'), 'offset');
    writeFileSync(offsetFile, '+0\n');
    server = await spawnServer(home, {
      heartbeatIntervalS: HEARTBEAT_S,
      env: { LD_PRELOAD: FAKETIME, FAKETIME_TIMESTAMP_FILE: offsetFile, FAKETIME_NO_CACHE: '1', FAKETIME_DONT_FAKE_MONOTONIC: '1' },
    });
    admin = await loginAdmin(server.info.url, server.caPem, adminPasswordOf(home));
    await admin.createProject('p');
  });

  after(async () => {
    for (const w of workers) await w.stop('SIGKILL');
    await cleanup();
  });

  async function worker(name: string): Promise<WorkerProcess> {
    const { token } = await admin.createWorkerToken(name);
    const w = spawnWorker({
      url: server.info.url,
      caFile: join(home, 'identity', 'ca.pem'),
      serverId: server.info.serverId,
      token,
      tokenFile: true,
      name,
      workDir: await tempDir(`cpc-fault-clock-${name}-`),
      args: ['--isolation', 'none', '--shared-identity'],
    });
    workers.push(w);
    return w;
  }

  async function runningOn(id: string): Promise<JobView> {
    return until(`job ${id} to run`, async () => {
      const j = await admin.job(id);
      return j.state === 'running' ? j : null;
    }, { timeoutMs: 60_000 });
  }

  it('a step forward does not end a running job’s lease', async () => {
    await worker('steady');
    const { ids } = await admin.submit('p', [{ shell: 'sleep 8; echo slept' }]);
    await runningOn(ids[0]!);
    writeFileSync(offsetFile, '+1h\n');
    const job = await jobEnded(admin, ids[0]!, 60_000);
    assert.equal(job.state, 'done', job.reason);
    assert.equal(job.attempts.length, 1, 'attempt 1 ran to its end, its lease kept');
    assert.equal(job.stdoutTail, 'slept\n');
  });

  it('after a step back, a dead worker’s lease runs out a lease after its last word', async () => {
    for (const w of workers.splice(0)) await w.stop('SIGKILL');
    const w = await worker('doomed');
    const { ids } = await admin.submit('p', [{ shell: 'sleep 300' }]);
    await runningOn(ids[0]!);
    // The clock goes back two hours (from an hour ahead to an hour behind), then the worker dies.
    writeFileSync(offsetFile, '-1h\n');
    await new Promise((r) => setTimeout(r, 2500));
    await w.stop('SIGKILL');
    // The lease is two heartbeat intervals; a sweep or two more, and the worker's death shows.
    const job = await until('the lease to run out', async () => {
      const j = await admin.job(ids[0]!);
      return j.attempts[0]?.how === 'lease-expired' ? j : null;
    }, { timeoutMs: 30_000 });
    assert.equal(job.state, 'queued');
  });
});

