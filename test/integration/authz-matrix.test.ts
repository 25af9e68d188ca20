/**
 * The authorization matrix: every route of the API × every kind of caller →
 * the status the route's rule gives. The routes come from the server's own
 * route table, and the rule of each is pinned below, so a new route (or a
 * changed rule) fails here until its row is written down.
 *
 * Each request carries a query parameter no route accepts. A caller the rule
 * lets in therefore gets 400 INVALID_FIELD about the query, from the check
 * that runs after authorization and before the handler: every cell is
 * decided without changing anything, even on routes that remove things.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import WebSocket from 'ws';
import { API_PREFIX } from '../../src/core/wire.js';
import { LINK_PATH } from '../../src/federation/links.js';
import { apiRouter } from '../../src/server/start/api.js';
import type { AuthRule } from '../../src/server/http/auth.js';
import { unsecureRoutes } from '../../src/server/federation/unsecure.js';
import { connect, startSite, stopSite, type Site } from '../helpers/federation.js';

/** Every route and its rule. A route missing here, or here but not in the server, fails the suite. */
const RULES: Record<string, AuthRule> = {
  'GET /info': 'anonymous',
  'POST /login': 'anonymous',
  'POST /logout': 'user',
  'GET /whoami': 'user',
  'GET /projects': 'user',
  'POST /projects': 'user',
  'GET /projects/:project': 'member',
  'DELETE /projects/:project': 'owner',
  'POST /projects/:project/jobs': 'member',
  'GET /projects/:project/jobs': 'member',
  'POST /projects/:project/members': 'owner',
  'DELETE /projects/:project/members/:user': 'owner',
  'GET /users': 'superuser',
  'POST /users': 'superuser',
  'DELETE /users/:name': 'superuser',
  'PUT /users/:name/password': 'superuser',
  'PUT /users/:name/weight': 'superuser',
  'PUT /projects/:project/weight': 'superuser',
  'GET /weights': 'superuser',
  'PUT /me/password': 'user',
  'GET /jobs/:id': 'job',
  'GET /jobs/:id/logs': 'job',
  'POST /jobs/cancel': 'user',
  'POST /jobs/retry': 'user',
  'GET /queue': 'user',
  'GET /heartbeats': 'user',
  'POST /workers': 'worker',
  'POST /workers/:id/claim': 'worker',
  'POST /workers/:id/release': 'worker',
  'POST /workers/:id/stopped': 'worker',
  'POST /workers/:id/heartbeat': 'worker',
  'POST /workers/:id/control': 'worker',
  'POST /workers/:id/results': 'worker',
  'POST /workers/:id/logs': 'worker',
  'GET /workers': 'user',
  'POST /worker-tokens': 'superuser',
  'GET /worker-tokens': 'superuser',
  'DELETE /worker-tokens/:id': 'superuser',
  'GET /peers': 'superuser',
  'POST /peers/ca': 'superuser',
  'POST /peers/connect': 'superuser',
  'POST /peers/trust-all': 'superuser',
  'POST /peers/:id/trust': 'superuser',
  'PUT /peers/:id/priority': 'superuser',
  'DELETE /peers/:id': 'superuser',
  'GET /pilots': 'superuser',
  'GET /running': 'user',
  'POST /workers/:id/lost': 'superuser',
  'POST /jobs/:id/lost': 'job',
  'POST /server/stop': 'superuser',
  'GET /network': 'superuser',
  'PUT /projects/:project/files/:sha256': 'member',
  'GET /projects/:project/files/:sha256': 'member',
  'GET /jobs/:id/outputs': 'job',
  'GET /jobs/:id/outputs/:name': 'job',
  'GET /jobs/:id/why': 'job',
  'POST /jobs/bulk': 'user',
  'POST /jobs/states': 'user',
  'GET /projects/:project/progress': 'member',
  'GET /projects/:project/stats': 'member',
  'PUT /projects/:project/retry': 'owner',
  'GET /projects/:project/values': 'member',
  'GET /projects/:project/values/:name': 'member',
  'GET /projects/:project/values/:name/file': 'member',
  'PUT /projects/:project/values/:name': 'member',
  'DELETE /projects/:project/values/:name': 'member',
  'GET /projects/:project/export': 'member',
  'POST /projects/:project/import': 'user',
  'GET /workers/:id/files/:sha256': 'worker',
  'PUT /workers/:id/files/:sha256': 'worker',
  'GET /peer/files/:sha256': 'peer',
  'PUT /peer/files/:sha256': 'peer',
};

const CALLERS = ['none', 'malformed', 'expired', 'outsider', 'member', 'owner', 'superuser', 'worker', 'peer'] as const;
type Caller = (typeof CALLERS)[number];

