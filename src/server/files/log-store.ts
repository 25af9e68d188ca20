import { mkdir, open, readdir, rename, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { utf8Part, type LogPart, type PartOf } from './log-part.js';
import { planAppend, type KeptRange } from './live-logs.js';
import { fsyncDir } from '../../persistence/durable-file.js';

export type LogStream = 'stdout' | 'stderr';

/** A part of a stream as the store keeps it: the part, and where the kept bytes begin. */
export interface KeptPart extends LogPart {
  /** Bytes before this offset are not kept (dropped by retention, or skipped by the worker). */
  start: number;
}

interface StreamFile extends KeptRange {
  /** The file's path: `<attempt>.<stream>` when kept from byte 0, `<attempt>.<stream>@<start>` otherwise. */
  path: string;
}

/** How often appended output is made durable, all streams at once. */
const SYNC_EVERY_MS = 1000;
/** Streams whose place is remembered between chunks; beyond it the oldest are looked up again. */
const REMEMBERED_STREAMS = 10_000;

/**
 * Stdout and stderr of every attempt, one file each, under
 * `<home>/logs/<last two hex digits of the job id>/<job id>/`. The shard keeps
 * folders small; the last digits of a uuid v7 are random, the first are time.
 *
 * Output arrives while the attempt runs, in chunks placed by their offset in
 * the stream (live-logs.ts has the rules), and once more with the attempt's
 * result (its tails), which fills in whatever the chunks did not bring. Each
 * stream keeps a bounded window: once it has grown past twice `window` bytes,
 * its last `window` bytes move to a file named after the offset where they
 * begin, and the older bytes are gone. Appends are made durable in groups
 * (every second, and for an attempt before its result is taken), not one
 * fsync per chunk.
 */
export class LogStore {
  private readonly streams = new Map<string, StreamFile>();
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly waiters = new Map<string, Set<() => void>>();
  private readonly dirty = new Set<string>();
  private syncTimer?: NodeJS.Timeout;
  private stopping = false;

  constructor(
    private readonly dir: string,
    /** Bytes of each stream kept at least (at most twice this). */
    readonly window: number = 1024 * 1024,
  ) {}

  private folder(jobId: string): string {
    return join(this.dir, jobId.slice(-2), jobId);
  }

  /** Runs `fn` after every earlier call for the same stream has settled. */
  private serial<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const before = this.queues.get(key) ?? Promise.resolve();
    const run = before.then(fn, fn);
    const tail = run.catch(() => {});
    this.queues.set(key, tail);
    void tail.then(() => {
      if (this.queues.get(key) === tail) this.queues.delete(key);
    });
    return run;
  }

  /** Where a stream's file is and what it keeps; null when nothing of it is stored. */
  private async find(jobId: string, attempt: number, stream: LogStream): Promise<StreamFile | null> {
    const folder = this.folder(jobId);
    let names: string[];
    try {
      names = await readdir(folder);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    const base = `${attempt}.${stream}`;
    let best: { name: string; start: number } | null = null;
    const stale: string[] = [];
    for (const name of names) {
      let start: number;
      if (name === base) start = 0;
      else if (name.startsWith(`${base}@`) && /^\d+$/.test(name.slice(base.length + 1))) start = Number(name.slice(base.length + 1));
      else continue;
      if (best && best.start >= start) stale.push(name);
      else {
        if (best) stale.push(best.name);
        best = { name, start };
      }
    }
    if (!best) return null;
    // An older file beside a newer one is what a restart of the window left when interrupted.
    for (const name of stale) await unlink(join(folder, name)).catch(() => {});
    const path = join(folder, best.name);
    const fh = await open(path, 'r');
    try {
      const { size } = await fh.stat();
      return { path, start: best.start, end: best.start + size };
    } finally {
      await fh.close();
    }
  }

  private async located(jobId: string, attempt: number, stream: LogStream): Promise<StreamFile | null> {
    const key = `${jobId}/${attempt}.${stream}`;
    const known = this.streams.get(key);
    if (known) return known;
    const found = await this.find(jobId, attempt, stream);
    if (found) this.remember(key, found);
    return found;
  }

  private remember(key: string, file: StreamFile): void {
    this.streams.delete(key);
    this.streams.set(key, file);
    if (this.streams.size > REMEMBERED_STREAMS) this.streams.delete(this.streams.keys().next().value!);
  }

  /**
   * Stores a chunk of a stream that begins at byte `offset` of it. Bytes
   * stored already are skipped; a chunk past the stored end starts the kept
   * part anew at its offset. Resolves with what is kept now and the bytes
   * this chunk found missing before it.
   */
  append(jobId: string, attempt: number, stream: LogStream, offset: number, data: Buffer): Promise<KeptRange & { gap: number }> {
    const key = `${jobId}/${attempt}.${stream}`;
    return this.serial(key, async () => {
      const folder = this.folder(jobId);
      const kept = (await this.located(jobId, attempt, stream)) ?? { path: join(folder, `${attempt}.${stream}`), start: 0, end: 0 };
      const plan = planAppend(kept, offset, data.length, this.window);
      if (plan.take === 0) return { start: kept.start, end: kept.end, gap: 0 };
      const bytes = data.subarray(plan.drop, plan.drop + plan.take);
      let next: StreamFile;
      if (plan.gap > 0) {
        // A stream this far behind is skipping ahead every batch: its new file is made durable with
        // the next group, not on its own (a crash before then loses at most that second of it).
        next = { path: segmentPath(folder, attempt, stream, plan.restartAt!), start: plan.restartAt!, end: plan.restartAt! + bytes.length };
        await mkdir(folder, { recursive: true });
        await writeNew(next.path, bytes);
        if (kept.path !== next.path) {
          this.dirty.delete(kept.path);
          await unlink(kept.path).catch(() => {});
        }
      } else {
        await mkdir(folder, { recursive: true });
        await appendTo(kept.path, bytes);
        next = { ...kept, end: kept.end + bytes.length };
        if (plan.restartAt !== undefined) next = await this.restart(folder, attempt, stream, next, plan.restartAt);
      }
      this.remember(key, next);
      this.markDirty(next.path);
      this.wake(key);
      return { start: next.start, end: next.end, gap: plan.gap };
    });
  }

  /** Keeps only bytes from `at` on: they move to a file of their own, and the old one goes. */
  private async restart(folder: string, attempt: number, stream: LogStream, kept: StreamFile, at: number): Promise<StreamFile> {
    const fh = await open(kept.path, 'r');
    let bytes: Buffer;
    try {
      bytes = Buffer.alloc(kept.end - at);
      const { bytesRead } = await fh.read(bytes, 0, bytes.length, at - kept.start);
      bytes = bytes.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
    const path = segmentPath(folder, attempt, stream, at);
    await writeFresh(path, bytes);
    await this.replaced(folder, kept.path, path);
    return { path, start: at, end: at + bytes.length };
  }

  /** The new file is durable and named before the old one goes, so a crash leaves one or the other whole. */
  private async replaced(folder: string, oldPath: string, newPath: string): Promise<void> {
    await fsyncDir(folder);
    if (oldPath !== newPath) {
      this.dirty.delete(oldPath);
      await unlink(oldPath).catch(() => {});
    }
  }

  private markDirty(path: string): void {
    this.dirty.add(path);
    if (this.syncTimer) return;
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined;
      // A stream that cannot be synced now is tried again with the attempt's result (sync), not fatal here.
      this.syncDirty().catch(() => {});
    }, SYNC_EVERY_MS);
    this.syncTimer.unref();
  }

  /** Makes every stream appended to since the last time durable. */
  async syncDirty(): Promise<void> {
    const paths = [...this.dirty];
    this.dirty.clear();
    const folders = new Set<string>();
    await Promise.all(
      paths.map(async (path) => {
        folders.add(join(path, '..'));
        try {
          await datasync(path);
        } catch (err) {
          // Still to be made durable: with the next group, or before the attempt's result.
          this.dirty.add(path);
          throw err;
        }
      }),
    );
    for (const folder of folders) await fsyncDir(folder).catch(() => {});
  }

  /** Makes what is stored of both streams of an attempt durable now. */
  /** True when live chunks of the attempt were stored or are being stored here (by this process). */
  holds(jobId: string, attempt: number): boolean {
    for (const stream of ['stdout', 'stderr'] as const) {
      const key = `${jobId}/${attempt}.${stream}`;
      if (this.streams.has(key) || this.queues.has(key)) return true;
    }
    return false;
  }

  async sync(jobId: string, attempt: number): Promise<void> {
    let any = false;
    for (const stream of ['stdout', 'stderr'] as const) {
      const key = `${jobId}/${attempt}.${stream}`;
      // After the appends that are under way.
      await this.queues.get(key);
      const kept = this.streams.get(key);
      if (kept && this.dirty.delete(kept.path)) {
        await datasync(kept.path);
        any = true;
      }
    }
    if (any) await fsyncDir(this.folder(jobId));
  }

  /**
   * Takes what an attempt's result carries of a stream: its last bytes
   * (`text`) and the stream's whole size. What the live chunks brought
   * already is not written again.
   */
  async complete(jobId: string, attempt: number, stream: LogStream, text: string, totalBytes: number): Promise<void> {
    const bytes = Buffer.from(text, 'utf8');
    // A tail is the end of the stream: it begins this far into it.
    if (bytes.length > 0) {
      await this.append(jobId, attempt, stream, Math.max(0, totalBytes - bytes.length), bytes);
      return;
    }
    // An empty stream is kept as an empty file: the finished attempt's log is there, and empty.
    const key = `${jobId}/${attempt}.${stream}`;
    await this.serial(key, async () => {
      if (await this.located(jobId, attempt, stream)) return;
      const folder = this.folder(jobId);
      const path = join(folder, `${attempt}.${stream}`);
      await mkdir(folder, { recursive: true });
      await appendTo(path, bytes);
      this.remember(key, { path, start: 0, end: 0 });
      this.markDirty(path);
    });
  }

  /** Writes both streams of an attempt whole and makes them durable (for results that carry all of their output). */
  async write(jobId: string, attempt: number, stdout: string, stderr: string): Promise<void> {
    await this.complete(jobId, attempt, 'stdout', stdout, Buffer.byteLength(stdout));
    await this.complete(jobId, attempt, 'stderr', stderr, Buffer.byteLength(stderr));
    await this.sync(jobId, attempt);
    await fsyncDir(this.folder(jobId));
  }

  /** What is kept of a stream, null when nothing of it is stored. */
  async kept(jobId: string, attempt: number, stream: LogStream): Promise<KeptRange | null> {
    const key = `${jobId}/${attempt}.${stream}`;
    await this.queues.get(key);
    const f = await this.located(jobId, attempt, stream);
    return f ? { start: f.start, end: f.end } : null;
  }

  /**
   * A part of the stored text, reading only that part of the file; offsets
   * count from the stream's start (a part asked for before the kept bytes
   * begins where they do); null when the attempt left none.
   */
  async readPart(jobId: string, attempt: number, stream: LogStream, want: PartOf, growing = false): Promise<KeptPart | null> {
    const key = `${jobId}/${attempt}.${stream}`;
    for (let tries = 0; ; tries++) {
      const f = await this.located(jobId, attempt, stream);
      if (!f) return null;
      let fh: FileHandle;
      try {
        fh = await open(f.path, 'r');
      } catch (err) {
        // The window restarted meanwhile: look again.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || tries > 2) throw err;
        this.streams.delete(key);
        continue;
      }
      try {
        const { size } = await fh.stat();
        const local: PartOf =
          want.tail !== undefined ? { tail: want.tail } : { offset: Math.max(0, (want.offset ?? 0) - f.start), ...(want.limit !== undefined ? { limit: want.limit } : {}) };
        const part = await utf8Part(size, local, async (start, end) => {
          const buf = Buffer.alloc(end - start);
          const { bytesRead } = await fh.read(buf, 0, buf.length, start);
          return buf.subarray(0, bytesRead);
        }, growing);
        return { text: part.text, offset: part.offset + f.start, end: part.end + f.start, size: size + f.start, start: f.start };
      } finally {
        await fh.close();
      }
    }
  }

  /** The stored text, or null when the attempt left none. */
  async read(jobId: string, attempt: number, stream: LogStream): Promise<string | null> {
    return (await this.readPart(jobId, attempt, stream, {}))?.text ?? null;
  }

  /**
   * Resolves once the stream has grown past `offset`, after `ms`, when
   * `signal` aborts, or when `stillWaiting` says to stop (asked every 250 ms).
   */
  async waitFor(jobId: string, attempt: number, stream: LogStream, offset: number, ms: number, signal: AbortSignal, stillWaiting: () => boolean): Promise<void> {
    const key = `${jobId}/${attempt}.${stream}`;
    const deadline = Date.now() + ms;
    while (Date.now() < deadline && !signal.aborted && !this.stopping && stillWaiting()) {
      const kept = await this.kept(jobId, attempt, stream);
      if (kept && kept.end > offset) return;
      await new Promise<void>((resolve) => {
        const set = this.waiters.get(key) ?? new Set();
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          set.delete(done);
          if (set.size === 0 && this.waiters.get(key) === set) this.waiters.delete(key);
          resolve();
        };
        const timer = setTimeout(done, Math.min(250, Math.max(0, deadline - Date.now())));
        signal.addEventListener('abort', done, { once: true });
        set.add(done);
        this.waiters.set(key, set);
      });
    }
  }

  /** The server is stopping: reads waiting for output answer now with what there is. */
  releaseWaits(): void {
    this.stopping = true;
    for (const set of [...this.waiters.values()]) for (const w of [...set]) w();
  }

  private wake(key: string): void {
    const set = this.waiters.get(key);
    if (set) for (const w of [...set]) w();
  }

  /** The attempt is over: its streams need not be remembered. */
  forget(jobId: string, attempt: number): void {
    this.streams.delete(`${jobId}/${attempt}.stdout`);
    this.streams.delete(`${jobId}/${attempt}.stderr`);
  }

  /** Makes everything durable and stops the timer (the server is stopping). */
  async close(): Promise<void> {
    clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
    await Promise.all([...this.queues.values()]);
    await this.syncDirty();
  }
}

function segmentPath(folder: string, attempt: number, stream: LogStream, start: number): string {
  return join(folder, start === 0 ? `${attempt}.${stream}` : `${attempt}.${stream}@${start}`);
}

async function writeNew(path: string, bytes: Buffer): Promise<void> {
  const fh = await open(path, 'w', 0o640);
  try {
    await fh.write(bytes);
  } finally {
    await fh.close();
  }
}

async function appendTo(path: string, bytes: Buffer): Promise<void> {
  const fh = await open(path, 'a', 0o640);
  try {
    if (bytes.length > 0) await fh.write(bytes);
  } finally {
    await fh.close();
  }
}

/** Writes a new file through a temporary name, durable before it is named. */
async function writeFresh(path: string, bytes: Buffer): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'w', 0o640);
  try {
    await fh.write(bytes);
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}

async function datasync(path: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, 'r+');
    await fh.datasync();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  } finally {
    await fh?.close();
  }
}
