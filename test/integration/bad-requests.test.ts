/**
 * Every input is checked at the edge: a bad request gets its own status and
 * error code, and changes nothing. Each case below sends one bad request to a
 * live server that holds projects, jobs in every state, leases and workers,
 * and checks the reply, then that the model and the journal are exactly as
 * they were before it.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { Agent, request, type Dispatcher } from 'undici';
import { ApiError, type ApiClient } from '../../src/client/api/client.js';
import { API_PREFIX } from '../../src/core/wire.js';
import { cleanup, makeClient, resultOf, startTestServer, type SimWorker, type TestServer } from '../helpers/server.js';

const MAX_BODY = 4096;
const MAX_JOBS = 5;
const MAX_LOG = 1024;
const UNKNOWN_ID = '01900000-0000-7000-8000-000000000000';

let ts: TestServer;
let admin: ApiClient;
let bob: ApiClient;
let w1: SimWorker;
let w2: SimWorker;
let workerOnly: ApiClient;
let revokedWorker: ApiClient;
let loggedOut: ApiClient;
let raw: Agent;
let userTokenId: string;

const ids = { done: '', running: '', cancelled: '', queued: '', waiting: '', beta: '' };

/** Everything a bad request could have touched: the model, the journal, the tokens. */
function fingerprint(): string {
  const m = ts.server.model;
  return JSON.stringify({
    projects: [...m.projects.values()].map((p) => [p.name, p.owner, p.members]),
    jobs: [...m.jobs.values()].map((j) => [j.id, j.project, j.state, j.reason, j.updatedAt, j.attempts.length, j.failures, j.lost]),
    leases: [...m.leases.all()].map((l) => [l.jobId, l.attempt, l.workerId, l.deadline]),
    workers: m.workers.size,
    ready: m.ready.size,
    journal: ts.server.ctx.store.journalStats().records,
    workerTokens: ts.server.ctx.accounts.workerTokens().map((t) => [t.id, t.revoked]),
  });
}

async function expectRefused(p: Promise<unknown>, status: number, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ApiError, `expected an ApiError, got ${String(err)}`);
    assert.equal(err.code, code, `code (message: ${err.message})`);
    assert.equal(err.status, status, 'HTTP status');
    assert.ok(err.message.length > 0 && err.message !== code, 'a message in words');
    return true;
  });
}

interface RawReply {
  status: number;
  body: { error?: { code?: string; message?: string } };
}

/** A request the API client would never send: any method, headers and body. */
async function rawCall(method: Dispatcher.HttpMethod, path: string, headers: Record<string, string>, body?: string | Buffer | Readable): Promise<RawReply> {
  const res = await request(ts.server.url + path, { method, headers, body, dispatcher: raw });
  const text = await res.body.text();
  return { status: res.statusCode, body: JSON.parse(text) as RawReply['body'] };
}

async function expectRaw(p: Promise<RawReply>, status: number, code: string): Promise<void> {
  const r = await p;
  assert.equal(r.body.error?.code, code, `code (reply: ${JSON.stringify(r.body)})`);
  assert.equal(r.status, status, 'HTTP status');
  assert.equal(typeof r.body.error?.message, 'string');
}

const auth = (c: ApiClient) => ({ authorization: `Bearer ${c.token}` });

interface Case {
  name: string;
  status: number;
  code: string;
  send: () => Promise<void>;
}

/** A case sent through the API client's `call`, refused with `status` and `code`. */
function bad(name: string, status: number, code: string, send: () => Promise<unknown>): Case {
  return { name, status, code, send: () => expectRefused(send(), status, code) };
}

/** A case sent as a raw HTTP request. */
function badRaw(name: string, status: number, code: string, send: () => Promise<RawReply>): Case {
  return { name, status, code, send: () => expectRaw(send(), status, code) };
}

const job = (over: Record<string, unknown> = {}) => ({ argv: ['true'], ...over });
const submit = (c: ApiClient, project: string, jobs: unknown) => c.call('POST', `/projects/${project}/jobs`, { jobs });

