import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connect, linkUp, SimWorker, startSite, stopSite, until, type Site } from '../helpers/federation.js';

/**
 * Worker delegation among three servers in this process: a worker on A with
 * nothing to do at home runs B's and C's jobs, in A's priority order; local
 * work always goes first; results and heartbeats go home through A.
 */
describe('delegation between three servers', () => {
  let a: Site;
  let b: Site;
  let c: Site;
  const workers: SimWorker[] = [];

  before(async () => {
    [a, b, c] = await Promise.all([startSite('a'), startSite('b'), startSite('c')]);
    await connect(a, b);
    await connect(a, c);
    await Promise.all([linkUp(a, b), linkUp(a, c)]);
    for (const s of [a, b, c]) await s.admin.createProject('p');
  });

  after(async () => {
    for (const w of workers) await w.close();
    await Promise.all([a, b, c].filter(Boolean).map((s) => stopSite(s)));
  });

  const worker = async (site: Site) => {
    const w = await new SimWorker(site).register();
    workers.push(w);
    return w;
  };

  it('runs a peer’s job on an idle worker and takes its result home', async () => {
    const w = await worker(a);
    const { ids } = await b.admin.submit('p', [{ argv: ['echo', 'from b'] }]);
    const { jobs } = await w.claim();
    assert.deepEqual(jobs.map((j) => j.id), ids);
    assert.equal(jobs[0]!.attempt, 1);
    // The home server records where the attempt runs: the peer and its worker.
    const running = await b.admin.job(ids[0]!);
    assert.equal(running.state, 'running');
    assert.equal(running.attempts[0]!.via, a.serverId);
    assert.equal(running.attempts[0]!.workerName, w.name);
    // A's heartbeat keeps it; the result goes home through A.
    const hb = await w.heartbeat([{ jobId: ids[0]!, attempt: 1 }]);
    assert.deepEqual(hb.abandon, []);
    await w.result(ids[0]!, 1, 0, 'from b\n');
    const done = await until('the job to be done at home', async () => {
      const v = await b.admin.job(ids[0]!);
      return v.state === 'done' ? v : null;
    });
    assert.equal(done.stdoutTail, 'from b\n');
    assert.equal(a.server!.model.foreign.size, 0, 'nothing left in the outbox');
    assert.deepEqual(a.server!.model.usedBy(w.id), { cores: 0, memoryMb: 0 });
  });

  it('asks peers in priority order, and node-pri flips the order', async () => {
    const w = await worker(a);
    await a.admin.call('PUT', `/peers/${b.serverId}/priority`, { priority: 0 });
    const fromC = await c.admin.submit('p', [{ argv: ['true'] }]);
    const fromB = await b.admin.submit('p', [{ argv: ['true'] }]);
    await until('both peers to announce work', () => a.server!.ctx.delegation.fits({ cores: 1, memoryMb: 1000 }));
    await until('B’s work to be announced', async () => {
      const { jobs } = await w.claim(0);
      if (jobs.length === 0) return false;
      assert.deepEqual(jobs.map((j) => j.id), fromB.ids, 'B is asked first');
      await w.result(jobs[0]!.id, jobs[0]!.attempt);
      return true;
    });
    const fromB2 = await b.admin.submit('p', [{ argv: ['true'] }]);
    await a.admin.call('PUT', `/peers/${c.serverId}/priority`, { priority: 0 });
    await until('B’s new work to be announced', () => (b.server!.model.ready.size > 0 ? true : false));
    const { jobs } = await w.claim();
    assert.deepEqual(jobs.map((j) => j.id), fromC.ids, 'after node-pri, C is asked first');
    await w.result(jobs[0]!.id, jobs[0]!.attempt);
    const next = await w.claim();
    assert.deepEqual(next.jobs.map((j) => j.id), fromB2.ids);
    await w.result(next.jobs[0]!.id, next.jobs[0]!.attempt);
  });

  it('serves local work before any peer’s', async () => {
    const w = await worker(a);
    const remote = await b.admin.submit('p', [{ argv: ['true'] }]);
    await until('B’s work to be announced', () => a.server!.ctx.delegation.fits({ cores: 1, memoryMb: 1000 }));
    const local = await a.admin.submit('p', [{ argv: ['true'] }]);
    const first = await w.claim();
    assert.deepEqual(first.jobs.map((j) => j.id), local.ids);
    await w.result(local.ids[0]!, 1);
    const second = await w.claim();
    assert.deepEqual(second.jobs.map((j) => j.id), remote.ids);
    await w.result(remote.ids[0]!, 1);
  });

  it('wakes an idle worker when a peer gets work', async () => {
    const w = await worker(a);
    const claim = w.claim(10);
    await until('the claim to wait', () => a.server!.ctx.dispatcher.waitingCount > 0);
    const { ids } = await c.admin.submit('p', [{ argv: ['true'] }]);
    const { jobs } = await claim;
    assert.deepEqual(jobs.map((j) => j.id), ids);
    await w.result(ids[0]!, 1);
  });

  it('tells the worker to abandon a delegated job cancelled at home', async () => {
    const w = await worker(a);
    const { ids } = await b.admin.submit('p', [{ argv: ['sleep', '60'] }]);
    const { jobs } = await w.claim();
    assert.deepEqual(jobs.map((j) => j.id), ids);
    assert.equal((await b.admin.job(ids[0]!)).attempts[0]!.live, 'starting');
    // The worker says its process started; A's renewal carries that home.
    await w.heartbeat([{ jobId: ids[0]!, attempt: 1, started: true }]);
    await until('home to show the attempt running', async () => ((await b.admin.job(ids[0]!)).attempts[0]!.live === 'running' ? true : null));
    await b.admin.cancel(ids);
    const abandoned = await until('the cancel to reach the worker', async () => {
      const hb = await w.heartbeat([{ jobId: ids[0]!, attempt: 1 }]);
      return hb.abandon.length > 0 ? hb.abandon : null;
    });
    assert.equal(abandoned[0]!.jobId, ids[0]);
    // While the worker names the attempt, its process may run: its room stays taken, and home holds the job back.
    assert.deepEqual(a.server!.model.usedBy(w.id), { cores: 1, memoryMb: 0 }, 'the worker’s room is taken while the process stops');
    await b.admin.retry(ids);
    const held = await b.admin.job(ids[0]!);
    assert.equal(held.state, 'queued');
    assert.equal(held.attempts[0]!.live, 'stopping');
    assert.equal(held.heldBy?.attempt, 1);
    // Its process gone, the worker names it no more: A frees the room and tells home, which lets the job go.
    await w.heartbeat([]);
    assert.deepEqual(a.server!.model.usedBy(w.id), { cores: 0, memoryMb: 0 }, 'the worker’s room is free again');
    await until('home to hear the attempt stopped', async () => ((await b.admin.job(ids[0]!)).attempts[0]!.live === 'ended' ? true : null));
    const free = await b.admin.job(ids[0]!);
    assert.equal(free.heldBy, undefined);
    assert.match(free.reason, /attempt 1 stopped; ready to run|running on/);
    await b.admin.cancel(ids);
  });

  it('refuses a stale delegated result across servers', async () => {
    const w = await worker(a);
    const { ids } = await b.admin.submit('p', [{ argv: ['true'] }]);
    const { jobs } = await w.claim();
    assert.deepEqual(jobs.map((j) => j.id), ids);
    // The worker goes silent; A gives the attempt up and B re-queues it at once.
    await until('B to re-queue the job', async () => (await b.admin.job(ids[0]!)).state === 'queued', { timeoutMs: 20_000 });
    await assert.rejects(w.result(ids[0]!, 1), (err: { code?: string }) => err.code === 'STALE_ATTEMPT');
  });
});
