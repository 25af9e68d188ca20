import { MAX_PROGRESS_FAILURES, type ProgressView } from '../../core/job-reports.js';
import type { Model } from '../../core/model.js';
import { FINAL_STATES, emptyCounts } from '../../core/types.js';

/**
 * How far a project's jobs from `from` on have come, for `cpcc wait`. Ids
 * grow with submission (ids.ts), so "submitted since the mark" is "id at or
 * after the mark's", and a mark whose job has been archived still works.
 * Without `from`, the mark is the oldest unfinished job: a wait then covers
 * what is still to finish and what was submitted after it, and not a failure
 * of long ago. One pass over the project's live jobs.
 */
export function progressOf(m: Pick<Model, 'jobIdsOf' | 'job'>, project: string, from?: string): ProgressView {
  const ids = m.jobIdsOf(project);
  let start = from;
  if (start === undefined) {
    for (const id of ids) {
      const job = m.job(id)!;
      if (!FINAL_STATES.has(job.state) && (start === undefined || id < start)) start = id;
    }
  }
  const counts = emptyCounts();
  const failures: ProgressView['failures'] = [];
  if (start !== undefined) {
    for (const id of ids) {
      if (id < start) continue;
      const job = m.job(id)!;
      counts[job.state]++;
      if ((job.state === 'failed' || job.state === 'cancelled') && failures.length < MAX_PROGRESS_FAILURES) {
        failures.push({ id, ...(job.spec.name !== undefined ? { name: job.spec.name } : {}), state: job.state, reason: job.reason });
      }
    }
    failures.sort((a, b) => (a.id < b.id ? -1 : 1));
  }
  return { project, ...(start !== undefined ? { from: start } : {}), counts, failures };
}
