import type { Event, ProjectLoaded } from './events.js';
import { fail } from './errors.js';
import { FileRegistry, matchesGlob, type FileRegistrySnapshot } from './files.js';
import { LeaseTable } from './lease-table.js';
import { ReadyQueue, type Turns } from './ready-queue.js';
import { DEFAULT_GROW_ATTEMPTS, growAfter } from './retry-more.js';
import {
  FINAL_STATES,
  emptyCounts,
  type Attempt,
  type AttemptEnd,
  type AttemptLive,
  type FileRef,
  type Job,
  type JobState,
  type Lease,
  type Project,
  type ProjectValue,
  type ResolvedInput,
  type Resources,
  type StateCounts,
  type Worker,
} from './types.js';

/** A job whose worker went silent this many times is failed instead of re-queued again. */
export const MAX_LOST_ATTEMPTS = 5;

export interface JobChange {
  job: Job;
  from: JobState | null;
}

/** A peer's job that one of this server's workers runs (see ForeignClaimed). */
export interface ForeignAttempt {
  home: string;
  jobId: string;
  attempt: number;
  workerId: string;
  resources: Resources;
  /** The job's project at home, for views (absent in older records). */
  project?: string;
  claimedAt: number;
  /** This server's own lease on its worker: renewed by the worker's heartbeats. */
  deadline: number;
  /** The worker's report, kept until home has it. */
  result?: unknown;
  /** The worker named it in a heartbeat (it has heard of it). */
  listed?: true;
  /** The worker said its process started. */
  running?: true;
  /**
   * Home said to drop it (home's words): the worker is told to abandon it,
   * and it stays, charging the worker, until the worker no longer names it;
   * then home hears that its process is gone (see Delegation).
   */
  stopping?: string;
}

export interface ModelSnapshot {
  version: 1;
  seq: number;
  lastEventAt: number;
  projects: Project[];
  jobs: Job[];
  workers: Worker[];
  leases: Lease[];
  archivedCounts: [string, StateCounts][];
  foreign?: ForeignAttempt[];
  turns?: Turns;
  /** Weights an admin set (others are 1): users' shares, and projects' within their owner's. */
  weights?: { users: [string, number][]; projects: [string, number][] };
  files?: FileRegistrySnapshot;
  archivedOutputs?: [string, { project: string; files: FileRef[] }][];
  /** Ids of archived jobs, by project; absent in snapshots older than the index. */
  archivedIds?: [string, string[]][];
}

/**
 * The live state of one server: projects, the jobs that are not archived,
 * workers and leases, plus the indexes the scheduler needs. It is changed only
 * by `apply`, which is deterministic, so replaying the journal rebuilds
 * exactly what the live server had.
 */
export class Model {
  readonly projects = new Map<string, Project>();
  readonly jobs = new Map<string, Job>();
  readonly workers = new Map<string, Worker>();
  readonly leases = new LeaseTable();
  /** Weights an admin set; absent means 1. */
  private readonly userWeights = new Map<string, number>();
  private readonly projectWeights = new Map<string, number>();
  readonly ready = new ReadyQueue({
    ownerOf: (project) => this.projects.get(project)?.owner ?? '',
    userWeight: (user) => this.userWeights.get(user) ?? 1,
    projectWeight: (project) => this.projectWeights.get(project) ?? 1,
  });
  /** Peers' jobs run by this server's workers, by job id. */
  readonly foreign = new Map<string, ForeignAttempt>();
  /** Who refers to which file content, per project. */
  readonly files: FileRegistry;
  /** Outputs of archived jobs, so later jobs and `getf` can still reach them. */
  private readonly archivedOutputs = new Map<string, { project: string; files: FileRef[] }>();
  /**
   * The project of every archived job, so a lookup by id reads only the one
   * day file that holds it, and an unknown id reads nothing.
   */
  private readonly archivedIds = new Map<string, string>();
  /** False when the state came from a snapshot without archivedIds: the server fills them in from the archive. */
  archivedIndexComplete = true;

  /** Live job ids per project, in submission order. */
  private readonly projectJobs = new Map<string, Set<string>>();
  private readonly counts = new Map<string, StateCounts>();
  private readonly archivedCounts = new Map<string, StateCounts>();
  /** Reverse dependency edges among live jobs, and unmet dependency counts. */
  private readonly dependants = new Map<string, Set<string>>();
  private readonly unmet = new Map<string, number>();
  /** Cores and memory taken on each worker by its leases. */
  private readonly used = new Map<string, Resources>();
  private seq = 0;
  lastEventAt = 0;

  constructor(files = new FileRegistry()) {
    this.files = files;
  }

  /** Called for every job state change, after the change (peer notices, the event stream). */
  private readonly changeListeners: ((change: JobChange) => void)[] = [];

  onChange(listener: (change: JobChange) => void): () => void {
    this.changeListeners.push(listener);
    return () => {
      const i = this.changeListeners.indexOf(listener);
      if (i >= 0) this.changeListeners.splice(i, 1);
    };
  }

