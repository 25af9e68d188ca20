/**
 * At most one live attempt per job, over random interleavings of claims,
 * claim answers delivered or lost, process starts and exits, cancels,
 * retries, heartbeats (naming all, or by count), admin "lost" marks, worker
 * crashes and removals, lease expiry, and server restarts from a snapshot
 * and the journal after it.
 *
 * The workers are simulated: each keeps the processes it runs, and a process
 * it is told to abandon ends only some steps later. Their processes are the
 * truth the invariant is checked against at every step: no job ever has two
 * processes alive (a claim answer on its way counts, as it starts one). And
 * once the workers have stopped what they were told to and time has passed,
 * every queued job can be handed out again: nothing waits for good.
 *
 * What the model assumes of the world, as the real parts give it: a worker
 * names every attempt whose process may be alive in each full heartbeat,
 * until its process group is gone; a claim answer reaches its worker within
 * a lease period or not at all; a worker that goes silent for a lease period
 * has died with its processes (see the orphan guarantee), and a worker whose
 * registration is removed has been stopped with its processes.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  attemptsToStop,
  mustStop,
  planAttemptLost,
  planCancel,
  planClaim,
  planExpiry,
  planFinish,
  planRetry,
  planSubmit,
  planWorkerLost,
  renewalMemo,
  renewFromMemo,
  renewedAttempts,
  renewLeases,
  type RenewalMemo,
} from '../../src/core/commands.js';
import type { Event } from '../../src/core/events.js';
import { Model, type ModelSnapshot } from '../../src/core/model.js';
import { planLeaseRecovery } from '../../src/core/recovery.js';
import { assertConsistent, exited, res, spec } from '../helpers/core.js';

const LEASE_MS = 30_000;

interface Proc {
  jobId: string;
  n: number;
  started: boolean;
  /** Told to abandon: the process group is gone after this many more steps. */
  stopIn?: number;
}

interface SimWorker {
  id: string;
  alive: boolean;
  procs: Map<string, Proc>;
  /** Claim answers on their way: each starts a process when it arrives. */
  inbox: [string, number][];
  /** What the server kept of the last full heartbeat (see HeartbeatRequest `same`). */
  kept?: string;
}

type Step = [kind: number, a: number, b: number];

class Sim {
  model = new Model();
  journal: Event[] = [];
  snapshot: { data: ModelSnapshot; at: number } | null = null;
  memos = new Map<string, RenewalMemo>();
  workers: SimWorker[] = [];
  jobs: string[] = [];
  now = 1_700_000_000_000;
  private ids = 0;
  private registered = 0;
  log: string[] = [];

  constructor(private readonly dropRenewals: () => boolean) {
    this.commit({ t: 'project-created', at: this.now, name: 'p', owner: 'alice' });
    for (let i = 0; i < 3; i++) this.register();
  }

  commit(e: Event, journal = true): void {
    this.model.apply(e);
    if (journal) this.journal.push(structuredClone(e));
  }

  register(): void {
    const id = `w${++this.registered}`;
    this.commit({ t: 'worker-registered', at: this.now, id, name: `${id}-name`, host: 'h', resources: res(2, 1000), labels: [], tokenId: 't' });
    this.workers.push({ id, alive: true, procs: new Map(), inbox: [] });
  }

  tick(ms = 1000): number {
    this.now += ms;
    return this.now;
  }

  pick<T>(list: T[], k: number): T | undefined {
    return list.length === 0 ? undefined : list[k % list.length];
  }

  live(): SimWorker[] {
    return this.workers.filter((w) => w.alive && this.model.workers.has(w.id));
  }

  submit(): void {
    const id = `job-${String(++this.ids).padStart(4, '0')}`;
    this.commit(planSubmit(this.model, 'p', [{ spec: spec({ maxRetries: 1 }) }], [id], this.tick()));
    this.jobs.push(id);
  }

