/**
 * The shapes that travel over the API, shared by the server, the API client,
 * cpcc and cpc-worker. Every path is under /api/v1; every body is JSON; every
 * error is `{ error: { code, message } }` with a code from errors.ts.
 *
 *   (outside /api/v1: GET /api/openapi.json, this table as an OpenAPI 3.1 document)
 *
 *   anonymous   GET  /info                              → ServerInfo
 *               POST /login            LoginRequest     → LoginReply
 *   user        POST /logout                            → { ok }
 *               GET  /whoami                            → WhoAmI
 *               PUT  /me/password      { current, password } → PasswordChanged
 *               GET  /projects                          → { projects: ProjectView[] }
 *               POST /projects         { name }         → ProjectView
 *   member      GET  /projects/:p                       → ProjectView
 *   owner       DELETE /projects/:p                     → { removed }
 *               POST /projects/:p/members { user }      → ProjectView
 *               DELETE /projects/:p/members/:user       → ProjectView
 *   member      POST /projects/:p/jobs SubmitRequest    → SubmitReply
 *               GET  /projects/:p/jobs ?state&name&since&sort&order&limit&after&archived → JobList
 *   (bulk cancel/retry, job states, progress and why: their shapes are in job-reports.ts)
 *   job         GET  /jobs/:id                          → JobView
 *               GET  /jobs/:id/logs ?stream&attempt&offset&limit&tail&wait → text/plain (x-log-* headers: see LogPartHeaders)
 *               POST /jobs/:id/lost                     → LostReply  (its running attempt is lost now)
 *   user        POST /jobs/cancel      { ids }          → { cancelled }
 *               POST /jobs/retry       { ids }          → { retried }
 *               GET  /queue ?limit                      → JobList
 *               GET  /running ?project&limit            → JobList (oldest start first)
 *               GET  /workers                           → { workers: WorkerView[] }
 *               GET  /heartbeats                        → { leases: LeaseView[] }
 *   super user  GET  /users                             → { users: UserView[] }
 *               POST /users            AddUserRequest   → UserView
 *               DELETE /users/:name                     → UserRemoved
 *               PUT  /users/:name/password { password } → PasswordChanged
 *               PUT  /users/:name/weight { weight }     → WeightView  (the user's share against other users)
 *               PUT  /projects/:p/weight { weight }     → WeightView  (the project's share among its owner's)
 *               GET  /weights                           → WeightsView (those set to other than 1)
 *               POST /worker-tokens    { name }         → WorkerTokenCreated
 *               GET  /worker-tokens                     → { tokens: WorkerTokenView[] }
 *               DELETE /worker-tokens/:id               → { revoked }
 *               POST /peers/ca         { host, port? }      → PeerCaView
 *               POST /peers/connect    ConnectServerRequest → ConnectServerReply
 *               GET  /peers                             → PeersView
 *               POST /peers/:id/trust  { caFingerprint? } → TrustReply
 *               POST /peers/trust-all  { expect? }      → TrustReply
 *               PUT  /peers/:id/priority { priority }   → { connected: PeerView[] }
 *               DELETE /peers/:id                       → DisconnectReply
 *               POST /workers/:id/lost                  → LostReply  (every attempt it holds is lost now)
 *               GET  /network                           → NetworkView
 *               POST /server/stop                       → StopReply  (then the server stops)
 *               WS   /events            (see "event stream" below)
 *   worker      POST /workers          RegisterRequest  → RegisterReply
 *               POST /workers/:id/claim ClaimRequest    → ClaimReply   (long-poll; may carry results)
 *               POST /workers/:id/release               → { released }  (answers its waiting claim now)
 *               POST /workers/:id/heartbeat HeartbeatRequest → HeartbeatReply
 *               POST /workers/:id/control ControlRequest → ControlReply (long-poll: answered when an attempt must stop)
 *               POST /workers/:id/results ResultRequest → ResultReply
 *               POST /workers/:id/logs LogChunksRequest → LogChunksReply (output of running attempts)
 *               GET  /workers/:id/files/:sha256 ?job&attempt   → bytes (an input of a running attempt)
 *               PUT  /workers/:id/files/:sha256 ?job&attempt   bytes → StoredFile (an output)
 *   member      PUT  /projects/:p/files/:sha256  bytes        → StoredFile
 *               GET  /projects/:p/files/:sha256               → bytes
 *               GET  /projects/:p/values ?prefix              → { values: ValueView[] }
 *               GET  /projects/:p/values/:name                → ValueView
 *               GET  /projects/:p/values/:name/file           → bytes
 *               PUT  /projects/:p/values/:name { text } | { sha256, size } → ValueView
 *               DELETE /projects/:p/values/:name              → { removed }
 *               GET  /projects/:p/export                      → application/x-tar (cpcc save; see ProjectManifest)
 *   user        POST /projects/:p/import   tar bytes          → ProjectLoadReply (cpcc load; the caller owns it)
 *   job         GET  /jobs/:id/outputs                        → { outputs: FileRef[] }
 *               GET  /jobs/:id/outputs/:name                  → bytes
 *   peer        GET  /peer/files/:sha256 ?job&attempt         → bytes (for a delegated attempt)
 *               PUT  /peer/files/:sha256 ?job&attempt  bytes  → StoredFile
 */

