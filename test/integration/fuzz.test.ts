/**
 * Property tests of the edge: for every endpoint of both listeners, at least
 * 1 000 generated bad requests (bodies that do not fit the route's schema,
 * bodies that are not JSON or not declared as JSON, query strings that do not
 * fit, path values that do not fit), each sent by a caller the route lets in,
 * so that it reaches the checks. Every one must get a 4xx with an error code;
 * afterwards the server still answers, and nothing changed: not the model,
 * not the journal, not the users, tokens or peers.
 *
 * One server for the whole file; requests go out 32 at a time.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { Agent, request } from 'undici';
import type { z } from 'zod';
import { API_PREFIX } from '../../src/core/wire.js';
import { apiRouter } from '../../src/server/start/api.js';
import type { Route } from '../../src/server/http/router.js';
import { unsecureRoutes } from '../../src/server/federation/unsecure.js';
import { cleanup, startTestServer, type SimWorker, type TestServer } from '../helpers/server.js';

const PER_ENDPOINT = Number(process.env.FUZZ_PER_ENDPOINT ?? 1000);
const BATCH = 50;
const PARALLEL = 32;

let ts: TestServer;
let agent: Agent;
let worker: SimWorker;
const sample: Record<string, string> = {};

/** Everything a request could have changed. */
function fingerprint(): string {
  const m = ts.server.model;
  const ctx = ts.server.ctx;
  return JSON.stringify({
    projects: [...m.projects.values()].map((p) => [p.name, p.owner, p.members]),
    jobs: [...m.jobs.values()].map((j) => [j.id, j.state, j.updatedAt, j.attempts.length]),
    leases: [...m.leases.all()].map((l) => [l.jobId, l.attempt, l.deadline]),
    workers: [...m.workers.keys()],
    ready: m.ready.size,
    journal: ctx.store.journalStats().records,
    users: ctx.accounts.users().map((u) => [u.name, u.hash, u.superuser]),
    workerTokens: ctx.accounts.workerTokens().map((t) => [t.id, t.revoked]),
    peers: [ctx.trust.peers().length, ctx.trust.sentRequests().length, ctx.trust.receivedRequests().length],
  });
}

interface Bad {
  path?: string;
  query?: string;
  body?: string;
  contentType?: string;
}

/** JSON-shaped values, with the keys and values most likely to trip a parser or a schema. */
const nasty = fc.oneof(
  fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', '', ' ', '\u0000', '../../etc/passwd', '%00', '💥', 'a'.repeat(300)),
  fc.string({ maxLength: 20 }),
);
const jsonish: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom(null, true, false, 0, -1, 1e308, -1e308, 0.5, 2 ** 53, -(2 ** 31)),
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    nasty,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(nasty, tie('value'), { maxKeys: 5 }),
  ),
})).value;

/** A valid body with one field broken, so that the checks past the first layer are reached too. */
function mutations(valid: Record<string, unknown>): fc.Arbitrary<unknown> {
  const keys = Object.keys(valid);
  return fc.oneof(
    fc.record({ key: fc.constantFrom(...keys), value: jsonish }).map(({ key, value }) => ({ ...valid, [key]: value })),
    fc.constantFrom(...keys).map((key) => {
      const copy = { ...valid };
      delete copy[key];
      return copy;
    }),
    // An extra key, written into the JSON text so that keys like __proto__ arrive as they are.
    fc.record({ key: nasty, value: jsonish }).map(({ key, value }) => JSON.parse(`{${JSON.stringify(key)}:${JSON.stringify(value)},${JSON.stringify(valid).slice(1)}`) as unknown),
  );
}

