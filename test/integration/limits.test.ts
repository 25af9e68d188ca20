/**
 * What one user may make the server hold: a job's command and environment
 * are refused at submit when no process could be started with them (or they
 * pass the server's limits), a user's unfinished jobs and their bytes are
 * capped over all the projects they own, and routes that need no large body
 * refuse one. Each refusal has its own code and changes nothing; the limits
 * are settings, and `cpc-server config set` writes them on a fresh home.
 */
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiClient, ApiError } from '../../src/client/api/client.js';
import type { JobInput } from '../../src/core/wire.js';
import { main as cpcServer } from '../../src/server/start/cli.js';
import { resolveConfig } from '../../src/server/start/config.js';
import { cleanup, cpccHome, cpccInProcess, makeClient, startTestServer, tempDir, type TestServer } from '../helpers/server.js';

after(cleanup);

const refusal = (code: string, status: number) => (e: unknown) => {
  assert.ok(e instanceof ApiError, String(e));
  assert.equal(e.code, code, e.message);
  assert.equal(e.status, status);
  return true;
};

async function userClient(ts: TestServer, name: string): Promise<ApiClient> {
  await ts.server.ctx.accounts.addUser(name, `${name}-password`, false);
  const c = makeClient(ts.server.url, ts.server.caPem);
  c.token = (await c.login(name, `${name}-password`)).token;
  return c;
}

describe('job size at submit', () => {
  let ts: TestServer;
  let bob: ApiClient;

  before(async () => {
    ts = await startTestServer({ maxArgvBytes: 4096, maxEnvBytes: 2048 });
    bob = await userClient(ts, 'bob');
    await bob.createProject('sizes');
  });

  const unchanged = async (submit: () => Promise<unknown>, check: (e: unknown) => boolean) => {
    const jobs = ts.server.model.jobs.size;
    const seq = ts.server.ctx.store.seq;
    await assert.rejects(submit(), check);
    assert.equal(ts.server.model.jobs.size, jobs, 'no job was added');
    assert.equal(ts.server.ctx.store.seq, seq, 'nothing was journaled');
  };

  it('refuses an argument no process could be started with (ARGV_TOO_LARGE), naming the job and the argument', async () => {
    // 50 000 characters pass the schema, but at three bytes each they are over Linux's 128 KiB for one argument.
    const wide = 'ア'.repeat(50_000);
    const big = await startTestServer({ maxArgvBytes: 1024 * 1024 });
    const carol = await userClient(big, 'carol');
    await carol.createProject('wide');
    await assert.rejects(carol.submit('wide', [{ argv: ['true'] }, { argv: ['echo', wide], name: 'wide' }]), (e: ApiError) => {
      refusal('ARGV_TOO_LARGE', 413)(e);
      assert.match(e.message, /job 2 \('wide'\): argument 2 is 150000 bytes/);
      return true;
    });
    await assert.rejects(carol.submit('wide', [{ argv: ['true'], env: { WIDE: wide } }]), refusal('ENV_TOO_LARGE', 413));
    assert.equal(big.server.model.jobs.size, 0);
  });

  it("refuses a command or environment over the server's limits, and takes one at the limit", async () => {
    const args = Array.from({ length: 8 }, () => 'a'.repeat(511)); // 8 × 512 bytes with their NULs: exactly 4096
    await unchanged(() => bob.submit('sizes', [{ argv: ['x', ...args] }]), refusal('ARGV_TOO_LARGE', 413));
    await unchanged(() => bob.submit('sizes', [{ shell: 's'.repeat(4096) }]), refusal('ARGV_TOO_LARGE', 413));
    await unchanged(() => bob.submit('sizes', [{ argv: ['true'], env: { A: 'v'.repeat(1000), B: 'v'.repeat(1100) } }]), refusal('ENV_TOO_LARGE', 413));
    const { ids } = await bob.submit('sizes', [{ argv: args }, { argv: ['true'], env: { A: 'v'.repeat(2048 - 4) } }]);
    assert.equal(ids.length, 2);
  });
});

