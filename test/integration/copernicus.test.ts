/**
 * The Copernicus names in cpcc: aliases (r, cd, pwd and the older p, q, h,
 * s, cs), running, worker-failed, command-failed, ping, version, network and
 * stop-server. cpcc runs in this process through its `main` with captured
 * streams, against real servers on port 0.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ApiError, type ApiClient } from '../../src/client/api/client.js';
import { buildProgram } from '../../src/client/cli.js';
import { packageVersion } from '../../src/common/version.js';
import { linkedSites, stopSite, type Site } from '../helpers/federation.js';
import {
  adminPasswordOf,
  cleanup,
  cpccInProcess,
  makeClient,
  readJournalRecords,
  resultOf,
  spawnServer,
  startTestServer,
  tempDir,
  until,
  type TestServer,
} from '../helpers/server.js';

type Run = Awaited<ReturnType<typeof cpccInProcess>>;
const cpcc = cpccInProcess;

function ok<T = any>(run: Run): T {
  assert.equal(run.code, 0, `expected exit 0, got ${run.code}; stderr: ${run.stderr}`);
  return JSON.parse(run.stdout) as T;
}

function failsWith(run: Run, code: number, pattern: RegExp): void {
  assert.equal(run.code, code, `expected exit ${code}, got ${run.code}; stdout: ${run.stdout} stderr: ${run.stderr}`);
  const lines = run.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `one line on stderr, got: ${run.stderr}`);
  assert.match(lines[0]!, /^cpcc: /);
  assert.match(lines[0]!, pattern);
  assert.equal(run.stdout, '');
}

/** A cpcc home that trusts `url`'s server and is logged in as `user`. */
async function cpccHome(unsecurePort: number, user: string, password: string): Promise<string> {
  const home = await tempDir('cpcc-copernicus-');
  ok(await cpcc(home, ['--json', 'add-server', '127.0.0.1', String(unsecurePort), '--yes', '--name', 'here']));
  ok(await cpcc(home, ['--json', 'login', user, '--password-stdin'], `${password}\n`));
  return home;
}

async function expectApiError(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => err instanceof ApiError && err.code === code);
}

