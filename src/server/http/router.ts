/**
 * server/http: the HTTP framework every subsystem's routes run on.
 * Owns the router and its one error shape (router.ts), the access rules (auth-rules.ts names them
 * and what each grants; auth.ts decides them and is handed to the router as a function), request ids
 * and the logger, and the building blocks of request schemas (schemas.ts) with the few shapes
 * several subsystems share; each subsystem keeps its own schemas, views and quick checks.
 * May call: src/core, src/federation (peer certificates), the accounts' tokens and the jobs' store
 * (auth.ts, to find the project or job a rule names). Writes no events.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { CpcError, fail } from '../../core/errors.js';
import type { AuthRule, Granted } from './auth-rules.js';
import type { Logger } from '../../common/logger.js';
import { check, NO_BODY, NO_QUERY, PATH_PARAMS } from './schemas.js';

/**
 * The one HTTP wrapper. Every route is declared with the rule that says who
 * may call it and the schemas of its path, query and body, so that nothing
 * reaches a handler unchecked:
 *
 *   route match → who is asking, and may they (before a byte of the body is
 *   read) → body (size limit, JSON) → params, query and body against their
 *   schemas → handler.
 *
 * Handlers return a value (sent as JSON) or a `Reply`, or throw. CpcErrors
 * become their status and `{error:{code,message}}`; anything else is a 500
 * that is logged loudly and says nothing about the inside.
 */

export type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE';

export interface BaseRequest<P = Record<string, string>, Q = Record<string, unknown>, B = unknown> {
  method: string;
  path: string;
  params: P;
  query: Q;
  headers: IncomingMessage['headers'];
  body: B;
  raw: IncomingMessage;
  /** Aborted when the client goes away (long-polls stop waiting). Made on first use. */
  readonly signal: AbortSignal;
  /** Has the client gone away? Cheaper than `signal` for a single look. */
  gone(): boolean;
}

/** What a handler is given: the checked request and what its rule granted (who, and the project or job). */
export type Request<A extends AuthRule = AuthRule, P = Record<string, string>, Q = Record<string, unknown>, B = unknown> = BaseRequest<P, Q, B> &
  Granted[A];

export class Reply {
  constructor(
    readonly status: number,
    readonly body: string | Buffer,
    readonly contentType: string,
    /** More response headers (lower case). */
    readonly headers: Record<string, string> = {},
  ) {}

  /** Bytes streamed from `stream`, `size` of them, never held whole in memory. */
  static stream(stream: Readable, size: number, headers: Record<string, string> = {}): StreamReply {
    return new StreamReply(stream, size, headers);
  }

  static text(body: string, status = 200, headers: Record<string, string> = {}): Reply {
    return new Reply(status, body, 'text/plain; charset=utf-8', headers);
  }

  static json(value: unknown, status = 200): Reply {
    return new Reply(status, JSON.stringify(value), 'application/json');
  }
}

/** A reply whose body is a stream of bytes (file downloads). */
export class StreamReply {
  readonly status = 200;
  constructor(
    readonly stream: Readable,
    readonly size: number,
    readonly headers: Record<string, string>,
  ) {}
}

export interface RouteSpec<A extends AuthRule, P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType> {
  /** Who may call the route; checked before the body is read. */
  auth: A;
  /** One line for the API description. */
  summary: string;
  /** Path parameters; each is a string before the schema sees it. */
  params?: P;
  /** Query parameters; without a schema, none are accepted. */
  query?: Q;
  /** The JSON body; without a schema, none (or `{}`) is accepted. */
  body?: B;
  /** The reply is text/plain instead of JSON. */
  text?: boolean;
  /**
   * The body is bytes (application/octet-stream) that the handler streams
   * from `req.raw` itself; the body limit does not apply, the handler's own does.
   */
  upload?: boolean;
  /**
   * The JSON body may be as large as `maxBodyBytes` (submissions, claims,
   * results, heartbeats, values); other routes take at most SMALL_BODY_BYTES,
   * so that no caller, signed in or not, makes the server hold a large body
   * where a small one is all the route can use.
   */
  bulk?: boolean;
  /** The reply is bytes (a StreamReply), not JSON. */
  download?: boolean;
  /** For the hot worker routes: predicates that pass ordinary valid input without the schemas (jobs/quick-checks.ts). */
  quick?: { params?: QuickCheck; body?: QuickCheck };
}

