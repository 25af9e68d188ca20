import { spawnSync } from 'node:child_process';
import { accessSync, constants, mkdirSync, promises as fsp, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ISOLATION_LEVELS, type IsolationLevel } from '../core/wire.js';

/**
 * How far a worker can keep its jobs from itself, from each other and from
 * whatever else runs on the machine (docs/SECURITY.md):
 *
 * - `user`: the worker is root, and each attempt runs under a uid of its own
 *   from a range no account uses (like systemd's DynamicUser), in a 0700
 *   folder it owns. Jobs cannot read or signal the worker or each other.
 * - `sandbox`: no privilege, but bubblewrap works: each attempt sees its own
 *   /proc (a pid namespace), the system folders read-only and its own folder,
 *   and nothing of the worker's or anyone's home.
 * - `none`: jobs run as the worker's own user and can read what it can.
 */

export { ISOLATION_LEVELS, type IsolationLevel };

export interface UidRange {
  first: number;
  last: number;
}

/**
 * The default uids of jobs. Far above the ranges that accounts
 * (1000-60000), systemd's dynamic users (61184-65519) and the usual
 * subordinate uids of containers (100000 + 65536 per user) take, and below
 * 2^31, the largest uid Node passes to a child.
 */
export const DEFAULT_JOB_UIDS: UidRange = { first: 2_100_000_000, last: 2_100_065_535 };

export interface Isolation {
  level: IsolationLevel;
  /** `user`: the uids attempts run as; `locks`: where workers of this machine note which uid is taken. */
  uids?: UidRange;
  locks?: string;
  /** `sandbox`: the bwrap program. */
  bwrap?: string;
  /** Why no stronger level was available, in words (for the start line). */
  why: string;
}

export function parseUidRange(text: string): UidRange | string {
  const m = /^(\d+)-(\d+)$/.exec(text.trim());
  if (!m) return 'expected FIRST-LAST, two uids';
  const first = Number(m[1]);
  const last = Number(m[2]);
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(last) || first < 1000 || last > 2_147_483_646 || last < first) {
    return 'expected 1000 <= FIRST <= LAST < 2147483647';
  }
  return { first, last };
}

/**
 * The strongest level this process can give its jobs, or the one asked for
 * (`want`); a string says why the level asked for cannot be had.
 */
export function detectIsolation(opts: { want?: IsolationLevel; uids?: UidRange; locks?: string } = {}): Isolation | string {
  const isRoot = process.getuid?.() === 0;
  const bwrap = findOnPath('bwrap');
  const sandboxWorks = (): string | null => {
    if (!bwrap) return 'bubblewrap (bwrap) is not installed';
    return probeSandbox(bwrap);
  };
  const want = opts.want;
  if (want === 'user' || (want === undefined && isRoot)) {
    if (!isRoot) return 'isolation user needs the worker to run as root, to switch to a uid of its own for each job';
    const uids = opts.uids ?? DEFAULT_JOB_UIDS;
    const taken = uidsInUse(uids);
    if (taken.length > 0) return `uids ${taken.slice(0, 3).join(', ')} of the job range ${uids.first}-${uids.last} belong to accounts of this machine; choose another range with --job-uids`;
    return { level: 'user', uids, locks: opts.locks ?? DEFAULT_UID_LOCKS, why: 'running as root' };
  }
  if (want === 'sandbox' || want === undefined) {
    const failed = sandboxWorks();
    if (failed === null) return { level: 'sandbox', bwrap: bwrap!, why: 'not root; bubblewrap works' };
    if (want === 'sandbox') return `isolation sandbox is not available: ${failed}`;
    return { level: 'none', why: `not root, and ${failed}` };
  }
  return { level: 'none', why: 'asked for' };
}

function findOnPath(program: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    if (!dir) continue;
    const file = join(dir, program);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // next
    }
  }
  return undefined;
}

