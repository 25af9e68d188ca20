import type { IncomingMessage, ServerResponse } from 'node:http';
import { CpcError, fail } from '../core/errors.js';
import type { Logger } from './logger.js';

/**
 * The one HTTP wrapper: handlers get a parsed request and return a value (sent
 * as JSON) or a `Reply`, or throw. CpcErrors become their status and
 * `{error:{code,message}}`; anything else is a 500 that is logged loudly and
 * says nothing about the inside.
 */

export interface Request<P extends Record<string, string> = Record<string, string>> {
  method: string;
  path: string;
  params: P;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  body: unknown;
  raw: IncomingMessage;
  /** Aborted when the client goes away (long-polls stop waiting). */
  signal: AbortSignal;
}

export class Reply {
  constructor(
    readonly status: number,
    readonly body: string | Buffer,
    readonly contentType: string,
  ) {}

  static text(body: string, status = 200): Reply {
    return new Reply(status, body, 'text/plain; charset=utf-8');
  }
}

export type Handler = (req: Request) => unknown;

interface Route {
  method: string;
  pattern: string;
  parts: string[];
  handler: Handler;
}

export class Router {
  private readonly routes: Route[] = [];

  add(method: string, pattern: string, handler: Handler): this {
    this.routes.push({ method, pattern, parts: pattern.split('/').filter(Boolean), handler });
    return this;
  }

  /** The route for a method and path; throws ROUTE_NOT_FOUND or METHOD_NOT_ALLOWED. */
  match(method: string, path: string): { handler: Handler; params: Record<string, string>; pattern: string } {
    const parts = path.split('/').filter(Boolean);
    let pathMatched = false;
    for (const route of this.routes) {
      const params = matchParts(route.parts, parts);
      if (!params) continue;
      pathMatched = true;
      if (route.method === method) return { handler: route.handler, params, pattern: route.pattern };
    }
    if (pathMatched) throw fail('METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}`);
    throw fail('ROUTE_NOT_FOUND', `no route ${method} ${path}`);
  }
}

function matchParts(pattern: string[], parts: string[]): Record<string, string> | null {
  if (pattern.length !== parts.length) return null;
  const params: Record<string, string> = {};
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

export interface HttpOptions {
  router: Router;
  prefix: string;
  maxBodyBytes: number;
  log: Logger;
  /** While true, new requests get SHUTTING_DOWN. */
  closing: () => boolean;
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

async function handle(opts: HttpOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const started = performance.now();
  const method = req.method ?? 'GET';
  const url = new URL(req.url ?? '/', 'http://x');
  const controller = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  let status = 500;
  let route: string | null = null;
  try {
    if (opts.closing()) throw fail('SHUTTING_DOWN', 'the server is shutting down');
    if (!url.pathname.startsWith(opts.prefix + '/') && url.pathname !== opts.prefix) {
      if (opts.outside && (await opts.outside(req, res))) return;
      throw fail('ROUTE_NOT_FOUND', `no route ${method} ${url.pathname}`);
    }
    const { handler, params, pattern } = opts.router.match(method, url.pathname.slice(opts.prefix.length));
    route = pattern;
    const body = await readBody(req, opts.maxBodyBytes);
    const out = await handler({
      method,
      path: url.pathname,
      params,
      query: url.searchParams,
      headers: req.headers,
      body,
      raw: req,
      signal: controller.signal,
    });
    status = send(res, out instanceof Reply ? out : new Reply(200, JSON.stringify(out ?? {}), 'application/json'));
  } catch (err) {
    const e = err instanceof CpcError ? err : null;
    if (!e) opts.log.error('request failed', { method, path: url.pathname, err: errorText(err) });
    const code = e?.code ?? 'INTERNAL';
    const message = e?.message ?? 'internal error; see the server log';
    status = send(res, new Reply(e?.status ?? 500, JSON.stringify({ error: { code, message } }), 'application/json'));
    if (e && status < 500) opts.log.debug('request refused', { method, path: url.pathname, code });
  }
  const ms = performance.now() - started;
  opts.observe?.(method, route, status, ms);
  opts.log.trace?.('request', { method, path: url.pathname, status, ms: +ms.toFixed(2) });
}

function send(res: ServerResponse, reply: Reply): number {
  if (res.headersSent || res.destroyed) return reply.status;
  res.writeHead(reply.status, {
    'content-type': reply.contentType,
    'content-length': Buffer.byteLength(reply.body),
    'cache-control': 'no-store',
  });
  res.end(reply.body);
  return reply.status;
}

/** Reads and parses a JSON body, refusing it past `limit` bytes without reading the rest. */
async function readBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) {
    req.resume();
    throw fail('BODY_TOO_LARGE', `request body of ${declared} bytes is over the limit of ${limit}`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      req.resume();
      throw fail('BODY_TOO_LARGE', `request body is over the limit of ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  if (size === 0) return undefined;
  const type = String(req.headers['content-type'] ?? '');
  if (!/^application\/json\b/i.test(type)) {
    throw fail('UNSUPPORTED_MEDIA_TYPE', `request body must be application/json, not '${type || 'unspecified'}'`);
  }
  try {
    return JSON.parse(Buffer.concat(chunks, size).toString('utf8'));
  } catch {
    throw fail('INVALID_JSON', 'request body is not valid JSON');
  }
}

export function errorText(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}
