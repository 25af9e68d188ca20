import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { PilotView, LauncherView, PilotsView } from '../../core/wire.js';
import type { Logger } from '../../common/logger.js';
import type { LauncherConfig } from './config.js';
import { pilotDemand, type Room, type ShapeCount } from './demand.js';
import { LauncherError, renderTemplate, shellQuote, type BatchStatus, type Launcher } from './launcher.js';
import { LIVE_STATES, PilotStore, type PilotRecord, type PilotState } from './pilot-store.js';
import { SlurmLauncher } from './slurm.js';
import { SgeLauncher } from './sge.js';

/**
 * Demand-driven pilots. For each configured launcher, every `pollS`:
 *
 *  1. ask the batch system about the pilots that are live, and settle those
 *     it has ended, or that went wrong (never registered, fell silent, waited
 *     in the queue too long): their token is revoked, their worker removed
 *     (which re-queues its attempts, as for any lost worker), their batch job
 *     cancelled if it may still run;
 *  2. look at the queue: jobs that neither a connected worker nor a pilot on
 *     its way has room for are demand, and while there is demand and fewer
 *     than `maxPilots` pilots are live, submit more. A pilot is a cpc-worker
 *     with a one-time token that expires with it; it exits by itself after
 *     `idleExitS` with nothing to run, so an empty queue lets pilots drain away.
 *
 * A refused submission is logged, shown in `cpcc pilots`, and retried after a
 * back-off that doubles up to ten minutes. Rounds of all launchers run one at
 * a time, so that each sees the pilots the others have just submitted.
 */

/** What the manager needs of the server, and nothing more. */
export interface PilotHost {
  /** Where pilots.json and (by default) the pilot folders go. */
  home: string;
  launchers: readonly LauncherConfig[];
  /** The URL pilots reach the server by, unless a launcher names its own. */
  serverUrl(): string;
  serverId: string;
  caPem: string;
  /** A worker silent this long has lost its leases; its pilot is given up. */
  leaseMs: number;
  log: Logger;
  /** Queued jobs by resource shape. */
  queuedShapes(): ShapeCount[];
  /** The registered workers, with the token they registered with, their free room and when they were last heard. */
  workers(): HostWorker[];
  issueToken(name: string, expiresAt: number): Promise<{ token: string; tokenId: string }>;
  /** Revokes a worker token; one that is gone already is no error. */
  revokeToken(tokenId: string): Promise<void>;
  /** Deletes revoked worker tokens, once their pilots have left the history. */
  forgetTokens(tokenIds: readonly string[]): Promise<void>;
  /** Forgets a worker; its running attempts are lost and their jobs re-queued. */
  removeWorker(workerId: string, reason: string): Promise<void>;
  /** The command that starts cpc-worker on a batch node (a launcher's workerCommand wins). */
  workerCommand: readonly string[];
  /** For tests: launchers that are not the real ones. */
  makeLauncher?(config: LauncherConfig): Launcher;
}

export interface HostWorker {
  id: string;
  tokenId: string;
  free: Room;
  registeredAt: number;
  lastSeen: number;
}

interface Active {
  config: LauncherConfig;
  launcher: Launcher;
  nextRoundAt: number;
  failures: number;
  retryAt: number;
  lastError: string | null;
  waiting: number;
  /** The batch system could not be asked last time (logged once per streak). */
  statusFailing: boolean;
}

/** Token validity past the longest a pilot can live, for clocks and slow starts. */
const TOKEN_MARGIN_S = 600;
const MAX_BACKOFF_MS = 10 * 60_000;

export class PilotManager {
  private readonly active: Active[];
  private timer: NodeJS.Timeout | null = null;
  private round: Promise<void> = Promise.resolve();
  private stopped = false;

