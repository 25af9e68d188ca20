import { promises as fsp } from 'node:fs';
import { hostname } from 'node:os';
import { ApiError, type ApiClient } from '../client/api/client.js';
import { DEFAULT_KILL_GRACE_S, type Resources } from '../core/types.js';
import type { ClaimReply, ClaimedJob, RegisterReply, ResultRequest } from '../core/wire.js';
import { fetchInputs, keepOutputs } from './files.js';
import { closedAncestor, detectIsolation, UidPool, type Isolation } from './isolation.js';
import { LogStreamer } from './log-streamer.js';
import { cleanLeftovers, Reaper } from './reaper.js';
import { detectUsageMethod, type UsageMethod } from './usage.js';
import { DEFAULT_MAX_LOG_BYTES, startAttempt, type AttemptOutcome, type Confinement, type RunningAttempt } from './runner.js';

/**
 * The worker runtime: registers with a server, keeps one long-poll claim open
 * while it has free cores, runs what it is given, heartbeats the attempts it
 * holds and reports each result until the server has it. While it runs
 * attempts it also keeps one control poll open, which the server answers the
 * moment one of them must stop (a cancel, say): the heartbeat would tell it
 * too, but only at its next interval.
 *
 * A server that goes away is waited for, not given up on: running jobs keep
 * running, heartbeats and results are retried with backoff, and when the server
 * answers again the worker heartbeats at once so that leases the server kept
 * across its restart are renewed before they run out.
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFn = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

export interface WorkerOptions {
  client: ApiClient;
  name: string;
  /** Shown in the server's worker list; defaults to this machine's host name. */
  host?: string;
  cores: number;
  memoryMb: number;
  /** Attempt folders are made under it. */
  workDir: string;
  labels?: string[];
  /** How long the server may hold a claim open. */
  claimWaitS?: number;
  maxLogBytes?: number;
  /** Time between SIGTERM and SIGKILL for every job, in place of the grace each job's spec gives (killGraceS). */
  killGraceMs?: number;
  /** How long the server may hold a control poll (the channel that tells the worker to stop an attempt); default claimWaitS. */
  controlWaitS?: number;
  /** Keep attempt folders after their result was delivered. */
  keepWorkDirs?: boolean;
  log?: LogFn;
  /** Bounds of the retry backoff while the server cannot be reached. */
  retryMinMs?: number;
  retryMaxMs?: number;
  /**
   * While the server cannot be reached, the heartbeat asks again at least this
   * often: the first answer wakes every waiting retry, so the claim resumes at once.
   */
  outageProbeMs?: number;
  /** Stop (draining) after running nothing for this long: pilots give their batch slot back when the queue is dry. */
  idleExitS?: number;
  /**
   * Wait this long before reporting an attempt that a signal ended. A batch
   * system that kills a pilot signals the worker and its jobs at once; the
   * worker's own signal usually arrives first, and then the attempt is lost
   * (re-queued) instead of reported as failed.
   */
  signalSettleMs?: number;
  /**
   * The same for an attempt that exited by itself. A job that catches the
   * batch system's SIGTERM (a shell script with a trap, a program that cleans
   * up) may exit 0 at the very moment the worker is told to stop; it must be
   * re-queued like the rest, not reported done.
   */
  exitSettleMs?: number;
  /** Send results with the next claim when one follows at once (default); false: always on their own. */
  resultsWithClaims?: boolean;
  /**
   * A heartbeat tells the server which attempts have started within this
   * long of their start (default 250 ms), so `cpcc job` shows them running.
   * Starts within the window share one heartbeat, and an attempt that ends
   * first needs none: its result says it all.
   */
  startNoticeMs?: number;
  /** How jobs are kept apart (isolation.ts); detected when absent. */
  isolation?: Isolation;
  /** Isolation `none`: run jobs of any user although they share the worker's identity. */
  sharedIdentity?: boolean;
  /** How attempts' usage is measured and their memory held to (usage.ts); detected when absent, null: not at all. */
  usage?: UsageMethod | null;
  /** Send running attempts' output to the server as it is written (default); false: with results only. */
  liveLogs?: boolean;
  /** The least time between two batches of live output. */
  liveLogEveryMs?: number;
}

export interface HeldAttempt {
  jobId: string;
  attempt: number;
  project: string;
  workerId: string;
  pid?: number;
  phase: 'starting' | 'running' | 'reporting';
}

/**
 * Refusals of a result that mean the server has settled the attempt without
 * it: retrying cannot help, and the job is no longer ours.
 */
const FINAL_RESULT_CODES = new Set(['STALE_ATTEMPT', 'JOB_NOT_FOUND', 'ATTEMPT_NOT_FOUND']);
/** The credentials or the server are wrong; nothing will work until a person fixes it. */
const FATAL_CODES = new Set(['UNAUTHENTICATED', 'FORBIDDEN', 'WRONG_SERVER']);
/** Tails are cut down to this on a size refusal before the result is given up. */
const MIN_TAIL_CHARS = 4096;

