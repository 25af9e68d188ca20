/**
 * Sharing the queue between users on a real server: a user who floods it at
 * every priority, the top one included, does not hold back another user's
 * jobs; a super user's weights (cpcc set-weight) change the shares and last
 * across a restart; priorities outside the range are refused by the API and
 * by cpcc, and change nothing.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiError, type ApiClient } from '../../src/client/api/client.js';
import { PRIORITY_MAX, PRIORITY_MIN } from '../../src/core/types.js';
import type { ResultRequest } from '../../src/core/wire.js';
import { cleanup, cpcc, cpccHome, makeClient, resultOf, startTestServer, tempDir, type SimWorker, type TestServer } from '../helpers/server.js';

const FLOOD = 3000;

describe('users share the queue', () => {
  let home: string;
  let ts: TestServer;
  let mallory: ApiClient;
  let alice: ApiClient;
  let worker: SimWorker;
  /** Results of the jobs claimed last, sent with the next claim. */
  let pending: ResultRequest[] = [];

  const logIn = async (user: string): Promise<ApiClient> => {
    await ts.admin.addUser(user, `${user}-password`);
    const c = makeClient(ts.server.url, ts.server.caPem);
    c.token = (await c.login(user, `${user}-password`)).token;
    return c;
  };

  /** Claims one job at a time, `n` times, each claim carrying the result of the one before; returns their projects. */
  const serve = async (n: number): Promise<string[]> => {
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      const reply = await worker.client.claim(worker.workerId, { waitS: 0, max: 1, results: pending });
      pending = reply.jobs.map((j) => resultOf(j.id, j.attempt));
      if (reply.jobs.length === 0) break;
      out.push(reply.jobs[0]!.project);
    }
    return out;
  };
  const users = (projects: string[]) => projects.map((p) => (p === 'science' ? 'a' : 'm')).join('');

  before(async () => {
    home = await tempDir('cpc-fair-');
    ts = await startTestServer({ home });
    mallory = await logIn('mallory');
    alice = await logIn('alice');
    await mallory.createProject('flood');
    await alice.createProject('science');
    worker = await ts.worker({ cores: 1, memoryMb: 1000 });
  });
  after(cleanup);

  it("serves another user's lowest-priority jobs in turn while one user floods the queue at every priority", async () => {
    // Half at the top priority, half spread over every priority there is.
    await mallory.submit('flood', Array.from({ length: FLOOD / 2 }, () => ({ argv: ['true'], priority: PRIORITY_MAX })));
    await mallory.submit(
      'flood',
      Array.from({ length: FLOOD / 2 }, (_, i) => ({ argv: ['true'], priority: PRIORITY_MIN + (i % (PRIORITY_MAX - PRIORITY_MIN + 1)) })),
    );
    await alice.submit('science', Array.from({ length: 20 }, () => ({ argv: ['true'], priority: PRIORITY_MIN })));
    const served = users(await serve(40));
    assert.equal(served, 'ma'.repeat(20), 'the two users take turns');
    assert.equal(ts.server.model.countsOf('science').queued, 0, "all of alice's jobs were handed out");
  });

  it('gives a user the share a super user sets with cpcc set-weight, and keeps it across a restart', async () => {
    const admin = await cpccHome(ts, 'flood');
    const set = await cpcc(admin, ['set-weight', 'user', 'mallory', '3']);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /user 'mallory' now has weight 3/);
    await alice.submit('science', Array.from({ length: 20 }, () => ({ argv: ['true'] })));
    assert.equal(users(await serve(20)), 'mmma'.repeat(5));

    const refused = await cpcc(admin, ['set-weight', 'user', 'mallory', '0']);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /the weight must be a whole number from 1 to 1000/);
    const unknown = await cpcc(admin, ['set-weight', 'project', 'nowhere', '2']);
    assert.equal(unknown.code, 1);
    await assert.rejects(alice.setWeight('user', 'alice', 50), (err: unknown) => err instanceof ApiError && err.status === 403);

    await ts.server.close();
    ts = await startTestServer({ home });
    assert.deepEqual((await ts.admin.weights()).weights, [{ of: 'user', name: 'mallory', weight: 3 }]);
    const listed = await cpcc(await cpccHome(ts, 'flood'), ['weights']);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /user\s+mallory\s+3/);
  });

  it('refuses a priority outside the range through the API and cpcc, and queues nothing', async () => {
    const again = makeClient(ts.server.url, ts.server.caPem);
    again.token = (await again.login('alice', 'alice-password')).token;
    // Jobs counted whatever their state: an attempt left from the test before may lose its lease meanwhile.
    const jobsIn = (project: string) => Object.values(ts.server.model.countsOf(project)).reduce((a, b) => a + b, 0);
    const before = jobsIn('science');
    for (const priority of [PRIORITY_MAX + 1, PRIORITY_MIN - 1, 1_000_000]) {
      await assert.rejects(again.submit('science', [{ argv: ['true'] }, { argv: ['true'], priority }]), (err: unknown) => {
        assert.ok(err instanceof ApiError, String(err));
        assert.equal(err.status, 400);
        assert.equal(err.code, 'PRIORITY_OUT_OF_RANGE');
        assert.match(err.message, /priority: must be from -100 to 100/);
        return true;
      });
    }
    const cli = await cpccHome(ts, 'science');
    const flag = await cpcc(cli, ['submit', '--priority', '500', '--', 'true']);
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /--priority must be at most 100/);
    const dir = await tempDir('cpc-fair-file-');
    const file = join(dir, 'jobs.ndjson');
    writeFileSync(file, '{"argv":["true"]}\n{"argv":["true"],"priority":500}\n');
    const fromFile = await cpcc(cli, ['submit', '--file', file]);
    assert.equal(fromFile.code, 1);
    assert.match(fromFile.stderr, /jobs\.ndjson line 2: priority must be a whole number from -100 to 100/);
    assert.equal(jobsIn('science'), before, 'nothing was queued');
  });
});
