/**
 * The content-addressed file store: every file once, named by its sha256,
 * under `<dir>/sha256/<first two hex digits>/<hash>`. A file arrives as a
 * stream into `<dir>/tmp/`, is hashed and counted on the way, synced (as it
 * is written, and once more at the end), and
 * only then renamed into place, so a reader never sees a partial file and a
 * crash leaves at most a temporary file behind (removed at start-up and by
 * the collector). Writing the same content twice stores it once.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, type ReadStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fail } from '../core/errors.js';
import { SHA256 } from '../core/files.js';
import { Meter } from '../common/stream-meter.js';
import { fsyncDir } from './durable-file.js';
import { SyncedFileWriter } from './synced-file-writer.js';

export interface StoredBlob {
  sha256: string;
  size: number;
  /** False when the content was there already. */
  created: boolean;
}

export interface PutOptions {
  /** The checksum the sender announced; anything else is refused (CHECKSUM_MISMATCH). */
  sha256?: string;
  /** The size the sender announced; fewer bytes is TRANSFER_INCOMPLETE. */
  size?: number;
  /** More bytes than this is FILE_TOO_LARGE (or `tooLarge`'s error), checked as they arrive. */
  maxBytes: number;
  tooLarge?: () => Error;
}

export class BlobStore {
  private readonly tmpDir: string;
  private readonly blobDir: string;
  /** Temporary files of uploads under way, which the collector must leave alone however slow they are. */
  private readonly writing = new Set<string>();

  constructor(readonly dir: string) {
    this.tmpDir = join(dir, 'tmp');
    this.blobDir = join(dir, 'sha256');
  }

  async open(): Promise<void> {
    await mkdir(this.tmpDir, { recursive: true, mode: 0o700 });
    await mkdir(this.blobDir, { recursive: true, mode: 0o700 });
    // Whatever is in tmp/ was being written when the server stopped.
    for (const name of await readdir(this.tmpDir)) await rm(join(this.tmpDir, name), { force: true });
  }

  pathOf(sha256: string): string {
    if (!SHA256.test(sha256)) throw fail('INVALID_FIELD', 'a checksum must be 64 lowercase hex digits');
    return join(this.blobDir, sha256.slice(0, 2), sha256);
  }

  /** The size of a stored blob, or null. */
  async sizeOf(sha256: string): Promise<number | null> {
    try {
      return (await stat(this.pathOf(sha256))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async has(sha256: string): Promise<boolean> {
    return (await this.sizeOf(sha256)) !== null;
  }

  /** Streams `source` into the store; the blob is visible only once whole, checked and synced. */
  async put(source: Readable, opts: PutOptions): Promise<StoredBlob> {
    const tmp = join(this.tmpDir, `${Date.now()}-${randomBytes(8).toString('hex')}`);
    const meter = new Meter(opts.maxBytes, opts.tooLarge);
    this.writing.add(tmp);
    try {
      // Synced as it is written, and once more at the end (synced-file-writer.ts).
      await pipeline(source, meter, new SyncedFileWriter(tmp, { mode: 0o600 }));
      const sha256 = meter.digest();
      if (opts.size !== undefined && meter.bytes !== opts.size) {
        throw fail('TRANSFER_INCOMPLETE', `the transfer ended after ${meter.bytes} of ${opts.size} bytes`);
      }
      if (opts.sha256 !== undefined && sha256 !== opts.sha256) {
        throw fail('CHECKSUM_MISMATCH', `the bytes received hash to ${sha256}, not to the announced ${opts.sha256}`);
      }
      const final = this.pathOf(sha256);
      if ((await this.sizeOf(sha256)) === meter.bytes) {
        await rm(tmp, { force: true });
        // Fresh again: the collector's grace period starts over for content sent anew.
        await utimes(final, new Date(), new Date()).catch(() => undefined);
        return { sha256, size: meter.bytes, created: false };
      }
      const fanout = join(this.blobDir, sha256.slice(0, 2));
      await mkdir(fanout, { recursive: true, mode: 0o700 });
      await rename(tmp, final);
      await fsyncDir(fanout);
      return { sha256, size: meter.bytes, created: true };
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => undefined);
      // A sender that went away mid-file is the sender's problem, not the server's.
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ECONNRESET' || code === 'ECONNABORTED') {
        throw fail('TRANSFER_INCOMPLETE', 'the upload was cut off before its end');
      }
      throw err;
    } finally {
      this.writing.delete(tmp);
    }
  }

  /** A stream of the blob's bytes, or FILE_NOT_FOUND. */
  async read(sha256: string): Promise<{ stream: ReadStream; size: number }> {
    const path = this.pathOf(sha256);
    const size = await this.sizeOf(sha256);
    if (size === null) throw fail('FILE_NOT_FOUND', `no file with checksum ${sha256} on this server`);
    return { stream: createReadStream(path, { highWaterMark: 1024 * 1024 }), size };
  }

  /**
   * Removes blobs nothing refers to and temporary files, both only when older
   * than `graceMs`: a blob just uploaded is referred to only once the request
   * that names it (a submit, a result, a value) commits.
   */
  async collect(isHeld: (sha256: string) => boolean, graceMs: number, now = Date.now()): Promise<{ removed: number; bytes: number; gone: string[] }> {
    let removed = 0;
    let bytes = 0;
    const gone: string[] = [];
    const old = async (path: string) => {
      const s = await stat(path).catch(() => null);
      return s && now - s.mtimeMs >= graceMs ? s : null;
    };
    for (const name of await readdir(this.tmpDir)) {
      const path = join(this.tmpDir, name);
      if (!this.writing.has(path) && (await old(path))) await rm(path, { force: true });
    }
    for (const fan of await readdir(this.blobDir)) {
      const dir = join(this.blobDir, fan);
      for (const sha of await readdir(dir).catch(() => [] as string[])) {
        if (isHeld(sha)) continue;
        const s = await old(join(dir, sha));
        if (!s || isHeld(sha)) continue;
        await rm(join(dir, sha), { force: true });
        removed++;
        bytes += s.size;
        gone.push(sha);
      }
    }
    return { removed, bytes, gone };
  }
}
