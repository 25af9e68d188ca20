import type { Model } from '../../core/model.js';
import { DEFAULT_KILL_GRACE_S, type Attempt, type Job, type Project, type StateCounts, type Worker } from '../../core/types.js';
import type { WorkerState } from '../../core/worker-presence.js';
import type { AttemptView, BorrowedCount, ClaimedJob, JobView, LeaseView, ProjectView, WorkerView } from '../../core/wire.js';
import { liveUsage } from './live-usage.js';

/** Turns domain records into the shapes of the API (core/wire.ts). */

/**
 * A job as the API shows it. With the model (a live job), each attempt says
 * where its process is, and a queued job says which attempt holds it back.
 */
export function jobView(job: Job, archived = false, model?: Pick<Model, 'attemptLive' | 'heldBy' | 'workers' | 'leases'>): JobView {
  const { spec } = job;
  const view: JobView = {
    id: job.id,
    project: job.project,
    state: job.state,
    reason: job.reason,
    env: spec.env,
    resources: spec.resources,
    priority: spec.priority,
    maxRetries: spec.maxRetries,
    timeoutS: spec.timeoutS,
    ...(spec.retry ? { retry: spec.retry } : {}),
    killGraceS: spec.killGraceS ?? DEFAULT_KILL_GRACE_S,
    after: spec.after,
    createdAt: job.createdAt,
    updatedAt: job.updatedAt,
    attempts: model && !archived ? job.attempts.map((a) => attemptView(model, job, a)) : job.attempts,
  };
  const held = model && !archived ? model.heldBy(job) : undefined;
  if (held) {
    const a = job.attempts.find((x) => x.n === held.attempt);
    view.heldBy = { attempt: held.attempt, worker: model!.workers.get(held.workerId)?.name ?? a?.workerName ?? held.workerId, via: held.via };
  }
  if (spec.name !== undefined) view.name = spec.name;
  if (spec.argv !== undefined) view.argv = spec.argv;
  if (spec.shell !== undefined) view.shell = spec.shell;
  if (spec.inputs) view.inputs = spec.inputs;
  if (spec.outputs) view.outputs = spec.outputs;
  if (job.outputs) view.files = job.outputs;
  if (job.result) {
    view.exitCode = job.result.exitCode;
    view.durationMs = job.result.durationMs;
    view.stdoutTail = job.result.stdoutTail;
    view.stderrTail = job.result.stderrTail;
  }
  if (archived) view.archived = true;
  return view;
}

/** An attempt of a live job: where its process is, and while it runs, its latest usage. */
function attemptView(model: Pick<Model, 'attemptLive' | 'leases'>, job: Job, a: Attempt): AttemptView {
  const live = model.attemptLive(job.id, a.n);
  const usage = live === 'running' && a.usage === undefined ? liveUsage(model.leases, job.id, a.n) : undefined;
  return usage ? { ...a, live, usage } : { ...a, live };
}

export function projectView(project: Project, counts: StateCounts): ProjectView {
  return { name: project.name, owner: project.owner, members: project.members, createdAt: project.createdAt, counts, ...(project.retry ? { retry: project.retry } : {}) };
}

/** A registered worker as the API shows it, with its state (worker-presence.ts) and the peers' jobs it runs. */
export function workerView(model: Model, w: Worker, state: WorkerState, borrowed: BorrowedCount[] = []): WorkerView {
  return {
    id: w.id,
    name: w.name,
    host: w.host,
    resources: w.resources,
    used: model.usedBy(w.id),
    labels: w.labels,
    running: model.leases.countOfWorker(w.id) + borrowed.reduce((n, b) => n + b.running, 0),
    registeredAt: w.registeredAt,
    lastSeen: w.lastSeen,
    state,
    ...(w.stoppedAt !== undefined ? { stoppedAt: w.stoppedAt } : {}),
    ...(borrowed.length > 0 ? { borrowed } : {}),
    ...(w.isolation !== undefined ? { isolation: w.isolation } : {}),
    ...(w.sharedIdentity ? { sharedIdentity: true } : {}),
    ...(w.onlyUser !== undefined ? { onlyUser: w.onlyUser } : {}),
  };
}

/** Server id to name, for the trusted peers (read once per view). */
export function peerNames(ctx: { trust: { peers(): { serverId: string; name: string }[] } }): (serverId: string) => string | undefined {
  let names: Map<string, string> | undefined;
  return (serverId) => (names ??= new Map(ctx.trust.peers().map((p) => [p.serverId, p.name]))).get(serverId);
}

/**
 * Running attempts and their lease deadlines, soonest first: this server's
 * jobs the caller may see (`maySeee(project)`), named by their worker's name
 * and, when lent, the borrowing server's name; and, with `borrowed`, the
 * peers' jobs this server's workers run, with their home server's name
 * (`peerName` turns a server id into the name its trust record gives).
 */
export function leaseViews(model: Model, maySee: (project: string) => boolean, peerName: (serverId: string) => string | undefined, borrowed: boolean): LeaseView[] {
  const out: LeaseView[] = [];
  for (const lease of model.leases.all()) {
    const job = model.job(lease.jobId);
    if (!job || !maySee(job.project)) continue;
    const a = job.attempts.find((x) => x.n === lease.attempt);
    const viaName = lease.via === 'local' ? undefined : (peerName(lease.via) ?? a?.viaName);
    out.push({
      jobId: lease.jobId,
      attempt: lease.attempt,
      workerId: lease.workerId,
      via: lease.via,
      ...(viaName !== undefined ? { viaName } : {}),
      deadline: lease.deadline,
      project: job.project,
      workerName: model.workers.get(lease.workerId)?.name ?? a?.workerName ?? lease.workerId,
      live: model.attemptLive(lease.jobId, lease.attempt),
    });
  }
  if (borrowed) {
    for (const f of model.foreign.values()) {
      if (f.result !== undefined) continue;
      out.push({
        jobId: f.jobId,
        attempt: f.attempt,
        workerId: f.workerId,
        via: 'local',
        home: { serverId: f.home, name: peerName(f.home) ?? f.home },
        deadline: f.deadline,
        project: f.project ?? '',
        workerName: model.workers.get(f.workerId)?.name ?? f.workerId,
        live: f.stopping !== undefined ? 'stopping' : f.running ? 'running' : 'starting',
      });
    }
  }
  return out.sort((a, b) => a.deadline - b.deadline);
}

/** What a worker needs to run one attempt of a job. */
export function claimedJob(job: Job, attempt: number): ClaimedJob {
  const { spec } = job;
  return {
    id: job.id,
    project: job.project,
    attempt,
    ...(spec.argv ? { argv: spec.argv } : { shell: spec.shell! }),
    env: spec.env,
    resources: spec.resources,
    timeoutS: spec.timeoutS,
    killGraceS: spec.killGraceS ?? DEFAULT_KILL_GRACE_S,
    ...(job.inputs ? { inputs: job.inputs } : {}),
    ...(spec.outputs ? { outputs: spec.outputs } : {}),
  };
}