/** Valid bodies of the routes that take one: mutated, they reach deep checks. */
function validBody(route: Route): Record<string, unknown> | null {
  const key = `${route.method} ${route.pattern}`;
  const bodies: Record<string, Record<string, unknown>> = {
    'POST /login': { user: 'cpc-admin', password: 'x' },
    'POST /projects': { name: 'fuzzed' },
    'POST /projects/:project/jobs': { jobs: [{ argv: ['true'], cores: 1, env: { A: 'b' }, after: [] }] },
    'POST /projects/:project/members': { user: 'cpc-admin' },
    'POST /users': { name: 'fuzzed', password: 'long-enough', superuser: false },
    'PUT /users/:name/password': { password: 'long-enough' },
    'PUT /me/password': { current: 'x', password: 'long-enough' },
    'POST /jobs/cancel': { ids: [sample.job] },
    'POST /jobs/retry': { ids: [sample.job] },
    'POST /workers': { name: 'w', host: 'h', cores: 1, memoryMb: 1 },
    'POST /workers/:id/claim': { waitS: 0, max: 1 },
    'POST /workers/:id/heartbeat': { attempts: [{ jobId: sample.job, attempt: 1 }] },
    'POST /workers/:id/results': {
      jobId: sample.job,
      attempt: 1,
      how: 'exited',
      exitCode: 0,
      signal: null,
      durationMs: 1,
      stdout: '',
      stderr: '',
      stdoutBytes: 0,
      stderrBytes: 0,
    },
    'POST /worker-tokens': { name: 'fuzzed' },
    'POST /peers/ca': { host: '127.0.0.1', port: 1 },
    'POST /peers/connect': { host: '127.0.0.1', port: 1, caFingerprint: 'AB'.repeat(32) },
    'POST /peers/trust-all': { expect: [] },
    'POST /peers/:id/trust': { caFingerprint: 'AB' },
    'PUT /peers/:id/priority': { priority: 0 },
    'PUT /users/:name/weight': { weight: 2 },
    'PUT /projects/:project/weight': { weight: 2 },
  };
  return bodies[key] ?? null;
}

/** Would this body get through the route's own check? Such a sample is not a bad request. */
function passes(schema: z.ZodType, text: string | undefined): boolean {
  if (text === undefined || text === '') return schema.safeParse(undefined).success;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return false;
  }
  return schema.safeParse(value).success;
}

