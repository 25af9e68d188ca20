/**
 * Live logs with real servers, workers and cpcc: a job's output reaches its
 * server while it runs; `cpcc logs` shows what has arrived; `cpcc logs -f`
 * prints every line once, in order, across a server restart, and follows a
 * job that runs on a peer's worker; a worker cannot write into an attempt
 * that is not its own; a lost attempt keeps what it printed.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ApiClient } from '../../src/client/api/client.js';
import { updateConfig } from '../../src/client/config.js';
import { fingerprint } from '../../src/federation/certificates.js';
import { connect, linkUp, startSite, stopSite, type Site } from '../helpers/federation.js';
import {
  adminPasswordOf,
  cleanup,
  cpcc,
  freePort,
  loginAdmin,
  makeClient,
  simulatedWorker,
  spawnServer,
  spawnWorker,
  tempDir,
  until,
  type ServerProcess,
  type WorkerProcess,
} from '../helpers/server.js';

after(cleanup);

/** A cpcc settings folder logged in to a server as cpc-admin, with `project` current. */
async function cpccFor(url: string, serverId: string, caPem: string, token: string, project: string): Promise<string> {
  const home = await tempDir('cpcc-live-');
  await updateConfig(home, (c) => {
    c.servers.here = { url, serverId, caPem, caFingerprint: fingerprint(caPem), user: 'cpc-admin', token, project };
    c.current = 'here';
  });
  return home;
}

/**
 * A job that prints lines `from`..`to` of `line-N`, then waits for a file
 * named `go<phase>` in `gates` before the next group: the test decides
 * when more output comes.
 */
function gatedJob(gates: string, groups: [number, number][]): string {
  const parts = groups.map(([from, to], i) => {
    const wait = i < groups.length - 1 ? `while [ ! -e ${gates}/go${i + 1} ]; do sleep 0.05; done; ` : '';
    return `for i in $(seq ${from} ${to}); do echo "line-$i"; done; ${wait}`;
  });
  return parts.join('');
}

const numbered = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `line-${from + i}`).join('\n') + '\n';

async function tokenFile(token: string): Promise<string> {
  const file = join(await tempDir('cpc-live-token-'), 'token');
  writeFileSync(file, token, { mode: 0o600 });
  return file;
}

