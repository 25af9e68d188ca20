/**
 * No job outlives its worker: real `cpc-worker` processes killed with SIGKILL
 * (alone, or with their whole process group) take every process of their jobs
 * with them, even ones that left the job's session; a worker started again on
 * the same work dir kills what a worker and its reaper both killed at once left.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_UID_LOCKS } from '../../src/worker/isolation.js';
import { cleanup, killAtCleanup, spawnWorker, startTestServer, tempDir, until, type TestServer, type WorkerProcess } from '../helpers/server.js';

after(cleanup);

const FAST = { heartbeatIntervalS: 0.5, leaseS: 1.5, archiveAfterS: 3600 };

/** A number no other test's `sleep` uses: the job's processes are found by it. */
function marker(): number {
  return 40_000 + Math.floor(Math.random() * 20_000);
}

/** Live processes whose command line is `sleep N`. */
function sleepers(n: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'latin1') !== `sleep\0${n}\0`) continue;
      if (/^State:\s+Z/m.test(readFileSync(`/proc/${name}/status`, 'utf8'))) continue;
      out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Processes whose command line holds `text`, and whose parent is `ppid`. */
function childrenWith(ppid: number, text: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (parent === ppid && readFileSync(`/proc/${name}/cmdline`, 'latin1').includes(text)) out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * A job that leaves three `sleep N` behind it in three ways: in its process
 * group, in a session of its own (setsid), and double-forked into a session
 * of its own whose parent is gone.
 */
function leaver(n: number): string {
  return `sleep ${n} & setsid sleep ${n} & (setsid sleep ${n} &); wait`;
}

/** Submits the leaving job and waits for its three sleeps; they are killed at cleanup whatever happens. */
async function runLeaver(ts: TestServer, project: string, n: number): Promise<{ id: string; pids: number[] }> {
  await ts.admin.createProject(project);
  const [id] = (await ts.admin.submit(project, [{ shell: leaver(n) }])).ids as [string];
  const pids = await until(`the job's three sleep ${n}`, () => {
    const p = sleepers(n);
    return p.length === 3 ? p : null;
  }, { timeoutMs: 30_000, intervalMs: 100 });
  for (const pid of pids) killAtCleanup(pid);
  return { id, pids };
}

async function allGone(n: number, what: string): Promise<void> {
  await until(`every sleep ${n} of the job to be gone ${what}`, () => sleepers(n).length === 0, { timeoutMs: 10_000, intervalMs: 100 });
}

/** The isolation levels this machine can test: `user` as root, `none` always. */
const levels: { level: string; args: (dir: string) => string[] }[] = [
  ...(process.getuid?.() === 0 ? [{ level: 'user', args: () => ['--isolation', 'user'] }] : []),
  {
    level: 'none',
    args: (dir: string) => {
      const tokenFile = join(dir, 'token');
      return ['--isolation', 'none', '--shared-identity', '--token-file', tokenFile];
    },
  },
];

/** `none` reads its token from a file (its environment would show it to its jobs); the same token as CPC_WORKER_TOKEN. */
async function startAt(ts: TestServer, level: (typeof levels)[number], name: string, workDir: string): Promise<WorkerProcess> {
  const home = await tempDir('cpc-orphan-token-');
  const args = level.args(home);
  const token = await ts.server.createWorkerToken(name);
  if (args.includes('--token-file')) writeFileSync(join(home, 'token'), token, { mode: 0o600 });
  return spawnWorker({ url: ts.server.url, caFile: ts.caFile(), serverId: ts.server.serverId, token, name, cores: 1, memoryMb: 256, workDir, detached: true, args });
}

describe('no job outlives its worker', () => {
  for (const level of levels) {
    it(`kills the processes of a running job when its worker is killed with SIGKILL (isolation ${level.level})`, async () => {
      const ts = await startTestServer(FAST);
      const n = marker();
      const w = await startAt(ts, level, `w-${level.level}`, await tempDir('cpc-orphan-work-'));
      await runLeaver(ts, 'killed', n);
      const pid = w.child.pid!;
      process.kill(pid, 'SIGKILL');
      assert.equal((await w.stop('SIGKILL')).signal, 'SIGKILL');
      await allGone(n, 'after its worker was killed');
    });

    it(`kills them too when the worker's whole process group is killed (isolation ${level.level})`, async () => {
      const ts = await startTestServer(FAST);
      const n = marker();
      const w = await startAt(ts, level, `g-${level.level}`, await tempDir('cpc-orphan-work-'));
      await runLeaver(ts, 'group', n);
      const pid = w.child.pid!;
      // The worker leads its group; the job's processes are in groups and sessions of their own.
      process.kill(-pid, 'SIGKILL');
      assert.equal((await w.stop('SIGKILL')).signal, 'SIGKILL');
      await allGone(n, "after its worker's process group was killed");
    });
  }

  for (const level of levels) {
    it(`a worker started again on the same work dir kills what a previous one left, and removes its attempt folder (isolation ${level.level})`, async () => {
      const ts = await startTestServer(FAST);
      const n = marker();
      const workDir = await tempDir('cpc-orphan-work-');
      const first = await startAt(ts, level, `first-${level.level}`, workDir);
      const { id } = await runLeaver(ts, 'again', n);
      const attemptDir = join(workDir, `${id}-1`);
      assert.ok(existsSync(attemptDir));
      const pid = first.child.pid!;
      const [reaper] = await until('the worker to have started its reaper', () => {
        const r = childrenWith(pid, 'reaper-main');
        return r.length === 1 ? r : null;
      });
      // Stopped first, so that it cannot start its reaper again; then both killed: nothing is left to clean up but the next worker.
      process.kill(pid, 'SIGSTOP');
      process.kill(reaper!, 'SIGKILL');
      process.kill(pid, 'SIGKILL');
      await first.stop('SIGKILL');
      await until('the reaper to be gone', () => {
        try {
          process.kill(reaper!, 0);
          return false;
        } catch {
          return true;
        }
      });
      // At `user`, any worker starting on this machine (another test's) may reclaim the dead worker's uid first.
      if (level.level === 'none') assert.equal(sleepers(n).length, 3, 'with worker and reaper killed at once, the job runs on until the next worker');
      // The job is not to be run again: what is checked is the cleaning alone.
      await ts.admin.cancel([id]);

      const second = await startAt(ts, level, `second-${level.level}`, workDir);
      await allGone(n, 'once a worker started again on the work dir');
      await until('the attempt folder to be removed', () => !existsSync(attemptDir));
      await until('the new worker to say what it found', () => /killed what a previous worker on this work dir left running/.test(second.stderr()));
      if (level.level === 'user') {
        const stale = readdirSync(DEFAULT_UID_LOCKS).filter((u) => {
          try {
            return readFileSync(join(DEFAULT_UID_LOCKS, u), 'utf8').trim() === String(pid);
          } catch {
            return false;
          }
        });
        assert.deepEqual(stale, [], 'no uid lock still names the dead worker');
      }
    });
  }
});
