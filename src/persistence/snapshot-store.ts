/**
 * Snapshots of the in-memory state, each saying which journal segments it
 * makes redundant. File `snapshot-<segment>.json`:
 *
 *   line 1   header JSON: {"version":1,"segment":N,"at":<ms>,"bytes":<body length>,"sha256":"<hex of body>"}
 *   rest     body: the state as one JSON text
 *
 * The checksum lets a damaged snapshot be recognised instead of loaded.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { fsyncDir, removeTempFiles, writeFileDurable } from './durable-file.js';

const VERSION = 1;
const SNAPSHOT_NAME = /^snapshot-(\d{6,})\.json$/;
const NEWLINE = 0x0a;

export interface SnapshotOptions {
  log?: (msg: string) => void;
  /** Permission bits of the snapshot file. */
  mode?: number;
  /**
   * Awaited after `data` is serialised and before anything is written; a
   * rejection abandons the snapshot. The store waits here for the journal to
   * make durable every change the snapshot holds: a change whose write failed
   * was refused to its client and must not come back from a snapshot.
   */
  beforeWrite?: () => Promise<void>;
}

export interface Snapshot {
  /** Journal segments numbered below this are covered by `data`. */
  segment: number;
  /** When the snapshot was written, ms since the epoch. */
  at: number;
  data: unknown;
}

interface Header {
  version: number;
  segment: number;
  at: number;
  bytes: number;
  sha256: string;
}

export function snapshotFileName(segment: number): string {
  return `snapshot-${String(segment).padStart(6, '0')}.json`;
}

/**
 * Durably writes `data` as the snapshot covering every journal segment before
 * `coversBeforeSegment`, then deletes older snapshots. `data` is serialised
 * before the first await, so the caller may go on changing it (typically right
 * after Journal.rotate() in the same tick).
 */
export async function writeSnapshot(
  dir: string,
  data: unknown,
  coversBeforeSegment: number,
  opts: SnapshotOptions = {},
): Promise<void> {
  if (!Number.isInteger(coversBeforeSegment) || coversBeforeSegment < 1) {
    throw new RangeError(`coversBeforeSegment must be a positive integer, got ${coversBeforeSegment}`);
  }
  const json = JSON.stringify(data);
  if (json === undefined) throw new TypeError('snapshot data is not JSON-serialisable');
  const body = Buffer.from(json, 'utf8');
  const header: Header = {
    version: VERSION,
    segment: coversBeforeSegment,
    at: Date.now(),
    bytes: body.length,
    sha256: createHash('sha256').update(body).digest('hex'),
  };
  await opts.beforeWrite?.();
  await fsp.mkdir(dir, { recursive: true });
  await writeFileDurable(path.join(dir, snapshotFileName(coversBeforeSegment)), [JSON.stringify(header) + '\n', body], {
    mode: opts.mode ?? 0o600,
  });

  const older = (await listSnapshots(dir)).filter((n) => n < coversBeforeSegment);
  for (const n of older) await fsp.rm(path.join(dir, snapshotFileName(n)), { force: true });
  if (older.length > 0) await fsyncDir(dir);
}

/**
 * The newest snapshot that passes its checksum, or null. Damaged ones are
 * skipped with a warning and left on disk for inspection; the next
 * writeSnapshot removes them.
 */
export async function readLatestSnapshot(dir: string, opts: SnapshotOptions = {}): Promise<Snapshot | null> {
  let numbers: number[];
  try {
    numbers = await listSnapshots(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  for (const n of numbers) await removeTempFiles(path.join(dir, snapshotFileName(n)));

  for (const n of numbers.reverse()) {
    const file = path.join(dir, snapshotFileName(n));
    const raw = await fsp.readFile(file);
    const result = decode(raw, n);
    if (typeof result !== 'string') return result;
    opts.log?.(`snapshot ${file}: ${result}; trying an older one`);
  }
  return null;
}

/** The snapshot, or why it cannot be used. */
function decode(raw: Buffer, expectedSegment: number): Snapshot | string {
  const eol = raw.indexOf(NEWLINE);
  if (eol < 0) return 'no header line';
  let header: Header;
  try {
    header = JSON.parse(raw.toString('utf8', 0, eol)) as Header;
  } catch {
    return 'header is not valid JSON';
  }
  if (header === null || typeof header !== 'object') return 'header is not an object';
  if (header.version !== VERSION) return `unsupported version ${String(header.version)}`;
  if (header.segment !== expectedSegment) return `header names segment ${header.segment}, file name ${expectedSegment}`;
  const body = raw.subarray(eol + 1);
  if (body.length !== header.bytes) return `body is ${body.length} bytes, header says ${header.bytes}`;
  if (createHash('sha256').update(body).digest('hex') !== header.sha256) return 'checksum mismatch';
  try {
    return { segment: header.segment, at: header.at, data: JSON.parse(body.toString('utf8')) as unknown };
  } catch {
    return 'body is not valid JSON';
  }
}

async function listSnapshots(dir: string): Promise<number[]> {
  const out: number[] = [];
  for (const name of await fsp.readdir(dir)) {
    const m = SNAPSHOT_NAME.exec(name);
    if (m) out.push(Number(m[1]));
  }
  return out.sort((a, b) => a - b);
}