describe('unfinished jobs per user', () => {
  let ts: TestServer;
  let bob: ApiClient;
  let alice: ApiClient;

  before(async () => {
    ts = await startTestServer({ maxQueuedJobsPerUser: 5, maxQueuedBytesPerUser: 16 * 1024 });
    bob = await userClient(ts, 'bob');
    alice = await userClient(ts, 'alice');
    await bob.createProject('b1');
    await bob.createProject('b2');
    await bob.grantAccess('b1', 'alice');
    await alice.createProject('a1');
  });

  it("counts every project a user owns, and members' jobs against the owner (QUEUE_FULL)", async () => {
    await bob.submit('b1', [{ argv: ['true'] }, { argv: ['true'] }]);
    await alice.submit('b1', [{ argv: ['true'] }]);
    const jobs = ts.server.model.jobs.size;
    // Three in b1, so three more in another of bob's projects are one too many: none is taken.
    await assert.rejects(bob.submit('b2', [{ argv: ['true'] }, { argv: ['true'] }, { argv: ['true'] }]), (e: ApiError) => {
      refusal('QUEUE_FULL', 409)(e);
      assert.match(e.message, /3 unfinished jobs.*limit of 5 \(maxQueuedJobsPerUser\)/);
      return true;
    });
    await assert.rejects(alice.submit('b1', [{ argv: ['true'] }, { argv: ['true'] }, { argv: ['true'] }]), refusal('QUEUE_FULL', 409));
    assert.equal(ts.server.model.jobs.size, jobs);
    // Alice's own projects are her own budget.
    await alice.submit('a1', [1, 2, 3, 4, 5].map(() => ({ argv: ['true'] })));
    // Finished (here: cancelled) jobs no longer count, and retrying them counts them again.
    const { ids } = await bob.submit('b2', [{ argv: ['true'] }, { argv: ['true'] }]);
    await bob.cancel(ids);
    await bob.submit('b2', [{ argv: ['true'] }, { argv: ['true'] }]);
    await assert.rejects(bob.retry(ids), refusal('QUEUE_FULL', 409));
  });

  it('caps the bytes of unfinished jobs a user leaves, and a submit past it changes nothing', async () => {
    const carol = await userClient(ts, 'carol');
    await carol.createProject('c1');
    const fat = (n: number): JobInput[] => Array.from({ length: n }, () => ({ argv: ['true'], env: { PAD: 'p'.repeat(5000) } }));
    await carol.submit('c1', fat(2));
    const jobs = ts.server.model.jobs.size;
    const seq = ts.server.ctx.store.seq;
    await assert.rejects(carol.submit('c1', fat(2)), (e: ApiError) => {
      refusal('QUEUE_FULL', 409)(e);
      assert.match(e.message, /maxQueuedBytesPerUser/);
      return true;
    });
    assert.equal(ts.server.model.jobs.size, jobs);
    assert.equal(ts.server.ctx.store.seq, seq);
    assert.ok(ts.server.ctx.usage.of('carol').bytes <= 16 * 1024);
  });

  it('counts the unfinished jobs of a loaded project against its new owner', async () => {
    await ts.admin.createProject('saved');
    await ts.admin.submit('saved', [1, 2, 3].map(() => ({ argv: ['true'] })));
    const home = await cpccHome(ts, 'saved');
    const dir = await tempDir('cpc-saved-');
    const tar = join(dir, 'saved.tar');
    assert.equal((await cpccInProcess(home, ['save', 'saved', tar])).code, 0);
    // Three of the admin's five already: three more do not fit, and no project is made.
    const load = await cpccInProcess(home, ['load', tar, 'copy', '--new-ids']);
    assert.equal(load.code, 1);
    assert.match(load.stderr, /QUEUE_FULL/);
    assert.equal(ts.server.model.projects.has('copy'), false);
  });

  it('counts the same after a restart', async () => {
    const before = ts.server.ctx.usage.of('bob');
    const home = ts.home;
    await ts.server.close();
    const again = await startTestServer({ home, maxQueuedJobsPerUser: 5, maxQueuedBytesPerUser: 16 * 1024 });
    assert.deepEqual(again.server.ctx.usage.of('bob'), before);
    const bobAgain = makeClient(again.server.url, again.server.caPem);
    bobAgain.token = (await bobAgain.login('bob', 'bob-password')).token;
    await assert.rejects(bobAgain.submit('b1', [{ argv: ['true'] }]), refusal('QUEUE_FULL', 409));
  });
});

