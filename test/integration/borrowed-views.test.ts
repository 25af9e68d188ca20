/**
 * What admins of two federated servers see of one delegated attempt: the
 * borrowing server lists it in `workers` and `heartbeats` with its home
 * server's name; the home server names the borrowing server and its worker,
 * not their ids, in `heartbeats` and in the job's reason. Through the API and
 * through cpcc as users run it.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { updateConfig } from '../../src/client/config.js';
import { connect, linkUp, SimWorker, startSite, stopSite, until, type Site } from '../helpers/federation.js';
import { cleanup, cpcc, cpccOk, tempDir } from '../helpers/server.js';

/** A cpcc settings folder logged in to `site` as cpc-admin. */
async function cpccHomeOf(site: Site): Promise<string> {
  const home = await tempDir('cpcc-fed-');
  await updateConfig(home, (c) => {
    c.servers.here = { url: site.url, serverId: site.serverId, caPem: site.caPem, caFingerprint: new X509Certificate(site.caPem).fingerprint256, user: 'cpc-admin', token: site.admin.token!, project: 'p' };
    c.current = 'here';
  });
  return home;
}

describe('views of a borrowed attempt', () => {
  let borrower: Site;
  let home: Site;
  let w: SimWorker;
  let jobId: string;
  let beating: NodeJS.Timeout | undefined;

  before(async () => {
    [borrower, home] = await Promise.all([startSite('borrower-site'), startSite('home-site')]);
    await connect(borrower, home);
    await linkUp(borrower, home);
    await home.admin.createProject('p');
    w = await new SimWorker(borrower, 'lab-node-3').register(2, 2000);
    ({ ids: [jobId] } = (await home.admin.submit('p', [{ argv: ['sleep', '60'] }])) as { ids: [string] });
    const { jobs } = await w.claim();
    assert.deepEqual(jobs.map((j) => j.id), [jobId]);
    await w.heartbeat([{ jobId, attempt: 1, started: true }]);
    // The worker keeps its lease (2 s on these sites) while the views are read, as a running worker does.
    beating = setInterval(() => void w.heartbeat([{ jobId, attempt: 1, started: true }]).catch(() => {}), 250);
  });

  after(async () => {
    clearInterval(beating);
    await w?.close();
    await Promise.all([borrower, home].filter(Boolean).map((s) => stopSite(s)));
    await cleanup();
  });

  it('the borrowing server lists the attempt under its worker and in heartbeats, with the home server’s name', async () => {
    const { workers } = await borrower.admin.workers();
    const mine = workers.find((x) => x.id === w.id)!;
    assert.equal(mine.state, 'live');
    assert.equal(mine.running, 1);
    assert.deepEqual(mine.borrowed, [{ serverId: home.serverId, name: 'home-site', running: 1 }]);

    const { leases } = await borrower.admin.heartbeats();
    assert.equal(leases.length, 1);
    const [l] = leases;
    assert.equal(l!.jobId, jobId);
    assert.equal(l!.project, 'p');
    assert.equal(l!.workerName, 'lab-node-3');
    assert.deepEqual(l!.home, { serverId: home.serverId, name: 'home-site' });
    assert.equal(l!.live, 'running');

    const cli = await cpccHomeOf(borrower);
    const hb = await cpccOk(cpcc(cli, ['heartbeats']));
    assert.match(hb, /lab-node-3.*from home-site/, hb);
    const ws = await cpccOk(cpcc(cli, ['workers']));
    assert.match(ws, /lab-node-3.*1 from home-site/, ws);
  });

  it('the home server names the borrowing server and its worker, not their ids', async () => {
    const { leases } = await home.admin.heartbeats();
    const l = leases.find((x) => x.jobId === jobId)!;
    assert.equal(l.via, borrower.serverId);
    assert.equal(l.viaName, 'borrower-site');
    assert.equal(l.workerName, 'lab-node-3');
    assert.equal(l.home, undefined);

    const job = await home.admin.job(jobId);
    assert.equal(job.reason, 'running on lab-node-3 via borrower-site');
    assert.equal(job.attempts[0]!.viaName, 'borrower-site');

    const cli = await cpccHomeOf(home);
    const hb = await cpccOk(cpcc(cli, ['heartbeats']));
    assert.match(hb, /lab-node-3.*borrower-site/, hb);
    assert.doesNotMatch(hb, new RegExp(borrower.serverId), 'no server id in the table');
    assert.doesNotMatch(hb, new RegExp(w.id), 'no worker id in the table');
  });

  it('once the attempt ends, neither server lists it', async () => {
    await w.result(jobId, 1);
    clearInterval(beating);
    await until('the job to be done at home', async () => (await home.admin.job(jobId)).state === 'done');
    await until('the borrowed attempt to leave the borrowing server', async () => (await borrower.admin.heartbeats()).leases.length === 0);
    const mine = (await borrower.admin.workers()).workers.find((x) => x.id === w.id)!;
    assert.equal(mine.running, 0);
    assert.equal(mine.borrowed, undefined);
  });

  it('keeps the borrowing server’s name with the attempt through save and load', async () => {
    const cli = await cpccHomeOf(home);
    const tar = `${await tempDir('cpc-save-')}/p.tar`;
    await cpccOk(cpcc(cli, ['save', 'p', tar]));
    await cpccOk(cpcc(cli, ['load', tar, 'p-copy', '--new-ids']));
    const { jobs } = await home.admin.jobs('p-copy');
    assert.equal(jobs.length, 1);
    assert.equal(jobs[0]!.attempts[0]!.viaName, 'borrower-site');
  });
});