type ErrorKind = 'transient' | 'worker-gone' | 'fatal' | 'aborted' | 'rejected';

function codeOf(err: unknown): string {
  return err instanceof ApiError ? err.code : 'INTERNAL';
}

function classify(err: unknown): ErrorKind {
  if (!(err instanceof ApiError)) return 'transient';
  if (err.code === 'ABORTED') return 'aborted';
  if (err.code === 'WORKER_NOT_FOUND') return 'worker-gone';
  if (FATAL_CODES.has(err.code)) return 'fatal';
  if (err.code === 'UNREACHABLE' || err.code === 'TIMEOUT' || err.code === 'BAD_RESPONSE') return 'transient';
  if (err.status >= 500 || err.status === 429) return 'transient';
  return 'rejected';
}

class IsolationRefused extends Error {
  constructor() {
    super("the server does not bind this worker to one user: at isolation none, use a token made with 'cpcc worker-token create NAME --user USER', or --shared-identity");
  }
}

/** A wake-up call that any number of waiters can sleep on, each with a limit. */
class Wakeup {
  private waiters = new Set<() => void>();

  fire(): void {
    const ws = [...this.waiters];
    this.waiters.clear();
    for (const w of ws) w();
  }

  /** Resolves on fire(), after `ms` (if given), or when `signal` aborts. */
  wait(ms?: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.waiters.delete(done);
        resolve();
      };
      const timer = ms === undefined ? undefined : setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      this.waiters.add(done);
    });
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Wakeup().wait(ms, signal);
}

/** A result waiting to ride on the next claim (see `carry`). */
interface Carried {
  req: ResultRequest;
  slot: Slot;
  /** Sent with a claim: from then on only that claim's answer settles it. */
  taken: boolean;
  /** True once the claim delivered it (taken, or refused for good); false: it is to be sent alone. */
  settle: (delivered: boolean) => void;
}

/** How long a result waits for a claim to carry it before it is sent alone. */
const CARRY_WAIT_MS = 50;

interface Slot {
  key: string;
  job: ClaimedJob;
  /** The registration the attempt was claimed under; results go there. */
  workerId: string;
  phase: 'starting' | 'running' | 'reporting';
  run?: RunningAttempt;
  /** Counted against free resources until its process is gone. */
  holds: boolean;
  abandoned: boolean;
  /** A heartbeat that the server answered named it as started. */
  saidStarted?: boolean;
  /** The server refused its result: it ended the attempt itself, and may be waiting to hear the process is gone. */
  refused?: boolean;
  /** Cuts the slot's own retry sleeps short when it is abandoned. */
  ctl: AbortController;
}

export class Worker {
  private readonly client: ApiClient;
  private readonly opts: WorkerOptions;
  private readonly log: LogFn;
  private readonly claimWaitS: number;
  private readonly retryMinMs: number;
  private readonly retryMaxMs: number;
  private readonly outageProbeMs: number;

  private reg?: RegisterReply;
  private workerId?: string;
  private heartbeatMs = 60_000;
  private reregistering?: Promise<void>;
  private readonly slots = new Map<string, Slot>();

  readonly isolation: Isolation;
  private confine?: Confinement;
  private started = false;
  private stopping = false;
  private killing = false;
  private outage = false;
  private fatalError?: unknown;
  private readonly stopCtl = new AbortController();
  private readonly killCtl = new AbortController();
  private readonly heartbeatCtl = new AbortController();
  private claimCtl?: AbortController;
  /** The attempts of the last heartbeat the server kept (see HeartbeatRequest). */
  private keptHeartbeat?: string;
  /** Results for the next claim to carry. */
  private readonly outbox: Carried[] = [];
  private readonly resourcesChanged = new Wakeup();
  private readonly heartbeatNow = new Wakeup();
  private readonly slotGone = new Wakeup();
  /** Fired when an attempt is launched: the control poll starts when there is one to watch. */
  private readonly slotAdded = new Wakeup();
  /** Fired when the server answers after an outage: retries waiting out a back-off go at once. */
  private readonly serverBack = new Wakeup();
  /** Counts the server's answers: a request that failed while another got an answer is tried again at once. */
  private answers = 0;
  private reaper?: Reaper;
  private readonly usage?: UsageMethod;
  /** Running attempts' output on its way to the server (log-streamer.ts). */
  private readonly streamer?: LogStreamer;
  private claimLoopDone: Promise<void> = Promise.resolve();
  private idleTimer?: NodeJS.Timeout;
  /** Set while a heartbeat telling of new starts is due (see startNoticeMs). */
  private startNotice?: NodeJS.Timeout;
  private heartbeatLoopDone: Promise<void> = Promise.resolve();
  private controlLoopDone: Promise<void> = Promise.resolve();
  private stopping$?: Promise<void>;
  private readonly ended: Promise<void>;
  private endedResolve!: () => void;
  private endedReject!: (err: unknown) => void;

