import type {
  AttemptFinished,
  AttemptsLost,
  AttemptsStopped,
  ClockStepped,
  ForeignClosed,
  JobsCancelled,
  JobsClaimed,
  JobsRetried,
  JobsSubmitted,
  LoadedJob,
  ProjectCreated,
  ProjectLoaded,
  ProjectRetrySet,
  ValueSet,
  WeightSet,
} from './events.js';
import { fail } from './errors.js';
import { SHA256, checkFileName, checkValueName, globToRegExp } from './files.js';
import type { Model } from './model.js';
import {
  FINAL_STATES,
  MAX_WEIGHT,
  PRIORITY_MAX,
  PRIORITY_MIN,
  type AttemptEnd,
  type FileRef,
  type InputSource,
  type JobSpec,
  type JobState,
  type Lease,
  type OutputSpec,
  type ProcessOutcome,
  type ProjectValue,
  type Resources,
  type RetrySpec,
} from './types.js';

/**
 * Commands turn a request into the event that records it, after checking it
 * against the current state. They throw a CpcError when the request cannot be
 * carried out, and then nothing has changed. Except for `planClaim`, they do
 * not change the model: the caller applies the event and journals it.
 */

export const PROJECT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function planCreateProject(model: Model, name: string, owner: string, at: number): ProjectCreated {
  if (!PROJECT_NAME.test(name)) {
    throw fail('INVALID_FIELD', `project name '${name}' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
  // The same words whether or not the asker may see the project: nothing but "taken" is told.
  if (model.projects.has(name)) throw fail('PROJECT_EXISTS', `the project name '${name}' is taken; choose another`);
  return { t: 'project-created', at, name, owner };
}

/** What a saved project brings (see ProjectLoaded); checked for shape at the edge, for sense here. */
export interface ProjectToLoad {
  name: string;
  owner: string;
  createdAt: number;
  values: Record<string, ProjectValue>;
  retry?: RetrySpec;
  jobs: LoadedJob[];
}

export const LEFT_BEHIND = 'loaded; the running attempt was left behind';

/**
 * Checks a saved project against this server and orders its jobs so every
 * job follows those it depends on. Job ids are kept, so every id must be new
 * here (JOB_EXISTS; the caller also checks the archive, which is not in
 * memory). Dependencies and inputs from other jobs must name jobs of the
 * saved project. Attempts still open when it was saved are closed: their
 * workers belong to the other server, and their jobs come back queued.
 */
export function planLoadProject(model: Model, p: ProjectToLoad, at: number): ProjectLoaded {
  planCreateProject(model, p.name, p.owner, at);
  for (const name of Object.keys(p.values)) checkValueName(name);
  const index = new Map<string, number>();
  p.jobs.forEach((job, i) => {
    if (index.has(job.id)) throw fail('INVALID_FIELD', `jobs[${i}]: job ${job.id} is given twice`);
    index.set(job.id, i);
    if (model.job(job.id)) throw fail('JOB_EXISTS', `this server already has a job ${job.id}; was the project loaded here before? (new ids make a copy: cpcc load --new-ids)`);
  });
  const deps: number[][] = p.jobs.map((job, i) => {
    const where = `jobs[${i}]`;
    const spec = job.spec;
    if ((spec.argv === undefined) === (spec.shell === undefined)) throw fail('INVALID_FIELD', `${where}: give exactly one of argv or shell`);
    checkPriority(spec.priority, where);
    const inside = (ref: string, what: string): number => {
      const k = index.get(ref);
      if (k === undefined) throw fail('UNKNOWN_DEPENDENCY', `${where}: ${what} ${ref} is not a job of the saved project`);
      if (k === i) throw fail('DEPENDENCY_CYCLE', `${where} depends on itself`);
      return k;
    };
    const out = spec.after.map((ref) => inside(ref, 'dependency'));
    // Inputs are checked as a submit checks them; an input from a job needs that job as a dependency.
    checkInputs(spec.inputs ?? [], i, (ref) => {
      inside(ref, 'input from job');
      if (!spec.after.includes(ref)) throw fail('INVALID_FIELD', `${where}: takes an input from job ${ref} without depending on it`);
      return ref;
    });
    if (spec.outputs) checkOutputs(spec.outputs, i);
    checkResolved(job, where);
    job.attempts.forEach((a, k) => {
      if (a.n !== k + 1) throw fail('INVALID_FIELD', `${where}.attempts[${k}]: attempts must be numbered 1, 2, … in order`);
      for (const [m, f] of (a.outputs ?? []).entries()) checkFileName(f.name, `${where}.attempts[${k}].outputs[${m}].name`);
    });
    return out;
  });
  const order = dependencyOrder(deps);
  const jobs = order.map((i): LoadedJob => {
    const job = p.jobs[i]!;
    const open = job.attempts.some((a) => a.how === undefined);
    if (!open && job.state !== 'running') return job;
    const attempts = job.attempts.map((a) =>
      a.how === undefined ? { ...a, endedAt: at, how: 'worker-lost' as const, exitCode: null, signal: null, reason: 'left behind on the server the project was saved from' } : a,
    );
    return job.state === 'running' ? { ...job, attempts, state: 'queued', reason: LEFT_BEHIND, updatedAt: at } : { ...job, attempts };
  });
  return { t: 'project-loaded', at, name: p.name, owner: p.owner, createdAt: p.createdAt, values: p.values, ...(p.retry ? { retry: p.retry } : {}), jobs };
}

/**
 * What a saved job carries beyond its spec is held to the spec's rules: the
 * inputs it was queued with (a worker writes them into the job's folder under
 * these names) name the spec's own inputs, each once, and kept outputs are
 * paths inside a work folder, as a worker's report must be.
 */
function checkResolved(job: LoadedJob, where: string): void {
  const declared = new Set((job.spec.inputs ?? []).map((input) => input.name));
  const seen = new Set<string>();
  (job.inputs ?? []).forEach((input, k) => {
    checkFileName(input.name, `${where}.inputs[${k}].name`);
    if (!declared.has(input.name)) throw fail('INVALID_FIELD', `${where}.inputs[${k}]: '${input.name}' is not an input of the job's spec`);
    if (seen.has(input.name)) throw fail('INVALID_FIELD', `${where}.inputs[${k}]: input '${input.name}' is given twice`);
    seen.add(input.name);
    if ('sha256' in input && !SHA256.test(input.sha256)) throw fail('INVALID_FIELD', `${where}.inputs[${k}].sha256 must be 64 lowercase hex digits`);
  });
  (job.outputs ?? []).forEach((f, k) => checkFileName(f.name, `${where}.outputs[${k}].name`));
}

