import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiClient } from '../../src/client/api/client.js';
import { startServer, type RunningServer } from '../../src/server/start/server.js';
import { cleanup, resultOf, startTestServer } from '../helpers/server.js';

describe('long-poll dispatcher', () => {
  let home: string;
  let server: RunningServer;
  let admin: ApiClient;
  let worker: ApiClient;
  let workerId: string;

  before(async () => {
    home = mkdtempSync(join(tmpdir(), 'cpc-dispatch-'));
    server = await startServer({ home, securePort: 0, unsecurePort: 0, host: '127.0.0.1', log: () => {} });
    admin = new ApiClient({ url: server.url, caPem: server.caPem, serverId: server.serverId });
    admin.token = (await admin.login('cpc-admin', server.adminPassword!)).token;
    await admin.createProject('d');
    worker = new ApiClient({ url: server.url, caPem: server.caPem, serverId: server.serverId, token: await server.createWorkerToken('w') });
    ({ workerId } = await worker.register({ name: 'w', host: 'h', cores: 2, memoryMb: 1000 }));
  });

  after(async () => {
    await admin.close();
    await worker.close();
    await server.close();
    rmSync(home, { recursive: true, force: true });
  });

  it('answers a waiting claim as soon as a fitting job is submitted', async () => {
    const claim = worker.claim(workerId, { waitS: 20 });
    // The claim must be waiting before the job exists.
    const deadline = Date.now() + 5000;
    while (server.ctx.dispatcher.waitingCount === 0) {
      assert.ok(Date.now() < deadline, 'claim never started waiting');
      await new Promise((r) => setTimeout(r, 5));
    }
    const { ids } = await admin.submit('d', [{ argv: ['true'] }]);
    const { jobs } = await claim;
    assert.deepEqual(
      jobs.map((j) => [j.id, j.attempt]),
      [[ids[0], 1]],
    );
    await worker.result(workerId, { jobId: ids[0]!, attempt: 1, how: 'exited', exitCode: 0, signal: null, durationMs: 1, stdout: '', stderr: '', stdoutBytes: 0, stderrBytes: 0 });
  });

  it('an empty claim comes back after its wait', async () => {
    const { jobs } = await worker.claim(workerId, { waitS: 0.2 });
    assert.deepEqual(jobs, []);
  });

  it('stops waiting for a worker that hung up during its long-poll', async () => {
    const hangUp = new AbortController();
    const claim = worker.claim(workerId, { waitS: 20 }, hangUp.signal).catch((err: unknown) => err);
    let deadline = Date.now() + 5000;
    while (server.ctx.dispatcher.waitingCount === 0) {
      assert.ok(Date.now() < deadline, 'claim never started waiting');
      await new Promise((r) => setTimeout(r, 5));
    }
    hangUp.abort();
    assert.ok((await claim) instanceof Error);
    deadline = Date.now() + 5000;
    while (server.ctx.dispatcher.waitingCount > 0) {
      assert.ok(Date.now() < deadline, 'the server kept waiting for a worker that hung up');
      await new Promise((r) => setTimeout(r, 5));
    }
    // Nothing was handed to the gone claim: the job waits for the next one, as attempt 1.
    const { ids } = await admin.submit('d', [{ argv: ['true'] }]);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal((await admin.job(ids[0]!)).state, 'queued');
    const { jobs } = await worker.claim(workerId, { waitS: 1 });
    assert.deepEqual(
      jobs.map((j) => [j.id, j.attempt]),
      [[ids[0], 1]],
    );
    await worker.result(workerId, { jobId: ids[0]!, attempt: 1, how: 'exited', exitCode: 0, signal: null, durationMs: 1, stdout: '', stderr: '', stdoutBytes: 0, stderrBytes: 0 });
  });

  it('puts jobs back in the queue when the claiming worker hung up before the answer', async () => {
    const { ids } = await admin.submit('d', [{ argv: ['true'] }]);
    const gone = { gone: () => true, signal: AbortSignal.abort() };
    const jobs = await server.ctx.dispatcher.claim(workerId, 4, 10, gone);
    assert.deepEqual(jobs, []);
    const job = await admin.job(ids[0]!);
    assert.equal(job.state, 'queued');
    assert.deepEqual(job.attempts, []);
    assert.equal(server.model.leases.get(ids[0]!), undefined);
    assert.deepEqual(server.model.usedBy(workerId), { cores: 0, memoryMb: 0 });
    // The job is handed out normally afterwards, as attempt 1.
    const again = await worker.claim(workerId, { waitS: 1 });
    assert.deepEqual(
      again.jobs.map((j) => [j.id, j.attempt]),
      [[ids[0], 1]],
    );
  });
});

describe('listing jobs page by page', () => {
  it('goes on after a page whose last job has been archived since', async () => {
    const ts = await startTestServer({ heartbeatIntervalS: 60, archiveAfterS: 3600 });
    await ts.admin.createProject('p');
    const { ids } = await ts.admin.submit('p', Array.from({ length: 5 }, (_, i) => ({ argv: ['echo', String(i)] })));
    const first = await ts.admin.jobs('p', { limit: 2 });
    assert.deepEqual(first.jobs.map((j) => j.id), ids.slice(0, 2));
    const w = await ts.worker();
    for (const j of (await w.client.claim(w.workerId, { waitS: 0, max: 2 })).jobs) await w.client.result(w.workerId, resultOf(j.id, j.attempt));
    await ts.server.ctx.store.archiveJobs([ids[0]!, ids[1]!], Date.now());
    const second = await ts.admin.jobs('p', { limit: 2, after: first.next });
    assert.deepEqual(second.jobs.map((j) => j.id), [ids[2], ids[3]]);
    await cleanup();
  });
});