  private changed(change: JobChange): void {
    for (const listener of this.changeListeners) listener(change);
  }

  // ---- reading -----------------------------------------------------------

  project(name: string): Project {
    const p = this.projects.get(name);
    if (!p) throw fail('PROJECT_NOT_FOUND', `no project named '${name}'`);
    return p;
  }

  job(id: string): Job | undefined {
    return this.jobs.get(id);
  }

  /** The project of an archived job, or undefined when no job of that id was archived. */
  archivedProjectOf(id: string): string | undefined {
    return this.archivedIds.get(id);
  }

  /** Every archived job's id and project (for finding a job by part of its id). */
  archivedJobs(): IterableIterator<[id: string, project: string]> {
    return this.archivedIds.entries();
  }

  /** Records archived jobs found in the archive itself (see archivedIndexComplete). */
  indexArchived(jobs: Iterable<[id: string, project: string]>): void {
    for (const [id, project] of jobs) if (this.projects.has(project) && !this.jobs.has(id)) this.archivedIds.set(id, project);
    this.archivedIndexComplete = true;
  }

  jobIdsOf(project: string): ReadonlySet<string> {
    return this.projectJobs.get(project) ?? new Set();
  }

  /** Counts by state, live and archived together. */
  countsOf(project: string): StateCounts {
    const live = this.counts.get(project) ?? emptyCounts();
    const archived = this.archivedCounts.get(project);
    if (!archived) return { ...live };
    const out = emptyCounts();
    for (const k of Object.keys(out) as JobState[]) out[k] = live[k] + archived[k];
    return out;
  }

  liveCountsOf(project: string): StateCounts {
    return { ...(this.counts.get(project) ?? emptyCounts()) };
  }

  /** The kept files of a job, live or archived; undefined when it has none or is unknown. */
  outputsOf(jobId: string): FileRef[] | undefined {
    return this.jobs.get(jobId)?.outputs ?? this.archivedOutputs.get(jobId)?.files;
  }

  /** A user's or a project's weight (1 unless an admin set another). */
  weightOf(of: 'user' | 'project', name: string): number {
    return (of === 'user' ? this.userWeights : this.projectWeights).get(name) ?? 1;
  }

  /** The weights an admin set, other than 1. */
  weights(): { users: [string, number][]; projects: [string, number][] } {
    return { users: [...this.userWeights], projects: [...this.projectWeights] };
  }

  worker(id: string): Worker {
    const w = this.workers.get(id);
    if (!w) throw fail('WORKER_NOT_FOUND', `no worker with id '${id}'`);
    return w;
  }

  freeOf(workerId: string): Resources {
    const w = this.worker(workerId);
    const u = this.used.get(workerId);
    return u ? { cores: w.resources.cores - u.cores, memoryMb: w.resources.memoryMb - u.memoryMb } : { ...w.resources };
  }

  usedBy(workerId: string): Resources {
    return { ...(this.used.get(workerId) ?? { cores: 0, memoryMb: 0 }) };
  }

  // ---- applying events ---------------------------------------------------