  claim(w: SimWorker): void {
    const e = planClaim(this.model, w.id, 'local', this.tick(), LEASE_MS, 2);
    if (!e) return;
    this.commit(e);
    w.inbox.push(...e.claims);
  }

  /** A claim answer arrives (the worker starts its attempt) or is lost (the server takes it back). */
  deliver(w: SimWorker, lost: boolean): void {
    const c = w.inbox.shift();
    if (!c) return;
    const [jobId, n] = c;
    if (lost) {
      this.commit({ t: 'claims-returned', at: this.tick(), workerId: w.id, claims: [c] });
      return;
    }
    w.procs.set(`${jobId}#${n}`, { jobId, n, started: false });
  }

  start(w: SimWorker, k: number): void {
    const p = this.pick([...w.procs.values()].filter((x) => !x.started && x.stopIn === undefined), k);
    if (p) p.started = true;
  }

  /** A process exits by itself; the worker reports it (the server may refuse: it ended the attempt already). */
  exit(w: SimWorker, k: number, code: number): void {
    const p = this.pick([...w.procs.values()].filter((x) => x.stopIn === undefined), k);
    if (!p) return;
    w.procs.delete(`${p.jobId}#${p.n}`);
    const at = this.tick();
    try {
      const e = planFinish(this.model, w.id, p.jobId, p.n, exited(code), at);
      if (e !== 'duplicate') this.commit(e);
    } catch {
      // STALE_ATTEMPT / JOB_NOT_FOUND: the worker forgets it, as a real one does.
    }
  }

  /** Abandoned processes get one step closer to gone. */
  stopSome(): void {
    for (const w of this.workers) {
      for (const [key, p] of w.procs) {
        if (p.stopIn === undefined) continue;
        if (p.stopIn <= 0) w.procs.delete(key);
        else p.stopIn--;
      }
    }
  }

  /** A worker's heartbeat as worker-routes handles it: by count when nothing changed, else naming all. */
  heartbeat(w: SimWorker, delay: number): void {
    if (!this.model.workers.has(w.id) || !w.alive) return;
    const now = this.tick();
    const deadline = now + LEASE_MS;
    const procs = [...w.procs.values()];
    const named = procs.map((p) => `${p.jobId}#${p.n}${p.started ? '+' : ''}`).join(' ');
    if (procs.length > 0 && named === w.kept) {
      const memo = this.memos.get(w.id);
      if (memo && memo.leases.length === procs.length && renewFromMemo(this.model, w.id, memo, deadline, now)) {
        if (!this.dropRenewals()) this.journal.push({ t: 'leases-renewed', at: now, workerId: w.id, deadline, attempts: memo.attempts });
        return;
      }
      this.memos.delete(w.id);
      w.kept = undefined;
    }
    const attempts = procs.map((p) => ({ jobId: p.jobId, attempt: p.n, ...(p.started ? { started: true } : {}) }));
    // The one rule, asked attempt by attempt, says what the heartbeat's answer says.
    const told = attempts.filter((a) => mustStop(this.model, w.id, a.jobId, a.attempt) !== null).map((a) => `${a.jobId}#${a.attempt}`);
    const out = renewLeases(this.model, w.id, attempts, deadline, now);
    assert.deepEqual(out.abandon.map((a) => `${a.jobId}#${a.attempt}`), told);
    if (out.stopped.length > 0) this.commit({ t: 'attempts-stopped', at: now, workerId: w.id, attempts: out.stopped });
    const renewed = [...renewedAttempts(attempts, out.abandon), ...out.stopping];
    if (renewed.length > 0 && (out.started.length > 0 || !this.dropRenewals())) {
      this.journal.push({ t: 'leases-renewed', at: now, workerId: w.id, deadline, attempts: renewed, ...(out.started.length > 0 ? { running: out.started } : {}) });
    }
    if (attempts.length > 0 && out.abandon.length === 0) {
      this.memos.set(w.id, renewalMemo(this.model, w.id, renewed));
      w.kept = named;
    } else {
      this.memos.delete(w.id);
      w.kept = undefined;
    }
    for (const a of out.abandon) {
      const p = w.procs.get(`${a.jobId}#${a.attempt}`);
      if (p && p.stopIn === undefined) p.stopIn = delay;
    }
  }

