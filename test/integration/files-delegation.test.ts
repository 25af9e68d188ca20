/**
 * A delegated job does real work with files: its inputs live on its home
 * server, its worker on another; the worker's server streams the inputs from
 * home and the outputs back, over mTLS. A corrupt transfer is refused at home.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { hashFile } from '../../src/client/api/files.js';
import { API_PREFIX, type JobView } from '../../src/core/wire.js';
import { linkedSites, stopSite, type Site } from '../helpers/federation.js';
import { cleanup, spawnWorker, tempDir, until } from '../helpers/server.js';

after(cleanup);

describe('files of a delegated job', () => {
  let a: Site;
  let b: Site;
  let data: string;

  before(async () => {
    [a, b] = await linkedSites('files-a', 'files-b');
    await b.admin.createProject('far');
    data = await tempDir('cpc-fed-files-');
  });

  after(async () => {
    await Promise.all([a, b].filter(Boolean).map((s) => stopSite(s)));
  });

  it('gets its inputs from home and sends its outputs home, through the worker’s own server', async () => {
    const input = join(data, 'input.bin');
    const bytes = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 131) & 0xff;
    writeFileSync(input, bytes);
    const sum = await hashFile(input);
    await b.admin.sendBytes(`/projects/far/files/${sum.sha256}`, createReadStream(input), sum.size);
    const { ids } = await b.admin.submit('far', [
      {
        shell: 'sha256sum data/in.bin | cut -c1-64 > digest.txt && cp data/in.bin back.bin',
        inputs: [{ name: 'data/in.bin', sha256: sum.sha256, size: sum.size }],
        outputs: [{ glob: '*.txt' }, { glob: 'back.bin', to: 'returned' }],
      },
    ]);
    // B has no worker; A's worker borrows the job.
    const caFile = join(data, 'a-ca.pem');
    writeFileSync(caFile, a.caPem);
    spawnWorker({ url: a.url, caFile, serverId: a.serverId, token: a.workerToken, name: 'borrower', workDir: await tempDir('cpc-work-borrower-') });
    const job = await until('the delegated job to finish at home', async () => {
      const j: JobView = await b.admin.job(ids[0]!);
      return ['done', 'failed'].includes(j.state) ? j : null;
    }, { timeoutMs: 60_000 });
    assert.equal(job.state, 'done', job.reason);
    assert.equal(job.attempts[0]!.via, a.serverId);
    const files = new Map((job.files ?? []).map((f) => [f.name, f]));
    assert.deepEqual([...files.keys()].sort(), ['back.bin', 'digest.txt']);
    assert.deepEqual(files.get('back.bin'), { name: 'back.bin', sha256: sum.sha256, size: sum.size });
    // The outputs are stored at home, and read back byte for byte.
    const { body } = await b.admin.fetchBytes(`/jobs/${ids[0]!}/outputs/digest.txt`);
    let digest = '';
    for await (const chunk of body) digest += String(chunk);
    assert.equal(digest.trim(), sum.sha256);
    const back = await b.admin.fetchBytes(`/projects/far/values/returned/file`);
    const h = createHash('sha256');
    for await (const chunk of back.body) h.update(chunk as Buffer);
    assert.equal(h.digest('hex'), sum.sha256);
    // Nothing of the job's files was kept on the worker's server.
    assert.equal(a.server!.model.files.isHeld(sum.sha256), false);
  });

  it('cuts a corrupt input short on the way, and the attempt fails with the reason', async () => {
    const input = join(data, 'corrupt.bin');
    writeFileSync(input, Buffer.alloc(256 * 1024, 9));
    const sum = await hashFile(input);
    await b.admin.sendBytes(`/projects/far/files/${sum.sha256}`, createReadStream(input), sum.size);
    const { ids } = await b.admin.submit('far', [{ argv: ['true'], inputs: [{ name: 'in.bin', sha256: sum.sha256, size: sum.size }] }]);
    // Damaged at home behind its back: home sends what it has, A sees it does not match and cuts it short.
    const stored = b.server!.ctx.files.store.pathOf(sum.sha256);
    const bytes = readFileSync(stored);
    bytes[5] = 0;
    writeFileSync(stored, bytes);
    const job = await until('the job to fail at home', async () => {
      const j: JobView = await b.admin.job(ids[0]!);
      return ['done', 'failed'].includes(j.state) ? j : null;
    }, { timeoutMs: 60_000 });
    assert.equal(job.state, 'failed');
    assert.equal(job.attempts[0]!.via, a.serverId);
    assert.match(job.reason, /could not start: input 'in\.bin': (TRANSFER_INCOMPLETE|CHECKSUM_MISMATCH)/);
  });

  it('refuses peer file routes to anyone but a trusted peer, and bytes that do not match at home', async () => {
    const plain = new Agent({ connect: { ca: b.caPem, checkServerIdentity: () => undefined } });
    const anon = await request(`${b.url}${API_PREFIX}/peer/files/${'ab'.repeat(32)}?job=0190a0a0-0000-7000-8000-000000000000&attempt=1`, { dispatcher: plain });
    assert.equal(anon.statusCode, 401);
    await anon.body.dump();
    const id = a.server!.identity;
    const asPeer = new Agent({ connect: { ca: b.caPem, cert: id.certPem, key: id.keyPem, checkServerIdentity: () => undefined } });
    // A peer may only touch the files of attempts it runs.
    const { ids } = await b.admin.submit('far', [{ argv: ['true'], cores: 64 }]); // too big for any worker: it stays queued
    const stale = await request(`${b.url}${API_PREFIX}/peer/files/${'ab'.repeat(32)}?job=${ids[0]!}&attempt=1`, {
      method: 'PUT',
      body: 'x',
      headers: { 'content-length': '1' },
      dispatcher: asPeer,
    });
    assert.equal(stale.statusCode, 409);
    assert.equal(((await stale.body.json()) as { error: { code: string } }).error.code, 'STALE_ATTEMPT');
    // Nor fetch the input of a job home has not handed to it.
    const secret = Buffer.from('an input of a job that stays at home\n');
    const sha = createHash('sha256').update(secret).digest('hex');
    await b.admin.sendBytes(`/projects/far/files/${sha}`, Readable.from([secret]), secret.length);
    const kept = await b.admin.submit('far', [{ argv: ['true'], cores: 64, inputs: [{ name: 'in', sha256: sha, size: secret.length }] }]);
    for (const attempt of [0, 1]) {
      const fetch = await request(`${b.url}${API_PREFIX}/peer/files/${sha}?job=${kept.ids[0]!}&attempt=${attempt}`, { dispatcher: asPeer });
      assert.equal(fetch.statusCode, attempt === 0 ? 400 : 409);
      assert.doesNotMatch(await fetch.body.text(), /stays at home/);
    }
    await Promise.all([plain.close(), asPeer.close()]);
  });
});
