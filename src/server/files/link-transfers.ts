import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { PassThrough, Readable } from 'node:stream';
import { z } from 'zod';
import { fail } from '../../core/errors.js';
import type { StoredBlob } from '../../persistence/blob-store.js';
import { check, jobIdParam } from '../http/schemas.js';
import { sha256Schema } from './schemas.js';

/**
 * File transfers over the peer link, for a home that cannot be dialled.
 *
 * A delegated attempt's files normally travel by HTTPS from the worker's
 * server to the job's home (transfers.ts). A home behind a firewall that
 * lets nothing in still dials its peers, and the link it dialled carries
 * calls both ways; so when home's port does not answer, the same bytes go
 * as a sequence of calls over that link: `file-read` pulls one chunk of an
 * input at a time, `file-write` pushes one chunk of an output at a time, in
 * order, and the last one answers with what home stored. Chunks are base64
 * in the link's JSON frames; each is checked and hashed on the way as the
 * HTTPS path does.
 */

/** Bytes per call: large enough that a round trip per chunk does not dominate, far below a link frame. */
export const LINK_CHUNK_BYTES = 1024 * 1024;
/** An upload that hears nothing for this long is dropped. */
const UPLOAD_IDLE_MS = 60_000;
/** How long a port check waits, and how long its answer is believed. */
const PROBE_TIMEOUT_MS = 3000;
const PROBE_KEEP_MS = 60_000;
/** Calls carry a chunk each; allow for a slow wide-area link. */
const CALL_TIMEOUT_MS = 60_000;

const readCall = z.strictObject({
  jobId: jobIdParam,
  attempt: z.int().min(1),
  sha256: sha256Schema,
  offset: z.int().min(0).max(Number.MAX_SAFE_INTEGER),
});
const writeCall = z.strictObject({
  upload: z.string().regex(/^[0-9a-f]{32}$/),
  jobId: jobIdParam,
  attempt: z.int().min(1),
  sha256: sha256Schema,
  size: z.int().min(0).max(Number.MAX_SAFE_INTEGER),
  offset: z.int().min(0).max(Number.MAX_SAFE_INTEGER),
  data: z.string().max(Math.ceil(LINK_CHUNK_BYTES / 3) * 4),
});

/** A link to one peer, as transfers call it. */
export interface LinkCaller {
  call<T>(method: string, params: unknown, timeoutMs?: number): Promise<T>;
}

/** What serving a peer's file calls needs: the input's bytes, and storing an output for the attempt's job. */
export interface LinkFileHome {
  /** The size of an input of an attempt leased to `peerId`, and a chunk of it. */
  readInput(peerId: string, jobId: string, attempt: number, sha256: string, offset: number, length: number): Promise<{ size: number; data: Buffer }>;
  /** Starts storing an output of an attempt leased to `peerId` from `source`. */
  receiveOutput(peerId: string, jobId: string, attempt: number, sha256: string, size: number, source: Readable): Promise<StoredBlob>;
}

interface Upload {
  pass: PassThrough;
  storing: Promise<StoredBlob>;
  failed?: Error;
  next: number;
  timer: NodeJS.Timeout;
}

/** Home's side: answers `file-read` and `file-write` calls of peers. */
export class LinkFileServer {
  private readonly uploads = new Map<string, Upload>();

  constructor(private readonly home: LinkFileHome) {}

  handles(method: string): boolean {
    return method === 'file-read' || method === 'file-write';
  }

  async handle(peerId: string, method: string, params: unknown): Promise<unknown> {
    if (method === 'file-read') {
      const p = check(readCall, params, 'params');
      const { size, data } = await this.home.readInput(peerId, p.jobId, p.attempt, p.sha256, p.offset, LINK_CHUNK_BYTES);
      return { size, data: data.toString('base64') };
    }
    const p = check(writeCall, params, 'params');
    const data = Buffer.from(p.data, 'base64');
    const key = `${peerId}/${p.upload}`;
    let up = this.uploads.get(key);
    if (!up) {
      if (p.offset !== 0) throw fail('TRANSFER_INCOMPLETE', 'the upload is not known here; start it again');
      const pass = new PassThrough();
      const storing = this.home.receiveOutput(peerId, p.jobId, p.attempt, p.sha256, p.size, pass);
      up = { pass, storing, next: 0, timer: this.idle(key) };
      const started = up;
      storing.catch((err: Error) => (started.failed = err));
      this.uploads.set(key, up);
    }
    clearTimeout(up.timer);
    up.timer = this.idle(key);
    if (up.failed) return this.drop(key, up.failed);
    if (p.offset !== up.next || up.next + data.length > p.size) return this.drop(key, fail('TRANSFER_INCOMPLETE', `chunk at ${p.offset} does not follow ${up.next}`));
    up.next += data.length;
    if (!up.pass.write(data)) await new Promise<void>((resolve) => up.pass.once('drain', resolve));
    if (up.next < p.size) return { next: up.next };
    up.pass.end();
    try {
      return { stored: await up.storing };
    } finally {
      clearTimeout(up.timer);
      this.uploads.delete(key);
    }
  }

