import type { AttemptEnd, FileRef, Job, JobSpec, ProcessOutcome, ProjectValue, Resources, RetrySpec } from './types.js';

/**
 * Events are the durable facts of the server. The journal stores them, and
 * `Model.apply` is the only code that changes state: live requests build an
 * event, apply it, and wait for the journal before answering; start-up
 * replays the same events through the same function.
 *
 * Events carry everything that was decided when they happened (ids, clock
 * readings, deadlines), so replay never consults the clock or randomness.
 */

export interface ProjectCreated {
  t: 'project-created';
  at: number;
  name: string;
  owner: string;
}

export interface ProjectRemoved {
  t: 'project-removed';
  at: number;
  name: string;
}

/** The owner sets (or, with null, clears) the retry with more of jobs submitted without one. */
export interface ProjectRetrySet {
  t: 'project-retry-set';
  at: number;
  project: string;
  retry: RetrySpec | null;
}

export interface MembersChanged {
  t: 'members-changed';
  at: number;
  project: string;
  members: string[];
}

/** A job as a saved project carries it (see ProjectLoaded): everything but where it sits on this server. */
export type LoadedJob = Omit<Job, 'project' | 'seq'>;

/**
 * A saved project restored here (`cpcc load`), in one fact: the project, its
 * values and every job, live and archived alike. The jobs are ordered so each
 * follows the jobs it depends on, and no attempt is open any more (a job that
 * was running comes as queued). Apply puts unfinished jobs where their
 * dependencies allow, as a submit would.
 */
export interface ProjectLoaded {
  t: 'project-loaded';
  at: number;
  name: string;
  owner: string;
  createdAt: number;
  values: Record<string, ProjectValue>;
  /** The project's default retry with more, when it has one. */
  retry?: RetrySpec;
  jobs: LoadedJob[];
}

export interface JobsSubmitted {
  t: 'jobs-submitted';
  at: number;
  project: string;
  jobs: { id: string; spec: JobSpec }[];
}

export interface WorkerRegistered {
  t: 'worker-registered';
  at: number;
  id: string;
  name: string;
  host: string;
  resources: Resources;
  labels: string[];
  tokenId: string;
  isolation?: 'user' | 'sandbox' | 'none';
  sharedIdentity?: boolean;
  onlyUser?: string;
}

/** The worker said it stops: it is shown as gone until the retention ends (see worker-presence.ts). */
export interface WorkerStopped {
  t: 'worker-stopped';
  at: number;
  id: string;
}

export interface WorkerRemoved {
  t: 'worker-removed';
  at: number;
  id: string;
  reason: string;
}

export interface JobsClaimed {
  t: 'jobs-claimed';
  at: number;
  workerId: string;
  /** Set when the worker is not registered here (it belongs to the peer in `via`). */
  workerName?: string;
  via: string;
  /** The name of the peer in `via`, as this server knew it. */
  viaName?: string;
  deadline: number;
  /** Job id and the attempt number it gets. */
  claims: [string, number][];
}

/** Claimed attempts whose worker never heard of them (it hung up first): back to the queue, as if never claimed. */
export interface ClaimsReturned {
  t: 'claims-returned';
  at: number;
  workerId: string;
  claims: [string, number][];
}

/**
 * Foreign attempts: jobs of a peer (their home) that this server obtained
 * for one of its own workers. This server tracks them to count the worker's
 * resources, forward its heartbeats and results home, and keep a result
 * that could not be delivered until home is back.
 */
export interface ForeignClaimed {
  t: 'foreign-claimed';
  at: number;
  home: string;
  workerId: string;
  deadline: number;
  /** `project`: the job's project at home (absent in older records). */
  claims: { jobId: string; attempt: number; resources: Resources; project?: string }[];
}

/** The worker reported; the result waits here until home has it. */
export interface ForeignFinished {
  t: 'foreign-finished';
  at: number;
  jobId: string;
  attempt: number;
  result: unknown;
}

/** Home has the result, refused it, or the attempt was given up; forget it. */
export interface ForeignClosed {
  t: 'foreign-closed';
  at: number;
  attempts: [string, number][];
  reason: string;
}

/**
 * Heartbeats are journaled coarsely and never waited on: they only move
 * deadlines. Only the attempts the worker named are renewed, so a lease it
 * does not know of (a claim answer it never heard) still runs out.
 */