describe('live logs on one server', () => {
  let home: string;
  let port: number;
  let unsecurePort: number;
  let srv: ServerProcess;
  let admin: ApiClient;
  let worker: WorkerProcess;
  let cpccHome: string;
  let gates: string;

  before(async () => {
    home = await tempDir('cpc-live-');
    port = await freePort();
    unsecurePort = await freePort();
    srv = await spawnServer(home, { port, unsecurePort, heartbeatIntervalS: 1 });
    admin = await loginAdmin(srv.info.url, srv.caPem, adminPasswordOf(home));
    await admin.createProject('p');
    const { token } = await admin.createWorkerToken('w', undefined, 'cpc-admin');
    worker = spawnWorker({
      url: srv.info.url,
      caFile: join(home, 'identity', 'ca.pem'),
      serverId: srv.info.serverId,
      token,
      name: 'w',
      cores: 2,
      workDir: await tempDir('cpc-live-work-'),
      claimWaitS: 2,
      args: ['--isolation', 'none', '--token-file', await tokenFile(token)],
    });
    await until('the worker to register', () => /registered as/.test(worker.stderr()), { timeoutMs: 30_000 });
    cpccHome = await cpccFor(srv.info.url, srv.info.serverId, srv.caPem, admin.token!, 'p');
    gates = await tempDir('cpc-live-gates-');
    chmodSync(gates, 0o755);
  });

  it('shows early lines while the job runs, and -f prints every line once, in order, across a server restart', async () => {
    const [id] = (await admin.submit('p', [{ shell: gatedJob(gates, [[1, 5], [6, 10], [11, 15]]) }])).ids as [string];
    // While the job waits at its first gate, what it printed is there already.
    const early = await until(
      'cpcc logs to show the first lines while the job runs',
      async () => {
        const r = await cpcc(cpccHome, ['logs', id]);
        return r.code === 0 && r.stdout.includes('line-5') ? r.stdout : null;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    assert.equal(early, numbered(1, 5));
    assert.equal((await admin.job(id)).state, 'running');

    const follow = cpcc(cpccHome, ['logs', '-f', id]);
    let printed = '';
    follow.child.stdout!.on('data', (d: Buffer) => (printed += d.toString()));
    await until('logs -f to print the first lines', () => printed.includes('line-5'), { timeoutMs: 30_000 });
    writeFileSync(join(gates, 'go1'), '');
    await until('logs -f to print lines 6 to 10 as they come', () => printed.includes('line-10'), { timeoutMs: 30_000 });
    assert.equal((await admin.job(id)).state, 'running');

    // The server goes away; the job goes on printing meanwhile; the server comes back on the same home and port.
    assert.equal((await srv.stop('SIGKILL')).signal, 'SIGKILL');
    writeFileSync(join(gates, 'go2'), '');
    srv = await spawnServer(home, { port, unsecurePort, heartbeatIntervalS: 1 });
    admin = makeClient(srv.info.url, srv.caPem, admin.token!, srv.info.serverId);

    const ended = await follow;
    assert.equal(ended.code, 0, ended.stderr);
    assert.equal(ended.stdout, numbered(1, 15), 'every line exactly once, in order');
    assert.equal((await admin.job(id)).state, 'done');
    // And the stored log is the same, whole.
    const r = await cpcc(cpccHome, ['logs', id]);
    assert.equal(r.stdout, numbered(1, 15));
    const tail = await cpcc(cpccHome, ['logs', id, '--tail', '2']);
    assert.equal(tail.stdout, 'line-14\nline-15\n');
  });

  it('-f --tail N prints the last N lines, then follows; --stderr follows the other stream', async () => {
    const shell = `${gatedJob(gates + '/t', [[1, 6], [7, 9]])} echo oops >&2`;
    mkdirSync(join(gates, 't'), { mode: 0o755 });
    const [id] = (await admin.submit('p', [{ shell }])).ids as [string];
    await until(
      'the first lines to arrive',
      async () => ((await cpcc(cpccHome, ['logs', id])).stdout.includes('line-6') ? true : null),
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    const follow = cpcc(cpccHome, ['logs', '-f', '--tail', '2', id]);
    const errs = cpcc(cpccHome, ['logs', '-f', '--stderr', id]);
    let printed = '';
    follow.child.stdout!.on('data', (d: Buffer) => (printed += d.toString()));
    await until('logs -f --tail to print the last lines', () => printed.includes('line-6'), { timeoutMs: 30_000 });
    writeFileSync(join(gates, 't', 'go1'), '');
    const [out, err] = await Promise.all([follow, errs]);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stdout, 'line-5\nline-6\n' + numbered(7, 9));
    assert.equal(err.stdout, 'oops\n');
  });

  it('-f follows a retried job on to its next attempt', async () => {
    const gate = join(gates, 'retry');
    const [id] = (
      await admin.submit('p', [
        { shell: `if [ "$CPC_ATTEMPT" = 1 ]; then echo "first try"; while [ ! -e ${gate} ]; do sleep 0.05; done; exit 3; fi; echo "second try"`, maxRetries: 1 },
      ])
    ).ids as [string];
    await until(
      'the first attempt to print',
      async () => ((await cpcc(cpccHome, ['logs', id])).stdout.includes('first try') ? true : null),
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    const follow = cpcc(cpccHome, ['logs', '-f', id]);
    let printed = '';
    follow.child.stdout!.on('data', (d: Buffer) => (printed += d.toString()));
    await until('logs -f to print the first attempt', () => printed.includes('first try'), { timeoutMs: 30_000 });
    writeFileSync(gate, '');
    const r = await follow;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'first try\nsecond try\n');
    assert.match(r.stderr, /--- attempt 2 ---/);
    const job = await admin.job(id);
    assert.equal(job.state, 'done');
    assert.equal(job.attempts.length, 2);
  });

  it('refuses a chunk from a worker that does not hold the attempt (STALE_ATTEMPT), and writes nothing', async () => {
    mkdirSync(join(gates, 's'), { mode: 0o755 });
    const [id] = (await admin.submit('p', [{ shell: gatedJob(gates + '/s', [[1, 3], [4, 4]]) }])).ids as [string];
    await until('the job to run', async () => ((await admin.job(id)).state === 'running' ? true : null), { timeoutMs: 30_000 });
    const { token } = await admin.createWorkerToken('intruder', undefined, 'cpc-admin');
    const intruder = await simulatedWorker(srv.info.url, srv.caPem, token, { name: 'intruder' });
    const data = Buffer.from('forged\n').toString('base64');
    const reply = await intruder.client.logChunks(intruder.workerId, {
      chunks: [
        { jobId: id, attempt: 1, stream: 'stdout', offset: 0, data },
        { jobId: id, attempt: 1, stream: 'stdout', offset: 1_000_000, data },
        { jobId: id, attempt: 2, stream: 'stderr', offset: 0, data },
      ],
    });
    assert.deepEqual(
      reply.results.map((r) => ('error' in r ? r.error.code : 'stored')),
      ['STALE_ATTEMPT', 'STALE_ATTEMPT', 'STALE_ATTEMPT'],
    );
    const gatesS = join(gates, 's');
    await until('the job to print its lines', async () => ((await admin.logPart(id, { offset: 0 })).text.includes('line-3') ? true : null), {
      timeoutMs: 30_000,
    });
    writeFileSync(join(gatesS, 'go1'), '');
    await until('the job to end', async () => ((await admin.job(id)).state === 'done' ? true : null), { timeoutMs: 30_000 });
    assert.equal(await admin.logs(id), numbered(1, 4), 'nothing of the forged chunk in the log');
    assert.equal(await admin.logs(id, { stream: 'stderr' }), '');
  });

  it('counts reads waiting for output against a limit per user, and lets them go when the attempt ends', async () => {
    mkdirSync(join(gates, 'w'), { mode: 0o755 });
    const [id] = (await admin.submit('p', [{ shell: gatedJob(gates + '/w', [[1, 1], [2, 2]]) }])).ids as [string];
    await until('the job to run', async () => ((await admin.job(id)).state === 'running' ? true : null), { timeoutMs: 30_000 });
    // Three clients of 16 connections each: every read reaches the server at once.
    const clients = [0, 1, 2].map(() => makeClient(srv.info.url, srv.caPem, admin.token!, srv.info.serverId));
    const waiting = Array.from({ length: 32 }, (_, i) => clients[i % 2]!.logPart(id, { offset: 1_000_000, wait: 60 }));
    const refused = await until(
      'the 33rd waiting read to be refused',
      async () => {
        try {
          await clients[2]!.logPart(id, { offset: 1_000_000, wait: 60 });
          return null;
        } catch (err) {
          return (err as { code?: string }).code;
        }
      },
      { timeoutMs: 30_000 },
    );
    assert.equal(refused, 'TOO_MANY_REQUESTS');
    writeFileSync(join(gates, 'w', 'go1'), '');
    const parts = await Promise.all(waiting);
    assert.ok(parts.every((p) => !p.running), 'the reads ended when the attempt did');
    assert.equal((await clients[2]!.logPart(id, { offset: 0, wait: 5 })).text, numbered(1, 2));
  });

  it('keeps what a lost attempt printed before it was lost', async () => {
    await admin.createProject('lost');
    const { token } = await admin.createWorkerToken('sim-lost', undefined, 'cpc-admin');
    // A worker that is only an API client claims the job, sends some output, and is then declared lost.
    const sim = await simulatedWorker(srv.info.url, srv.caPem, token, { name: 'sim-lost', cores: 64 });
    const [id] = (await admin.submit('lost', [{ argv: ['true'], cores: 64 }])).ids as [string];
    const { jobs } = await sim.client.claim(sim.workerId, { waitS: 5 });
    assert.deepEqual(jobs.map((j) => j.id), [id]);
    const text = 'step 1 of 3\nstep 2 of 3\n';
    const reply = await sim.client.logChunks(sim.workerId, { chunks: [{ jobId: id, attempt: 1, stream: 'stdout', offset: 0, data: Buffer.from(text).toString('base64') }] });
    assert.deepEqual(reply.results, [{ end: Buffer.byteLength(text) }]);
    // A repeat changes nothing.
    const again = await sim.client.logChunks(sim.workerId, { chunks: [{ jobId: id, attempt: 1, stream: 'stdout', offset: 0, data: Buffer.from(text).toString('base64') }] });
    assert.deepEqual(again.results, [{ end: Buffer.byteLength(text) }]);
    await admin.markWorkerLost(sim.workerId);
    await until('the attempt to be lost', async () => ((await admin.job(id)).attempts[0]?.how === 'worker-lost' ? true : null), { timeoutMs: 10_000 });
    const r = await cpcc(cpccHome, ['logs', id, '--attempt', '1']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, text);
  });
});

describe('live logs of a job delegated to a peer', () => {
  let a: Site;
  let b: Site;
  let worker: WorkerProcess;

  before(async () => {
    [a, b] = await Promise.all([startSite('a'), startSite('b')]);
    await connect(a, b);
    await linkUp(a, b);
    await b.admin.createProject('p');
  });

  after(async () => {
    await worker?.stop('SIGTERM');
    await Promise.all([a, b].filter(Boolean).map((s) => stopSite(s)));
  });

  it('cpcc logs -f at home prints the lines of a job running on the peer’s worker as they come', async () => {
    const gates = await tempDir('cpc-live-gates-');
    chmodSync(gates, 0o755);
    worker = spawnWorker({
      url: a.url,
      caFile: join(a.home, 'identity', 'ca.pem'),
      serverId: a.serverId,
      token: a.workerToken,
      name: 'wa',
      cores: 1,
      workDir: await tempDir('cpc-live-work-'),
      claimWaitS: 2,
      args: ['--isolation', 'none', '--shared-identity', '--token-file', await tokenFile(a.workerToken)],
    });
    const [id] = (await b.admin.submit('p', [{ shell: gatedJob(gates, [[1, 4], [5, 8]]) }])).ids as [string];
    const home = await cpccFor(b.url, b.serverId, b.caPem, b.admin.token!, 'p');
    const follow = cpcc(home, ['logs', '-f', id]);
    let printed = '';
    follow.child.stdout!.on('data', (d: Buffer) => (printed += d.toString()));
    await until('logs -f at home to print the lines printed on the peer’s worker', () => printed.includes('line-4'), { timeoutMs: 45_000 });
    const running = await b.admin.job(id);
    assert.equal(running.state, 'running');
    assert.equal(running.attempts[0]!.via, a.serverId, 'the job runs on the peer');
    assert.ok(!existsSync(join(gates, 'go1')));
    // Another worker of the borrowing server cannot write into the attempt; nothing of it reaches home.
    const intruder = await simulatedWorker(a.url, a.caPem, await a.server!.createWorkerToken('intruder'), { name: 'intruder' });
    const refused = await intruder.client.logChunks(intruder.workerId, {
      // Past the end: were it taken, the log would jump to it.
      chunks: [{ jobId: id, attempt: 1, stream: 'stdout', offset: 1_000_000, data: Buffer.from('forged\n').toString('base64') }],
    });
    assert.deepEqual(refused.results.map((r) => ('error' in r ? r.error.code : 'stored')), ['STALE_ATTEMPT']);
    writeFileSync(join(gates, 'go1'), '');
    const ended = await follow;
    assert.equal(ended.code, 0, ended.stderr);
    assert.equal(ended.stdout, numbered(1, 8));
  });
});