  private constructor(
    private readonly host: PilotHost,
    private readonly store: PilotStore,
  ) {
    this.active = host.launchers.map((config) => ({
      config,
      launcher: host.makeLauncher?.(config) ?? makeLauncher(config),
      nextRoundAt: 0,
      failures: 0,
      retryAt: 0,
      lastError: null,
      waiting: 0,
      statusFailing: false,
    }));
  }

  static async open(host: PilotHost): Promise<PilotManager> {
    const store = await PilotStore.open(join(host.home, 'pilots.json'));
    return new PilotManager(host, store);
  }

  /** Starts the rounds. Pilots recorded before a restart are picked up where they were. */
  start(): void {
    if (this.active.length === 0 || this.timer) return;
    const everyMs = Math.max(100, Math.min(1000, ...this.active.map((a) => (a.config.pollS * 1000) / 2)));
    this.timer = setInterval(() => void this.tick(), everyMs);
    this.timer.unref();
    void this.tick();
  }

  /** Stops submitting and asking; pilots keep running and are picked up again at the next start. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.round;
  }

  /** One round for every launcher that is due (all of them when `force`). Rounds never overlap. */
  tick(force = false): Promise<void> {
    this.round = this.round.then(async () => {
      for (const a of this.active) {
        if (this.stopped) return;
        const now = Date.now();
        if (!force && now < a.nextRoundAt) continue;
        a.nextRoundAt = now + a.config.pollS * 1000;
        try {
          await this.roundOf(a);
        } catch (err) {
          // A failure of one round (a full disk, say) must not stop the next.
          this.host.log.error('pilot round failed', { launcher: a.config.name, err: String((err as Error)?.stack ?? err) });
        }
      }
    });
    return this.round;
  }

  view(): PilotsView {
    const now = Date.now();
    return {
      launchers: this.active.map((a) => ({
        name: a.config.name,
        kind: a.config.kind,
        partition: a.config.partition ?? null,
        maxPilots: a.config.maxPilots,
        live: this.store.live(a.config.name).length,
        failures: a.failures,
        lastError: a.lastError,
        retryAt: a.retryAt > now ? a.retryAt : null,
        waiting: a.waiting,
      })),
      pilots: [...this.store.all()]
        .sort((x, y) => y.submittedAt - x.submittedAt)
        .map((p) => ({
          id: p.id,
          launcher: p.launcher,
          kind: p.kind,
          state: p.state,
          batchId: p.batchId,
          batchState: p.batchState,
          workerId: p.workerId,
          cores: p.cores,
          memoryMb: p.memoryMb,
          submittedAt: p.submittedAt,
          startedAt: p.startedAt,
          endedAt: p.endedAt,
          lastError: p.lastError,
          failures: p.failures,
        })),
    };
  }

  // ---- one round -------------------------------------------------------------------

  private async roundOf(a: Active): Promise<void> {
    await this.follow(a);
    if (this.stopped) return;
    await this.grow(a);
  }