  apply(e: Event): void {
    if (e.at > this.lastEventAt) this.lastEventAt = e.at;
    switch (e.t) {
      case 'project-created':
        this.projects.set(e.name, { name: e.name, owner: e.owner, members: [], createdAt: e.at });
        this.projectJobs.set(e.name, new Set());
        this.counts.set(e.name, emptyCounts());
        return;
      case 'project-removed':
        return this.removeProject(e.name, e.at);
      case 'project-loaded':
        return this.load(e);
      case 'members-changed':
        this.project(e.project).members = [...e.members];
        return;
      case 'project-retry-set': {
        const p = this.project(e.project);
        if (e.retry === null) delete p.retry;
        else p.retry = e.retry;
        return;
      }
      case 'jobs-submitted':
        return this.submit(e.project, e.jobs, e.at);
      case 'weight-set': {
        const weights = e.of === 'user' ? this.userWeights : this.projectWeights;
        if (e.weight === 1) weights.delete(e.name);
        else weights.set(e.name, e.weight);
        return;
      }
      case 'worker-registered':
        this.workers.set(e.id, {
          id: e.id,
          name: e.name,
          host: e.host,
          resources: { ...e.resources },
          labels: [...e.labels],
          tokenId: e.tokenId,
          ...(e.isolation !== undefined ? { isolation: e.isolation } : {}),
          ...(e.sharedIdentity ? { sharedIdentity: true } : {}),
          ...(e.onlyUser !== undefined ? { onlyUser: e.onlyUser } : {}),
          registeredAt: e.at,
          lastSeen: e.at,
        });
        return;
      case 'worker-stopped': {
        const w = this.workers.get(e.id);
        if (w && w.stoppedAt === undefined) w.stoppedAt = e.at;
        return;
      }
      case 'worker-removed': {
        // Its registration is gone: nothing it runs can be confirmed any more, so nothing waits for it.
        const lost = this.leases.ofWorker(e.id).map((l): [string, number] => [l.jobId, l.attempt]);
        if (lost.length > 0) this.lose(lost, 'worker-lost', e.reason, e.at, 'end');
        this.workers.delete(e.id);
        this.used.delete(e.id);
        return;
      }
      case 'jobs-claimed': {
        // At most one live attempt per job: a job whose attempt may still run is never handed out again.
        for (const [jobId] of e.claims) {
          const held = this.leases.get(jobId);
          if (held) throw fail('INVALID_STATE', `job ${jobId} still has attempt ${held.attempt} ${held.stopping ? 'stopping' : 'live'}; it cannot be handed out again`);
        }
        const worker = this.workers.get(e.workerId);
        for (const [jobId, n] of e.claims) {
          const job = this.jobs.get(jobId)!;
          this.ready.handedOut(job);
          job.attempts.push({
            n,
            workerId: e.workerId,
            workerName: worker?.name ?? e.workerName ?? e.workerId,
            via: e.via,
            ...(e.viaName !== undefined ? { viaName: e.viaName } : {}),
            startedAt: e.at,
          });
          this.leases.add({ jobId, attempt: n, workerId: e.workerId, via: e.via, deadline: e.deadline });
          this.charge(e.workerId, job.spec.resources, +1);
          const where = worker?.name ?? e.workerName ?? e.workerId;
          this.setState(job, 'running', e.via === 'local' ? `running on ${where}` : `running on ${where} via ${e.viaName ?? e.via}`, e.at);
        }
        if (worker) worker.lastSeen = e.at;
        return;
      }
      case 'claims-returned':
        for (const [jobId, n] of e.claims) {
          const job = this.jobs.get(jobId);
          const lease = this.leases.get(jobId);
          if (!lease || lease.attempt !== n || lease.workerId !== e.workerId) continue;
          // Ended by the server meanwhile: the worker never heard of it, so no process was started.
          if (lease.stopping) {
            this.stopped(lease, e.at);
            continue;
          }
          if (!job) continue;
          this.leases.remove(jobId);
          this.charge(e.workerId, job.spec.resources, -1);
          job.attempts = job.attempts.filter((a) => a.n !== n);
          this.requeue(job, 'claim not delivered; back in the queue', e.at);
        }
        return;
      case 'foreign-claimed':
        for (const c of e.claims) {
          // Home may hand us a job again after giving up on an earlier attempt.
          const earlier = this.foreign.get(c.jobId);
          if (earlier && earlier.result === undefined) this.charge(earlier.workerId, earlier.resources, -1);
          this.foreign.set(c.jobId, {
            home: e.home,
            jobId: c.jobId,
            attempt: c.attempt,
            workerId: e.workerId,
            resources: { ...c.resources },
            ...(c.project !== undefined ? { project: c.project } : {}),
            claimedAt: e.at,
            deadline: e.deadline,
          });
          this.charge(e.workerId, c.resources, +1);
        }
        return;
      case 'foreign-finished': {
        const f = this.foreign.get(e.jobId);
        if (!f || f.attempt !== e.attempt || f.result !== undefined) return;
        f.result = e.result;
        this.charge(f.workerId, f.resources, -1);
        return;
      }
      case 'foreign-closed':
        for (const [jobId, n] of e.attempts) {
          const f = this.foreign.get(jobId);
          if (!f || f.attempt !== n) continue;
          if (f.result === undefined) this.charge(f.workerId, f.resources, -1);
          this.foreign.delete(jobId);
        }
        return;
      case 'leases-renewed': {
        for (const [jobId, n] of e.attempts) {
          const lease = this.leases.get(jobId);
          if (lease && lease.workerId === e.workerId && this.leases.renew(jobId, n, e.deadline)) lease.listed = true;
          const f = this.foreign.get(jobId);
          if (f && f.attempt === n && f.workerId === e.workerId && f.deadline < e.deadline) f.deadline = e.deadline;
        }
        for (const [jobId, n] of e.running ?? []) {
          const lease = this.leases.get(jobId);
          if (lease && lease.attempt === n && lease.workerId === e.workerId) lease.running = lease.listed = true;
        }
        const worker = this.workers.get(e.workerId);
        if (worker) worker.lastSeen = e.at;
        return;
      }
      case 'attempts-stopped':
        for (const [jobId, n] of e.attempts) {
          const lease = this.leases.get(jobId);
          if (lease && lease.attempt === n && lease.workerId === e.workerId && lease.stopping) this.stopped(lease, e.at);
        }
        return;
      case 'clock-stepped':
        for (const [jobId, n] of e.attempts) this.leases.move(jobId, n, e.stepMs);
        for (const [jobId, n] of e.foreign) {
          const f = this.foreign.get(jobId);
          if (f && f.attempt === n) f.deadline += e.stepMs;
        }
        return;
      case 'leases-extended':
        for (const [jobId, n] of e.attempts) {
          this.leases.renew(jobId, n, e.deadline);
          const f = this.foreign.get(jobId);
          if (f && f.attempt === n && f.deadline < e.deadline) f.deadline = e.deadline;
        }
        return;
      case 'attempt-finished':
        return this.finish(e);
      case 'attempts-lost':
        return this.lose(e.attempts, e.how, e.reason, e.at, e.stopping ? 'stop' : undefined);
      case 'jobs-cancelled':
        for (const id of e.ids) {
          const job = this.jobs.get(id);
          if (job && !FINAL_STATES.has(job.state)) this.cancel(job, e.reason, e.at);
        }
        return;
      case 'jobs-retried':
        for (const id of e.ids) {
          const job = this.jobs.get(id);
          if (job && (job.state === 'failed' || job.state === 'cancelled')) this.revive(job, e.at);
        }
        return;
      case 'jobs-archived':
        for (const id of e.ids) this.archive(id);
        return;
      case 'value-set':
        return this.setValue(e.project, e.name, e.value);
      case 'file-received':
        if (this.projects.has(e.project)) this.files.receive(e.project, e.sha256, e.size);
        return;
      case 'files-collected':
        for (const sha of e.sha256s) this.files.collected(sha);
        return;
    }
  }

