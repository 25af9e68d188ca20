/**
 * server/federation: the server side of the mesh. Delegation (this file), the peer TLS edge,
 * the unsecure listener's handshake routes, and the peer routes.
 * May call: src/federation (links, trust store, handshake), src/core, server/http, server/jobs
 * (store, dispatcher, control, results). Writes foreign-claimed, foreign-finished, foreign-closed,
 * leases-renewed, claims-returned, attempts-lost, attempts-stopped. Receives narrow services (DelegationServices),
 * not the whole Context.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { z } from 'zod';
import { mustStop, planClaim, planStoppedByPeer, renewedAttempts, renewLeases } from '../../core/commands.js';
import { fail } from '../../core/errors.js';
import type { ForeignAttempt } from '../../core/model.js';
import type { Resources } from '../../core/types.js';
import type { ClaimedJob, LogChunk, LogChunkOutcome, ResultReply, ResultRequest } from '../../core/wire.js';
import { anyFits, type Shape } from '../../federation/link.js';
import type { LinkManager, PeerDirectory } from '../../federation/links.js';
import type { Logger } from '../../common/logger.js';
import type { Store } from '../jobs/store.js';
import type { Grant, RemoteWork } from '../jobs/dispatcher.js';
import type { Control, HeldAttempt, StopOrder } from '../jobs/control.js';
import { acceptLogChunks, acceptResult, type LogChunkServices, type ResultServices } from '../jobs/results.js';
import { check } from '../http/schemas.js';
import { logChunksSchema, resultSchema } from '../jobs/schemas.js';
import { claimedJob } from '../jobs/views.js';

/**
 * Worker delegation between trusted servers.
 *
 * Asking side: when none of this server's jobs fits an idle worker, it asks
 * the peers that announced fitting work, in the admin's priority order, for
 * jobs. The worker talks only to this server; its heartbeats renew this
 * server's own deadline for each foreign attempt, this server renews the home
 * server's lease over the link, and the result goes home through a durable
 * outbox (kept across restarts until home takes it). A control call kept
 * open to each home hears at once of attempts that must stop.
 *
 * Home side: a peer's calls over the link are served against the same model
 * as local workers, with the peer's id as the lease's `via`; a peer can only
 * heartbeat, finish or return attempts leased to it.
 */

const uuid = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
const resources = z.strictObject({ cores: z.int().min(1).max(4096), memoryMb: z.int().min(0).max(64 * 1024 * 1024) });
const claimCall = z.strictObject({ workerId: uuid, workerName: z.string().min(1).max(128), free: resources, max: z.int().min(1).max(4096) });
const attemptsCall = z.strictObject({
  attempts: z.array(z.strictObject({ jobId: uuid, attempt: z.int().min(1), workerId: uuid, started: z.boolean().optional() })).max(100_000),
});
const resultCall = z.strictObject({ workerId: uuid, result: z.unknown() });
const logsCall = z.strictObject({ workerId: uuid, chunks: z.unknown() });
const controlCall = attemptsCall.extend({ waitS: z.number().min(0).max(300) });

/** How long home may hold a control call; the call itself gives up a little later. */
const CONTROL_WAIT_S = 25;

/**
 * A delegated attempt is stopped here once home has not taken a renewal
 * for this share of its lease: renewals go out every third of it, so only
 * a link that failed twice in a row gets there, and the rest of the lease
 * leaves time for the worker to be told and the process to go before home
 * gives the job to another.
 */
const FENCE_SHARE = 0.6;

/** Why a worker must drop a foreign attempt that is not, or no longer, its own here. */
const NOT_HELD = 'no longer leased to this worker';

interface PeerClaimReply {
  jobs: ClaimedJob[];
}

interface PeerHeartbeatReply {
  abandon: { jobId: string; attempt: number; reason: string }[];
}

/** Home's answer to a control call: the attempts to stop now. */
type PeerControlReply = PeerHeartbeatReply;

/** What delegation uses: the journal and model, result taking, the dispatcher to wake, and the lease length. */
export interface DelegationServices extends ResultServices {
  store: Store;
  control: Pick<Control, 'watch' | 'recheck'>;
  logs: ResultServices['logs'] & LogChunkServices['logs'];
  config: Parameters<typeof resultSchema>[0];
  leaseMs: number;
  log: Logger;
}