/**
 * The same jobs under new ids (from `newId`), with every reference between
 * them (dependencies, inputs from a job) following along: a copy of a saved
 * project that can be loaded beside the original. A reference to a job
 * outside the project is left as it is, for planLoadProject to refuse.
 */
export function withNewJobIds(jobs: LoadedJob[], newId: () => string): LoadedJob[] {
  const ids = new Map<string, string>();
  for (const job of jobs) if (!ids.has(job.id)) ids.set(job.id, newId());
  const renamed = (id: string): string => ids.get(id) ?? id;
  return jobs.map((job) => {
    const spec = { ...job.spec, after: job.spec.after.map(renamed) };
    if (job.spec.inputs) spec.inputs = job.spec.inputs.map((input) => ('job' in input ? { ...input, job: renamed(input.job) } : input));
    return { ...job, id: renamed(job.id), spec };
  });
}

/** Every file a saved project refers to the way the model holds them: uploaded and resolved inputs, kept outputs, file values. */
export function loadedFiles(p: Pick<ProjectToLoad, 'values' | 'jobs'>): FileRef[] {
  const out: FileRef[] = [];
  for (const [name, v] of Object.entries(p.values)) if ('sha256' in v) out.push({ name, sha256: v.sha256, size: v.size });
  for (const job of p.jobs) {
    for (const input of job.spec.inputs ?? []) if ('sha256' in input) out.push(input);
    for (const input of job.inputs ?? []) if ('sha256' in input) out.push(input);
    for (const f of job.outputs ?? []) out.push(f);
  }
  return out;
}