  constructor(opts: WorkerOptions) {
    if (!Number.isInteger(opts.cores) || opts.cores < 1) throw new Error(`cores must be a whole number of at least 1, not ${opts.cores}`);
    if (!Number.isInteger(opts.memoryMb) || opts.memoryMb < 0) throw new Error(`memoryMb must be a whole number, not ${opts.memoryMb}`);
    this.opts = opts;
    const isolation = opts.isolation ?? detectIsolation();
    if (typeof isolation === 'string') throw new Error(isolation);
    this.isolation = isolation;
    const usage = opts.usage === undefined ? detectUsageMethod() : opts.usage;
    if (typeof usage === 'string') throw new Error(usage);
    this.usage = usage ?? undefined;
    this.client = opts.client;
    this.log = opts.log ?? (() => {});
    this.claimWaitS = opts.claimWaitS ?? 30;
    this.retryMinMs = opts.retryMinMs ?? 250;
    this.retryMaxMs = opts.retryMaxMs ?? 30_000;
    this.outageProbeMs = opts.outageProbeMs ?? 500;
    this.ended = new Promise((resolve, reject) => {
      this.endedResolve = resolve;
      this.endedReject = reject;
    });
    // wait() is optional; a fatal error must not also surface as an unhandled rejection.
    this.ended.catch(() => {});
    if (opts.liveLogs !== false) {
      this.streamer = new LogStreamer({
        send: (workerId, req) => this.client.logChunks(workerId, req),
        everyMs: opts.liveLogEveryMs,
        window: opts.maxLogBytes ?? DEFAULT_MAX_LOG_BYTES,
        log: (level, msg, fields) => this.log(level, msg, fields),
      });
    }
  }

  /** The id of the current registration, once registered. */
  get id(): string | undefined {
    return this.workerId;
  }

  get registration(): RegisterReply | undefined {
    return this.reg;
  }

  /** Registered resources minus those of the attempts that still hold them. */
  get free(): Resources {
    let cores = this.opts.cores;
    let memoryMb = this.opts.memoryMb;
    for (const s of this.slots.values()) {
      if (!s.holds) continue;
      cores -= s.job.resources.cores;
      memoryMb -= s.job.resources.memoryMb;
    }
    return { cores, memoryMb };
  }

  /** The attempts this worker holds: running, starting, or waiting for their result to be taken. */
  held(): HeldAttempt[] {
    return [...this.slots.values()]
      .filter((s) => !s.abandoned)
      .map((s) => ({
        jobId: s.job.id,
        attempt: s.job.attempt,
        project: s.job.project,
        workerId: s.workerId,
        pid: s.run?.pid,
        phase: s.phase,
      }));
  }

  /**
   * Registers (retrying while the server cannot be reached) and starts the
   * claim and heartbeat loops. Resolves once registered, or when stopped first;
   * rejects when the server refuses the registration.
   */
  async start(): Promise<void> {
    if (this.started) throw new Error('the worker was already started');
    this.started = true;
    try {
      await this.prepareWorkDir();
      if (!(await this.register())) {
        this.end();
        return;
      }
    } catch (err) {
      this.fatalError = err;
      this.stopping = true;
      this.end();
      throw err;
    }
    this.claimLoopDone = this.guard(this.claimLoop());
    this.heartbeatLoopDone = this.guard(this.heartbeatLoop());
    this.controlLoopDone = this.guard(this.controlLoop());
    if (this.opts.idleExitS !== undefined) this.watchIdle(this.opts.idleExitS * 1000);
  }

  /**
   * The work folder, closed to jobs: at `user` level other uids may pass
   * through it to their own folder (0711) but not list it.
   */
  private async prepareWorkDir(): Promise<void> {
    const { workDir } = this.opts;
    const { level } = this.isolation;
    await fsp.mkdir(workDir, { recursive: true, mode: 0o700 });
    // What a worker that died on this work dir left running goes before anything new starts.
    const left = await cleanLeftovers(workDir, level === 'user' ? this.isolation.locks : undefined);
    if (left > 0) this.log('warn', 'killed what a previous worker on this work dir left running', { attempts: left });
    this.reaper = new Reaper(workDir, (msg) => this.log('warn', msg));
    this.reaper.start();
    if (level === 'user') {
      await fsp.chmod(workDir, 0o711);
      this.confine = { isolation: this.isolation, uids: new UidPool(this.isolation.uids!, this.isolation.locks!) };
      const closed = closedAncestor(workDir);
      if (closed) this.log('warn', `${closed} is closed to other users: jobs can use their folder only by relative paths; give it o+x or choose another --work-dir`);
    } else {
      this.confine = { isolation: this.isolation };
      if (level === 'sandbox') await fsp.chmod(workDir, 0o700);
    }
  }

  /** Stops the worker once it has held no attempt for `idleMs`. */
  private watchIdle(idleMs: number): void {
    let idleSince = Date.now();
    this.idleTimer = setInterval(() => {
      if (this.stopping) return clearInterval(this.idleTimer);
      if (this.slots.size > 0) idleSince = Date.now();
      else if (Date.now() - idleSince >= idleMs) {
        this.log('info', `idle for ${idleMs / 1000} s; stopping`);
        void this.stop({ drain: true });
      }
    }, Math.min(1000, Math.max(50, idleMs / 4)));
    this.idleTimer.unref();
  }

