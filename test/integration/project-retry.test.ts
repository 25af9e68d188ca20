/**
 * A project's default retry with more (`cpcc project-set`): jobs submitted
 * without their own retry get it, a job's own wins, jobs already submitted
 * keep theirs; it is journaled, so it survives a restart; bad flags are
 * refused in the user's words and only the owner (or a super user) sets it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApiError, type ApiClient } from '../../src/client/api/client.js';
import { cleanup, cpcc, cpccHome, makeClient, startTestServer, tempDir, type TestServer } from '../helpers/server.js';

after(cleanup);

describe('project defaults for retry with more', () => {
  let home: string;
  let ts: TestServer;
  let cli: string;

  before(async () => {
    home = await tempDir('cpc-project-retry-');
    ts = await startTestServer({ home });
    await ts.admin.createProject('sims');
    cli = await cpccHome(ts, 'sims');
  });

  it('gives jobs without their own retry the project’s, keeps a job’s own, and keeps it across a restart', async () => {
    const before = (await ts.admin.submit('sims', [{ argv: ['true'], name: 'before' }])).ids[0]!;
    const set = await cpcc(cli, ['project-set', '--retry-oom', '1.5:16G', '--retry-timeout', '2:8h', '--retry-more', '2']);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /project 'sims': jobs submitted without their own retry with more get memory ×1\.5 up to 16384 MB, time ×2 up to 28800s; at most 2 times/);
    const defaults = { oom: { factor: 1.5, maxMemoryMb: 16384 }, timeout: { factor: 2, maxWallTimeS: 28800 }, attempts: 2 };
    assert.deepEqual((await ts.admin.project('sims')).retry, defaults);

    const own = { oom: { factor: 3, maxMemoryMb: 1024 } };
    const { ids } = await ts.admin.submit('sims', [{ argv: ['true'], name: 'plain' }, { argv: ['true'], name: 'own', retry: own }]);
    assert.deepEqual((await ts.admin.job(ids[0]!)).retry, defaults);
    assert.deepEqual((await ts.admin.job(ids[1]!)).retry, own, "a job's own retry wins");
    assert.equal((await ts.admin.job(before)).retry, undefined, 'a job already submitted keeps what it had');
    const shown = await cpcc(cli, ['status', '--json']);
    assert.deepEqual(JSON.parse(shown.stdout).retry, defaults);

    await ts.server.close();
    ts = await startTestServer({ home });
    assert.deepEqual((await ts.admin.project('sims')).retry, defaults, 'journaled: kept across a restart');
    const later = (await ts.admin.submit('sims', [{ argv: ['true'] }])).ids[0]!;
    assert.deepEqual((await ts.admin.job(later)).retry, defaults);

    cli = await cpccHome(ts, 'sims');
    const cleared = await cpcc(cli, ['project-set', 'sims', '--clear-retry']);
    assert.equal(cleared.code, 0, cleared.stderr);
    assert.equal((await ts.admin.project('sims')).retry, undefined);
    const none = (await ts.admin.submit('sims', [{ argv: ['true'] }])).ids[0]!;
    assert.equal((await ts.admin.job(none)).retry, undefined);
  });

  it('refuses bad flags in the user’s words, bad bodies with INVALID_FIELD, and anyone but the owner', async () => {
    const cases: [string[], RegExp][] = [
      [['--retry-oom', '0.5:16G'], /--retry-oom.*the factor '0\.5' must be a number above 1/],
      [['--retry-oom', '1.5:lots'], /--retry-oom.*the most memory 'lots' must be a size/],
      [['--retry-timeout', '2'], /--retry-timeout.*'2' is not FACTOR:MAX/],
      [['--retry-more', '3'], /--retry-more goes with --retry-oom or --retry-timeout/],
      [[], /give --retry-oom, --retry-timeout \(and --retry-more\), or --clear-retry/],
      [['--clear-retry', '--retry-oom', '2:1G'], /--clear-retry goes without/],
    ];
    for (const [flags, message] of cases) {
      const r = await cpcc(cli, ['project-set', ...flags]);
      assert.equal(r.code, 2, `${flags.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    await assert.rejects(
      ts.admin.setProjectRetry('sims', { oom: { factor: 0, maxMemoryMb: 100 } }),
      (err: unknown) => err instanceof ApiError && err.code === 'INVALID_FIELD' && /retry\.oom\.factor/.test(err.message),
    );
    await assert.rejects(ts.admin.setProjectRetry('sims', {}), (err: unknown) => err instanceof ApiError && err.code === 'INVALID_FIELD');
    assert.equal((await ts.admin.project('sims')).retry, undefined, 'a refused change changes nothing');

    await ts.admin.addUser('mallory', 'mallory-password');
    const mallory: ApiClient = makeClient(ts.server.url, ts.server.caPem);
    mallory.token = (await mallory.login('mallory', 'mallory-password')).token;
    await assert.rejects(mallory.setProjectRetry('sims', { oom: { factor: 2, maxMemoryMb: 100 } }), (err: unknown) => err instanceof ApiError && (err.status === 403 || err.status === 404));
    assert.equal((await ts.admin.project('sims')).retry, undefined);
  });
});