/**
 * Indexes in an order where each follows its dependencies (depth-first
 * post-order, iterative so a long chain cannot overflow the stack); a batch
 * already in dependency order keeps its order.
 */
function dependencyOrder(deps: number[][]): number[] {
  const order: number[] = [];
  const mark = new Uint8Array(deps.length); // 0 new, 1 on the path, 2 placed
  for (let root = 0; root < deps.length; root++) {
    if (mark[root] !== 0) continue;
    const stack: [number, number][] = [[root, 0]];
    mark[root] = 1;
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const next = deps[top[0]]!;
      if (top[1] < next.length) {
        const k = next[top[1]++]!;
        if (mark[k] === 1) throw fail('DEPENDENCY_CYCLE', `jobs[${k}] is part of a dependency cycle`);
        if (mark[k] === 0) {
          mark[k] = 1;
          stack.push([k, 0]);
        }
      } else {
        mark[top[0]] = 2;
        order.push(top[0]);
        stack.pop();
      }
    }
  }
  return order;
}

export interface SubmitItem {
  /** A name other items of the same submission may use in `after`. */
  key?: string;
  spec: JobSpec;
}

/**
 * Checks a submission and orders it so that every job follows the jobs it
 * depends on (apply relies on that). `after` entries name a job id of the
 * project, or the key of another item of this submission. `archived` gives
 * the final state of dependencies that are no longer live.
 */
export function planSubmit(
  model: Model,
  project: string,
  items: SubmitItem[],
  newIds: string[],
  at: number,
  archived: ReadonlyMap<string, JobState> = new Map(),
): JobsSubmitted {
  // A job's own retry wins; one without gets the project's.
  const defaultRetry = model.project(project).retry;
  const byKey = new Map<string, number>();
  items.forEach((item, i) => {
    if (item.key === undefined) return;
    if (byKey.has(item.key)) throw fail('INVALID_FIELD', `jobs[${i}].key '${item.key}' is used twice`);
    byKey.set(item.key, i);
  });

  // Resolve every `after` to an id; remember edges inside the batch for ordering.
  const inBatch: number[][] = items.map(() => []);
  const specs: JobSpec[] = items.map((item, i) => {
    const after: string[] = [];
    /** A job id of the project or a key of this batch, as the id the job depends on. */
    const dependOn = (ref: string): string => {
      const k = byKey.get(ref);
      if (k !== undefined) {
        if (k === i) throw fail('DEPENDENCY_CYCLE', `jobs[${i}] depends on itself`);
        inBatch[i]!.push(k);
        after.push(newIds[k]!);
        return newIds[k]!;
      }
      const live = model.job(ref);
      if (live) {
        if (live.project !== project) {
          throw fail('UNKNOWN_DEPENDENCY', `jobs[${i}] depends on ${ref}, which is in another project`);
        }
        after.push(ref);
        return ref;
      }
      const state = archived.get(ref);
      if (state === undefined) throw fail('UNKNOWN_DEPENDENCY', `jobs[${i}] depends on unknown job '${ref}'`);
      if (state !== 'done') {
        throw fail('INVALID_STATE', `jobs[${i}] depends on archived job ${ref}, which ${state === 'failed' ? 'failed' : 'was cancelled'}`);
      }
      after.push(ref);
      return ref;
    };
    checkPriority(item.spec.priority, `jobs[${i}]`);
    for (const ref of item.spec.after) dependOn(ref);
    const spec: JobSpec = { ...item.spec };
    if (spec.retry === undefined && defaultRetry !== undefined) spec.retry = defaultRetry;
    if (item.spec.inputs) spec.inputs = checkInputs(item.spec.inputs, i, dependOn);
    if (item.spec.outputs) checkOutputs(item.spec.outputs, i);
    spec.after = [...new Set(after)];
    return spec;
  });

  const order = dependencyOrder(inBatch);
  return { t: 'jobs-submitted', at, project, jobs: order.map((i) => ({ id: newIds[i]!, spec: specs[i]! })) };
}