  private idle(key: string): NodeJS.Timeout {
    const timer = setTimeout(() => {
      const up = this.uploads.get(key);
      if (up) void this.drop(key, fail('TRANSFER_INCOMPLETE', 'the upload stopped')).catch(() => {});
    }, UPLOAD_IDLE_MS);
    timer.unref();
    return timer;
  }

  private async drop(key: string, err: Error): Promise<never> {
    const up = this.uploads.get(key);
    this.uploads.delete(key);
    if (up) {
      clearTimeout(up.timer);
      up.pass.destroy(err);
      await up.storing.catch(() => {});
    }
    throw err;
  }

  close(): void {
    for (const key of [...this.uploads.keys()]) void this.drop(key, fail('TRANSFER_INCOMPLETE', 'the server is stopping')).catch(() => {});
  }
}

// ---- the worker's server's side -------------------------------------------------

/** An input of a delegated attempt, pulled from home a chunk at a time: its size, and its bytes. */
export async function readOverLink(link: LinkCaller, jobId: string, attempt: number, sha256: string): Promise<{ size: number; stream: Readable }> {
  const call = (offset: number) => link.call<{ size: number; data: string }>('file-read', { jobId, attempt, sha256, offset }, CALL_TIMEOUT_MS);
  const first = await call(0);
  let offset = 0;
  let pending: { size: number; data: string } | null = first;
  const stream = new Readable({
    read() {
      const got = pending ? Promise.resolve(pending) : call(offset);
      pending = null;
      got.then(
        (reply) => {
          const data = Buffer.from(reply.data, 'base64');
          if (data.length === 0 && offset < first.size) return this.destroy(fail('TRANSFER_INCOMPLETE', 'home sent an empty chunk'));
          offset += data.length;
          if (data.length > 0) this.push(data);
          if (offset >= first.size) this.push(null);
        },
        (err: Error) => this.destroy(err),
      );
    },
  });
  return { size: first.size, stream };
}

/** An output of a delegated attempt, pushed home a chunk at a time from `source`; resolves with what home stored. */
export async function writeOverLink(link: LinkCaller, jobId: string, attempt: number, sha256: string, size: number, source: AsyncIterable<Buffer>): Promise<StoredBlob> {
  const upload = randomBytes(16).toString('hex');
  let offset = 0;
  let held: Buffer[] = [];
  let heldBytes = 0;
  const send = async (chunk: Buffer): Promise<{ stored?: StoredBlob }> => {
    const reply = await link.call<{ stored?: StoredBlob }>('file-write', { upload, jobId, attempt, sha256, size, offset, data: chunk.toString('base64') }, CALL_TIMEOUT_MS);
    offset += chunk.length;
    return reply;
  };
  let last: { stored?: StoredBlob } = {};
  for await (const part of source) {
    held.push(part);
    heldBytes += part.length;
    while (heldBytes >= LINK_CHUNK_BYTES) {
      const all = Buffer.concat(held);
      last = await send(all.subarray(0, LINK_CHUNK_BYTES));
      held = [all.subarray(LINK_CHUNK_BYTES)];
      heldBytes = held[0]!.length;
    }
  }
  if (heldBytes > 0 || offset === 0) last = await send(Buffer.concat(held));
  if (!last.stored) throw fail('TRANSFER_INCOMPLETE', `home did not store the output (${offset} of ${size} bytes sent)`);
  return last.stored;
}

/**
 * Whether a peer's port takes connections, believed for a minute: a home
 * that cannot be dialled is not made to wait out a connect timeout per file.
 */
export class PortProbe {
  private readonly known = new Map<string, { ok: boolean; at: number }>();

  async reaches(host: string, port: number): Promise<boolean> {
    const key = `${host}:${port}`;
    const had = this.known.get(key);
    if (had && Date.now() - had.at < PROBE_KEEP_MS) return had.ok;
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host, port, timeout: PROBE_TIMEOUT_MS });
      const done = (v: boolean) => {
        socket.destroy();
        resolve(v);
      };
      socket.once('connect', () => done(true));
      socket.once('timeout', () => done(false));
      socket.once('error', () => done(false));
    });
    this.known.set(key, { ok, at: Date.now() });
    return ok;
  }

  /** A transfer found the port closed after all. */
  forget(host: string, port: number): void {
    this.known.delete(`${host}:${port}`);
  }
}
