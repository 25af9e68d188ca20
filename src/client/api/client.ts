import type { BulkReply, JobStatesReply, ProgressView, WhyView } from '../../core/job-reports.js';
import type { Dispatcher } from 'undici';
import { Agent, request } from '../../common/undici.js';
import type { Readable } from 'node:stream';
import type { PeerCertificate } from 'node:tls';
import type {
  ClaimReply,
  ClaimRequest,
  HeartbeatReply,
  HeartbeatRequest,
  JobInput,
  JobList,
  JobView,
  LeaseView,
  LoginReply,
  ProjectView,
  RegisterReply,
  RegisterRequest,
  ResultReply,
  ResultRequest,
  LogChunksReply,
  LogChunksRequest,
  LogPartHeaders,
  ServerInfo,
  SubmitReply,
  WhoAmI,
  WorkerTokenCreated,
  WorkerTokenView,
  WorkerView,
} from '../../core/wire.js';
import type { ConnectServerReply, DisconnectReply, PeerCaView, PeerView, PeersView, TrustReply } from '../../core/wire.js';
import type { PasswordChanged, UserRemoved, UserView } from '../../core/wire.js';
import type { LostReply, NetworkView, StopReply, WeightView, WeightsView } from '../../core/wire.js';
import type { StoredFile, ValueView } from '../../core/wire.js';
import type { ControlReply, ControlRequest } from '../../core/wire.js';
import type { FileRef, RetrySpec } from '../../core/types.js';
import type { ProjectStats } from '../../core/stats.js';
import { API_PREFIX } from '../../core/wire.js';
import { NodeTransport } from './node-transport.js';

/**
 * The typed API client shared by cpcc, cpc-worker and peers.
 *
 * Servers use certificates from their own CA, so the client pins that CA
 * instead of trusting the system's, and checks the server id written into
 * the certificate instead of the host name: a server reached by any name or
 * address is accepted if, and only if, it is the server we trusted.
 */

export interface ClientOptions {
  /** https://host:port of the secure port (or http:// for the unsecure one). */
  url: string;
  caPem?: string;
  /** When set, the certificate must carry this server id. */
  serverId?: string;
  token?: string;
  /** Per-request limit; long-polls add their own wait to it. */
  timeoutMs?: number;
  /** Most connections to the server at once (long-polls hold one each). */
  connections?: number;
  /**
   * `node` for a process that sends a few requests and exits (cpcc): JSON
   * requests go through Node's own client (node-transport.ts), and undici is
   * loaded only for streams. Default `undici`.
   */
  transport?: 'undici' | 'node';
}

/** Codes the client itself produces, next to the server's codes. */
export type ClientErrorCode = 'UNREACHABLE' | 'TIMEOUT' | 'BAD_RESPONSE' | 'WRONG_SERVER';

export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number = 0,
    /** With TOO_MANY_REQUESTS: seconds to wait before trying again. */
    readonly retryAfterS?: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export function serverIdOfPeer(cert: PeerCertificate): string | null {
  const m = /URI:urn:cpc:server:([0-9a-fA-F-]{36})/.exec(cert.subjectaltname ?? '');
  return m ? m[1]!.toLowerCase() : null;
}

type Query = Record<string, string | number | boolean | undefined>;

export class ApiClient {
  readonly url: string;
  token: string | undefined;
  private agent?: Dispatcher;
  private readonly node?: NodeTransport;
  private readonly timeoutMs: number;
  private readonly connections: number;
  private readonly caPem?: string;
  private readonly checkServerIdentity: (host: string, cert: PeerCertificate) => Error | undefined;

