/**
 * Files over the peer link (src/server/files/link-transfers.ts): the home's
 * side takes an output only as chunks in order and stores it only whole; the
 * borrowing side reads and writes in chunks through a link that calls the
 * home's side directly.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { CpcError } from '../../src/core/errors.js';
import type { StoredBlob } from '../../src/persistence/blob-store.js';
import { LINK_CHUNK_BYTES, LinkFileServer, readOverLink, writeOverLink, type LinkCaller, type LinkFileHome } from '../../src/server/files/link-transfers.js';

const JOB = '01900000-0000-7000-8000-000000000001';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A home that holds one input and stores outputs in memory, for attempt 1 of JOB leased to peer 'p'. */
function memoryHome(input: Buffer) {
  const stored: Buffer[] = [];
  const leased = (peerId: string, jobId: string, attempt: number) => {
    if (peerId !== 'p' || jobId !== JOB || attempt !== 1) throw new CpcError('STALE_ATTEMPT', 'not leased to this peer');
  };
  const home: LinkFileHome = {
    async readInput(peerId, jobId, attempt, sha256, offset, length) {
      leased(peerId, jobId, attempt);
      if (sha256 !== sha(input)) throw new CpcError('FILE_NOT_FOUND', 'no such input');
      return { size: input.length, data: input.subarray(offset, offset + length) };
    },
    async receiveOutput(peerId, jobId, attempt, sha256, size, source: Readable): Promise<StoredBlob> {
      leased(peerId, jobId, attempt);
      const parts: Buffer[] = [];
      for await (const c of source) parts.push(c as Buffer);
      const all = Buffer.concat(parts);
      if (all.length !== size || sha(all) !== sha256) throw new CpcError('CHECKSUM_MISMATCH', 'bytes do not match');
      stored.push(all);
      return { sha256, size } as StoredBlob;
    },
  };
  return { home, stored };
}

/** A link whose calls go straight to `server` as peer `peerId`. */
function directLink(server: LinkFileServer, peerId = 'p'): LinkCaller & { calls: number } {
  const link = {
    calls: 0,
    call<T>(method: string, params: unknown): Promise<T> {
      link.calls++;
      return server.handle(peerId, method, JSON.parse(JSON.stringify(params))) as Promise<T>;
    },
  };
  return link;
}

function bytes(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + 7) & 0xff;
  return b;
}

async function* chunksOf(b: Buffer, size: number): AsyncIterable<Buffer> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

describe('files over the peer link', () => {
  it('reads an input of several chunks whole, one call per chunk', async () => {
    const input = bytes(2 * LINK_CHUNK_BYTES + 777);
    const server = new LinkFileServer(memoryHome(input).home);
    const link = directLink(server);
    const { size, stream } = await readOverLink(link, JOB, 1, sha(input));
    assert.equal(size, input.length);
    const parts: Buffer[] = [];
    for await (const c of stream) parts.push(c as Buffer);
    assert.ok(Buffer.concat(parts).equals(input));
    assert.equal(link.calls, 3);
  });

  it('writes an output in chunks and home stores it once, whole', async () => {
    const output = bytes(LINK_CHUNK_BYTES + 5000);
    const { home, stored } = memoryHome(Buffer.alloc(0));
    const server = new LinkFileServer(home);
    const blob = await writeOverLink(directLink(server), JOB, 1, sha(output), output.length, chunksOf(output, 64 * 1024));
    assert.equal(blob.sha256, sha(output));
    assert.equal(stored.length, 1);
    assert.ok(stored[0]!.equals(output));
  });

  it('writes an empty output', async () => {
    const { home, stored } = memoryHome(Buffer.alloc(0));
    const blob = await writeOverLink(directLink(new LinkFileServer(home)), JOB, 1, sha(Buffer.alloc(0)), 0, chunksOf(Buffer.alloc(0), 1));
    assert.equal(blob.size, 0);
    assert.equal(stored.length, 1);
  });

  it('refuses a chunk out of order, an upload joined midway, and another peer’s attempt, storing nothing', async () => {
    const { home, stored } = memoryHome(Buffer.alloc(0));
    const server = new LinkFileServer(home);
    const data = bytes(100);
    const base = { upload: 'a'.repeat(32), jobId: JOB, attempt: 1, sha256: sha(data), size: 100 };
    const chunk = (offset: number, b: Buffer) => ({ ...base, offset, data: b.toString('base64') });
    await assert.rejects(server.handle('p', 'file-write', chunk(50, data.subarray(50))), { code: 'TRANSFER_INCOMPLETE' });
    assert.deepEqual(await server.handle('p', 'file-write', chunk(0, data.subarray(0, 40))), { next: 40 });
    await assert.rejects(server.handle('p', 'file-write', chunk(60, data.subarray(60))), { code: 'TRANSFER_INCOMPLETE' });
    await assert.rejects(server.handle('q', 'file-write', chunk(0, data)), { code: 'STALE_ATTEMPT' });
    await assert.rejects(server.handle('p', 'file-read', { jobId: JOB, attempt: 2, sha256: sha(data), offset: 0 }), { code: 'STALE_ATTEMPT' });
    assert.equal(stored.length, 0);
  });

  it('refuses a whole output whose bytes do not match, storing nothing', async () => {
    const { home, stored } = memoryHome(Buffer.alloc(0));
    const output = bytes(3000);
    await assert.rejects(writeOverLink(directLink(new LinkFileServer(home)), JOB, 1, sha(bytes(10)), output.length, chunksOf(output, 1000)), { code: 'CHECKSUM_MISMATCH' });
    assert.equal(stored.length, 0);
  });

  it('refuses malformed calls with the field named', async () => {
    const server = new LinkFileServer(memoryHome(Buffer.alloc(0)).home);
    await assert.rejects(server.handle('p', 'file-read', { jobId: 'x', attempt: 1, sha256: 'y', offset: 0 }), { code: 'INVALID_FIELD', message: /params\.jobId/ });
  });
});
