import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fsp, readFileSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { allProcesses, killAllOf, liveProcessesOf, pidAlive, procInfo, removeLeftovers, type ProcInfo } from './isolation.js';

/**
 * No job outlives its worker.
 *
 * Each worker starts one reaper: a small process of its own session (so a
 * signal to the worker's process group does not reach it) whose stdin is a
 * pipe from the worker. The worker tells it, one JSON line each, which
 * attempts run and which have ended. When the pipe reaches its end the worker
 * is gone, however it died (a SIGKILL closes its descriptors like an exit),
 * and the reaper kills every process of the attempts still listed, then exits.
 *
 * The same list is kept on disk, one file `.running-<job>-<attempt>` per
 * running attempt in the work dir (which jobs cannot write), for what neither saw: a reaper killed with its worker
 * (`kill -9 -1`, the OOM killer). A worker that starts on the same work dir
 * kills what those files name and removes their attempt folders.
 *
 * How an attempt's processes are found depends on the isolation level: at
 * `user` every process of its uid (one kill(-1) as that uid, which a fork
 * cannot outrun); at `sandbox` the bwrap process, whose death ends the pid
 * namespace and all in it; at `none` its process group and session, their
 * descendants, and processes whose environment carries the attempt's marks.
 */

/** One running attempt, as the reaper and its `.running-…` file know it. */
export interface AttemptRecord {
  jobId: string;
  attempt: number;
  /** The job's leader: its process group and (detached) session carry this id. */
  pid: number;
  /** The leader's start time (clock ticks since boot): a process started before it is none of the job's. */
  start: string;
  level: 'user' | 'sandbox' | 'none';
  /** `user`: the attempt's uid, and the lock folder where the worker noted it. */
  uid?: number;
  locks?: string;
  /** The worker that ran it: a uid lock still naming it is stale once it is gone. */
  workerPid: number;
  dir: string;
}

const RUNNING_PREFIX = '.running-';

/** Kills every process of an attempt that is still alive, until none is left. */
export async function killAttempt(rec: AttemptRecord): Promise<void> {
  if (rec.level === 'user' && rec.uid !== undefined) {
    // Only while the lock still names the attempt's worker: a uid given back may be another job's by now.
    await releaseStaleUid(rec.uid, rec.locks, rec.workerPid);
    return;
  }
  const marks = [`CPC_JOB_ID=${rec.jobId}`, `CPC_ATTEMPT=${rec.attempt}`];
  for (let round = 0; round < 50; round++) {
    const alive = membersOf(rec, allProcesses(), marks);
    if (alive.length === 0) return;
    for (const pid of alive) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    await delay(20);
  }
}

/**
 * The live processes of an attempt: its group and session, whatever descends
 * from them, and processes carrying its marks (readable for this user's
 * processes only). A process older than the leader is not the job's, whatever
 * ids it has now.
 */
function membersOf(rec: AttemptRecord, procs: ProcInfo[], marks: string[]): number[] {
  const young = procs.filter((p) => p.pid !== process.pid && p.state !== 'Z' && Number(p.start) >= Number(rec.start));
  const found = new Set<number>();
  for (const p of young) {
    if (p.pid === rec.pid || p.pgrp === rec.pid || p.session === rec.pid || hasMarks(p.pid, marks)) found.add(p.pid);
  }
  let grew = true;
  while (grew) {
    grew = false;
    for (const p of young) {
      if (!found.has(p.pid) && found.has(p.ppid)) {
        found.add(p.pid);
        grew = true;
      }
    }
  }
  return [...found];
}

function hasMarks(pid: number, marks: string[]): boolean {
  let env: string;
  try {
    env = readFileSync(`/proc/${pid}/environ`, 'latin1');
  } catch {
    return false;
  }
  return marks.every((m) => env.startsWith(`${m}\0`) || env.includes(`\0${m}\0`));
}

/**
 * Gives a uid back whose lock names a worker that is gone (`holder`, or any
 * dead one when not given), once nothing of it runs: its temporary files are
 * removed first, as on an ordinary release.
 */
async function releaseStaleUid(uid: number, locks: string | undefined, holder?: number): Promise<void> {
  if (!locks) return;
  const file = join(locks, String(uid));
  const named = Number((await fsp.readFile(file, 'utf8').catch(() => '')).trim());
  if (!(named > 0) || (holder !== undefined && named !== holder) || (named !== holder && pidAlive(named))) return;
  if (liveProcessesOf(uid).length > 0) await killAllOf(uid);
  await removeLeftovers(uid);
  await fsp.rm(file, { force: true });
}

/**
 * What a worker does first on its work dir: kills what the attempts a previous
 * worker left listed in `.running-…` files still run, removes their folders, and (at
 * `user`) gives back every uid of the lock folder whose worker is gone.
 * Returns how many attempts were left.
 */
