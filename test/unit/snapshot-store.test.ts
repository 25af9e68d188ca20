import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readLatestSnapshot, snapshotFileName, writeSnapshot } from '../../src/persistence/snapshot-store.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cpc-snapshot-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

let n = 0;
function freshDir(): string {
  return path.join(root, `s${++n}`);
}

function flipByte(file: string, fromEnd: number): void {
  const buf = fs.readFileSync(file);
  buf[buf.length - fromEnd] ^= 0x01;
  fs.writeFileSync(file, buf);
}

describe('snapshot store', () => {
  it('round-trips big data and keeps only the newest snapshot', async () => {
    const dir = freshDir();
    const jobs = Array.from({ length: 100_000 }, (_, i) => ({ id: `job-${i}`, state: 'queued', args: ['-n', i] }));
    await writeSnapshot(dir, { version: 1, jobs: jobs.slice(0, 10) }, 3);
    await writeSnapshot(dir, { version: 1, jobs }, 7);
    assert.deepEqual(fs.readdirSync(dir), [snapshotFileName(7)]);
    assert.equal(fs.statSync(path.join(dir, snapshotFileName(7))).mode & 0o777, 0o600);
    const snap = await readLatestSnapshot(dir);
    assert.ok(snap);
    assert.equal(snap.segment, 7);
    assert.ok(Math.abs(snap.at - Date.now()) < 60_000);
    assert.deepEqual(snap.data, { version: 1, jobs });
  });

  it('serialises the data before returning, so later changes are not included', async () => {
    const dir = freshDir();
    const state = { counter: 1 };
    const written = writeSnapshot(dir, state, 2);
    state.counter = 2;
    await written;
    assert.deepEqual((await readLatestSnapshot(dir))?.data, { counter: 1 });
  });

  it('returns null when there is no snapshot', async () => {
    assert.equal(await readLatestSnapshot(freshDir()), null);
  });

  it('falls back to an older snapshot when the newest is damaged', async () => {
    const dir = freshDir();
    await writeSnapshot(dir, { which: 'old' }, 2);
    // Keep a copy of the old one, as a crash between writing the new one and deleting the old would.
    const oldFile = path.join(dir, snapshotFileName(2));
    const oldCopy = fs.readFileSync(oldFile);
    await writeSnapshot(dir, { which: 'new' }, 5);
    fs.writeFileSync(oldFile, oldCopy);
    flipByte(path.join(dir, snapshotFileName(5)), 3);

    const warnings: string[] = [];
    const snap = await readLatestSnapshot(dir, { log: (m) => warnings.push(m) });
    assert.deepEqual(snap, { segment: 2, at: snap?.at, data: { which: 'old' } });
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /snapshot-000005\.json: checksum mismatch/);
  });

  it('returns null when the only snapshot is damaged or truncated', async () => {
    const dir = freshDir();
    await writeSnapshot(dir, { a: [1, 2, 3] }, 4);
    const file = path.join(dir, snapshotFileName(4));
    fs.truncateSync(file, fs.statSync(file).size - 1);
    const warnings: string[] = [];
    assert.equal(await readLatestSnapshot(dir, { log: (m) => warnings.push(m) }), null);
    assert.match(warnings[0]!, /body is \d+ bytes/);
  });

  it('removes temporary files left by a crash', async () => {
    const dir = freshDir();
    await writeSnapshot(dir, { a: 1 }, 2);
    const tmp = path.join(dir, `${snapshotFileName(2)}.tmp-deadbeef`);
    fs.writeFileSync(tmp, 'partial');
    assert.deepEqual((await readLatestSnapshot(dir))?.data, { a: 1 });
    assert.ok(!fs.existsSync(tmp));
  });
});