  /**
   * drain: stop claiming, let running jobs finish and their results be
   * delivered. Otherwise kill running jobs and report nothing more. Calling it
   * again is safe; a second call without drain cuts a drain short.
   */
  stop(opts: { drain?: boolean } = {}): Promise<void> {
    const drain = opts.drain ?? true;
    if (!drain) this.killAll();
    this.stopping$ ??= this.shutdown(drain);
    return this.stopping$;
  }

  /** Resolves when the worker has stopped; rejects if it stopped because of an error it cannot get past. */
  wait(): Promise<void> {
    return this.ended;
  }

  // ---- registration --------------------------------------------------------

  /** True when registered, false when stopped before that. */
  private async register(): Promise<boolean> {
    const { name, cores, memoryMb, labels } = this.opts;
    const host = this.opts.host ?? hostname();
    let failures = 0;
    while (!this.stopping) {
      try {
        const { level } = this.isolation;
        const shared = level === 'none' && this.opts.sharedIdentity === true;
        const reply = await this.client.register({
          name,
          host,
          cores,
          memoryMb,
          ...(labels?.length ? { labels } : {}),
          isolation: level,
          ...(shared ? { sharedIdentity: true } : {}),
        });
        if (level === 'none' && reply.onlyUser === undefined && !shared) {
          // A server that does not know isolation levels would hand this worker anyone's jobs.
          throw new IsolationRefused();
        }
        this.reg = reply;
        this.workerId = reply.workerId;
        this.heartbeatMs = reply.heartbeatIntervalS * 1000;
        this.serverAnswered();
        this.log('info', `registered as ${reply.workerId} with ${cores} cores / ${memoryMb} MB`, {
          worker: reply.workerId,
          isolation: level,
          onlyUser: reply.onlyUser,
          heartbeatIntervalS: reply.heartbeatIntervalS,
          leaseS: reply.leaseS,
        });
        this.heartbeatNow.fire();
        this.resourcesChanged.fire();
        return true;
      } catch (err) {
        if (err instanceof IsolationRefused || classify(err) !== 'transient') throw err;
        this.serverUnreachable(err, 'register');
        // Registering is how the server's return is first seen: ask as often as a heartbeat would.
        await sleep(Math.min(this.backoff(failures++), this.outageProbeMs), this.stopCtl.signal);
      }
    }
    return false;
  }

  /**
   * The server has forgotten this registration, so the attempts claimed under
   * it are no longer ours: their results would be refused, and the server will
   * hand their cores out again. Kill them and register afresh.
   */
  private reregister(staleId: string): Promise<void> {
    if (this.workerId !== staleId) return this.reregistering ?? Promise.resolve();
    this.workerId = undefined;
    this.claimCtl?.abort();
    this.reregistering = (async () => {
      this.log('warn', 'the server does not know this worker any more; registering again', { worker: staleId });
      for (const slot of this.slots.values()) {
        if (slot.workerId === staleId) this.abandonSlot(slot, 'the registration it was claimed under is gone');
      }
      try {
        await this.register();
      } catch (err) {
        this.fail(err);
      }
    })().finally(() => {
      this.reregistering = undefined;
      this.resourcesChanged.fire();
    });
    return this.reregistering;
  }

  // ---- claiming ------------------------------------------------------------

  private async claimLoop(): Promise<void> {
    let failures = 0;
    let quickEmpty = 0;
    while (!this.stopping) {
      const workerId = this.workerId;
      const cores = Math.floor(this.free.cores);
      if (!workerId || cores < 1) {
        await this.resourcesChanged.wait(undefined, this.stopCtl.signal);
        continue;
      }
      const ctl = new AbortController();
      this.claimCtl = ctl;
      const t0 = Date.now();
      // Results that ended just now go with this claim, which then does not wait:
      // a result must not sit in a long-poll until work turns up.
      const carried = this.outbox.splice(0);
      for (const c of carried) c.taken = true;
      const answers = this.answers;
      try {
        this.log('debug', 'claiming', { max: cores, waitS: this.claimWaitS, results: carried.length });
        const req = carried.length > 0 ? { waitS: 0, max: cores, results: carried.map((c) => c.req) } : { waitS: this.claimWaitS, max: cores };
        const reply = await this.client.claim(workerId, req, ctl.signal);
        this.serverAnswered();
        failures = 0;
        this.settleCarried(carried, reply.results);
        for (const job of reply.jobs) this.launch(job, workerId);
        // A server that answers every claim at once with nothing must not make us spin.
        if (reply.jobs.length === 0 && carried.length === 0 && Date.now() - t0 < Math.min(1000, this.claimWaitS * 500)) {
          await sleep(this.backoff(quickEmpty++), this.stopCtl.signal);
        } else {
          quickEmpty = 0;
        }
      } catch (err) {
        if (this.stopping) break;
        switch (classify(err)) {
          case 'aborted':
            break;
          case 'worker-gone':
            await this.reregister(workerId);
            break;
          case 'transient': {
            // The server answered something else meanwhile: it is back, and the wake-up has fired already.
            if (this.answers !== answers) break;
            this.serverUnreachable(err, 'claim');
            const waitMs = this.backoff(failures++);
            this.log('debug', 'claim failed; waiting before the next', { waitMs: Math.round(waitMs) });
            await this.serverBack.wait(waitMs, this.stopCtl.signal);
            break;
          }
          default:
            this.fail(err);
            return;
        }
      } finally {
        if (this.claimCtl === ctl) this.claimCtl = undefined;
        // Whatever the claim did not settle is sent alone, by the usual path and its retries.
        for (const c of carried) c.settle(false);
      }
    }
  }

