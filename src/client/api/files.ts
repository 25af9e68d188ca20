import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { link, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { Meter } from '../../common/stream-meter.js';
import { ApiError, type ApiClient } from './client.js';

/**
 * Moving files to and from a server, for cpcc and cpc-worker alike. Files
 * are named by their sha256, so sending one again is harmless: an upload cut
 * off half-way is simply sent again from the start. A download goes to a
 * temporary name beside its target and is renamed only once its size and
 * checksum are right.
 */

export interface FileSum {
  sha256: string;
  size: number;
}

/** Codes worth another try: the bytes were lost or damaged on the way, or the server was out of reach. */
const TRANSIENT = new Set(['UNREACHABLE', 'TIMEOUT', 'TRANSFER_INCOMPLETE', 'CHECKSUM_MISMATCH', 'PEER_UNREACHABLE', 'SHUTTING_DOWN', 'REQUEST_TIMEOUT']);

export function isTransient(err: unknown): boolean {
  return err instanceof ApiError && TRANSIENT.has(err.code);
}

/** A file by path, or an open handle read from its start (the handle stays open). */
function readFrom(file: string | FileHandle) {
  const opts = { highWaterMark: 1024 * 1024 };
  return typeof file === 'string' ? createReadStream(file, opts) : file.createReadStream({ ...opts, start: 0, autoClose: false });
}

export async function hashFile(file: string | FileHandle): Promise<FileSum> {
  const meter = new Meter();
  await pipeline(readFrom(file), meter, async function* (source) {
    for await (const _ of source) {
      // only the meter's count and hash are wanted
    }
  });
  return { sha256: meter.digest(), size: meter.bytes };
}

/** Runs `attempt` up to `tries` times while it fails in a way another try may cure. */
export async function withRetries<T>(attempt: () => Promise<T>, tries = 4, signal?: AbortSignal): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await attempt();
    } catch (err) {
      if (i >= tries || !isTransient(err) || signal?.aborted) throw err;
      await sleep(Math.min(5000, 200 * 2 ** i), undefined, { signal }).catch(() => undefined);
    }
  }
}

/** Sends a local file (by path, or an open handle) whose checksum is known to `path` (which names that checksum). */
export async function uploadFile<T>(client: ApiClient, path: string, file: string | FileHandle, sum: FileSum, query?: Record<string, string | number>, label = String(file)): Promise<T> {
  return withRetries(async () => {
    const now = typeof file === 'string' ? await stat(file) : await file.stat();
    if (now.size !== sum.size) throw new ApiError('FILE_CHANGED', `${label} changed while it was being sent`);
    return client.sendBytes<T>(path, readFrom(file), sum.size, query);
  });
}

/**
 * Gives the whole file in `tmp` the name `dest`. Without `overwrite` a file
 * that appeared at `dest` meanwhile is kept: a hard link cannot replace one,
 * and fails with EEXIST instead (where links are not to be had, a look
 * before the rename does nearly as well).
 */
async function settle(tmp: string, dest: string, overwrite: boolean): Promise<void> {
  if (overwrite) return rename(tmp, dest);
  try {
    await link(tmp, dest);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EXDEV') throw err;
    if (await stat(dest).then(() => true, () => false)) throw Object.assign(new Error(`${dest} exists`), { code: 'EEXIST' });
    return rename(tmp, dest);
  }
  await rm(tmp, { force: true });
}

/**
 * Fetches `path` into `dest`; with `expect`, bytes that do not match are
 * refused (CHECKSUM_MISMATCH / TRANSFER_INCOMPLETE) and `dest` is left as it was.
 * With `overwrite: false` a file already at `dest` is left as it is, and the
 * download fails with code EEXIST.
 */
export async function downloadFile(
  client: ApiClient,
  path: string,
  dest: string,
  opts: { query?: Record<string, string | number>; expect?: FileSum; signal?: AbortSignal; overwrite?: boolean } = {},
): Promise<FileSum> {
  return withRetries(
    async () => {
      const { body, size } = await client.fetchBytes(path, opts.query, opts.signal);
      const meter = new Meter(Infinity, undefined, opts.expect);
      const tmp = join(dirname(dest), `.${randomBytes(6).toString('hex')}.partial`);
      try {
        await pipeline(body, meter, createWriteStream(tmp, { mode: 0o644 }));
        if (Number.isSafeInteger(size) && meter.bytes !== size) {
          throw new ApiError('TRANSFER_INCOMPLETE', `the download ended after ${meter.bytes} of ${size} bytes`);
        }
        const fh = await open(tmp, 'r');
        await fh.sync().finally(() => fh.close());
        await settle(tmp, dest, opts.overwrite !== false);
        return { sha256: meter.digest(), size: meter.bytes };
      } catch (err) {
        await rm(tmp, { force: true });
        const code = (err as { code?: unknown }).code;
        if (code === 'CHECKSUM_MISMATCH' || code === 'TRANSFER_INCOMPLETE') throw new ApiError(code, (err as Error).message);
        if (err instanceof ApiError) throw err;
        // The connection broke mid-body.
        if (typeof code === 'string' && /^(UND_ERR|ECONN|EPIPE)/.test(code)) throw new ApiError('TRANSFER_INCOMPLETE', `the download was cut off: ${(err as Error).message}`);
        throw err;
      }
    },
    4,
    opts.signal,
  );
}
