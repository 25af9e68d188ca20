import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, promises as fsp, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Resources, Usage } from '../core/types.js';
import type { ResultRequest } from '../core/wire.js';
import { allProcesses, chownTree, killAllOf, procInfo, removeLeftovers, sandboxArgs, type Isolation, type ProcInfo, type UidPool } from './isolation.js';
import type { Reaper } from './reaper.js';
import type { AttemptMeter, UsageMethod } from './usage.js';

/**
 * Runs one attempt of a job as a real subprocess in a folder of its own.
 *
 * The job is started as the leader of a new process group, so everything it
 * forks can be killed with one signal to the group: a job that leaves a
 * background process behind must not keep cores busy that the worker believes
 * free. Output goes straight from the child into files (the child writes to
 * file descriptors, nothing passes through this process), so a job may print
 * gigabytes without the worker holding any of it in memory; only the tails are
 * read back at the end, through the worker's own descriptors (a job may
 * replace the files by links to what it may not read).
 *
 * How the job is kept apart from the worker and other jobs depends on the
 * isolation level (isolation.ts, docs/SECURITY.md): under a uid of its own
 * (`user`), in a bubblewrap sandbox (`sandbox`), or beside the worker (`none`,
 * the default here). Whatever the job leaves running is killed when it ends:
 * every process of its uid, its pid namespace, or (`none`) the processes of
 * its session and group and their descendants, watched from /proc while it runs.
 */

export interface AttemptSpec {
  jobId: string;
  attempt: number;
  project: string;
  argv?: string[];
  shell?: string;
  env: Record<string, string>;
  resources: Resources;
  /** Wall-clock limit in seconds; null or 0 = none. */
  timeoutS: number | null;
  /** Fills the fresh attempt folder (the job's inputs) before the process starts; a throw is a start failure. */
  prepare?: (dir: string) => Promise<void>;
}

export interface RunnerOptions {
  /** The attempt runs in `<workDir>/<jobId>-<attempt>`. */
  workDir: string;
  /** How much of the end of each stream the outcome carries. */
  maxLogBytes?: number;
  /** Time between SIGTERM and SIGKILL when a job is stopped. */
  killGraceMs?: number;
  /** The environment every job starts from; defaults to a safe subset of this process's. */
  baseEnv?: Record<string, string | undefined>;
  /** How jobs are kept apart; without it they run beside the worker (`none`). */
  confine?: Confinement;
  /** Kills the attempt's processes if this process dies before it could (reaper.ts). */
  reaper?: Reaper;
  /** Measures what each attempt uses and holds it to its memory (usage.ts); without it nothing is measured. */
  usage?: UsageMethod;
  /**
   * Leave the log files open once the outcome is known, for the caller to
   * read the rest of the output through `RunningAttempt.output` (live logs);
   * it closes them with `output.close()`.
   */
  keepLogsOpen?: boolean;
}

/** The attempt's log files, as the worker opened them before the job ran. */
export interface AttemptOutput {
  stdout: fsp.FileHandle;
  stderr: fsp.FileHandle;
  close: () => Promise<void>;
}

/** An isolation level as the runner applies it: for `user`, the pool of uids. */
export interface Confinement {
  isolation: Isolation;
  uids?: UidPool;
}

export type AttemptHow = ResultRequest['how'];

/** What the worker reports of an attempt: the result request without the attempt's name. */
export type AttemptOutcome = Omit<ResultRequest, 'jobId' | 'attempt'>;

export const DEFAULT_MAX_LOG_BYTES = 1024 * 1024;
export const DEFAULT_KILL_GRACE_MS = 5000;

/**
 * What a job inherits from the worker. A whitelist, not the whole environment:
 * the worker's own settings (its token above all) are not the job's business.
 */
const INHERITED = ['PATH', 'HOME', 'LANG', 'LANGUAGE', 'TZ', 'USER', 'LOGNAME', 'SHELL', 'TMPDIR'];

export function inheritedEnv(env: Record<string, string | undefined> = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v !== undefined && (INHERITED.includes(k) || k.startsWith('LC_'))) out[k] = v;
  }
  return out;
}