export async function cleanLeftovers(workDir: string, locks?: string): Promise<number> {
  let names: string[] = [];
  try {
    names = (await fsp.readdir(workDir)).filter((n) => n.startsWith(RUNNING_PREFIX));
  } catch {
    // no previous run
  }
  let left = 0;
  for (const name of names) {
    const file = join(workDir, name);
    let rec: AttemptRecord | undefined;
    try {
      rec = JSON.parse(await fsp.readFile(file, 'utf8')) as AttemptRecord;
    } catch {
      // half-written when its worker died: the attempt had not started
    }
    if (rec && workerLives(rec)) {
      // Another worker on the same work dir (or in this process): its jobs are its own.
      continue;
    }
    if (rec) {
      left++;
      await killAttempt(rec);
      // Only folders of this work dir, by the name the runner gives them.
      if (dirname(rec.dir) === workDir && basename(rec.dir) === `${rec.jobId}-${rec.attempt}`) await fsp.rm(rec.dir, { recursive: true, force: true });
    }
    await fsp.rm(file, { force: true });
  }
  if (locks) {
    let uids: string[] = [];
    try {
      uids = await fsp.readdir(locks);
    } catch {
      // none taken yet
    }
    for (const name of uids) if (/^\d+$/.test(name)) await releaseStaleUid(Number(name), locks);
  }
  return left;
}

/** The attempt's worker still runs: its pid is alive and that process is older than the job (not a later one given the same pid). */
function workerLives(rec: AttemptRecord): boolean {
  const w = procInfo(rec.workerPid);
  return w !== undefined && w.state !== 'Z' && Number(w.start) <= Number(rec.start);
}

/**
 * The worker's side: starts the reaper, tells it and the work dir about each
 * attempt. A reaper that dies while the worker runs is started again and told
 * what runs.
 */
export class Reaper {
  private child?: ChildProcess;
  private readonly live = new Map<string, AttemptRecord>();
  private closed = false;

  constructor(
    private readonly workDir: string,
    private readonly onProblem: (msg: string) => void = () => {},
  ) {}

  start(): void {
    this.spawn();
  }

  private spawn(): void {
    const here = fileURLToPath(import.meta.url);
    const script = join(dirname(here), `reaper-main${extname(here)}`);
    // Keep only the loader flags (tsx when run from source), not a test runner's or an inspector's.
    const loader: string[] = [];
    const argv = process.execArgv;
    for (let i = 0; i < argv.length; i++) {
      if ((argv[i] === '--import' || argv[i] === '--loader' || argv[i] === '--require') && argv[i + 1]) loader.push(argv[i]!, argv[++i]!);
      else if (/^--(import|loader|require)=/.test(argv[i]!)) loader.push(argv[i]!);
    }
    const child = spawn(process.execPath, [...loader, script], {
      detached: true,
      stdio: ['pipe', 'ignore', 'inherit'],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    });
    this.child = child;
    const startedAt = Date.now();
    child.on('error', (err) => this.onProblem(`the job reaper cannot start: ${err.message}`));
    child.stdin!.on('error', () => {});
    child.once('exit', (code, signal) => {
      if (this.closed || this.child !== child) return;
      const how = signal ?? `code ${code}`;
      // One that cannot even start would be started again in a loop.
      if (Date.now() - startedAt < 1000) return this.onProblem(`the job reaper ended at once (${how}): jobs will outlive this worker if it is killed`);
      this.onProblem(`the job reaper ended (${how}); starting it again`);
      this.spawn();
    });
    // Neither the process nor its pipe keeps the worker alive.
    child.unref();
    (child.stdin as unknown as { unref?: () => void }).unref?.();
    for (const rec of this.live.values()) this.send({ add: rec });
  }

  private send(msg: { add: AttemptRecord } | { remove: string }): void {
    const stdin = this.child?.stdin;
    if (stdin && !stdin.destroyed) stdin.write(JSON.stringify(msg) + '\n');
  }

  private fileOf(rec: Pick<AttemptRecord, 'jobId' | 'attempt'>): string {
    return join(this.workDir, `${RUNNING_PREFIX}${rec.jobId}-${rec.attempt}`);
  }

  /** Called as soon as an attempt's process runs. */
  async started(rec: AttemptRecord): Promise<void> {
    const key = `${rec.jobId}-${rec.attempt}`;
    this.live.set(key, rec);
    this.send({ add: rec });
    await fsp.writeFile(this.fileOf(rec), JSON.stringify(rec), { mode: 0o600 }).catch((err: Error) => {
      this.onProblem(`cannot note a running attempt in the work dir: ${err.message}`);
    });
  }

  /** Called once nothing of the attempt runs any more. */
  async ended(rec: Pick<AttemptRecord, 'jobId' | 'attempt'>): Promise<void> {
    const key = `${rec.jobId}-${rec.attempt}`;
    if (!this.live.delete(key)) return;
    this.send({ remove: key });
    await fsp.rm(this.fileOf(rec), { force: true });
  }

  /** Ends the reaper; what is still listed is killed by it. */
  close(): void {
    this.closed = true;
    this.child?.stdin?.end();
  }
}