  cancel(k: number): void {
    const id = this.pick(this.jobs.filter((j) => this.live1(j, (s) => s === 'queued' || s === 'running' || s === 'waiting')), k);
    if (id) this.commit(planCancel(this.model, [id], 'cancelled by alice', this.tick()));
  }

  retry(k: number): void {
    const id = this.pick(this.jobs.filter((j) => this.live1(j, (s) => s === 'failed' || s === 'cancelled')), k);
    if (id) this.commit(planRetry(this.model, [id], this.tick()));
  }

  attemptLost(k: number): void {
    const id = this.pick(this.jobs.filter((j) => this.live1(j, (s) => s === 'running')), k);
    if (id) this.commit(planAttemptLost(this.model, id, 'attempt marked lost by admin', this.tick()));
  }

  workerLost(w: SimWorker): void {
    if (!this.model.workers.has(w.id)) return;
    const { lost } = planWorkerLost(this.model, w.id, 'worker marked lost by admin', this.tick());
    if (lost) this.commit(lost);
  }

  /** The worker dies, and its processes with it. */
  crash(w: SimWorker): void {
    w.alive = false;
    w.procs.clear();
    w.inbox = [];
    w.kept = undefined;
  }

  /** Its registration is removed (a pilot stopped): it was stopped with its processes. */
  remove(w: SimWorker): void {
    if (!this.model.workers.has(w.id)) return;
    this.crash(w);
    this.commit({ t: 'worker-removed', at: this.tick(), id: w.id, reason: 'pilot stopped' });
    this.register();
  }

  /**
   * Time passes: claim answers in flight arrive (within a lease, or never),
   * living workers heartbeat, and then leases not renewed since run out.
   */
  timePasses(): void {
    for (const w of this.workers) while (w.inbox.length > 0) this.deliver(w, false);
    for (const w of this.live()) this.heartbeat(w, 0);
    this.tick(LEASE_MS * 0.6);
    const e = planExpiry(this.model, this.now);
    if (e) this.commit(e);
  }

  /** The server stops and starts again: the newest snapshot, the journal after it, then lease recovery. */
  restart(): void {
    const model = this.snapshot ? Model.fromSnapshot(structuredClone(this.snapshot.data)) : new Model();
    for (const e of this.journal.slice(this.snapshot?.at ?? 0)) model.apply(structuredClone(e));
    this.model = model;
    this.memos.clear();
    for (const w of this.workers) w.kept = undefined;
    this.tick();
    for (const e of planLeaseRecovery(model, this.now, LEASE_MS)) this.commit(e);
  }

  takeSnapshot(): void {
    this.snapshot = { data: structuredClone(this.model.toSnapshot()), at: this.journal.length };
  }

  private live1(id: string, state: (s: string) => boolean): boolean {
    const job = this.model.job(id);
    return job !== undefined && state(job.state);
  }

  step([kind, a, b]: Step): void {
    const w = this.pick(this.workers, a)!;
    switch (kind % 17) {
      case 0:
      case 1:
        return this.submit();
      case 2:
      case 3:
        return w.alive ? this.claim(w) : undefined;
      case 4:
        return this.deliver(w, b % 4 === 0);
      case 5:
        return this.start(w, b);
      case 6:
        return this.exit(w, b, b % 3 === 0 ? 1 : 0);
      case 7:
      case 8:
        return this.heartbeat(w, b % 4);
      case 9:
        return this.cancel(b);
      case 10:
        return this.retry(b);
      case 11:
        return b % 2 === 0 ? this.attemptLost(b) : this.workerLost(w);
      case 12:
        return this.stopSome();
      case 13:
        return b % 5 === 0 ? this.crash(w) : b % 5 === 1 ? this.remove(w) : this.stopSome();
      case 14:
        return this.timePasses();
      case 15:
        return b % 2 === 0 ? this.takeSnapshot() : this.restart();
      case 16:
        // A cancel and a retry at once, the way a researcher types them.
        this.cancel(b);
        return this.retry(b);
    }
  }