/**
 * A predicate that says yes only to input its route's schema accepts
 * unchanged; for anything else the schema decides.
 */
export type QuickCheck = (value: unknown) => boolean;

export type Handler<A extends AuthRule, P, Q, B> = (req: Request<A, P, Q, B>) => unknown;

/** A route as the wrapper, the API description and the tests see it. */
export interface Route {
  method: Method;
  pattern: string;
  auth: AuthRule;
  summary: string;
  params: z.ZodType;
  query: z.ZodType;
  body: z.ZodType;
  text: boolean;
  upload: boolean;
  bulk: boolean;
  download: boolean;
  quick: { params?: QuickCheck; body?: QuickCheck };
  parts: string[];
  handler: (req: Request) => unknown;
}

export class Router {
  private readonly table: Route[] = [];
  /** The table by method and number of path segments, in table order, so a match looks at a few routes only. */
  private index: Map<string, Route[]> | null = null;

  /**
   * Adds a route. The rule is not optional: a route nobody decided the
   * access to cannot be written down.
   */
  add<A extends AuthRule, P extends z.ZodType = typeof PATH_PARAMS, Q extends z.ZodType = typeof NO_QUERY, B extends z.ZodType = typeof NO_BODY>(
    method: Method,
    pattern: string,
    spec: RouteSpec<A, P, Q, B>,
    handler: Handler<A, z.output<P>, z.output<Q>, z.output<B>>,
  ): this {
    if (this.table.some((r) => r.method === method && r.pattern === pattern)) throw new Error(`route ${method} ${pattern} added twice`);
    this.table.push({
      method,
      pattern,
      auth: spec.auth,
      summary: spec.summary,
      params: spec.params ?? PATH_PARAMS,
      query: spec.query ?? NO_QUERY,
      body: spec.body ?? NO_BODY,
      text: spec.text ?? false,
      upload: spec.upload ?? false,
      bulk: spec.bulk ?? false,
      download: spec.download ?? false,
      quick: spec.quick ?? {},
      parts: pattern.split('/').filter(Boolean),
      handler: handler as (req: Request) => unknown,
    });
    this.index = null;
    return this;
  }

  /** Every route, in the order added. */
  routes(): readonly Route[] {
    return this.table;
  }

  /** The route for a method and path; throws ROUTE_NOT_FOUND or METHOD_NOT_ALLOWED. */
  match(method: string, path: string): { route: Route; params: Record<string, string> } {
    const parts = path.split('/').filter(Boolean);
    for (const route of this.candidates(method, parts.length)) {
      const params = matchParts(route.parts, parts);
      if (params) return { route, params };
    }
    // No route of this method: tell a wrong method from a wrong path.
    let pathMatched = false;
    for (const route of this.table) {
      const params = matchParts(route.parts, parts);
      if (!params) continue;
      pathMatched = true;
      if (route.method === method) return { route, params };
    }
    if (pathMatched) throw fail('METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}`);
    throw fail('ROUTE_NOT_FOUND', `no route ${method} ${path}`);
  }

  private candidates(method: string, segments: number): readonly Route[] {
    if (!this.index) {
      this.index = new Map();
      for (const route of this.table) {
        const key = `${route.method} ${route.parts.length}`;
        const list = this.index.get(key);
        if (list) list.push(route);
        else this.index.set(key, [route]);
      }
    }
    return this.index.get(`${method} ${segments}`) ?? [];
  }
}

function matchParts(pattern: string[], parts: string[]): Record<string, string> | null {
  if (pattern.length !== parts.length) return null;
  const params: Record<string, string> = Object.create(null) as Record<string, string>;
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    if (p.startsWith(':')) {
      let value: string;
      try {
        value = decodeURIComponent(parts[i]!);
      } catch {
        return null;
      }
      params[p.slice(1)] = value;
    } else if (p !== parts[i]) {
      return null;
    }
  }
  return params;
}

/** What the rule of a route needs to know about a request, before its body is read. */
export interface Credentials {
  authorization: string | undefined;
  socket: Socket;
  params: Record<string, string>;
}

export type Authorize = <A extends AuthRule>(rule: A, creds: Credentials) => Granted[A] | Promise<Granted[A]>;

/** For listeners that serve only anonymous routes (the unsecure port). */
export const anonymousOnly: Authorize = (rule) => {
  if (rule !== 'anonymous') throw fail('UNAUTHENTICATED', 'this listener serves no authenticated routes');
  return { who: null } as Granted[typeof rule];
};