  /** Brings the live pilots of a launcher up to date with the batch system and the workers. */
  private async follow(a: Active): Promise<void> {
    const live = this.store.live(a.config.name);
    if (live.length === 0) return;
    const now = Date.now();
    // A record without a batch id was being submitted when the server stopped.
    for (const p of live.filter((p) => p.batchId === null)) {
      await this.finish(a, p.id, 'failed', 'the server stopped while submitting it', false);
    }
    const ids = live.flatMap((p) => (p.batchId === null ? [] : [p.batchId]));
    let statuses: Map<string, BatchStatus> | null = null;
    try {
      statuses = await a.launcher.status(ids);
      if (a.statusFailing) this.host.log.info('the batch system answers again', { launcher: a.config.name });
      a.statusFailing = false;
    } catch (err) {
      const message = messageOf(err);
      if (!a.statusFailing) this.host.log.warn('cannot ask the batch system about pilots; will try again', { launcher: a.config.name, error: message });
      a.statusFailing = true;
      a.lastError = `cannot ask the batch system: ${message}`;
    }
    const workers = this.host.workers();
    for (const p of live) {
      if (p.batchId === null) continue;
      const worker = newestOf(workers.filter((w) => w.tokenId === p.tokenId));
      const status = statuses?.get(p.batchId);
      if (statuses && !status) {
        await this.finish(a, p.id, 'ended', 'the batch system no longer lists it', false, 'gone');
        continue;
      }
      if (status) {
        const patch: Partial<PilotRecord> = {};
        if (status.raw !== p.batchState) patch.batchState = status.raw;
        switch (status.phase) {
          case 'done':
            await this.finish(a, p.id, 'ended', null, false, status.raw);
            continue;
          case 'killed':
            await this.finish(a, p.id, 'cancelled', `the batch system ended it (${status.raw})`, false, status.raw);
            continue;
          case 'failed':
            // Cancelled as well: Grid Engine keeps a job in error state in its queue until it is deleted.
            await this.finish(a, p.id, 'failed', `the batch job failed (${status.raw}${status.reason ? `: ${status.reason}` : ''})`, true, status.raw);
            continue;
          case 'queued':
            if (p.state === 'queued' && now - p.submittedAt > a.config.queueTimeoutS * 1000) {
              await this.finish(a, p.id, 'failed', `it waited in the batch queue longer than ${a.config.queueTimeoutS} s${status.reason ? ` (${status.reason})` : ''}`, true, status.raw);
              continue;
            }
            break;
          case 'running':
            if (p.state === 'queued') {
              patch.state = 'starting';
              patch.startedAt = now;
            }
            break;
        }
        if (Object.keys(patch).length > 0) await this.store.update(p.id, patch);
      }
      const current = this.store.get(p.id)!;
      if (worker && current.workerId !== worker.id) {
        await this.store.update(p.id, { state: 'running', workerId: worker.id, registeredAt: worker.registeredAt, startedAt: current.startedAt ?? worker.registeredAt });
        this.host.log.info('pilot registered', { launcher: a.config.name, pilot: p.id, batchId: p.batchId, worker: worker.id });
        continue;
      }
      if (current.state === 'starting' && !worker && now - (current.startedAt ?? now) > a.config.startTimeoutS * 1000) {
        await this.finish(a, p.id, 'failed', `its worker did not register within ${a.config.startTimeoutS} s of starting; see ${join(p.dir, a.launcher.outputName(p.batchId))}`, true);
        continue;
      }
      if (current.state === 'running' && worker && now - worker.lastSeen > this.host.leaseMs) {
        await this.finish(a, p.id, 'lost', `its worker sent no heartbeat for ${Math.round((now - worker.lastSeen) / 1000)} s`, true);
      }
    }
  }

  /** Submits pilots while jobs wait that nothing has room for. */
  private async grow(a: Active): Promise<void> {
    const { config } = a;
    const room = config.maxPilots - this.store.live(config.name).length;
    const shapes = this.host.queuedShapes();
    const now = Date.now();
    const workers = this.host.workers();
    const connected = workers.filter((w) => now - w.lastSeen <= this.host.leaseMs);
    // Pilots on their way, of every launcher: they will take jobs soon. One whose worker
    // registered since the last look is counted as that worker already.
    const registered = new Set(workers.map((w) => w.tokenId));
    const coming = this.store
      .all()
      .filter((p) => (p.state === 'queued' || p.state === 'starting') && !(p.tokenId && registered.has(p.tokenId)))
      .map((p) => ({ cores: p.cores, memoryMb: p.memoryMb }));
    const demand = pilotDemand(shapes, connected.map((w) => w.free), coming, { cores: config.cores, memoryMb: config.memoryMb }, Math.max(0, room));
    a.waiting = demand.waiting;
    if (demand.pilots === 0 || now < a.retryAt) return;
    this.host.log.info('submitting pilots', { launcher: config.name, pilots: demand.pilots, waiting: demand.waiting });
    for (let i = 0; i < demand.pilots && !this.stopped; i++) {
      if (!(await this.submit(a))) break;
    }
  }