export function attemptDirName(jobId: string, attempt: number): string {
  return `${jobId}-${attempt}`;
}

export class RunningAttempt {
  /** Resolves once the process group is gone and the outcome is known; never rejects. */
  readonly done: Promise<AttemptOutcome>;
  private abandonedFlag = false;
  private stopping = false;
  private killSent = false;
  private graceTimer?: NodeJS.Timeout;
  /** The log files, read through these handles only (set by startAttempt). */
  output?: AttemptOutput;
  /** What the attempt uses, while it runs (set by startAttempt when the worker measures). */
  meter?: AttemptMeter;

  constructor(
    readonly dir: string,
    private readonly child: ChildProcess | undefined,
    private readonly graceMs: number,
    done: (self: RunningAttempt) => Promise<AttemptOutcome>,
    /** Kills what the job left running; called once its leader has exited. */
    private readonly sweep: () => Promise<void> = async () => {},
  ) {
    this.done = done(this);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** True once abandon() was called: the outcome must not be reported. */
  get abandoned(): boolean {
    return this.abandonedFlag;
  }

  /**
   * Kills the whole process group (SIGTERM, then SIGKILL after the grace) and
   * resolves when it is gone. `done` still resolves, but is not to be reported.
   */
  async abandon(): Promise<void> {
    this.abandonedFlag = true;
    this.terminate();
    await this.done;
  }

  /** Removes the attempt's folder and its logs. */
  async removeDir(): Promise<void> {
    await this.output?.close();
    await fsp.rm(this.dir, { recursive: true, force: true });
  }

  /** @internal SIGTERM to the group now (SIGKILL when `now`), SIGKILL after the grace. */
  terminate(now = false): void {
    const pid = this.child?.pid;
    if (this.stopping || !pid) return;
    this.stopping = true;
    if (now) this.killSent = true;
    signalGroup(pid, now ? 'SIGKILL' : 'SIGTERM');
    this.graceTimer = setTimeout(() => {
      this.killSent = true;
      signalGroup(pid, 'SIGKILL');
    }, this.graceMs);
  }

  /** @internal */
  get isStopping(): boolean {
    return this.stopping;
  }

  /**
   * @internal Called when the leader has exited. When the job was asked to
   * stop, the rest of its group gets the same grace as the leader; otherwise
   * the job is over, and whatever it left running is not part of it.
   */
  async leaderExited(): Promise<void> {
    const pid = this.child!.pid!;
    if (!this.stopping) {
      signalGroup(pid, 'SIGKILL');
    } else {
      // Stop waiting once SIGKILL is out: a member that is a zombie of a parent
      // that never reaps would otherwise keep the group "alive" for good.
      while (!this.killSent && groupAlive(pid)) await delay(50);
      clearTimeout(this.graceTimer);
    }
    // What left the group (setsid, a double fork) is part of the job all the same.
    await this.sweep();
  }
}

/**
 * The processes of a job that runs beside the worker: its session and group,
 * and every descendant seen while it ran (a scan of /proc each second, so a
 * process that double-forks into a session of its own is still caught unless
 * it manages that between two scans).
 */
class ProcessTree {
  private readonly known = new Map<number, string>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly leader: number,
    /** `CPC_JOB_ID=…\0CPC_ATTEMPT=…` as the job's environment has it: what a process that slipped away between scans still carries. */
    private readonly marks: string[],
  ) {
    this.timer = setInterval(() => this.scan(), 1000);
    this.timer.unref();
  }

  private scan(): ProcInfo[] {
    const procs = allProcesses();
    let grew = true;
    while (grew) {
      grew = false;
      for (const p of procs) {
        if (p.pid === process.pid || this.known.get(p.pid) === p.start) continue;
        if (p.session === this.leader || p.pgrp === this.leader || p.pid === this.leader || this.known.has(p.ppid)) {
          if (this.known.has(p.pid) && this.known.get(p.pid) !== p.start) this.known.delete(p.pid);
          this.known.set(p.pid, p.start);
          grew = true;
        }
      }
    }
    return procs.filter((p) => this.known.get(p.pid) === p.start && p.state !== 'Z');
  }