export interface LeasesRenewed {
  t: 'leases-renewed';
  at: number;
  workerId: string;
  deadline: number;
  attempts: [string, number][];
  /** Attempts whose process the worker says has started since it last said so (their live state becomes running). */
  running?: [string, number][];
}

/**
 * Stopping attempts (see Lease.stopping) whose process is confirmed gone:
 * their worker no longer names them in a heartbeat that names all it runs,
 * reported them, or (for a peer's worker) its server said so. Their leases
 * end, and a job queued meanwhile may be handed out again.
 */
export interface AttemptsStopped {
  t: 'attempts-stopped';
  at: number;
  workerId: string;
  attempts: [string, number][];
}

export interface AttemptFinished extends ProcessOutcome {
  t: 'attempt-finished';
  at: number;
  jobId: string;
  attempt: number;
  how: AttemptEnd;
  /** The worker's own words when it could not start the job or keep its outputs. */
  reason?: string;
  /** Kept files, already in the file store. */
  outputs?: FileRef[];
}

/** A project value set (or removed, when `value` is null). */
export interface ValueSet {
  t: 'value-set';
  at: number;
  project: string;
  name: string;
  value: ProjectValue | null;
}

/**
 * A project sent the bytes of a file (an upload of its own, an output of one
 * of its attempts): from now on it may name that content by its checksum,
 * until the collector removes it.
 */
export interface FileReceived {
  t: 'file-received';
  at: number;
  project: string;
  sha256: string;
  size: number;
}

/** The collector removed stored content nothing referred to: no project may name it any longer. */
export interface FilesCollected {
  t: 'files-collected';
  at: number;
  sha256s: string[];
}

/**
 * An admin set a user's or a project's weight (1 is the default, and
 * forgets the setting): a user's share of the queue against other users, a
 * project's against its owner's other projects at the same priority.
 */
export interface WeightSet {
  t: 'weight-set';
  at: number;
  of: 'user' | 'project';
  name: string;
  weight: number;
}

/**
 * The server took an attempt back (lease expired, worker lost); the job is
 * re-queued. A lease that expired ends with it; an attempt marked lost while
 * its lease still ran is only stopping (see Lease.stopping), since its
 * process may be alive.
 */
export interface AttemptsLost {
  t: 'attempts-lost';
  at: number;
  how: 'lease-expired' | 'worker-lost';
  reason: string;
  attempts: [string, number][];
  /**
   * The leases stay, stopping, even for `lease-expired`: at start-up a
   * deadline read back from the coarsely journaled renewals may be older
   * than the one the worker was last given, so its process may yet run.
   */
  stopping?: true;
}

export interface JobsCancelled {
  t: 'jobs-cancelled';
  at: number;
  ids: string[];
  reason: string;
}

export interface JobsRetried {
  t: 'jobs-retried';
  at: number;
  ids: string[];
}

export interface JobsArchived {
  t: 'jobs-archived';
  at: number;
  ids: string[];
}

/**
 * The wall clock stepped (a correction, a resume from suspend, an admin's
 * date) by `stepMs`: the deadlines of these leases, and of these foreign
 * attempts, given before the step, move by the same amount, so that each
 * lasts what it was given (see planClockStep).
 */
export interface ClockStepped {
  t: 'clock-stepped';
  at: number;
  stepMs: number;
  attempts: [string, number][];
  foreign: [string, number][];
}

/**
 * Written when the server starts after replay: leases whose deadlines fell
 * while it was down get one more lease period from here (see recovery.ts).
 */
export interface LeasesExtended {
  t: 'leases-extended';
  at: number;
  deadline: number;
  attempts: [string, number][];
}

export type Event =
  | ProjectCreated
  | ProjectRemoved
  | ProjectLoaded
  | MembersChanged
  | ProjectRetrySet
  | JobsSubmitted
  | WorkerRegistered
  | WorkerStopped
  | WorkerRemoved
  | JobsClaimed
  | ClaimsReturned
  | ForeignClaimed
  | ForeignFinished
  | ForeignClosed
  | LeasesRenewed
  | AttemptsStopped
  | AttemptFinished
  | AttemptsLost
  | JobsCancelled
  | JobsRetried
  | JobsArchived
  | LeasesExtended
  | ClockStepped
  | ValueSet
  | FileReceived
  | FilesCollected
  | WeightSet;
