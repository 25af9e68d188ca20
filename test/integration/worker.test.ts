import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { ApiClient, ApiError } from '../../src/client/api/client.js';
import type { ClaimReply, ClaimRequest, HeartbeatReply, HeartbeatRequest, JobView, ResultReply, ResultRequest } from '../../src/core/wire.js';
import { startServer } from '../../src/server/start/server.js';
import { Worker, type WorkerOptions } from '../../src/worker/worker.js';
import { parseLogLines } from '../helpers/server.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

type Server = Awaited<ReturnType<typeof startServer>>;

const tempDirs: string[] = [];
const servers: Server[] = [];
const workers: Worker[] = [];
const clients: ApiClient[] = [];
const children: ChildProcess[] = [];
const pids = new Set<number>();

async function tempDir(prefix = 'cpc-worker-it-'): Promise<string> {
  const d = await fsp.mkdtemp(join(tmpdir(), prefix));
  // Jobs leave their pids here, and run under uids of their own when the tests run as root.
  await fsp.chmod(d, 0o777);
  tempDirs.push(d);
  return d;
}

after(async () => {
  await Promise.all(workers.map((w) => w.stop({ drain: false })));
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await Promise.all(clients.map((c) => c.destroy()));
  await Promise.all(servers.map((s) => s.close()));
  await Promise.all(tempDirs.map((d) => fsp.rm(d, { recursive: true, force: true })));
});

async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await probe();
    if (got !== undefined && got !== false) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(25);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function readPid(path: string): Promise<number> {
  const pid = await waitFor(`a pid in ${path}`, async () => {
    const text = await fsp.readFile(path, 'utf8').catch(() => '');
    return /^\d+\n/.test(text) ? Number(text.trim()) : undefined;
  });
  pids.add(pid);
  return pid;
}

const FINAL = new Set(['done', 'failed', 'cancelled']);

async function finalView(admin: ApiClient, id: string, ms?: number): Promise<JobView> {
  return waitFor(`job ${id} to finish`, async () => {
    const v = await admin.job(id);
    return FINAL.has(v.state) ? v : undefined;
  }, ms);
}

async function stateOf(admin: ApiClient, id: string, state: string): Promise<JobView> {
  return waitFor(`job ${id} to be ${state}`, async () => {
    const v = await admin.job(id);
    return v.state === state ? v : undefined;
  });
}

interface Site {
  server: Server;
  admin: ApiClient;
  workerToken: string;
  home: string;
}

async function startSite(config: { heartbeatIntervalS: number; leaseS?: number }): Promise<Site> {
  const home = await tempDir('cpc-worker-it-home-');
  const server = await startServer({ home, securePort: 0, unsecurePort: 0, host: '127.0.0.1', ...config, log: () => {} });
  servers.push(server);
  const admin = new ApiClient({ url: server.url, caPem: server.caPem, serverId: server.serverId });
  clients.push(admin);
  admin.token = (await admin.login('cpc-admin', server.adminPassword!)).token;
  return { server, admin, workerToken: await server.createWorkerToken('it'), home };
}

function workerClient(site: Site): ApiClient {
  const c = new ApiClient({ url: site.server.url, caPem: site.server.caPem, serverId: site.server.serverId, token: site.workerToken });
  clients.push(c);
  return c;
}

async function startWorker(site: Site, over: Partial<WorkerOptions> = {}): Promise<Worker> {
  const w = new Worker({
    client: workerClient(site),
    name: 'it-worker',
    cores: 2,
    memoryMb: 1024,
    workDir: await tempDir('cpc-worker-it-work-'),
    claimWaitS: 1,
    retryMinMs: 50,
    retryMaxMs: 500,
    ...over,
  });
  workers.push(w);
  await w.start();
  return w;
}

