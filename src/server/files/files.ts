/**
 * server/files: the bytes. Files, logs, transfers and save/load.
 * Owns the rules of the file store (this file), the attempts' transfers (local and to a delegated
 * job's home, by HTTPS or over the peer link when home cannot be dialled), the log files of attempts, saving and loading a project, and their routes.
 * May call: src/core, src/persistence (blob store, archive), src/federation (peer certificates),
 * server/http, server/jobs (store, ids, the worker routes' worker lookup). Writes file-received,
 * files-collected, value-set, project-loaded.
 */
import { open } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { fail } from '../../core/errors.js';
import { checkFileName } from '../../core/files.js';
import type { FileRef } from '../../core/types.js';
import type { BlobStore, StoredBlob } from '../../persistence/blob-store.js';
import { Reply, type StreamReply } from '../http/router.js';
import type { Store } from '../jobs/store.js';

/**
 * The rules around the file store: what a project may still add under its
 * quota, that a project names by checksum only content it holds, and how many
 * bytes one upload may bring. Transfers for attempts (local or delegated) are
 * in transfers.ts; this holds what both they and the user routes need.
 *
 * The store keeps each content once for the whole server, but a checksum is
 * no credential: a project may name content only when it refers to it
 * already (its jobs' inputs and outputs, its values, a project it loaded) or
 * sent its bytes itself (journaled as `file-received`). Content another
 * project holds is answered exactly as content nobody holds, so a refusal
 * tells neither that it exists nor its size.
 */
export class Files {
  constructor(
    readonly store: BlobStore,
    private readonly state: Store,
    private readonly limits: { maxFileBytes: number; projectQuotaBytes: number },
  ) {}

  private get model() {
    return this.state.model;
  }

  /** The size an upload announces in Content-Length; uploads must announce it. */
  announcedSize(req: IncomingMessage): number {
    const header = req.headers['content-length'];
    if (header === undefined) throw fail('LENGTH_REQUIRED', 'an upload must say its size in Content-Length');
    const size = Number(header);
    if (!Number.isSafeInteger(size) || size < 0) throw fail('BAD_REQUEST', 'Content-Length is not a size');
    if (size > this.limits.maxFileBytes) throw fail('FILE_TOO_LARGE', `the file of ${size} bytes is over the ${this.limits.maxFileBytes}-byte limit`);
    return size;
  }

  /** QUOTA_EXCEEDED unless the project may refer to these files as well. */
  checkQuota(project: string, files: Iterable<Pick<FileRef, 'sha256' | 'size'>>): void {
    const quota = this.limits.projectQuotaBytes;
    if (quota === 0) return;
    const total = this.model.files.bytesWith(project, files);
    if (total > quota) {
      throw fail('QUOTA_EXCEEDED', `project '${project}' would hold ${total} bytes of files, over its quota of ${quota}`);
    }
  }

  /**
   * Stores an upload for a project: checked against the quota before a byte
   * is read, and against its checksum and announced size once all arrived.
   * Once every byte has arrived the project may name the content (durably:
   * the reply waits for the journal). `created` tells whether the project
   * lacked it before, never whether another project has it.
   */
  receive(project: string, req: IncomingMessage, sha256: string): Promise<StoredBlob> {
    return this.receiveStream(project, req, sha256, this.announcedSize(req));
  }

  /** receive() for bytes that come as a stream of a known size rather than a request. */
  async receiveStream(project: string, req: Readable, sha256: string, size: number): Promise<StoredBlob> {
    this.checkQuota(project, [{ sha256, size }]);
    // Known before a byte is read: the upload is refused whole, with its code, rather than cut off.
    const refusing = this.state.refusing;
    if (refusing) throw fail(refusing.code, refusing.message);
    const had = this.model.files.sizeFor(project, sha256) !== null;
    const blob = await this.store.put(req, { sha256, size, maxBytes: size });
    if (!this.model.files.sentBy(project, blob.sha256)) {
      await this.state.commit({ t: 'file-received', at: Date.now(), project, sha256: blob.sha256, size: blob.size });
    }
    return { ...blob, created: !had };
  }

  /**
   * FILE_NOT_FOUND unless the project may name every file (it holds it or
   * sent it) and the store has it, with one answer for both; a size that
   * differs from the project's own file is CHECKSUM_MISMATCH.
   */
  async requireHeld(project: string, files: Iterable<FileRef>, what = 'file'): Promise<void> {
    for (const f of files) {
      checkFileName(f.name, `${what} name`);
      const known = this.model.files.sizeFor(project, f.sha256);
      const size = known === null ? null : await this.store.sizeOf(f.sha256);
      if (size === null) throw fail('FILE_NOT_FOUND', `${what} '${f.name}' (${f.sha256}) is not a file of project '${project}'; upload it first`);
      if (size !== f.size) throw fail('CHECKSUM_MISMATCH', `${what} '${f.name}' is ${size} bytes here, not ${f.size}`);
    }
  }

  /** Up to `length` bytes of stored content from `offset`, and its whole size. */
  async readRange(sha256: string, offset: number, length: number): Promise<{ size: number; data: Buffer }> {
    const fh = await open(this.store.pathOf(sha256), 'r').catch(() => {
      throw fail('FILE_NOT_FOUND', `no stored content with checksum ${sha256}`);
    });
    try {
      const { size } = await fh.stat();
      const data = Buffer.alloc(Math.max(0, Math.min(length, size - offset)));
      let got = 0;
      while (got < data.length) {
        const { bytesRead } = await fh.read(data, got, data.length - got, offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return { size, data: data.subarray(0, got) };
    } finally {
      await fh.close();
    }
  }

  async download(sha256: string, name?: string): Promise<StreamReply> {
    const { stream, size } = await this.store.read(sha256);
    const headers: Record<string, string> = { 'x-cpc-sha256': sha256 };
    if (name !== undefined) headers['content-disposition'] = `attachment; filename="${name.split('/').pop()!.replace(/[^\w.-]/g, '_')}"`;
    return Reply.stream(stream, size, headers);
  }
}

/**
 * At start: content some project sent but the store no longer has (the
 * collector removed it and the server stopped before journaling that) is
 * forgotten, so a later upload by someone else does not make it nameable again.
 */
export async function forgetMissingFiles(state: Store, blobs: BlobStore): Promise<number> {
  const missing: string[] = [];
  for (const sha of [...state.model.files.sentOnly()]) if (!(await blobs.has(sha))) missing.push(sha);
  if (missing.length > 0) await state.commit({ t: 'files-collected', at: Date.now(), sha256s: missing });
  return missing.length;
}