  // ---- state transitions -------------------------------------------------

  private submit(project: string, jobs: { id: string; spec: Job['spec'] }[], at: number): void {
    const ids = this.projectJobs.get(project)!;
    for (const { id, spec } of jobs) {
      const job: Job = {
        id,
        project,
        seq: ++this.seq,
        spec,
        state: 'waiting',
        reason: 'submitted',
        createdAt: at,
        updatedAt: at,
        attempts: [],
        failures: 0,
        lost: 0,
      };
      for (const input of spec.inputs ?? []) if ('sha256' in input) this.files.hold(project, input);
      this.jobs.set(id, job);
      ids.add(id);
      this.counts.get(project)!.waiting++;
      this.changed({ job, from: null });
      this.settle(job, at);
    }
  }

  /**
   * A saved project comes back with the references its jobs and values hold
   * here exactly as if they had been submitted and run here: uploaded inputs,
   * resolved inputs, kept outputs, file values. Finished jobs stay as they
   * were (the sweeper archives them later); the others go where their
   * dependencies, loaded before them, allow.
   */
  private load(e: ProjectLoaded): void {
    const name = e.name;
    this.projects.set(name, { name, owner: e.owner, members: [], createdAt: e.createdAt, ...(e.retry ? { retry: e.retry } : {}) });
    const ids = new Set<string>();
    this.projectJobs.set(name, ids);
    const counts = emptyCounts();
    this.counts.set(name, counts);
    for (const [key, value] of Object.entries(e.values)) this.setValue(name, key, { ...value });
    for (const l of e.jobs) {
      const job: Job = {
        id: l.id,
        project: name,
        seq: ++this.seq,
        spec: l.spec,
        state: l.state,
        reason: l.reason,
        createdAt: l.createdAt,
        updatedAt: l.updatedAt,
        // Attempts are changed in place later; the event must stay as journaled.
        attempts: l.attempts.map((a) => ({ ...a })),
        failures: l.failures,
        lost: l.lost,
      };
      if (l.result) job.result = { ...l.result };
      if (l.inputs) job.inputs = [...l.inputs];
      if (l.outputs) job.outputs = [...l.outputs];
      for (const input of job.spec.inputs ?? []) if ('sha256' in input) this.files.hold(name, input);
      for (const f of job.outputs ?? []) this.files.hold(name, f);
      if (!FINAL_STATES.has(job.state)) this.placeLoaded(job, e.at);
      for (const r of job.inputs ?? []) if ('sha256' in r) this.files.hold(name, r);
      this.jobs.set(job.id, job);
      ids.add(job.id);
      counts[job.state]++;
      if (job.state === 'queued') {
        // A job of these ids may have run here before, and its attempt may not have stopped yet.
        const held = this.leases.get(job.id);
        if (held) job.reason = this.waitReason(job, held);
        else this.ready.add(job);
      }
      this.changed({ job, from: null });
    }
  }

  /** Records `job` as a dependant of each of its unfinished dependencies; returns how many there are. */
  private linkToUnfinished(job: Job): number {
    let unmet = 0;
    for (const depId of job.spec.after) {
      const dep = this.jobs.get(depId);
      if (!dep || dep.state === 'done') continue;
      unmet++;
      let set = this.dependants.get(depId);
      if (!set) this.dependants.set(depId, (set = new Set()));
      set.add(job.id);
    }
    return unmet;
  }

