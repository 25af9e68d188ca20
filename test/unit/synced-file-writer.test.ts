/**
 * The stream writer of the file store: the bytes arrive whole and in order,
 * syncs run while they are written, the file must be new, and a writer that
 * fails or is destroyed lets go of its file.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, describe, it } from 'node:test';
import { SyncedFileWriter } from '../../src/persistence/synced-file-writer.js';
import { cleanup, tempDir } from '../helpers/server.js';

after(cleanup);

const openFds = (): number => readdirSync('/proc/self/fd').length;

describe('synced file writer', () => {
  it('writes every byte in order and syncs while writing, not only at the end', async () => {
    const file = join(await tempDir('cpc-synced-'), 'out');
    const chunks = Array.from({ length: 200 }, (_, i) => randomBytes(1000 + i));
    // A sender that pauses now and then, as a network does, so that syncs
    // (one at a time) finish while the file is still being written.
    async function* slowly() {
      for (let i = 0; i < chunks.length; i++) {
        if (i % 25 === 0) await new Promise((r) => setTimeout(r, 30));
        yield chunks[i]!;
      }
    }
    const writer = new SyncedFileWriter(file, { syncEveryBytes: 16 * 1024 });
    await pipeline(Readable.from(slowly()), writer);
    assert.deepEqual(readFileSync(file), Buffer.concat(chunks));
    // About 217 KB in 16 KB stretches, sent in 8 bursts: several background syncs, and the final one.
    assert.ok(writer.syncs >= 4, `only ${writer.syncs} syncs`);
  });

  it('refuses a file that exists, and leaves it as it was', async () => {
    const file = join(await tempDir('cpc-synced-'), 'taken');
    writeFileSync(file, 'mine');
    await assert.rejects(pipeline(Readable.from([Buffer.from('other')]), new SyncedFileWriter(file)), { code: 'EEXIST' });
    assert.equal(readFileSync(file, 'utf8'), 'mine');
  });

  it('closes its file when the source fails midway', async () => {
    const file = join(await tempDir('cpc-synced-'), 'cut');
    const before = openFds();
    async function* source() {
      yield randomBytes(64 * 1024);
      yield randomBytes(64 * 1024);
      throw new Error('sender went away');
    }
    await assert.rejects(pipeline(Readable.from(source()), new SyncedFileWriter(file, { syncEveryBytes: 32 * 1024 })), /sender went away/);
    // The descriptor is closed once a background sync in flight is done.
    const deadline = Date.now() + 2000;
    while (openFds() > before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(openFds(), before);
  });
});
