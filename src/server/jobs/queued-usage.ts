import { fail } from '../../core/errors.js';
import { specBytes } from '../../core/job-size.js';
import type { Model } from '../../core/model.js';
import { FINAL_STATES, type JobSpec } from '../../core/types.js';
import type { Store } from './store.js';

/**
 * What each user leaves waiting: unfinished jobs (waiting, queued or
 * running) and the bytes of their specs, over the projects the user owns.
 * Jobs live in memory until they finish, so these two bound what one user
 * can make the server hold (`maxQueuedJobsPerUser`, `maxQueuedBytesPerUser`).
 *
 * Jobs are counted against their project's owner: a project's members
 * submit into its owner's budget, and a user who makes many projects does
 * not get a budget for each. The counts follow the model's job changes, so
 * they hold across restarts without being stored.
 */

interface Usage {
  jobs: number;
  bytes: number;
}

export interface QueueLimits {
  maxQueuedJobsPerUser: number;
  maxQueuedBytesPerUser: number;
}

export class QueuedUsage {
  /** Projects by name, with the owner they had (a removed project's owner is no longer in the model). */
  private readonly byProject = new Map<string, Usage & { owner: string }>();
  private readonly byOwner = new Map<string, Usage>();

  constructor(
    private readonly model: Model,
    store: Store,
    private readonly limits: QueueLimits,
  ) {
    for (const job of model.jobs.values()) if (!FINAL_STATES.has(job.state)) this.add(job.project, job.spec, 1);
    model.onChange(({ job, from }) => {
      const was = from !== null && !FINAL_STATES.has(from);
      const is = !FINAL_STATES.has(job.state);
      if (was !== is) this.add(job.project, job.spec, is ? 1 : -1);
    });
    // A removed project's jobs go without a change each.
    store.onEvent((e) => {
      if (e.t === 'project-removed') this.dropProject(e.name);
    });
  }

  /** What a user's projects hold unfinished. */
  of(user: string): Usage {
    return { ...(this.byOwner.get(user) ?? { jobs: 0, bytes: 0 }) };
  }

  /** Refuses (QUEUE_FULL) jobs that would take `owner` past a limit; nothing is counted until they are committed. */
  checkRoom(owner: string, specs: readonly JobSpec[]): void {
    const now = this.byOwner.get(owner) ?? { jobs: 0, bytes: 0 };
    const { maxQueuedJobsPerUser: maxJobs, maxQueuedBytesPerUser: maxBytes } = this.limits;
    if (now.jobs + specs.length > maxJobs) {
      throw fail('QUEUE_FULL', `${owner}'s projects have ${now.jobs} unfinished jobs; ${specs.length} more would pass the limit of ${maxJobs} (maxQueuedJobsPerUser). Wait for some to finish, or cancel some`);
    }
    let bytes = 0;
    for (const s of specs) bytes += specBytes(s);
    if (now.bytes + bytes > maxBytes) {
      throw fail('QUEUE_FULL', `${owner}'s projects hold ${now.bytes} bytes of unfinished jobs; these ${bytes} more would pass the limit of ${maxBytes} (maxQueuedBytesPerUser). Wait for some to finish, or cancel some`);
    }
  }

  private add(project: string, spec: JobSpec, sign: 1 | -1): void {
    let p = this.byProject.get(project);
    if (!p) {
      const owner = this.model.projects.get(project)?.owner;
      if (owner === undefined) return;
      this.byProject.set(project, (p = { owner, jobs: 0, bytes: 0 }));
    }
    const bytes = sign * specBytes(spec);
    p.jobs += sign;
    p.bytes += bytes;
    const o = this.byOwner.get(p.owner) ?? { jobs: 0, bytes: 0 };
    o.jobs += sign;
    o.bytes += bytes;
    if (o.jobs === 0) this.byOwner.delete(p.owner);
    else this.byOwner.set(p.owner, o);
  }

  private dropProject(name: string): void {
    const p = this.byProject.get(name);
    if (!p) return;
    this.byProject.delete(name);
    const o = this.byOwner.get(p.owner);
    if (!o) return;
    o.jobs -= p.jobs;
    o.bytes -= p.bytes;
    if (o.jobs <= 0) this.byOwner.delete(p.owner);
  }
}