/** The owner sets or clears the retry with more of the project's jobs submitted without their own (jobs already submitted keep theirs). */
export function planSetProjectRetry(model: Model, project: string, retry: RetrySpec | null, at: number): ProjectRetrySet {
  model.project(project);
  return { t: 'project-retry-set', at, project, retry };
}

/**
 * An admin sets a user's or a project's weight. A user must exist (the caller
 * asks the accounts); a project is looked up here.
 */
export function planSetWeight(model: Model, of: 'user' | 'project', name: string, weight: number, at: number): WeightSet {
  if (!Number.isInteger(weight) || weight < 1 || weight > MAX_WEIGHT) throw fail('INVALID_FIELD', `weight must be a whole number from 1 to ${MAX_WEIGHT}`);
  if (of === 'project') model.project(name);
  return { t: 'weight-set', at, of, name, weight };
}

export function checkPriority(priority: number, where: string): void {
  if (!Number.isInteger(priority) || priority < PRIORITY_MIN || priority > PRIORITY_MAX) {
    throw fail('PRIORITY_OUT_OF_RANGE', `${where}: priority must be a whole number from ${PRIORITY_MIN} to ${PRIORITY_MAX}`);
  }
}

/** Input names are paths in the work folder, each given once; an output of another job makes it a dependency. */
function checkInputs(inputs: InputSource[], i: number, dependOn: (ref: string) => string): InputSource[] {
  const names = new Set<string>();
  return inputs.map((input, k) => {
    const where = `jobs[${i}].inputs[${k}]`;
    checkFileName(input.name, `${where}.name`);
    if (names.has(input.name)) throw fail('INVALID_FIELD', `${where}: input '${input.name}' is given twice`);
    names.add(input.name);
    if ('sha256' in input) {
      if (!SHA256.test(input.sha256)) throw fail('INVALID_FIELD', `${where}.sha256 must be 64 lowercase hex digits`);
      return input;
    }
    if ('job' in input) {
      checkFileName(input.output, `${where}.output`);
      return { name: input.name, job: dependOn(input.job), output: input.output };
    }
    checkValueName(input.value);
    return input;
  });
}

function checkOutputs(outputs: OutputSpec[], i: number): void {
  outputs.forEach((o, k) => {
    globToRegExp(o.glob);
    if (o.to !== undefined) checkValueName(o.to);
    if (o.to !== undefined && outputs.findIndex((x) => x.to === o.to) !== k) {
      throw fail('INVALID_FIELD', `jobs[${i}].outputs[${k}]: value '${o.to}' is written twice`);
    }
  });
}

/** Files a submission refers to by checksum: the server must have them all before it commits. */
export function uploadedInputs(items: SubmitItem[]): FileRef[] {
  const out: FileRef[] = [];
  for (const item of items) for (const input of item.spec.inputs ?? []) if ('sha256' in input) out.push(input);
  return out;
}

/**
 * Picks jobs for a worker, best first, as many as fit its free room (up to
 * `max`). This takes the jobs off the ready queue, so the caller must apply
 * the returned event at once.
 */
export function planClaim(
  model: Model,
  workerId: string,
  via: string,
  at: number,
  leaseMs: number,
  max: number,
  /** For a peer's worker: the room it has, and its name. A local worker's room is known here. */
  remote?: { free: Resources; workerName: string },
): JobsClaimed | null {
  const free = remote ? { ...remote.free } : model.freeOf(workerId);
  const onlyUser = remote ? undefined : model.workers.get(workerId)?.onlyUser;
  const accept = onlyUser === undefined ? undefined : (project: string) => usedOnlyBy(model, project, onlyUser);
  const claims: [string, number][] = [];
  while (claims.length < max && free.cores > 0) {
    const job = model.ready.take(free, accept);
    if (!job) break;
    free.cores -= job.spec.resources.cores;
    free.memoryMb -= job.spec.resources.memoryMb;
    claims.push([job.id, job.attempts.length + 1]);
  }
  if (claims.length === 0) return null;
  const event: JobsClaimed = { t: 'jobs-claimed', at, workerId, via, deadline: at + leaseMs, claims };
  if (remote) event.workerName = remote.workerName;
  return event;
}

