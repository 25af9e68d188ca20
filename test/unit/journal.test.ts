import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Journal, JournalCorruptError, segmentFileName } from '../../src/persistence/journal.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cpc-journal-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

let n = 0;
function freshDir(): string {
  return path.join(root, `j${++n}`);
}

async function replay(dir: string, fromSegment = 1, warnings: string[] = []) {
  const records: unknown[] = [];
  const opened = await Journal.open({
    dir,
    fromSegment,
    onRecord: (r) => records.push(r),
    log: (m) => warnings.push(m),
  });
  return { ...opened, records, warnings };
}

function segmentPath(dir: string, segment: number): string {
  return path.join(dir, segmentFileName(segment));
}

describe('Journal', () => {
  it('commits concurrent appends in groups and replays them in order', async () => {
    const dir = freshDir();
    const fsyncs: number[] = [];
    const { journal } = await Journal.open({ dir, onFsync: (_ms, records) => fsyncs.push(records) });
    const N = 1000;
    await Promise.all(Array.from({ length: N }, (_, i) => journal.append({ i, pad: 'x'.repeat(i % 50) })));
    const stats = journal.stats();
    assert.equal(stats.records, N);
    assert.ok(stats.fsyncs < N / 10, `expected group commit, got ${stats.fsyncs} fsyncs for ${N} records`);
    assert.equal(fsyncs.length, stats.fsyncs);
    assert.equal(
      fsyncs.reduce((a, b) => a + b, 0),
      N,
    );
    assert.equal(stats.bytes, fs.statSync(segmentPath(dir, 1)).size);
    await journal.close();

    const r = await replay(dir);
    assert.equal(r.replayed, N);
    assert.deepEqual(
      r.records.map((x) => (x as { i: number }).i),
      Array.from({ length: N }, (_, i) => i),
    );
    assert.equal(r.truncated, false);
    await r.journal.close();
  });

  it('batches appends made while a write is in flight into one write', async () => {
    const dir = freshDir();
    const { journal } = await Journal.open({ dir });
    const first = journal.append({ k: 0 });
    await new Promise((r) => setImmediate(r)); // the first write is now under way
    const rest = Array.from({ length: 50 }, (_, i) => journal.append({ k: i + 1 }));
    await Promise.all([first, ...rest]);
    assert.equal(journal.stats().fsyncs, 2);
    await journal.close();
  });

  it('serialises records when appended, not when written', async () => {
    const dir = freshDir();
    const { journal } = await Journal.open({ dir });
    const rec = { v: 1 };
    const p = journal.append(rec);
    rec.v = 2;
    await p;
    await journal.close();
    const r = await replay(dir);
    assert.deepEqual(r.records, [{ v: 1 }]);
    await r.journal.close();
  });

  it('cuts off a torn tail, warns, and keeps working', async () => {
    const dir = freshDir();
    const { journal } = await Journal.open({ dir });
    for (let i = 0; i < 10; i++) await journal.append({ i });
    await journal.close();
    const file = segmentPath(dir, 1);
    const size = fs.statSync(file).size;
    fs.truncateSync(file, size - 3);

    const r = await replay(dir);
    assert.equal(r.replayed, 9);
    assert.equal(r.truncated, true);
    assert.equal(r.warnings.length, 1);
    assert.match(r.warnings[0]!, /journal-000001\.log/);
    assert.match(r.warnings[0]!, /torn payload/);
    assert.ok(fs.statSync(file).size < size - 3, 'file truncated to the last good record');
    await r.journal.append({ i: 'after' });
    await r.journal.close();

    const again = await replay(dir);
    assert.deepEqual(again.records, [...Array.from({ length: 9 }, (_, i) => ({ i })), { i: 'after' }]);
    assert.deepEqual(again.warnings, []);
    await again.journal.close();
  });

  it('cuts off a torn frame header', async () => {
    const dir = freshDir();
    const { journal } = await Journal.open({ dir });
    await journal.append({ a: 1 });
    await journal.close();
    fs.appendFileSync(segmentPath(dir, 1), Buffer.from([5, 0, 0]));
    const r = await replay(dir);
    assert.deepEqual(r.records, [{ a: 1 }]);
    assert.match(r.warnings[0]!, /torn frame header/);
    await r.journal.close();
  });

  it('stops before a checksum mismatch in the middle of the last segment', async () => {
    const dir = freshDir();
    const { journal } = await Journal.open({ dir });
    const offsets: number[] = [];
    for (let i = 0; i < 10; i++) {
      offsets.push(journal.currentSegmentBytes());
      await journal.append({ i, text: 'hello' });
    }
    await journal.close();
    const file = segmentPath(dir, 1);
    const buf = fs.readFileSync(file);
    buf[offsets[5]! + 12] ^= 0x01; // inside the payload of record 5
    fs.writeFileSync(file, buf);

    const r = await replay(dir);
    assert.deepEqual(
      r.records.map((x) => (x as { i: number }).i),
      [0, 1, 2, 3, 4],
    );
    assert.match(r.warnings[0]!, new RegExp(`checksum mismatch at offset ${offsets[5]}`));
    assert.equal(fs.statSync(file).size, offsets[5]);
    await r.journal.close();
  });

  it('refuses to skip damage in a segment followed by one holding records', async () => {
    const dir = freshDir();
    const { journal } = await Journal.open({ dir });
    await journal.append({ seg: 1, i: 0 });
    await journal.append({ seg: 1, i: 1 });
    journal.rotate();
    await journal.append({ seg: 2 });
    await journal.close();
    const file = segmentPath(dir, 1);
    const buf = fs.readFileSync(file);
    buf[buf.length - 2] ^= 0xff;
    fs.writeFileSync(file, buf);
    await assert.rejects(replay(dir), (err: unknown) => err instanceof JournalCorruptError && err.file === file);
    assert.equal(fs.readFileSync(file).length, buf.length, 'left untouched');
  });

  it('treats damage before only empty segments as a torn tail', async () => {
    const dir = freshDir();
    const { journal } = await Journal.open({ dir });
    await journal.append({ i: 0 });
    await journal.append({ i: 1 });
    assert.equal(journal.rotate(), 2);
    await journal.close();
    const file = segmentPath(dir, 1);
    fs.truncateSync(file, fs.statSync(file).size - 1);
    const r = await replay(dir);
    assert.deepEqual(r.records, [{ i: 0 }]);
    assert.equal(r.journal.segment, 2);
    await r.journal.close();
  });

  it('rotates, keeps buffered records in the old segment, and removes old segments', async () => {
    const dir = freshDir();
    const { journal } = await Journal.open({ dir });
    await journal.append({ s: 1, i: 0 });
    const pending = [journal.append({ s: 1, i: 1 }), journal.append({ s: 1, i: 2 })];
    const next = journal.rotate();
    assert.equal(next, 2);
    assert.equal(journal.currentSegmentBytes(), 0);
    pending.push(journal.append({ s: 2, i: 3 }));
    await Promise.all(pending);
    assert.ok(fs.existsSync(segmentPath(dir, 2)));

    const seg2 = await replay(dir, 2);
    assert.deepEqual(seg2.records, [{ s: 2, i: 3 }]);
    await seg2.journal.close();
    const all = await replay(dir, 1);
    assert.deepEqual(
      all.records.map((x) => (x as { i: number }).i),
      [0, 1, 2, 3],
    );
    await all.journal.close();

    await assert.rejects(journal.removeSegmentsBefore(3), RangeError);
    await journal.removeSegmentsBefore(next);
    assert.ok(!fs.existsSync(segmentPath(dir, 1)));
    assert.ok(fs.existsSync(segmentPath(dir, 2)));
    await journal.close();
  });

  it('refuses to replay from a segment that was removed', async () => {
    const dir = freshDir();
    const { journal } = await Journal.open({ dir });
    await journal.append({ a: 1 });
    const next = journal.rotate();
    await journal.append({ a: 2 });
    await journal.removeSegmentsBefore(next);
    await journal.close();
    await assert.rejects(replay(dir, 1), JournalCorruptError);
    const r = await replay(dir, next);
    assert.deepEqual(r.records, [{ a: 2 }]);
    await r.journal.close();
  });

  it('persists appendNoWait records by the time a later append resolves', async () => {
    const dir = freshDir();
    const { journal } = await Journal.open({ dir });
    journal.appendNoWait({ lease: 1 });
    journal.appendNoWait({ lease: 2 });
    await journal.append({ done: true });
    journal.appendNoWait({ lease: 3 });
    await journal.close();
    const r = await replay(dir);
    assert.deepEqual(r.records, [{ lease: 1 }, { lease: 2 }, { done: true }, { lease: 3 }]);
    await r.journal.close();
  });

  it('flushes appendNoWait on its own', async () => {
    const dir = freshDir();
    const { journal } = await Journal.open({ dir });
    journal.appendNoWait({ lease: 1 });
    for (let i = 0; i < 200 && journal.stats().records < 1; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(journal.stats().records, 1);
    await journal.close();
  });

  it('close is idempotent and later appends are refused', async () => {
    const dir = freshDir();
    const { journal } = await Journal.open({ dir });
    const p = journal.append({ x: 1 });
    const c1 = journal.close();
    const c2 = journal.close();
    await Promise.all([p, c1, c2]);
    await journal.close();
    await assert.rejects(journal.append({ x: 2 }), /closed/);
    assert.throws(() => journal.appendNoWait({ x: 3 }), /closed/);
    assert.throws(() => journal.rotate(), /closed/);
    const r = await replay(dir);
    assert.deepEqual(r.records, [{ x: 1 }]);
    await r.journal.close();
  });

  it('rejects records that are not JSON', async () => {
    const { journal } = await Journal.open({ dir: freshDir() });
    await assert.rejects(journal.append(undefined), TypeError);
    await assert.rejects(journal.append({ n: 1n }), TypeError);
    await journal.append({ ok: true });
    await journal.close();
  });

  it('fails every pending append after a write error and accepts no more', async (t) => {
    if (!fs.existsSync('/dev/full')) return t.skip('no /dev/full to simulate a full disk');
    const dir = freshDir();
    fs.mkdirSync(dir);
    fs.symlinkSync('/dev/full', segmentPath(dir, 1));
    const logs: string[] = [];
    const { journal } = await Journal.open({ dir, log: (m) => logs.push(m) });
    const results = await Promise.allSettled([journal.append({ a: 1 }), journal.append({ a: 2 })]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['rejected', 'rejected'],
    );
    assert.match(String((results[0] as PromiseRejectedResult).reason), /ENOSPC/);
    await assert.rejects(journal.append({ a: 3 }), /write failed/);
    assert.throws(() => journal.appendNoWait({ a: 4 }), /write failed/);
    assert.ok(logs.some((m) => /write failed/.test(m)));
    await journal.close();
  });

  it('replays a large journal quickly', async () => {
    const dir = freshDir();
    const { journal } = await Journal.open({ dir });
    const N = 200_000;
    const batch: Promise<void>[] = [];
    for (let i = 0; i < N; i++) {
      batch.push(journal.append({ t: 'lease', job: i, at: 1700000000000 + i }));
      if (batch.length === 20_000) await Promise.all(batch.splice(0));
    }
    await Promise.all(batch);
    await journal.close();
    let count = 0;
    let last = -1;
    const start = performance.now();
    const opened = await Journal.open({
      dir,
      onRecord: (r) => {
        count++;
        last = (r as { job: number }).job;
      },
    });
    const ms = performance.now() - start;
    await opened.journal.close();
    assert.equal(count, N);
    assert.equal(last, N - 1);
    assert.ok(ms < 5000, `replay of ${N} records took ${ms.toFixed(0)} ms`);
  });
});
