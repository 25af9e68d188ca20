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
    const writer = new SyncedFileWriter(file, { syncEveryBytes: 16 * 1024 });
    // A sender that pauses between bursts of about 25 KB, as a network does;
    // each pause lasts until the writer has synced what it was sent.
    async function* slowly() {
      for (let i = 0; i < chunks.length; i++) {
        if (i > 0 && i % 25 === 0) {
          const before = writer.syncs;
          const deadline = Date.now() + 5000;
          while (writer.syncs === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
        }
        yield chunks[i]!;
      }
    }
    await pipeline(Readable.from(slowly()), writer);
    assert.deepEqual(readFileSync(file), Buffer.concat(chunks));
    // Each of the eight bursts (25 – 30 KB, past the 16 KB stretch once) synced in the background, and the final sync.
    assert.equal(writer.syncs, 9);
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