  /** Processes not known yet whose environment carries the job's marks (those of this worker's user only can be read). */
  private marked(procs: ProcInfo[]): void {
    for (const p of procs) {
      if (p.pid === process.pid || this.known.has(p.pid) || p.state === 'Z') continue;
      let env: string;
      try {
        env = readFileSync(`/proc/${p.pid}/environ`, 'latin1');
      } catch {
        continue;
      }
      if (this.marks.every((m) => env.includes(`\0${m}\0`) || env.startsWith(`${m}\0`))) this.known.set(p.pid, p.start);
    }
  }

  /** Kills every process of the job still alive, until none is left. */
  async kill(): Promise<void> {
    clearInterval(this.timer);
    for (let round = 0; round < 50; round++) {
      this.marked(allProcesses());
      const alive = this.scan();
      if (alive.length === 0) return;
      for (const p of alive) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          // gone already
        }
      }
      await delay(20);
    }
  }
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: the group is already gone, which is what we want.
  }
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  return hasLiveMember(pgid);
}

/**
 * A group whose members have all died but not yet been reaped still takes
 * signals. Their new parent (often a container's PID 1) may reap them only now
 * and then, so on Linux a group counts as alive only while a member is not a zombie.
 */
function hasLiveMember(pgid: number): boolean {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return true;
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue;
    }
    // pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid && fields[0] !== 'Z') return true;
  }
  return false;
}

/**
 * Creates the attempt folder (fresh: a leftover from an earlier run of the same
 * attempt is removed) and starts the process. Resolves once the process is
 * started or has failed to start; the outcome comes from `done`.
 */
