/**
 * A server whose home is on a small filesystem (a tmpfs the test mounts)
 * that fills up: changes are refused with DISK_FULL while reads go on,
 * nothing acknowledged is lost, and the server takes changes again by
 * itself once there is room, without a restart.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, createReadStream, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiError, type ApiClient } from '../../src/client/api/client.js';
import { hashFile } from '../../src/client/api/files.js';
import { cleanup, spawnWorker, startTestServer, until, type TestServer } from '../helpers/server.js';
import { faultsUnavailable } from './netns.js';
import { jobEnded } from './sites.js';

const skip = faultsUnavailable();

/** Fills the filesystem of `dir` to the last byte with one file, and returns its path. */
function fill(dir: string): string {
  const path = join(dir, 'filler');
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(1024 * 1024, 1);
  try {
    for (let size = chunk.length; size >= 1; size = Math.floor(size / 4)) {
      for (;;) {
        try {
          writeSync(fd, chunk, 0, size);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw err;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return path;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return err instanceof ApiError ? err.code : String(err);
  }
}

describe('a server whose disk fills up', { skip: skip ?? false, timeout: 300_000 }, () => {
  let mount: string;
  let home: string;
  let ts: TestServer;
  let admin: ApiClient;

  before(async () => {
    mount = mkdtempSync(join(tmpdir(), 'cpc-fault-disk-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48m,mode=0700', 'tmpfs', mount]);
    home = join(mount, 'home');
    mkdirSync(home, { mode: 0o700 });
    ts = await startTestServer({ home });
    admin = ts.admin;
    await admin.createProject('p');
  });

  after(async () => {
    await cleanup();
    try {
      execFileSync('umount', ['-l', mount]);
    } catch {
      // not mounted
    }
    rmSync(mount, { recursive: true, force: true });
  });

  it('refuses changes with DISK_FULL, keeps reads and what it acknowledged, and takes changes again once there is room', async () => {
    const acknowledged: string[] = [];
    acknowledged.push(...(await admin.submit('p', [{ argv: ['true'] }, { argv: ['true'] }])).ids);

    const filler = fill(mount);
    // A few small records may still fit in the journal file's last page. The first change that
    // does not is caught by the journal and waits for room, unanswered; the ones after it are
    // refused at once.
    const caught: Promise<{ ids: string[] }>[] = [];
    await until(
      'changes to be refused with DISK_FULL',
      async () => {
        const submit = admin.submit('p', [{ argv: ['echo', 'caught'] }]);
        submit.catch(() => {});
        const outcome = await Promise.race([codeOf(submit), new Promise<string>((r) => setTimeout(() => r('waiting'), 2000))]);
        if (outcome === 'ok') acknowledged.push(...(await submit).ids);
        if (outcome === 'waiting') caught.push(submit);
        return outcome === 'DISK_FULL';
      },
      { timeoutMs: 60_000 },
    );
    assert.equal(caught.length, 1, 'one change was caught by the full disk');
    assert.equal(await codeOf(admin.createProject('q')), 'DISK_FULL');

    // Reads go on.
    const listed = await admin.jobs('p');
    for (const id of acknowledged) assert.ok(listed.jobs.some((j) => j.id === id), `job ${id} is listed`);
    assert.equal((await admin.job(acknowledged[0]!)).state, 'queued');

    // An upload is refused the same way, and leaves nothing behind.
    const upload = join(tmpdir(), `cpc-fault-upload-${process.pid}`);
    // Small enough to be sent whole before the answer: a large body refused early meets a closed connection.
    writeFileSync(upload, Buffer.alloc(64 * 1024, 7));
    const sum = await hashFile(upload);
    assert.equal(await codeOf(admin.sendBytes(`/projects/p/files/${sum.sha256}`, createReadStream(upload), sum.size)), 'DISK_FULL');
    assert.deepEqual(readdirSync(join(home, 'files', 'tmp')), [], 'no partial upload is left');
    rmSync(upload);

    // Room again: the caught change is written and answered, and new ones are taken, without a restart.
    rmSync(filler);
    const caughtIds = (await caught[0]!).ids;
    acknowledged.push(...caughtIds);
    const after = await until(
      'changes to be taken again',
      async () => {
        try {
          return await admin.submit('p', [{ argv: ['true'] }]);
        } catch (err) {
          if (err instanceof ApiError && err.code === 'DISK_FULL') return null;
          throw err;
        }
      },
      { timeoutMs: 30_000 },
    );
    acknowledged.push(...after.ids);
    assert.ok((await admin.createProject('q')).name === 'q');

    // Everything acknowledged is on disk: a new server on the same home has it all.
    await ts.server.close();
    const again = await startTestServer({ home });
    for (const id of acknowledged) assert.equal((await again.admin.job(id)).id, id);
    assert.equal((await again.admin.job(caughtIds[0]!)).argv?.join(' '), 'echo caught');
  });

  it('a worker whose work dir is full fails the attempt, lives on, and runs jobs again once there is room', async () => {
    const workMount = mkdtempSync(join(tmpdir(), 'cpc-fault-work-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', workMount]);
    try {
      const fresh = await startTestServer();
      await fresh.admin.createProject('w');
      const token = await fresh.server.createWorkerToken('small-disk');
      const worker = spawnWorker({
        url: fresh.server.url,
        caFile: fresh.caFile(),
        serverId: fresh.server.serverId,
        token,
        name: 'small-disk',
        workDir: join(workMount, 'work'),
        tokenFile: true,
        args: ['--isolation', 'none', '--shared-identity'],
      });
      const ended = (id: string) => jobEnded(fresh.admin, id, 60_000);

      // A job that writes more than the disk holds fails by its own hand (its own complaint may not
      // fit on the disk either), and its folder is removed after it.
      const [big] = (await fresh.admin.submit('w', [{ shell: 'head -c 20000000 /dev/zero > big' }])).ids;
      const bigJob = await ended(big!);
      assert.equal(bigJob.state, 'failed');
      assert.notEqual(bigJob.exitCode, 0);
      // Its folder goes after its result does: the disk is filled only once that room is given back.
      await until('the big job’s folder to be removed', () => !readdirSync(join(workMount, 'work')).some((n) => n.startsWith(big!)), { timeoutMs: 30_000 });

      // A disk filled by something else: the job cannot write its output and fails; the worker lives on.
      const filler = fill(workMount);
      const [blocked] = (await fresh.admin.submit('w', [{ shell: 'echo hello' }])).ids;
      const blockedJob = await ended(blocked!);
      assert.equal(blockedJob.state, 'failed');
      assert.equal(worker.child.exitCode, null, 'the worker lives on');

      // Room again: jobs run.
      rmSync(filler);
      const [ok] = (await fresh.admin.submit('w', [{ shell: 'echo hello' }])).ids;
      const okJob = await ended(ok!);
      assert.equal(okJob.state, 'done', okJob.reason);
      assert.equal(okJob.stdoutTail, 'hello\n');
      await worker.stop('SIGTERM');
    } finally {
      try {
        execFileSync('umount', ['-l', workMount]);
      } catch {
        // not mounted
      }
      rmSync(workMount, { recursive: true, force: true });
    }
  });
});
