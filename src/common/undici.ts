/**
 * The two parts of undici cpc uses, `Agent` and `request`, read from
 * undici's own files when first used.
 *
 * undici's index loads all of undici (fetch, WebSocket, caches, mocks,
 * proxies: 110 files, most of a short command's start-up); these two need a
 * quarter of that. And they are loaded at the first Agent made, not on
 * import: every cpcc command imports the API client, few send anything
 * before they have checked their arguments, and `cpcc pwd` sends nothing.
 *
 * Both behave as undici's own: `request(url, opts)` is undici's top-level
 * request (the URL split into origin and path, the method defaulting as
 * there), `new Agent(opts)` is an undici Agent.
 */
import { createRequire } from 'node:module';
import type * as Undici from 'undici';

type RequestOptions = { dispatcher?: Undici.Dispatcher } & Omit<Undici.Dispatcher.RequestOptions, 'origin' | 'path' | 'method'> &
  Partial<Pick<Undici.Dispatcher.RequestOptions, 'method'>>;

interface Parts {
  Agent: typeof Undici.Agent;
  /** undici's api-request: called with the dispatcher as `this`. */
  request: (this: Undici.Dispatcher, opts: Undici.Dispatcher.RequestOptions) => Promise<Undici.Dispatcher.ResponseData>;
  getGlobalDispatcher: () => Undici.Dispatcher;
}

const requireHere = createRequire(import.meta.url);
let parts: Parts | undefined;
let baselineWasm = false;

/**
 * For processes that send a few requests and exit (cpcc). undici parses HTTP
 * with llhttp compiled to WebAssembly; V8 compiles it at once with its
 * baseline compiler and then again, optimised, on background threads, and
 * Node waits for those threads before a process may exit: about 70 ms at the
 * end of every command that sent a request, for code a short command never
 * runs hot. Called before the first request, this keeps the baseline code only.
 * Servers and workers keep the optimised parser.
 */
export function preferQuickExit(): void {
  baselineWasm = true;
}

function load(): Parts {
  if (parts === undefined && baselineWasm) (requireHere('node:v8') as typeof import('node:v8')).setFlagsFromString('--liftoff-only');
  parts ??= {
    Agent: requireHere('undici/lib/dispatcher/agent.js') as Parts['Agent'],
    request: requireHere('undici/lib/api/api-request.js') as Parts['request'],
    getGlobalDispatcher: (requireHere('undici/lib/global.js') as { getGlobalDispatcher: Parts['getGlobalDispatcher'] }).getGlobalDispatcher,
  };
  return parts;
}

export type Agent = Undici.Agent;

/** `new Agent(opts)`: an undici Agent (a constructor returning an object makes `new` yield it). */
export const Agent = function Agent(opts?: Undici.Agent.Options): Undici.Agent {
  return new (load().Agent)(opts);
} as unknown as typeof Undici.Agent;

export function request(url: string | URL, opts: RequestOptions = {}): Promise<Undici.Dispatcher.ResponseData> {
  const { dispatcher, ...rest } = opts;
  const { request: send, getGlobalDispatcher } = load();
  const u = typeof url === 'string' ? new URL(url) : url;
  return send.call(dispatcher ?? getGlobalDispatcher(), {
    ...rest,
    origin: u.origin,
    path: u.search ? `${u.pathname}${u.search}` : u.pathname,
    method: opts.method ?? (opts.body ? 'PUT' : 'GET'),
  });
}
