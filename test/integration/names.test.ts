/**
 * Names other people read: the server refuses job, worker and project names
 * that hold characters acting on a terminal, and cpcc shows whatever such
 * characters older data still holds escaped, in tables and in lines alike.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApiError } from '../../src/client/api/client.js';
import { newId } from '../../src/server/jobs/ids.js';
import { cleanup, cpccHome, cpccInProcess, makeClient, startTestServer, type TestServer } from '../helpers/server.js';

after(cleanup);

/** A clear screen, a window title, a CSI in its one-byte C1 form, a right-to-left override, a bell. */
const NASTY = ['\x1b[2J\x1b[Hpwned', '\x1b]0;title\x07', 'csi\x9b31m', 'evil\u202etxt.exe', 'ding\x07', 'del\x7f', 'line\nfeed'];

/** Any character that acts on a terminal (as printed by cpcc, after escaping none should be left). */
const RAW_CONTROL = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/;

describe('names with control characters', () => {
  let ts: TestServer;

  before(async () => {
    ts = await startTestServer();
    await ts.admin.createProject('names');
  });

  it('refuses them in job names at submit, with CONTROL_CHARACTERS, and changes nothing', async () => {
    const before = ts.server.model.jobs.size;
    for (const name of NASTY) {
      const err = await ts.admin.submit('names', [{ argv: ['true'], name: 'fine' }, { argv: ['true'], name }]).catch((e: ApiError) => e);
      assert.ok(err instanceof ApiError, `refused: ${JSON.stringify(name)}`);
      assert.equal(err.code, 'CONTROL_CHARACTERS');
      assert.equal(err.status, 400);
      assert.match(err.message, /jobs\.1\.name/);
    }
    assert.equal(ts.server.model.jobs.size, before);
    // Printable text of any script is still a name.
    const { ids } = await ts.admin.submit('names', [{ argv: ['true'], name: 'équilibre Ω 平衡 ✓' }]);
    assert.equal(ts.server.model.job(ids[0]!)?.spec.name, 'équilibre Ω 平衡 ✓');
  });

  it('refuses them in worker names, hosts and labels, and in project names', async () => {
    const token = await ts.server.createWorkerToken('names');
    const workers = ts.server.model.workers.size;
    const client = makeClient(ts.server.url, ts.server.caPem, token);
    for (const over of [{ name: 'w\x1b[31m' }, { host: 'h\u202e' }, { labels: ['ok', 'l\x9b'] }]) {
      const err = await client.register({ name: 'w', host: 'h', cores: 1, memoryMb: 0, ...over }).catch((e: ApiError) => e);
      assert.equal((err as ApiError).code, 'CONTROL_CHARACTERS', JSON.stringify(over));
    }
    assert.equal(ts.server.model.workers.size, workers);
    await assert.rejects(ts.admin.createProject('p\x1b[1m'), (e: ApiError) => e.code === 'CONTROL_CHARACTERS');
    assert.equal(ts.server.model.projects.has('p\x1b[1m'), false);
  });

  it('cpcc shows names already stored with them escaped, in `jobs`, `job` and `workers`', async () => {
    // Data from before the check, or from a loaded project: put straight into the journal.
    const ids = NASTY.map(() => newId());
    await ts.server.ctx.store.commit({
      t: 'jobs-submitted',
      at: Date.now(),
      project: 'names',
      jobs: NASTY.map((name, i) => ({ id: ids[i]!, spec: { name, argv: ['true'], env: {}, resources: { cores: 1, memoryMb: 0 }, priority: 0, maxRetries: 0, timeoutS: null, after: [] } })),
    });
    await ts.server.ctx.store.commit({
      t: 'worker-registered',
      at: Date.now(),
      id: newId(),
      name: 'worker\x1b]0;owned\x07',
      host: 'host\u202egnp.exe',
      resources: { cores: 1, memoryMb: 0 },
      labels: [],
      tokenId: 'none',
    });
    const home = await cpccHome(ts, 'names');
    for (const args of [['jobs'], ['job', ids[0]!], ['job', ids[1]!], ['workers']]) {
      const r = await cpccInProcess(home, args);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stdout, RAW_CONTROL, `cpcc ${args.join(' ')} printed a control character: ${JSON.stringify(r.stdout)}`);
    }
    const jobs = (await cpccInProcess(home, ['jobs'])).stdout;
    assert.match(jobs, /\\x1b\[2J\\x1b\[Hpwned/, 'the escape is shown as text');
    assert.match(jobs, /evil\\u202etxt\.exe/);
    const workers = (await cpccInProcess(home, ['workers'])).stdout;
    assert.match(workers, /worker\\x1b\]0;owned\\x07/);
    // --json stays JSON, and the same characters are \u escapes in it.
    const json = await cpccInProcess(home, ['workers', '--json']);
    assert.doesNotMatch(json.stdout, RAW_CONTROL);
    assert.ok((JSON.parse(json.stdout) as { workers: { name: string }[] }).workers.some((w) => w.name === 'worker\x1b]0;owned\x07'));
  });
});
