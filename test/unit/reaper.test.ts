/**
 * What a worker starting on a work dir does with the `.running-…` records a
 * previous one left: kills their processes and removes their folders when
 * that worker is gone, leaves them alone while it runs, and removes no folder
 * a record names outside the work dir.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { procInfo } from '../../src/worker/isolation.js';
import { cleanLeftovers, type AttemptRecord } from '../../src/worker/reaper.js';

const dirs: string[] = [];
const pids: number[] = [];
after(() => {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'cpc-reaper-'));
  dirs.push(d);
  return d;
}

function alive(pid: number): boolean {
  const p = procInfo(pid);
  return p !== undefined && p.state !== 'Z';
}

/** A `sleep` leading a process group of its own, as the runner starts jobs. */
function job(): number {
  const child = spawn('sleep', ['300'], { detached: true, stdio: 'ignore' });
  child.unref();
  pids.push(child.pid!);
  return child.pid!;
}

/** A pid whose process has exited. */
function deadPid(): number {
  return spawnSync('true').pid!;
}

function record(workDir: string, pid: number, workerPid: number, over: Partial<AttemptRecord> = {}): AttemptRecord {
  const rec: AttemptRecord = {
    jobId: 'j1',
    attempt: 1,
    pid,
    start: procInfo(pid)!.start,
    level: 'none',
    workerPid,
    dir: join(workDir, 'j1-1'),
    ...over,
  };
  mkdirSync(rec.dir, { recursive: true });
  writeFileSync(join(workDir, `.running-${rec.jobId}-${rec.attempt}`), JSON.stringify(rec));
  return rec;
}

async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
  return !alive(pid);
}

describe('cleaning a work dir at start', () => {
  it('kills what an attempt of a dead worker runs and removes its folder and record', async () => {
    const workDir = tmp();
    const pid = job();
    const rec = record(workDir, pid, deadPid());
    assert.equal(await cleanLeftovers(workDir), 1);
    assert.ok(await gone(pid), 'the job is killed');
    assert.equal(existsSync(rec.dir), false);
    assert.equal(existsSync(join(workDir, '.running-j1-1')), false);
  });

  it('leaves alone the attempts of a worker that still runs', async () => {
    const workDir = tmp();
    const pid = job();
    const rec = record(workDir, pid, process.pid);
    assert.equal(await cleanLeftovers(workDir), 0);
    assert.ok(alive(pid));
    assert.ok(existsSync(rec.dir));
    assert.ok(existsSync(join(workDir, '.running-j1-1')));
  });

  it('removes no folder a record names outside the work dir', async () => {
    const workDir = tmp();
    const elsewhere = join(tmp(), 'j1-1');
    const pid = job();
    record(workDir, pid, deadPid(), { dir: elsewhere });
    await cleanLeftovers(workDir);
    assert.ok(await gone(pid));
    assert.ok(existsSync(elsewhere), 'a folder outside the work dir stays');
  });

  it('kills no process older than the attempt, whatever its group', async () => {
    const workDir = tmp();
    const older = job();
    // A record whose leader pid names an older process's group: a pid given again after the job's group was gone.
    const younger = job();
    record(workDir, older, deadPid(), { start: String(Number(procInfo(younger)!.start) + 1_000_000) });
    await cleanLeftovers(workDir);
    assert.ok(alive(older), 'a process started before the attempt is not the attempt');
  });
});