/** How long a peer worker's offer counts for `why` after it last asked for work. */
const OFFER_KEPT_MS = 10 * 60_000;

export class Delegation implements RemoteWork {
  links: LinkManager | undefined;
  directory: PeerDirectory | undefined;
  /** Attempts home told us to drop, waiting for their worker's next heartbeat. */
  private readonly abandon = new Map<string, { jobId: string; attempt: number; reason: string }[]>();
  /** Foreign attempts home said to drop whose worker has not yet confirmed their process gone (see ForeignAttempt.stopping). */
  private readonly stoppingForeign = new Set<string>();
  /** When home's leases were last renewed, per home, on the monotonic clock. */
  private readonly lastRenewal = new Map<string, number>();
  /**
   * When home last took a renewal of each foreign attempt (`job#attempt`),
   * on the monotonic clock: a step of the wall clock must not look like
   * a lease running out.
   */
  private readonly renewedAt = new Map<string, number>();
  /** Each home's lease length, as its last hello said. */
  private readonly homeLeaseMs = new Map<string, number>();
  private readonly delivering = new Set<string>();
  /** Homes with a control call open (see watchHome). */
  private readonly watching = new Set<string>();
  /** Homes that do not know control calls: their heartbeat replies carry what to drop. */
  private readonly noControl = new Set<string>();

  /** The free room peers' workers last asked for work with, by peer and worker, with when (for `why`). */
  private readonly offered = new Map<string, { free: Resources; at: number }>();

  /** What peers' workers offered in the last OFFER_KEPT_MS: the room each last asked for work with. */
  offers(now = Date.now()): Resources[] {
    const out: Resources[] = [];
    for (const [key, o] of this.offered) {
      if (now - o.at > OFFER_KEPT_MS) this.offered.delete(key);
      else out.push(o.free);
    }
    return out;
  }

  constructor(private readonly ctx: DelegationServices) {
    // A job borrowed from a home is watched from the moment it is ours.
    ctx.store.onEvent((e) => {
      if (e.t === 'foreign-claimed') setImmediate(() => this.watchHome(e.home));
    });
  }

  // ---- asking side ---------------------------------------------------------

  fits(free: Resources): boolean {
    if (!this.links || !this.directory) return false;
    for (const peer of this.directory.peers()) if (anyFits(this.links.shapes(peer.serverId), free)) return true;
    return false;
  }

  async ask(workerId: string, free: Resources, max: number): Promise<Grant | null> {
    if (!this.links || !this.directory) return null;
    const worker = this.ctx.store.model.workers.get(workerId);
    if (!worker) return null;
    for (const peer of this.directory.peers()) {
      const link = this.links.link(peer.serverId);
      if (!link || !anyFits(link.shapes, free)) continue;
      let reply: PeerClaimReply;
      try {
        reply = await link.call<PeerClaimReply>('claim', { workerId, workerName: worker.name, free, max });
      } catch (err) {
        this.ctx.log.debug('peer claim failed', { peer: peer.serverId, err: String(err) });
        continue;
      }
      if (!Array.isArray(reply?.jobs) || reply.jobs.length === 0) continue;
      return this.grant(peer.serverId, workerId, reply.jobs);
    }
    return null;
  }

  private grant(home: string, workerId: string, jobs: ClaimedJob[]): Grant {
    const now = Date.now();
    const claims = jobs.map((j) => ({ jobId: j.id, attempt: j.attempt, resources: j.resources, ...(typeof j.project === 'string' ? { project: j.project } : {}) }));
    const durable = this.ctx.store.commit({ t: 'foreign-claimed', at: now, home, workerId, deadline: now + this.ctx.leaseMs, claims });
    return {
      jobs,
      durable,
      giveBack: async () => {
        const attempts = claims.map((c): [string, number] => [c.jobId, c.attempt]);
        await this.ctx.store.commit({ t: 'foreign-closed', at: Date.now(), attempts, reason: 'claim not delivered' });
        await this.links
          ?.link(home)
          ?.call('return', { attempts: claims.map((c) => ({ jobId: c.jobId, attempt: c.attempt, workerId })) })
          .catch(() => {});
      },
    };
  }