/** Runs a trivial command in the sandbox a job would get; null when it works, else why not. */
function probeSandbox(bwrap: string): string | null {
  const dir = process.cwd();
  const r = spawnSync(bwrap, [...sandboxArgs(dir, dir), '--', '/bin/sh', '-c', 'test "$(cat /proc/1/cmdline | tr -d "\\0")" != "" && echo ok'], {
    encoding: 'utf8',
    timeout: 20_000,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (r.error) return `bwrap does not run: ${r.error.message}`;
  if (r.status !== 0 || r.stdout.trim() !== 'ok') return `bwrap fails here: ${(r.stderr || `exit ${r.status}`).trim().split('\n')[0]}`;
  return null;
}

/** System folders a sandboxed job sees, read-only; homes, /tmp, /run and the like it does not. */
const SYSTEM_DIRS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/etc', '/opt'];

/**
 * bwrap's arguments for a job in `dir`: its own pid, IPC and UTS namespaces
 * (a /proc of its own: the worker and other jobs are invisible), the system
 * folders read-only, empty /tmp and /dev/shm, and `dir` the only place it can
 * write. It dies with the worker. The network is the machine's.
 */
export function sandboxArgs(dir: string, cwd: string): string[] {
  const args = ['--die-with-parent', '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup-try'];
  for (const d of SYSTEM_DIRS) args.push('--ro-bind-try', d, d);
  args.push('--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', '--tmpfs', '/dev/shm', '--tmpfs', '/var/tmp');
  args.push('--bind', dir, dir, '--chdir', cwd);
  return args;
}

/** uids of the range that /etc/passwd names. */
function uidsInUse(range: UidRange): number[] {
  let text = '';
  try {
    text = readFileSync('/etc/passwd', 'utf8');
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const line of text.split('\n')) {
    const uid = Number(line.split(':')[2]);
    if (Number.isInteger(uid) && uid >= range.first && uid <= range.last) out.push(uid);
  }
  return out;
}

// ---- uids for attempts ------------------------------------------------------------------------

/** Root's own folder, shared by every worker of the machine. */
export const DEFAULT_UID_LOCKS = '/run/cpc-worker/uids';

/**
 * Hands out one uid per running attempt. Several workers may run on one
 * machine (pilots, a local worker beside others), so a uid is taken by
 * creating `<locks>/<uid>` exclusively with the taker's pid in it; a file
 * whose process is gone is stale. uids are handed out round-robin, so one
 * comes back into use as late as the range allows.
 */
export class UidPool {
  private next: number;

  constructor(
    private readonly range: UidRange,
    private readonly locks: string,
  ) {
    mkdirSync(locks, { recursive: true, mode: 0o700 });
    const span = range.last - range.first + 1;
    this.next = range.first + Math.floor(Math.random() * span);
  }

  async acquire(): Promise<number> {
    const span = this.range.last - this.range.first + 1;
    for (let i = 0; i < span; i++) {
      const uid = this.next;
      this.next = uid >= this.range.last ? this.range.first : uid + 1;
      const file = join(this.locks, String(uid));
      try {
        await fsp.writeFile(file, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const holder = Number((await fsp.readFile(file, 'utf8').catch(() => '')).trim());
        if (holder > 0 && pidAlive(holder)) continue;
        // Its worker is gone; whatever it left running under the uid goes too.
        if (liveProcessesOf(uid).length > 0) await killAllOf(uid);
        await fsp.rm(file, { force: true });
        i--;
        this.next = uid;
        continue;
      }
      // Processes under a uid no worker noted are someone else's (another range overlaps this one): not ours to kill.
      if (liveProcessesOf(uid).length > 0) {
        await fsp.rm(file, { force: true });
        continue;
      }
      return uid;
    }
    throw new Error(`every uid of ${this.range.first}-${this.range.last} is in use`);
  }

  async release(uid: number): Promise<void> {
    await fsp.rm(join(this.locks, String(uid)), { force: true });
  }
}

/** Whether a process of this pid exists (EPERM: it does, under another user). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// ---- processes --------------------------------------------------------------------------------

export interface ProcInfo {
  pid: number;
  ppid: number;
  pgrp: number;
  session: number;
  state: string;
  /** Start time in clock ticks since boot: with the pid, names a process for good. */
  start: string;
}

export function procInfo(pid: number): ProcInfo | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { pid, state: f[0]!, ppid: Number(f[1]), pgrp: Number(f[2]), session: Number(f[3]), start: f[19]! };
}

export function allProcesses(): ProcInfo[] {
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return [];
  }
  const out: ProcInfo[] = [];
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const p = procInfo(Number(name));
    if (p) out.push(p);
  }
  return out;
}

/** Processes (not zombies) whose real uid is `uid`. */
export function liveProcessesOf(uid: number): number[] {
  const out: number[] = [];
  for (const name of safeReaddir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let status: string;
    try {
      status = readFileSync(`/proc/${name}/status`, 'utf8');
    } catch {
      continue;
    }
    const uids = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status);
    const state = /^State:\s+(\S)/m.exec(status)?.[1];
    if (uids && state !== 'Z' && (Number(uids[1]) === uid || Number(uids[2]) === uid || Number(uids[3]) === uid)) out.push(Number(name));
  }
  return out;
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/**
 * Kills every process of `uid`, however it detached itself. A shell running
 * as that uid calls kill(-1, SIGKILL): the kernel signals every process the
 * caller may signal, i.e. all of that uid, in one pass that a fork cannot
 * outrun. Repeated until none is left (a process that was being created
 * during the pass).
 */
export async function killAllOf(uid: number): Promise<void> {
  for (let round = 0; round < 50; round++) {
    if (liveProcessesOf(uid).length === 0) return;
    spawnSync('/bin/sh', ['-c', 'kill -KILL -1'], { uid, gid: uid, stdio: 'ignore', cwd: '/', env: {} });
    if (liveProcessesOf(uid).length === 0) return;
    await new Promise((r) => setTimeout(r, 20 * Math.min(round + 1, 10)));
  }
}

/** World-writable places where a job may leave files for the next job of its uid to find. */
const SHARED_TMP = ['/tmp', '/var/tmp', '/dev/shm'];

/**
 * Removes what `uid` left at the top of the shared temporary folders, once
 * none of its processes runs: the uid will be another job's, perhaps another
 * user's, later.
 */
export async function removeLeftovers(uid: number, roots: readonly string[] = SHARED_TMP): Promise<void> {
  for (const root of roots) {
    let names: string[];
    try {
      names = await fsp.readdir(root);
    } catch {
      continue;
    }
    for (const name of names) {
      const p = join(root, name);
      try {
        if ((await fsp.lstat(p)).uid === uid) await fsp.rm(p, { recursive: true, force: true });
      } catch {
        // gone meanwhile, or not ours to remove
      }
    }
  }
}

/** Gives `dir` and everything in it to `uid` (not following links). */
export async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await fsp.lchown(dir, uid, gid);
  for (const entry of await fsp.readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) await chownTree(p, uid, gid);
    else await fsp.lchown(p, uid, gid);
  }
}

/**
 * The first folder on the way to `dir` that other users cannot pass through,
 * or undefined. A job running under its own uid must be able to reach its
 * attempt folder by its full path.
 */
export function closedAncestor(dir: string): string | undefined {
  let d = dirname(resolve(dir));
  for (;;) {
    try {
      if ((statSync(d).mode & 0o001) === 0) return d;
    } catch {
      return d;
    }
    const up = dirname(d);
    if (up === d) return undefined;
    d = up;
  }
}
