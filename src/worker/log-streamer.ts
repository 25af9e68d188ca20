import type { FileHandle } from 'node:fs/promises';
import { ApiError } from '../client/api/client.js';
import { INLINE_LOG_BYTES, MAX_LOG_CHUNK_BYTES, type LogChunk, type LogChunksReply, type LogChunksRequest } from '../core/wire.js';

/**
 * Sends the output of running attempts to the server while they run.
 *
 * The job writes straight into its log files; this reads them, through the
 * worker's own handles, from the last byte the server has, and sends what is
 * new in batches: one request at a time (the next waits for the answer, so a
 * slow server slows the sending, not the job), at most MAX_LOG_CHUNK_BYTES
 * per request over all attempts, and at most one batch every `everyMs` unless
 * an attempt that ended is waiting for the rest of its output to go. The files
 * are the buffer: nothing is held here but the batch in flight. A stream more
 * than `window` bytes behind skips ahead to its last `window` bytes (the server
 * keeps no more than that); the chunk's offset shows the gap to the server.
 */

type Stream = 'stdout' | 'stderr';
const STREAMS: readonly Stream[] = ['stdout', 'stderr'];


/** How often a stream that outruns its window is sent. */
const CHATTY_EVERY_MS = 1000;
export interface StreamedAttempt {
  jobId: string;
  attempt: number;
  /** The registration the attempt was claimed under: its chunks go there. */
  workerId: string;
  files: Record<Stream, FileHandle>;
}

interface Tracked {
  a: StreamedAttempt;
  /** The next byte of each stream the server wants. */
  sent: Record<Stream, number>;
  /** Bytes skipped over, per stream (the server sees them as a gap). */
  skipped: Record<Stream, number>;
  /** Not sent before then: short jobs finish before they send anything, and their output goes with the result. */
  notBefore: number;
  /** After a failure, not again before then. */
  retryAt: number;
  failures: number;
  /** Refused for good (the attempt is not this worker's anymore) or gone. */
  dropped: boolean;
  /** Waiting for the rest of the output to go before the result does. */
  flushes: (() => void)[];
}

export interface LogStreamerOptions {
  send: (workerId: string, req: LogChunksRequest) => Promise<LogChunksReply>;
  /** The least time between two batches. */
  everyMs?: number;
  /** Bytes of each stream worth sending when it is behind: older ones are skipped. */
  window?: number;
  maxBatchBytes?: number;
  log?: (level: 'debug' | 'info' | 'warn', msg: string, fields?: Record<string, unknown>) => void;
}

/** Refusals that mean the attempt is not the worker's to report on anymore. */
const GONE = new Set(['STALE_ATTEMPT', 'JOB_NOT_FOUND', 'ATTEMPT_NOT_FOUND']);

export class LogStreamer {
  private readonly tracked = new Map<string, Tracked>();
  private readonly everyMs: number;
  private readonly window: number;
  private maxBatchBytes: number;
  private wakeUp?: () => void;
  /** A wake-up that came while no one slept. */
  private woken = false;
  private stopped = false;
  /** The server does not take live logs (an older server): results carry the output, as before. */
  private unsupported = false;
  private turn = 0;
  readonly done: Promise<void>;

  constructor(private readonly opts: LogStreamerOptions) {
    this.everyMs = opts.everyMs ?? 250;
    this.window = opts.window ?? 1024 * 1024;
    this.maxBatchBytes = Math.max(1, Math.min(opts.maxBatchBytes ?? MAX_LOG_CHUNK_BYTES, MAX_LOG_CHUNK_BYTES));
    this.done = this.loop();
  }

  /** Starts sending an attempt's output; it is named `<jobId>#<attempt>` from then on. */
  add(a: StreamedAttempt): void {
    if (this.stopped) return;
    this.tracked.set(`${a.jobId}#${a.attempt}`, {
      a,
      sent: { stdout: 0, stderr: 0 },
      skipped: { stdout: 0, stderr: 0 },
      notBefore: Date.now() + this.everyMs,
      retryAt: 0,
      failures: 0,
      dropped: false,
      flushes: [],
    });
    this.wake();
  }

