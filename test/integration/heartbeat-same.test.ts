/**
 * A heartbeat that names the same attempts as the last one the server kept
 * may say only how many: the server renews what it kept while the worker's
 * leases are unchanged, and asks for the names again once they changed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cleanup, startTestServer, type SimWorker, type TestServer } from '../helpers/server.js';

after(cleanup);

describe('heartbeats that say "the same attempts"', () => {
  let ts: TestServer;
  let w: SimWorker;
  let ids: string[];

  before(async () => {
    ts = await startTestServer({ heartbeatIntervalS: 60 });
    await ts.admin.createProject('hb');
    w = await ts.worker({ cores: 4 });
    ids = (await ts.admin.submit('hb', [{ argv: ['true'] }, { argv: ['true'] }, { argv: ['true'], cores: 64 }])).ids;
    const { jobs } = await w.client.claim(w.workerId, { waitS: 0, max: 4 });
    assert.deepEqual(jobs.map((j) => j.id).sort(), ids.slice(0, 2).sort());
  });

  const deadlineOf = (id: string) => ts.server.model.leases.get(id)!.deadline;

  it('keeps a heartbeat whose attempts all hold, and renews them on { same }', async () => {
    const named = ids.slice(0, 2).map((jobId) => ({ jobId, attempt: 1 }));
    const full = await w.client.heartbeat(w.workerId, { attempts: named });
    assert.equal(full.kept, true);
    const before = ids.slice(0, 2).map(deadlineOf);
    await new Promise((r) => setTimeout(r, 20));
    const same = await w.client.heartbeat(w.workerId, { same: 2 });
    assert.deepEqual(same, { abandon: [], heartbeatIntervalS: 60, kept: true });
    ids.slice(0, 2).forEach((id, i) => assert.ok(deadlineOf(id) > before[i]!, 'the lease moved on'));
  });

  it('asks for the names again when the count is not the one kept', async () => {
    const r = await w.client.heartbeat(w.workerId, { same: 3 });
    assert.equal(r.resend, true);
    // Nothing is kept after that until the worker names its attempts again.
    assert.equal((await w.client.heartbeat(w.workerId, { same: 2 })).resend, true);
  });

  it('renews only what was named: an attempt the worker did not name is left to run out', async () => {
    const only = await w.client.heartbeat(w.workerId, { attempts: [{ jobId: ids[0]!, attempt: 1 }] });
    assert.equal(only.kept, true);
    const other = deadlineOf(ids[1]!);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal((await w.client.heartbeat(w.workerId, { same: 1 })).kept, true);
    assert.equal(deadlineOf(ids[1]!), other, 'the unnamed lease did not move');
  });

  it('asks for the names again once the worker’s leases changed, and then says what to abandon', async () => {
    await w.client.heartbeat(w.workerId, { attempts: ids.slice(0, 2).map((jobId) => ({ jobId, attempt: 1 })) });
    await ts.admin.cancel([ids[1]!]);
    assert.equal((await w.client.heartbeat(w.workerId, { same: 2 })).resend, true);
    const full = await w.client.heartbeat(w.workerId, { attempts: ids.slice(0, 2).map((jobId) => ({ jobId, attempt: 1 })) });
    assert.deepEqual(full.abandon.map((a) => a.jobId), [ids[1]]);
    assert.equal(full.kept, undefined, 'a heartbeat with something to abandon is not kept');
  });

  it('refuses a count that is not a positive whole number', async () => {
    for (const body of [{ same: 0 }, { same: 1.5 }, { same: -1 }, { same: 1, attempts: [] }]) {
      await assert.rejects(w.client.call('POST', `/workers/${w.workerId}/heartbeat`, body), (e: { code: string }) => e.code === 'INVALID_FIELD');
    }
  });
});