type Outcome = 'ok' | 401 | 403 | 404;

/** What each rule gives each caller; 'ok' means let in. */
const EXPECTED: Record<AuthRule, Record<Caller, Outcome>> = {
  anonymous: { none: 'ok', malformed: 'ok', expired: 'ok', outsider: 'ok', member: 'ok', owner: 'ok', superuser: 'ok', worker: 'ok', peer: 'ok' },
  user: { none: 401, malformed: 401, expired: 401, outsider: 'ok', member: 'ok', owner: 'ok', superuser: 'ok', worker: 403, peer: 401 },
  member: { none: 401, malformed: 401, expired: 401, outsider: 404, member: 'ok', owner: 'ok', superuser: 'ok', worker: 403, peer: 401 },
  owner: { none: 401, malformed: 401, expired: 401, outsider: 404, member: 403, owner: 'ok', superuser: 'ok', worker: 403, peer: 401 },
  job: { none: 401, malformed: 401, expired: 401, outsider: 404, member: 'ok', owner: 'ok', superuser: 'ok', worker: 403, peer: 401 },
  superuser: { none: 401, malformed: 401, expired: 401, outsider: 403, member: 403, owner: 403, superuser: 'ok', worker: 403, peer: 401 },
  worker: { none: 401, malformed: 401, expired: 401, outsider: 403, member: 403, owner: 403, superuser: 403, worker: 'ok', peer: 401 },
  peer: { none: 401, malformed: 401, expired: 401, outsider: 403, member: 403, owner: 403, superuser: 403, worker: 403, peer: 'ok' },
};

const CODE: Record<number, string> = { 401: 'UNAUTHENTICATED', 403: 'FORBIDDEN' };
const notFoundCode = (rule: AuthRule) => (rule === 'job' ? 'JOB_NOT_FOUND' : 'PROJECT_NOT_FOUND');