  /** Stops sending an attempt's output (it was abandoned, or its result is in). */
  remove(key: string): void {
    const t = this.tracked.get(key);
    if (!t) return;
    this.tracked.delete(key);
    t.dropped = true;
    if (t.skipped.stdout + t.skipped.stderr > 0) {
      this.opts.log?.('info', 'live log skipped output it could not keep up with (the result carries the end)', {
        job: t.a.jobId,
        attempt: t.a.attempt,
        skippedStdout: t.skipped.stdout,
        skippedStderr: t.skipped.stderr,
      });
    }
    for (const f of t.flushes.splice(0)) f();
  }

  /**
   * Resolves once the attempt's output has all reached the server (call it
   * when its process has ended), or once that cannot be done now: then the
   * result's tails bring what is missing. Output that nothing was sent of yet
   * and that fits in the result goes with the result alone.
   */
  async flush(key: string): Promise<void> {
    const t = this.tracked.get(key);
    if (!t || t.dropped || this.unsupported) return;
    if (t.sent.stdout === 0 && t.sent.stderr === 0) {
      const [out, err] = await Promise.all(STREAMS.map((s) => sizeOf(t.a.files[s])));
      if (out! + err! <= INLINE_LOG_BYTES) return;
    }
    t.notBefore = 0;
    t.retryAt = 0;
    await new Promise<void>((resolve) => {
      t.flushes.push(resolve);
      this.wake();
    });
  }

  stop(): void {
    this.stopped = true;
    for (const key of [...this.tracked.keys()]) this.remove(key);
    this.wake();
  }

  private wake(): void {
    const w = this.wakeUp;
    this.wakeUp = undefined;
    if (w) w();
    else this.woken = true;
  }

