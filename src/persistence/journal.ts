/**
 * Append-only write-ahead journal with group commit.
 *
 * The journal is a folder of numbered segment files, journal-000001.log,
 * journal-000002.log, ...; each is a sequence of frames:
 *
 *   bytes 0..3   payload length, unsigned 32-bit little-endian, > 0
 *   bytes 4..7   CRC-32 (zlib polynomial) of the payload, unsigned 32-bit little-endian
 *   bytes 8..    payload: one record as UTF-8 JSON
 *
 * Segments are written strictly one after the other: a segment's last frame
 * is synced before anything is written to the next one, and a new segment's
 * file is created (and its folder entry synced) when rotating, before a
 * snapshot can refer to it.
 *
 * Replay rules, chosen so that no acknowledged record is ever dropped quietly:
 * - A bad frame (short header or payload, zero or oversized length, CRC
 *   mismatch, invalid JSON) in the last segment holding data is what a crash
 *   during a write leaves behind. Nothing after it was acknowledged, so replay
 *   ends at the last good record, the file is truncated there and new frames
 *   start on a clean boundary.
 * - A bad frame in a segment followed by a segment holding data cannot come
 *   from a crash (see above); it is damage to acknowledged records, and the
 *   records after it may depend on what was lost. open() throws
 *   JournalCorruptError rather than destroy or skip data; the files are left
 *   untouched for inspection.
 * - A missing segment number between `fromSegment` and the newest segment
 *   throws JournalCorruptError for the same reason.
 *
 * A full disk is waited out, not fatal: a write that finds no room
 * (ENOSPC, EDQUOT) is cut back to the segment's last durable byte and tried
 * again, with a growing pause, until it fits. Its records stay queued and
 * their waiters unanswered meanwhile, so nothing is acknowledged that is not
 * on disk; `onStall` tells the owner when the journal stalls and resumes.
 * Any other write error, or a cut that fails, is fatal as before.
 */
import fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { crc32 } from 'node:zlib';
import { fsyncDir } from './durable-file.js';

const HEADER_BYTES = 8;
const MAX_RECORD_BYTES = 64 * 1024 * 1024;
const READ_CHUNK_BYTES = 8 * 1024 * 1024;
// Bounds the memory of one write; a group this large already amortises its fsync.
const MAX_GROUP_BYTES = 16 * 1024 * 1024;
const SEGMENT_NAME = /^journal-(\d{6,})\.log$/;

export interface JournalOptions {
  dir: string;
  /** Warnings, e.g. a torn tail cut off during replay. */
  log?: (msg: string) => void;
  /** Called after every durable write (an fdatasync, or an O_DSYNC write) with its duration and the number of records it made durable. */
  onFsync?: (ms: number, records: number) => void;
  /** Permission bits of new segment files. */
  mode?: number;
  /** Called with true when a write found the disk full (the journal waits and retries), false once one fits again. */
  onStall?: (stalled: boolean, cause?: Error) => void;
}

export interface JournalOpenOptions extends JournalOptions {
  /** First segment to replay: the `coversBeforeSegment` of the snapshot loaded, or 1 without one. */
  fromSegment?: number;
  /** Receives every replayed record, in order. */
  onRecord?: (record: unknown) => void;
}

export interface JournalOpenResult {
  journal: Journal;
  /** Number of records passed to onRecord. */
  replayed: number;
  /** True when a torn or damaged tail was cut off. */
  truncated: boolean;
}

export interface JournalStats {
  fsyncs: number;
  records: number;
  bytes: number;
  lastFsyncMs: number;
}

/** The journal cannot take records: it is closed, or a write failed and its state on disk is unknown. */
export class JournalError extends Error {
  readonly code = 'JOURNAL_FAILED';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'JournalError';
  }
}

/** Acknowledged records are damaged or missing; replay refuses to guess. */
export class JournalCorruptError extends Error {
  readonly code = 'JOURNAL_CORRUPT';
  constructor(
    message: string,
    readonly file: string,
    readonly offset: number,
  ) {
    super(message);
    this.name = 'JournalCorruptError';
  }
}

export function segmentFileName(segment: number): string {
  return `journal-${String(segment).padStart(6, '0')}.log`;
}