import type { Attempt, AttemptEnd, AttemptLive, FileRef, InputSource, JobState, OutputSpec, ResolvedInput, Resources, RetrySpec, StateCounts, Usage } from './types.js';
import type { WorkerState } from './worker-presence.js';

export const API_PREFIX = '/api/v1';

export interface ServerInfo {
  serverId: string;
  name: string;
  version: string;
  caFingerprint: string;
  heartbeatIntervalS: number;
  time: number;
}

export interface LoginRequest {
  user: string;
  password: string;
}

export interface LoginReply {
  token: string;
  user: string;
  superuser: boolean;
  expiresAt: number;
}

export interface WhoAmI {
  user: string;
  superuser: boolean;
}

export interface UserView {
  name: string;
  superuser: boolean;
  createdAt: number;
}

export interface AddUserRequest {
  name: string;
  password: string;
  superuser?: boolean;
}

export interface UserRemoved {
  removed: string;
  tokensRevoked: number;
  /** Projects the user was a member of, and no longer is. */
  projectsLeft: string[];
}

/** A user's or a project's weight in the queue (1 unless an admin set another). */
export interface WeightView {
  of: 'user' | 'project';
  name: string;
  weight: number;
}

export interface WeightsView {
  weights: WeightView[];
}

/** A password was set; the user's other login tokens were revoked. */
export interface PasswordChanged {
  user: string;
  tokensRevoked: number;
}

export interface ProjectView {
  name: string;
  owner: string;
  members: string[];
  createdAt: number;
  counts: StateCounts;
  /** The retry with more of jobs submitted without their own. */
  retry?: RetrySpec;
}

/** One job as submitted; everything but the command has a default. */
export interface JobInput {
  key?: string;
  name?: string;
  argv?: string[];
  shell?: string;
  env?: Record<string, string>;
  cores?: number;
  memoryMb?: number;
  priority?: number;
  maxRetries?: number;
  timeoutS?: number | null;
  /** After an `oom` or a `timeout`, ask again with more (README, "Limits and retries"). */
  retry?: RetrySpec;
  /** Seconds between SIGTERM and SIGKILL when an attempt is stopped (0 to 3600, default 10). */
  killGraceS?: number;
  /** Ids of jobs in the project, or keys of other jobs in this request. */
  after?: string[];
  /** Files the job gets: uploaded ones by checksum, outputs of other jobs (id or key), project values. */
  inputs?: InputSource[];
  outputs?: OutputSpec[];
}