/**
 * True when `user` alone may use the project (super users aside): a worker
 * whose jobs share its identity, bound to that user, runs only such jobs, so
 * no other user's job can read them or it.
 */
export function usedOnlyBy(model: Model, project: string, user: string): boolean {
  const p = model.projects.get(project);
  return p !== undefined && p.owner === user && p.members.every((m) => m === user);
}

export interface AttemptReport extends ProcessOutcome {
  how: Extract<AttemptEnd, 'exited' | 'timeout' | 'oom' | 'start-failed' | 'output-failed'>;
  reason?: string;
  outputs?: FileRef[];
}

/**
 * A worker reports how an attempt ended. Only the worker holding the current
 * lease may; a repeat of a report already taken is recognised (the worker did
 * not hear our answer) and answered the same way without a second event.
 */
export function planFinish(
  model: Model,
  workerId: string,
  jobId: string,
  attempt: number,
  report: AttemptReport,
  at: number,
  /** Who reports: `local` for this server's workers, or the peer whose worker ran it. */
  via = 'local',
): AttemptFinished | 'duplicate' {
  const job = model.job(jobId);
  if (!job) throw fail('JOB_NOT_FOUND', `no live job with id '${jobId}'`);
  const a = job.attempts.find((x) => x.n === attempt);
  if (!a) throw fail('ATTEMPT_NOT_FOUND', `job ${jobId} has no attempt ${attempt}`);
  if (a.workerId !== workerId || a.via !== via) {
    throw fail('STALE_ATTEMPT', `attempt ${attempt} of job ${jobId} does not belong to this worker`);
  }
  const lease = model.leases.get(jobId);
  // A stopping lease's attempt was ended by the server already: its report is refused like any stale one.
  if (lease && lease.attempt === attempt && !lease.stopping) {
    return { t: 'attempt-finished', at, jobId, attempt, ...report };
  }
  if (a.how === report.how && a.exitCode === report.exitCode && job.result?.attempt === attempt) return 'duplicate';
  throw fail('STALE_ATTEMPT', `attempt ${attempt} of job ${jobId} is no longer current (${a.how ?? 'ended'}${a.reason ? `: ${a.reason}` : ''})`);
}

export interface HeartbeatOutcome {
  renewed: number;
  abandon: { jobId: string; attempt: number; reason: string }[];
  /** Abandoned attempts whose (stopping) leases were renewed all the same: their process is still alive. */
  stopping: [string, number][];
  /** Stopping attempts the worker named before and names no more: their process is gone (commit as attempts-stopped). */
  stopped: [string, number][];
  /** Attempts the worker says have started, marked running now (journal with the renewal). */
  started: [string, number][];
}

/** An attempt as a heartbeat names it; `started` once its process has started. */
export interface NamedAttempt {
  jobId: string;
  attempt: number;
  started?: boolean;
}

/**
 * The one rule for which attempts a worker must stop, and for when an
 * attempt it was told to stop has stopped.
 *
 * Renews the leases of the attempts a worker says it runs. Attempts it names
 * that are no longer its own are returned to abandon, and so are its
 * stopping ones (ended by the server while their process may still run:
 * see Lease.stopping), whose leases are renewed all the same, as the process
 * named is alive. Leases it holds but did not name (a claim answer it never
 * heard) are left to expire.
 *
 * A local worker names every attempt whose process may be alive, an
 * abandoned one until its process group is gone (`full`, false for a peer's
 * heartbeat, which names only what it still relays). So a stopping attempt
 * the worker named before (it had heard of it) and no longer names has
 * stopped. One it never named may yet arrive in a claim answer in flight:
 * that one waits for its lease to lapse.
 */