/** The body limit of routes that are not `bulk`: the largest of their bodies is a few hundred KiB (10 000 job ids). */
export const SMALL_BODY_BYTES = 1024 * 1024;

export interface HttpOptions {
  router: Router;
  prefix: string;
  maxBodyBytes: number;
  log: Logger;
  /** Decides who is asking and whether the route's rule lets them in (auth.ts). */
  authorize: Authorize;
  /** While true, new requests get SHUTTING_DOWN. */
  closing: () => boolean;
  /** Documents served as they are to anyone on GET, by exact path (the API description). */
  documents?: Record<string, () => Reply>;
  /**
   * Serves what is not under the API prefix (pages, metrics); returns false
   * for a path it does not serve, which then gets ROUTE_NOT_FOUND.
   */
  outside?: (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>;
  /** Told of every API request once answered (metrics). `route` is the matched pattern, or null. */
  observe?: (method: string, route: string | null, status: number, ms: number) => void;
}

export function makeRequestListener(opts: HttpOptions) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    void handle(opts, req, res);
  };
}

/** Marks a request whose body was read to its end, so the connection may be kept. */
const bodyDone = new WeakSet<IncomingMessage>();

async function handle(opts: HttpOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const started = performance.now();
  const method = req.method ?? 'GET';
  let path = '/';
  let status = 500;
  let route: string | null = null;
  try {
    const target = splitTarget(req.url ?? '/');
    path = target.path;
    if (opts.closing()) throw fail('SHUTTING_DOWN', 'the server is shutting down');
    const document = (method === 'GET' || method === 'HEAD') && opts.documents && Object.hasOwn(opts.documents, path) ? opts.documents[path] : undefined;
    if (document) {
      status = send(req, res, document());
      return;
    }
    if (!path.startsWith(opts.prefix + '/') && path !== opts.prefix) {
      if (opts.outside && (await opts.outside(req, res))) return;
      throw fail('ROUTE_NOT_FOUND', `no route ${method} ${path}`);
    }
    const match = opts.router.match(method, path.slice(opts.prefix.length));
    const r = match.route;
    route = r.pattern;
    // Who is asking is settled before the body is read: a caller the route
    // refuses cannot make the server buffer anything.
    const creds: Credentials = { authorization: req.headers.authorization, socket: req.socket, params: match.params };
    // `await` only what is a promise: each await costs a turn of the microtask queue.
    let granted = opts.authorize(r.auth, creds);
    if (granted instanceof Promise) granted = await granted;
    const raw = r.upload ? undefined : await readBody(req, r.bulk ? opts.maxBodyBytes : Math.min(opts.maxBodyBytes, SMALL_BODY_BYTES));
    // Reading a body takes time, in which the token may have been revoked or
    // the project removed: the handler gets what holds now.
    if (raw !== undefined && r.auth !== 'anonymous') {
      granted = opts.authorize(r.auth, creds);
      if (granted instanceof Promise) granted = await granted;
    }
    const params = r.quick.params?.(match.params) ? match.params : check(r.params, match.params, 'path');
    const q = target.query === null && r.query === NO_QUERY ? {} : check(r.query, queryObject(target.query ?? new URLSearchParams()), 'query');
    const body = r.quick.body?.(raw) ? raw : check(r.body, raw, 'body');
    const out = await r.handler(Object.assign(requestOf(req, res, method, path, params, q, body), granted) as Request);
    if (r.upload && req.complete) bodyDone.add(req);
    status = out instanceof StreamReply ? sendStream(req, res, out, opts.log) : send(req, res, out instanceof Reply ? out : Reply.json(out ?? {}));
  } catch (caught) {
    const err = noRoom(caught) ? fail('DISK_FULL', "the server's disk is full; try again when there is room", { retryAfterS: 5 }) : caught;
    const e = err instanceof CpcError ? err : null;
    if (!e) opts.log.error('request failed', { method, path, err: errorText(err) });
    const code = e?.code ?? 'INTERNAL';
    const message = e?.message ?? 'internal error; see the server log';
    const details = e?.details ?? {};
    const reply = Reply.json({ error: { ...details, code, message } }, e?.status ?? 500);
    status = send(req, res, reply, typeof details.retryAfterS === 'number' ? { 'retry-after': String(details.retryAfterS) } : {});
    if (e && status < 500) opts.log.debug('request refused', { method, path, code });
  }
  const ms = performance.now() - started;
  opts.observe?.(method, route, status, ms);
  opts.log.trace?.('request', { method, path, status, ms: +ms.toFixed(2) });
}

