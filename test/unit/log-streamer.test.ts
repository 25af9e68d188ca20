/**
 * The worker's live log sender against a real log store (in this process, no
 * HTTP between them): one request at a time, batches within their bound, a
 * stream that falls behind skips ahead and the store sees the gap, a flush
 * sends the rest, short output is left to the result, and an attempt the
 * server refuses is dropped.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { LogChunksReply, LogChunksRequest } from '../../src/core/wire.js';
import { LogStore } from '../../src/server/files/log-store.js';
import { LogStreamer } from '../../src/worker/log-streamer.js';
import { until } from '../helpers/server.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const JOB = '0190a0b0-0000-7000-8000-0000000000cd';

async function setUp(opts: { refuse?: Set<string> } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'cpc-streamer-'));
  dirs.push(dir);
  const store = new LogStore(join(dir, 'logs'), 64 * 1024);
  const requests: LogChunksRequest[] = [];
  let inFlight = 0;
  let most = 0;
  const send = async (_workerId: string, req: LogChunksRequest): Promise<LogChunksReply> => {
    inFlight++;
    most = Math.max(most, inFlight);
    requests.push(req);
    try {
      await new Promise((r) => setTimeout(r, 5));
      const results = await Promise.all(
        req.chunks.map(async (c) => {
          if (opts.refuse?.has(c.jobId)) return { error: { code: 'STALE_ATTEMPT', message: 'not yours' } };
          const kept = await store.append(c.jobId, c.attempt, c.stream, c.offset, Buffer.from(c.data, 'base64'));
          return { end: kept.end };
        }),
      );
      return { results };
    } finally {
      inFlight--;
    }
  };
  const streamer = new LogStreamer({ send, everyMs: 20, window: 64 * 1024, maxBatchBytes: 16 * 1024 });
  const files = async (name: string): Promise<Record<'stdout' | 'stderr', FileHandle>> => ({
    stdout: await open(join(dir, `${name}.out`), 'w+'),
    stderr: await open(join(dir, `${name}.err`), 'w+'),
  });
  return { store, streamer, requests, files, most: () => most };
}

const bytesOf = (req: LogChunksRequest) => req.chunks.reduce((n, c) => n + Buffer.from(c.data, 'base64').length, 0);

describe('LogStreamer', () => {
  it('streams output as it is written, in bounded batches, one request at a time; a flush sends the rest', async () => {
    const { store, streamer, requests, files, most } = await setUp();
    const f = await files('a');
    streamer.add({ jobId: JOB, attempt: 1, workerId: 'w', files: f });
    const first = Buffer.from('x'.repeat(40_000) + '\n');
    await f.stdout.write(first);
    await f.stderr.write('warning\n');
    await until('the output to reach the store', async () => ((await store.kept(JOB, 1, 'stdout'))?.end === first.length ? true : null));
    assert.equal(await store.read(JOB, 1, 'stderr'), 'warning\n');
    assert.ok(requests.length >= 3, `${requests.length} requests for 40 KB in batches of 16 KiB`);
    assert.ok(requests.every((r) => bytesOf(r) <= 16 * 1024));
    assert.equal(most(), 1, 'one request in flight at a time');
    await f.stdout.write('the end\n');
    await streamer.flush(`${JOB}#1`);
    assert.equal(await store.read(JOB, 1, 'stdout'), first.toString() + 'the end\n', 'whole after the flush');
    streamer.stop();
    await f.stdout.close();
    await f.stderr.close();
  });

  it('skips ahead when the output runs more than a window ahead, and the store sees where it resumed', async () => {
    const { store, streamer, requests, files, most } = await setUp();
    const f = await files('b');
    const big = Buffer.alloc(1024 * 1024, 'y');
    await f.stdout.write(big);
    streamer.add({ jobId: JOB, attempt: 2, workerId: 'w', files: f });
    await streamer.flush(`${JOB}#2`);
    const kept = await store.kept(JOB, 2, 'stdout');
    assert.ok(kept);
    assert.equal(kept.end, big.length, 'the stream ends where the file does');
    assert.ok(kept.start >= big.length - 2 * 64 * 1024, `kept from ${kept.start}: no more than the window was sent`);
    const sent = requests.reduce((n, r) => n + bytesOf(r), 0);
    assert.ok(sent <= 64 * 1024, `${sent} bytes sent of a megabyte`);
    assert.equal(most(), 1);
    streamer.stop();
    await f.stdout.close();
    await f.stderr.close();
  });

  it('leaves short output to the result, and drops an attempt the server refuses', async () => {
    const refused = '0190a0b0-0000-7000-8000-0000000000ee';
    const { store, streamer, requests, files } = await setUp({ refuse: new Set([refused]) });
    const short = await files('c');
    await short.stdout.write('hello\n');
    streamer.add({ jobId: JOB, attempt: 3, workerId: 'w', files: short });
    await streamer.flush(`${JOB}#3`);
    assert.equal(requests.length, 0, 'nothing sent: the result carries it');
    assert.equal(await store.kept(JOB, 3, 'stdout'), null);
    // As the worker does once the result is on its way.
    streamer.remove(`${JOB}#3`);

    const gone = await files('d');
    await gone.stdout.write('z'.repeat(10_000));
    streamer.add({ jobId: refused, attempt: 1, workerId: 'w', files: gone });
    await streamer.flush(`${refused}#1`);
    const before = requests.length;
    assert.ok(before >= 1);
    await gone.stdout.write('more');
    // Another attempt's output going through shows that rounds went on meanwhile.
    const other = await files('e');
    await other.stdout.write('w'.repeat(5000));
    streamer.add({ jobId: JOB, attempt: 4, workerId: 'w', files: other });
    await until('the other attempt to stream', async () => ((await store.kept(JOB, 4, 'stdout'))?.end === 5000 ? true : null));
    assert.ok(
      requests.slice(before).every((r) => r.chunks.every((c) => c.jobId !== refused)),
      'nothing more sent for a refused attempt',
    );
    assert.ok(requests.every((r) => r.chunks.every((c) => c.jobId !== JOB || c.attempt !== 3)), 'nothing of the short attempt');
    streamer.stop();
    for (const f of [short, gone, other]) {
      await f.stdout.close();
      await f.stderr.close();
    }
  });
});
