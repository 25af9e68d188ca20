import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { connect, killSite, linkUp, SimWorker, spawnSite, startSite, stopSite, until, type Site } from '../helpers/federation.js';

/** Delegation when a server dies or cannot be reached. */

const sites: Site[] = [];
const workers: SimWorker[] = [];
after(async () => {
  for (const w of workers) await w.close().catch(() => {});
  for (const s of sites) await stopSite(s).catch(() => {});
});

async function site(make: Promise<Site>): Promise<Site> {
  const s = await make;
  sites.push(s);
  return s;
}

/** An asking server trusted by a home server with a project 'p', their link up. */
async function pair(asking: Site, home: Site): Promise<{ asking: Site; home: Site }> {
  await connect(asking, home);
  await linkUp(asking, home);
  await home.admin.createProject('p');
  return { asking, home };
}

async function worker(s: Site, cores = 1): Promise<SimWorker> {
  const w = await new SimWorker(s).register(cores);
  workers.push(w);
  return w;
}

describe('when the asking server is killed mid-job', () => {
  it('the home server re-queues the job after its lease, and runs it elsewhere', async () => {
    const home = await site(startSite('home1'));
    const asking = await site(spawnSite('asking1'));
    await connect(asking, home);
    await linkUp(asking, home);
    await home.admin.createProject('p');
    const w = await worker(asking);
    const { ids } = await home.admin.submit('p', [{ argv: ['sleep', '60'] }]);
    const { jobs } = await w.claim();
    assert.deepEqual(jobs.map((j) => j.id), ids);
    assert.equal((await home.admin.job(ids[0]!)).state, 'running');
    await killSite(asking);
    const requeued = await until('the home server to re-queue the job', async () => {
      const v = await home.admin.job(ids[0]!);
      return v.state === 'queued' ? v : null;
    });
    assert.equal(requeued.attempts[0]!.via, asking.serverId);
    assert.equal(requeued.attempts[0]!.how, 'lease-expired');
    // A worker at home takes attempt 2.
    const local = await worker(home);
    const again = await local.claim();
    assert.deepEqual(again.jobs.map((j) => [j.id, j.attempt]), [[ids[0], 2]]);
    await local.result(ids[0]!, 2);
    assert.equal((await home.admin.job(ids[0]!)).state, 'done');
  });
});

describe('when the home server is killed mid-job', () => {
  it('the asking server keeps the result and delivers it once home is back', async () => {
    const asking = await site(startSite('asking2', { heartbeatIntervalS: 1, leaseS: 30 }));
    let home = await site(spawnSite('home2'));
    await connect(asking, home);
    await linkUp(asking, home);
    await home.admin.createProject('p');
    const w = await worker(asking);
    const { ids } = await home.admin.submit('p', [{ argv: ['true'] }]);
    const { jobs } = await w.claim();
    assert.deepEqual(jobs.map((j) => j.id), ids);
    const ports = { securePort: home.securePort, unsecurePort: home.unsecurePort };
    await killSite(home);
    // The worker finishes while home is away: the asking server takes the result.
    const reply = (await w.result(ids[0]!, 1, 0, 'kept\n')) as { accepted: boolean };
    assert.equal(reply.accepted, true);
    assert.ok(asking.server!.model.foreign.get(ids[0]!)?.result, 'the result waits in the outbox');
    // Home comes back at the same address; the link returns and the result goes home once.
    const restarted = await spawnSite('home2', home.home, ports);
    sites.push(restarted);
    home = restarted;
    const done = await until('the job to be done at home', async () => {
      const v = await home.admin.job(ids[0]!);
      return v.state === 'done' ? v : null;
    });
    assert.equal(done.attempts.length, 1, 'the job ran once');
    assert.equal(done.stdoutTail, 'kept\n');
    await until('the outbox to empty', () => asking.server!.model.foreign.size === 0);
  });
});

describe('a server that its peer cannot reach', () => {
  it('takes full part by dialling out: the link, delegation both ways', async () => {
    // 192.0.2.1 is reserved for documentation: nothing answers there, so the
    // peer can never reach this server's ports, as behind a firewall or NAT.
    const hidden = await site(startSite('hidden', { publicHost: '192.0.2.1' }));
    const open = await site(startSite('open'));
    await connect(hidden, open);
    await linkUp(hidden, open);
    for (const s of [hidden, open]) await s.admin.createProject('p');

    const hiddenWorker = await worker(hidden);
    const fromOpen = await open.admin.submit('p', [{ argv: ['true'] }]);
    const a = await hiddenWorker.claim();
    assert.deepEqual(a.jobs.map((j) => j.id), fromOpen.ids);
    await hiddenWorker.result(fromOpen.ids[0]!, 1);

    const openWorker = await worker(open);
    const fromHidden = await hidden.admin.submit('p', [{ argv: ['true'] }]);
    const b = await openWorker.claim();
    assert.deepEqual(b.jobs.map((j) => j.id), fromHidden.ids, 'the unreachable server lends work over the link it opened');
    await openWorker.result(fromHidden.ids[0]!, 1);
    await until('both jobs done at home', async () => {
      const [x, y] = await Promise.all([open.admin.job(fromOpen.ids[0]!), hidden.admin.job(fromHidden.ids[0]!)]);
      return x.state === 'done' && y.state === 'done';
    });
  });
});

describe('a delegation round', () => {
  it('hands out only what fits the asking worker, leaving the rest queued at home', async () => {
    const { home, asking } = await pair(await site(startSite('asking4')), await site(startSite('home4')));
    const { ids } = await home.admin.submit('p', Array.from({ length: 5 }, () => ({ argv: ['true'] })));
    const w = await worker(asking, 2);
    const { jobs } = await w.claim();
    assert.equal(jobs.length, 2, 'two cores, two jobs');
    const counts = (await home.admin.project('p')).counts;
    assert.equal(counts.running, 2);
    assert.equal(counts.queued, 3);
    for (const j of jobs) assert.ok(ids.includes(j.id));
  });
});

describe('disconnecting a peer', () => {
  it('loses its attempts at home at once, and drops its jobs on the asking side', async () => {
    const { home, asking } = await pair(await site(startSite('asking5')), await site(startSite('home5')));
    const w = await worker(asking);
    const { ids } = await home.admin.submit('p', [{ argv: ['sleep', '60'] }]);
    const { jobs } = await w.claim();
    assert.deepEqual(jobs.map((j) => j.id), ids);
    await home.admin.call('DELETE', `/peers/${asking.serverId}`);
    const v = await home.admin.job(ids[0]!);
    assert.equal(v.state, 'queued', 'home re-queued it at once');
    assert.equal(v.attempts[0]!.how, 'worker-lost');
    // The asking side hears of it through the signed notice and lets go.
    await until('the asking side to drop the job', () => asking.server!.model.foreign.size === 0);
    const hb = await w.heartbeat([{ jobId: ids[0]!, attempt: 1 }]);
    assert.deepEqual(hb.abandon.map((a) => a.jobId), ids);
    assert.deepEqual(asking.server!.model.usedBy(w.id), { cores: 0, memoryMb: 0 });
  });
});
