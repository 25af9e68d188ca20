import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { silentLogger } from '../../src/common/logger.js';
import { planCancel, planClaim, planFinish, renewLeases } from '../../src/core/commands.js';
import { Control, type HeldAttempt, type StopOrder } from '../../src/server/jobs/control.js';
import { Store } from '../../src/server/jobs/store.js';
import { exited, spec } from '../helpers/core.js';

/**
 * The control registry over a real store (model and journal): a watch is
 * answered once a durable change makes its holder's rule name an attempt, and
 * not for changes that leave its attempts alone.
 */
describe('control watches', () => {
  let home: string;
  let store: Store;
  let control: Control;
  let n = 0;

  before(async () => {
    home = mkdtempSync(join(tmpdir(), 'cpc-control-'));
    store = await Store.open({ home, snapshotAfterBytes: 1 << 30, log: silentLogger });
    control = new Control(store);
    await store.commit({ t: 'project-created', at: 1, name: 'p', owner: 'u' });
    await store.commit({ t: 'worker-registered', at: 1, id: 'w1', name: 'w1', host: 'h', resources: { cores: 64, memoryMb: 1 << 20 }, labels: [], tokenId: 't' });
  });

  after(async () => {
    control.releaseAll();
    await store.close();
    rmSync(home, { recursive: true, force: true });
  });

  const rule = (held: HeldAttempt[]): StopOrder[] => renewLeases(store.model, 'w1', held, 0, Date.now()).abandon;

  /** Submits and claims `count` jobs for w1; their attempts. */
  async function running(count: number): Promise<HeldAttempt[]> {
    const jobs = Array.from({ length: count }, () => ({ id: `00000000-0000-4000-8000-${String(++n).padStart(12, '0')}`, spec: spec() }));
    await store.commit({ t: 'jobs-submitted', at: Date.now(), project: 'p', jobs });
    const claim = planClaim(store.model, 'w1', 'local', Date.now(), 60_000, count)!;
    await store.commit(claim);
    return claim.claims.map(([jobId, attempt]) => ({ jobId, attempt, workerId: 'w1' }));
  }

  const watch = (held: HeldAttempt[], waitS = 30, signal = new AbortController().signal) =>
    control.watch({ holder: { worker: 'w1' }, held, mustStop: rule, waitS, signal });

  /** Resolves to 'waiting' if the watch has not answered after the store's next fsync and a turn. */
  async function settled<T>(p: Promise<T>): Promise<T | 'waiting'> {
    await store.commit({ t: 'weight-set', at: Date.now(), of: 'user', name: 'nobody', weight: 1 });
    await new Promise((r) => setImmediate(r));
    return Promise.race([p, new Promise<'waiting'>((r) => setImmediate(() => r('waiting')))]);
  }

  it('answers at once when an attempt it names must stop already', async () => {
    const [a] = await running(1);
    await store.commit(planCancel(store.model, [a!.jobId], 'by u', Date.now()));
    assert.deepEqual(await watch([a!]), [{ jobId: a!.jobId, attempt: 1, reason: 'job was cancelled' }]);
  });

  it('holds through changes to other jobs, and answers a cancel of its own once it is durable', async () => {
    const [mine, other] = await running(2);
    const p = watch([mine!]);
    await store.commit(planCancel(store.model, [other!.jobId], 'by u', Date.now()));
    assert.equal(await settled(p), 'waiting');
    let durableWhenAnswered = -1;
    const seqOfCancel = store.seq + 1;
    void p.then(() => (durableWhenAnswered = store.durableSeq));
    await store.commit(planCancel(store.model, [mine!.jobId], 'by u', Date.now()));
    assert.deepEqual(await p, [{ jobId: mine!.jobId, attempt: 1, reason: 'job was cancelled' }]);
    assert.ok(durableWhenAnswered >= seqOfCancel, 'answered only once the cancel was durable');
  });

  it('watches attempts handed to the worker while it waits, and lets go of those it reports itself', async () => {
    const [first] = await running(1);
    const p = watch([first!]);
    const [later] = await running(1);
    // The worker's own result ends its attempt: nothing to tell it.
    const done = planFinish(store.model, 'w1', first!.jobId, 1, exited(0), Date.now());
    assert.notEqual(done, 'duplicate');
    await store.commit(done as Exclude<typeof done, 'duplicate'>);
    assert.equal(await settled(p), 'waiting');
    await store.commit(planCancel(store.model, [later!.jobId], 'by u', Date.now()));
    assert.deepEqual(await p, [{ jobId: later!.jobId, attempt: 1, reason: 'job was cancelled' }]);
  });

  it('watches attempts handed out that the worker does not name yet, and leaves out those that must stop already', async () => {
    const [live, gone] = await running(2);
    await store.commit(planCancel(store.model, [gone!.jobId], 'by u', Date.now()));
    // The worker names nothing; the cancelled attempt is one it let go of, the live one a claim on its way.
    const p = control.watch({ holder: { worker: 'w1' }, held: [], unnamed: [live!, gone!], mustStop: rule, waitS: 30, signal: new AbortController().signal });
    assert.equal(await settled(p), 'waiting');
    await store.commit(planCancel(store.model, [live!.jobId], 'by u', Date.now()));
    assert.deepEqual(await p, [{ jobId: live!.jobId, attempt: 1, reason: 'job was cancelled' }]);
  });

  it('answers every watch for a change that names no jobs (a removed project)', async () => {
    await store.commit({ t: 'project-created', at: 1, name: 'q', owner: 'u' });
    const id = `00000000-0000-4000-8000-${String(++n).padStart(12, '0')}`;
    await store.commit({ t: 'jobs-submitted', at: Date.now(), project: 'q', jobs: [{ id, spec: spec() }] });
    const claim = planClaim(store.model, 'w1', 'local', Date.now(), 60_000, 1)!;
    await store.commit(claim);
    const p = watch([{ jobId: id, attempt: 1, workerId: 'w1' }]);
    assert.equal(await settled(p), 'waiting');
    await store.commit({ t: 'project-removed', at: Date.now(), name: 'q' });
    const orders = await p;
    assert.equal(orders.length, 1);
    assert.equal(orders[0]!.jobId, id);
  });

  it('answers an older watch of the same holder with nothing when a newer one comes, and ends on hang-up or after its wait', async () => {
    const held = await running(1);
    const older = watch(held);
    const hangUp = new AbortController();
    const newer = watch(held, 30, hangUp.signal);
    assert.deepEqual(await older, []);
    hangUp.abort();
    assert.deepEqual(await newer, []);
    assert.deepEqual(await watch(held, 0.05), []);
    assert.equal(control.watchCount, 0);
  });
});