/** A write that found no room on the disk (a file upload, a log, a user file): the server's state, not a bug. */
function noRoom(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** Paths made only of these need no normalising: no dots, escapes or empty segments. */
const PLAIN_PATH = /^(?:\/[\w\-:@~+=,]+)*\/?$/;

/**
 * The path and query of a request target. Plain paths (every API call a
 * client makes) are split as they are; anything else goes through URL, which
 * normalises dot segments and escapes.
 */
function splitTarget(url: string): { path: string; query: URLSearchParams | null } {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  if (PLAIN_PATH.test(path) && (q < 0 || !url.includes('#', q))) {
    return { path, query: q < 0 || q === url.length - 1 ? null : new URLSearchParams(url.slice(q + 1)) };
  }
  let parsed: URL;
  try {
    parsed = new URL(url, 'http://x');
  } catch {
    throw fail('BAD_REQUEST', 'the request target is not a valid path');
  }
  return { path: parsed.pathname, query: parsed.searchParams.size === 0 ? null : parsed.searchParams };
}

/**
 * The request as handlers see it. The abort signal is made only when a
 * handler asks for it (long-polls): most requests never wait, and an
 * AbortController with its listener per request showed in the dispatch profile.
 */
function requestOf(req: IncomingMessage, res: ServerResponse, method: string, path: string, params: unknown, query: unknown, body: unknown): BaseRequest<unknown, unknown, unknown> {
  let controller: AbortController | undefined;
  const gone = (): boolean => !res.writableFinished && (res.destroyed || req.socket.destroyed);
  return {
    method,
    path,
    params,
    query,
    headers: req.headers,
    body,
    raw: req,
    gone,
    get signal(): AbortSignal {
      if (!controller) {
        const c = (controller = new AbortController());
        if (gone()) c.abort();
        else
          res.once('close', () => {
            if (!res.writableFinished) c.abort();
          });
      }
      return controller.signal;
    },
  };
}

function send(req: IncomingMessage, res: ServerResponse, reply: Reply, extra: Record<string, string> = {}): number {
  if (res.headersSent || res.destroyed) return reply.status;
  const headers: Record<string, string | number> = {
    'content-type': reply.contentType,
    'content-length': Buffer.byteLength(reply.body),
    'cache-control': 'no-store',
    ...reply.headers,
    ...extra,
  };
  // A body left unread (refused before or while reading it) is not drained:
  // the connection is closed once the reply is out.
  if (hasBody(req) && !bodyDone.has(req)) headers.connection = 'close';
  res.writeHead(reply.status, headers);
  res.end(req.method === 'HEAD' ? undefined : reply.body);
  return reply.status;
}

function sendStream(req: IncomingMessage, res: ServerResponse, reply: StreamReply, log: Logger): number {
  if (res.headersSent || res.destroyed) {
    reply.stream.destroy();
    return reply.status;
  }
  res.writeHead(reply.status, {
    'content-type': 'application/octet-stream',
    'content-length': reply.size,
    'cache-control': 'no-store',
    ...reply.headers,
  });
  if (req.method === 'HEAD') {
    reply.stream.destroy();
    res.end();
    return reply.status;
  }
  // Past the headers an error can only cut the connection: the receiver
  // sees fewer bytes than announced, and its checksum fails.
  pipeline(reply.stream, res).catch((err: unknown) => {
    if (!res.destroyed) log.warn('download cut off', { path: req.url, err: errorText(err) });
    res.destroy();
  });
  return reply.status;
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
}

/** Reads and parses a JSON body, refusing it past `limit` bytes without reading the rest. */
async function readBody(req: IncomingMessage, limit: number): Promise<unknown> {
  if (!hasBody(req)) {
    bodyDone.add(req);
    return undefined;
  }
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw fail('BODY_TOO_LARGE', `request body of ${declared} bytes is over the limit of ${limit}`);
  const type = String(req.headers['content-type'] ?? '');
  // Listeners rather than an async iterator: leaving an iterator early
  // destroys the socket, and the client would never hear why.
  const chunks: Buffer[] = [];
  let size = 0;
  await new Promise<void>((resolve, reject) => {
    const done = (err?: unknown): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
      if (err) {
        req.pause();
        reject(err);
      } else resolve();
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) done(fail('BODY_TOO_LARGE', `request body is over the limit of ${limit} bytes`));
      else chunks.push(chunk);
    };
    const onEnd = (): void => done();
    const onError = (err: unknown): void => done(err);
    const onAborted = (): void => done(fail('BAD_REQUEST', 'the client went away while sending the body'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
  bodyDone.add(req);
  if (size === 0) return undefined;
  if (!/^application\/json\b/i.test(type)) {
    throw fail('UNSUPPORTED_MEDIA_TYPE', `request body must be application/json, not '${type.slice(0, 100) || 'unspecified'}'`);
  }
  try {
    return JSON.parse(Buffer.concat(chunks, size).toString('utf8'));
  } catch {
    throw fail('INVALID_JSON', 'request body is not valid JSON');
  }
}

export function queryObject(q: URLSearchParams): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
  for (const [k, v] of q) {
    const had = out[k];
    // A repeated parameter stays visible as such, so that the schema refuses it.
    out[k] = had === undefined ? v : Array.isArray(had) ? [...had, v] : [had, v];
  }
  return out;
}

export function errorText(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}

// ---- limits of the listener itself ---------------------------------------------

export interface EdgeLimits {
  headersTimeoutS: number;
  requestTimeoutS: number;
  maxHeaderBytes: number;
}

/**
 * Options for `http(s).createServer` that cut off slow clients: all headers
 * within `headersTimeoutS`, the whole request within `requestTimeoutS` (the
 * time a handler takes to answer, such as a long-poll, does not count).
 * Node checks these periodically; the period follows the shortest limit.
 */
export function edgeServerOptions(limits: EdgeLimits) {
  const shortest = Math.min(limits.headersTimeoutS, limits.requestTimeoutS) * 1000;
  return {
    headersTimeout: limits.headersTimeoutS * 1000,
    // Node wants the request timeout no shorter than the headers timeout.
    requestTimeout: Math.max(limits.requestTimeoutS, limits.headersTimeoutS) * 1000,
    maxHeaderSize: limits.maxHeaderBytes,
    connectionsCheckingInterval: Math.round(Math.min(5000, Math.max(50, shortest / 4))),
  };
}

interface InFlight {
  req: IncomingMessage;
  res: ServerResponse;
}

/**
 * Answers what Node refuses before a request reaches the listener (too slow,
 * headers too large, not HTTP) with the same `{error:{code,message}}` as
 * every other refusal, each limit with its own code, then closes the
 * connection.
 */
export function guardServer(server: Server, log: Logger): void {
  const current = new WeakMap<Socket, InFlight>();
  server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => current.set(req.socket, { req, res }));
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const inFlight = current.get(socket);
    let code: 'HEADERS_TIMEOUT' | 'REQUEST_TIMEOUT' | 'HEADERS_TOO_LARGE' | 'BAD_REQUEST';
    let message: string;
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      // Headers that arrived in time made a request; the body did not follow in time.
      const bodyLate = inFlight !== undefined && !inFlight.req.complete && !inFlight.res.writableEnded;
      code = bodyLate ? 'REQUEST_TIMEOUT' : 'HEADERS_TIMEOUT';
      message = bodyLate ? 'the request was not sent in time' : 'the request headers were not sent in time';
    } else if (err.code === 'HPE_HEADER_OVERFLOW') {
      code = 'HEADERS_TOO_LARGE';
      message = 'the request headers are over the size limit';
    } else {
      code = 'BAD_REQUEST';
      message = 'the request is not valid HTTP';
    }
    log.debug('connection refused', { code, reason: err.code });
    const answered = inFlight?.res.headersSent === true;
    if (socket.writable && !answered && err.code !== 'ECONNRESET') {
      const body = JSON.stringify({ error: { code, message } });
      const status = code === 'HEADERS_TOO_LARGE' ? 431 : code === 'BAD_REQUEST' ? 400 : 408;
      socket.end(
        `HTTP/1.1 ${status} ${code}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\ncache-control: no-store\r\n\r\n${body}`,
      );
      // A client that stops reading must not keep the socket.
      setTimeout(() => socket.destroy(), 1000).unref();
    } else {
      socket.destroy();
    }
  });
}