  constructor(opts: ClientOptions) {
    this.url = opts.url.replace(/\/+$/, '');
    this.token = opts.token;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.connections = opts.connections ?? 16;
    this.caPem = opts.caPem;
    const serverId = opts.serverId?.toLowerCase();
    this.checkServerIdentity = (_host: string, cert: PeerCertificate) => {
      if (!serverId) return undefined;
      const got = serverIdOfPeer(cert);
      return got === serverId
        ? undefined
        : new ApiError('WRONG_SERVER', `the server's certificate is for server ${got ?? '(none)'}, not ${serverId}`);
    };
    if (opts.transport === 'node') {
      this.node = new NodeTransport({ caPem: this.caPem, checkServerIdentity: this.checkServerIdentity, connections: this.connections });
    }
  }

  /** undici's connection pool, made at the first request that needs it. */
  private get dispatcher(): Dispatcher {
    this.agent ??= new Agent({
      keepAliveTimeout: 30_000,
      connections: this.connections,
      connect: { ca: this.caPem, rejectUnauthorized: true, checkServerIdentity: this.checkServerIdentity },
    });
    return this.agent;
  }

  async close(): Promise<void> {
    this.node?.destroy();
    await this.agent?.close();
  }

  async destroy(): Promise<void> {
    this.node?.destroy();
    await this.agent?.destroy();
  }

  // ---- transport -----------------------------------------------------------

  async call<T>(
    method: Dispatcher.HttpMethod,
    path: string,
    body?: unknown,
    opts: { query?: Query; timeoutMs?: number; signal?: AbortSignal; text?: boolean } = {},
  ): Promise<T> {
    const url = this.urlOf(path, opts.query);
    const headers: Record<string, string> = { accept: opts.text ? 'text/plain' : 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let payload: string | undefined;
    if (body !== undefined) {
      payload = JSON.stringify(body);
      headers['content-type'] = 'application/json';
    }
    const timeout = opts.timeoutMs ?? this.timeoutMs;
    if (this.node) {
      let raw: { status: number; body: string };
      try {
        raw = await this.node.send(url, method, headers, payload, timeout, opts.signal);
      } catch (err) {
        throw toClientError(err, this.url);
      }
      return this.parse<T>(raw.status, raw.body, opts.text);
    }
    let res: Dispatcher.ResponseData;
    try {
      res = await request(url, {
        method,
        headers,
        body: payload,
        dispatcher: this.dispatcher,
        headersTimeout: timeout,
        bodyTimeout: timeout,
        signal: opts.signal,
      });
    } catch (err) {
      throw toClientError(err, this.url);
    }
    return this.answer<T>(res, opts.text);
  }

  private urlOf(path: string, query?: Query): string {
    let url = this.url + API_PREFIX + path;
    if (query) {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) if (v !== undefined) q.set(k, String(v));
      const s = q.toString();
      if (s) url += `?${s}`;
    }
    return url;
  }

  /**
   * PUTs (or POSTs: a saved project) a stream of `size` bytes (a file upload) and returns the JSON
   * answer. There is no body timeout: a large file takes what it takes, and
   * a stalled connection is cut by the server's request timeout.
   */
  async sendBytes<T>(path: string, body: Readable, size: number, query?: Query, method: 'PUT' | 'POST' = 'PUT'): Promise<T> {
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream', 'content-length': String(size), accept: 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let res: Dispatcher.ResponseData;
    try {
      res = await request(this.urlOf(path, query), { method, headers, body, dispatcher: this.dispatcher, headersTimeout: 0, bodyTimeout: this.timeoutMs });
    } catch (err) {
      throw toClientError(err, this.url);
    }
    return this.answer<T>(res);
  }