  /** The invariant, against the workers' truth: no job has two processes alive, counting claim answers on their way. */
  checkOneLive(): void {
    const alive = new Map<string, string[]>();
    for (const w of this.workers) {
      const held = [...[...w.procs.values()].map((p): [string, number] => [p.jobId, p.n]), ...w.inbox];
      for (const [jobId, n] of held) alive.set(jobId, [...(alive.get(jobId) ?? []), `${w.id}:${n}`]);
    }
    for (const [jobId, where] of alive) assert.ok(where.length <= 1, `job ${jobId} has ${where.length} processes alive: ${where.join(', ')}`);
    assertConsistent(this.model);
  }

  /** Workers finish stopping what they were told to, time passes: then no queued job is held back. */
  settle(): void {
    for (let round = 0; round < 12; round++) {
      for (const w of this.workers) while (w.inbox.length > 0) this.deliver(w, false);
      for (const w of this.live()) this.heartbeat(w, 0);
      this.stopSome();
      this.checkOneLive();
      this.timePasses();
      this.checkOneLive();
    }
    for (const job of this.model.jobs.values()) {
      if (job.state !== 'queued') continue;
      assert.equal(this.model.leases.get(job.id), undefined, `queued job ${job.id} is still held back: ${job.reason}`);
      assert.ok(this.model.ready.has(job.id), `queued job ${job.id} can be handed out`);
    }
    // And a worker does get them: it runs each to the end, and claims again.
    const queued = [...this.model.jobs.values()].filter((j) => j.state === 'queued').length;
    const w = this.live()[0] ?? (this.register(), this.live()[0]!);
    while (w.procs.size > 0) this.exit(w, 0, 0);
    let handed = 0;
    for (let i = 0; i <= queued && handed < queued; i++) {
      const e = planClaim(this.model, w.id, 'local', this.tick(), LEASE_MS, 1);
      if (!e) continue;
      this.commit(e);
      handed += e.claims.length;
      for (const [jobId, n] of e.claims) {
        const job = this.model.job(jobId)!;
        // Only jobs that were queued count; a job handed out here ends done, so it cannot come back.
        assert.equal(job.state, 'running');
        this.commit(planFinish(this.model, w.id, jobId, n, exited(0), this.tick()) as Event);
      }
    }
    assert.equal(handed, queued, 'every queued job is handed out once the old attempts ended');
  }
}

const step = fc.tuple(fc.nat(1000), fc.nat(1000), fc.nat(1000));