interface Segment {
  number: number;
  fd: number;
  /** Including records queued but not yet written. */
  bytes: number;
  /** Written and synced: where a write cut short by a full disk is cut back to. */
  durable: number;
  closed: boolean;
  /**
   * Settles once the segment's folder entry is durable; nothing is written to
   * the segment before. Null when it was durable when the segment was opened.
   */
  entry: Promise<void> | null;
}

/** Pauses between tries of a write that found the disk full. */
const STALL_MIN_MS = 50;
const STALL_MAX_MS = 2000;

function isNoSpace(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

interface Group {
  segment: Segment;
  frames: Buffer[];
  bytes: number;
  records: number;
  waiters: Waiter[];
}

export class Journal {
  private current: Segment;
  private readonly segments = new Set<Segment>();
  private queue: Group[] = [];
  private inflight: Group | null = null;
  private running = false;
  private failure: JournalError | null = null;
  /** Since when a write has been waiting for room on the disk; null while writes fit. */
  private stalledSince: number | null = null;
  private closing: Promise<void> | null = null;
  private progressWaiters: (() => void)[] = [];
  private readonly counters: JournalStats = { fsyncs: 0, records: 0, bytes: 0, lastFsyncMs: 0 };

  private constructor(
    private readonly opts: JournalOptions,
    segment: Segment,
  ) {
    this.current = segment;
    this.segments.add(segment);
  }

  static async open(opts: JournalOpenOptions): Promise<JournalOpenResult> {
    const dir = opts.dir;
    const from = opts.fromSegment ?? 1;
    if (!Number.isInteger(from) || from < 1) throw new RangeError(`fromSegment must be a positive integer, got ${from}`);
    const log = opts.log ?? (() => undefined);
    await fsp.mkdir(dir, { recursive: true });

    const numbers = (await listSegments(dir)).filter((n) => n >= from);
    for (let i = 0; i < numbers.length; i++) {
      const expected = i === 0 ? from : numbers[i - 1]! + 1;
      if (numbers[i] !== expected) {
        const file = path.join(dir, segmentFileName(expected));
        throw new JournalCorruptError(
          `journal segment ${file} is missing but ${segmentFileName(numbers[i]!)} exists; records would be lost`,
          file,
          0,
        );
      }
    }

    const sizes = await Promise.all(numbers.map(async (n) => (await fsp.stat(path.join(dir, segmentFileName(n)))).size));
    let lastWithData = -1;
    sizes.forEach((size, i) => {
      if (size > 0) lastWithData = i;
    });

    const onRecord = opts.onRecord ?? (() => undefined);
    let replayed = 0;
    let truncated = false;
    for (let i = 0; i <= lastWithData; i++) {
      const file = path.join(dir, segmentFileName(numbers[i]!));
      const scan = await scanSegment(file, onRecord);
      replayed += scan.records;
      if (scan.error === undefined) continue;
      if (i < lastWithData) {
        throw new JournalCorruptError(
          `journal ${file}: ${scan.error} at offset ${scan.goodBytes}, and later segments hold records`,
          file,
          scan.goodBytes,
        );
      }
      log(
        `journal ${file}: ${scan.error} at offset ${scan.goodBytes} of ${scan.size}; ` +
          `replay ends at the last good record and the file is truncated there`,
      );
      await truncateDurably(file, scan.goodBytes);
      truncated = true;
    }

    const mode = opts.mode ?? 0o600;
    let segment: Segment;
    if (numbers.length > 0) {
      const last = numbers[numbers.length - 1]!;
      const file = path.join(dir, segmentFileName(last));
      const fd = fs.openSync(file, APPEND);
      const size = fs.fstatSync(fd).size;
      segment = { number: last, fd, bytes: size, durable: size, closed: false, entry: null };
    } else {
      if (from > 1) log(`journal ${path.join(dir, segmentFileName(from))} not found; starting it empty`);
      const fd = fs.openSync(path.join(dir, segmentFileName(from)), CREATE, mode);
      await fsyncDir(dir);
      segment = { number: from, fd, bytes: 0, durable: 0, closed: false, entry: null };
    }
    return { journal: new Journal(opts, segment), replayed, truncated };
  }

  /** Number of the segment new records go to. */
  get segment(): number {
    return this.current.number;
  }

  /**
   * Resolves once the record is written durably (see DSYNC). The record is
   * serialised before this returns, so the caller may change it afterwards.
   */
  append(record: unknown): Promise<void> {
    let frame: Buffer;
    try {
      this.checkWritable();
      frame = encodeFrame(record);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<void>((resolve, reject) => this.enqueue(frame, { resolve, reject }));
  }

  /** Same ordering as append(), but nobody waits; throws if the journal cannot take records. */
  appendNoWait(record: unknown): void {
    this.checkWritable();
    this.enqueue(encodeFrame(record), null);
  }

  /**
   * Sends new records to a fresh segment and returns its number. Records
   * appended before the call still go to the old segment, ahead of anything
   * in the new one. Synchronous, so that state serialised in the same tick
   * covers exactly the segments before the returned number.
   *
   * The new file's folder entry is synced in the background, not here: on a
   * slow disk that sync takes as long as any other, and here it would hold
   * the event loop (every reader and heartbeat) for all of it. No record is
   * written to the segment before the entry is durable, so none can be
   * acknowledged in a file that a crash could take away; a failed sync fails
   * the journal like a failed write.
   */
  rotate(): number {
    this.checkWritable();
    const number = this.current.number + 1;
    const fd = fs.openSync(path.join(this.opts.dir, segmentFileName(number)), CREATE, this.opts.mode ?? 0o600);
    const entry = fsyncDir(this.opts.dir);
    // Observed here so that a failure is never unhandled; the flush loop reads it again.
    entry.catch(() => undefined);
    const old = this.current;
    this.current = { number, fd, bytes: 0, durable: 0, closed: false, entry };
    this.segments.add(this.current);
    this.closeIfRetired(old);
    return number;
  }

  /** Resolves once every record appended to segments before `segment` is durable; rejects if the journal failed instead. */
  async durableBefore(segment: number): Promise<void> {
    await this.waitWhile(() => this.hasPendingBefore(segment));
    if (this.failure) throw this.failure;
  }

  /** Deletes segments numbered below `segment`, once their pending records have been written. */
  async removeSegmentsBefore(segment: number): Promise<void> {
    if (segment > this.current.number) {
      throw new RangeError(`cannot remove segments before ${segment}: ${this.current.number} is being written`);
    }
    await this.waitWhile(() => this.hasPendingBefore(segment));
    const doomed = (await listSegments(this.opts.dir)).filter((n) => n < segment);
    for (const n of doomed) await fsp.rm(path.join(this.opts.dir, segmentFileName(n)), { force: true });
    if (doomed.length > 0) await fsyncDir(this.opts.dir);
  }

  /** Bytes in the current segment, including records not yet written: all that came since the last rotation. */
  currentSegmentBytes(): number {
    return this.current.bytes;
  }

  stats(): JournalStats {
    return { ...this.counters };
  }

  /** Writes everything appended so far, then closes the files. Later appends are rejected. */
  close(): Promise<void> {
    this.closing ??= this.finish();
    return this.closing;
  }

  private async finish(): Promise<void> {
    await this.waitWhile(() => this.running);
    let firstError: unknown;
    for (const seg of this.segments) {
      if (seg.closed) continue;
      try {
        if (!this.failure && seg === this.current) fs.fsyncSync(seg.fd);
      } catch (err) {
        firstError ??= err;
      }
      seg.closed = true;
      fs.closeSync(seg.fd);
    }
    this.segments.clear();
    if (firstError !== undefined) throw firstError;
  }

  private checkWritable(): void {
    if (this.failure) throw this.failure;
    if (this.closing) throw new JournalError('journal is closed');
  }

  private enqueue(frame: Buffer, waiter: Waiter | null): void {
    let group = this.queue[this.queue.length - 1];
    if (!group || group.segment !== this.current || group.bytes >= MAX_GROUP_BYTES) {
      group = { segment: this.current, frames: [], bytes: 0, records: 0, waiters: [] };
      this.queue.push(group);
    }
    group.frames.push(frame);
    group.bytes += frame.length;
    group.records++;
    if (waiter) group.waiters.push(waiter);
    this.current.bytes += frame.length;
    if (!this.running) {
      this.running = true;
      // Deferred so that every append made in the current tick joins the first write.
      queueMicrotask(() => void this.flushLoop());
    }
  }

  /** Why the journal takes no more records after a write failed; null while it takes them. */
  get failedWith(): JournalError | null {
    return this.failure;
  }

  /** True while a write waits for room on the disk. */
  get stalled(): boolean {
    return this.stalledSince !== null;
  }

  private async flushLoop(): Promise<void> {
    let pauseMs = STALL_MIN_MS;
    while (this.queue.length > 0 && !this.failure) {
      const group = this.queue.shift()!;
      this.inflight = group;
      let ms: number;
      try {
        const buf = group.frames.length === 1 ? group.frames[0]! : Buffer.concat(group.frames, group.bytes);
        if (group.segment.entry) {
          try {
            await group.segment.entry;
          } catch (err) {
            // Not a full disk to wait out: the file may be gone after a crash, so nothing may be written to it.
            this.inflight = null;
            this.fail(err, group);
            break;
          }
          group.segment.entry = null;
        }
        const start = performance.now();
        await writeAll(group.segment.fd, buf);
        if (!DSYNC) await fdatasync(group.segment.fd);
        ms = performance.now() - start;
      } catch (err) {
        this.inflight = null;
        if (isNoSpace(err) && !this.closing && this.cutBack(group.segment)) {
          // Nothing of the group counts as written: it goes first again, after a pause.
          this.queue.unshift(group);
          this.stall(err as Error);
          await new Promise((r) => setTimeout(r, pauseMs));
          pauseMs = Math.min(STALL_MAX_MS, pauseMs * 2);
          continue;
        }
        this.fail(err, group);
        break;
      }
      pauseMs = STALL_MIN_MS;
      group.segment.durable += group.bytes;
      this.inflight = null;
      this.resume();
      this.counters.fsyncs++;
      this.counters.records += group.records;
      this.counters.bytes += group.bytes;
      this.counters.lastFsyncMs = ms;
      for (const w of group.waiters) w.resolve();
      this.closeIfRetired(group.segment);
      try {
        this.opts.onFsync?.(ms, group.records);
      } catch {
        // An observer must not break the journal.
      }
      this.notifyProgress();
    }
    this.running = false;
    this.notifyProgress();
  }

  /** Cuts a segment back to its last durable byte after a write that did not fit; false if even that fails. */
  private cutBack(seg: Segment): boolean {
    try {
      fs.ftruncateSync(seg.fd, seg.durable);
      return true;
    } catch {
      return false;
    }
  }

  private stall(cause: Error): void {
    if (this.stalledSince !== null) return;
    this.stalledSince = Date.now();
    this.opts.log?.(`journal: the disk is full (${cause.message}); writes wait for room and are tried again`);
    try {
      this.opts.onStall?.(true, cause);
    } catch {
      // An observer must not break the journal.
    }
  }

  private resume(): void {
    if (this.stalledSince === null) return;
    const waitedMs = Date.now() - this.stalledSince;
    this.stalledSince = null;
    this.opts.log?.(`journal: writes fit again after ${waitedMs} ms`);
    try {
      this.opts.onStall?.(false);
    } catch {
      // An observer must not break the journal.
    }
  }

  private fail(cause: unknown, group: Group): void {
    const msg = cause instanceof Error ? cause.message : String(cause);
    this.failure = new JournalError(`journal write failed, no further records accepted: ${msg}`, { cause });
    const lost = [group, ...this.queue];
    this.queue = [];
    let records = 0;
    for (const g of lost) {
      records += g.records;
      for (const w of g.waiters) w.reject(this.failure);
    }
    this.opts.log?.(`${this.failure.message} (${records} records not durable)`);
  }

  private closeIfRetired(seg: Segment): void {
    if (seg === this.current || seg.closed) return;
    if (this.inflight?.segment === seg || this.queue.some((g) => g.segment === seg)) return;
    seg.closed = true;
    this.segments.delete(seg);
    fs.close(seg.fd, () => undefined);
  }

  private hasPendingBefore(segment: number): boolean {
    if (this.failure) return false;
    return (
      (this.inflight !== null && this.inflight.segment.number < segment) ||
      this.queue.some((g) => g.segment.number < segment)
    );
  }

  private async waitWhile(cond: () => boolean): Promise<void> {
    while (cond()) await new Promise<void>((resolve) => this.progressWaiters.push(resolve));
  }

  private notifyProgress(): void {
    const waiters = this.progressWaiters;
    this.progressWaiters = [];
    for (const w of waiters) w();
  }
}

/**
 * Segments are opened with O_DSYNC where the system has it: each write
 * returns once its bytes are as durable as fdatasync would make them, so a
 * group costs one trip to the thread pool instead of two, and its waiters
 * do not also wait for the event loop between the write and the sync.
 */
const DSYNC = fs.constants.O_DSYNC ?? 0;
const APPEND = fs.constants.O_WRONLY | fs.constants.O_APPEND | DSYNC;
const CREATE = APPEND | fs.constants.O_CREAT | fs.constants.O_EXCL;

function encodeFrame(record: unknown): Buffer {
  const json = JSON.stringify(record);
  if (json === undefined) throw new TypeError('journal record is not JSON-serialisable');
  const len = Buffer.byteLength(json);
  if (len > MAX_RECORD_BYTES) throw new RangeError(`journal record of ${len} bytes exceeds ${MAX_RECORD_BYTES}`);
  const frame = Buffer.allocUnsafe(HEADER_BYTES + len);
  frame.write(json, HEADER_BYTES, 'utf8');
  frame.writeUInt32LE(len, 0);
  frame.writeUInt32LE(crc32(frame.subarray(HEADER_BYTES)), 4);
  return frame;
}

function writeAll(fd: number, buf: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    let done = 0;
    const step = (): void => {
      fs.write(fd, buf, done, buf.length - done, null, (err, n) => {
        if (err) return reject(err);
        done += n;
        if (done < buf.length) step();
        else resolve();
      });
    };
    step();
  });
}