  /** Submits one pilot; false when the batch system refused it (the back-off is set). */
  private async submit(a: Active): Promise<boolean> {
    const { config } = a;
    const id = randomBytes(6).toString('hex');
    const dir = join(config.stageDir ?? join(this.host.home, 'pilots'), id);
    const name = `pilot-${config.name}-${id}`;
    const now = Date.now();
    const { token, tokenId } = await this.host.issueToken(name, now + (config.queueTimeoutS + config.wallTimeS + TOKEN_MARGIN_S) * 1000);
    const record: PilotRecord = {
      id,
      launcher: config.name,
      kind: config.kind,
      state: 'queued',
      batchId: null,
      batchState: null,
      tokenId,
      workerId: null,
      cores: config.cores,
      memoryMb: config.memoryMb,
      wallTimeS: config.wallTimeS,
      dir,
      submittedAt: now,
      startedAt: null,
      registeredAt: null,
      endedAt: null,
      lastError: null,
      failures: 0,
    };
    // Recorded before the batch system hears of it, so a crash in between leaves a trace that is cleaned up.
    await this.forget(await this.store.add(record));
    let batchId: string;
    try {
      await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
      const tokenFile = join(dir, 'token');
      const caFile = join(dir, 'ca.pem');
      await fsp.writeFile(tokenFile, token + '\n', { mode: 0o600 });
      await fsp.writeFile(caFile, this.host.caPem, { mode: 0o600 });
      const vars = {
        cores: config.cores,
        memoryMb: config.memoryMb,
        memoryGb: Math.ceil(config.memoryMb / 1024),
        wallTimeS: config.wallTimeS,
        wallTimeMin: Math.max(1, Math.ceil(config.wallTimeS / 60)),
        partition: config.partition ?? '',
        account: config.account ?? '',
        launcher: config.name,
        pilotId: id,
        jobName: `cpc-${name}`,
      };
      const worker = [
        ...(config.workerCommand ?? this.host.workerCommand),
        '--server', config.serverUrl ?? this.host.serverUrl(),
        '--ca', caFile,
        '--server-id', this.host.serverId,
        '--token-file', tokenFile,
        '--cores', String(config.cores),
        '--memory', String(config.memoryMb),
        '--name', name,
        '--work-dir', join(dir, 'work'),
        '--idle-exit', String(config.idleExitS),
        '--on-term', 'abandon',
      ];
      batchId = await a.launcher.submit({
        jobName: vars.jobName,
        cores: config.cores,
        memoryMb: config.memoryMb,
        wallTimeS: config.wallTimeS,
        partition: config.partition,
        account: config.account,
        directives: config.directives.map((d) => renderTemplate(d, vars)),
        // The worker reads the token from its file: it shows neither in the script, nor in ps, nor in /proc/<pid>/environ.
        commands: [`exec ${worker.map(shellQuote).join(' ')}`],
        dir,
      });
    } catch (err) {
      await this.refused(a, id, messageOf(err));
      return false;
    }
    await this.store.update(id, { batchId, batchState: 'submitted' });
    a.failures = 0;
    a.retryAt = 0;
    a.lastError = null;
    this.host.log.info('pilot submitted', { launcher: config.name, kind: config.kind, pilot: id, batchId });
    return true;
  }