export interface SubmitRequest {
  jobs: JobInput[];
}

/** Ids in the order the jobs were given. */
export interface SubmitReply {
  ids: string[];
}

/** An attempt with where its process is (starting, running, stopping, ended), as far as the server knows. */
export interface AttemptView extends Attempt {
  live?: AttemptLive;
}

export interface JobView {
  id: string;
  project: string;
  name?: string;
  state: JobState;
  reason: string;
  argv?: string[];
  shell?: string;
  env: Record<string, string>;
  resources: Resources;
  priority: number;
  maxRetries: number;
  timeoutS: number | null;
  retry?: RetrySpec;
  /** Seconds between SIGTERM and SIGKILL when an attempt is stopped. */
  killGraceS: number;
  after: string[];
  createdAt: number;
  updatedAt: number;
  attempts: AttemptView[];
  /**
   * A queued job is not handed out while an earlier attempt of it may still
   * run: this attempt, stopping on this worker, holds it back until its
   * process is confirmed gone or its lease lapses.
   */
  heldBy?: { attempt: number; worker: string; via: string };
  inputs?: InputSource[];
  outputs?: OutputSpec[];
  /** The kept files of the latest attempt that kept any. */
  files?: FileRef[];
  exitCode?: number | null;
  durationMs?: number;
  stdoutTail?: string;
  stderrTail?: string;
  archived?: boolean;
}

export interface JobList {
  jobs: JobView[];
  /** Pass as `after` to get the next page. */
  next?: string;
}

export interface WorkerView {
  id: string;
  name: string;
  host: string;
  resources: Resources;
  used: Resources;
  labels: string[];
  /** Attempts it runs: this server's jobs and peers' (see `borrowed`). */
  running: number;
  registeredAt: number;
  lastSeen: number;
  /** live, or gone: stopped (it said so, at `stoppedAt`) or lost (not heard from for a lease's length since `lastSeen`). Gone workers are removed after the retention (workerRetentionS). */
  state: WorkerState;
  stoppedAt?: number;
  /** Peers' jobs among those it runs, by their home server. */
  borrowed?: BorrowedCount[];
  isolation?: IsolationLevel;
  sharedIdentity?: boolean;
  onlyUser?: string;
}

export interface BorrowedCount {
  /** The home server of the jobs: its id and name. */
  serverId: string;
  name: string;
  running: number;
}

export interface LeaseView {
  jobId: string;
  project: string;
  attempt: number;
  workerId: string;
  workerName: string;
  /** `local`, or the id of the peer whose worker runs it (lent; the peer's name in `viaName`). */
  via: string;
  viaName?: string;
  /** Borrowed: a peer's job that a worker of this server runs; its home server. `project` is the project there; `deadline` this server's own lease on its worker. */
  home?: { serverId: string; name: string };
  deadline: number;
  /** Where the attempt's process is: starting, running, or stopping (ended by the server, not yet confirmed gone). */
  live?: AttemptLive;
}

export interface WorkerTokenCreated {
  id: string;
  name: string;
  token: string;
}

export interface WorkerTokenView {
  id: string;
  name: string;
  createdAt: number;
  revoked: boolean;
  /** Workers of this token are handed only this user's jobs. */
  user?: string;
}

/** How far a worker keeps its jobs apart (docs/SECURITY.md), strongest first. */
export const ISOLATION_LEVELS = ['user', 'sandbox', 'none'] as const;
export type IsolationLevel = (typeof ISOLATION_LEVELS)[number];

export interface RegisterRequest {
  name: string;
  host: string;
  cores: number;
  memoryMb: number;
  labels?: string[];
  /** The worker's isolation level; absent from workers that do not say. */
  isolation?: IsolationLevel;
  /** Isolation `none`: its operator accepts that jobs of different users share its identity. */
  sharedIdentity?: boolean;
}