  /** GETs bytes; the caller reads (or destroys) the stream. */
  async fetchBytes(path: string, query?: Query, signal?: AbortSignal): Promise<{ body: Readable; size: number; headers: Dispatcher.ResponseData['headers'] }> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let res: Dispatcher.ResponseData;
    try {
      res = await request(this.urlOf(path, query), { headers, dispatcher: this.dispatcher, headersTimeout: this.timeoutMs, bodyTimeout: this.timeoutMs, signal });
    } catch (err) {
      throw toClientError(err, this.url);
    }
    if (res.statusCode >= 400) return this.answer(res);
    return { body: res.body, size: Number(res.headers['content-length'] ?? NaN), headers: res.headers };
  }

  /** The answer's JSON (or text), or the ApiError its error body describes. */
  private async answer<T>(res: Dispatcher.ResponseData, text = false): Promise<T> {
    let raw: string;
    try {
      raw = await res.body.text();
    } catch (err) {
      throw toClientError(err, this.url);
    }
    return this.parse<T>(res.statusCode, raw, text);
  }

  private parse<T>(statusCode: number, raw: string, text = false): T {
    if (statusCode >= 400) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw);
      } catch {
        parsed = undefined;
      }
      const e = (parsed as { error?: { code?: unknown; message?: unknown; retryAfterS?: unknown } } | undefined)?.error;
      if (e && typeof e.code === 'string') {
        const retryAfterS = typeof e.retryAfterS === 'number' ? e.retryAfterS : undefined;
        throw new ApiError(e.code, typeof e.message === 'string' ? e.message : e.code, statusCode, retryAfterS);
      }
      throw new ApiError('BAD_RESPONSE', `${this.url} answered HTTP ${statusCode} without an error body`, statusCode);
    }
    if (text) return raw as T;
    try {
      return JSON.parse(raw) as T;
    } catch {
      throw new ApiError('BAD_RESPONSE', `${this.url} answered something that is not JSON`, statusCode);
    }
  }

  // ---- anonymous -----------------------------------------------------------

  info(): Promise<ServerInfo> {
    return this.call('GET', '/info');
  }

  login(user: string, password: string): Promise<LoginReply> {
    return this.call('POST', '/login', { user, password });
  }

  // ---- users ---------------------------------------------------------------

  logout(): Promise<{ ok: true }> {
    return this.call('POST', '/logout', {});
  }

  whoami(): Promise<WhoAmI> {
    return this.call('GET', '/whoami');
  }

  projects(): Promise<{ projects: ProjectView[] }> {
    return this.call('GET', '/projects');
  }

  createProject(name: string): Promise<ProjectView> {
    return this.call('POST', '/projects', { name });
  }

  project(name: string): Promise<ProjectView> {
    return this.call('GET', `/projects/${encodeURIComponent(name)}`);
  }

  /** A project's jobs by state and end, and their usage (core/stats.ts). */
  stats(project: string, q: { by?: 'name' } = {}): Promise<ProjectStats> {
    return this.call('GET', `/projects/${encodeURIComponent(project)}/stats`, undefined, { query: q, timeoutMs: 120_000 });
  }

  /** Sets (null: clears) the retry with more of the project's jobs submitted without their own. */
  setProjectRetry(project: string, retry: RetrySpec | null): Promise<ProjectView> {
    return this.call('PUT', `/projects/${encodeURIComponent(project)}/retry`, { retry });
  }

  removeProject(name: string): Promise<{ removed: string }> {
    return this.call('DELETE', `/projects/${encodeURIComponent(name)}`);
  }

  /** The files a job kept. */
  outputs(jobId: string): Promise<{ outputs: FileRef[] }> {
    return this.call('GET', `/jobs/${encodeURIComponent(jobId)}/outputs`);
  }

  values(project: string, prefix?: string): Promise<{ values: ValueView[] }> {
    return this.call('GET', `/projects/${encodeURIComponent(project)}/values`, undefined, { query: { prefix } });
  }

  value(project: string, name: string): Promise<ValueView> {
    return this.call('GET', `/projects/${encodeURIComponent(project)}/values/${encodeURIComponent(name)}`);
  }

  setValue(project: string, name: string, value: { text: string } | { sha256: string; size: number }): Promise<ValueView> {
    return this.call('PUT', `/projects/${encodeURIComponent(project)}/values/${encodeURIComponent(name)}`, value);
  }

  removeValue(project: string, name: string): Promise<{ removed: string }> {
    return this.call('DELETE', `/projects/${encodeURIComponent(project)}/values/${encodeURIComponent(name)}`);
  }

  submit(project: string, jobs: JobInput[]): Promise<SubmitReply> {
    return this.call('POST', `/projects/${encodeURIComponent(project)}/jobs`, { jobs }, { timeoutMs: 120_000 });
  }

  jobs(
    project: string,
    q: { state?: string; limit?: number; after?: string; archived?: boolean | 'include'; sort?: string; order?: 'asc' | 'desc'; name?: string; since?: number } = {},
  ): Promise<JobList> {
    return this.call('GET', `/projects/${encodeURIComponent(project)}/jobs`, undefined, { query: q });
  }

  job(id: string): Promise<JobView> {
    return this.call('GET', `/jobs/${encodeURIComponent(id)}`);
  }

  logs(id: string, q: { stream?: 'stdout' | 'stderr'; attempt?: number } = {}): Promise<string> {
    return this.call('GET', `/jobs/${encodeURIComponent(id)}/logs`, undefined, { query: q, text: true });
  }

  /**
   * A part of a log, by bytes: from `offset` for `limit` bytes, or the last
   * `tail`; with where it lies in the whole, where the kept part starts, and
   * whether the attempt still runs. `wait`: while it runs and has nothing
   * past `offset`, the server waits up to this many seconds for more.
   */
  async logPart(
    id: string,
    q: { stream?: 'stdout' | 'stderr'; attempt?: number; offset?: number; limit?: number; tail?: number; wait?: number },
    signal?: AbortSignal,
  ): Promise<{ text: string } & LogPartHeaders> {
    const { body, headers } = await this.fetchBytes(`/jobs/${encodeURIComponent(id)}/logs`, q, signal);
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of body) chunks.push(chunk as Buffer);
    } catch (err) {
      throw toClientError(err, this.url);
    }
    const at = (name: string) => Number(headers[name] ?? 0);
    return {
      text: Buffer.concat(chunks).toString('utf8'),
      offset: at('x-log-offset'),
      end: at('x-log-end'),
      size: at('x-log-size'),
      start: at('x-log-start'),
      running: headers['x-log-running'] === '1',
      attempt: at('x-log-attempt'),
    };
  }

  cancel(ids: string[]): Promise<{ cancelled: string[] }> {
    return this.call('POST', '/jobs/cancel', { ids });
  }

  retry(ids: string[]): Promise<{ retried: string[] }> {
    return this.call('POST', '/jobs/retry', { ids });
  }

  /** Cancel or retry each job on its own: every id gets its outcome. */
  bulk(action: 'cancel' | 'retry', ids: string[]): Promise<BulkReply> {
    return this.call('POST', '/jobs/bulk', { action, ids }, { timeoutMs: 120_000 });
  }

  jobStates(ids: string[]): Promise<JobStatesReply> {
    return this.call('POST', '/jobs/states', { ids });
  }

  /** A project's jobs from `from` on (or from its oldest unfinished one): counts and failures. */
  progress(project: string, from?: string): Promise<ProgressView> {
    return this.call('GET', `/projects/${encodeURIComponent(project)}/progress`, undefined, { query: { from } });
  }

  why(id: string): Promise<WhyView> {
    return this.call('GET', `/jobs/${encodeURIComponent(id)}/why`);
  }

  queue(q: { limit?: number } = {}): Promise<JobList> {
    return this.call('GET', '/queue', undefined, { query: q });
  }

  /** Running jobs the user may see, or those of one project; oldest start first. */
  running(q: { project?: string; limit?: number } = {}): Promise<JobList> {
    return this.call('GET', '/running', undefined, { query: q });
  }

  /** The job's running attempt is lost now and the job re-queued (command-failed). */
  markJobLost(id: string): Promise<LostReply> {
    return this.call('POST', `/jobs/${encodeURIComponent(id)}/lost`, {});
  }

  workers(): Promise<{ workers: WorkerView[] }> {
    return this.call('GET', '/workers');
  }

  heartbeats(): Promise<{ leases: LeaseView[] }> {
    return this.call('GET', '/heartbeats');
  }

  createWorkerToken(name: string, maxWorkers?: number, user?: string): Promise<WorkerTokenCreated> {
    return this.call('POST', '/worker-tokens', { name, ...(maxWorkers !== undefined ? { maxWorkers } : {}), ...(user !== undefined ? { user } : {}) });
  }

  workerTokens(): Promise<{ tokens: WorkerTokenView[] }> {
    return this.call('GET', '/worker-tokens');
  }

  revokeWorkerToken(id: string): Promise<{ revoked: string }> {
    return this.call('DELETE', `/worker-tokens/${encodeURIComponent(id)}`);
  }

  // ---- users and access ------------------------------------------------------

  /** Changes this user's own password; their other tokens are revoked, this one stays. */
  changePassword(current: string, password: string): Promise<PasswordChanged> {
    return this.call('PUT', '/me/password', { current, password });
  }

  /** Gives a user full access to a project (its owner or a super user). */
  grantAccess(project: string, user: string): Promise<ProjectView> {
    return this.call('POST', `/projects/${encodeURIComponent(project)}/members`, { user });
  }

  revokeAccess(project: string, user: string): Promise<ProjectView> {
    return this.call('DELETE', `/projects/${encodeURIComponent(project)}/members/${encodeURIComponent(user)}`);
  }

  /** Super user: every user. */
  users(): Promise<{ users: UserView[] }> {
    return this.call('GET', '/users');
  }

  addUser(name: string, password: string, superuser = false): Promise<UserView> {
    return this.call('POST', '/users', superuser ? { name, password, superuser } : { name, password });
  }

  removeUser(name: string): Promise<UserRemoved> {
    return this.call('DELETE', `/users/${encodeURIComponent(name)}`);
  }

  /** Super user: sets another user's password; all their tokens are revoked. */
  setPassword(name: string, password: string): Promise<PasswordChanged> {
    return this.call('PUT', `/users/${encodeURIComponent(name)}/password`, { password });
  }

  // ---- federation (super user) ----------------------------------------------

  /** Has the server send a connection request to the peer's unsecure port (default 14807), pinning the CA with that fingerprint. */
  connectServer(host: string, port: number | undefined, caFingerprint: string): Promise<ConnectServerReply> {
    return this.call('POST', '/peers/connect', port === undefined ? { host, caFingerprint } : { host, port, caFingerprint });
  }

  /** The CA the server at host:port shows this server, for the admin to confirm before connecting. */
  peerCa(host: string, port?: number): Promise<PeerCaView> {
    return this.call('POST', '/peers/ca', port === undefined ? { host } : { host, port });
  }

  /** Sent and received connection requests, and the trusted peers in priority order. */
  peers(): Promise<PeersView> {
    return this.call('GET', '/peers');
  }

  /** Trusts a server that asked to connect; with `caFingerprint`, only if its CA is that one. */
  trustPeer(serverId: string, caFingerprint?: string): Promise<TrustReply> {
    return this.call('POST', `/peers/${encodeURIComponent(serverId)}/trust`, caFingerprint === undefined ? {} : { caFingerprint });
  }

  /** Trusts every waiting request, or only those in `expect` whose CA is still the one given. */
  trustAllPeers(expect?: { serverId: string; caFingerprint: string }[]): Promise<TrustReply> {
    return this.call('POST', '/peers/trust-all', expect === undefined ? {} : { expect });
  }

  /** Moves a peer to place `priority` (0 is asked first); returns the new order. */
  setPeerPriority(serverId: string, priority: number): Promise<{ connected: PeerView[] }> {
    return this.call('PUT', `/peers/${encodeURIComponent(serverId)}/priority`, { priority });
  }

  /** Ends trust in a peer (and tells it), or withdraws the requests between us. */
  disconnectPeer(serverId: string): Promise<DisconnectReply> {
    return this.call('DELETE', `/peers/${encodeURIComponent(serverId)}`);
  }

  // ---- admin (super user) ----------------------------------------------------

  /** Sets a user's or a project's weight in the queue. */
  setWeight(of: WeightView['of'], name: string, weight: number): Promise<WeightView> {
    return this.call('PUT', `/${of === 'user' ? 'users' : 'projects'}/${encodeURIComponent(name)}/weight`, { weight });
  }

  /** The weights set to other than 1. */
  weights(): Promise<WeightsView> {
    return this.call('GET', '/weights');
  }

  /** Every attempt the worker holds is lost now and its jobs re-queued (worker-failed). */
  markWorkerLost(id: string): Promise<LostReply> {
    return this.call('POST', `/workers/${encodeURIComponent(id)}/lost`, {});
  }

  /** The server answers, then stops cleanly. */
  stopServer(): Promise<StopReply> {
    return this.call('POST', '/server/stop', {});
  }

  /** This server and its peers with their link states. */
  network(): Promise<NetworkView> {
    return this.call('GET', '/network');
  }

  // ---- workers -------------------------------------------------------------

  register(req: RegisterRequest): Promise<RegisterReply> {
    return this.call('POST', '/workers', req);
  }

  claim(workerId: string, req: ClaimRequest, signal?: AbortSignal): Promise<ClaimReply> {
    return this.call('POST', `/workers/${encodeURIComponent(workerId)}/claim`, req, {
      timeoutMs: this.timeoutMs + req.waitS * 1000,
      signal,
    });
  }

  release(workerId: string): Promise<{ released: boolean }> {
    return this.call('POST', `/workers/${encodeURIComponent(workerId)}/release`, {});
  }

  /** The worker stops: the server lists it as gone from now on. */
  workerStopped(workerId: string): Promise<{ stopped: true }> {
    // A stopping worker does not wait long on a server that cannot answer: unheard, it is seen as lost instead.
    return this.call('POST', `/workers/${encodeURIComponent(workerId)}/stopped`, {}, { timeoutMs: 5000 });
  }

  heartbeat(workerId: string, req: HeartbeatRequest): Promise<HeartbeatReply> {
    return this.call('POST', `/workers/${encodeURIComponent(workerId)}/heartbeat`, req);
  }

  /** Held by the server until an attempt named must stop, or for `waitS`. */
  control(workerId: string, req: ControlRequest, signal?: AbortSignal): Promise<ControlReply> {
    return this.call('POST', `/workers/${encodeURIComponent(workerId)}/control`, req, {
      timeoutMs: this.timeoutMs + req.waitS * 1000,
      signal,
    });
  }

  /** Output of running attempts, as it is written (see LogChunk). */
  logChunks(workerId: string, req: LogChunksRequest): Promise<LogChunksReply> {
    return this.call('POST', `/workers/${encodeURIComponent(workerId)}/logs`, req, { timeoutMs: 60_000 });
  }

  result(workerId: string, req: ResultRequest): Promise<ResultReply> {
    return this.call('POST', `/workers/${encodeURIComponent(workerId)}/results`, req, { timeoutMs: 120_000 });
  }
}

function toClientError(err: unknown, url: string): ApiError {
  if (err instanceof ApiError) return err;
  const e = err as { code?: string; message?: string; cause?: unknown; name?: string };
  if (e?.cause instanceof ApiError) return e.cause;
  if (e?.code === 'UND_ERR_HEADERS_TIMEOUT' || e?.code === 'UND_ERR_BODY_TIMEOUT' || e?.code === 'TIMEOUT') {
    return new ApiError('TIMEOUT', `${url} did not answer in time`);
  }
  if (e?.name === 'AbortError') return new ApiError('ABORTED', 'request aborted');
  const detail = e?.code ?? e?.message ?? String(err);
  return new ApiError('UNREACHABLE', `cannot reach ${url} (${detail})`);
}
