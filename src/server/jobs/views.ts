import type { Model } from '../../core/model.js';
import { DEFAULT_KILL_GRACE_S, type Attempt, type Job, type Project, type StateCounts } from '../../core/types.js';
import type { AttemptView, ClaimedJob, JobView, ProjectView } from '../../core/wire.js';
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
  return { name: project.name, owner: project.owner, members: project.members, createdAt: project.createdAt, counts };
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