  /**
   * The state of a loaded job that had not finished, from its dependencies
   * (all loaded before it): cancelled after a failed one, waiting for
   * unfinished ones, otherwise queued. A job queued when it was saved keeps
   * its resolved inputs and its reason; one that becomes queued only now
   * resolves its inputs now, as `enqueue` does.
   */
  private placeLoaded(job: Job, at: number): void {
    for (const depId of job.spec.after) {
      const dep = this.jobs.get(depId);
      if (dep && (dep.state === 'failed' || dep.state === 'cancelled')) {
        Object.assign(job, { state: 'cancelled', reason: `dependency ${depId} ${dep.state}`, updatedAt: at });
        return;
      }
    }
    const unmet = this.linkToUnfinished(job);
    if (unmet > 0) {
      this.unmet.set(job.id, unmet);
      Object.assign(job, { state: 'waiting', reason: `waiting for ${unmet} dependenc${unmet === 1 ? 'y' : 'ies'}`, updatedAt: at });
      return;
    }
    const inputs = job.spec.inputs ?? [];
    if (job.state === 'queued' && (inputs.length === 0 || job.inputs)) return;
    if (inputs.length > 0) {
      const resolved: ResolvedInput[] = [];
      for (const input of inputs) {
        const r = this.resolveInput(job.project, input);
        if (typeof r === 'string') {
          Object.assign(job, { state: 'failed', reason: `input '${input.name}': ${r}`, updatedAt: at });
          return;
        }
        resolved.push(r);
      }
      job.inputs = resolved;
    }
    Object.assign(job, { state: 'queued', reason: 'dependencies done', updatedAt: at });
  }

  /**
   * Puts a job that is not running into the state its dependencies allow:
   * cancelled if one failed or was cancelled, waiting if one is unfinished,
   * otherwise queued. Dependencies that are no longer live were archived,
   * which only happens to finished jobs; submit refuses archived ones that did
   * not succeed, so those count as done.
   */
  private settle(job: Job, at: number): void {
    let unmet = 0;
    for (const depId of job.spec.after) {
      const dep = this.jobs.get(depId);
      if (!dep || dep.state === 'done') continue;
      if (dep.state === 'failed' || dep.state === 'cancelled') {
        this.setState(job, 'cancelled', `dependency ${depId} ${dep.state}`, at);
        this.cascade(job, at);
        return;
      }
      unmet++;
      let set = this.dependants.get(depId);
      if (!set) this.dependants.set(depId, (set = new Set()));
      set.add(job.id);
    }
    if (unmet > 0) {
      this.unmet.set(job.id, unmet);
      this.setState(job, 'waiting', `waiting for ${unmet} dependenc${unmet === 1 ? 'y' : 'ies'}`, at);
    } else {
      this.unmet.delete(job.id);
      this.enqueue(job, 'ready to run', at);
    }
  }

  /**
   * A job whose dependencies are done joins the queue, its inputs resolved
   * now: the outputs it names exist, and a project value is taken as it is
   * at this moment. An input that cannot be resolved fails the job.
   */
  private enqueue(job: Job, reason: string, at: number): void {
    if (job.spec.inputs && job.spec.inputs.length > 0) {
      const resolved: ResolvedInput[] = [];
      for (const input of job.spec.inputs) {
        const r = this.resolveInput(job.project, input);
        if (typeof r === 'string') {
          this.setState(job, 'failed', `input '${input.name}': ${r}`, at);
          this.cascade(job, at);
          return;
        }
        resolved.push(r);
      }
      for (const old of job.inputs ?? []) if ('sha256' in old) this.files.release(job.project, old);
      for (const r of resolved) if ('sha256' in r) this.files.hold(job.project, r);
      job.inputs = resolved;
    }
    this.requeue(job, reason, at);
  }

  private resolveInput(project: string, input: NonNullable<Job['spec']['inputs']>[number]): ResolvedInput | string {
    if ('sha256' in input) return input;
    if ('job' in input) {
      const file = this.outputsOf(input.job)?.find((f) => f.name === input.output);
      if (!file) return `job ${input.job} kept no output named '${input.output}'`;
      return { name: input.name, sha256: file.sha256, size: file.size };
    }
    const value = this.projects.get(project)?.values?.[input.value];
    if (!value) return `project value '${input.value}' is not set`;
    return 'text' in value ? { name: input.name, text: value.text } : { name: input.name, sha256: value.sha256, size: value.size };
  }

  private setValue(project: string, name: string, value: ProjectValue | null): void {
    const p = this.projects.get(project);
    if (!p) return;
    const old = p.values?.[name];
    if (old && 'sha256' in old) this.files.release(project, old);
    if (value === null) {
      if (p.values) delete p.values[name];
      return;
    }
    if ('sha256' in value) this.files.hold(project, value);
    (p.values ??= {})[name] = value;
  }

