/**
 * The content-addressed store on its own: whole files only, named by their
 * hash, stored once, and nothing left behind by a refused or cut-off write.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { CpcError } from '../../src/core/errors.js';
import { BlobStore } from '../../src/persistence/blob-store.js';
import { cleanup, tempDir } from '../helpers/server.js';

after(cleanup);

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const codeOf = (err: unknown) => (err instanceof CpcError ? err.code : String(err));

async function store(): Promise<BlobStore> {
  const s = new BlobStore(join(await tempDir('cpc-blobs-'), 'files'));
  await s.open();
  return s;
}

describe('blob store', () => {
  it('stores bytes under their checksum, once, and reads them back', async () => {
    const s = await store();
    const bytes = Buffer.from('some content\n');
    const first = await s.put(Readable.from([bytes]), { sha256: sha(bytes), size: bytes.length, maxBytes: 100 });
    assert.deepEqual(first, { sha256: sha(bytes), size: bytes.length, created: true });
    const again = await s.put(Readable.from([bytes.subarray(0, 4), bytes.subarray(4)]), { maxBytes: 100 });
    assert.deepEqual(again, { sha256: sha(bytes), size: bytes.length, created: false });
    assert.equal(readFileSync(s.pathOf(sha(bytes)), 'utf8'), 'some content\n');
    const { stream, size } = await s.read(sha(bytes));
    assert.equal(size, bytes.length);
    let text = '';
    for await (const chunk of stream) text += String(chunk);
    assert.equal(text, 'some content\n');
  });

  it('refuses bytes that do not match, are short, too many, or cut off, and keeps nothing of them', async () => {
    const s = await store();
    const bytes = Buffer.from('0123456789');
    const cases: [Readable, Parameters<BlobStore['put']>[1], string][] = [
      [Readable.from([bytes]), { sha256: sha(Buffer.from('other')), maxBytes: 100 }, 'CHECKSUM_MISMATCH'],
      [Readable.from([bytes]), { size: 11, maxBytes: 100 }, 'TRANSFER_INCOMPLETE'],
      [Readable.from([bytes]), { maxBytes: 5 }, 'FILE_TOO_LARGE'],
      [
        new Readable({
          read() {
            this.push(bytes);
            this.destroy(Object.assign(new Error('premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
          },
        }),
        { maxBytes: 100 },
        'TRANSFER_INCOMPLETE',
      ],
    ];
    for (const [source, opts, code] of cases) {
      await assert.rejects(s.put(source, opts), (err) => codeOf(err) === code, code);
    }
    assert.equal(await s.has(sha(bytes)), false);
    assert.deepEqual(readdirSync(join(s.dir, 'tmp')), []);
    await assert.rejects(s.read(sha(bytes)), (err) => codeOf(err) === 'FILE_NOT_FOUND');
  });

  it('collects only what nothing holds, once past the grace period', async () => {
    const s = await store();
    const kept = Buffer.from('kept');
    const loose = Buffer.from('loose');
    await s.put(Readable.from([kept]), { maxBytes: 100 });
    await s.put(Readable.from([loose]), { maxBytes: 100 });
    const held = (h: string) => h === sha(kept);
    assert.deepEqual(await s.collect(held, 60_000), { removed: 0, bytes: 0, gone: [] }, 'too young to collect');
    assert.deepEqual(await s.collect(held, 0, Date.now() + 1000), { removed: 1, bytes: loose.length, gone: [sha(loose)] });
    assert.equal(await s.has(sha(kept)), true);
    assert.equal(await s.has(sha(loose)), false);
  });
});