  /**
   * A worker's heartbeat for foreign attempts (`attempts`: all the foreign
   * ones it names, in a heartbeat that names everything it runs): renews
   * this server's deadline for the ones it still holds, and hands back what
   * home said to drop. One home said to drop stays, renewed, while the worker
   * names it (its process runs); once the worker, having named it, names it
   * no more, its process is gone: it is closed and home is told it stopped.
   */
  heartbeat(
    workerId: string,
    attempts: { jobId: string; attempt: number; started?: boolean }[],
    deadline: number,
  ): { abandon: { jobId: string; attempt: number; reason: string }[]; stopping: [string, number][] } {
    const out: { jobId: string; attempt: number; reason: string }[] = [];
    const stopping: [string, number][] = [];
    const named = this.stoppingForeign.size > 0 ? new Set<string>() : undefined;
    for (const { jobId, attempt, started } of attempts) {
      const f = this.heldBy(workerId, jobId, attempt);
      if (f) {
        if (f.deadline < deadline) f.deadline = deadline;
        f.listed = true;
        if (started === true) f.running = true;
        named?.add(jobId);
        if (f.stopping !== undefined && f.result === undefined) {
          out.push({ jobId, attempt, reason: f.stopping });
          stopping.push([jobId, attempt]);
        }
      } else {
        out.push({ jobId, attempt, reason: NOT_HELD });
      }
    }
    if (named) this.confirmStopped(workerId, named);
    // What home said to drop carries home's reason; it goes first.
    const pending = this.abandon.get(workerId) ?? [];
    this.abandon.delete(workerId);
    return { abandon: [...pending, ...out], stopping };
  }

  /** Stopping foreign attempts of a worker that it named before and not in this heartbeat: closed here, and home is told. */
  private confirmStopped(workerId: string, named: Set<string>): void {
    const model = this.ctx.store.model;
    const gone: ForeignAttempt[] = [];
    for (const jobId of this.stoppingForeign) {
      const f = model.foreign.get(jobId);
      if (!f || f.stopping === undefined || f.result !== undefined) {
        this.stoppingForeign.delete(jobId);
        continue;
      }
      if (f.workerId !== workerId || !f.listed || named.has(jobId)) continue;
      this.stoppingForeign.delete(jobId);
      gone.push(f);
    }
    if (gone.length === 0) return;
    void this.close(gone, 'stopped on home\'s word')
      .then(() => this.ctx.dispatcher.kick())
      .catch(() => {});
    for (const [home, list] of groupBy(gone, (f) => f.home)) {
      // If home cannot be told, its lease for the attempt, no longer renewed, runs out.
      void this.links
        ?.link(home)
        ?.call('stopped', { attempts: list.map(attemptRef) })
        .catch(() => {});
    }
  }

  /** A worker's result for a foreign attempt: kept durably here, then delivered home. */
  async result(workerId: string, body: ResultRequest): Promise<ResultReply> {
    const f = this.heldBy(workerId, body.jobId, body.attempt);
    if (!f) {
      throw fail('STALE_ATTEMPT', `attempt ${body.attempt} of job ${body.jobId} is not this worker's`);
    }
    if (f.result !== undefined) return { accepted: true, duplicate: true, state: 'running' };
    await this.ctx.store.commit({ t: 'foreign-finished', at: Date.now(), jobId: body.jobId, attempt: body.attempt, result: body });
    this.ctx.dispatcher.kick();
    const delivered = await this.deliver(f);
    return delivered ?? { accepted: true, duplicate: false, state: 'running' };
  }