export function renewLeases(
  model: Model,
  workerId: string,
  attempts: NamedAttempt[],
  deadline: number,
  at: number,
  via = 'local',
  full = via === 'local',
): HeartbeatOutcome {
  if (via === 'local') model.worker(workerId).lastSeen = at;
  const out: HeartbeatOutcome = { renewed: 0, abandon: [], stopping: [], stopped: [], started: [] };
  const stoppingHere = model.leases.stoppingOf(workerId);
  const namedStopping = stoppingHere ? new Set<string>() : undefined;
  for (const a of attempts) {
    const { jobId, attempt } = a;
    const lease = model.leases.get(jobId);
    if (holds(lease, workerId, attempt, via)) {
      // The lease in hand is renewed directly: this loop runs for every
      // attempt of every heartbeat, and a second map lookup per attempt shows.
      if (deadline > lease.deadline) lease.deadline = deadline;
      if (lease.listed === undefined) lease.listed = true;
      if (lease.stopping === undefined) {
        out.renewed++;
        if (a.started === true && lease.running === undefined) {
          lease.running = true;
          out.started.push([jobId, attempt]);
        }
        continue;
      }
      namedStopping?.add(jobId);
      out.stopping.push([jobId, attempt]);
    }
    out.abandon.push({ jobId, attempt, reason: abandonReason(model, jobId, attempt) });
  }
  if (stoppingHere && full) {
    for (const jobId of stoppingHere) {
      const lease = model.leases.get(jobId)!;
      if (lease.listed && !namedStopping!.has(jobId)) out.stopped.push([jobId, lease.attempt]);
    }
  }
  return out;
}

/**
 * The wall clock stepped by `stepMs`, found out at most `sinceMs` after the
 * step. Deadlines are wall times, so without this a step forward would end
 * every lease at once and a step back would keep dead ones alive as long.
 * Deadlines given before the step move with it; those given since (by
 * heartbeats between the step and now) are on the new clock already, and
 * are told apart by where they lie: before a step forward no deadline was
 * later than the old now plus a lease, after it none is earlier than this
 * now minus `sinceMs` plus a lease; the other way round for a step back.
 * Null when nothing is to move.
 */
export function planClockStep(model: Model, stepMs: number, now: number, leaseMs: number, sinceMs: number): ClockStepped | null {
  const given = (deadline: number): boolean => (stepMs > 0 ? deadline < now + leaseMs - sinceMs : deadline > now + leaseMs);
  const attempts: [string, number][] = [];
  for (const l of model.leases.all()) if (given(l.deadline)) attempts.push([l.jobId, l.attempt]);
  const foreign: [string, number][] = [];
  for (const f of model.foreign.values()) if (given(f.deadline)) foreign.push([f.jobId, f.attempt]);
  if (attempts.length === 0 && foreign.length === 0) return null;
  return { t: 'clock-stepped', at: now, stepMs, attempts, foreign };
}

/**
 * The worker named these attempts outside a heartbeat (in a control poll):
 * it has them, so once it stops naming one in a full heartbeat, its process
 * is gone, as for an attempt a heartbeat named (see `Lease.listed`).
 */
export function noteNamed(model: Model, workerId: string, attempts: { jobId: string; attempt: number }[], via = 'local'): void {
  for (const { jobId, attempt } of attempts) {
    const lease = model.leases.get(jobId);
    if (holds(lease, workerId, attempt, via) && lease.listed === undefined) lease.listed = true;
  }
}

/** The lease is this worker's for this attempt (it may be stopping). */
function holds(lease: Lease | undefined, workerId: string, attempt: number, via: string): lease is Lease {
  return lease !== undefined && lease.attempt === attempt && lease.workerId === workerId && lease.via === via;
}

/**
 * The rule renewLeases answers by, for one attempt: null while the attempt is
 * the worker's to run, otherwise why it must stop (it is not, or no longer,
 * its own, or the server ended it and it is stopping).
 */
export function mustStop(model: Model, workerId: string, jobId: string, attempt: number, via = 'local'): string | null {
  const lease = model.leases.get(jobId);
  return holds(lease, workerId, attempt, via) && lease.stopping === undefined ? null : abandonReason(model, jobId, attempt);
}

/**
 * What a worker must stop now that it may not know of yet: its stopping
 * attempts (ended by the server while their process may run), with the same
 * reasons a heartbeat would be given. For telling it without waiting for its
 * heartbeat; the heartbeat still answers them until they have stopped.
 */
