import assert from 'node:assert/strict';
import {
  planCancel,
  planClaim,
  planExpiry,
  renewLeases,
  planFinish,
  planRetry,
  planSubmit,
  type AttemptReport,
  type SubmitItem,
} from '../../src/core/commands.js';
import { CpcError, type ErrorCode } from '../../src/core/errors.js';
import type { Event } from '../../src/core/events.js';
import { Model } from '../../src/core/model.js';
import {
  FINAL_STATES,
  JOB_STATES,
  emptyCounts,
  type Job,
  type JobSpec,
  type JobState,
  type Lease,
  type Resources,
  type StateCounts,
} from '../../src/core/types.js';

/** A job spec with small defaults: one core, 100 MB, priority 0, no retries, no dependencies. */
export function spec(over: Partial<JobSpec> = {}): JobSpec {
  return {
    argv: ['true'],
    env: {},
    resources: { cores: 1, memoryMb: 100 },
    priority: 0,
    maxRetries: 0,
    timeoutS: null,
    after: [],
    ...over,
  };
}

/** A queued job as the ready queue holds it, numbered `n` in submission order. */
export function queuedJob(n: number, project: string, over: Partial<JobSpec> = {}): Job {
  return {
    id: `j${n}`,
    project,
    seq: n,
    spec: spec(over),
    state: 'queued',
    reason: 'ready to run',
    createdAt: 0,
    updatedAt: 0,
    attempts: [],
    failures: 0,
    lost: 0,
  };
}

export function res(cores: number, memoryMb = 100): Resources {
  return { cores, memoryMb };
}

/** A worker's report of an attempt that exited with `exitCode`. */
export function exited(exitCode: number, over: Partial<AttemptReport> = {}): AttemptReport {
  return {
    how: 'exited',
    exitCode,
    signal: null,
    durationMs: 1234,
    stdoutTail: `out ${exitCode}\n`,
    stderrTail: '',
    stdoutBytes: 6,
    stderrBytes: 0,
    ...over,
  };
}