  /**
   * Live output of foreign attempts: passed home as it comes, one call per
   * home, and home's answers passed back (STALE_ATTEMPT from home included).
   * Nothing is kept here: while home cannot be reached, the worker's file
   * is the buffer, and the result's tails fill in what never got through.
   */
  async logs(workerId: string, chunks: LogChunk[]): Promise<LogChunkOutcome[]> {
    const model = this.ctx.store.model;
    const out: LogChunkOutcome[] = new Array(chunks.length);
    const byHome = new Map<string, number[]>();
    chunks.forEach((c, i) => {
      const f = model.foreign.get(c.jobId);
      if (!f || f.workerId !== workerId || f.attempt !== c.attempt || f.result !== undefined) {
        out[i] = { error: { code: 'STALE_ATTEMPT', message: `attempt ${c.attempt} of job ${c.jobId} is not running on this worker` } };
        return;
      }
      byHome.set(f.home, [...(byHome.get(f.home) ?? []), i]);
    });
    await Promise.all(
      [...byHome].map(async ([home, idx]) => {
        const link = this.links?.link(home);
        let results: LogChunkOutcome[] | undefined;
        let failure = `the job's home server ${home} cannot be reached`;
        if (link) {
          try {
            const reply = await link.call<{ results: LogChunkOutcome[] }>('logs', { workerId, chunks: idx.map((i) => chunks[i]) }, 30_000);
            if (Array.isArray(reply?.results) && reply.results.length === idx.length) results = reply.results;
          } catch (err) {
            failure = `${failure}: ${String((err as Error).message ?? err)}`;
          }
        }
        idx.forEach((i, k) => {
          out[i] = results?.[k] ?? { error: { code: 'PEER_UNREACHABLE', message: failure } };
        });
      }),
    );
    return out;
  }

