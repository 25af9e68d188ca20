/**
 * Terminology
 *
 * - project:   a named set of jobs with an owner and members who may use it.
 * - job:       one command to run (argv or a shell line) with the resources it
 *              needs. Copernicus calls these commands.
 * - attempt:   one run of a job on one worker. Attempts are numbered from 1;
 *              the number guards every report about the run, so a worker that
 *              lost its lease can never finish the job.
 * - worker:    a process that runs jobs; it registers its cores and memory,
 *              claims jobs that fit, heartbeats, and reports results.
 * - lease:     the server's promise that an attempt belongs to a worker until a
 *              deadline; heartbeats push the deadline on, and an attempt whose
 *              deadline passes is taken back and the job re-queued.
 * - via:       where a lease's worker lives: `local`, or the id of the peer
 *              server whose worker runs the attempt.
 * - event:     one durable fact (see events.ts). State is only ever changed by
 *              applying events, live or on replay, so the two cannot disagree.
 */

export type JobState = 'waiting' | 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

export const JOB_STATES: readonly JobState[] = ['waiting', 'queued', 'running', 'done', 'failed', 'cancelled'];
export const FINAL_STATES: ReadonlySet<JobState> = new Set(['done', 'failed', 'cancelled']);

export interface Resources {
  cores: number;
  memoryMb: number;
}

/**
 * The priorities a job may be given. A priority orders its user's own jobs
 * only (users share the queue by weight), so the range only keeps the
 * number of distinct priorities small.
 */
export const PRIORITY_MIN = -100;
export const PRIORITY_MAX = 100;

/** The largest weight an admin may give a user or project: that many turns in a row against a weight of 1. */
export const MAX_WEIGHT = 1000;

/** A job's grace between SIGTERM and SIGKILL when its spec gives none, and the most it may give. */
export const DEFAULT_KILL_GRACE_S = 10;
export const MAX_KILL_GRACE_S = 3600;

/**
 * What an attempt used, as its worker measured it (src/worker/usage.ts): wall
 * time, CPU seconds in user and system mode, the peak resident memory of its
 * whole process tree, and bytes read and written where the host counts them.
 */
export interface Usage {
  wallS: number;
  userS: number;
  systemS: number;
  maxRssMb: number;
  readBytes?: number;
  writeBytes?: number;
}

/** Asking again with more after an attempt ran out of memory or time (see README, "Limits and retries"). */
export interface RetrySpec {
  oom?: { factor: number; maxMemoryMb: number };
  timeout?: { factor: number; maxWallTimeS: number };
  /** How many times the job may ask for more (default 3). */
  attempts?: number;
}

/** What a researcher asks for; fixed once submitted, but for the memory and time a retry with more raises. */
export interface JobSpec {
  name?: string;
  argv?: string[];
  shell?: string;
  env: Record<string, string>;
  resources: Resources;
  /** Higher runs first, among the jobs of the same user (PRIORITY_MIN to PRIORITY_MAX). */
  priority: number;
  /** How many times a non-zero exit is retried. */
  maxRetries: number;
  /** Wall-clock limit for one attempt, enforced by the worker; null = none. */
  timeoutS: number | null;
  /** Seconds between SIGTERM and SIGKILL when an attempt is stopped; absent = DEFAULT_KILL_GRACE_S. */
  killGraceS?: number;
  /** Ids of jobs in the same project that must be done first. */
  after: string[];
  /** Files put in the work folder before the job starts. */
  inputs?: InputSource[];
  /** Files kept after the job, by pattern; `to` also stores the match as a project value. */
  outputs?: OutputSpec[];
  /** Ask for more memory or time after an `oom` or a `timeout`. */
  retry?: RetrySpec;
}

/** A file's content by checksum, under the name a job or value gives it. */
export interface FileRef {
  name: string;
  sha256: string;
  size: number;
}

/** Where an input file comes from. */
export type InputSource =
  /** Uploaded with the submission. */
  | FileRef
  /** An output of another job of the project; that job becomes a dependency. */
  | { name: string; job: string; output: string }
  /** A project value, as it is when the job is queued. */
  | { name: string; value: string };

/** An input as the job receives it: a file, or the text of a string value. */
export type ResolvedInput = FileRef | { name: string; text: string };

export interface OutputSpec {
  glob: string;
  /** A project value the (first) matching file is stored in when the job is done. */
  to?: string;
}

/** A project value: a string, or a file. */
export type ProjectValue = { text: string; at: number } | { sha256: string; size: number; at: number; job?: string };