  private finish(e: Extract<Event, { t: 'attempt-finished' }>): void {
    const job = this.jobs.get(e.jobId)!;
    const attempt = this.endAttempt(job, e.attempt, e.how, e.at, e.exitCode, e.signal);
    const { stdoutTail, stderrTail, stdoutBytes, stderrBytes } = e;
    Object.assign(attempt, { stdoutTail, stderrTail, stdoutBytes, stderrBytes });
    attempt.limits = { memoryMb: job.spec.resources.memoryMb, timeoutS: job.spec.timeoutS };
    if (e.usage) attempt.usage = e.usage;
    if (e.outputs && e.outputs.length > 0) {
      attempt.outputs = e.outputs;
      for (const f of e.outputs) this.files.hold(job.project, f);
      for (const f of job.outputs ?? []) this.files.release(job.project, f);
      job.outputs = e.outputs;
    }
    job.result = {
      attempt: e.attempt,
      exitCode: e.exitCode,
      signal: e.signal,
      durationMs: e.durationMs,
      stdoutTail,
      stderrTail,
      stdoutBytes,
      stderrBytes,
    };
    if (e.how === 'exited' && e.exitCode === 0) {
      this.storeOutputValues(job, e.outputs ?? [], e.at);
      this.setState(job, 'done', `exit code 0 on ${attempt.workerName}`, e.at);
      this.release(job, e.at);
      return;
    }
    const why =
      e.how === 'timeout'
        ? `timed out after ${job.spec.timeoutS}s`
        : e.how === 'oom'
          ? `out of memory (limit ${job.spec.resources.memoryMb} MB${e.usage ? `, peak ${Math.round(e.usage.maxRssMb)} MB` : ''})`
        : e.how === 'start-failed'
          ? e.reason !== undefined ? `could not start: ${e.reason}` : 'could not start'
          : e.how === 'output-failed'
            ? `outputs not kept: ${e.reason ?? 'the upload failed'}`
            : e.signal
            ? `killed by ${e.signal}`
            : `exit code ${e.exitCode}`;
    attempt.reason = why;
    const grow = growAfter(job.spec, job.grown ?? 0, e.how, e.usage, e.durationMs);
    if (grow !== undefined) {
      if ('cannot' in grow) {
        this.setState(job, 'failed', grow.cannot, e.at);
        this.cascade(job, e.at);
        return;
      }
      // The lease (charged with the old figures) has ended: the job is queued again asking for more.
      job.grown = (job.grown ?? 0) + 1;
      const more = 'memoryMb' in grow ? `${grow.memoryMb} MB` : `${grow.timeoutS}s`;
      job.spec = 'memoryMb' in grow ? { ...job.spec, resources: { ...job.spec.resources, memoryMb: grow.memoryMb } } : { ...job.spec, timeoutS: grow.timeoutS };
      this.requeue(job, `${why}; retry with ${more} (${job.grown} of ${job.spec.retry?.attempts ?? DEFAULT_GROW_ATTEMPTS})`, e.at);
      return;
    }
    job.failures++;
    if (job.failures <= job.spec.maxRetries) {
      this.requeue(job, `${why}; retry ${job.failures} of ${job.spec.maxRetries}`, e.at);
    } else {
      this.setState(job, 'failed', why, e.at);
      this.cascade(job, e.at);
    }
  }

  /** `--output-to`: each pattern's first match (by name) becomes the project value. */
  private storeOutputValues(job: Job, outputs: FileRef[], at: number): void {
    for (const spec of job.spec.outputs ?? []) {
      if (spec.to === undefined) continue;
      const file = [...outputs].sort((a, b) => (a.name < b.name ? -1 : 1)).find((f) => matchesGlob(spec.glob, f.name));
      if (file) this.setValue(job.project, spec.to, { sha256: file.sha256, size: file.size, at, job: job.id });
    }
  }

  /**
   * Attempts taken back without their worker's word. A lease that ran out,
   * or whose worker's registration is gone (`end`), ends here; an attempt
   * marked lost while its lease still runs, or found lapsed only in the
   * journal at start-up (`stop`), becomes stopping, as its process may be
   * alive. A lease that was stopping already only ends, if it ends.
   */
  private lose(attempts: [string, number][], how: 'lease-expired' | 'worker-lost', reason: string, at: number, mode?: 'end' | 'stop'): void {
    const ends = mode === undefined ? how === 'lease-expired' : mode === 'end';
    for (const [jobId, n] of attempts) {
      const lease = this.leases.get(jobId);
      if (!lease || lease.attempt !== n) continue;
      if (lease.stopping) {
        if (ends) this.stopped(lease, at);
        continue;
      }
      const job = this.jobs.get(jobId);
      if (!job) continue;
      const attempt = this.endAttempt(job, n, how, at, null, null, !ends);
      attempt.reason = reason;
      job.lost++;
      if (job.lost > MAX_LOST_ATTEMPTS) {
        this.setState(job, 'failed', `lost ${job.lost} times, last: ${reason}`, at);
        this.cascade(job, at);
      } else {
        this.requeue(job, `re-queued: ${reason}`, at);
      }
    }
  }

  /**
   * A stopping attempt is over (its worker confirmed, its lease lapsed, or
   * its worker is gone): the lease ends, and a job queued meanwhile may be
   * handed out.
   */
  private stopped(lease: Lease, at: number): void {
    this.leases.remove(lease.jobId);
    if (lease.stopping) this.charge(lease.workerId, lease.stopping.resources, -1);
    const job = this.jobs.get(lease.jobId);
    if (job && job.state === 'queued' && !this.ready.has(job.id)) this.requeue(job, `attempt ${lease.attempt} stopped; ready to run`, at);
  }