  /** Sends a kept result home; null while home cannot be reached (it is tried again later). */
  private async deliver(f: ForeignAttempt): Promise<ResultReply | null> {
    const link = this.links?.link(f.home);
    const key = `${f.jobId}#${f.attempt}`;
    if (!link || this.delivering.has(key)) return null;
    this.delivering.add(key);
    try {
      const reply = await link.call<ResultReply>('result', { workerId: f.workerId, result: f.result }, 60_000);
      await this.close([f], 'delivered home');
      return reply;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'STALE_ATTEMPT' || code === 'JOB_NOT_FOUND' || code === 'ATTEMPT_NOT_FOUND') {
        this.ctx.log.warn('home refused a delegated result', { home: f.home, job: f.jobId, attempt: f.attempt, code });
        await this.close([f], `home refused it (${code})`);
        // Home ended the attempt itself and may hold the job back until it hears the process is gone, as it is.
        void link.call('stopped', { attempts: [attemptRef(f)] }).catch(() => {});
      }
      return null;
    } finally {
      this.delivering.delete(key);
    }
  }

  private close(attempts: ForeignAttempt[], reason: string): Promise<void> {
    for (const f of attempts) this.renewedAt.delete(`${f.jobId}#${f.attempt}`);
    return this.ctx.store.commit({
      t: 'foreign-closed',
      at: Date.now(),
      attempts: attempts.map((f): [string, number] => [f.jobId, f.attempt]),
      reason,
    });
  }

  /**
   * Called every sweep: gives up foreign attempts whose worker went silent
   * (and tells home at once), renews home's leases for the rest, and delivers
   * results that are waiting.
   */
  tick(now: number): void {
    const model = this.ctx.store.model;
    if (model.foreign.size === 0) return;
    const silent: ForeignAttempt[] = [];
    const live: ForeignAttempt[] = [];
    for (const f of model.foreign.values()) {
      if (f.result !== undefined) void this.deliver(f);
      else if (f.deadline <= now) silent.push(f);
      else live.push(f);
    }
    if (silent.length > 0) {
      this.ctx.log.info('delegated attempts lost: their worker went silent', { attempts: silent.length });
      void this.close(silent, 'worker went silent').catch(() => {});
      for (const [home, list] of groupBy(silent, (f) => f.home)) {
        void this.links
          ?.link(home)
          ?.call('lost', { attempts: list.map(attemptRef) })
          .catch(() => {});
      }
    }
    for (const [home, list] of groupBy(live, (f) => f.home)) {
      const kept = this.fence(home, list, now);
      const link = this.links?.link(home);
      if (!link?.hello || kept.length === 0) continue;
      const every = Math.max(200, Math.min(link.hello.leaseS * 1000 / 3, link.hello.heartbeatIntervalS * 1000));
      const sent = performance.now();
      if (sent - (this.lastRenewal.get(home) ?? -Infinity) < every) continue;
      this.lastRenewal.set(home, sent);
      link
        .call<PeerHeartbeatReply>('heartbeat', { attempts: kept.map(attemptRef) })
        .then((reply) => {
          for (const f of kept) this.renewedAt.set(`${f.jobId}#${f.attempt}`, sent);
          this.dropAbandoned(reply.abandon ?? []);
        })
        .catch(() => this.lastRenewal.delete(home));
    }
  }

  /**
   * Home's lease on an attempt runs from the last renewal it took (or the
   * claim), and when it runs out home hands the job to someone else. So an
   * attempt whose lease this server could not renew for most of its length
   * is stopped here first, while home still counts it as ours: whatever
   * splits the two servers, the job never runs in two places at once.
   * Returns the attempts still held.
   */
  private fence(home: string, list: ForeignAttempt[], now: number): ForeignAttempt[] {
    const hello = this.links?.link(home)?.hello;
    if (hello) this.homeLeaseMs.set(home, hello.leaseS * 1000);
    const leaseMs = this.homeLeaseMs.get(home);
    if (leaseMs === undefined) return list;
    const limitMs = FENCE_SHARE * leaseMs;
    const mono = performance.now();
    const stale = list.filter((f) => {
      const key = `${f.jobId}#${f.attempt}`;
      let renewed = this.renewedAt.get(key);
      if (renewed === undefined) {
        // Not renewed yet by this process: its claim, moved onto the monotonic clock.
        renewed = mono - Math.max(0, now - f.claimedAt);
        this.renewedAt.set(key, renewed);
      }
      return mono - renewed >= limitMs;
    });
    if (stale.length === 0) return list;
    this.ctx.log.warn('stopping delegated attempts whose lease home could not renew', { home, attempts: stale.length });
    for (const f of stale) {
      const queue = this.abandon.get(f.workerId) ?? [];
      queue.push({ jobId: f.jobId, attempt: f.attempt, reason: `home ${home} could not renew the lease in time` });
      this.abandon.set(f.workerId, queue);
    }
    void this.close(stale, 'lease not renewed at home in time').then(() => this.ctx.dispatcher.kick());
    // Home hears of it when it can; until then its lease runs out as usual.
    void this.links
      ?.link(home)
      ?.call('lost', { attempts: stale.map(attemptRef) })
      .catch(() => {});
    return list.filter((f) => !stale.includes(f));
  }

  /** Results kept while home was away go out as soon as its link is back. */
  linkUp(home: string): void {
    this.lastRenewal.delete(home);
    this.noControl.delete(home);
    this.watchHome(home);
    for (const f of this.ctx.store.model.foreign.values()) if (f.home === home && f.result !== undefined) void this.deliver(f);
  }

  /**
   * Keeps one control call open to a home while our workers run its jobs:
   * home holds it until one of them must stop (a cancel there, say) and
   * answers at once. What it names is dropped as a heartbeat reply's
   * abandons are; our workers hear of it through their own control polls.
   */
  private watchHome(home: string): void {
    if (this.watching.has(home) || this.noControl.has(home)) return;
    this.watching.add(home);
    void this.controlHome(home).finally(() => this.watching.delete(home));
  }

  private async controlHome(home: string): Promise<void> {
    const model = this.ctx.store.model;
    let failures = 0;
    for (;;) {
      const link = this.links?.link(home);
      const held = [...model.foreign.values()].filter((f) => f.home === home && f.result === undefined);
      // Down: linkUp starts again. Nothing held: the next foreign claim does.
      if (!link || held.length === 0) return;
      try {
        const reply = await link.call<PeerControlReply>('control', { attempts: held.map(attemptRef), waitS: CONTROL_WAIT_S }, (CONTROL_WAIT_S + 10) * 1000);
        failures = 0;
        this.dropAbandoned(Array.isArray(reply?.abandon) ? reply.abandon : []);
      } catch (err) {
        if ((err as { code?: string }).code === 'ROUTE_NOT_FOUND') {
          this.noControl.add(home);
          return;
        }
        await delay(Math.min(10_000, 250 * 2 ** Math.min(failures++, 6)));
      }
    }
  }

  /**
   * Home said to drop these: each stays open, still charging its worker and
   * named in the renewals to home, until its worker confirms the process is
   * gone (see heartbeat), so home hands the job out again only then.
   */
  private dropAbandoned(list: { jobId: string; attempt: number; reason: string }[]): void {
    const model = this.ctx.store.model;
    const marked: string[] = [];
    for (const a of list) {
      const f = model.foreign.get(a.jobId);
      if (!f || f.attempt !== a.attempt || f.result !== undefined || f.stopping !== undefined) continue;
      f.stopping = `home: ${a.reason}`;
      this.stoppingForeign.add(f.jobId);
      marked.push(f.jobId);
    }
    // Not an event of its own (the attempt stays open until its worker confirms): the control polls are told directly.
    if (marked.length > 0) this.ctx.control.recheck(marked);
  }

  /** The worker named these foreign attempts outside a heartbeat (see noteNamed in src/core/commands.ts). */
  noteNamed(workerId: string, attempts: { jobId: string; attempt: number }[]): void {
    for (const { jobId, attempt } of attempts) {
      const f = this.heldBy(workerId, jobId, attempt);
      if (f) f.listed = true;
    }
  }

  /** The foreign attempt, if it is this worker's. */
  private heldBy(workerId: string, jobId: string, attempt: number): ForeignAttempt | undefined {
    const f = this.ctx.store.model.foreign.get(jobId);
    return f && f.attempt === attempt && f.workerId === workerId ? f : undefined;
  }

  /**
   * What a worker must stop of the foreign attempts it holds, without
   * touching anything (for control polls; the heartbeat, which also renews
   * and confirms, is `heartbeat`): what home said to drop, and what is no
   * longer this worker's.
   */
  stopOrders(workerId: string, held: { jobId: string; attempt: number }[]): StopOrder[] {
    const out: StopOrder[] = [...(this.abandon.get(workerId) ?? [])];
    for (const { jobId, attempt } of held) {
      const f = this.heldBy(workerId, jobId, attempt);
      if (!f) out.push({ jobId, attempt, reason: NOT_HELD });
      else if (f.stopping !== undefined && f.result === undefined) out.push({ jobId, attempt, reason: f.stopping });
    }
    return out;
  }

  // ---- home side -----------------------------------------------------------

  /** Serves a trusted peer's call over its link. */
  async handle(peerId: string, method: string, params: unknown): Promise<unknown> {
    const model = this.ctx.store.model;
    switch (method) {
      case 'claim': {
        const p = check(claimCall, params, 'params');
        this.offered.set(`${peerId}/${p.workerId}`, { free: p.free, at: Date.now() });
        const event = planClaim(model, p.workerId, peerId, Date.now(), this.ctx.leaseMs, p.max, { free: p.free, workerName: p.workerName });
        if (!event) return { jobs: [] };
        // Admins here know the peer by its name: the attempt keeps it.
        const viaName = this.directory?.peer(peerId)?.name;
        if (viaName !== undefined) event.viaName = viaName;
        await this.ctx.store.commit(event);
        return { jobs: event.claims.map(([jobId, attempt]) => claimedJob(model.job(jobId)!, attempt)) };
      }
      case 'heartbeat': {
        const { attempts } = check(attemptsCall, params, 'params');
        const now = Date.now();
        const deadline = now + this.ctx.leaseMs;
        const abandon: PeerHeartbeatReply['abandon'] = [];
        for (const [workerId, list] of groupBy(attempts, (a) => a.workerId)) {
          const outcome = renewLeases(model, workerId, list, deadline, now, peerId);
          abandon.push(...outcome.abandon);
          // Stopping attempts are renewed too: the peer names them while their process runs.
          const renewed = [...renewedAttempts(list, outcome.abandon), ...outcome.stopping];
          if (renewed.length > 0) {
            const running = outcome.started.length > 0 ? { running: outcome.started } : {};
            this.ctx.store.commitLater({ t: 'leases-renewed', at: now, workerId, deadline, attempts: renewed, ...running });
          }
        }
        return { abandon };
      }
      case 'stopped': {
        // The peer's worker no longer runs these: stopping ones end, and their jobs may go out again.
        const { attempts } = check(attemptsCall, params, 'params');
        const events = planStoppedByPeer(model, peerId, attempts, Date.now());
        for (const e of events) await this.ctx.store.commit(e);
        if (events.length > 0) this.ctx.dispatcher.kick();
        return { ok: true };
      }
      case 'result': {
        const p = check(resultCall, params, 'params');
        const body = check(resultSchema(this.ctx.config), p.result, 'params.result');
        return acceptResult(this.ctx, p.workerId, body, peerId);
      }
      case 'control': {
        // The peer's control call: held until an attempt it runs of ours must stop.
        const p = check(controlCall, params, 'params');
        // Handed to the peer, but not in its list yet (the claim's answer was on its way).
        const unnamed: HeldAttempt[] = [];
        for (const l of model.leases.all()) if (l.via === peerId) unnamed.push({ jobId: l.jobId, attempt: l.attempt, workerId: l.workerId });
        const abandon = await this.ctx.control.watch({
          holder: { peer: peerId },
          held: p.attempts,
          unnamed,
          // The peer heartbeat's rule, asked without renewing or marking anything.
          mustStop: (list) => {
            const out: StopOrder[] = [];
            for (const a of list) {
              const reason = mustStop(model, a.workerId, a.jobId, a.attempt, peerId);
              if (reason !== null) out.push({ jobId: a.jobId, attempt: a.attempt, reason });
            }
            return out;
          },
          waitS: p.waitS,
          signal: new AbortController().signal,
        });
        return { abandon } satisfies PeerControlReply;
      }
      case 'logs': {
        const p = check(logsCall, params, 'params');
        const { chunks } = check(logChunksSchema, { chunks: p.chunks }, 'params');
        return { results: await acceptLogChunks(this.ctx, p.workerId, chunks, peerId) };
      }
      case 'return':
      case 'lost': {
        const { attempts } = check(attemptsCall, params, 'params');
        const mine = attempts.filter((a) => {
          const lease = model.leases.get(a.jobId);
          return lease && lease.attempt === a.attempt && lease.workerId === a.workerId && lease.via === peerId;
        });
        if (mine.length === 0) return { ok: true };
        const pairs = mine.map((a): [string, number] => [a.jobId, a.attempt]);
        if (method === 'return') {
          for (const [workerId, list] of groupBy(mine, (a) => a.workerId)) {
            await this.ctx.store.commit({
              t: 'claims-returned',
              at: Date.now(),
              workerId,
              claims: list.map((a): [string, number] => [a.jobId, a.attempt]),
            });
          }
        } else {
          await this.ctx.store.commit({ t: 'attempts-lost', at: Date.now(), how: 'worker-lost', reason: `${peerId} lost its worker`, attempts: pairs });
        }
        this.ctx.dispatcher.kick();
        return { ok: true };
      }
      default:
        throw fail('ROUTE_NOT_FOUND', `no peer call named '${method}'`);
    }
  }

  /**
   * A peer is no longer trusted: whatever it runs of ours is lost now, and
   * whatever our workers run of its is dropped (their workers are told to
   * abandon it at their next heartbeat; results waiting for it are discarded,
   * as it would refuse them anyway).
   */
  async peerGone(peerId: string): Promise<void> {
    const model = this.ctx.store.model;
    const attempts: [string, number][] = [];
    for (const lease of model.leases.all()) if (lease.via === peerId) attempts.push([lease.jobId, lease.attempt]);
    if (attempts.length > 0) {
      await this.ctx.store.commit({ t: 'attempts-lost', at: Date.now(), how: 'worker-lost', reason: `peer ${peerId} disconnected`, attempts });
    }
    const theirs = [...model.foreign.values()].filter((f) => f.home === peerId);
    for (const f of theirs) {
      if (f.result !== undefined) continue;
      const queue = this.abandon.get(f.workerId) ?? [];
      queue.push({ jobId: f.jobId, attempt: f.attempt, reason: `server ${peerId} was disconnected` });
      this.abandon.set(f.workerId, queue);
    }
    if (theirs.length > 0) await this.close(theirs, `server ${peerId} was disconnected`);
    this.lastRenewal.delete(peerId);
    if (attempts.length > 0 || theirs.length > 0) this.ctx.dispatcher.kick();
  }

  /** What this server has queued, for its hello and work notices. */
  shapes(): Shape[] {
    return this.ctx.store.model.ready.shapes();
  }
}

/** How a foreign attempt is named in calls to its home. */
function attemptRef(f: ForeignAttempt): { jobId: string; attempt: number; workerId: string; started?: true } {
  return { jobId: f.jobId, attempt: f.attempt, workerId: f.workerId, ...(f.running ? { started: true as const } : {}) };
}

/** Items grouped by a key, each group in the order the items came. */
function groupBy<T>(items: T[], key: (item: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const list = out.get(k);
    if (list) list.push(item);
    else out.set(k, [item]);
  }
  return out;
}
