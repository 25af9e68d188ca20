/**
 * A checksum is no credential: a project names by checksum only content it
 * holds (its jobs' inputs and outputs, its values, a project it loaded) or
 * sent the bytes of itself. Another project's file is answered exactly as a
 * file nobody has, in every place a checksum is taken: a download, a value,
 * a job's input, a saved project's manifest and values, a worker's result.
 * Sending the bytes oneself still works, and what a project may name
 * survives a restart and follows the collector.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { ApiError, type ApiClient } from '../../src/client/api/client.js';
import { tarHeader, tarSize } from '../../src/server/files/project-archive.js';
import { Sweeper } from '../../src/server/jobs/sweeper.js';
import { cleanup, makeClient, resultOf, startTestServer, type TestServer } from '../helpers/server.js';

after(cleanup);

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Refusal {
  status: number;
  code: string;
  message: string;
}

async function refusal(p: Promise<unknown>): Promise<Refusal> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiError) return { status: err.status, code: err.code, message: err.message };
    throw err;
  }
  assert.fail('expected a refusal, and the request was carried out');
}

/** What a caller can tell apart: the answer with the checksum it sent taken out. */
function seen(r: Refusal, sha: string): Refusal {
  return { ...r, message: r.message.replaceAll(sha, '<sha>') };
}