  /**
   * The job goes (back) on the queue, unless an earlier attempt of it may
   * still run: then it is queued but held back, and says why, until that
   * attempt has stopped.
   */
  private requeue(job: Job, reason: string, at: number): void {
    const lease = this.leases.get(job.id);
    if (lease) {
      this.setState(job, 'queued', this.waitReason(job, lease), at);
      return;
    }
    this.setState(job, 'queued', reason, at);
    this.ready.add(job);
  }

  private waitReason(job: Job, lease: Lease): string {
    const a = job.attempts.find((x) => x.n === lease.attempt);
    const where = this.workers.get(lease.workerId)?.name ?? a?.workerName ?? lease.workerId;
    return `waiting for attempt ${lease.attempt} to stop on worker ${where}${lease.via === 'local' ? '' : ` via ${a?.viaName ?? lease.via}`}`;
  }

  /** Where an attempt's process is, as far as this server knows (see AttemptLive). */
  attemptLive(jobId: string, n: number): AttemptLive {
    const lease = this.leases.get(jobId);
    if (!lease || lease.attempt !== n) return 'ended';
    return lease.stopping ? 'stopping' : lease.running ? 'running' : 'starting';
  }

  /** The attempt that holds a queued job back, if one does. */
  heldBy(job: Job): Lease | undefined {
    const lease = this.leases.get(job.id);
    return lease && job.state === 'queued' ? lease : undefined;
  }

  private cancel(job: Job, reason: string, at: number): void {
    if (job.state === 'running') {
      const lease = this.leases.get(job.id);
      if (lease) this.endAttempt(job, lease.attempt, 'cancelled', at, null, null, true).reason = reason;
    }
    this.ready.remove(job);
    this.forgetEdges(job);
    this.setState(job, 'cancelled', reason, at);
    this.cascade(job, at);
  }

  /** Retry: a failed or cancelled job gets a fresh retry budget, and so do the dependants it cancelled. */
  private revive(job: Job, at: number): void {
    job.failures = 0;
    job.lost = 0;
    // It may ask for more again, from what it asks for now.
    if (job.grown !== undefined) delete job.grown;
    this.settle(job, at);
    for (const id of this.jobIdsOf(job.project)) {
      const other = this.jobs.get(id)!;
      if (other.state === 'cancelled' && other.reason.startsWith(`dependency ${job.id} `)) this.revive(other, at);
    }
  }

  /** A job reached `done`: dependants with nothing else to wait for become queued. */
  private release(job: Job, at: number): void {
    const set = this.dependants.get(job.id);
    if (!set) return;
    this.dependants.delete(job.id);
    for (const id of set) {
      const dependant = this.jobs.get(id);
      if (!dependant || dependant.state !== 'waiting') continue;
      const left = (this.unmet.get(id) ?? 1) - 1;
      if (left > 0) {
        this.unmet.set(id, left);
        dependant.reason = `waiting for ${left} dependenc${left === 1 ? 'y' : 'ies'}`;
      } else {
        this.unmet.delete(id);
        this.enqueue(dependant, 'dependencies done', at);
      }
    }
  }

  /** A job failed or was cancelled: everything waiting on it, directly or not, is cancelled. */
  private cascade(job: Job, at: number): void {
    const set = this.dependants.get(job.id);
    if (!set) return;
    this.dependants.delete(job.id);
    for (const id of set) {
      const dependant = this.jobs.get(id);
      if (!dependant || dependant.state !== 'waiting') continue;
      this.forgetEdges(dependant);
      this.unmet.delete(id);
      this.setState(dependant, 'cancelled', `dependency ${job.id} ${job.state}`, at);
      this.cascade(dependant, at);
    }
  }

  private forgetEdges(job: Job): void {
    for (const depId of job.spec.after) this.dependants.get(depId)?.delete(job.id);
    this.unmet.delete(job.id);
  }

  private endAttempt(
    job: Job,
    n: number,
    how: AttemptEnd,
    at: number,
    exitCode: number | null,
    signal: string | null,
    /** Ended by the server alone: the lease stays, stopping, until the process is known to be gone. */
    stop = false,
  ): Attempt {
    const attempt = job.attempts.find((a) => a.n === n)!;
    attempt.endedAt = at;
    attempt.how = how;
    attempt.exitCode = exitCode;
    attempt.signal = signal;
    if (stop) {
      this.leases.markStopping(job.id, job.spec.resources);
      return attempt;
    }
    const lease = this.leases.remove(job.id);
    if (lease) this.charge(lease.workerId, job.spec.resources, -1);
    return attempt;
  }

  /** Resources are counted for this server's own workers only; a peer's worker is its server's business. */
  private charge(workerId: string, r: Resources, sign: 1 | -1): void {
    if (!this.workers.has(workerId)) return;
    const u = this.used.get(workerId) ?? { cores: 0, memoryMb: 0 };
    u.cores += sign * r.cores;
    u.memoryMb += sign * r.memoryMb;
    if (u.cores === 0 && u.memoryMb === 0) this.used.delete(workerId);
    else this.used.set(workerId, u);
  }