export interface RegisterReply {
  workerId: string;
  heartbeatIntervalS: number;
  leaseS: number;
  /** The worker is handed only this user's jobs (its token is bound to the user). */
  onlyUser?: string;
}

export interface ClaimRequest {
  /** How long the server may hold the request open when nothing fits. */
  waitS: number;
  /** Most jobs to hand out in one reply. */
  max?: number;
  /**
   * Results of attempts that just ended, taken before the claim is served:
   * a busy worker reports and asks for more in one request instead of two.
   */
  results?: ResultRequest[];
}

/** What became of one result sent with a claim: taken, or refused with the code the results route would give. */
export type ResultOutcome = ResultReply | { error: { code: string; message: string } };

/** What a worker needs to run one attempt. */
export interface ClaimedJob {
  id: string;
  project: string;
  attempt: number;
  argv?: string[];
  shell?: string;
  env: Record<string, string>;
  resources: Resources;
  timeoutS: number | null;
  /** Seconds between SIGTERM and SIGKILL when the attempt is stopped. */
  killGraceS?: number;
  /** Fetched into the work folder before the job starts (files by checksum from the worker's server). */
  inputs?: ResolvedInput[];
  /** Patterns of the files to upload after the job. */
  outputs?: OutputSpec[];
}

export interface ClaimReply {
  jobs: ClaimedJob[];
  /** With `results` in the request: one outcome for each, in order. */
  results?: ResultOutcome[];
}

/**
 * The attempts the worker runs; or, when they are the very ones its last
 * heartbeat named and the server kept (`kept` in that reply), just how many
 * there are: a busy worker's heartbeat then costs the server next to nothing.
 */
/**
 * A worker names every attempt whose process may be alive: one it was told to
 * abandon too, until its process group is gone (see renewLeases). `started`
 * once the attempt's process has started.
 */
export type HeartbeatRequest = ({ attempts: { jobId: string; attempt: number; started?: true }[] } | { same: number }) & {
  /** The latest usage of running attempts (kept in memory by the server, shown by `cpcc job`). */
  usage?: { jobId: string; attempt: number; usage: Usage }[];
};

export interface HeartbeatReply {
  abandon: { jobId: string; attempt: number; reason: string }[];
  heartbeatIntervalS: number;
  /** The server kept the attempts named: the next heartbeat may send `{ same }` instead of naming them. */
  kept?: true;
  /** To a `{ same }` heartbeat: the server no longer has them; name the attempts again. */
  resend?: true;
}

/** The attempts a worker runs; the server holds the request up to waitS until one of them must stop. */
export interface ControlRequest {
  attempts: { jobId: string; attempt: number }[];
  waitS: number;
}

/** The attempts to stop now (none when the wait ran out, or a newer control request took this one's place). */
export interface ControlReply {
  abandon: { jobId: string; attempt: number; reason: string }[];
}

export interface ResultRequest {
  jobId: string;
  attempt: number;
  how: Extract<AttemptEnd, 'exited' | 'timeout' | 'oom' | 'start-failed' | 'output-failed'>;
  /** What the attempt used (absent from workers that do not measure). */
  usage?: Usage;
  /** Why it could not start or keep its outputs, in the worker's words. */
  reason?: string;
  /** The files kept, already uploaded. */
  outputs?: FileRef[];
  exitCode: number | null;
  signal: string | null;
  durationMs: number;
  /** The end of each stream, up to the server's log limit. */
  stdout: string;
  stderr: string;
  /** How many bytes each stream had in all (may exceed what was sent). */
  stdoutBytes: number;
  stderrBytes: number;
}

/**
 * Live logs: a piece of an attempt's stdout or stderr, sent by its worker
 * while the attempt runs. `offset` is where `data` (base64) begins in the
 * stream, counted in bytes from the stream's start; the server keeps each
 * stream from its offsets, so a repeat changes nothing and a chunk past the
 * stored end leaves a gap (bytes the worker skipped) that is counted.
 */