const cases: Case[] = [
  // ---- the HTTP edge ------------------------------------------------------------
  badRaw('a body that is not JSON', 400, 'INVALID_JSON', () =>
    rawCall('POST', `${API_PREFIX}/projects`, { ...auth(admin), 'content-type': 'application/json' }, '{"name": "x",'),
  ),
  badRaw('a JSON body that stops half-way in a job list', 400, 'INVALID_JSON', () =>
    rawCall('POST', `${API_PREFIX}/projects/alpha/jobs`, { ...auth(admin), 'content-type': 'application/json' }, '{"jobs":[{"argv":["true"]}'),
  ),
  badRaw('a body sent as text/plain', 415, 'UNSUPPORTED_MEDIA_TYPE', () =>
    rawCall('POST', `${API_PREFIX}/projects`, { ...auth(admin), 'content-type': 'text/plain' }, '{"name":"plain"}'),
  ),
  badRaw('a body with no content type', 415, 'UNSUPPORTED_MEDIA_TYPE', () =>
    rawCall('POST', `${API_PREFIX}/projects`, { ...auth(admin) }, Buffer.from('{"name":"untyped"}')),
  ),
  badRaw('a form-encoded login', 415, 'UNSUPPORTED_MEDIA_TYPE', () =>
    rawCall('POST', `${API_PREFIX}/login`, { 'content-type': 'application/x-www-form-urlencoded' }, 'user=cpc-admin&password=x'),
  ),
  badRaw('a body whose declared length is over the limit', 413, 'BODY_TOO_LARGE', () =>
    rawCall(
      'POST',
      `${API_PREFIX}/projects/alpha/jobs`,
      { ...auth(admin), 'content-type': 'application/json' },
      JSON.stringify({ jobs: [{ shell: 'echo ' + 'x'.repeat(MAX_BODY) }] }),
    ),
  ),
  badRaw('a chunked body that grows over the limit', 413, 'BODY_TOO_LARGE', () =>
    rawCall(
      'POST',
      `${API_PREFIX}/projects`,
      { ...auth(admin), 'content-type': 'application/json' },
      Readable.from(
        (function* () {
          yield '{"name":"';
          for (let i = 0; i < 8; i++) yield 'y'.repeat(1024);
          yield '"}';
        })(),
      ),
    ),
  ),
  badRaw('a path outside the API', 404, 'ROUTE_NOT_FOUND', () => rawCall('GET', '/api/v2/info', {})),
  bad('an unknown route', 404, 'ROUTE_NOT_FOUND', () => admin.call('GET', '/no-such-thing')),
  bad('a route with one path segment too many', 404, 'ROUTE_NOT_FOUND', () => admin.call('GET', `/jobs/${UNKNOWN_ID}/logs/extra`)),
  bad('DELETE on /info', 405, 'METHOD_NOT_ALLOWED', () => admin.call('DELETE', '/info')),
  bad('PUT on /projects', 405, 'METHOD_NOT_ALLOWED', () => admin.call('PUT', '/projects', { name: 'put' })),
  bad('POST on a job', 405, 'METHOD_NOT_ALLOWED', () => admin.call('POST', `/jobs/${UNKNOWN_ID}`, {})),

  // ---- who is asking ------------------------------------------------------------
  bad('a user route without a token', 401, 'UNAUTHENTICATED', () => ts.anonymous().call('POST', '/projects', { name: 'anon' })),
  badRaw('an Authorization header that is not a bearer token', 401, 'UNAUTHENTICATED', () =>
    rawCall('GET', `${API_PREFIX}/projects`, { authorization: 'Basic Y3BjLWFkbWluOng=' }),
  ),
  badRaw('a bearer header with a space inside the token', 401, 'UNAUTHENTICATED', () =>
    rawCall('GET', `${API_PREFIX}/projects`, { authorization: 'Bearer two words' }),
  ),
  bad('a garbage token', 401, 'UNAUTHENTICATED', () => makeClient(ts.server.url, ts.server.caPem, 'garbage').call('GET', '/projects')),
  bad('a well-formed token nobody issued', 401, 'UNAUTHENTICATED', () =>
    makeClient(ts.server.url, ts.server.caPem, `cpc_0123456789abcdef_${'A'.repeat(43)}`).call('GET', '/projects'),
  ),
  bad('a real token id with the wrong secret', 401, 'UNAUTHENTICATED', () =>
    makeClient(ts.server.url, ts.server.caPem, admin.token!.replace(/_[^_]+$/, `_${'B'.repeat(43)}`)).call('GET', '/projects'),
  ),
  bad('a revoked worker token', 401, 'UNAUTHENTICATED', () =>
    revokedWorker.register({ name: 'revoked', host: 'h', cores: 1, memoryMb: 1 }),
  ),
  bad('a token used after logout', 401, 'UNAUTHENTICATED', () => loggedOut.call('POST', '/projects', { name: 'after-logout' })),
  bad('a wrong password', 401, 'BAD_CREDENTIALS', () => ts.anonymous().login('cpc-admin', 'not-the-password')),
  bad('an unknown user', 401, 'BAD_CREDENTIALS', () => ts.anonymous().login('nobody', 'whatever')),
  bad('a login without a password', 400, 'INVALID_FIELD', () => ts.anonymous().call('POST', '/login', { user: 'cpc-admin' })),
  bad('a login without a body', 400, 'BAD_REQUEST', () => ts.anonymous().call('POST', '/login')),

  // ---- what the caller may do --------------------------------------------------------
  bad('a worker token on a user route', 403, 'FORBIDDEN', () => workerOnly.call('GET', '/projects')),
  bad('a worker token creating a project', 403, 'FORBIDDEN', () => workerOnly.call('POST', '/projects', { name: 'by-worker' })),
  bad('a worker token issuing worker tokens', 403, 'FORBIDDEN', () => workerOnly.call('POST', '/worker-tokens', { name: 'more' })),
  bad('a user token registering a worker', 403, 'FORBIDDEN', () =>
    admin.call('POST', '/workers', { name: 'u', host: 'h', cores: 1, memoryMb: 1 }),
  ),
  bad('a user token reporting a result', 403, 'FORBIDDEN', () =>
    admin.call('POST', `/workers/${w1.workerId}/results`, resultOf(ids.running, 1)),
  ),
  bad('a regular user issuing worker tokens', 403, 'FORBIDDEN', () => bob.call('POST', '/worker-tokens', { name: 'bobs' })),
  bad('a regular user revoking a worker token', 403, 'FORBIDDEN', () => bob.call('DELETE', `/worker-tokens/${userTokenId}`)),
  bad("a regular user reading another user's project", 404, 'PROJECT_NOT_FOUND', () => bob.call('GET', '/projects/alpha')),
  bad("a regular user cancelling another user's job", 404, 'JOB_NOT_FOUND', () => bob.call('POST', '/jobs/cancel', { ids: [ids.queued] })),

  // ---- projects ---------------------------------------------------------------------
  bad('a project name that is taken', 409, 'PROJECT_EXISTS', () => admin.call('POST', '/projects', { name: 'alpha' })),
  bad('a project name with spaces', 400, 'INVALID_FIELD', () => admin.call('POST', '/projects', { name: 'has spaces' })),
  bad('a project name that is a number', 400, 'INVALID_FIELD', () => admin.call('POST', '/projects', { name: 42 })),
  bad('a project name of 65 characters', 400, 'INVALID_FIELD', () => admin.call('POST', '/projects', { name: 'p'.repeat(65) })),
  bad('an unknown field in a new project', 400, 'INVALID_FIELD', () => admin.call('POST', '/projects', { name: 'gamma', owner: 'bob' })),
  bad('a JSON null for a new project', 400, 'INVALID_FIELD', () => admin.call('POST', '/projects', null)),
  bad('reading a project that does not exist', 404, 'PROJECT_NOT_FOUND', () => admin.call('GET', '/projects/missing')),
  bad('removing a project that does not exist', 404, 'PROJECT_NOT_FOUND', () => admin.call('DELETE', '/projects/missing')),
  bad('submitting to a project that does not exist', 404, 'PROJECT_NOT_FOUND', () => submit(admin, 'missing', [job()])),

  // ---- submissions ----------------------------------------------------------------------
  bad('a job list that is not an array', 400, 'INVALID_FIELD', () => admin.call('POST', '/projects/alpha/jobs', { jobs: { argv: ['true'] } })),
  bad('an empty job list', 400, 'INVALID_FIELD', () => submit(admin, 'alpha', [])),
  bad('more jobs than one submission may hold', 400, 'TOO_MANY_JOBS', () =>
    submit(admin, 'alpha', Array.from({ length: MAX_JOBS + 1 }, () => job())),
  ),
  bad('a job with both argv and shell', 400, 'INVALID_FIELD', () => submit(admin, 'alpha', [{ argv: ['true'], shell: 'true' }])),
  bad('a job with neither argv nor shell', 400, 'INVALID_FIELD', () => submit(admin, 'alpha', [{ name: 'nothing' }])),
  bad('a job with an empty argv', 400, 'INVALID_FIELD', () => submit(admin, 'alpha', [{ argv: [] }])),
  bad('a job with an argv that is a string', 400, 'INVALID_FIELD', () => submit(admin, 'alpha', [{ argv: 'true' }])),
  bad('a job asking for 0 cores', 400, 'INVALID_FIELD', () => submit(admin, 'alpha', [job({ cores: 0 })])),
  bad('a job asking for 1.5 cores', 400, 'INVALID_FIELD', () => submit(admin, 'alpha', [job({ cores: 1.5 })])),
  bad('a job asking for negative memory', 400, 'INVALID_FIELD', () => submit(admin, 'alpha', [job({ memoryMb: -1 })])),
  bad('a priority out of range', 400, 'PRIORITY_OUT_OF_RANGE', () => submit(admin, 'alpha', [job({ priority: 1e9 })])),
  bad('a priority just past the range', 400, 'PRIORITY_OUT_OF_RANGE', () => submit(admin, 'alpha', [job({ priority: 101 })])),
  bad('a priority that is not whole', 400, 'INVALID_FIELD', () => submit(admin, 'alpha', [job({ priority: 1.5 })])),
  bad('a negative retry count', 400, 'INVALID_FIELD', () => submit(admin, 'alpha', [job({ maxRetries: -1 })])),
  bad('a timeout of 0 seconds', 400, 'INVALID_FIELD', () => submit(admin, 'alpha', [job({ timeoutS: 0 })])),
  bad('a timeout given as a string', 400, 'INVALID_FIELD', () => submit(admin, 'alpha', [job({ timeoutS: '10' })])),
  bad('an unknown field in a job', 400, 'INVALID_FIELD', () => submit(admin, 'alpha', [job({ cpus: 2 })])),
  bad('an env name that starts with a digit', 400, 'INVALID_FIELD', () => submit(admin, 'alpha', [job({ env: { '1BAD': 'x' } })])),
  bad('an env name with a dash', 400, 'INVALID_FIELD', () => submit(admin, 'alpha', [job({ env: { 'A-B': 'x' } })])),
  bad('an env value that is a number', 400, 'INVALID_FIELD', () => submit(admin, 'alpha', [job({ env: { GOOD: 1 } })])),
  bad('a good job followed by a bad one (nothing of it is kept)', 400, 'INVALID_FIELD', () =>
    submit(admin, 'alpha', [job({ name: 'good' }), job({ cores: -2 })]),
  ),
  bad('a key used twice in one submission', 400, 'INVALID_FIELD', () =>
    submit(admin, 'alpha', [job({ key: 'k' }), job({ key: 'k' })]),
  ),
  bad('a dependency on a job that does not exist', 400, 'UNKNOWN_DEPENDENCY', () =>
    submit(admin, 'alpha', [job({ after: [UNKNOWN_ID] })]),
  ),
  bad('a dependency on an unknown key', 400, 'UNKNOWN_DEPENDENCY', () => submit(admin, 'alpha', [job({ key: 'a' }), job({ after: ['b'] })])),
  bad('a dependency on a job of another project', 400, 'UNKNOWN_DEPENDENCY', () =>
    submit(admin, 'alpha', [job({ after: [ids.beta] })]),
  ),
  bad('a job that depends on itself', 400, 'DEPENDENCY_CYCLE', () => submit(admin, 'alpha', [job({ key: 'self', after: ['self'] })])),
  bad('a dependency cycle of three jobs', 400, 'DEPENDENCY_CYCLE', () =>
    submit(admin, 'alpha', [job({ key: 'a', after: ['c'] }), job({ key: 'b', after: ['a'] }), job({ key: 'c', after: ['b'] })]),
  ),

  // ---- jobs ---------------------------------------------------------------------------
  bad('a job id that is not a uuid', 400, 'INVALID_FIELD', () => admin.call('GET', '/jobs/not-a-uuid')),
  bad('a job that does not exist', 404, 'JOB_NOT_FOUND', () => admin.call('GET', `/jobs/${UNKNOWN_ID}`)),
  bad('cancelling a job that is done', 409, 'INVALID_STATE', () => admin.cancel([ids.done])),
  bad('cancelling a queued job together with a done one (neither is cancelled)', 409, 'INVALID_STATE', () =>
    admin.cancel([ids.queued, ids.done]),
  ),
  bad('cancelling a job that does not exist', 404, 'JOB_NOT_FOUND', () => admin.cancel([ids.waiting, UNKNOWN_ID])),
  bad('cancelling with an empty id list', 400, 'INVALID_FIELD', () => admin.cancel([])),
  bad('retrying a running job', 409, 'INVALID_STATE', () => admin.retry([ids.running])),
  bad('retrying a cancelled job together with a queued one (neither is retried)', 409, 'INVALID_STATE', () =>
    admin.retry([ids.cancelled, ids.queued]),
  ),
  bad('a job list filtered by an unknown state', 400, 'INVALID_FIELD', () =>
    admin.call('GET', '/projects/alpha/jobs', undefined, { query: { state: 'sleeping' } }),
  ),
  bad('a job list with limit 0', 400, 'INVALID_FIELD', () => admin.call('GET', '/projects/alpha/jobs', undefined, { query: { limit: 0 } })),
  bad('a job list with an unknown query parameter', 400, 'INVALID_FIELD', () =>
    admin.call('GET', '/projects/alpha/jobs', undefined, { query: { colour: 'red' } }),
  ),
  bad('a job list sorted by a field there is no order for', 400, 'INVALID_FIELD', () =>
    admin.call('GET', '/projects/alpha/jobs', undefined, { query: { sort: 'size' } }),
  ),
  bad('a job list in an order that is neither asc nor desc', 400, 'INVALID_FIELD', () =>
    admin.call('GET', '/projects/alpha/jobs', undefined, { query: { order: 'up' } }),
  ),
  bad('a job list of the last 0 seconds', 400, 'INVALID_FIELD', () => admin.call('GET', '/projects/alpha/jobs', undefined, { query: { since: 0 } })),
  bad('a job list after a job of another project', 400, 'INVALID_FIELD', () =>
    admin.call('GET', '/projects/alpha/jobs', undefined, { query: { after: '01900000-0000-7000-8000-000000000000' } }),
  ),
  bad('a bulk action that is neither cancel nor retry', 400, 'INVALID_FIELD', () => admin.call('POST', '/jobs/bulk', { action: 'delete', ids: [ids.queued] })),
  bad('a bulk cancel of no ids', 400, 'INVALID_FIELD', () => admin.call('POST', '/jobs/bulk', { action: 'cancel', ids: [] })),
  bad('a bulk cancel of an id that is not one', 400, 'INVALID_FIELD', () => admin.call('POST', '/jobs/bulk', { action: 'cancel', ids: [ids.queued, 'abc'] })),
  bad('a bulk cancel of more ids in part than allowed', 400, 'INVALID_FIELD', () =>
    admin.call('POST', '/jobs/bulk', { action: 'cancel', ids: Array.from({ length: 33 }, (_, i) => `abcdef${String(i).padStart(2, '0')}`) }),
  ),
  bad('the progress of a project from something not a job id', 400, 'INVALID_FIELD', () =>
    admin.call('GET', '/projects/alpha/progress', undefined, { query: { from: 'yesterday' } }),
  ),
  bad('the states of no jobs', 400, 'INVALID_FIELD', () => admin.call('POST', '/jobs/states', { ids: [] })),
  bad('a queue listing with a limit that is not a number', 400, 'INVALID_FIELD', () => admin.call('GET', '/queue', undefined, { query: { limit: 'many' } })),
  bad('the logs of a job that has not run', 404, 'LOG_NOT_FOUND', () => admin.logs(ids.queued)),
  bad('a log read that would wait more than a minute for output', 400, 'INVALID_FIELD', () =>
    admin.call('GET', `/jobs/${ids.running}/logs`, undefined, { query: { wait: 61 }, text: true }),
  ),
  bad('the logs of an attempt that never was', 404, 'ATTEMPT_NOT_FOUND', () => admin.logs(ids.done, { attempt: 7 })),
  bad('the logs of a stream that does not exist', 400, 'INVALID_FIELD', () =>
    admin.call('GET', `/jobs/${ids.done}/logs`, undefined, { query: { stream: 'stdin' }, text: true }),
  ),
  bad('a part of a log by both tail and offset', 400, 'INVALID_FIELD', () =>
    admin.call('GET', `/jobs/${ids.done}/logs`, undefined, { query: { tail: 10, offset: 5 }, text: true }),
  ),
  bad('a part of a log with a negative offset', 400, 'INVALID_FIELD', () =>
    admin.call('GET', `/jobs/${ids.done}/logs`, undefined, { query: { offset: -1, limit: 10 }, text: true }),
  ),
  bad('a part of a log of more than 16 MiB', 400, 'INVALID_FIELD', () =>
    admin.call('GET', `/jobs/${ids.done}/logs`, undefined, { query: { offset: 0, limit: 16 * 1024 * 1024 + 1 }, text: true }),
  ),

  // ---- workers ----------------------------------------------------------------------------
  bad('a registration without cores', 400, 'INVALID_FIELD', () => workerOnly.call('POST', '/workers', { name: 'w', host: 'h', memoryMb: 1 })),
  bad('a registration offering 0 cores', 400, 'INVALID_FIELD', () => workerOnly.register({ name: 'w', host: 'h', cores: 0, memoryMb: 1 })),
  bad('a claim that would wait over 300 s', 400, 'INVALID_FIELD', () => w1.client.claim(w1.workerId, { waitS: 301 })),
  bad("a claim for a worker registered with another token", 404, 'WORKER_NOT_FOUND', () => w2.client.claim(w1.workerId, { waitS: 0 })),
  bad("a heartbeat for a worker registered with another token", 404, 'WORKER_NOT_FOUND', () =>
    w2.client.heartbeat(w1.workerId, { attempts: [{ jobId: ids.running, attempt: 1 }] }),
  ),
  bad('a heartbeat for a worker that does not exist', 404, 'WORKER_NOT_FOUND', () => w1.client.heartbeat(UNKNOWN_ID, { attempts: [] })),
  bad('a heartbeat naming an attempt 0', 400, 'INVALID_FIELD', () =>
    w1.client.heartbeat(w1.workerId, { attempts: [{ jobId: ids.running, attempt: 0 }] }),
  ),
  bad("a result for another worker's attempt", 409, 'STALE_ATTEMPT', () => w2.client.result(w2.workerId, resultOf(ids.running, 1))),
  bad("a result sent under another worker's id", 404, 'WORKER_NOT_FOUND', () => w2.client.result(w1.workerId, resultOf(ids.running, 1))),
  bad('a result for an attempt whose job was cancelled', 409, 'STALE_ATTEMPT', () => w1.client.result(w1.workerId, resultOf(ids.cancelled, 1))),
  bad('a result for a second report of a done attempt with another exit code', 409, 'STALE_ATTEMPT', () =>
    w1.client.result(w1.workerId, resultOf(ids.done, 1, { exitCode: 4 })),
  ),
  bad('a result for an attempt that was never handed out', 404, 'ATTEMPT_NOT_FOUND', () => w1.client.result(w1.workerId, resultOf(ids.running, 2))),
  bad('a result for a job that does not exist', 409, 'STALE_ATTEMPT', () => w1.client.result(w1.workerId, resultOf(UNKNOWN_ID, 1))),
  bad('a result with an exit code of 999', 400, 'INVALID_FIELD', () =>
    w1.client.result(w1.workerId, resultOf(ids.running, 1, { exitCode: 999 })),
  ),
  bad('a result that ended in an unknown way', 400, 'INVALID_FIELD', () =>
    w1.client.result(w1.workerId, resultOf(ids.running, 1, { how: 'exploded' as never })),
  ),
  bad('a result whose output is over the log limit', 413, 'LOG_TOO_LARGE', () =>
    w1.client.result(w1.workerId, resultOf(ids.running, 1, { stdout: 'z'.repeat(MAX_LOG + 1) })),
  ),
  bad('log chunks whose data is not base64', 400, 'INVALID_FIELD', () =>
    w1.client.logChunks(w1.workerId, { chunks: [{ jobId: ids.running, attempt: 1, stream: 'stdout', offset: 0, data: 'not base64!' }] }),
  ),
  bad('log chunks at a negative offset', 400, 'INVALID_FIELD', () =>
    w1.client.logChunks(w1.workerId, { chunks: [{ jobId: ids.running, attempt: 1, stream: 'stdout', offset: -1, data: 'eA==' }] }),
  ),
  bad('log chunks past the body limit', 413, 'BODY_TOO_LARGE', () =>
    w1.client.logChunks(w1.workerId, {
      chunks: [0, 1].map((i) => ({ jobId: ids.running, attempt: 1, stream: 'stdout' as const, offset: i * 150_000, data: Buffer.alloc(150_000).toString('base64') })),
    }),
  ),
  bad('no log chunks at all', 400, 'INVALID_FIELD', () => w1.client.logChunks(w1.workerId, { chunks: [] })),
  bad('a worker token name with a space', 400, 'INVALID_FIELD', () => admin.call('POST', '/worker-tokens', { name: 'two words' })),
  bad('revoking a worker token that does not exist', 404, 'TOKEN_NOT_FOUND', () => admin.revokeWorkerToken('0123456789abcdef')),
  bad("revoking a user's login token as a worker token", 404, 'TOKEN_NOT_FOUND', () => admin.revokeWorkerToken(userTokenId)),
];