function badRequests(route: Route): fc.Arbitrary<Bad> {
  const hasBody = route.method === 'POST' || route.method === 'PUT' || route.method === 'DELETE';
  const queryPair = fc.tuple(fc.oneof(nasty, fc.constantFrom('limit', 'state', 'after', 'stream', 'attempt', 'archived')), fc.oneof(nasty, fc.integer().map(String)));
  const badQuery = fc
    .array(queryPair, { minLength: 1, maxLength: 4 })
    .map((pairs) => new URLSearchParams(pairs).toString())
    .filter((q) => {
      // Built as the server builds it (http.ts queryObject): repeated keys become arrays.
      const obj = Object.create(null) as Record<string, string | string[]>;
      for (const [k, v] of new URLSearchParams(q)) obj[k] = obj[k] === undefined ? v : ([] as string[]).concat(obj[k]!, v);
      return q !== '' && !route.query.safeParse(obj).success;
    })
    .map((query): Bad => ({ query }));
  const options: fc.Arbitrary<Bad>[] = [badQuery];
  if (hasBody) {
    const valid = validBody(route);
    const bodies = valid ? fc.oneof(jsonish, mutations(valid), mutations(valid)) : jsonish;
    options.push(
      bodies.map((v): Bad => ({ body: JSON.stringify(v) ?? 'null' })).filter((b) => !passes(route.body, b.body)),
      // Not JSON, or not said to be.
      fc.string({ minLength: 1, maxLength: 200 }).filter((s) => !passes(route.body, s)).map((body): Bad => ({ body })),
      fc.record({ body: fc.constant('{"a":1}'), contentType: fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data', '') }),
    );
  }
  const pathNames = route.parts.filter((p) => p.startsWith(':'));
  if (pathNames.length > 0) {
    const badPath = fc.constantFrom(...pathNames).chain((name) =>
      fc
        .oneof(nasty.filter((s) => s.length > 0), fc.constant('x'.repeat(2000)))
        .map((value): Bad => ({ path: pathFor(route, { [name.slice(1)]: value }) }))
        .filter((b) => !route.params.safeParse(paramsOf(route, b.path!)).success),
    );
    options.push(badPath);
  }
  return fc.oneof(...options);
}

/** Path values for one route only: a load into the fuzzed project would stop at PROJECT_EXISTS, before its body is read. */
const ROUTE_SAMPLES: Record<string, Record<string, string>> = {
  'POST /projects/:project/import': { project: 'fuzz-loaded' },
};

function pathFor(route: Route, override: Record<string, string> = {}): string {
  const own = ROUTE_SAMPLES[`${route.method} ${route.pattern}`] ?? {};
  return (
    '/' +
    route.parts
      .map((part, i) => {
        if (!part.startsWith(':')) return part;
        const name = part.slice(1);
        const value = override[name] ?? own[name] ?? sample[`${route.parts[i - 1]}/${part}`] ?? sample[name];
        if (value === undefined) throw new Error(`no sample for ${part} in ${route.pattern}`);
        return encodeURIComponent(value);
      })
      .join('/')
  );
}

function paramsOf(route: Route, path: string): Record<string, string> {
  const parts = path.split('/').filter(Boolean);
  const out: Record<string, string> = {};
  route.parts.forEach((p, i) => {
    if (p.startsWith(':')) out[p.slice(1)] = decodeURIComponent(parts[i]!);
  });
  return out;
}

async function send(base: string, route: Route, bad: Bad, token: string | undefined): Promise<{ status: number; code?: string }> {
  const path = bad.path ?? pathFor(route);
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (bad.body !== undefined) headers['content-type'] = bad.contentType ?? 'application/json';
  if (bad.contentType === '') delete headers['content-type'];
  const res = await request(`${base}${path}${bad.query ? `?${bad.query}` : ''}`, {
    method: route.method as 'POST',
    headers,
    body: bad.body,
    dispatcher: agent,
  });
  const text = await res.body.text();
  try {
    return { status: res.statusCode, code: (JSON.parse(text) as { error?: { code?: string } }).error?.code };
  } catch {
    return { status: res.statusCode };
  }
}

async function inParallel<T, R>(items: T[], n: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

describe('generated bad requests to every endpoint', () => {
  before(async () => {
    // A lease far longer than the run: the state compared after each endpoint must not change by the clock.
    ts = await startTestServer({ heartbeatIntervalS: 3600, maxBodyBytes: 64 * 1024 });
    agent = new Agent({ connections: PARALLEL, connect: { ca: ts.server.caPem, checkServerIdentity: () => undefined } });
    await ts.admin.createProject('fuzz');
    worker = await ts.worker({ name: 'fuzz-worker' });
    const [job] = (await ts.admin.submit('fuzz', [{ argv: ['true'] }, { argv: ['false'] }])).ids;
    await worker.client.claim(worker.workerId, { waitS: 0, max: 1 });
    const spare = await ts.admin.createWorkerToken('spare');
    await ts.admin.addUser('someone', 'someone-pass');
    Object.assign(sample, {
      project: 'fuzz',
      job: job!,
      'jobs/:id': job!,
      'workers/:id': worker.workerId,
      'worker-tokens/:id': spare.id,
      'peers/:id': '01900000-0000-7000-8000-000000000000',
      name: 'someone',
      user: 'someone',
      sha256: 'ab'.repeat(32),
    });
  });

  after(async () => {
    await agent?.close();
    await cleanup();
  });

  const endpoints = (): { base: string; route: Route; token?: string }[] => {
    const api = apiRouter(ts.server.ctx).routes().map((route) => ({
      base: ts.server.url + API_PREFIX,
      route,
      token: route.auth === 'anonymous' ? undefined : route.auth === 'worker' ? worker.token : ts.admin.token,
    }));
    const unsecure = unsecureRoutes(ts.server.ctx)
      .routes()
      .filter((r) => r.method !== 'HEAD')
      .map((route) => ({ base: ts.server.unsecureUrl, route }));
    return [...api, ...unsecure];
  };

  it('refuses each with a 4xx and a code, stays up, and changes nothing', async () => {
    const before = fingerprint();
    let sent = 0;
    const endpointsSeen: string[] = [];
    for (const { base, route, token } of endpoints()) {
      const name = `${route.method} ${route.pattern}`;
      endpointsSeen.push(name);
      let count = 0;
      let failure: string | undefined;
      // fast-check shrinks a failing batch; the first failing request is kept readable here.
      const run = await fc.check(
        fc.asyncProperty(fc.array(badRequests(route), { minLength: BATCH, maxLength: BATCH }), async (bads) => {
          const replies = await inParallel(bads, PARALLEL, (bad) => send(base, route, bad, token));
          count += bads.length;
          const i = replies.findIndex((r) => r.status < 400 || r.status >= 500 || typeof r.code !== 'string');
          if (i >= 0) {
            const bad = JSON.stringify(bads[i]);
            failure ??= `${name}: ${bad.length > 300 ? `${bad.slice(0, 300)}…` : bad} got ${replies[i]!.status} ${replies[i]!.code}`;
            return false;
          }
          return true;
        }),
        { numRuns: PER_ENDPOINT / BATCH, endOnFailure: true },
      );
      assert.ok(!run.failed, `${failure ?? String(run.errorInstance)} (seed ${run.seed})`);
      assert.ok(count >= PER_ENDPOINT, `${name}: only ${count} requests`);
      sent += count;
      assert.equal(fingerprint(), before, `state changed after ${name}`);
    }
    assert.ok(endpointsSeen.length >= 40, `endpoints: ${endpointsSeen.length}`);
    assert.equal((await ts.anonymous().info()).serverId, ts.server.serverId);
    assert.equal(fingerprint(), before);
    assert.ok(sent >= endpointsSeen.length * PER_ENDPOINT);
  });
});
