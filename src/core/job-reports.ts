/**
 * Wire shapes of the routes that act on many jobs at once and explain them:
 * per-job outcomes of a bulk cancel or retry, the progress of a wait, and
 * why a job is not running. (The other shapes are in wire.ts.)
 *
 *   user    POST /jobs/bulk    { action, ids }     → BulkReply
 *           POST /jobs/states  { ids }             → JobStatesReply
 *   job     GET  /jobs/:id/why                     → WhyView
 *   member  GET  /projects/:p/progress ?from       → ProgressView
 */
import type { JobState, Resources, StateCounts } from './types.js';

/**
 * What became of one id: `done` (cancelled or retried), `ended` (a cancel of
 * a job already finished), `not-found` (no such job this user may see),
 * `skipped` (a retry of a job that is not failed or cancelled), `refused`
 * (a limit or rule said no; `code` and `message` say which).
 */
export type BulkOutcomeKind = 'done' | 'ended' | 'not-found' | 'skipped' | 'refused';

export interface BulkOutcome {
  /** The id as it was given (possibly a part). */
  given: string;
  /** The whole id, when one job was found. */
  id?: string;
  outcome: BulkOutcomeKind;
  /** The job's state after the request, when it was found. */
  state?: JobState;
  code?: string;
  message?: string;
}

export interface BulkReply {
  action: 'cancel' | 'retry';
  outcomes: BulkOutcome[];
  /** How many were done. */
  done: number;
}

export interface JobStateView {
  given: string;
  id: string;
  project: string;
  name?: string;
  state: JobState;
  reason: string;
}

export interface JobStatesReply {
  jobs: JobStateView[];
  /** Ids given that name no job this user may see. */
  missing: string[];
}

/** Most failed or cancelled jobs a progress reply names. */
export const MAX_PROGRESS_FAILURES = 1000;

export interface ProgressView {
  project: string;
  /** The first job counted (jobs whose id sorts at or after it); absent when nothing is counted. */
  from?: string;
  /** Live jobs from `from` on, by state (finished jobs archived since are no longer among them). */
  counts: StateCounts;
  /** Failed and cancelled jobs among them, oldest first, at most MAX_PROGRESS_FAILURES. */
  failures: { id: string; name?: string; state: JobState; reason: string }[];
}

/** One cause that keeps a job from running. */
export type WhyReason =
  | { kind: 'dependencies'; count: number; jobs: { id: string; name?: string; state: JobState }[] }
  | {
      kind: 'no-worker-fits';
      asked: Resources;
      /** The most cores and the most memory any connected worker (or lending peer) offers, or null when there is none. */
      largest: Resources | null;
      workers: number;
      peers: number;
    }
  | { kind: 'old-attempt'; attempt: number; worker: string; via: string }
  | {
      kind: 'waiting-for-room';
      /** Workers (and peers) big enough for it, and the most free on one of them now. */
      fitting: number;
      freeNow: Resources | null;
      /** Queued jobs of its project that go before it (higher priority, or older with the same). */
      ahead: number;
      /** Queued jobs of other projects, which take turns with it. */
      others: number;
    }
  | { kind: 'no-workers' };

export interface WhyView {
  id: string;
  state: JobState;
  /** One line for people. */
  summary: string;
  reasons: WhyReason[];
}