  /**
   * Hands a result to the claim loop, to go with its next claim; resolves
   * true once a claim delivered it, false when it is to be sent alone: when
   * a claim is open already (its long-poll would hold the result), when none
   * follows soon, or when the claim failed.
   */
  private carry(slot: Slot, req: ResultRequest): Promise<boolean> {
    if (this.opts.resultsWithClaims === false || this.stopping || this.claimCtl || slot.workerId !== this.workerId) return Promise.resolve(false);
    return new Promise((resolve) => {
      let settled = false;
      const c: Carried = {
        req,
        slot,
        taken: false,
        settle: (delivered) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(delivered);
        },
      };
      const timer = setTimeout(() => {
        if (c.taken) return;
        this.outbox.splice(this.outbox.indexOf(c), 1);
        c.settle(false);
      }, CARRY_WAIT_MS);
      this.outbox.push(c);
      this.resourcesChanged.fire();
    });
  }

  private settleCarried(carried: Carried[], outcomes: ClaimReply['results']): void {
    carried.forEach((c, i) => {
      const o = outcomes?.[i];
      const { jobId, attempt } = c.req;
      if (!o) return c.settle(false);
      if ('error' in o) {
        if (!FINAL_RESULT_CODES.has(o.error.code)) return c.settle(false);
        c.slot.refused = true;
        this.log('warn', 'result refused: the server has settled this attempt without it', { job: jobId, attempt, code: o.error.code, error: o.error.message });
        return c.settle(true);
      }
      this.log('info', 'result delivered', { job: jobId, attempt, state: o.state, duplicate: o.duplicate, withClaim: true });
      c.settle(true);
    });
  }

  private launch(job: ClaimedJob, workerId: string): void {
    const key = `${job.id}#${job.attempt}`;
    if (this.slots.has(key)) {
      this.log('warn', 'claimed an attempt this worker already holds; ignoring the copy', { job: job.id, attempt: job.attempt });
      return;
    }
    if (this.killing) return; // the lease will run out and the job goes back on the queue
    const free = this.free;
    if (job.resources.cores > free.cores || job.resources.memoryMb > free.memoryMb) {
      this.log('warn', 'the server handed out a job larger than what is free here; running it anyway', {
        job: job.id,
        cores: job.resources.cores,
        memoryMb: job.resources.memoryMb,
        freeCores: free.cores,
        freeMemoryMb: free.memoryMb,
      });
    }
    const slot: Slot = { key, job, workerId, phase: 'starting', holds: true, abandoned: false, ctl: new AbortController() };
    this.slots.set(key, slot);
    this.slotAdded.fire();
    void this.guard(this.runSlot(slot));
  }

  // ---- running -------------------------------------------------------------

  private async runSlot(slot: Slot): Promise<void> {
    const { job } = slot;
    let outcome: AttemptOutcome;
    try {
      const run = await startAttempt(
        {
          jobId: job.id,
          attempt: job.attempt,
          project: job.project,
          argv: job.argv,
          shell: job.shell,
          env: job.env,
          resources: job.resources,
          timeoutS: job.timeoutS,
          prepare: job.inputs?.length ? (dir) => fetchInputs(this.client, slot.workerId, job, dir, slot.ctl.signal) : undefined,
        },
        {
          workDir: this.opts.workDir,
          maxLogBytes: this.opts.maxLogBytes,
          // A server that predates killGraceS sends none: the default grace, as its jobs' specs would say.
          killGraceMs: this.opts.killGraceMs ?? (job.killGraceS ?? DEFAULT_KILL_GRACE_S) * 1000,
          confine: this.confine,
          reaper: this.reaper,
          usage: this.usage,
            keepLogsOpen: this.streamer !== undefined,
        },
      );
      slot.run = run;
      if (this.streamer && run.output && !slot.abandoned) {
        this.streamer.add({ jobId: job.id, attempt: job.attempt, workerId: slot.workerId, files: { stdout: run.output.stdout, stderr: run.output.stderr } });
      }
      slot.phase = 'running';
      this.log('info', 'job started', { job: job.id, attempt: job.attempt, project: job.project, pid: run.pid, cores: job.resources.cores });
      this.noticeStart();
      if (slot.abandoned) void run.abandon();
      outcome = await run.done;
      const settleMs = outcome.signal !== null ? this.opts.signalSettleMs : this.opts.exitSettleMs;
      if (settleMs) await sleep(settleMs, this.killCtl.signal);
      if (job.outputs?.length && !slot.abandoned && outcome.how !== 'start-failed') {
        const kept = await keepOutputs(this.client, slot.workerId, job, run.dir, outcome.how === 'exited' && outcome.exitCode === 0);
        if ('failed' in kept) {
          this.log('warn', 'outputs not kept', { job: job.id, attempt: job.attempt, reason: kept.failed });
          outcome = { ...outcome, how: 'output-failed', reason: kept.failed };
        } else if (kept.outputs.length > 0) outcome = { ...outcome, outputs: kept.outputs };
      }
    } catch (err) {
      // The attempt folder could not be made or written: the job never ran.
      const stderr = `cpc-worker: cannot prepare the job: ${(err as Error).message}\n`;
      outcome = {
        how: 'start-failed',
        exitCode: null,
        signal: null,
        durationMs: 0,
        stdout: '',
        stderr,
        stdoutBytes: 0,
        stderrBytes: Buffer.byteLength(stderr),
      };
    }
    // The server has all the output before the result: whoever follows the log
    // sees it whole when the job ends. Before the room is freed, so that the
    // result can still ride on the claim that room opens.
    if (!slot.abandoned) await this.streamer?.flush(slot.key);
    this.streamer?.remove(slot.key);
    slot.holds = false;
    this.resourcesChanged.fire();
    if (!slot.abandoned) {
      this.log('info', 'job finished', {
        job: job.id,
        attempt: job.attempt,
        how: outcome.how,
        exitCode: outcome.exitCode,
        signal: outcome.signal,
        durationMs: outcome.durationMs,
      });
      slot.phase = 'reporting';
      await this.report(slot, outcome);
    }
    await this.forget(slot);
  }

  private abandonSlot(slot: Slot, reason: string): void {
    if (slot.abandoned) return;
    slot.abandoned = true;
    slot.ctl.abort();
    this.log('info', 'abandoning job', { job: slot.job.id, attempt: slot.job.attempt, reason });
    this.streamer?.remove(slot.key);
    if (slot.run) void slot.run.abandon();
  }

  private async forget(slot: Slot): Promise<void> {
    if (this.slots.get(slot.key) !== slot) return;
    this.streamer?.remove(slot.key);
    await slot.run?.output?.close();
    if (!this.opts.keepWorkDirs && slot.run) {
      await slot.run.removeDir().catch((err: Error) => {
        this.log('warn', 'cannot remove an attempt folder', { dir: slot.run!.dir, error: err.message });
      });
    }
    this.slots.delete(slot.key);
    this.slotGone.fire();
    this.resourcesChanged.fire();
    // The server may hold the job back until it hears that this process is gone: tell it now.
    if ((slot.abandoned || slot.refused) && !this.killing) this.heartbeatNow.fire();
  }

  /** A heartbeat soon, naming the attempts that started, unless each has ended or was named started by then. */
  private noticeStart(): void {
    if (this.startNotice) return;
    this.startNotice = setTimeout(() => {
      this.startNotice = undefined;
      for (const s of this.slots.values()) {
        if (s.run && !s.saidStarted && !s.abandoned && s.phase === 'running') return this.heartbeatNow.fire();
      }
    }, this.opts.startNoticeMs ?? 250);
    this.startNotice.unref();
  }

  // ---- results -------------------------------------------------------------

  private async report(slot: Slot, outcome: AttemptOutcome): Promise<void> {
    const { job } = slot;
    const req: ResultRequest = { jobId: job.id, attempt: job.attempt, ...outcome };
    if (await this.carry(slot, req)) return;
    const signal = AbortSignal.any([this.killCtl.signal, slot.ctl.signal]);
    let failures = 0;
    for (;;) {
      if (slot.abandoned || this.killing) return;
      try {
        const reply = await this.client.result(slot.workerId, req);
        this.serverAnswered();
        this.log('info', 'result delivered', { job: job.id, attempt: job.attempt, state: reply.state, duplicate: reply.duplicate });
        return;
      } catch (err) {
        if (slot.abandoned || this.killing) return;
        const code = codeOf(err);
        if (FINAL_RESULT_CODES.has(code)) {
          slot.refused = true;
          this.log('warn', 'result refused: the server has settled this attempt without it', {
            job: job.id,
            attempt: job.attempt,
            code,
            error: (err as Error).message,
          });
          return;
        }
        switch (classify(err)) {
          case 'worker-gone':
            void this.reregister(slot.workerId);
            return;
          case 'fatal':
            this.fail(err);
            return;
          case 'rejected':
            if ((code === 'BODY_TOO_LARGE' || code === 'LOG_TOO_LARGE' || code === 'INVALID_FIELD') && shrinkTails(req)) {
              this.log('warn', 'result refused as too large; sending shorter log tails', { job: job.id, attempt: job.attempt, code });
              continue;
            }
            this.log('error', 'result rejected; giving it up', { job: job.id, attempt: job.attempt, code, error: (err as Error).message });
            return;
          default:
            this.serverUnreachable(err, 'result');
            await this.serverBack.wait(this.backoff(failures++), signal);
        }
      }
    }
  }

  // ---- heartbeats ----------------------------------------------------------

  private async heartbeatLoop(): Promise<void> {
    const signal = this.heartbeatCtl.signal;
    let failures = 0;
    // The first heartbeat goes out at once: it proves the registration works
    // and tells the server about nothing but ourselves.
    let nextMs = 0;
    while (!signal.aborted) {
      await this.heartbeatNow.wait(nextMs, signal);
      if (signal.aborted) break;
      const t0 = Date.now();
      if (await this.heartbeat()) {
        failures = 0;
        nextMs = Math.max(0, this.heartbeatMs - (Date.now() - t0));
      } else {
        // Retry sooner than the interval: after a server restart, leases get
        // only about one interval to hear from their workers.
        // And within a probe's interval, so that the server's return is seen at once.
        nextMs = Math.min(this.backoff(failures++), this.heartbeatMs / 2, this.outageProbeMs);
      }
    }
  }

  /** False when the server could not be reached. */
  private async heartbeat(): Promise<boolean> {
    const workerId = this.workerId;
    if (!workerId) return true;
    // Every attempt whose process may be alive, an abandoned one too until its
    // process group is gone: the server hands its job out again only once
    // this worker stops naming it.
    const slots = [...this.slots.values()].filter((s) => s.workerId === workerId);
    const attempts = slots.map((s) => (s.run ? { jobId: s.job.id, attempt: s.job.attempt, started: true as const } : { jobId: s.job.id, attempt: s.job.attempt }));
    // The same attempts as the heartbeat the server kept: say how many, not which.
    const named = attempts.map((a) => `${a.jobId}#${a.attempt}${'started' in a ? '+' : ''}`).join(' ');
    const same = attempts.length > 0 && named === this.keptHeartbeat;
    try {
      // The latest figures of each running attempt, for `cpcc job` while it runs.
      const usage = slots.flatMap((s) => (s.run?.meter && !s.abandoned ? [{ jobId: s.job.id, attempt: s.job.attempt, usage: s.run.meter.sample() }] : []));
      const body = same ? { same: attempts.length } : { attempts };
      const reply = await this.client.heartbeat(workerId, usage.length > 0 ? { ...body, usage } : body);
      this.serverAnswered();
      if (reply.resend) {
        this.keptHeartbeat = undefined;
        return this.heartbeat();
      }
      this.keptHeartbeat = reply.kept ? named : undefined;
      for (const s of slots) if (s.run) s.saidStarted = true;
      if (reply.heartbeatIntervalS > 0 && reply.heartbeatIntervalS * 1000 !== this.heartbeatMs) {
        this.heartbeatMs = reply.heartbeatIntervalS * 1000;
        this.log('info', 'heartbeat interval changed', { heartbeatIntervalS: reply.heartbeatIntervalS });
      }
      for (const a of reply.abandon) {
        const slot = this.slots.get(`${a.jobId}#${a.attempt}`);
        if (slot && slot.workerId === workerId) this.abandonSlot(slot, a.reason);
      }
      this.log('debug', 'heartbeat', { attempts: attempts.length, abandon: reply.abandon.length });
      return true;
    } catch (err) {
      switch (classify(err)) {
        case 'transient':
          this.serverUnreachable(err, 'heartbeat');
          return false;
        case 'worker-gone':
          void this.reregister(workerId);
          return true;
        case 'aborted':
          return true;
        default:
          this.fail(err);
          return true;
      }
    }
  }

  // ---- control poll --------------------------------------------------------

  /**
   * Keeps one control poll open while this worker runs attempts. The server
   * holds it until one of them must stop and then names it; attempts claimed
   * while it is open join it on the server's side, so it is not sent again for
   * every claim. Attempts whose result is being reported are not named: their
   * processes are gone already.
   */
  private async controlLoop(): Promise<void> {
    const signal = this.heartbeatCtl.signal;
    const waitS = this.opts.controlWaitS ?? this.claimWaitS;
    let failures = 0;
    let quick = 0;
    while (!signal.aborted) {
      const workerId = this.workerId;
      const attempts = [...this.slots.values()]
        .filter((s) => s.workerId === workerId && !s.abandoned && s.phase !== 'reporting')
        .map((s) => ({ jobId: s.job.id, attempt: s.job.attempt }));
      if (!workerId || attempts.length === 0) {
        await this.slotAdded.wait(undefined, signal);
        continue;
      }
      const t0 = Date.now();
      try {
        const reply = await this.client.control(workerId, { attempts, waitS }, signal);
        this.serverAnswered();
        failures = 0;
        let acted = 0;
        for (const a of reply.abandon) {
          const slot = this.slots.get(`${a.jobId}#${a.attempt}`);
          if (slot && slot.workerId === workerId && !slot.abandoned) {
            this.abandonSlot(slot, a.reason);
            acted++;
          }
        }
        // A server that answers at once with nothing for us to do must not make us spin.
        if (acted === 0 && Date.now() - t0 < Math.min(1000, waitS * 500)) await sleep(this.backoff(quick++), signal);
        else quick = 0;
      } catch (err) {
        if (signal.aborted) break;
        switch (classify(err)) {
          case 'aborted':
            break;
          case 'worker-gone':
            await this.reregister(workerId);
            break;
          case 'fatal':
            this.fail(err);
            return;
          case 'rejected':
            if (codeOf(err) === 'ROUTE_NOT_FOUND') {
              this.log('info', 'the server has no control polls: attempts to stop are heard of with heartbeats');
              return;
            }
            this.log('warn', 'control poll refused', { code: codeOf(err), error: (err as Error).message });
            await sleep(this.backoff(failures++), signal);
            break;
          default:
            await this.serverBack.wait(this.backoff(failures++), signal);
        }
      }
    }
  }

  // ---- server reachability -------------------------------------------------

  private serverUnreachable(err: unknown, during: string): void {
    if (this.outage) return;
    this.outage = true;
    this.log('warn', 'cannot reach the server; retrying', { during, code: codeOf(err), error: (err as Error).message });
  }

  private serverAnswered(): void {
    this.answers++;
    if (!this.outage) return;
    this.outage = false;
    this.log('info', 'the server answers again');
    this.heartbeatNow.fire();
    this.serverBack.fire();
  }

  private backoff(failures: number): number {
    const base = Math.min(this.retryMaxMs, this.retryMinMs * 2 ** Math.min(failures, 30));
    return base / 2 + Math.random() * (base / 2);
  }

  // ---- stopping ------------------------------------------------------------

  private async shutdown(drain: boolean): Promise<void> {
    this.stopping = true;
    this.stopCtl.abort();
    // Hanging up on the open claim could lose jobs the server had just
    // handed out. So a drain asks the server to answer it now, and runs what
    // that answer brings; only when the server cannot be asked is it cut off.
    if (drain) {
      this.log('info', 'draining: finishing the open claim and the running jobs', { jobs: this.slots.size });
      const workerId = this.workerId;
      if (workerId && this.claimCtl) {
        await this.client.release(workerId).catch(() => this.claimCtl?.abort());
      }
    } else {
      this.claimCtl?.abort();
    }
    await this.claimLoopDone;
    await this.reregistering;
    while (this.slots.size > 0) await this.slotGone.wait();
    this.heartbeatCtl.abort();
    await this.heartbeatLoopDone;
    await this.controlLoopDone;
    // Said, the server lists this worker as stopped at once rather than as lost a lease later.
    if (this.workerId && this.fatalError === undefined) await this.client.workerStopped(this.workerId).catch(() => {});
    this.end();
  }

  private killAll(): void {
    if (this.killing) return;
    this.killing = true;
    this.stopping = true;
    this.stopCtl.abort();
    this.killCtl.abort();
    this.claimCtl?.abort();
    for (const slot of this.slots.values()) {
      const reporting = slot.phase === 'reporting';
      this.abandonSlot(slot, 'the worker is stopping');
      // A result upload in flight cannot be cut short; the job is done here,
      // so it need not be waited for.
      if (reporting) void this.forget(slot);
    }
  }

  /** Anything the worker cannot get past: stop at once, and let wait() reject. */
  private fail(err: unknown): void {
    if (this.fatalError === undefined) {
      this.fatalError = err;
      this.log('error', 'stopping: the server refuses this worker', { code: codeOf(err), error: (err as Error).message });
    }
    void this.stop({ drain: false });
  }

  private guard(p: Promise<void>): Promise<void> {
    return p.catch((err: unknown) => {
      this.log('error', 'internal error', { error: (err as Error)?.stack ?? String(err) });
      this.fail(err);
    });
  }

  private end(): void {
    clearInterval(this.idleTimer);
    clearTimeout(this.startNotice);
    this.streamer?.stop();
    this.reaper?.close();
    if (this.fatalError !== undefined) this.endedReject(this.fatalError);
    else this.endedResolve();
  }
}

/** Cuts both tails to a quarter; false when they are already as short as they go. */
function shrinkTails(req: ResultRequest): boolean {
  if (Math.max(req.stdout.length, req.stderr.length) <= MIN_TAIL_CHARS) return false;
  const cut = (s: string): string => {
    if (s.length <= MIN_TAIL_CHARS) return s;
    let t = s.slice(-Math.max(MIN_TAIL_CHARS, Math.floor(s.length / 4)));
    // Do not start with the second half of a surrogate pair.
    const c = t.charCodeAt(0);
    if (c >= 0xdc00 && c <= 0xdfff) t = t.slice(1);
    return t;
  };
  req.stdout = cut(req.stdout);
  req.stderr = cut(req.stderr);
  return true;
}
