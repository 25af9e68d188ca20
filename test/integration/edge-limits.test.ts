/**
 * Limits at the edge, against the real listener over raw TLS sockets: slow
 * clients are cut off, oversized bodies and headers are refused without being
 * read, bulk submissions, logs and open long-polls are capped. Each limit is
 * a setting and is reported with its own code; the server goes on serving.
 */
import assert from 'node:assert/strict';
import { connect, type TLSSocket } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { ApiError } from '../../src/client/api/client.js';
import { API_PREFIX } from '../../src/core/wire.js';
import { cleanup, resultOf, simulatedWorker, startTestServer, type TestServer } from '../helpers/server.js';

interface RawReply {
  status: number;
  code: string | undefined;
  /** ms from the first byte sent until the server closed the connection. */
  closedAfterMs: number;
  headers: string;
}

describe('edge limits on the real listener', () => {
  let ts: TestServer;
  let port: number;

  before(async () => {
    ts = await startTestServer({
      heartbeatIntervalS: 60,
      headersTimeoutS: 0.5,
      requestTimeoutS: 1,
      maxHeaderBytes: 2048,
      maxBodyBytes: 4096,
      maxJobsPerSubmit: 3,
      maxLogBytes: 1024,
      maxClaimsPerToken: 2,
      maxWorkersPerToken: 3,
    });
    port = ts.server.securePort;
    await ts.admin.createProject('edge');
  });
  after(cleanup);

  /** Opens a TLS connection, lets `talk` write to it, and reads until the server closes it. */
  const raw = (talk: (s: TLSSocket) => void, giveUpMs = 10_000): Promise<RawReply> =>
    new Promise((resolve, reject) => {
      const started = Date.now();
      const socket = connect({ host: '127.0.0.1', port, ca: ts.server.caPem, checkServerIdentity: () => undefined }, () => talk(socket));
      let data = '';
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => (data += d));
      socket.on('error', () => {});
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`the server kept the connection open for ${giveUpMs} ms; got: ${data.slice(0, 300)}`));
      }, giveUpMs);
      socket.on('close', () => {
        clearTimeout(timer);
        const [head = '', body = ''] = data.split('\r\n\r\n');
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
        let code: string | undefined;
        try {
          code = (JSON.parse(body) as { error?: { code?: string } }).error?.code;
        } catch {
          code = undefined;
        }
        resolve({ status, code, closedAfterMs: Date.now() - started, headers: head });
      });
    });

  const auth = () => `Authorization: Bearer ${ts.admin.token}\r\n`;

  it('cuts off a client that does not finish its headers in time (HEADERS_TIMEOUT)', async () => {
    const r = await raw((s) => s.write(`GET ${API_PREFIX}/info HTTP/1.1\r\nHost: x\r\nX-Slow: `));
    assert.equal(r.status, 408);
    assert.equal(r.code, 'HEADERS_TIMEOUT');
    assert.ok(r.closedAfterMs < 5000, `closed after ${r.closedAfterMs} ms`);
  });

  it('cuts off a client that trickles its body (REQUEST_TIMEOUT)', async () => {
    const r = await raw((s) => {
      s.write(`POST ${API_PREFIX}/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"user":`);
      const trickle = setInterval(() => (s.writable ? s.write(' ') : clearInterval(trickle)), 100);
      s.on('close', () => clearInterval(trickle));
    });
    assert.equal(r.status, 408);
    assert.equal(r.code, 'REQUEST_TIMEOUT');
    assert.ok(r.closedAfterMs < 6000, `closed after ${r.closedAfterMs} ms`);
  });

  it('refuses a body declared over the limit at once, without reading it, and closes', async () => {
    const r = await raw((s) => {
      s.write(`POST ${API_PREFIX}/projects HTTP/1.1\r\nHost: x\r\n${auth()}Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n`);
      s.write('{"name":"');
    });
    assert.equal(r.status, 413);
    assert.equal(r.code, 'BODY_TOO_LARGE');
    assert.match(r.headers, /connection: close/i);
    assert.ok(r.closedAfterMs < 1000, `closed after ${r.closedAfterMs} ms`);
  });

  it('refuses a chunked body once it grows over the limit, and closes', async () => {
    const r = await raw((s) => {
      s.write(`POST ${API_PREFIX}/projects HTTP/1.1\r\nHost: x\r\n${auth()}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`);
      const chunk = 'y'.repeat(1000);
      for (let i = 0; i < 6; i++) s.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
      // …and it never ends the body.
    });
    assert.equal(r.status, 413);
    assert.equal(r.code, 'BODY_TOO_LARGE');
    assert.ok(r.closedAfterMs < 1000, `closed after ${r.closedAfterMs} ms`);
  });

  it('refuses a caller without rights before reading its body', async () => {
    const r = await raw((s) => {
      s.write(`POST ${API_PREFIX}/projects HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{"na`);
    });
    assert.equal(r.status, 401);
    assert.equal(r.code, 'UNAUTHENTICATED');
    assert.ok(r.closedAfterMs < 1000, `closed after ${r.closedAfterMs} ms`);
  });

  it('refuses headers over the size limit (HEADERS_TOO_LARGE)', async () => {
    const r = await raw((s) => s.write(`GET ${API_PREFIX}/info HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(4096)}\r\n\r\n`));
    assert.equal(r.status, 431);
    assert.equal(r.code, 'HEADERS_TOO_LARGE');
  });

  it('answers what is not HTTP with BAD_REQUEST', async () => {
    const r = await raw((s) => s.write('HELLO THERE\r\n\r\n'));
    assert.equal(r.status, 400);
    assert.equal(r.code, 'BAD_REQUEST');
  });

  it('caps jobs per submission (TOO_MANY_JOBS) and log size per result (LOG_TOO_LARGE)', async () => {
    await assert.rejects(ts.admin.submit('edge', Array.from({ length: 4 }, () => ({ argv: ['true'] }))), (e: ApiError) => e.code === 'TOO_MANY_JOBS');
    const [id] = (await ts.admin.submit('edge', [{ argv: ['true'] }])).ids;
    const w = await ts.worker({ name: 'logs' });
    assert.equal((await w.client.claim(w.workerId, { waitS: 0 })).jobs.length, 1);
    await assert.rejects(w.client.result(w.workerId, resultOf(id!, 1, { stdout: 'z'.repeat(1025) })), (e: ApiError) => e.status === 413 && e.code === 'LOG_TOO_LARGE');
    assert.equal((await w.client.result(w.workerId, resultOf(id!, 1, { stdout: 'z'.repeat(1024) }))).state, 'done');
  });

  it('caps the long-polls open at once per worker token (TOO_MANY_REQUESTS)', async () => {
    const token = await ts.server.createWorkerToken('capped');
    const ws = await Promise.all([1, 2, 3].map((i) => simulatedWorker(ts.server.url, ts.server.caPem, token, { name: `c${i}` })));
    const polls = ws.slice(0, 2).map((w) => w.client.claim(w.workerId, { waitS: 30 }));
    // Let both reach the server and wait there.
    const deadline = Date.now() + 5000;
    while (ts.server.ctx.dispatcher.waitingCount < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const err = await ws[2]!.client.claim(ws[2]!.workerId, { waitS: 30 }).then(
      () => null,
      (e: unknown) => e as ApiError,
    );
    assert.equal(err?.code, 'TOO_MANY_REQUESTS');
    assert.equal(err?.status, 429);
    assert.equal(err?.retryAfterS, 1);
    // Another token is not held back by this one.
    const other = await ts.worker({ name: 'other' });
    assert.deepEqual((await other.client.claim(other.workerId, { waitS: 0 })).jobs, []);
    for (const w of ws.slice(0, 2)) await w.client.release(w.workerId);
    assert.deepEqual(await Promise.all(polls), [{ jobs: [] }, { jobs: [] }]);
    assert.deepEqual((await ws[2]!.client.claim(ws[2]!.workerId, { waitS: 0 })).jobs, []);
  });

  it('caps the control polls open at once per worker token like claims, counted apart from them', async () => {
    const token = await ts.server.createWorkerToken('controls');
    const ws = await Promise.all([1, 2, 3].map((i) => simulatedWorker(ts.server.url, ts.server.caPem, token, { name: `k${i}` })));
    const polls = ws.slice(0, 2).map((w) => w.client.control(w.workerId, { attempts: [], waitS: 3 }));
    const deadline = Date.now() + 5000;
    while (ts.server.ctx.control.watchCount < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const err = await ws[2]!.client.control(ws[2]!.workerId, { attempts: [], waitS: 3 }).then(
      () => null,
      (e: unknown) => e as ApiError,
    );
    assert.equal(err?.code, 'TOO_MANY_REQUESTS');
    assert.equal(err?.retryAfterS, 1);
    // Claims of the same token are not held back by its control polls.
    assert.deepEqual((await ws[2]!.client.claim(ws[2]!.workerId, { waitS: 0 })).jobs, []);
    assert.deepEqual(await Promise.all(polls), [{ abandon: [] }, { abandon: [] }]);
    const bad = await ws[0]!.client.call('POST', `/workers/${ws[0]!.workerId}/control`, { attempts: 'all', waitS: 1 }).then(
      () => null,
      (e: unknown) => e as ApiError,
    );
    assert.equal(bad?.code, 'INVALID_FIELD');
    const other = await ts.worker({ name: 'not-yours' });
    const foreign = await ws[0]!.client.control(other.workerId, { attempts: [], waitS: 0 }).then(
      () => null,
      (e: unknown) => e as ApiError,
    );
    assert.equal(foreign?.code, 'WORKER_NOT_FOUND');
  });

  it('caps the workers registered with one token (TOO_MANY_WORKERS), by the server or by the token', async () => {
    const token = await ts.server.createWorkerToken('fleet');
    for (const i of [1, 2, 3]) await simulatedWorker(ts.server.url, ts.server.caPem, token, { name: `f${i}` });
    const before = ts.server.model.workers.size;
    const fourth = await simulatedWorker(ts.server.url, ts.server.caPem, token, { name: 'f4' }).catch((e: ApiError) => e);
    assert.equal((fourth as ApiError).code, 'TOO_MANY_WORKERS');
    assert.equal((fourth as ApiError).status, 409);
    assert.equal(ts.server.model.workers.size, before, 'nothing was registered');
    // A token made for one worker (a pilot's, say) takes one.
    const single = await ts.admin.createWorkerToken('single', 1);
    await simulatedWorker(ts.server.url, ts.server.caPem, single.token, { name: 's1' });
    const second = await simulatedWorker(ts.server.url, ts.server.caPem, single.token, { name: 's2' }).catch((e: ApiError) => e);
    assert.equal((second as ApiError).code, 'TOO_MANY_WORKERS');
  });

  it('is still serving after all of it', async () => {
    assert.equal((await ts.anonymous().info()).serverId, ts.server.serverId);
  });
});