export interface LogChunk {
  jobId: string;
  attempt: number;
  stream: 'stdout' | 'stderr';
  offset: number;
  data: string;
}

export interface LogChunksRequest {
  chunks: LogChunk[];
}

/** What became of one chunk: the stream's stored end (the next byte the server wants), or a refusal (STALE_ATTEMPT: not this worker's attempt). */
export type LogChunkOutcome = { end: number } | { error: { code: string; message: string } };

export interface LogChunksReply {
  /** One for each chunk, in order. */
  results: LogChunkOutcome[];
}

/** The most bytes of output one log request carries (before base64). */
export const MAX_LOG_CHUNK_BYTES = 256 * 1024;

/**
 * Output that a worker has not streamed yet and that is at most this long
 * goes with the attempt's result alone (the job record keeps it whole).
 */
export const INLINE_LOG_BYTES = 2048;

/**
 * What `GET /jobs/:id/logs` tells of the part it sends, in response headers:
 * x-log-offset and x-log-end (where the text lies, in bytes of the stream),
 * x-log-size (the stream's size so far), x-log-start (where the part the
 * server keeps begins: earlier bytes were dropped, by retention or because
 * the worker skipped them), x-log-running (1 while the attempt runs) and
 * x-log-attempt (the attempt read: the last one unless asked).
 */
export interface LogPartHeaders {
  offset: number;
  end: number;
  size: number;
  start: number;
  running: boolean;
  attempt: number;
}

export interface ResultReply {
  accepted: true;
  duplicate: boolean;
  state: JobState;
}

/** A project value: `text`, or a file (`sha256`, `size`, and the job that wrote it, if one did). */
export interface ValueView {
  name: string;
  at: number;
  text?: string;
  sha256?: string;
  size?: number;
  job?: string;
}

/**
 * `cpc-project.json`, the first entry of a saved project (a tar): then
 * `jobs.ndjson`, one job a line (live and archived, as the server keeps
 * them, without `project`), then `files/<sha256>` for every file the
 * project refers to, each listed in `files`.
 */
export interface ProjectManifest {
  format: 'cpc-project';
  version: 1;
  project: string;
  owner: string;
  members: string[];
  createdAt: number;
  values: Record<string, { text: string; at: number } | { sha256: string; size: number; at: number; job?: string }>;
  /** The project's retry with more for jobs submitted without their own. */
  retry?: RetrySpec;
  /** The server it was saved on, and when. */
  serverId: string;
  savedAt: number;
  jobs: number;
  files: { sha256: string; size: number }[];
}

/** What `POST /projects/:p/import` made. */
export interface ProjectLoadReply {
  project: ProjectView;
  jobs: number;
  files: number;
  /** Bytes of the files the project refers to. */
  bytes: number;
}

/** A file stored on the server (an upload's answer). */
export interface StoredFile {
  sha256: string;
  size: number;
  /** False when the server had the content already. */
  created: boolean;
}

export interface ErrorReply {
  /** `retryAfterS` comes with TOO_MANY_REQUESTS. */
  error: { code: string; message: string; retryAfterS?: number };
}

// ---- federation: connection requests and trusted peers ----------------------

export type PeerLinkState = 'up' | 'down' | 'connecting';

export interface ConnectServerRequest {
  host: string;
  /** The peer's unsecure port; 14807 when left out. */
  port?: number;
  /** The peer's CA as its admin confirmed it: the only CA an answer may carry. */
  caFingerprint: string;
}

/** The CA a server shows on its unsecure port, seen from this server (fingerprint computed here). */
export interface PeerCaView {
  host: string;
  port: number;
  serverId: string;
  name: string;
  caFingerprint: string;
}

/** A connection request this server sent and that waits for the peer's trust. */
export interface SentRequestView {
  host: string;
  port: number;
  peerServerId: string;
  peerName: string;
  /** The pinned CA; null for a request sent before CAs were pinned (it cannot complete). */
  caFingerprint: string | null;
  sentAt: number;
}