describe('at most one live attempt per job', () => {
  it('holds over random interleavings, and nothing waits for good', () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 10, maxLength: 160 }), fc.array(fc.boolean(), { minLength: 1, maxLength: 16 }), (steps, drops) => {
        let d = 0;
        const sim = new Sim(() => drops[d++ % drops.length]!);
        for (const s of steps) {
          sim.step(s);
          sim.checkOneLive();
        }
        sim.settle();
      }),
      { numRuns: 1000 },
    );
  });

  it('a cancel then a retry at once does not hand the job out until the worker stops naming the old attempt', () => {
    const sim = new Sim(() => false);
    sim.submit();
    const w = sim.workers[0]!;
    sim.claim(w);
    const [id] = sim.jobs;
    assert.equal(sim.model.attemptLive(id!, 1), 'starting');
    sim.deliver(w, false);
    sim.heartbeat(w, 2);
    assert.equal(sim.model.attemptLive(id!, 1), 'starting', 'named, but its process has not started');
    sim.start(w, 0);
    sim.heartbeat(w, 2);
    assert.equal(sim.model.attemptLive(id!, 1), 'running');
    sim.cancel(0);
    sim.retry(0);
    assert.equal(sim.model.job(id!)!.state, 'queued');
    assert.equal(sim.model.job(id!)!.reason, 'waiting for attempt 1 to stop on worker w1-name');
    assert.equal(sim.model.attemptLive(id!, 1), 'stopping');
    for (const other of sim.workers.slice(1)) sim.claim(other);
    assert.deepEqual(sim.workers.map((x) => x.inbox.length), [0, 0, 0], 'nobody gets the job while attempt 1 may run');
    sim.heartbeat(w, 2); // told to abandon; the process takes its time
    sim.stopSome();
    sim.heartbeat(w, 2);
    assert.equal(sim.model.attemptLive(id!, 1), 'stopping', 'still named: still stopping');
    sim.stopSome();
    sim.stopSome();
    sim.heartbeat(w, 2);
    assert.equal(sim.model.attemptLive(id!, 1), 'ended');
    assert.equal(sim.model.job(id!)!.reason, 'attempt 1 stopped; ready to run');
    sim.claim(sim.workers[1]!);
    assert.deepEqual(sim.workers[1]!.inbox, [[id, 2]]);
  });

  it('a stopping attempt survives a restart from the snapshot and from the journal alike', () => {
    for (const withSnapshot of [false, true]) {
      const sim = new Sim(() => false);
      sim.submit();
      const w = sim.workers[0]!;
      sim.claim(w);
      sim.deliver(w, false);
      sim.heartbeat(w, 5);
      sim.cancel(0);
      sim.retry(0);
      if (withSnapshot) sim.takeSnapshot();
      sim.restart();
      const [id] = sim.jobs;
      assert.equal(sim.model.attemptLive(id!, 1), 'stopping');
      assert.deepEqual(sim.model.leases.get(id!)?.stopping, { resources: res(1, 100) });
      assert.deepEqual(sim.model.usedBy(w.id), res(1, 100));
      assert.equal(sim.model.ready.has(id!), false);
      sim.heartbeat(w, 0);
      sim.stopSome();
      sim.heartbeat(w, 0);
      assert.equal(sim.model.attemptLive(id!, 1), 'ended');
      assert.equal(sim.model.ready.has(id!), true);
    }
  });

  it('what a worker must stop, asked without a heartbeat, is what its heartbeat is told', () => {
    const sim = new Sim(() => false);
    sim.submit();
    sim.submit();
    const w = sim.workers[0]!;
    sim.claim(w);
    const [a, b] = sim.jobs;
    assert.equal(mustStop(sim.model, w.id, a!, 1), null);
    assert.deepEqual(attemptsToStop(sim.model, w.id), []);
    assert.equal(mustStop(sim.model, 'w2', a!, 1), 'attempt 1 is no longer current (job is running)');
    sim.commit(planCancel(sim.model, [a!], 'cancelled by alice', sim.tick()));
    assert.equal(mustStop(sim.model, w.id, a!, 1), 'job was cancelled');
    assert.deepEqual(attemptsToStop(sim.model, w.id), [{ jobId: a, attempt: 1, reason: 'job was cancelled' }]);
    assert.equal(mustStop(sim.model, w.id, b!, 1), null);
  });

  it('the model refuses to hand out a job whose attempt is still live or stopping', () => {
    const sim = new Sim(() => false);
    sim.submit();
    const [id] = sim.jobs;
    sim.claim(sim.workers[0]!);
    assert.throws(
      () => sim.model.apply({ t: 'jobs-claimed', at: sim.tick(), workerId: 'w2', via: 'local', deadline: sim.now + LEASE_MS, claims: [[id!, 2]] }),
      /still has attempt 1 live/,
    );
    sim.cancel(0);
    assert.throws(
      () => sim.model.apply({ t: 'jobs-claimed', at: sim.tick(), workerId: 'w2', via: 'local', deadline: sim.now + LEASE_MS, claims: [[id!, 2]] }),
      /still has attempt 1 stopping/,
    );
    assertConsistent(sim.model);
  });
});