describe('authorization matrix: every route × every kind of caller', () => {
  let a: Site;
  let b: Site;
  let plain: Agent;
  let asPeer: Agent;
  const tokens: Partial<Record<Caller, string>> = {};
  const sample: Record<string, string> = {};
  let workerId = '';

  before(async () => {
    // b is the server under test; a is a trusted peer whose certificate is tried on b.
    [a, b] = await Promise.all([startSite('matrix-a'), startSite('matrix-b')]);
    await connect(a, b);
    const id = a.server!.identity;
    plain = new Agent({ connect: { ca: b.caPem, checkServerIdentity: () => undefined } });
    asPeer = new Agent({ connect: { ca: b.caPem, cert: id.certPem, key: id.keyPem, checkServerIdentity: () => undefined } });

    for (const user of ['alice', 'bob', 'eve', 'carol']) await b.admin.addUser(user, `${user}-password`);
    const login = async (user: string) => (await b.admin.call<{ token: string }>('POST', '/login', { user, password: `${user}-password` })).token;
    tokens.owner = await login('alice');
    tokens.member = await login('bob');
    tokens.outsider = await login('eve');
    tokens.superuser = b.admin.token!;
    tokens.worker = b.workerToken;
    tokens.malformed = 'not-a-token';
    tokens.expired = (await b.server!.ctx.accounts.issue('user', 'alice', Date.now() - 1000)).token;

    const as = (token: string) => ({ authorization: `Bearer ${token}`, 'content-type': 'application/json' });
    const post = async <T>(token: string, path: string, body: unknown): Promise<T> => {
      const res = await request(`${b.url}${API_PREFIX}${path}`, { method: 'POST', headers: as(token), body: JSON.stringify(body), dispatcher: plain });
      const json = (await res.body.json()) as T;
      assert.equal(res.statusCode, 200, `${path}: ${JSON.stringify(json)}`);
      return json;
    };
    await post(tokens.owner, '/projects', { name: 'matrix' });
    await post(tokens.owner, '/projects/matrix/members', { user: 'bob' });
    const { ids } = await post<{ ids: string[] }>(tokens.owner, '/projects/matrix/jobs', { jobs: [{ argv: ['true'] }] });
    workerId = (await post<{ workerId: string }>(tokens.worker, '/workers', { name: 'w', host: 'h', cores: 1, memoryMb: 1 })).workerId;
    const spare = await b.admin.createWorkerToken('spare');
    Object.assign(sample, {
      project: 'matrix',
      'jobs/:id': ids[0]!,
      'workers/:id': workerId,
      'worker-tokens/:id': spare.id,
      'peers/:id': a.serverId,
      name: 'carol',
      user: 'bob',
      sha256: 'ab'.repeat(32),
    });
  });

  after(async () => {
    await Promise.all([plain?.close(), asPeer?.close()]);
    await Promise.all([a, b].filter(Boolean).map((s) => stopSite(s)));
  });

  /** A concrete path for a pattern, from the samples above. */
  const pathOf = (pattern: string): string =>
    pattern
      .split('/')
      .map((part, i, all) => {
        if (!part.startsWith(':')) return part;
        const value = sample[`${all[i - 1]}/${part}`] ?? sample[part.slice(1)];
        if (value === undefined) throw new Error(`no sample value for ${part} in ${pattern}; add one to the matrix test`);
        return encodeURIComponent(value);
      })
      .join('/');

  const send = async (caller: Caller, method: string, url: string) => {
    const token = tokens[caller];
    const res = await request(url, {
      method: method as 'GET',
      headers: token ? { authorization: `Bearer ${token}` } : {},
      dispatcher: caller === 'peer' ? asPeer : plain,
    });
    const text = await res.body.text();
    let body: { error?: { code?: string; message?: string } } = {};
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      // a plain-text reply
    }
    return { status: res.statusCode, code: body.error?.code, message: body.error?.message ?? '' };
  };

  it('lists every route of the server with its rule, and no route that is not there', () => {
    const routes = apiRouter(b.server!.ctx).routes();
    const actual = Object.fromEntries(routes.map((r) => [`${r.method} ${r.pattern}`, r.auth]));
    assert.deepEqual(actual, RULES);
  });

  it('gives every route × caller the status of its rule', async () => {
    const failures: string[] = [];
    let cells = 0;
    for (const route of apiRouter(b.server!.ctx).routes()) {
      const rule = RULES[`${route.method} ${route.pattern}`]!;
      const url = `${b.url}${API_PREFIX}${pathOf(route.pattern)}?matrix-probe=1`;
      for (const caller of CALLERS) {
        cells++;
        const want = EXPECTED[rule][caller];
        const got = await send(caller, route.method, url);
        const wantStatus = want === 'ok' ? 400 : want;
        const wantCode = want === 'ok' ? 'INVALID_FIELD' : want === 404 ? notFoundCode(rule) : CODE[want];
        const okProbe = want !== 'ok' || got.message.startsWith('query');
        if (got.status !== wantStatus || got.code !== wantCode || !okProbe) {
          failures.push(`${route.method} ${route.pattern} as ${caller}: want ${wantStatus} ${wantCode}, got ${got.status} ${got.code} (${got.message})`);
        }
      }
    }
    assert.equal(cells, Object.keys(RULES).length * CALLERS.length);
    assert.deepEqual(failures, []);
  });

  it('changed nothing while probing', async () => {
    const projects = (await b.admin.projects()).projects;
    assert.deepEqual(projects.map((p) => [p.name, p.owner, p.members]), [['matrix', 'alice', ['bob']]]);
    assert.deepEqual((await b.admin.users()).users.map((u) => u.name).sort(), ['alice', 'bob', 'carol', 'cpc-admin', 'eve']);
    assert.ok(b.server!.model.workers.has(workerId));
    // Every token used in the matrix still works (none was logged out or revoked by a probe).
    for (const caller of ['owner', 'member', 'outsider', 'superuser'] as const) {
      assert.equal((await send(caller, 'GET', `${b.url}${API_PREFIX}/whoami`)).status, 200, caller);
    }
  });

  it('serves the unsecure port and the API description to anyone, whatever they present', async () => {
    for (const route of unsecureRoutes(b.server!.ctx).routes()) assert.equal(route.auth, 'anonymous', `${route.method} ${route.pattern}`);
    for (const caller of CALLERS) {
      const got = await send(caller, 'GET', `${b.url}/api/openapi.json`);
      assert.equal(got.status, 200, caller);
    }
  });

  it('opens the peer link only to a trusted peer’s certificate', async () => {
    const tryLink = (caller: Caller): Promise<number> =>
      new Promise((resolve, reject) => {
        const token = tokens[caller];
        const ws = new WebSocket(`${b.url.replace('https', 'wss')}${LINK_PATH}`, {
          ca: b.caPem,
          // The server's certificate names its id, not 127.0.0.1; node's check returns undefined for "fine".
          checkServerIdentity: (() => undefined) as never,
          headers: token ? { authorization: `Bearer ${token}` } : {},
        });
        ws.on('unexpected-response', (_req, res) => {
          resolve(res.statusCode ?? 0);
          ws.terminate();
        });
        ws.on('open', () => {
          ws.terminate();
          resolve(101);
        });
        ws.on('error', reject);
      });
    for (const caller of CALLERS.filter((c) => c !== 'peer')) assert.equal(await tryLink(caller), 403, caller);
  });
});