export function attemptsToStop(model: Model, workerId: string): { jobId: string; attempt: number; reason: string }[] {
  const out: { jobId: string; attempt: number; reason: string }[] = [];
  for (const jobId of model.leases.stoppingOf(workerId) ?? []) {
    const lease = model.leases.get(jobId)!;
    out.push({ jobId, attempt: lease.attempt, reason: abandonReason(model, jobId, lease.attempt) });
  }
  return out;
}

function abandonReason(model: Model, jobId: string, attempt: number): string {
  const job = model.job(jobId);
  return !job
    ? 'job no longer exists'
    : job.state === 'cancelled'
      ? 'job was cancelled'
      : `attempt ${attempt} is no longer current (job is ${job.state})`;
}

/**
 * A peer says its worker's processes of these attempts of ours are gone
 * (see Delegation): the stopping ones among them end.
 */
export function planStoppedByPeer(model: Model, peerId: string, attempts: { jobId: string; attempt: number; workerId: string }[], at: number): AttemptsStopped[] {
  const byWorker = new Map<string, [string, number][]>();
  for (const a of attempts) {
    const lease = model.leases.get(a.jobId);
    if (!lease || !lease.stopping || lease.attempt !== a.attempt || lease.workerId !== a.workerId || lease.via !== peerId) continue;
    const list = byWorker.get(a.workerId) ?? [];
    list.push([a.jobId, a.attempt]);
    byWorker.set(a.workerId, list);
  }
  return [...byWorker].map(([workerId, list]) => ({ t: 'attempts-stopped', at, workerId, attempts: list }));
}

/**
 * What a worker's heartbeat renewed last, kept so that the next heartbeat
 * naming the same attempts need not name them again: while the worker's
 * lease version is unchanged, these are still its leases, the same objects.
 */
export interface RenewalMemo {
  version: number;
  leases: Lease[];
  attempts: [string, number][];
}

/** The memo of a heartbeat that renewed every attempt it named, all of them this server's. */
export function renewalMemo(model: Model, workerId: string, attempts: [string, number][]): RenewalMemo {
  return { version: model.leases.versionOf(workerId), leases: attempts.map(([jobId]) => model.leases.get(jobId)!), attempts };
}

/**
 * Renews what a memo holds, if it still holds: true when done, false when
 * the worker's leases changed since (it must name its attempts again).
 */
export function renewFromMemo(model: Model, workerId: string, memo: RenewalMemo, deadline: number, at: number): boolean {
  if (memo.version !== model.leases.versionOf(workerId)) return false;
  model.worker(workerId).lastSeen = at;
  for (const lease of memo.leases) if (deadline > lease.deadline) lease.deadline = deadline;
  return true;
}

/** The attempts of a heartbeat that were renewed: those named, less those to abandon. */
export function renewedAttempts(
  attempts: { jobId: string; attempt: number }[],
  abandon: { jobId: string; attempt: number }[],
): [string, number][] {
  const dropped = new Set(abandon.map((a) => `${a.jobId}#${a.attempt}`));
  return attempts.filter((a) => !dropped.has(`${a.jobId}#${a.attempt}`)).map((a): [string, number] => [a.jobId, a.attempt]);
}

/** Sets (or, with null, removes) a project value. */
export function planSetValue(model: Model, project: string, name: string, value: ProjectValue | null, at: number): ValueSet {
  const p = model.project(project);
  checkValueName(name);
  if (value === null && !p.values?.[name]) throw fail('VALUE_NOT_FOUND', `project '${project}' has no value '${name}'`);
  return { t: 'value-set', at, project, name, value };
}

export function planCancel(model: Model, ids: string[], reason: string, at: number): JobsCancelled {
  for (const id of ids) {
    const job = model.job(id);
    if (!job) throw fail('JOB_NOT_FOUND', `no live job with id '${id}'`);
    if (FINAL_STATES.has(job.state)) throw fail('INVALID_STATE', `job ${id} is already ${job.state}`);
  }
  return { t: 'jobs-cancelled', at, ids: [...new Set(ids)], reason };
}