describe('Copernicus names', () => {
  let ts: TestServer;
  let admin: string;
  let bob: string;
  let bobApi: ApiClient;

  before(async () => {
    ts = await startTestServer();
    await ts.admin.addUser('bob', 'bob-password');
    await ts.admin.addUser('eve', 'eve-password');
    admin = await cpccHome(ts.server.unsecurePort, 'cpc-admin', ts.adminPassword);
    bob = await cpccHome(ts.server.unsecurePort, 'bob', 'bob-password');
    bobApi = makeClient(ts.server.url, ts.server.caPem);
    bobApi.token = (await bobApi.login('bob', 'bob-password')).token;
  });
  after(cleanup);

  it('knows every Copernicus name as the command it stands for', () => {
    const program = buildProgram();
    const byAlias = new Map<string, string>();
    for (const cmd of program.commands) for (const alias of cmd.aliases()) byAlias.set(alias, cmd.name());
    assert.deepEqual(
      Object.fromEntries(['p', 'q', 'r', 'h', 's', 'cs', 'cd'].map((a) => [a, byAlias.get(a)])),
      { p: 'projects', q: 'queue', r: 'running', h: 'heartbeats', s: 'status', cs: 'connected-servers', cd: 'use' },
    );
    const names = new Set(program.commands.map((c) => c.name()));
    for (const name of ['pwd', 'running', 'worker-failed', 'command-failed', 'stop-server', 'ping', 'version', 'network']) {
      assert.ok(names.has(name), name);
    }
  });

  it('cd makes a project current and pwd shows the server and project', async () => {
    const home = await cpccHome(ts.server.unsecurePort, 'cpc-admin', ts.adminPassword);
    assert.deepEqual(ok(await cpcc(home, ['--json', 'pwd'])).project, null);
    const none = await cpcc(home, ['pwd']);
    assert.match(none.stdout, /^server: +here \(https:\/\/127\.0\.0\.1:\d+\)\nproject: +\(none/);
    ok(await cpcc(home, ['--json', 'start', 'nav-a']));
    ok(await cpcc(home, ['--json', 'start', 'nav-b']));
    assert.equal(ok(await cpcc(home, ['--json', 'cd', 'nav-a'])).name, 'nav-a');
    assert.deepEqual(ok(await cpcc(home, ['--json', 'pwd'])), { server: 'here', url: ts.server.url, serverId: ts.server.serverId, project: 'nav-a' });
    assert.match((await cpcc(home, ['pwd'])).stdout, /project: +nav-a\n$/);
    // -p names a project for one command only.
    assert.equal(ok(await cpcc(home, ['--json', '-p', 'nav-b', 'pwd'])).project, 'nav-b');
    failsWith(await cpcc(home, ['cd', 'no-such-project']), 1, /PROJECT_NOT_FOUND/);
    assert.equal(ok(await cpcc(home, ['--json', 'pwd'])).project, 'nav-a', 'a refused cd changes nothing');
  });

  it('running lists the running jobs of the current project (or all visible) with worker and elapsed time', async () => {
    ok(await cpcc(admin, ['--json', 'start', 'run-a']));
    ok(await cpcc(bob, ['--json', 'start', 'run-b']));
    const [a1, a2, a3] = (await ts.admin.submit('run-a', [{ argv: ['sleep', '1'] }, { argv: ['sleep', '2'], name: 'second' }, { argv: ['sleep', '3'] }])).ids;
    const [b1] = (await bobApi.submit('run-b', [{ argv: ['true'] }])).ids;
    const w = await ts.worker({ name: 'runner', cores: 4 });
    const claimed = (await w.client.claim(w.workerId, { waitS: 0, max: 3 })).jobs.map((j) => j.id);
    assert.equal(claimed.length, 3);

    const mine = ok<{ jobs: { id: string; project: string; state: string; attempts: { workerName: string }[] }[] }>(
      await cpcc(admin, ['--json', 'running']),
    );
    const runningA = claimed.filter((id) => [a1, a2, a3].includes(id));
    assert.deepEqual(new Set(mine.jobs.map((j) => j.id)), new Set(runningA));
    assert.ok(mine.jobs.every((j) => j.project === 'run-a' && j.state === 'running' && j.attempts.at(-1)!.workerName === 'runner'));

    const all = ok<{ jobs: { id: string }[] }>(await cpcc(admin, ['--json', 'r', '--all']));
    assert.deepEqual(new Set(all.jobs.map((j) => j.id)), new Set(claimed));
    // Bob sees his own project's running job, never the admin's.
    const bobs = ok<{ jobs: { id: string }[] }>(await cpcc(bob, ['--json', 'running', '--all']));
    assert.deepEqual(bobs.jobs.map((j) => j.id), claimed.filter((id) => id === b1));
    failsWith(await cpcc(bob, ['running', '-p', 'run-a']), 1, /PROJECT_NOT_FOUND/);

    const text = await cpcc(admin, ['r']);
    assert.equal(text.code, 0, text.stderr);
    const [head, ...rows] = text.stdout.trimEnd().split('\n');
    assert.match(head!, /^id +name +command +try +worker +elapsed$/);
    assert.equal(rows.length, runningA.length);
    for (const row of rows) assert.match(row, /sleep \d +1 +runner +(\d+ms|\d+(\.\d)?s)$/);
    assert.match((await cpcc(admin, ['r', '--all'])).stdout.split('\n')[0]!, /^id +project +name/);
    const limited = await cpcc(admin, ['running', '--all', '--limit', '1']);
    // The footer is for people: on stderr, so that the rows alone go down a pipe.
    assert.match(limited.stderr, /at most 1 shown/);
    assert.doesNotMatch(limited.stdout, /at most/);
    ok(await cpcc(admin, ['--json', 'start', 'run-empty']));
    assert.match((await cpcc(admin, ['running'])).stdout, /no running jobs in 'run-empty'/);

    // Nothing is left running or queued for the tests below.
    const rest = (await w.client.claim(w.workerId, { waitS: 0 })).jobs.map((j) => j.id);
    for (const id of [...claimed, ...rest]) await w.client.result(w.workerId, resultOf(id, 1));
  });

  it('worker-failed takes back every attempt of the worker now; its late reports are stale', async () => {
    ok(await cpcc(admin, ['--json', 'start', 'wf']));
    const ids = (await ts.admin.submit('wf', [{ argv: ['a'] }, { argv: ['b'] }])).ids;
    const w = await ts.worker({ name: 'doomed', cores: 2 });
    const claimed = (await w.client.claim(w.workerId, { waitS: 0 })).jobs;
    assert.deepEqual(new Set(claimed.map((j) => j.id)), new Set(ids));
    assert.equal(ts.server.model.leases.countOfWorker(w.workerId), 2);

    failsWith(await cpcc(bob, ['worker-failed', w.workerId]), 1, /FORBIDDEN/);
    const reply = ok<{ lost: { jobId: string; attempt: number; state: string }[]; foreign: unknown[] }>(
      await cpcc(admin, ['--json', 'worker-failed', w.workerId]),
    );
    assert.deepEqual(new Set(reply.lost.map((l) => l.jobId)), new Set(ids));
    assert.ok(reply.lost.every((l) => l.attempt === 1 && l.state === 'queued'));
    assert.deepEqual(reply.foreign, []);
    for (const id of ids) {
      const job = await ts.admin.job(id);
      assert.equal(job.state, 'queued');
      assert.equal(job.attempts[0]!.how, 'worker-lost');
      assert.match(job.attempts[0]!.reason!, /marked lost by cpc-admin/);
      // The worker may still run it: the job waits for its word, or for the lease.
      assert.equal(job.attempts[0]!.live, 'stopping');
      assert.equal(job.reason, 'waiting for attempt 1 to stop on worker doomed');
    }
    assert.equal(ts.server.model.leases.countOfWorker(w.workerId), 2, 'its leases stay, stopping, until it confirms');
    const lost = readJournalRecords(ts.home).filter((r) => r.t === 'attempts-lost' && r.how === 'worker-lost');
    assert.equal(lost.length, 1, 'journaled as one attempts-lost event');

    // The worker comes back: told to abandon, its results refused.
    const beat = await w.client.heartbeat(w.workerId, { attempts: ids.map((jobId) => ({ jobId, attempt: 1 })) });
    assert.deepEqual(new Set(beat.abandon.map((a) => a.jobId)), new Set(ids));
    await expectApiError(w.client.result(w.workerId, resultOf(ids[0]!, 1)), 'STALE_ATTEMPT');
    // Their processes gone, it names them no more: the server lets the jobs go.
    await w.client.heartbeat(w.workerId, { attempts: [] });
    assert.equal(ts.server.model.leases.countOfWorker(w.workerId), 0);
    // Its jobs run again elsewhere, as attempt 2.
    const other = await ts.worker({ name: 'healthy', cores: 2 });
    const again = (await other.client.claim(other.workerId, { waitS: 0 })).jobs;
    assert.deepEqual(again.map((j) => j.attempt), [2, 2]);
    for (const j of again) await other.client.result(other.workerId, resultOf(j.id, j.attempt));

    const text = await cpcc(admin, ['worker-failed', other.workerId]);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /held no running attempts; nothing changed/);
    failsWith(await cpcc(admin, ['worker-failed', '0190b1a2-0000-7000-8000-000000000000']), 1, /WORKER_NOT_FOUND/);
  });

  it('command-failed re-queues one running job, for its project members only', async () => {
    ok(await cpcc(bob, ['--json', 'start', 'cf']));
    const [running, waiting] = (await bobApi.submit('cf', [{ argv: ['x'], priority: 5 }, { argv: ['y'] }])).ids;
    const w = await ts.worker({ name: 'slow', cores: 1 });
    const [claimed] = (await w.client.claim(w.workerId, { waitS: 0, max: 1 })).jobs;
    assert.equal(claimed!.id, running);

    const eve = await cpccHome(ts.server.unsecurePort, 'eve', 'eve-password');
    failsWith(await cpcc(eve, ['command-failed', running!]), 1, /JOB_NOT_FOUND/);
    failsWith(await cpcc(bob, ['command-failed', waiting!]), 1, /not running.*\(INVALID_STATE\)/);
    failsWith(await cpcc(bob, ['command-failed', '0190b1a2-0000-7000-8000-000000000000']), 1, /JOB_NOT_FOUND/);

    const text = await cpcc(bob, ['command-failed', running!]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /1 attempt marked lost/);
    assert.match(text.stdout, new RegExp(`\n${running!.slice(-12)} +1 +queued`), "the table shows the short id");
    const job = await bobApi.job(running!);
    assert.equal(job.state, 'queued');
    assert.equal(job.attempts[0]!.how, 'worker-lost');
    assert.equal(job.attempts[0]!.reason, 'attempt marked lost by bob');
    // The other job of the same worker is not touched; the worker is told to drop the lost one.
    const beat = await w.client.heartbeat(w.workerId, { attempts: [{ jobId: running!, attempt: 1 }] });
    assert.equal(beat.abandon.length, 1);
    await expectApiError(w.client.result(w.workerId, resultOf(running!, 1)), 'STALE_ATTEMPT');
    // Until the worker names it no more, its process may run: the job waits for it.
    assert.equal((await bobApi.job(running!)).reason, 'waiting for attempt 1 to stop on worker slow');
    await w.client.heartbeat(w.workerId, { attempts: [] });
    // A super user may do it too.
    const [next] = (await w.client.claim(w.workerId, { waitS: 0, max: 1 })).jobs;
    assert.equal(next!.attempt, 2);
    assert.equal(ok(await cpcc(admin, ['--json', 'command-failed', next!.id])).lost[0].attempt, 2);
  });

  it('ping shows the round trip and the server id, without a login', async () => {
    const run = await cpcc(admin, ['ping']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, new RegExp(`^here \\(https://127\\.0\\.0\\.1:\\d+\\) answered in \\d+\\.\\d ms: server ${ts.server.serverId}\\n$`));
    const json = ok(await cpcc(admin, ['--json', 'ping']));
    assert.equal(json.serverId, ts.server.serverId);
    assert.equal(typeof json.ms, 'number');
    ok(await cpcc(admin, ['--json', 'logout']));
    assert.equal(ok(await cpcc(admin, ['--json', 'ping'])).serverId, ts.server.serverId);
    ok(await cpcc(admin, ['--json', 'login', 'cpc-admin', '--password-stdin'], ts.adminPassword));
  });

  it("version prints cpcc's and the server's, and cpcc's alone without a server", async () => {
    const v = packageVersion();
    assert.deepEqual(ok(await cpcc(admin, ['--json', 'version'])), {
      cpcc: v,
      server: { name: 'here', url: ts.server.url, serverId: ts.server.serverId, version: ts.server.ctx.version },
    });
    assert.equal((await cpcc(admin, ['version'])).stdout, `cpcc ${v}\nserver ${ts.server.ctx.version} (here, ${ts.server.serverId})\n`);
    const empty = await cpcc(await tempDir('cpcc-none-'), ['version']);
    assert.equal(empty.code, 0);
    assert.equal(empty.stdout, `cpcc ${v}\n`);
    assert.match(empty.stderr, /no server configured/);
  });
});