describe('bad requests are refused with their code and change nothing', () => {
  before(async () => {
    ts = await startTestServer({
      // Long leases and a late archive: nothing moves on its own during the test.
      heartbeatIntervalS: 60,
      archiveAfterS: 3600,
      maxBodyBytes: MAX_BODY,
      maxJobsPerSubmit: MAX_JOBS,
      maxLogBytes: MAX_LOG,
    });
    admin = ts.admin;
    raw = new Agent({ connect: { ca: ts.server.caPem, checkServerIdentity: () => undefined } });

    await admin.createProject('alpha');
    await admin.createProject('beta');
    w1 = await ts.worker({ name: 'w1', cores: 8 });
    w2 = await ts.worker({ name: 'w2', cores: 8 });

    // One job of each kind, claimed one at a time so that each lands where it should.
    const claimOne = async () => {
      const { jobs } = await w1.client.claim(w1.workerId, { waitS: 0, max: 1 });
      assert.equal(jobs.length, 1);
      return jobs[0]!;
    };
    [ids.done] = (await admin.submit('alpha', [{ argv: ['true'], name: 'done' }])).ids as [string];
    await claimOne();
    assert.equal((await w1.client.result(w1.workerId, resultOf(ids.done, 1, { stdout: 'hi\n' }))).state, 'done');
    [ids.running] = (await admin.submit('alpha', [{ argv: ['sleep', '60'], name: 'running' }])).ids as [string];
    await claimOne();
    [ids.cancelled] = (await admin.submit('alpha', [{ argv: ['sleep', '60'], name: 'cancelled' }])).ids as [string];
    await claimOne();
    await admin.cancel([ids.cancelled]);
    [ids.queued, ids.waiting] = (
      await admin.submit('alpha', [
        { key: 'q', argv: ['true'], name: 'queued' },
        { argv: ['true'], name: 'waiting', after: ['q'] },
      ])
    ).ids as [string, string];
    [ids.beta] = (await admin.submit('beta', [{ argv: ['true'] }])).ids as [string];

    const states = Object.fromEntries(Object.entries(ids).map(([k, id]) => [k, ts.server.model.job(id)!.state]));
    assert.deepEqual(states, { done: 'done', running: 'running', cancelled: 'cancelled', queued: 'queued', waiting: 'waiting', beta: 'queued' });

    // A worker token with no registered worker, one that was revoked, a logged-out user token, a regular user.
    workerOnly = makeClient(ts.server.url, ts.server.caPem, (await admin.createWorkerToken('plain')).token);
    const revoked = await admin.createWorkerToken('revoked');
    await admin.revokeWorkerToken(revoked.id);
    revokedWorker = makeClient(ts.server.url, ts.server.caPem, revoked.token);
    loggedOut = makeClient(ts.server.url, ts.server.caPem, (await ts.anonymous().login('cpc-admin', ts.adminPassword)).token);
    await loggedOut.logout();
    await ts.server.ctx.accounts.addUser('bob', 'bobs-password', false);
    bob = makeClient(ts.server.url, ts.server.caPem, (await ts.anonymous().login('bob', 'bobs-password')).token);
    userTokenId = /^cpc_([0-9a-f]{16})_/.exec(admin.token!)![1]!;
  });

  after(async () => {
    await raw?.close();
    await cleanup();
  });

  it(`covers at least 45 distinct bad requests`, () => {
    assert.ok(cases.length >= 45, `${cases.length} cases`);
    assert.equal(new Set(cases.map((c) => c.name)).size, cases.length, 'case names are distinct');
  });

  for (const c of cases) {
    it(`refuses ${c.name} with ${c.status} ${c.code}, and changes nothing`, async () => {
      const before = fingerprint();
      await c.send();
      // Let anything a refused request might have started (a journal write) land first.
      await new Promise((r) => setImmediate(r));
      assert.equal(fingerprint(), before, 'the model, the journal and the tokens are as they were');
    });
  }

  it('still serves good requests afterwards, and they do change the state', async () => {
    const before = fingerprint();
    const info = await admin.info();
    assert.equal(info.serverId, ts.server.serverId);
    const { ids: newIds } = await admin.submit('alpha', [{ argv: ['true'], after: [ids.done] }]);
    assert.equal((await admin.job(newIds[0]!)).state, 'queued');
    const { jobs } = await w1.client.claim(w1.workerId, { waitS: 0, max: 8 });
    assert.deepEqual(
      jobs.map((j) => j.id).sort(),
      [ids.queued, ids.beta, newIds[0]!].sort(),
      'the queued jobs, and nothing a refused request tried to add',
    );
    assert.notEqual(fingerprint(), before);
    const project = await admin.project('alpha');
    assert.deepEqual(project.counts, { waiting: 1, queued: 0, running: 3, done: 1, failed: 0, cancelled: 1 });
  });
});
