import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { fail } from '../core/errors.js';

/**
 * Counts and hashes what passes through, and stops the stream past a limit.
 * With `expect`, it also holds the last chunk back until the end: bytes that
 * do not hash to the expected checksum are never passed on whole, so a
 * receiver further down sees a short transfer instead of a corrupt file.
 */
export class Meter extends Transform {
  readonly hash = createHash('sha256');
  bytes = 0;
  private held: Buffer | null = null;
  private sum: string | null = null;

  constructor(
    private readonly maxBytes = Infinity,
    private readonly tooLarge: () => Error = () => fail('FILE_TOO_LARGE', `the file is over the ${maxBytes}-byte limit`),
    private readonly expect?: { sha256: string; size: number },
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) return done(this.tooLarge());
    this.hash.update(chunk);
    if (!this.expect) return done(null, chunk);
    const previous = this.held;
    this.held = chunk;
    done(null, previous ?? undefined);
  }

  override _flush(done: TransformCallback): void {
    if (this.expect) {
      if (this.bytes !== this.expect.size) {
        return done(fail('TRANSFER_INCOMPLETE', `the transfer ended after ${this.bytes} of ${this.expect.size} bytes`));
      }
      if (this.digest() !== this.expect.sha256) {
        return done(fail('CHECKSUM_MISMATCH', `the bytes hash to ${this.digest()}, not to ${this.expect.sha256}`));
      }
    }
    done(null, this.held ?? undefined);
  }

  digest(): string {
    return (this.sum ??= this.hash.digest('hex'));
  }
}
