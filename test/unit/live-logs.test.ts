/**
 * How the log store keeps a stream whose chunks arrive while the attempt
 * runs: by offset (a repeat changes nothing, an overlap adds only what is
 * new), a gap starts the kept part anew, the kept part stays within its
 * window, reads count offsets from the stream's start, and the result's
 * tails fill in without doubling what the chunks brought.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { planAppend } from '../../src/server/files/live-logs.js';
import { LogStore } from '../../src/server/files/log-store.js';
import { logChunksSchema } from '../../src/server/jobs/schemas.js';

const JOB = '0190a0b0-0000-7000-8000-0000000000ab';
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function store(window = 1024 * 1024): { logs: LogStore; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'cpc-live-logs-'));
  dirs.push(dir);
  return { logs: new LogStore(dir, window), dir };
}

const b = (s: string) => Buffer.from(s);

describe('planAppend', () => {
  it('appends a chunk that begins at the end', () => {
    assert.deepEqual(planAppend({ start: 0, end: 10 }, 10, 5, 100), { drop: 0, take: 5, gap: 0 });
  });
  it('takes nothing of a chunk stored already, and only the new bytes of one that overlaps', () => {
    assert.deepEqual(planAppend({ start: 0, end: 10 }, 0, 10, 100), { drop: 10, take: 0, gap: 0 });
    assert.deepEqual(planAppend({ start: 0, end: 10 }, 4, 3, 100), { drop: 3, take: 0, gap: 0 });
    assert.deepEqual(planAppend({ start: 0, end: 10 }, 8, 5, 100), { drop: 2, take: 3, gap: 0 });
  });
  it('counts a gap and starts the kept part anew at the chunk', () => {
    assert.deepEqual(planAppend({ start: 0, end: 10 }, 30, 5, 100), { drop: 0, take: 5, gap: 20, restartAt: 30 });
    // Of a chunk longer than the window, only its end is worth keeping.
    assert.deepEqual(planAppend({ start: 0, end: 10 }, 30, 150, 100), { drop: 50, take: 100, gap: 20, restartAt: 80 });
  });
  it('keeps the last window once the kept part passes twice the window', () => {
    assert.deepEqual(planAppend({ start: 0, end: 195 }, 195, 5, 100), { drop: 0, take: 5, gap: 0 });
    assert.deepEqual(planAppend({ start: 0, end: 195 }, 195, 10, 100), { drop: 0, take: 10, gap: 0, restartAt: 105 });
  });
});

describe('LogStore with live chunks', () => {
  it('stores chunks by offset: in order, repeated, overlapping', async () => {
    const { logs } = store();
    assert.deepEqual(await logs.append(JOB, 1, 'stdout', 0, b('hello ')), { start: 0, end: 6, gap: 0 });
    assert.deepEqual(await logs.append(JOB, 1, 'stdout', 0, b('hello ')), { start: 0, end: 6, gap: 0 });
    assert.deepEqual(await logs.append(JOB, 1, 'stdout', 3, b('lo world\n')), { start: 0, end: 12, gap: 0 });
    assert.equal(await logs.read(JOB, 1, 'stdout'), 'hello world\n');
    assert.equal(await logs.read(JOB, 1, 'stderr'), null);
    const part = await logs.readPart(JOB, 1, 'stdout', { offset: 6 });
    assert.deepEqual(part, { text: 'world\n', offset: 6, end: 12, size: 12, start: 0 });
  });

  it('many chunks of one stream at once are stored in their order', async () => {
    const { logs } = store();
    const text = Array.from({ length: 200 }, (_, i) => `line ${i}\n`).join('');
    const bytes = b(text);
    const cuts: [number, number][] = [];
    for (let at = 0; at < bytes.length; at += 37) cuts.push([at, Math.min(bytes.length, at + 37)]);
    // Sent twice, the second time all at once: nothing doubles.
    for (const [s, e] of cuts) await logs.append(JOB, 2, 'stdout', s, bytes.subarray(s, e));
    await Promise.all(cuts.map(([s, e]) => logs.append(JOB, 2, 'stdout', s, bytes.subarray(s, e))));
    assert.equal(await logs.read(JOB, 2, 'stdout'), text);
  });

  it('records a gap: the kept part starts at the chunk, and reads say so', async () => {
    const { logs } = store();
    await logs.append(JOB, 1, 'stdout', 0, b('early\n'));
    const kept = await logs.append(JOB, 1, 'stdout', 1000, b('late\n'));
    assert.deepEqual(kept, { start: 1000, end: 1005, gap: 994 });
    const part = await logs.readPart(JOB, 1, 'stdout', { offset: 0 });
    assert.deepEqual(part, { text: 'late\n', offset: 1000, end: 1005, size: 1005, start: 1000 });
    assert.deepEqual(await logs.readPart(JOB, 1, 'stdout', { tail: 2 }), { text: 'e\n', offset: 1003, end: 1005, size: 1005, start: 1000 });
    // A chunk from before the gap changes nothing.
    assert.deepEqual(await logs.append(JOB, 1, 'stdout', 6, b('middle\n')), { start: 1000, end: 1005, gap: 0 });
  });

  it('keeps a bounded window of a long stream, and a fresh store finds it where it was', async () => {
    const { logs, dir } = store(100);
    let text = '';
    for (let i = 0; i < 100; i++) {
      const line = `${String(i).padStart(4, '0')}\n`;
      await logs.append(JOB, 1, 'stdout', text.length, b(line));
      text += line;
    }
    const kept = await logs.kept(JOB, 1, 'stdout');
    assert.ok(kept);
    assert.equal(kept.end, text.length);
    assert.ok(kept.end - kept.start >= 100 && kept.end - kept.start <= 200, `kept ${kept.end - kept.start} bytes`);
    assert.equal(await logs.read(JOB, 1, 'stdout'), text.slice(kept.start));
    await logs.close();
    const files = readdirSync(join(dir, JOB.slice(-2), JOB));
    assert.deepEqual(files, [`1.stdout@${kept.start}`], 'one file, named after where it begins');
    const again = new LogStore(dir, 100);
    assert.deepEqual(await again.kept(JOB, 1, 'stdout'), { start: kept.start, end: kept.end });
    assert.deepEqual(await again.append(JOB, 1, 'stdout', text.length, b('more\n')), { start: kept.start, end: text.length + 5, gap: 0 });
  });

  it('picks the newer file when a restart of the window was interrupted, and drops the older', async () => {
    const { logs, dir } = store(100);
    const folder = join(dir, JOB.slice(-2), JOB);
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, '1.stdout'), 'x'.repeat(250));
    writeFileSync(join(folder, '1.stdout@150'), 'x'.repeat(100));
    assert.deepEqual(await logs.kept(JOB, 1, 'stdout'), { start: 150, end: 250 });
    assert.deepEqual(readdirSync(folder), ['1.stdout@150']);
  });

  it("a result's tails fill in what the chunks did not bring, and repeat nothing they did", async () => {
    const { logs } = store();
    await logs.append(JOB, 1, 'stdout', 0, b('one\ntwo\n'));
    // The worker's tail is the last 8 bytes of 12: 4 of them are new.
    await logs.complete(JOB, 1, 'stdout', 'two\nthr\n', 12);
    assert.equal(await logs.read(JOB, 1, 'stdout'), 'one\ntwo\nthr\n');
    // A result from a worker that did not stream: all of it.
    await logs.complete(JOB, 1, 'stderr', 'warning\n', 8);
    assert.equal(await logs.read(JOB, 1, 'stderr'), 'warning\n');
    // An empty stream is an empty log, not a missing one.
    await logs.complete(JOB, 2, 'stderr', '', 0);
    assert.equal(await logs.read(JOB, 2, 'stderr'), '');
    // A tail of a stream longer than it: kept from where it begins.
    await logs.complete(JOB, 3, 'stdout', 'end\n', 1000);
    assert.deepEqual(await logs.readPart(JOB, 3, 'stdout', {}), { text: 'end\n', offset: 996, end: 1000, size: 1000, start: 996 });
    await logs.sync(JOB, 1);
  });

  it('ends a read of a growing log before a character whose last bytes have not arrived', async () => {
    const { logs } = store();
    const euro = b('€'); // 3 bytes
    await logs.append(JOB, 5, 'stdout', 0, Buffer.concat([b('price: '), euro.subarray(0, 2)]));
    const first = await logs.readPart(JOB, 5, 'stdout', { offset: 0 }, true);
    assert.deepEqual(first, { text: 'price: ', offset: 0, end: 7, size: 9, start: 0 });
    await logs.append(JOB, 5, 'stdout', 9, Buffer.concat([euro.subarray(2), b('5\n')]));
    const next = await logs.readPart(JOB, 5, 'stdout', { offset: first!.end }, true);
    assert.deepEqual(next, { text: '€5\n', offset: 7, end: 12, size: 12, start: 0 });
  });

  it('waits for more output, and stops waiting when told', async () => {
    const { logs } = store();
    await logs.append(JOB, 1, 'stdout', 0, b('a'));
    const ctl = new AbortController();
    const waited = logs.waitFor(JOB, 1, 'stdout', 1, 60_000, ctl.signal, () => true);
    await logs.append(JOB, 1, 'stdout', 1, b('b'));
    await waited;
    assert.equal(await logs.read(JOB, 1, 'stdout'), 'ab');
    let running = true;
    const stopped = logs.waitFor(JOB, 1, 'stdout', 2, 60_000, ctl.signal, () => running);
    running = false;
    await stopped;
  });
});

describe('logChunksSchema', () => {
  const chunk = (offset: number, bytes: number) => ({ jobId: JOB, attempt: 1, stream: 'stdout', offset, data: Buffer.alloc(bytes).toString('base64') });
  it('takes up to 256 KiB of output in one request, and refuses more with LOG_TOO_LARGE', () => {
    assert.ok(logChunksSchema.safeParse({ chunks: [chunk(0, 128 * 1024), chunk(128 * 1024, 128 * 1024)] }).success);
    const over = logChunksSchema.safeParse({ chunks: [chunk(0, 150_000), chunk(150_000, 150_000)] });
    assert.ok(!over.success);
    assert.ok(over.error.issues.some((i) => (i as { params?: { code?: string } }).params?.code === 'LOG_TOO_LARGE'));
  });
});