/** A tar of these entries, as the server writes them. */
function tar(entries: [string, Buffer][]): Buffer {
  const parts: Buffer[] = [];
  for (const [name, data] of entries) parts.push(tarHeader(name, data.length, 0), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  parts.push(Buffer.alloc(1024));
  const out = Buffer.concat(parts);
  assert.equal(out.length, tarSize(entries.map(([, d]) => ({ size: d.length }))));
  return out;
}

/**
 * A saved project whose value `v` is `file`, listed in its manifest (unless
 * `unlisted`), without the file's bytes (unless `withBytes`).
 */
function savedProjectNaming(file: { sha256: string; size: number }, withBytes?: Buffer, unlisted = false): Buffer {
  const manifest = {
    format: 'cpc-project',
    version: 1,
    project: 'p',
    owner: 'someone',
    members: [],
    createdAt: 1,
    values: { v: { sha256: file.sha256, size: file.size, at: 1 } },
    serverId: 'elsewhere',
    savedAt: 1,
    jobs: 0,
    files: unlisted ? [] : [file],
  };
  const entries: [string, Buffer][] = [
    ['cpc-project.json', Buffer.from(JSON.stringify(manifest))],
    ['jobs.ndjson', Buffer.alloc(0)],
  ];
  if (withBytes) entries.push([`files/${file.sha256}`, withBytes]);
  return tar(entries);
}

async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('files belong to projects', () => {
  let ts: TestServer;
  let alice: ApiClient;
  let mallory: ApiClient;
  /** Alice's: held by a value of hers. */
  const held = Buffer.from('alice’s measurements, not for anyone else\n');
  /** Alice's: uploaded only, nothing refers to it yet. */
  const sent = Buffer.from('alice’s draft, uploaded a moment ago\n');
  /** Nobody's. */
  const absent = randomBytes(48);

  const login = async (name: string) => {
    await ts.admin.addUser(name, `${name}-password`);
    const c = makeClient(ts.server.url, ts.server.caPem);
    c.token = (await c.login(name, `${name}-password`)).token;
    return c;
  };
  const upload = (c: ApiClient, project: string, bytes: Buffer) => c.sendBytes<{ sha256: string; size: number; created: boolean }>(`/projects/${project}/files/${sha256(bytes)}`, Readable.from([bytes]), bytes.length);

  before(async () => {
    ts = await startTestServer();
    alice = await login('alice');
    mallory = await login('mallory');
    await alice.createProject('lab');
    await upload(alice, 'lab', held);
    await alice.setValue('lab', 'data', { sha256: sha256(held), size: held.length });
    await upload(alice, 'lab', sent);
    await mallory.createProject('mine');
  });

  it('answers another project’s file exactly as a file nobody has: download, value, input, load, result', async () => {
    const ask = {
      download: (sha: string) => mallory.fetchBytes(`/projects/mine/files/${sha}`),
      value: (sha: string, size: number) => mallory.setValue('mine', 'v', { sha256: sha, size }),
      input: (sha: string, size: number) => mallory.submit('mine', [{ argv: ['true'], inputs: [{ name: 'in.dat', sha256: sha, size }] }]),
      load: (sha: string, size: number) => {
        const body = savedProjectNaming({ sha256: sha, size });
        return mallory.sendBytes(`/projects/stolen/import`, Readable.from([body]), body.length, undefined, 'POST');
      },
    };
    const none = sha256(absent);
    for (const theirs of [held, sent]) {
      const sha = sha256(theirs);
      const size = theirs.length;
      const same = async (what: string, mine: Promise<unknown>, nobodys: Promise<unknown>) => {
        const a = await refusal(mine);
        const b = await refusal(nobodys);
        assert.deepEqual(seen(a, sha), seen(b, none), `${what}: another project's file is answered as a missing one`);
        return a;
      };
      assert.equal((await same('download', ask.download(sha), ask.download(none))).code, 'FILE_NOT_FOUND');
      assert.equal((await same('value', ask.value(sha, size), ask.value(none, size))).code, 'FILE_NOT_FOUND');
      // The wrong size is no hint either (it used to say the real size).
      const wrongSize = await same('value, wrong size', ask.value(sha, size + 1), ask.value(none, size + 1));
      assert.doesNotMatch(wrongSize.message, new RegExp(`\\b${size}\\b`));
      assert.equal((await same('input', ask.input(sha, size), ask.input(none, size))).code, 'FILE_NOT_FOUND');
      assert.equal((await same('load', ask.load(sha, size), ask.load(none, size))).code, 'TRANSFER_INCOMPLETE');
    }
    // Nothing of any of that happened.
    assert.deepEqual((await mallory.values('mine')).values, []);
    assert.equal((await mallory.jobs('mine')).jobs.length, 0);
    assert.equal((await refusal(ts.admin.project('stolen'))).code, 'PROJECT_NOT_FOUND');

    // A saved project whose values name a file its manifest does not list is no way around it.
    const bare = (sha: string, size: number) => {
      const body = savedProjectNaming({ sha256: sha, size }, undefined, true);
      return mallory.sendBytes(`/projects/stolen/import`, Readable.from([body]), body.length, undefined, 'POST');
    };
    const viaValue = await refusal(bare(sha256(held), held.length));
    assert.deepEqual(seen(viaValue, sha256(held)), seen(await refusal(bare(none, held.length)), none));
    assert.equal(viaValue.code, 'FILE_NOT_FOUND');

    // A worker's result cannot name it as an output of mallory's job either.
    const w = await ts.worker({ name: 'w-own' });
    const { ids } = await mallory.submit('mine', [{ argv: ['make'], outputs: [{ glob: '*' }] }]);
    const [claimed] = (await w.client.claim(w.workerId, { waitS: 0, max: 1 })).jobs;
    assert.equal(claimed?.id, ids[0]);
    const report = (sha: string) => w.client.result(w.workerId, resultOf(ids[0]!, claimed!.attempt, { outputs: [{ name: 'out.dat', sha256: sha, size: held.length }] }));
    const r = await refusal(report(sha256(held)));
    assert.deepEqual(seen(r, sha256(held)), seen(await refusal(report(none)), none));
    assert.equal(r.code, 'FILE_NOT_FOUND');
    assert.equal((await mallory.job(ids[0]!)).state, 'running');
    await ts.admin.cancel(ids);
  });

  it('takes the bytes from whoever sends them: then the file is theirs too, stored once', async () => {
    const sha = sha256(held);
    const stored = await upload(mallory, 'mine', held);
    // The server had the content, but mallory did not: that is all `created` says.
    assert.deepEqual(stored, { sha256: sha, size: held.length, created: true });
    assert.equal((await upload(mallory, 'mine', held)).created, false);
    await mallory.setValue('mine', 'copy', { sha256: sha, size: held.length });
    assert.deepEqual(await bytesOf((await mallory.fetchBytes(`/projects/mine/files/${sha}`)).body), held);
    assert.deepEqual(await bytesOf((await mallory.fetchBytes('/projects/mine/values/copy/file')).body), held);
    // A saved project that brings the bytes loads.
    const body = savedProjectNaming({ sha256: sha256(sent), size: sent.length }, sent);
    await mallory.sendBytes('/projects/brought/import', Readable.from([body]), body.length, undefined, 'POST');
    assert.deepEqual(await bytesOf((await mallory.fetchBytes('/projects/brought/values/v/file')).body), sent);
  });

  it('keeps what each project may name across a restart, and forgets what the collector removed', async () => {
    const draft = Buffer.from('mallory’s own draft, not referred to by anything\n');
    await upload(mallory, 'mine', draft);
    const home = ts.home;
    await ts.server.close();
    ts = await startTestServer({ home });
    alice = makeClient(ts.server.url, ts.server.caPem, (await makeClient(ts.server.url, ts.server.caPem).login('alice', 'alice-password')).token);
    mallory = makeClient(ts.server.url, ts.server.caPem, (await makeClient(ts.server.url, ts.server.caPem).login('mallory', 'mallory-password')).token);
    // Sent before the restart, named after it; alice's sent file is still not mallory's.
    await mallory.setValue('mine', 'draft', { sha256: sha256(draft), size: draft.length });
    await mallory.removeValue('mine', 'draft');
    const aliceSent = await refusal(mallory.setValue('mine', 'x', { sha256: sha256(sent), size: sent.length }));
    assert.equal(aliceSent.code, 'FILE_NOT_FOUND');

    // The collector removes what nothing refers to (alice's draft upload, mallory's draft); whoever
    // sends those bytes later makes them theirs alone.
    const loose = Buffer.from('alice’s scratch file\n');
    await upload(alice, 'lab', loose);
    const gone = await new Sweeper(ts.server.ctx).collectFiles(Date.now() + 7 * 86_400_000);
    assert.ok(gone.removed >= 2, `collected ${gone.removed}`);
    assert.equal(await ts.server.ctx.files.store.has(sha256(loose)), false);
    await upload(mallory, 'mine', loose);
    assert.equal((await refusal(alice.setValue('lab', 'scratch', { sha256: sha256(loose), size: loose.length }))).code, 'FILE_NOT_FOUND');
    await mallory.setValue('mine', 'scratch', { sha256: sha256(loose), size: loose.length });

    // Removed behind the journal's back (a crash between the removal and its record): forgotten at start.
    const behind = Buffer.from('mallory’s file the collector removed as the server died\n');
    await upload(mallory, 'mine', behind);
    await ts.server.close();
    const path = join(home, 'files', 'sha256', sha256(behind).slice(0, 2), sha256(behind));
    assert.ok(existsSync(path));
    rmSync(path);
    ts = await startTestServer({ home });
    mallory = makeClient(ts.server.url, ts.server.caPem, (await makeClient(ts.server.url, ts.server.caPem).login('mallory', 'mallory-password')).token);
    alice = makeClient(ts.server.url, ts.server.caPem, (await makeClient(ts.server.url, ts.server.caPem).login('alice', 'alice-password')).token);
    await upload(alice, 'lab', behind);
    assert.equal((await refusal(mallory.setValue('mine', 'behind', { sha256: sha256(behind), size: behind.length }))).code, 'FILE_NOT_FOUND');
    await alice.setValue('lab', 'behind', { sha256: sha256(behind), size: behind.length });
  });
});