describe('network', () => {
  let a: Site;
  let b: Site;
  let home: string;

  before(async () => {
    [a, b] = await linkedSites('net-a', 'net-b');
    home = await cpccHome(a.unsecurePort, 'cpc-admin', adminPasswordOf(a.home));
  });
  after(async () => {
    await Promise.all([a, b].filter(Boolean).map((s) => stopSite(s)));
    await cleanup();
  });

  it('shows this server and its peers with priority, link state and last seen', async () => {
    const before = Date.now();
    const view = ok(await cpcc(home, ['--json', 'network']));
    assert.equal(view.server.serverId, a.serverId);
    assert.equal(view.server.securePort, a.securePort);
    assert.equal(view.server.unsecurePort, a.unsecurePort);
    assert.equal(view.server.version, packageVersion());
    assert.equal(view.peers.length, 1);
    const [peer] = view.peers;
    assert.equal(peer.serverId, b.serverId);
    assert.equal(peer.priority, 0);
    assert.equal(peer.link, 'up');
    assert.ok(peer.lastSeen >= before - 1000, 'an up link is seen now');
    const text = await cpcc(home, ['network']);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`^This server\\nid: +${a.serverId}\\n`));
    assert.match(text.stdout, /Connected nodes:\nPriority +Hostname +Port +Secure port +Server Id +Name +Link +Last seen\n/);
    assert.match(text.stdout, new RegExp(`0 +\\S+ +${b.unsecurePort} +${b.securePort} +${b.serverId} +\\S+ +up +now`));

    // The peer goes away: its link is down, last seen stays.
    await stopSite(b);
    const down = await until('the link to b to be down', async () => {
      const v = ok(await cpcc(home, ['--json', 'network']));
      return v.peers[0].link !== 'up' ? v.peers[0] : null;
    }, { timeoutMs: 30_000 });
    assert.ok(typeof down.lastSeen === 'number' && down.lastSeen >= before - 1000);
  });

  it('is for super users only', async () => {
    await a.admin.addUser('carl', 'carl-password');
    const carl = await cpccHome(a.unsecurePort, 'carl', 'carl-password');
    failsWith(await cpcc(carl, ['network']), 1, /FORBIDDEN/);
  });
});