  /** A submission the batch system refused: the pilot is over before it began, and the launcher backs off. */
  private async refused(a: Active, id: string, message: string): Promise<void> {
    const { config } = a;
    try {
      const p = this.store.get(id);
      if (p?.tokenId) await this.host.revokeToken(p.tokenId);
      // Nothing ran: the folder holds only the script and the secrets.
      if (p) await fsp.rm(p.dir, { recursive: true, force: true });
      // The same refusal again is folded into the record of the last one instead of filling the list.
      const newest = this.store
        .all()
        .filter((x) => x.launcher === config.name && x.id !== id)
        .sort((x, y) => y.submittedAt - x.submittedAt)[0];
      if (newest && newest.state === 'failed' && newest.batchId === null && newest.lastError === message) {
        await this.store.update(newest.id, { failures: newest.failures + 1, endedAt: Date.now() });
        await this.store.remove(id);
        if (p?.tokenId) await this.host.forgetTokens([p.tokenId]);
      } else {
        await this.forget(await this.store.update(id, { state: 'failed', endedAt: Date.now(), lastError: message, failures: 1 }));
      }
    } finally {
      // After the record, so that what is shown agrees; in any case, so that a failing disk cannot make it retry at once.
      a.failures++;
      const base = Math.max(5000, config.pollS * 1000);
      const delayMs = Math.min(MAX_BACKOFF_MS, base * 2 ** Math.min(a.failures - 1, 20));
      a.retryAt = Date.now() + delayMs;
      a.lastError = message;
      this.host.log.error('pilot submission failed; will try again', {
        launcher: config.name,
        kind: config.kind,
        error: message,
        failures: a.failures,
        retryInS: Math.round(delayMs / 1000),
      });
    }
  }

  /**
   * Ends a pilot: its token is revoked and its worker removed (its attempts
   * are lost and their jobs re-queued), its batch job cancelled when it may
   * still run, and its secrets deleted.
   */
  private async finish(a: Active, id: string, state: PilotState, error: string | null, cancel: boolean, batchState?: string): Promise<void> {
    const p = this.store.get(id);
    if (!p || !LIVE_STATES.has(p.state)) return;
    let lastError = error;
    if (cancel && p.batchId !== null) {
      try {
        await a.launcher.cancel(p.batchId);
      } catch (err) {
        lastError = `${error}; cancelling its batch job failed: ${messageOf(err)}`;
      }
    }
    if (p.tokenId) await this.host.revokeToken(p.tokenId);
    const reason = `pilot ${p.id} (batch job ${p.batchId ?? 'none'}) ${state}${error ? `: ${error}` : ''}`;
    for (const w of this.host.workers().filter((w) => w.tokenId === p.tokenId)) await this.host.removeWorker(w.id, reason);
    await fsp.rm(join(p.dir, 'token'), { force: true });
    await fsp.rm(join(p.dir, 'work'), { recursive: true, force: true });
    await this.forget(await this.store.update(id, { state, endedAt: Date.now(), lastError, ...(batchState ? { batchState } : {}) }));
    const fields = { launcher: p.launcher, pilot: p.id, batchId: p.batchId, state, worker: p.workerId ?? undefined, error: lastError ?? undefined };
    if (state === 'ended') this.host.log.info('pilot ended', fields);
    else this.host.log.warn(`pilot ${state}`, fields);
  }

  /** Pilots that fell out of the history: their folders and their (revoked) tokens go. */
  private async forget(dropped: PilotRecord[]): Promise<void> {
    if (dropped.length === 0) return;
    for (const p of dropped) await fsp.rm(p.dir, { recursive: true, force: true }).catch(() => {});
    await this.host.forgetTokens(dropped.flatMap((p) => (p.tokenId ? [p.tokenId] : [])));
  }
}

export function makeLauncher(config: LauncherConfig): Launcher {
  switch (config.kind) {
    case 'slurm':
      return new SlurmLauncher({ binDir: config.binDir, env: config.env });
    case 'sge':
      return new SgeLauncher({ binDir: config.binDir, env: config.env, parallelEnvironment: config.parallelEnvironment, memoryResource: config.memoryResource });
  }
}

function newestOf(workers: HostWorker[]): HostWorker | undefined {
  return workers.sort((x, y) => y.registeredAt - x.registeredAt)[0];
}

function messageOf(err: unknown): string {
  if (err instanceof LauncherError) return err.message;
  return err instanceof Error ? err.message : String(err);
}