/**
 * Retry: failed or cancelled jobs run again. A job whose dependency has been
 * archived can be retried only if that dependency succeeded (`archived` gives
 * the archived ones' states): a dependency no longer in memory cannot be
 * retried itself, and apply counts a missing dependency as done.
 */
export function planRetry(model: Model, ids: string[], at: number, archived: ReadonlyMap<string, JobState> = new Map()): JobsRetried {
  for (const id of ids) {
    const job = model.job(id);
    if (!job) throw fail('JOB_NOT_FOUND', `no live job with id '${id}'`);
    if (job.state !== 'failed' && job.state !== 'cancelled') {
      throw fail('INVALID_STATE', `job ${id} is ${job.state}; only failed or cancelled jobs can be retried`);
    }
    for (const dep of job.spec.after) {
      if (model.job(dep) || archived.get(dep) === 'done') continue;
      throw fail('INVALID_STATE', `job ${id} depends on ${dep}, which is archived and did not succeed`);
    }
  }
  return { t: 'jobs-retried', at, ids: [...new Set(ids)] };
}

/** Leases whose deadline has passed, as one event; null when none has. */
export function planExpiry(model: Model, now: number): AttemptsLost | null {
  const expired = model.leases.expired(now);
  if (expired.length === 0) return null;
  return {
    t: 'attempts-lost',
    at: now,
    how: 'lease-expired',
    reason: 'no heartbeat before the lease deadline',
    attempts: expired.map((l) => [l.jobId, l.attempt]),
  };
}

/**
 * What an admin's "this worker is gone" takes back: every attempt leased to
 * the worker, lost now instead of when the leases run out, and the peers'
 * jobs it runs for them (closed here; their home re-queues them). The jobs
 * go the way a lease expiry sends them (re-queued, or failed after too many
 * losses, see Model). A worker that was only lent to us by a peer counts too:
 * it holds leases here without being registered.
 */
export function planWorkerLost(
  model: Model,
  workerId: string,
  reason: string,
  at: number,
): { lost: AttemptsLost | null; closed: ForeignClosed | null } {
  const held = model.leases.ofWorker(workerId);
  const foreign = [...model.foreign.values()].filter((f) => f.workerId === workerId && f.result === undefined);
  if (!model.workers.has(workerId) && held.length === 0 && foreign.length === 0) {
    throw fail('WORKER_NOT_FOUND', `no worker with id '${workerId}'`);
  }
  // Those stopping already were taken back before; they wait for their worker or their lease.
  const leases = held.filter((l) => !l.stopping);
  leases.sort((a, b) => (a.jobId < b.jobId ? -1 : a.jobId > b.jobId ? 1 : 0));
  return {
    lost: leases.length === 0 ? null : { t: 'attempts-lost', at, how: 'worker-lost', reason, attempts: leases.map((l) => [l.jobId, l.attempt]) },
    closed: foreign.length === 0 ? null : { t: 'foreign-closed', at, attempts: foreign.map((f) => [f.jobId, f.attempt]), reason },
  };
}

/** The running attempt of one job, lost now as if its lease had run out (the job is re-queued by the same rules). */
export function planAttemptLost(model: Model, jobId: string, reason: string, at: number): AttemptsLost {
  const job = model.job(jobId);
  if (!job) throw fail('JOB_NOT_FOUND', `no live job with id '${jobId}'`);
  const lease = model.leases.get(jobId);
  if (job.state !== 'running' || !lease) {
    throw fail('INVALID_STATE', `job ${jobId} is ${job.state}, not running; only a running job's attempt can be marked lost`);
  }
  return { t: 'attempts-lost', at, how: 'worker-lost', reason, attempts: [[jobId, lease.attempt]] };
}

/** Finished jobs last changed before `before`, oldest first, at most `max`. */
export function archivable(model: Model, before: number, max: number): string[] {
  const out: string[] = [];
  for (const job of model.jobs.values()) {
    // A job whose attempt is still stopping stays, so that `cpcc job` can say so.
    if (FINAL_STATES.has(job.state) && job.updatedAt < before && !model.leases.get(job.id)) {
      out.push(job.id);
      if (out.length >= max) break;
    }
  }
  return out;
}