/** How an attempt ended. */
export type AttemptEnd =
  | 'exited' // the process exited; see exitCode/signal
  | 'timeout' // the worker killed it at timeoutS
  | 'oom' // its process tree went past its memoryMb
  | 'lease-expired' // no heartbeat in time; re-queued
  | 'cancelled' // the job was cancelled while running
  | 'worker-lost' // the worker was marked lost
  | 'start-failed' // the worker could not start the process (or fetch its inputs)
  | 'output-failed'; // the process ended but its outputs could not be kept

export interface Attempt {
  n: number;
  workerId: string;
  workerName: string;
  via: string;
  /** Lent to a peer: that server's name when the attempt began (`via` is its id). */
  viaName?: string;
  startedAt: number;
  endedAt?: number;
  how?: AttemptEnd;
  exitCode?: number | null;
  signal?: string | null;
  reason?: string;
  /** The end of each stream (the whole stream when its byte count is within the tail). */
  stdoutTail?: string;
  stderrTail?: string;
  stdoutBytes?: number;
  stderrBytes?: number;
  /** The files the attempt left that its job asked to keep. */
  outputs?: FileRef[];
  /** What it used, as its worker measured it. */
  usage?: Usage;
  /** The memory and wall time it ran with (a retry with more raises them). */
  limits?: { memoryMb: number; timeoutS: number | null };
}

/** How an attempt's process ended and what it printed, as its worker reported it. */
export interface ProcessOutcome {
  exitCode: number | null;
  signal: string | null;
  durationMs: number;
  stdoutTail: string;
  stderrTail: string;
  stdoutBytes: number;
  stderrBytes: number;
  usage?: Usage;
}

export interface JobResult extends ProcessOutcome {
  attempt: number;
}

export interface Job {
  id: string;
  project: string;
  /** Submission order on this server; the scheduler's "oldest first". */
  seq: number;
  spec: JobSpec;
  state: JobState;
  /** Why the job is in its state, in words. */
  reason: string;
  createdAt: number;
  updatedAt: number;
  attempts: Attempt[];
  /** Non-zero exits so far (compared with spec.maxRetries). */
  failures: number;
  /** Attempts taken back because their worker went silent. */
  lost: number;
  /** Times a retry with more raised its memory or time. */
  grown?: number;
  result?: JobResult;
  /** The inputs as resolved when the job was last queued. */
  inputs?: ResolvedInput[];
  /** The kept files of the latest attempt that reported any. */
  outputs?: FileRef[];
}

export interface Project {
  name: string;
  owner: string;
  members: string[];
  createdAt: number;
  /** Named values and files, Copernicus' `set`/`get`. */
  values?: Record<string, ProjectValue>;
  /** The retry with more that jobs submitted without their own get. */
  retry?: RetrySpec;
}

export interface Worker {
  id: string;
  name: string;
  host: string;
  resources: Resources;
  labels: string[];
  /** Who registered it: a worker token id. */
  tokenId: string;
  /** How far it keeps jobs apart, as it said (absent: it did not say). */
  isolation?: 'user' | 'sandbox' | 'none';
  sharedIdentity?: boolean;
  /** Its token is bound to this user: it is handed only jobs of projects this user alone may use. */
  onlyUser?: string;
  registeredAt: number;
  lastSeen: number;
  /** It said it stopped (see worker-presence.ts): gone, kept for the record until the retention ends. */
  stoppedAt?: number;
}

export interface Lease {
  jobId: string;
  attempt: number;
  workerId: string;
  via: string;
  deadline: number;
  /** A heartbeat of its worker named it: the worker has heard of the attempt (see renewLeases). */
  listed?: true;
  /** Its worker said the process started. */
  running?: true;
  /**
   * The server ended the attempt without its worker's word (a cancel, an
   * admin's "lost", the project removed): the process may still run, so the
   * lease stays, charging the worker, and the job is not handed out again
   * until the worker confirms the attempt ended or the lease lapses. Holds
   * the attempt's resources, as the job itself may be gone meanwhile.
   */
  stopping?: { resources: Resources };
}

/**
 * Where an attempt's process is, as far as the server knows: handed out and
 * not started yet, running, ended by the server but not yet confirmed gone,
 * or ended.
 */
export type AttemptLive = 'starting' | 'running' | 'stopping' | 'ended';

export type StateCounts = Record<JobState, number>;

export function emptyCounts(): StateCounts {
  return { waiting: 0, queued: 0, running: 0, done: 0, failed: 0, cancelled: 0 };
}