/** Asserts that `fn` throws a CpcError with `code`. */
export function throwsCode(fn: () => unknown, code: ErrorCode): CpcError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof CpcError, `expected a CpcError ${code}, got ${caught === undefined ? 'no error' : String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  return caught;
}

/** Counts by state recomputed from the live jobs of one project. */
export function recount(model: Model, project: string): StateCounts {
  const c = emptyCounts();
  for (const job of model.jobs.values()) if (job.project === project) c[job.state]++;
  return c;
}

function plus(a: StateCounts, b: StateCounts | undefined): StateCounts {
  const out = emptyCounts();
  for (const s of JOB_STATES) out[s] = a[s] + (b?.[s] ?? 0);
  return out;
}

/**
 * Checks every index of the model against the jobs themselves: counts, the
 * ready queue, leases, the resources charged to workers, attempt numbering,
 * and that every job says why it is in its state.
 */
export function assertConsistent(model: Model, archived: ReadonlyMap<string, StateCounts> = new Map()): void {
  for (const name of model.projects.keys()) {
    const live = recount(model, name);
    assert.deepEqual(model.liveCountsOf(name), live, `live counts of ${name}`);
    assert.deepEqual(model.countsOf(name), plus(live, archived.get(name)), `counts of ${name}`);
    const ids = [...model.jobs.values()].filter((j) => j.project === name).map((j) => j.id);
    assert.deepEqual(new Set(model.jobIdsOf(name)), new Set(ids), `job ids of ${name}`);
  }
  let queued = 0;
  const used = new Map<string, Resources>();
  const charge = (workerId: string, r: Resources) => {
    const u = used.get(workerId) ?? res(0, 0);
    used.set(workerId, res(u.cores + r.cores, u.memoryMb + r.memoryMb));
  };
  for (const job of model.jobs.values()) {
    assert.ok(model.projects.has(job.project), `job ${job.id} belongs to a live project`);
    assert.ok(job.reason.length > 0, `job ${job.id} (${job.state}) has a reason`);
    const lease = model.leases.get(job.id);
    // A queued job whose earlier attempt is still stopping is held back from the queue.
    assert.equal(model.ready.has(job.id), job.state === 'queued' && lease === undefined, `job ${job.id} (${job.state}) in the ready queue`);
    if (job.state === 'queued' && lease === undefined) queued++;
    job.attempts.forEach((a, i) => assert.equal(a.n, i + 1, `attempts of ${job.id} are numbered from 1`));
    if (job.state === 'running') {
      assert.ok(lease, `running job ${job.id} has a lease`);
      assert.equal(lease.stopping, undefined, `the lease of running job ${job.id} is not stopping`);
      const last = job.attempts.at(-1)!;
      assert.equal(lease.attempt, last.n, `lease of ${job.id} is for its last attempt`);
      assert.equal(lease.workerId, last.workerId);
      assert.equal(last.how, undefined, `the running attempt of ${job.id} has not ended`);
    } else if (lease) {
      assert.ok(lease.stopping, `job ${job.id} (${job.state}) holds only a stopping lease`);
      const a = job.attempts.find((x) => x.n === lease.attempt);
      assert.ok(a && a.how !== undefined, `the stopping attempt of ${job.id} has ended`);
      assert.equal(lease.attempt, job.attempts.at(-1)!.n, `the stopping attempt of ${job.id} is its last`);
      assert.match(job.reason, job.state === 'queued' ? /^waiting for attempt \d+ to stop on worker / : /./, `a held job says why it waits`);
    }
    for (const a of job.state === 'running' ? job.attempts.slice(0, -1) : job.attempts) {
      assert.ok(a.how !== undefined && a.endedAt !== undefined, `attempt ${a.n} of ${job.id} has ended`);
    }
  }
  for (const lease of model.leases.all()) {
    const job = model.jobs.get(lease.jobId);
    if (lease.stopping) charge(lease.workerId, lease.stopping.resources);
    else {
      assert.ok(job && job.state === 'running', `a lease that is not stopping belongs to a running job (${lease.jobId})`);
      charge(lease.workerId, job.spec.resources);
    }
  }
  // Peers' jobs run by our workers take room until their result is in.
  for (const f of model.foreign.values()) {
    if (f.result !== undefined) continue;
    charge(f.workerId, f.resources);
  }
  assert.equal(model.ready.size, queued, 'ready queue size equals queued jobs not held back');
  assert.equal(
    [...model.leases.all()].filter((l) => !l.stopping).length,
    [...model.jobs.values()].filter((j) => j.state === 'running').length,
    'one live lease per running job',
  );
  for (const w of model.workers.values()) {
    const u = used.get(w.id) ?? res(0, 0);
    assert.deepEqual(model.usedBy(w.id), u, `resources used on ${w.id}`);
    assert.deepEqual(model.freeOf(w.id), res(w.resources.cores - u.cores, w.resources.memoryMb - u.memoryMb), `free on ${w.id}`);
  }
}

export interface Transition {
  id: string;
  from: JobState | null;
  to: JobState;
  reason: string;
}

/**
 * A model with a clock, an id source and a record of every event applied.
 * Each step plans through the commands, applies the event, and checks the
 * model's consistency afterwards.
 */
export class World {
  readonly model: Model;
  readonly events: Event[] = [];
  readonly transitions: Transition[] = [];
  /** Final jobs archived so far, counted per project. */
  readonly archived = new Map<string, StateCounts>();
  /** The state of each archived job (what the archive store would answer). */
  readonly archivedStates = new Map<string, JobState>();
  now = 1_700_000_000_000;
  leaseMs = 30_000;
  private ids = 0;

  constructor(model = new Model()) {
    this.model = model;
    model.onChange(({ job, from }) => this.transitions.push({ id: job.id, from, to: job.state, reason: job.reason }));
  }

  newId(): string {
    return `job-${String(++this.ids).padStart(5, '0')}`;
  }

  tick(ms = 1000): number {
    this.now += ms;
    return this.now;
  }

  apply(e: Event): void {
    if (e.t === 'jobs-archived') {
      for (const id of e.ids) {
        const job = this.model.job(id);
        if (!job || !FINAL_STATES.has(job.state)) continue;
        let c = this.archived.get(job.project);
        if (!c) this.archived.set(job.project, (c = emptyCounts()));
        c[job.state]++;
        this.archivedStates.set(id, job.state);
      }
    }
    this.events.push(structuredClone(e));
    this.model.apply(e);
    this.check();
  }

  check(): void {
    assertConsistent(this.model, this.archived);
  }

  project(name: string, owner = 'alice'): void {
    this.apply({ t: 'project-created', at: this.now, name, owner });
  }

  worker(id: string, resources: Resources = res(4, 8192)): void {
    this.apply({ t: 'worker-registered', at: this.now, id, name: `${id}-name`, host: `${id}.example.org`, resources, labels: [], tokenId: `tok-${id}` });
  }

  /** Submits items (or bare specs); returns the new ids in the order given. */
  submit(project: string, items: (SubmitItem | JobSpec)[]): string[] {
    const list: SubmitItem[] = items.map((x) => ('spec' in x ? x : { spec: x }));
    const ids = list.map(() => this.newId());
    this.apply(planSubmit(this.model, project, list, ids, this.tick(), this.archivedStates));
    return ids;
  }

  one(project: string, over: Partial<JobSpec> = {}): string {
    return this.submit(project, [spec(over)])[0]!;
  }

  /** Claims for a worker and applies the claim; returns the claims (empty when none). */
  claim(workerId: string, max = 1000, via = 'local'): [string, number][] {
    const e = planClaim(this.model, workerId, via, this.tick(), this.leaseMs, max);
    if (!e) return [];
    this.apply(e);
    return e.claims;
  }

  /** Claims the ids only. */
  claimIds(workerId: string, max = 1000): string[] {
    return this.claim(workerId, max).map(([id]) => id);
  }

  /** Reports the current attempt of a running job, from the worker that holds it. */
  finish(jobId: string, r: AttemptReport | number = 0): void {
    const lease = this.model.leases.get(jobId);
    assert.ok(lease, `job ${jobId} is running`);
    const e = planFinish(this.model, lease.workerId, jobId, lease.attempt, typeof r === 'number' ? exited(r) : r, this.tick());
    assert.notEqual(e, 'duplicate');
    this.apply(e as Exclude<typeof e, 'duplicate'>);
  }

  /** Lets time pass beyond every lease deadline and applies the expiry; returns what was lost. */
  expireAll(): [string, number][] {
    const latest = Math.max(this.now, ...[...this.model.leases.all()].map((l) => l.deadline));
    this.now = latest;
    const e = planExpiry(this.model, this.now);
    if (!e) return [];
    this.apply(e);
    return e.attempts;
  }

  cancel(ids: string[], reason = 'cancelled by alice'): void {
    this.apply(planCancel(this.model, ids, reason, this.tick()));
  }

  retry(ids: string[]): void {
    this.apply(planRetry(this.model, ids, this.tick()));
  }

  /**
   * A local worker's full heartbeat naming these attempts (none: it runs
   * nothing), with what the server does after: stopping attempts it named
   * before and names no more have stopped.
   */
  heartbeat(workerId: string, named: [string, number][] = []): ReturnType<typeof renewLeases> {
    const now = this.tick();
    const out = renewLeases(this.model, workerId, named.map(([jobId, attempt]) => ({ jobId, attempt })), now + this.leaseMs, now);
    // Journaled as the heartbeat route does it (here every time), so that replay agrees.
    const dropped = new Set(out.abandon.map((a) => `${a.jobId}#${a.attempt}`));
    const renewed = [...named.filter(([id, n]) => !dropped.has(`${id}#${n}`)), ...out.stopping];
    this.apply({ t: 'leases-renewed', at: now, workerId, deadline: now + this.leaseMs, attempts: renewed });
    if (out.stopped.length > 0) this.apply({ t: 'attempts-stopped', at: now, workerId, attempts: out.stopped });
    return out;
  }

  archive(ids: string[]): void {
    this.apply({ t: 'jobs-archived', at: this.tick(), ids });
  }

  job(id: string): Job {
    const job = this.model.job(id);
    assert.ok(job, `job ${id} is live`);
    return job;
  }

  state(id: string): JobState {
    return this.job(id).state;
  }

  lease(id: string): Lease {
    const lease = this.model.leases.get(id);
    assert.ok(lease, `job ${id} has a lease`);
    return lease;
  }
}

/** Replays events into a fresh model. */
export function replay(events: readonly Event[]): Model {
  const m = new Model();
  for (const e of events) m.apply(structuredClone(e));
  return m;
}

/** A small seeded generator (mulberry32), so randomised tests repeat exactly. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
