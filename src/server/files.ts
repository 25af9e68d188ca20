import type { IncomingMessage } from 'node:http';
import { fail } from '../core/errors.js';
import { checkFileName } from '../core/files.js';
import type { Model } from '../core/model.js';
import type { FileRef } from '../core/types.js';
import type { BlobStore, StoredBlob } from '../persistence/blob-store.js';
import { Reply, type StreamReply } from './http.js';

/**
 * The rules around the file store: what a project may still add under its
 * quota, that every file a request names is really stored, and how many bytes
 * one upload may bring. Transfers for attempts (local or delegated) are in
 * transfers.ts; this holds what both they and the user routes need.
 */
export class Files {
  constructor(
    readonly store: BlobStore,
    private readonly model: Model,
    private readonly limits: { maxFileBytes: number; projectQuotaBytes: number },
  ) {}

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
   */
  async receive(project: string, req: IncomingMessage, sha256: string): Promise<StoredBlob> {
    const size = this.announcedSize(req);
    this.checkQuota(project, [{ sha256, size }]);
    return this.store.put(req, { sha256, size, maxBytes: size });
  }

  /** FILE_NOT_FOUND unless every file is stored with the size given. */
  async requireStored(files: Iterable<FileRef>, what = 'file'): Promise<void> {
    for (const f of files) {
      checkFileName(f.name, `${what} name`);
      const size = await this.store.sizeOf(f.sha256);
      if (size === null) throw fail('FILE_NOT_FOUND', `${what} '${f.name}' (${f.sha256}) was not uploaded to this server`);
      if (size !== f.size) throw fail('CHECKSUM_MISMATCH', `${what} '${f.name}' is ${size} bytes here, not ${f.size}`);
    }
  }

  async download(sha256: string, name?: string): Promise<StreamReply> {
    const { stream, size } = await this.store.read(sha256);
    const headers: Record<string, string> = { 'x-cpc-sha256': sha256 };
    if (name !== undefined) headers['content-disposition'] = `attachment; filename="${name.split('/').pop()!.replace(/[^\w.-]/g, '_')}"`;
    return Reply.stream(stream, size, headers);
  }
}