  private setState(job: Job, state: JobState, reason: string, at: number): void {
    const from = job.state;
    if (from !== state) {
      const c = this.counts.get(job.project)!;
      c[from]--;
      c[state]++;
    }
    job.state = state;
    job.reason = reason;
    job.updatedAt = at;
    this.changed({ job, from });
  }

  private archive(id: string): void {
    const job = this.jobs.get(id);
    if (!job || !FINAL_STATES.has(job.state)) return;
    this.jobs.delete(id);
    this.projectJobs.get(job.project)?.delete(id);
    this.counts.get(job.project)![job.state]--;
    let a = this.archivedCounts.get(job.project);
    if (!a) this.archivedCounts.set(job.project, (a = emptyCounts()));
    a[job.state]++;
    this.dependants.delete(id);
    if (job.outputs) this.archivedOutputs.set(id, { project: job.project, files: job.outputs });
    this.archivedIds.set(id, job.project);
  }

  private removeProject(name: string, at: number): void {
    for (const id of this.jobIdsOf(name)) {
      const job = this.jobs.get(id)!;
      if (job.state === 'running') {
        const lease = this.leases.get(id);
        if (lease) this.endAttempt(job, lease.attempt, 'cancelled', at, null, null, true).reason = 'project removed';
      }
      this.ready.remove(job);
      this.unmet.delete(id);
      this.dependants.delete(id);
      this.jobs.delete(id);
    }
    for (const [id, o] of this.archivedOutputs) if (o.project === name) this.archivedOutputs.delete(id);
    for (const [id, project] of this.archivedIds) if (project === name) this.archivedIds.delete(id);
    this.files.dropProject(name);
    this.projects.delete(name);
    this.projectWeights.delete(name);
    this.projectJobs.delete(name);
    this.counts.delete(name);
    this.archivedCounts.delete(name);
  }

  // ---- snapshots ---------------------------------------------------------

  toSnapshot(): ModelSnapshot {
    return {
      version: 1,
      seq: this.seq,
      lastEventAt: this.lastEventAt,
      projects: [...this.projects.values()],
      jobs: [...this.jobs.values()],
      workers: [...this.workers.values()],
      leases: [...this.leases.all()].map((l) => ({ ...l })),
      archivedCounts: [...this.archivedCounts],
      foreign: [...this.foreign.values()],
      turns: this.ready.turns(),
      weights: this.weights(),
      files: this.files.toSnapshot(),
      archivedOutputs: [...this.archivedOutputs],
      archivedIds: this.archivedIdsByProject(),
    };
  }

  private archivedIdsByProject(): [string, string[]][] {
    const by = new Map<string, string[]>();
    for (const [id, project] of this.archivedIds) {
      let ids = by.get(project);
      if (!ids) by.set(project, (ids = []));
      ids.push(id);
    }
    return [...by];
  }

  static fromSnapshot(s: ModelSnapshot): Model {
    const m = new Model(FileRegistry.fromSnapshot(s.files));
    for (const [id, o] of s.archivedOutputs ?? []) m.archivedOutputs.set(id, o);
    for (const [project, ids] of s.archivedIds ?? []) for (const id of ids) m.archivedIds.set(id, project);
    // An older snapshot with archived jobs but no index: the server reads the archive once.
    m.archivedIndexComplete = s.archivedIds !== undefined || s.archivedCounts.length === 0;
    m.seq = s.seq;
    m.lastEventAt = s.lastEventAt;
    for (const p of s.projects) {
      m.projects.set(p.name, p);
      m.projectJobs.set(p.name, new Set());
      m.counts.set(p.name, emptyCounts());
    }
    for (const [name, c] of s.archivedCounts) m.archivedCounts.set(name, c);
    for (const [name, w] of s.weights?.users ?? []) m.userWeights.set(name, w);
    for (const [name, w] of s.weights?.projects ?? []) m.projectWeights.set(name, w);
    for (const w of s.workers) m.workers.set(w.id, w);
    const jobs = [...s.jobs].sort((a, b) => a.seq - b.seq);
    for (const job of jobs) {
      m.jobs.set(job.id, job);
      m.projectJobs.get(job.project)!.add(job.id);
      m.counts.get(job.project)![job.state]++;
    }
    for (const f of s.foreign ?? []) {
      m.foreign.set(f.jobId, f);
      if (f.result === undefined) m.charge(f.workerId, f.resources, +1);
    }
    for (const l of s.leases) {
      m.leases.add(l);
      const resources = l.stopping?.resources ?? m.jobs.get(l.jobId)?.spec.resources;
      if (resources) m.charge(l.workerId, resources, +1);
    }
    for (const job of jobs) if (job.state === 'queued' && !m.leases.get(job.id)) m.ready.add(job);
    if (s.turns) m.ready.restoreTurns(s.turns);
    for (const job of jobs) if (job.state === 'waiting') m.unmet.set(job.id, m.linkToUnfinished(job));
    return m;
  }
}
