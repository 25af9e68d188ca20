/**
 * Looking a job up by id: an id that is neither live nor archived is
 * answered from the server's index of archived ids without reading any
 * archive file; an archived job is read from its own project's day file
 * only. The index lives in snapshots and the journal, and is built from the
 * archive once when the saved state predates it.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiError } from '../../src/client/api/client.js';
import { readLatestSnapshot, writeSnapshot } from '../../src/persistence/snapshot-store.js';
import { newId } from '../../src/server/jobs/ids.js';
import { cleanup, makeClient, resultOf, startTestServer, type TestServer } from '../helpers/server.js';

after(cleanup);

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiError) return err.code;
    throw err;
  }
  return 'carried out';
}

describe('looking a job up by id', () => {
  let ts: TestServer;
  const archived: string[] = [];

  before(async () => {
    ts = await startTestServer();
    const w = await ts.worker({ name: 'arch' });
    for (const p of ['p1', 'p2', 'p3']) {
      await ts.admin.createProject(p);
      const { ids } = await ts.admin.submit(p, [{ argv: ['true'] }]);
      const [c] = (await w.client.claim(w.workerId, { waitS: 0, max: 1 })).jobs;
      await w.client.result(w.workerId, resultOf(c!.id, c!.attempt));
      archived.push(ids[0]!);
    }
    await ts.server.ctx.store.archiveJobs(archived, Date.now());
    // A day file nobody can read as one, in a folder of its own, on the day of the ids asked for below:
    // any lookup that reads the archive in search of them fails on it.
    mkdirSync(join(ts.home, 'archive', 'trap', `${new Date().toISOString().slice(0, 10)}.ndjson`), { recursive: true });
  });

  it('answers unknown ids without reading an archive file, and finds archived jobs in their own day file', async () => {
    const archive = ts.server.ctx.store.archive;
    const read = archive.filesRead;
    assert.equal(await codeOf(ts.admin.job(newId())), 'JOB_NOT_FOUND');
    const many = await Promise.all(Array.from({ length: 40 }, () => codeOf(ts.admin.job(newId()))));
    assert.deepEqual(new Set(many), new Set(['JOB_NOT_FOUND']));
    assert.equal(archive.filesRead, read, 'an unknown id read archive files');
    for (const id of archived) {
      const job = await ts.admin.job(id);
      assert.equal(job.state, 'done');
      assert.equal(job.archived, true);
    }
    assert.equal(archive.filesRead, read + archived.length, 'one day file per archived job');
    // Someone who may not see the project gets the answer an unknown id gets.
    await ts.admin.addUser('eve', 'eve-password');
    const eve = makeClient(ts.server.url, ts.server.caPem);
    eve.token = (await eve.login('eve', 'eve-password')).token;
    assert.equal(await codeOf(eve.job(archived[0]!)), 'JOB_NOT_FOUND');
    // A submit depending on an unknown id is refused without reading either.
    assert.equal(await codeOf(ts.admin.submit('p1', [{ argv: ['true'], after: [newId()] }])), 'UNKNOWN_DEPENDENCY');
    const { ids } = await ts.admin.submit('p1', [{ argv: ['true'], after: [archived[0]!] }]);
    assert.equal((await ts.admin.job(ids[0]!)).state, 'queued');
    assert.equal(await codeOf(ts.admin.submit('p1', [{ argv: ['true'], after: [archived[1]!] }])), 'UNKNOWN_DEPENDENCY', "another project's archived job");
  });

  it('keeps the index across a restart, and builds it from the archive when the saved state has none', async () => {
    const home = ts.home;
    await ts.server.close();
    ts = await startTestServer({ home });
    assert.equal(await codeOf(ts.admin.job(newId())), 'JOB_NOT_FOUND');
    assert.equal(ts.server.ctx.store.archive.filesRead, 0);
    assert.equal((await ts.admin.job(archived[2]!)).archived, true);
    await ts.server.close();

    // State saved before the index existed: its snapshot has no archivedIds.
    const stateDir = join(home, 'state');
    const snap = (await readLatestSnapshot(stateDir))!;
    const { archivedIds, ...older } = snap.data as { archivedIds?: unknown };
    assert.ok(Array.isArray(archivedIds) && archivedIds.length === 3);
    await writeSnapshot(stateDir, older, snap.segment);
    ts = await startTestServer({ home });
    for (const [i, id] of archived.entries()) assert.equal(ts.server.model.archivedProjectOf(id), `p${i + 1}`);
    const read = ts.server.ctx.store.archive.filesRead;
    assert.equal(await codeOf(ts.admin.job(newId())), 'JOB_NOT_FOUND');
    assert.equal(ts.server.ctx.store.archive.filesRead, read);
    await ts.admin.removeProject('p3');
    assert.equal(ts.server.model.archivedProjectOf(archived[2]!), undefined);
    assert.equal(await codeOf(ts.admin.job(archived[2]!)), 'JOB_NOT_FOUND');
  });
});