  private sleep(ms: number): Promise<void> {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wakeUp = undefined;
        resolve();
      }, ms);
      // Waiting for output never keeps the process alive by itself.
      timer.unref();
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private flushing(): boolean {
    for (const t of this.tracked.values()) if (t.flushes.length > 0 && t.retryAt <= Date.now()) return true;
    return false;
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      if (this.tracked.size === 0 || this.unsupported) {
        await this.sleep(60_000);
        continue;
      }
      const began = Date.now();
      let sent = false;
      try {
        sent = await this.round();
      } catch (err) {
        this.opts.log?.('warn', 'live log round failed', { error: String((err as Error)?.stack ?? err) });
      }
      if (this.stopped) break;
      if (this.flushing()) continue;
      await this.sleep(Math.max(sent ? 0 : 10, this.everyMs - (Date.now() - began)));
    }
  }

  /** Reads and sends one batch; false when there was nothing to send. */
  private async round(): Promise<boolean> {
    const now = Date.now();
    const ready = [...this.tracked.values()].filter((t) => !t.dropped && t.retryAt <= now && (t.notBefore <= now || t.flushes.length > 0));
    if (ready.length === 0) return false;
    // Attempts that wait to report go first; the rest take turns at being first.
    this.turn = (this.turn + 1) % ready.length;
    const order = [...ready.slice(this.turn), ...ready.slice(0, this.turn)].sort((x, y) => Number(y.flushes.length > 0) - Number(x.flushes.length > 0));
    // A flush asked for while this round reads is answered by a later round: this one may have read the
    // files' sizes before the output the flush is waiting for.
    const asked = new Map(order.map((t) => [t, t.flushes.length]));
    const answer = (t: Tracked) => {
      for (const f of t.flushes.splice(0, asked.get(t) ?? 0)) f();
    };
    const workerId = order[0]!.a.workerId;
    const chunks: LogChunk[] = [];
    const from: { t: Tracked; stream: Stream; end: number }[] = [];
    const complete: Tracked[] = [];
    let budget = this.maxBatchBytes;
    for (const t of order) {
      if (t.a.workerId !== workerId) continue;
      let whole = true;
      for (const stream of STREAMS) {
        const size = await sizeOf(t.a.files[stream]);
        if (size < t.sent[stream]) t.sent[stream] = size; // the job cut its own output short
        if (size - t.sent[stream] > this.window) {
          const skip = size - this.window - t.sent[stream];
          t.skipped[stream] += skip;
          t.sent[stream] += skip;
          // A job that writes faster than anyone reads gets a window a second, not one per round:
          // each skip is a new stretch of log for the server to start.
          t.notBefore = now + CHATTY_EVERY_MS;
        }
        const want = size - t.sent[stream];
        if (want === 0) continue;
        const n = Math.min(want, budget);
        if (n < want) whole = false;
        if (n === 0) continue;
        const data = await readAt(t.a.files[stream], t.sent[stream], n);
        if (data.length === 0) continue;
        chunks.push({ jobId: t.a.jobId, attempt: t.a.attempt, stream, offset: t.sent[stream], data: data.toString('base64') });
        from.push({ t, stream, end: t.sent[stream] + data.length });
        budget -= data.length;
      }
      if (whole) complete.push(t);
    }
    if (chunks.length === 0) {
      // Nothing new: whoever waited for the rest to go has it there.
      for (const t of complete) answer(t);
      return false;
    }
    let reply: LogChunksReply;
    try {
      reply = await this.opts.send(workerId, { chunks });
    } catch (err) {
      this.failed(err, from.map((f) => f.t));
      return true;
    }
    const refused = new Set<Tracked>();
    reply.results.forEach((r, i) => {
      const { t, stream, end } = from[i]!;
      if ('error' in r) {
        refused.add(t);
        if (GONE.has(r.error.code)) {
          this.opts.log?.('info', 'live log refused: the attempt is not this worker\'s anymore', { job: t.a.jobId, attempt: t.a.attempt, code: r.error.code });
          this.remove(keyOf(t));
        } else this.backOff(t, r.error.code);
        return;
      }
      t.failures = 0;
      // The server says where it stands: past what was sent (a repeat), or short of it (it lost some), it is believed.
      t.sent[stream] = Math.max(0, Math.min(r.end, end + this.window));
    });
    // Attempts whose output all went: whoever waits to report may go on.
    for (const t of complete) if (!refused.has(t)) answer(t);
    return true;
  }

  private failed(err: unknown, ts: Tracked[]): void {
    const code = err instanceof ApiError ? err.code : 'INTERNAL';
    const status = err instanceof ApiError ? err.status : 0;
    if (code === 'ROUTE_NOT_FOUND' || code === 'METHOD_NOT_ALLOWED') {
      this.unsupported = true;
      this.opts.log?.('info', 'the server does not take live logs; output goes with results only');
      for (const key of [...this.tracked.keys()]) {
        const t = this.tracked.get(key)!;
        for (const f of t.flushes.splice(0)) f();
      }
      return;
    }
    if (code === 'BODY_TOO_LARGE' && this.maxBatchBytes > 4096) {
      // A server with a smaller body limit: smaller batches.
      this.maxBatchBytes = Math.max(4096, Math.floor(this.maxBatchBytes / 4));
      this.opts.log?.('info', 'live log batch too large for the server; sending smaller ones', { maxBatchBytes: this.maxBatchBytes });
      return;
    }
    if (status >= 400 && status < 500 && status !== 429 && code !== 'TIMEOUT' && code !== 'UNREACHABLE' && code !== 'BAD_RESPONSE') {
      // Refused whole (the registration is gone, say): these attempts' output goes with their results.
      this.opts.log?.('warn', 'live log refused', { code, error: (err as Error).message });
      for (const t of new Set(ts)) this.remove(keyOf(t));
      return;
    }
    for (const t of new Set(ts)) this.backOff(t, code);
  }

  /** Not now: after a pause that grows with each failure; whoever waits to report goes on without it. */
  private backOff(t: Tracked, code: string): void {
    t.failures++;
    t.retryAt = Date.now() + Math.min(30_000, this.everyMs * 2 ** Math.min(t.failures, 8));
    if (t.failures === 1) this.opts.log?.('debug', 'live log not delivered; trying later', { job: t.a.jobId, attempt: t.a.attempt, code });
    for (const f of t.flushes.splice(0)) f();
  }
}

function keyOf(t: Tracked): string {
  return `${t.a.jobId}#${t.a.attempt}`;
}

async function sizeOf(fh: FileHandle): Promise<number> {
  try {
    return (await fh.stat()).size;
  } catch {
    return 0;
  }
}

async function readAt(fh: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return buf.subarray(0, got);
}