export async function startAttempt(spec: AttemptSpec, opts: RunnerOptions): Promise<RunningAttempt> {
  const maxLogBytes = Math.max(0, opts.maxLogBytes ?? DEFAULT_MAX_LOG_BYTES);
  const graceMs = Math.max(0, opts.killGraceMs ?? DEFAULT_KILL_GRACE_MS);
  const dir = join(opts.workDir, attemptDirName(spec.jobId, spec.attempt));
  const level = opts.confine?.isolation.level ?? 'none';
  await fsp.rm(dir, { recursive: true, force: true });
  await fsp.mkdir(dir, { recursive: true, mode: level === 'none' ? undefined : 0o700 });
  const stdoutPath = join(dir, 'stdout.log');
  const stderrPath = join(dir, 'stderr.log');
  // Opened before anything of the job's runs, and read back through these
  // handles only: what the paths name later is up to the job.
  const out = await fsp.open(stdoutPath, 'w+', 0o600);
  const err = await fsp.open(stderrPath, 'w+', 0o600);
  let closed = false;
  const closeLogs = async () => {
    if (closed) return;
    closed = true;
    await Promise.all([out.close(), err.close()]);
  };
  const withOutput = (run: RunningAttempt): RunningAttempt => {
    run.output = { stdout: out, stderr: err, close: closeLogs };
    return run;
  };

  // `user`: a uid of the attempt's own, given back once nothing of it is left.
  const pool = level === 'user' ? opts.confine!.uids : undefined;
  const uid = pool ? await pool.acquire() : undefined;
  let released = false;
  const release = async (): Promise<void> => {
    if (uid === undefined || released) return;
    released = true;
    await killAllOf(uid);
    // The folder is the worker's again, and the job's temporary files gone, before the uid can be another job's.
    await chownTree(dir, process.getuid!(), process.getgid!()).catch(() => {});
    await removeLeftovers(uid);
    await pool!.release(uid);
  };

  const env: Record<string, string> = {
    ...(opts.baseEnv ? definedOnly(opts.baseEnv) : inheritedEnv()),
    ...(level !== 'none' ? { HOME: dir } : {}),
    ...(uid !== undefined ? { TMPDIR: dir, USER: `cpc${uid}`, LOGNAME: `cpc${uid}` } : {}),
    ...(level === 'sandbox' ? { TMPDIR: '/tmp' } : {}),
    ...spec.env,
    CPC_JOB_ID: spec.jobId,
    CPC_ATTEMPT: String(spec.attempt),
    CPC_PROJECT: spec.project,
    CPC_CORES: String(spec.resources.cores),
    CPC_MEMORY_MB: String(spec.resources.memoryMb),
  };

  const outcomeOf = async (how: AttemptHow, exitCode: number | null, signal: string | null, durationMs: number, reason?: string, usage?: Usage) => {
    const [outTail, errTail] = await Promise.all([readTailOf(out, maxLogBytes), readTailOf(err, maxLogBytes)]);
    if (!opts.keepLogsOpen) await closeLogs();
    await release();
    return {
      how,
      exitCode,
      signal,
      durationMs,
      stdout: outTail.text,
      stderr: errTail.text,
      stdoutBytes: outTail.bytes,
      stderrBytes: errTail.bytes,
      ...(reason !== undefined ? { reason } : {}),
      ...(usage ? { usage } : {}),
    } satisfies AttemptOutcome;
  };

  const startFailed = async (message: string, startedAt: number): Promise<RunningAttempt> => {
    await err.write(`cpc-worker: cannot start the job: ${message}\n`);
    const durationMs = Math.round(performance.now() - startedAt);
    return withOutput(new RunningAttempt(dir, undefined, graceMs, () => outcomeOf('start-failed', null, null, durationMs, message)));
  };

  if (spec.prepare) {
    const preparing = performance.now();
    try {
      await spec.prepare(dir);
    } catch (e) {
      return startFailed((e as Error).message, preparing);
    }
  }

  let file: string;
  let args: string[];
  if (spec.argv && spec.argv.length > 0) {
    [file, ...args] = spec.argv as [string, ...string[]];
  } else if (spec.shell !== undefined) {
    file = '/bin/sh';
    args = ['-c', spec.shell];
  } else {
    return startFailed('the job has neither argv nor a shell line', performance.now());
  }

  if (uid !== undefined) {
    try {
      await chownTree(dir, uid, uid);
    } catch (e) {
      return startFailed(`cannot give the attempt folder to uid ${uid}: ${(e as Error).message}`, performance.now());
    }
  }
  let meter: AttemptMeter | undefined;
  try {
    meter = opts.usage?.meter({ limitMb: spec.resources.memoryMb, ...(uid !== undefined ? { uid } : {}) });
  } catch (e) {
    await release();
    return startFailed(`cannot measure the attempt: ${(e as Error).message}`, performance.now());
  }
  const startedAt = performance.now();
  let child: ChildProcess;
  try {
    if (level === 'sandbox') {
      args = [...sandboxArgs(dir, dir), '--', file, ...args];
      file = opts.confine!.isolation.bwrap!;
    }
    if (meter) {
      // The wrapper execs the job: a command that is not there must still fail to start, not exit 127.
      const missing = level === 'sandbox' ? undefined : notExecutable(file, env.PATH ?? '', dir);
      if (missing !== undefined) {
        await meter.finish();
        return startFailed(missing, startedAt);
      }
      [file, args] = meter.wrap(file, args);
    }
    child = spawn(file, args, {
      cwd: dir,
      env,
      stdio: ['ignore', out.fd, err.fd],
      detached: true,
      ...(uid !== undefined ? { uid, gid: uid } : {}),
    });
  } catch (e) {
    // Invalid arguments (a NUL byte in argv, say) throw here instead of emitting 'error'.
    await meter?.finish();
    return startFailed((e as Error).message, startedAt);
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  // Listen before anything is awaited: 'spawn' and 'error' fire on the next tick.
  const starting = new Promise<Error | null>((resolve) => {
    child.once('spawn', () => resolve(null));
    child.on('error', (e) => resolve(e));
  });
  const started = await starting;
  if (started) {
    const e = started as NodeJS.ErrnoException;
    const what = e.code === 'ENOENT' ? `${file}: command not found (ENOENT)` : e.message;
    await meter?.finish();
    return startFailed(what, startedAt);
  }
  meter?.started(child.pid!);

  // A sandbox's processes die with its pid namespace; a uid's are all killed by release().
  const tree = level === 'none' ? new ProcessTree(child.pid!, [`CPC_JOB_ID=${spec.jobId}`, `CPC_ATTEMPT=${spec.attempt}`]) : undefined;
  const record = { jobId: spec.jobId, attempt: spec.attempt };
  await opts.reaper?.started({
    ...record,
    pid: child.pid!,
    // The leader may be gone already: then nothing older than this moment is the job's.
    start: procInfo(child.pid!)?.start ?? procInfo(process.pid)!.start,
    level,
    ...(uid !== undefined ? { uid, locks: opts.confine!.isolation.locks } : {}),
    workerPid: process.pid,
    dir,
  });
  const sweep = async (): Promise<void> => {
    if (tree) await tree.kill();
    await release();
    await opts.reaper?.ended(record);
  };
  const running = new RunningAttempt(dir, child, graceMs, async (self) => {
    let timedOut = false;
    let outOfMemory = false;
    // Past its memory the job is killed at once, as the kernel would.
    meter?.onExceeded(() => {
      if (self.isStopping) return;
      outOfMemory = true;
      self.terminate(true);
    });
    const limitMs = spec.timeoutS && spec.timeoutS > 0 ? spec.timeoutS * 1000 : 0;
    const timer =
      limitMs > 0
        ? setTimeout(() => {
            if (self.isStopping) return;
            timedOut = true;
            self.terminate();
          }, limitMs)
        : undefined;
    const { code, signal } = await exited;
    const durationMs = Math.round(performance.now() - startedAt);
    clearTimeout(timer);
    await self.leaderExited();
    const measured = await meter?.finish();
    if (measured) measured.usage.wallS = Math.round(durationMs) / 1000;
    // The kernel's OOM killer may have ended the leader itself before the worker heard of it.
    const oom = outOfMemory || (measured?.oom === true && !timedOut && !(code === 0 && signal === null));
    return outcomeOf(oom ? 'oom' : timedOut ? 'timeout' : 'exited', code, signal, durationMs, undefined, measured?.usage);
  }, sweep);
  running.meter = meter;
  return withOutput(running);
}

/** Why `file` could not be spawned as spawn() would say it, or undefined when it can be: found on PATH (or as a path) and executable. */
function notExecutable(file: string, path: string, cwd: string): string | undefined {
  const candidates = file.includes('/') ? [resolve(cwd, file)] : path.split(':').filter((d) => d !== '').map((d) => join(d, file));
  let denied = false;
  for (const c of candidates) {
    try {
      if (!statSync(c).isFile()) continue;
      accessSync(c, fsConstants.X_OK);
      return undefined;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EACCES') denied = true;
    }
  }
  return denied ? `spawn ${file} EACCES` : `${file}: command not found (ENOENT)`;
}

function definedOnly(env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}

/**
 * The last `max` bytes of a file and its full size. A cut that lands inside a
 * UTF-8 sequence is moved forward to the next character, so the tail never
 * starts with a broken one.
 */
export async function readTail(path: string, max: number): Promise<{ text: string; bytes: number }> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { text: '', bytes: 0 };
    throw err;
  }
  try {
    return await readTailOf(fh, max);
  } finally {
    await fh.close();
  }
}

/** readTail through an open handle. */
export async function readTailOf(fh: fsp.FileHandle, max: number): Promise<{ text: string; bytes: number }> {
  const { size } = await fh.stat();
  const start = Math.max(0, size - max);
  const length = size - start;
  if (length === 0) return { text: '', bytes: size };
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, start + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  let skip = 0;
  if (start > 0) while (skip < Math.min(3, got) && (buf[skip]! & 0xc0) === 0x80) skip++;
  return { text: new TextDecoder('utf-8').decode(buf.subarray(skip, got)), bytes: size };
}