describe('cpc-worker against a real server', () => {
  let site: Site;

  before(async () => {
    site = await startSite({ heartbeatIntervalS: 1 });
    await site.admin.createProject('it');
  });

  it('runs submitted jobs and reports exit codes and output', async () => {
    const workDir = await tempDir('cpc-worker-it-work-');
    const worker = await startWorker(site, { workDir });
    assert.match(worker.id ?? '', /^[0-9a-f-]{36}$/);
    const { ids } = await site.admin.submit('it', [
      { argv: ['sh', '-c', 'echo hi; exit 3'] },
      { shell: 'echo hello; echo warn >&2' },
      { shell: 'echo "$CPC_JOB_ID $CPC_PROJECT $CPC_CORES ${CPC_WORKER_TOKEN:-no-token}"', cores: 2 },
      { argv: ['cpc-no-such-binary-anywhere'] },
      { shell: 'echo started; exec sleep 300', timeoutS: 1 },
    ]);
    const [fails, ok, env, missing, slow] = await Promise.all(ids.map((id) => finalView(site.admin, id)));

    assert.equal(fails!.state, 'failed');
    assert.equal(fails!.exitCode, 3);
    assert.equal(fails!.stdoutTail, 'hi\n');
    assert.equal(fails!.attempts[0]!.how, 'exited');
    assert.equal(fails!.attempts[0]!.workerId, worker.id);

    assert.equal(ok!.state, 'done');
    assert.equal(ok!.exitCode, 0);
    assert.equal(ok!.stdoutTail, 'hello\n');
    assert.equal(ok!.stderrTail, 'warn\n');

    assert.equal(env!.state, 'done');
    assert.equal(env!.stdoutTail, `${ids[2]} it 2 no-token\n`);

    assert.equal(missing!.state, 'failed');
    assert.equal(missing!.attempts[0]!.how, 'start-failed');
    assert.match(missing!.stderrTail ?? '', /cpc-no-such-binary-anywhere/);

    assert.equal(slow!.state, 'failed');
    assert.equal(slow!.attempts[0]!.how, 'timeout');
    assert.equal(slow!.stdoutTail, 'started\n');

    await waitFor('the worker to hold nothing', () => worker.held().length === 0);
    assert.deepEqual(worker.free, { cores: 2, memoryMb: 1024 });
    assert.deepEqual(await fsp.readdir(workDir), [], 'attempt folders are removed once reported');
    await worker.stop({ drain: true });
    await worker.stop({ drain: true });
  });

  it('claims only while it has free cores, and runs what fits at once', async () => {
    const gate = await tempDir();
    const worker = await startWorker(site);
    const wait = `while [ ! -e ${gate}/go ]; do sleep 0.05; done; echo $CPC_JOB_ID`;
    const { ids } = await site.admin.submit('it', [{ shell: wait }, { shell: wait }, { shell: wait }]);
    await waitFor('two jobs running together', () => worker.held().filter((h) => h.phase === 'running').length === 2);
    assert.deepEqual(worker.free.cores, 0);
    const views = await Promise.all(ids.map((id) => site.admin.job(id)));
    assert.deepEqual(views.map((v) => v.state).sort(), ['queued', 'running', 'running']);
    await fsp.writeFile(join(gate, 'go'), '');
    const done = await Promise.all(ids.map((id) => finalView(site.admin, id)));
    assert.deepEqual(done.map((v) => [v.state, v.stdoutTail]), ids.map((id) => ['done', `${id}\n`]));
    await worker.stop({ drain: true });
  });

  it('kills a job cancelled while it runs, within a heartbeat', async () => {
    const dir = await tempDir();
    const worker = await startWorker(site);
    const { ids } = await site.admin.submit('it', [{ shell: `echo $$ > ${dir}/pid; exec sleep 300` }]);
    const pid = await readPid(join(dir, 'pid'));
    await stateOf(site.admin, ids[0]!, 'running');
    assert.ok(isAlive(pid));
    await site.admin.cancel(ids);
    await waitFor('the cancelled job to be killed', () => !isAlive(pid), 5000);
    await waitFor('the worker to forget the attempt', () => worker.held().length === 0, 5000);
    const v = await site.admin.job(ids[0]!);
    assert.equal(v.state, 'cancelled');
    assert.equal(v.exitCode ?? null, null, 'no result was reported for the abandoned attempt');
    await worker.stop({ drain: true });
  });

  it('drains: stop waits for running jobs and their results', async () => {
    const worker = await startWorker(site);
    const { ids } = await site.admin.submit('it', [{ shell: 'sleep 1; echo drained' }]);
    await stateOf(site.admin, ids[0]!, 'running');
    await worker.stop({ drain: true });
    const v = await site.admin.job(ids[0]!);
    assert.equal(v.state, 'done');
    assert.equal(v.stdoutTail, 'drained\n');
  });

  it('stops at once without drain: jobs are killed and not reported', async () => {
    const dir = await tempDir();
    const worker = await startWorker(site, { killGraceMs: 200 });
    const { ids } = await site.admin.submit('it', [{ shell: `echo $$ > ${dir}/pid; exec sleep 300` }]);
    const pid = await readPid(join(dir, 'pid'));
    await stateOf(site.admin, ids[0]!, 'running');
    await worker.stop({ drain: false });
    assert.equal(isAlive(pid), false);
    assert.equal((await site.admin.job(ids[0]!)).state, 'running', 'the lease runs out on its own');
    await site.admin.cancel(ids);
  });

  it('runs as its own process from the command line', async () => {
    const dir = await tempDir();
    const caFile = join(dir, 'ca.pem');
    await fsp.writeFile(caFile, site.server.caPem);
    const workDir = join(dir, 'work');
    const built = join(ROOT, 'dist/bin/cpc-worker.js');
    const entry = existsSync(built) ? [built] : ['--import', 'tsx', join(ROOT, 'bin/cpc-worker.ts')];
    const child = spawn(
      process.execPath,
      [...entry, '--server', site.server.url, '--ca', caFile, '--server-id', site.server.serverId, '--cores', '1', '--memory', '512', '--work-dir', workDir, '--name', 'from-cli', '--claim-wait', '1'],
      { cwd: ROOT, env: { ...process.env, CPC_WORKER_TOKEN: site.workerToken }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    children.push(child);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));

    await waitFor('the worker to register', () => /registered as/.test(stderr), 20_000);
    // The servers' log format: one JSON object a line.
    const registered = parseLogLines(stderr).find((l) => /^registered as /.test(String(l.msg)));
    assert.ok(registered, stderr);
    assert.equal(registered.level, 'info');
    assert.match(String(registered.time), /^\d{4}-\d\d-\d\dT[\d:.]+Z$/);
    assert.match(String(registered.msg), /^registered as [0-9a-f-]{36} with 1 cores \/ 512 MB$/);
    const { ids } = await site.admin.submit('it', [{ shell: 'echo "from the cli ${CPC_WORKER_TOKEN:-without a token}"' }]);
    const v = await finalView(site.admin, ids[0]!);
    assert.equal(v.state, 'done');
    assert.equal(v.stdoutTail, 'from the cli without a token\n');
    assert.equal(v.attempts[0]!.workerName, 'from-cli');
    assert.doesNotMatch(stderr, new RegExp(site.workerToken), 'the token is never logged');

    child.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
    assert.ok(parseLogLines(stderr).some((l) => l.level === 'info' && l.msg === 'stopped'), stderr);
  });

  it('exits 2 with one line on a bad flag', async () => {
    const entry = ['--import', 'tsx', join(ROOT, 'bin/cpc-worker.ts')];
    const child = spawn(process.execPath, [...entry, '--server', site.server.url, '--cores', 'many'], {
      cwd: ROOT,
      env: { ...process.env, CPC_WORKER_TOKEN: 'x' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    children.push(child);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    assert.equal(code, 2);
    assert.equal(stderr.trim().split('\n').length, 1, stderr);
    assert.match(stderr, /--cores/);
  });
});

/** The real client, with failures injected in front of chosen calls. */
class FaultyClient extends ApiClient {
  resultFaults: ApiError[] = [];
  heartbeatFaults: ApiError[] = [];
  /** Faults for claims that carry results. */
  claimFaults: ApiError[] = [];
  resultCalls = 0;
  claimsWithResults = 0;
  /** The next result sent with a claim names an attempt that does not exist. */
  misnumberNextResult = false;

  override claim(workerId: string, req: ClaimRequest, signal?: AbortSignal): Promise<ClaimReply> {
    if (!req.results?.length) return super.claim(workerId, req, signal);
    this.claimsWithResults++;
    if (this.misnumberNextResult) {
      this.misnumberNextResult = false;
      req = { ...req, results: [{ ...req.results[0]!, attempt: 99 }, ...req.results.slice(1)] };
    }
    const fault = this.claimFaults.shift();
    return fault ? Promise.reject(fault) : super.claim(workerId, req, signal);
  }

  override result(workerId: string, req: ResultRequest): Promise<ResultReply> {
    this.resultCalls++;
    const fault = this.resultFaults.shift();
    return fault ? Promise.reject(fault) : super.result(workerId, req);
  }

  override heartbeat(workerId: string, req: HeartbeatRequest): Promise<HeartbeatReply> {
    const fault = this.heartbeatFaults.shift();
    return fault ? Promise.reject(fault) : super.heartbeat(workerId, req);
  }
}

describe('cpc-worker when things go wrong', () => {
  let site: Site;

  before(async () => {
    site = await startSite({ heartbeatIntervalS: 1 });
    await site.admin.createProject('faults');
  });

  function faultyClient(): FaultyClient {
    const c = new FaultyClient({ url: site.server.url, caPem: site.server.caPem, serverId: site.server.serverId, token: site.workerToken });
    clients.push(c);
    return c;
  }

  it('retries a result until the server takes it', async () => {
    const client = faultyClient();
    client.resultFaults = [
      new ApiError('UNREACHABLE', 'connection refused'),
      new ApiError('SHUTTING_DOWN', 'restarting', 503),
      new ApiError('TIMEOUT', 'no answer'),
    ];
    const worker = await startWorker(site, { client, resultsWithClaims: false });
    const { ids } = await site.admin.submit('faults', [{ shell: 'echo persistent' }]);
    const v = await finalView(site.admin, ids[0]!);
    assert.equal(v.state, 'done');
    assert.equal(v.stdoutTail, 'persistent\n');
    assert.equal(client.resultCalls, 4);
    await worker.stop({ drain: true });
  });

  it('drops a result the server has settled without it, and goes on', async () => {
    const client = faultyClient();
    client.resultFaults = [new ApiError('STALE_ATTEMPT', 'attempt 1 is no longer current', 409)];
    const worker = await startWorker(site, { client, cores: 1, resultsWithClaims: false });
    const { ids } = await site.admin.submit('faults', [{ shell: 'echo first' }]);
    await waitFor('the refused result to be dropped', () => client.resultCalls === 1 && worker.held().length === 0);
    // The server never heard of the result: the job's lease runs out and it runs again.
    const v = await finalView(site.admin, ids[0]!);
    assert.equal(v.state, 'done');
    assert.equal(v.attempts.length, 2);
    assert.equal(v.attempts[0]!.how, 'lease-expired');
    assert.equal(client.resultCalls, 2);
    await worker.stop({ drain: true });
  });

  it('sends results with its next claim, one request for both, and alone when that claim fails', async () => {
    const client = faultyClient();
    const worker = await startWorker(site, { client, cores: 1 });
    const { ids } = await site.admin.submit('faults', [{ shell: 'echo a' }, { shell: 'echo b' }, { shell: 'echo c' }]);
    for (const id of ids) assert.equal((await finalView(site.admin, id)).state, 'done');
    assert.equal(client.resultCalls, 0, 'every result went with a claim');
    assert.ok(client.claimsWithResults >= 2, `${client.claimsWithResults} claims carried results`);
    // A claim that fails with results aboard: they go alone, and nothing is lost.
    client.claimFaults = [new ApiError('UNREACHABLE', 'connection refused')];
    const { ids: more } = await site.admin.submit('faults', [{ shell: 'echo d' }, { shell: 'echo e' }]);
    for (const id of more) assert.equal((await finalView(site.admin, id)).state, 'done');
    assert.ok(client.resultCalls >= 1, 'the result of the failed claim was sent alone');
    await worker.stop({ drain: true });
  });

  it('drops a result refused with its claim, and goes on', async () => {
    const client = faultyClient();
    client.misnumberNextResult = true;
    const worker = await startWorker(site, { client, cores: 1 });
    const { ids } = await site.admin.submit('faults', [{ shell: 'echo once' }]);
    // The server refuses the misnumbered result for good; the worker drops it, and the lease runs out.
    const v = await finalView(site.admin, ids[0]!);
    assert.equal(v.state, 'done');
    assert.equal(v.attempts.length, 2);
    assert.equal(v.attempts[0]!.how, 'lease-expired');
    assert.equal(client.resultCalls, 0, 'the refused result was not sent again alone');
    await worker.stop({ drain: true });
  });

  it('registers again when the server does not know it, and kills what it ran before', async () => {
    const dir = await tempDir();
    const client = faultyClient();
    const worker = await startWorker(site, { client, cores: 1, killGraceMs: 200 });
    const firstId = worker.id!;
    const { ids } = await site.admin.submit('faults', [{ shell: `echo $CPC_ATTEMPT >> ${dir}/runs; echo $$ > ${dir}/pid.$CPC_ATTEMPT; sleep 300` }]);
    const pid = await readPid(join(dir, 'pid.1'));
    client.heartbeatFaults = [new ApiError('WORKER_NOT_FOUND', 'register again', 404)];
    await waitFor('a new registration', () => worker.id !== undefined && worker.id !== firstId);
    await waitFor('the old attempt to be killed', () => !isAlive(pid), 5000);
    // Its lease runs out on the server, and the new registration gets the job back.
    const pid2 = await readPid(join(dir, 'pid.2'));
    const v = await stateOf(site.admin, ids[0]!, 'running');
    assert.equal(v.attempts.length, 2);
    assert.equal(v.attempts[1]!.workerId, worker.id);
    assert.ok(isAlive(pid2));
    await site.admin.cancel(ids);
    await waitFor('the cancelled attempt to be killed', () => !isAlive(pid2), 5000);
    await worker.stop({ drain: true });
  });

  it('stops with an error when its token is revoked, killing its jobs', async () => {
    const dir = await tempDir();
    const { token, id: tokenId } = await site.admin.createWorkerToken('short-lived');
    const client = new ApiClient({ url: site.server.url, caPem: site.server.caPem, serverId: site.server.serverId, token });
    clients.push(client);
    const worker = await startWorker(site, { client, killGraceMs: 200 });
    const { ids } = await site.admin.submit('faults', [{ shell: `echo $$ > ${dir}/pid; exec sleep 300` }]);
    const pid = await readPid(join(dir, 'pid'));
    await site.admin.revokeWorkerToken(tokenId);
    await assert.rejects(worker.wait(), (err: ApiError) => err.code === 'UNAUTHENTICATED');
    assert.equal(isAlive(pid), false);
    await site.admin.cancel(ids);
  });

  it('refuses to start with a bad token', async () => {
    const client = new ApiClient({ url: site.server.url, caPem: site.server.caPem, serverId: site.server.serverId, token: 'not-a-token' });
    clients.push(client);
    const worker = new Worker({ client, name: 'bad', cores: 1, memoryMb: 0, workDir: await tempDir() });
    workers.push(worker);
    await assert.rejects(worker.start(), (err: ApiError) => err.code === 'UNAUTHENTICATED');
    await assert.rejects(worker.wait(), (err: ApiError) => err.code === 'UNAUTHENTICATED');
  });
});

describe('cpc-worker across a server restart', () => {
  it('keeps running jobs through the restart and reports them when the server is back', async () => {
    // The outage outlasts the lease: only a prompt heartbeat after the restart keeps the attempt.
    const site = await startSite({ heartbeatIntervalS: 1, leaseS: 2 });
    await site.admin.createProject('restart');
    const dir = await tempDir();
    const worker = await startWorker(site, { cores: 1, retryMinMs: undefined, retryMaxMs: undefined });
    const { ids } = await site.admin.submit('restart', [{ shell: `echo $$ > ${dir}/pid; sleep 6; echo survived` }]);
    const pid = await readPid(join(dir, 'pid'));
    await stateOf(site.admin, ids[0]!, 'running');

    const port = site.server.securePort;
    await site.server.close();
    await delay(3000);
    assert.ok(isAlive(pid), 'the job keeps running while the server is away');
    const again = await startServer({ home: site.home, securePort: port, unsecurePort: 0, host: '127.0.0.1', heartbeatIntervalS: 1, leaseS: 2, log: () => {} });
    servers.push(again);
    const back = Date.now();

    // Start-up gave the lease one period (2 s) from then; only a heartbeat pushes it past back + leaseS.
    await waitFor('a heartbeat after the restart', async () => {
      const { leases } = await site.admin.heartbeats();
      return leases.some((l) => l.jobId === ids[0] && l.deadline >= back + 2000);
    }, 20_000);
    const renewedAfter = Date.now() - back;
    assert.ok(renewedAfter < 2000, `the first heartbeat after the restart came ${renewedAfter} ms late, after the lease`);

    const v = await finalView(site.admin, ids[0]!, 20_000);
    assert.equal(v.state, 'done');
    assert.equal(v.stdoutTail, 'survived\n');
    assert.equal(v.attempts.length, 1, 'the job was not re-run');
    await worker.stop({ drain: true });
  });
});