function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

async function listSegments(dir: string): Promise<number[]> {
  const out: number[] = [];
  for (const name of await fsp.readdir(dir)) {
    const m = SEGMENT_NAME.exec(name);
    if (m) out.push(Number(m[1]));
  }
  return out.sort((a, b) => a - b);
}

async function truncateDurably(file: string, size: number): Promise<void> {
  const fh = await fsp.open(file, 'r+');
  try {
    await fh.truncate(size);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

interface ScanResult {
  records: number;
  /** Offset just past the last good frame. */
  goodBytes: number;
  size: number;
  error?: string;
}

/** Feeds each good frame to onRecord; stops at the first bad one. Reads in large chunks. */
async function scanSegment(file: string, onRecord: (record: unknown) => void): Promise<ScanResult> {
  const fh = await fsp.open(file, 'r');
  try {
    const size = (await fh.stat()).size;
    let buf = Buffer.allocUnsafe(Math.max(HEADER_BYTES, Math.min(size, READ_CHUNK_BYTES)));
    let base = 0; // file offset of buf[0]
    let pos = 0; // next frame within buf
    let filled = 0; // valid bytes in buf
    let fileOffset = 0; // next byte to read from the file
    let records = 0;

    // Callers only ask for bytes the file is known to hold.
    const fill = async (need: number): Promise<void> => {
      if (pos > 0) {
        buf.copy(buf, 0, pos, filled);
        filled -= pos;
        base += pos;
        pos = 0;
      }
      if (need > buf.length) {
        const bigger = Buffer.allocUnsafe(Math.max(need, READ_CHUNK_BYTES));
        buf.copy(bigger, 0, 0, filled);
        buf = bigger;
      }
      while (filled < need) {
        const { bytesRead } = await fh.read(buf, filled, buf.length - filled, fileOffset);
        if (bytesRead === 0) throw new Error(`journal ${file} shrank during replay`);
        filled += bytesRead;
        fileOffset += bytesRead;
      }
    };

    const stop = (error: string): ScanResult => ({ records, goodBytes: base + pos, size, error });
    for (;;) {
      const offset = base + pos;
      const left = size - offset;
      if (left === 0) return { records, goodBytes: offset, size };
      if (left < HEADER_BYTES) return stop(`torn frame header (${left} of ${HEADER_BYTES} bytes)`);
      if (filled - pos < HEADER_BYTES) await fill(HEADER_BYTES);
      const len = buf.readUInt32LE(pos);
      const crc = buf.readUInt32LE(pos + 4);
      if (len === 0 || len > MAX_RECORD_BYTES) return stop(`invalid payload length ${len}`);
      if (left - HEADER_BYTES < len) return stop(`torn payload (${left - HEADER_BYTES} of ${len} bytes)`);
      if (filled - pos < HEADER_BYTES + len) await fill(HEADER_BYTES + len);
      const start = pos + HEADER_BYTES;
      const end = start + len;
      if (crc32(buf.subarray(start, end)) !== crc) return stop('checksum mismatch');
      let record: unknown;
      try {
        record = JSON.parse(buf.toString('utf8', start, end));
      } catch {
        return stop('payload is not valid JSON');
      }
      onRecord(record);
      records++;
      pos = end;
    }
  } finally {
    await fh.close();
  }
}