/** Who a received request says it is, and the address it came from. */
export interface RequestClaimView {
  name: string;
  host: string;
  unsecurePort: number;
  securePort: number;
  caFingerprint: string;
  source: string;
  receivedAt: number;
}

/** A connection request another server sent here; `trust` accepts it. */
export interface ReceivedRequestView extends RequestClaimView {
  serverId: string;
  /** Later requests in the same server's name with another CA or address; never trusted by --all. */
  conflicts: RequestClaimView[];
}

/** A trusted peer server. Lower priority is asked for work first. */
export interface PeerView {
  serverId: string;
  name: string;
  host: string;
  unsecurePort: number;
  securePort: number;
  caFingerprint: string;
  priority: number;
  trustedAt: number;
  link: PeerLinkState;
}

export interface PeersView {
  sent: SentRequestView[];
  received: ReceivedRequestView[];
  connected: PeerView[];
}

export interface ConnectServerReply {
  /** The request now waiting; null when the peer trusted this server already. */
  sent: SentRequestView | null;
  /** The peer, when it trusted this server already and the handshake completed at once. */
  connected: PeerView | null;
  /** This server, for the peer's admin to check before trusting it. */
  serverId: string;
  caFingerprint: string;
}

export interface TrustReply {
  /** `told`: the requester heard the answer at once (otherwise it asks for it). */
  trusted: (PeerView & { told: boolean })[];
  /** Requests left waiting because their CA was not the one expected. */
  skipped: string[];
}

export interface DisconnectReply {
  serverId: string;
  /** `peer`: trust ended; `requests`: pending requests were withdrawn or declined. */
  removed: 'peer' | 'requests';
  /** Whether the peer heard the signed notice. */
  told: boolean;
}

// ---- admin: the Copernicus commands ---------------------------------------------

/** The attempts an admin marked lost (worker-failed, command-failed), and where each job went. */
export interface LostReply {
  lost: { jobId: string; attempt: number; state: JobState }[];
  /** Peers' jobs the worker ran for them, given up here (their home re-queues them). */
  foreign: { jobId: string; attempt: number; home: string }[];
}

export interface StopReply {
  stopping: true;
  serverId: string;
}

/** A trusted peer with what this server saw of it (since it started). */
export interface NetworkPeerView extends PeerView {
  /** Now while its link is up; otherwise the last moment it was seen up, or null. */
  lastSeen: number | null;
}

/** This server and its peers, for `cpcc network`. */
export interface NetworkView {
  server: { serverId: string; name: string; host: string; unsecurePort: number; securePort: number; version: string };
  peers: NetworkPeerView[];
}

// ---- event stream (websocket) -------------------------------------------------
//
// `wss://host:port/api/v1/events`. The client's first message is a
// StreamHello; the token goes in it, or as a websocket subprotocol
// `cpc.token.<token>` next to `cpc.events.v1` (never in the URL). The server
// answers `ready` (then, when resuming, the events after the cursor) or
// `reset`, and then sends every event the user may see as it becomes durable.
//
// Every event has `seq`, its position in the server's journal. A client keeps
// the last `seq` it saw (from `ready`, `reset`, `event` and `position`) and
// sends it as `cursor` when it reconnects: it then gets exactly the events it
// missed, also across a server restart. When the server no longer holds them
// (it keeps a bounded window of recent events), it answers `reset`: the
// client must reload its view through the API and go on from `reset.seq`.
// Peer link states are not journal events: super users get the current list
// (`peers`) on every connect and whenever a link, trust or priority changes.

export const EVENTS_PATH = '/api/v1/events';
export const EVENTS_PROTOCOL = 'cpc.events.v1';
export const EVENTS_TOKEN_PROTOCOL = 'cpc.token.';

