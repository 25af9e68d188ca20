import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fsp, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Resources } from '../core/types.js';
import type { ResultRequest } from '../core/wire.js';

/**
 * Runs one attempt of a job as a real subprocess in a folder of its own.
 *
 * The job is started as the leader of a new process group, so everything it
 * forks can be killed with one signal to the group: a job that leaves a
 * background process behind must not keep cores busy that the worker believes
 * free. Output goes straight from the child into files (the child writes to
 * file descriptors, nothing passes through this process), so a job may print
 * gigabytes without the worker holding any of it in memory; only the tails are
 * read back at the end.
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

  constructor(
    readonly dir: string,
    private readonly child: ChildProcess | undefined,
    private readonly graceMs: number,
    done: (self: RunningAttempt) => Promise<AttemptOutcome>,
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
    await fsp.rm(this.dir, { recursive: true, force: true });
  }

  /** @internal SIGTERM to the group now, SIGKILL after the grace. */
  terminate(): void {
    const pid = this.child?.pid;
    if (this.stopping || !pid) return;
    this.stopping = true;
    signalGroup(pid, 'SIGTERM');
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
      return;
    }
    // Stop waiting once SIGKILL is out: a member that is a zombie of a parent
    // that never reaps would otherwise keep the group "alive" for good.
    while (!this.killSent && groupAlive(pid)) await delay(50);
    clearTimeout(this.graceTimer);
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
  await fsp.rm(dir, { recursive: true, force: true });
  await fsp.mkdir(dir, { recursive: true });
  const stdoutPath = join(dir, 'stdout.log');
  const stderrPath = join(dir, 'stderr.log');

  const env: Record<string, string> = {
    ...(opts.baseEnv ? definedOnly(opts.baseEnv) : inheritedEnv()),
    ...spec.env,
    CPC_JOB_ID: spec.jobId,
    CPC_ATTEMPT: String(spec.attempt),
    CPC_PROJECT: spec.project,
    CPC_CORES: String(spec.resources.cores),
    CPC_MEMORY_MB: String(spec.resources.memoryMb),
  };

  const outcomeOf = async (how: AttemptHow, exitCode: number | null, signal: string | null, durationMs: number, reason?: string) => {
    const [out, err] = await Promise.all([readTail(stdoutPath, maxLogBytes), readTail(stderrPath, maxLogBytes)]);
    return {
      how,
      exitCode,
      signal,
      durationMs,
      stdout: out.text,
      stderr: err.text,
      stdoutBytes: out.bytes,
      stderrBytes: err.bytes,
      ...(reason !== undefined ? { reason } : {}),
    } satisfies AttemptOutcome;
  };

  const startFailed = async (message: string, startedAt: number): Promise<RunningAttempt> => {
    await fsp.appendFile(stderrPath, `cpc-worker: cannot start the job: ${message}\n`);
    await fsp.appendFile(stdoutPath, '');
    const durationMs = Math.round(performance.now() - startedAt);
    return new RunningAttempt(dir, undefined, graceMs, () => outcomeOf('start-failed', null, null, durationMs, message));
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

  const out = await fsp.open(stdoutPath, 'w');
  const err = await fsp.open(stderrPath, 'w');
  const startedAt = performance.now();
  let child: ChildProcess;
  try {
    child = spawn(file, args, { cwd: dir, env, stdio: ['ignore', out.fd, err.fd], detached: true });
  } catch (e) {
    // Invalid arguments (a NUL byte in argv, say) throw here instead of emitting 'error'.
    await Promise.all([out.close(), err.close()]);
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
  // The child holds its own copies of the descriptors by now.
  await Promise.all([out.close(), err.close()]);
  const started = await starting;
  if (started) {
    const e = started as NodeJS.ErrnoException;
    const what = e.code === 'ENOENT' ? `${file}: command not found (ENOENT)` : e.message;
    return startFailed(what, startedAt);
  }

  return new RunningAttempt(dir, child, graceMs, async (self) => {
    let timedOut = false;
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
    return outcomeOf(timedOut ? 'timeout' : 'exited', code, signal, durationMs);
  });
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
  } finally {
    await fh.close();
  }
}