describe('stop-server', () => {
  after(cleanup);

  it('stops an in-process server cleanly after answering; it then does not answer', async () => {
    const ts = await startTestServer();
    const home = await cpccHome(ts.server.unsecurePort, 'cpc-admin', ts.adminPassword);
    await ts.admin.addUser('dora', 'dora-password');
    const dora = await cpccHome(ts.server.unsecurePort, 'dora', 'dora-password');
    failsWith(await cpcc(dora, ['stop-server']), 1, /FORBIDDEN/);
    ok(await cpcc(home, ['--json', 'start', 'kept']));
    await ts.admin.submit('kept', [{ argv: ['true'] }]);

    const run = await cpcc(home, ['stop-server']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, `server 'here' (${ts.server.serverId}) is stopping\n`);
    await ts.server.stopRequested;
    await ts.server.close();
    assert.ok(
      readdirSync(join(ts.home, 'state')).some((f) => /^snapshot-\d+\.json$/.test(f)),
      'close() wrote the snapshot',
    );
    failsWith(await cpcc(home, ['ping']), 1, /UNREACHABLE/);
  });

  it('ends a `cpc-server start` process the way SIGTERM does', async () => {
    const serverHome = await tempDir('cpc-stop-');
    const proc = await spawnServer(serverHome);
    const unsecurePort = Number(new URL(proc.info.unsecureUrl).port);
    const home = await cpccHome(unsecurePort, 'cpc-admin', adminPasswordOf(serverHome));
    // SIGCONT changes nothing; stop() hands back how the process ends.
    const exited = proc.stop('SIGCONT');
    assert.equal(ok(await cpcc(home, ['--json', 'stop-server'])).stopping, true);
    assert.deepEqual(await exited, { code: 0, signal: null });
    assert.match(proc.stderr(), /stop-server: stopping/);
    assert.equal(existsSync(join(serverHome, 'server.json')), false, 'its runtime file is gone');
    assert.ok(readdirSync(join(serverHome, 'state')).some((f) => /^snapshot-\d+\.json$/.test(f)));
  });
});
