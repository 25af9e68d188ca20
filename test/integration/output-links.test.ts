/**
 * A job owns its folder and may still change it while the worker keeps its
 * outputs (a process it left behind). Whatever it swaps in between the
 * worker's listing and its reading — a file for a symbolic link to a file
 * outside, a folder for a link to a folder outside — the bytes outside never
 * reach the server.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ApiClient } from '../../src/client/api/client.js';
import type { ClaimedJob } from '../../src/core/wire.js';
import { keepOutputs } from '../../src/worker/files.js';
import { OpenFolder } from '../../src/worker/open-beneath.js';
import { cleanup, startTestServer, tempDir, type SimWorker, type TestServer } from '../helpers/server.js';

after(cleanup);

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

describe('outputs are read through one handle, never through a link', () => {
  let ts: TestServer;
  let w: SimWorker;
  let job: ClaimedJob;
  let outside: string;
  const secret = 'the worker token: cpc_0123_secret\n';
  const otherSecret = 'another job’s input\n';

  before(async () => {
    ts = await startTestServer();
    await ts.admin.createProject('race');
    outside = await tempDir('cpc-outside-');
    writeFileSync(join(outside, 'b.txt'), secret);
    writeFileSync(join(outside, 'token'), otherSecret);
    w = await ts.worker({ name: 'racer' });
    await ts.admin.submit('race', [{ argv: ['true'], outputs: [{ glob: '**/*.txt' }] }]);
    [job] = (await w.client.claim(w.workerId, { waitS: 0, max: 1 })).jobs as [ClaimedJob];
    assert.ok(job);
  });

  /** The worker's client, but `swap` runs just before the first file is sent: after the listing, before the rest is read. */
  function racing(swap: () => void): ApiClient {
    let swapped = false;
    const client = w.client;
    return Object.assign(Object.create(client) as ApiClient, {
      sendBytes: (...args: Parameters<ApiClient['sendBytes']>) => {
        if (!swapped) {
          swapped = true;
          swap();
        }
        return client.sendBytes(...args);
      },
    });
  }

  const stored = (content: string) => ts.server.ctx.files.store.has(sha256(content));

  it('does not follow a folder swapped for a link to a folder outside', async () => {
    const dir = await tempDir('cpc-attempt-');
    writeFileSync(join(dir, 'a.txt'), 'first\n');
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'sub', 'b.txt'), 'inner\n');
    const client = racing(() => {
      renameSync(join(dir, 'sub'), join(dir, 'sub.old'));
      symlinkSync(outside, join(dir, 'sub'));
    });
    const kept = await keepOutputs(client, w.workerId, job, dir, true);
    assert.equal(await stored(secret), false, 'the file outside was sent');
    assert.ok('failed' in kept, JSON.stringify(kept));
    assert.match(kept.failed, /output 'sub\/b\.txt': it is no longer a file in the job's folder/);
  });

  it('does not follow a file swapped for a link to a file outside', async () => {
    const dir = await tempDir('cpc-attempt-');
    writeFileSync(join(dir, 'a.txt'), 'first\n');
    writeFileSync(join(dir, 'c.txt'), 'plain\n');
    const client = racing(() => {
      rmSync(join(dir, 'c.txt'));
      symlinkSync(join(outside, 'token'), join(dir, 'c.txt'));
    });
    const kept = await keepOutputs(client, w.workerId, job, dir, true);
    assert.equal(await stored(otherSecret), false, 'the file outside was sent');
    assert.ok('failed' in kept, JSON.stringify(kept));
    assert.match(kept.failed, /output 'c\.txt'/);
  });

  it('keeps what is really in the folder, and never lists links, FIFOs or what they point at', async () => {
    const dir = await tempDir('cpc-attempt-');
    writeFileSync(join(dir, 'a.txt'), 'first\n');
    mkdirSync(join(dir, 'deep', 'er'), { recursive: true });
    writeFileSync(join(dir, 'deep', 'er', 'd.txt'), 'deeper\n');
    symlinkSync(outside, join(dir, 'linked'));
    symlinkSync(join(outside, 'b.txt'), join(dir, 'link.txt'));
    execFileSync('mkfifo', [join(dir, 'pipe.txt')]);
    const kept = await keepOutputs(w.client, w.workerId, job, dir, true);
    assert.ok('outputs' in kept, JSON.stringify(kept));
    assert.deepEqual(kept.outputs.map((f) => f.name), ['a.txt', 'deep/er/d.txt']);
    assert.equal(await stored(secret), false);
    // A folder opened once stays that folder, whatever its name points at later.
    const folder = await OpenFolder.open(join(dir, 'deep'));
    try {
      renameSync(join(dir, 'deep'), join(dir, 'deep.old'));
      symlinkSync(outside, join(dir, 'deep'));
      assert.deepEqual(await folder.names(), ['er']);
      assert.equal(await folder.openFile('b.txt'), null);
      const d = await folder.openFile('er/d.txt');
      assert.ok(d);
      assert.equal((await d.handle.readFile('utf8')), 'deeper\n');
      await d.handle.close();
    } finally {
      await folder.close();
    }
  });
});