describe('body limits per route', () => {
  let ts: TestServer;

  before(async () => {
    ts = await startTestServer();
    await ts.admin.createProject('bodies');
  });

  it('refuses a large body on a route that needs a small one (a login), but takes it on a submission', async () => {
    const anon = ts.anonymous();
    await assert.rejects(anon.login('cpc-admin', 'x'.repeat(2 * 1024 * 1024)), refusal('BODY_TOO_LARGE', 413));
    const jobs = Array.from({ length: 500 }, (_, i) => ({ argv: ['echo', String(i), 'y'.repeat(4000)] }));
    assert.equal((await ts.admin.submit('bodies', jobs)).ids.length, 500);
  });
});

describe('project names taken by projects one may not see', () => {
  it('answers the same as for a visible one, and stops a user who keeps asking for hidden names', async () => {
    const ts = await startTestServer();
    const alice = await userClient(ts, 'alice');
    const mallory = await userClient(ts, 'mallory');
    await alice.createProject('alices-secret');
    await mallory.createProject('mine');
    const hidden = await mallory.createProject('alices-secret').catch((e: ApiError) => e);
    const visible = await mallory.createProject('mine').catch((e: ApiError) => e);
    assert.ok(hidden instanceof ApiError && visible instanceof ApiError);
    assert.deepEqual([hidden.status, hidden.code, hidden.message.replace('alices-secret', 'N')], [visible.status, visible.code, visible.message.replace('mine', 'N')]);
    // Her own names do not count; hidden ones do, ten an hour, then every creation of hers waits, whatever the name.
    for (let i = 0; i < 20; i++) await assert.rejects(mallory.createProject('mine'), refusal('PROJECT_EXISTS', 409));
    for (let i = 1; i < 10; i++) await assert.rejects(mallory.createProject('alices-secret'), refusal('PROJECT_EXISTS', 409));
    for (const name of ['alices-secret', 'free-name', 'mine']) {
      await assert.rejects(mallory.createProject(name), (e: ApiError) => refusal('TOO_MANY_REQUESTS', 429)(e) && (e.retryAfterS ?? 0) > 0);
    }
    assert.equal(ts.server.model.projects.has('free-name'), false);
    // Others are not held back by her.
    assert.equal((await alice.createProject('free-name')).name, 'free-name');
  });
});

describe('settings', () => {
  it('has limits by default: a project quota, jobs and bytes per user, command and environment size', async () => {
    const c = resolveConfig(await tempDir('cpc-defaults-'), {}, {});
    assert.ok(c.projectQuotaBytes > 0);
    assert.ok(c.maxQueuedJobsPerUser > 0 && c.maxQueuedBytesPerUser > 0);
    assert.ok(c.maxArgvBytes + c.maxEnvBytes <= 2 * 1024 * 1024, 'a job within the limits can be started by Linux');
  });

  it('config set writes a setting on a home that was never started, 0700 folder and 0600 file', async () => {
    const home = join(await tempDir('cpc-fresh-'), 'home');
    assert.equal(await cpcServer(['node', 'cpc-server', '--home', home, 'config', 'set', 'maxQueuedJobsPerUser', '1234']), 0);
    assert.equal(statSync(home).mode & 0o777, 0o700);
    assert.equal(statSync(join(home, 'config.json')).mode & 0o777, 0o600);
    assert.equal(resolveConfig(home, {}, {}).maxQueuedJobsPerUser, 1234);
  });
});