export interface StreamHello {
  type: 'hello';
  token?: string;
  /** The last `seq` seen; leave out to start from now. */
  cursor?: number;
  /** Only this project's jobs, leases and counts (workers are sent all the same). */
  project?: string;
}

export interface StreamReady {
  type: 'ready';
  /** Where the client now stands; resumed events that follow have larger seq. */
  seq: number;
  resumed: boolean;
  user: string;
  superuser: boolean;
}

export interface StreamReset {
  type: 'reset';
  seq: number;
  reason: string;
}

/** Nothing the client may see happened up to `seq`; keep it as the cursor. */
export interface StreamPosition {
  type: 'position';
  seq: number;
}

export interface StreamPeers {
  type: 'peers';
  peers: PeerView[];
}

export interface StreamError {
  type: 'error';
  code: string;
  message: string;
}

export interface StreamProject {
  name: string;
  owner: string;
  members: string[];
  /** Counts by state after the event, archived jobs included. */
  counts: StateCounts;
  removed?: true;
}

export interface StreamJob {
  id: string;
  project: string;
  name?: string;
  state: JobState;
  /** The state before the event; null for a job the event submitted. */
  from: JobState | null;
  reason: string;
  updatedAt: number;
  attempts: number;
  /** The last attempt, when there is one. */
  attempt?: Attempt;
}

/** A lease as the stream tells of it; `deadline` null: the lease ended (the attempt finished, was lost or was cancelled). */
export type StreamLease = Omit<LeaseView, 'deadline'> & { deadline: number | null };

export interface StreamWorker {
  id: string;
  name?: string;
  host?: string;
  resources?: Resources;
  used?: Resources;
  labels?: string[];
  running?: number;
  registeredAt?: number;
  lastSeen?: number;
  /** Set when the worker said it stopped (it is gone, listed until the retention ends). */
  stoppedAt?: number;
  /** Set when the worker was removed: why. */
  removed?: string;
}

export interface StreamEvent {
  type: 'event';
  seq: number;
  at: number;
  /** The journal event's type, e.g. `jobs-claimed`. */
  kind: string;
  projects?: StreamProject[];
  jobs?: StreamJob[];
  leases?: StreamLease[];
  workers?: StreamWorker[];
  /** Job changes not listed because one event changed too many: reload these projects' lists. */
  omitted?: { project: string; jobs: number }[];
}

export type StreamMessage = StreamReady | StreamReset | StreamPosition | StreamPeers | StreamError | StreamEvent;

// ---- pilots on batch systems (GET /pilots) --------------------------------------

/** See src/server/pilots/pilot-store.ts for what each state means. */
export const PILOT_STATES = ['queued', 'starting', 'running', 'ended', 'failed', 'cancelled', 'lost'] as const;
export type PilotState = (typeof PILOT_STATES)[number];

export interface PilotView {
  id: string;
  launcher: string;
  kind: string;
  state: PilotState;
  batchId: string | null;
  batchState: string | null;
  workerId: string | null;
  cores: number;
  memoryMb: number;
  submittedAt: number;
  startedAt: number | null;
  endedAt: number | null;
  lastError: string | null;
  failures: number;
}

export interface LauncherView {
  name: string;
  kind: string;
  partition: string | null;
  maxPilots: number;
  /** Pilots queued or running now. */
  live: number;
  /** Submissions refused in a row. */
  failures: number;
  lastError: string | null;
  /** When a refused submission is tried again; null when none is waiting. */
  retryAt: number | null;
  /** Queued jobs no worker or coming pilot had room for, at the last look. */
  waiting: number;
}

export interface PilotsView {
  launchers: LauncherView[];
  pilots: PilotView[];
}

/** Most bytes of a log one request returns when asked for a part of it (GET /jobs/:id/logs with offset and limit, or tail). */
export const MAX_LOG_PART = 16 * 1024 * 1024;
