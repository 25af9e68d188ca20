/**
 * Jobs are untrusted code: what one can reach of the server, its worker and
 * other users' jobs (docs/SECURITY.md). Each attack here works when jobs run
 * as the worker's own user (as they all did, as root in CI, before isolation
 * levels); these tests run as root, so the worker takes isolation `user`, and
 * as `nobody` for isolation `none`.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, promises as fsp, readdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { join } from 'node:path';
import type { ApiClient } from '../../src/client/api/client.js';
import { updateConfig } from '../../src/client/config.js';
import type { JobView } from '../../src/core/wire.js';
import { fingerprint } from '../../src/federation/certificates.js';
import { IDENTITY_FILES } from '../../src/federation/identity.js';
import {
  adminPasswordOf,
  cleanup,
  cpcc,
  cpccOk,
  loginAdmin,
  makeClient,
  ROOT,
  spawnServer,
  startTestServer,
  tempDir,
  until,
  type ServerProcess,
  type TestServer,
} from '../helpers/server.js';

const FINAL = new Set(['done', 'failed', 'cancelled']);
const asRoot = process.getuid?.() === 0;
const WORKER_JS = join(ROOT, 'dist', 'bin', 'cpc-worker.js');

/**
 * The built worker as `nobody` can reach it. A checkout inside a folder closed to
 * others (a 0700 temporary folder, a home) is bind-mounted under an open one;
 * the checkout itself is 0755 as git makes it.
 */
let nobodyRoot: { js: string; mount?: string } | undefined;
function workerJsForNobody(): string {
  if (nobodyRoot) return nobodyRoot.js;
  const reads = (path: string) => spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'test', '-r', path]).status === 0;
  if (reads(WORKER_JS)) {
    nobodyRoot = { js: WORKER_JS };
  } else {
    const mount = mkdtempSync(join(tmpdir(), 'cpc-iso-root-'));
    chmodSync(mount, 0o755);
    const bound = spawnSync('mount', ['--bind', ROOT, mount], { encoding: 'utf8' });
    assert.equal(bound.status, 0, `mount --bind of the checkout for nobody: ${bound.stderr}`);
    nobodyRoot = { js: join(mount, 'dist', 'bin', 'cpc-worker.js'), mount };
    assert.ok(reads(nobodyRoot.js), `nobody cannot read ${nobodyRoot.js}: the checkout must be open to others (0755)`);
  }
  return nobodyRoot.js;
}

/** Stops a worker subprocess that still runs, and waits until it is gone. */
async function stopWorker(worker: ChildProcess | undefined): Promise<void> {
  if (!worker || worker.exitCode !== null || worker.signalCode !== null) return;
  const gone = new Promise((resolve) => worker.once('exit', resolve));
  worker.kill('SIGTERM');
  await gone;
}

after(cleanup);
after(() => {
  if (nobodyRoot?.mount) {
    spawnSync('umount', [nobodyRoot.mount]);
    // rmdir, not rm -r: should the unmount have failed, the checkout is still beneath it.
    rmdirSync(nobodyRoot.mount);
  }
});

async function finalView(c: ApiClient, id: string, timeoutMs = 60_000): Promise<JobView> {
  return until(`job ${id} to finish`, async () => {
    const v = await c.job(id);
    return FINAL.has(v.state) ? v : null;
  }, { timeoutMs, intervalMs: 100 });
}

async function stateOf(c: ApiClient, id: string, state: string, timeoutMs = 60_000): Promise<JobView> {
  return until(`job ${id} to be ${state}`, async () => {
    const v = await c.job(id);
    return v.state === state ? v : null;
  }, { timeoutMs, intervalMs: 100 });
}

async function userClient(url: string, caPem: string, admin: ApiClient, name: string): Promise<ApiClient> {
  await admin.addUser(name, `${name}-password-1`);
  const c = makeClient(url, caPem);
  c.token = (await c.login(name, `${name}-password-1`)).token;
  return c;
}

/** Pids of live processes whose command line contains `text`. */
function processesWith(text: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').replaceAll('\0', ' ');
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (cmd.includes(text) && stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z') out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

/**
 * A job that tries what an attacker would: each probe prints NAME=READ and
 * what it got, or NAME=DENIED. `$1` is the server home, `$2` the victim's job id.
 */
const ATTACK = String.raw`
H="$1"; VICTIM="$2"; TOKENFILE="$3"
probe() { out=$(sh -c "$2" 2>/dev/null); if [ -n "$out" ]; then echo "$1=READ"; echo "$out" | head -c 3000; echo; else echo "$1=DENIED"; fi; }
M="sleep 42""42"
# Wait for the victim's job to be running (its command line is visible at every level).
for i in $(seq 1 300); do
  for p in /proc/[0-9]*; do tr '\0' ' ' < $p/cmdline 2>/dev/null | grep -q "^$M" && break 2; done
  sleep 0.1
done
probe home-password "cat $H/initial-admin-password"
probe ca-key "cat $H/identity/${IDENTITY_FILES.caKey}"
probe users-file "cat $H/users.json"
probe home-list "ls -A $H"
probe worker-environ "tr '\\0' '\\n' < /proc/$PPID/environ"
probe worker-token-in-cmdline "tr '\\0' ' ' < /proc/$PPID/cmdline | grep -o 'cpc_[A-Za-z0-9_-]*'"
probe worker-fds "ls /proc/$PPID/fd"
probe own-env-token "printenv CPC_WORKER_TOKEN"
probe token-file "[ -n \"$TOKENFILE\" ] && cat \"$TOKENFILE\""
probe work-dir-list "ls -A .."
probe victim-folder "cat ../$VICTIM-1/secret.txt"
probe victim-environ "for p in /proc/[0-9]*; do tr '\\0' '\\n' < \$p/environ 2>/dev/null; done | grep VICTIM_SECRET"
for p in /proc/[0-9]*; do
  if tr '\0' ' ' < $p/cmdline 2>/dev/null | grep -q "^$M"; then pid=$(basename $p); kill -9 $pid 2>/dev/null && echo "killed-victim=$pid"; fi
done
echo left > /tmp/cpc-iso-left-$(id -u)
S="sleep 98""7654"
setsid $S > /dev/null 2>&1 < /dev/null &
echo "id=$(id -u)"
sleep 0.5
`;

const PROBES = [
  'home-password',
  'ca-key',
  'users-file',
  'home-list',
  'worker-environ',
  'worker-token-in-cmdline',
  'worker-fds',
  'own-env-token',
  'work-dir-list',
  'victim-folder',
  'victim-environ',
];

const VICTIM = { shell: 'echo victim-private-bytes > secret.txt; exec sleep 4242', env: { VICTIM_SECRET: 'victim-secret-env' } };

function attackJob(home: string, victim: string, tokenFile = ''): { argv: string[] } {
  return { argv: ['/bin/sh', '-c', ATTACK, 'attack', home, victim, tokenFile] };
}

function assertDenied(out: string, probes: string[], secrets: string[]): void {
  if (process.env.CPC_TEST_SHOW) process.stderr.write(out + '\n');
  for (const p of probes) assert.match(out, new RegExp(`^${p}=DENIED$`, 'm'), `${p} must be refused; the job printed:\n${out}`);
  for (const s of secrets) assert.ok(!out.includes(s), `the job printed a secret (${s.slice(0, 12)}…):\n${out}`);
  assert.doesNotMatch(out, /^killed-victim=/m, `the job killed another user's job:\n${out}`);
}

describe('isolation user: the local worker of a server run by root', { skip: !asRoot && 'needs root' }, () => {
  let srv: ServerProcess;
  let admin: ApiClient;

  before(async () => {
    const home = await tempDir('cpc-iso-home-');
    srv = await spawnServer(home, { localWorker: true, timeoutMs: 30_000 });
  });

  after(async () => {
    await srv?.stop('SIGTERM');
  });

  it('keeps the server home 0700 and removes the first password once cpc-admin logs in', async () => {
    const home = srv.home;
    assert.equal(statSync(home).mode & 0o777, 0o700);
    const file = join(home, 'initial-admin-password');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const password = adminPasswordOf(home);
    admin = await loginAdmin(srv.info.url, srv.caPem, password);
    assert.equal(existsSync(file), false, 'the first password is gone once cpc-admin logged in');
  });

  it("keeps a job from the server home, the worker's token, and another user's running job", async () => {
    const home = srv.home;
    // A home whose admin has not logged in yet still holds the first password: put it back for the attack.
    writeFileSync(join(home, 'initial-admin-password'), adminPasswordOf(home) + '\n', { mode: 0o600 });
    const workers = await until('the local worker to register', async () => (await admin.workers()).workers.find((w) => w.name === 'local-worker'), { timeoutMs: 60_000, intervalMs: 200 });
    assert.equal(workers.isolation, 'user');
    assert.match(srv.stderr(), /^\{"level":"info",.*"isolation":"user".*"msg":"starting"\}$/m);

    const alice = await userClient(srv.info.url, srv.caPem, admin, 'alice');
    const bob = await userClient(srv.info.url, srv.caPem, admin, 'bob');
    await alice.createProject('a');
    await bob.createProject('b');
    const [victim] = (await bob.submit('b', [{ ...VICTIM, cores: 1, memoryMb: 256 }])).ids;
    await stateOf(bob, victim!, 'running');
    const [attacker] = (await alice.submit('a', [{ ...attackJob(home, victim!), cores: 1, memoryMb: 256 }])).ids;
    const v = await finalView(alice, attacker!);
    assert.equal(v.state, 'done', v.stderrTail);
    const out = v.stdoutTail ?? '';

    const idAt = /^id=(\d+)$/m.exec(out);
    assert.ok(idAt && Number(idAt[1]) >= 1000 && Number(idAt[1]) !== 0, `the job ran as uid ${idAt?.[1]}`);
    const secrets = [
      adminPasswordOf(home),
      readFileSync(join(home, 'identity', IDENTITY_FILES.caKey), 'utf8').split('\n')[1]!,
      'victim-private-bytes',
      'victim-secret-env',
      'cpc_',
    ];
    assertDenied(out, PROBES, secrets);

    // The victim ran on, untouched.
    const still = await bob.job(victim!);
    assert.equal(still.state, 'running');
    assert.equal(still.attempts.length, 1);
    // What the attacker left behind in a session of its own ended with it, and its temporary file too.
    assert.deepEqual(processesWith('sleep 987654'), [], 'a setsid process outlived its job');
    assert.equal(existsSync(`/tmp/cpc-iso-left-${idAt![1]}`), false, 'a file the job left in /tmp waits for the next job of its uid');

    await bob.cancel([victim!]);
    await finalView(bob, victim!);
    await until('the cancelled job to be killed', () => processesWith('sleep 4242').length === 0, { timeoutMs: 30_000 });
  });

  it('shows the isolation level in cpcc workers', async () => {
    const cpccHome = await tempDir('cpcc-iso-');
    await updateConfig(cpccHome, (c) => {
      c.servers.here = { url: srv.info.url, serverId: srv.info.serverId, caPem: srv.caPem, caFingerprint: fingerprint(srv.caPem), user: 'cpc-admin', token: admin.token!, project: '' };
      c.current = 'here';
    });
    const out = await cpccOk(cpcc(cpccHome, ['workers']));
    assert.match(out, /isolation/i);
    assert.match(out, /^local-worker\s.*\buser\b/m);
  });
});

describe('isolation user: a worker reading its token from a file', { skip: !asRoot && 'needs root' }, () => {
  let ts: TestServer;
  let worker: ChildProcess | undefined;

  before(async () => {
    ts = await startTestServer();
  });
  after(() => stopWorker(worker));

  it('keeps the token file, the environment and the folders of the worker from its jobs', async () => {
    const dir = await tempDir('cpc-iso-tokfile-');
    const tokenFile = join(dir, 'token');
    const token = await ts.server.createWorkerToken('filed');
    writeFileSync(tokenFile, token + '\n', { mode: 0o600 });
    const args = [WORKER_JS, '--server', ts.server.url, '--ca', ts.caFile(), '--server-id', ts.server.serverId, '--token-file', tokenFile, '--work-dir', join(dir, 'work'), '--name', 'filed', '--cores', '2', '--claim-wait', '2'];
    worker = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    worker.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    await until('the worker to register', () => /registered as/.test(stderr), { timeoutMs: 30_000 });
    assert.match(stderr, /"isolation":"user"/);
    await ts.admin.createProject('tf');
    const [victim] = (await ts.admin.submit('tf', [{ ...VICTIM, cores: 1, memoryMb: 256 }])).ids;
    await stateOf(ts.admin, victim!, 'running');
    const [attacker] = (await ts.admin.submit('tf', [{ ...attackJob(ts.home, victim!, tokenFile), cores: 1, memoryMb: 256 }])).ids;
    const v = await finalView(ts.admin, attacker!);
    const out = v.stdoutTail ?? '';
    assertDenied(out, [...PROBES, 'token-file'], [token, 'victim-private-bytes', 'victim-secret-env']);
    assert.deepEqual(processesWith('sleep 987654'), []);
    await ts.admin.cancel([victim!]);
    await finalView(ts.admin, victim!);
    await until('the cancelled job to be killed', () => processesWith('sleep 4242').length === 0, { timeoutMs: 30_000 });
  });
});

describe('isolation none: a worker that is not root', { skip: !asRoot && 'needs root to become nobody' }, () => {
  let ts: TestServer;
  let alice: ApiClient;
  let bob: ApiClient;
  let dir: string;
  const children: ChildProcess[] = [];
  const nobody = Number(spawnSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).stdout.trim());
  const nogroup = Number(spawnSync('id', ['-g', 'nobody'], { encoding: 'utf8' }).stdout.trim());

  before(async () => {
    ts = await startTestServer();
    alice = await userClient(ts.server.url, ts.server.caPem, ts.admin, 'alice');
    bob = await userClient(ts.server.url, ts.server.caPem, ts.admin, 'bob');
    await alice.createProject('alices');
    await bob.createProject('bobs');
    dir = await tempDir('cpc-iso-none-');
    chmodSync(dir, 0o755);
    chownSync(dir, nobody, nogroup);
    writeFileSync(join(dir, 'ca.pem'), ts.server.caPem, { mode: 0o644 });
  });
  after(() => {
    for (const c of children) c.kill('SIGKILL');
  });

  /** cpc-worker as nobody with a token file of its own. */
  async function startAsNobody(name: string, token: string, extra: string[] = [], env: Record<string, string> = {}) {
    const tokenFile = join(dir, `${name}.token`);
    writeFileSync(tokenFile, token + '\n', { mode: 0o600 });
    chownSync(tokenFile, nobody, nogroup);
    const args = [
      '--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, workerJsForNobody(),
      '--server', ts.server.url, '--ca', join(dir, 'ca.pem'), '--server-id', ts.server.serverId,
      '--work-dir', join(dir, `${name}-work`), '--name', name, '--cores', '2', '--claim-wait', '2',
      '--isolation', 'none', ...(env.CPC_WORKER_TOKEN ? [] : ['--token-file', tokenFile]), ...extra,
    ];
    const child = spawn('setpriv', args, { cwd: '/', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(child);
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    return { child, stderr: () => stderr, exited };
  }

  it('refuses a token that is not bound to one user, and says its level', async () => {
    const w = await startAsNobody('unbound', await ts.server.createWorkerToken('unbound'));
    assert.equal(await w.exited, 1, w.stderr());
    assert.match(w.stderr(), /"isolation":"none"/);
    assert.match(w.stderr(), /ISOLATION NONE/);
    assert.match(w.stderr(), /bound to one user|--shared-identity/);
    assert.equal((await ts.admin.workers()).workers.filter((x) => x.name === 'unbound').length, 0, 'nothing registered');
  });

  it('refuses its token in the environment, which its jobs could read in /proc', async () => {
    const w = await startAsNobody('by-env', await ts.server.createWorkerToken('by-env'), [], { CPC_WORKER_TOKEN: 'cpc_x_y' });
    assert.equal(await w.exited, 2, w.stderr());
    assert.match(w.stderr(), /CPC_WORKER_TOKEN stays readable/);
  });

  it("runs only the jobs of the user its token is bound to, never a second user's", async () => {
    const [bobs] = (await bob.submit('bobs', [{ shell: 'id -u', cores: 1, memoryMb: 256 }])).ids;
    const created = await ts.admin.createWorkerToken('alices-worker', undefined, 'alice');
    const w = await startAsNobody('alices-worker', created.token);
    await until('the worker to register', () => /registered as/.test(w.stderr()) || w.child.exitCode !== null, { timeoutMs: 30_000 });
    assert.match(w.stderr(), /"isolation":"none"/);
    assert.match(w.stderr(), /"onlyUser":"alice"/);
    const [alices] = (await alice.submit('alices', [{ shell: 'id -u', cores: 1, memoryMb: 256 }])).ids;
    const done = await finalView(alice, alices!);
    assert.equal(done.state, 'done', done.stderrTail);
    assert.equal(done.stdoutTail?.trim(), String(nobody));
    // Bob's job was queued first and fits: any worker that ignored whose jobs it runs would have taken it.
    const waiting = await bob.job(bobs!);
    assert.equal(waiting.state, 'queued');
    assert.equal(waiting.attempts.length, 0);
    const view = (await ts.admin.workers()).workers.find((x) => x.name === 'alices-worker')!;
    assert.equal(view.isolation, 'none');
    assert.equal(view.onlyUser, 'alice');
    w.child.kill('SIGTERM');
    assert.equal(await w.exited, 0, w.stderr());

    // Told to share its identity, a worker runs anyone's jobs, and says so.
    const shared = await startAsNobody('shared', await ts.server.createWorkerToken('shared'), ['--shared-identity']);
    const ran = await finalView(bob, bobs!);
    assert.equal(ran.state, 'done', ran.stderrTail);
    assert.match(shared.stderr(), /ISOLATION NONE, SHARED/);
    assert.equal((await ts.admin.workers()).workers.find((x) => x.name === 'shared')?.sharedIdentity, true);
    shared.child.kill('SIGTERM');
    await shared.exited;
  });

  it('lets cpcc worker-token create bind a token to a user that exists, and only one that does', async () => {
    await assert.rejects(ts.admin.createWorkerToken('ghost', undefined, 'nobody-here'), /USER_NOT_FOUND|no user/);
    const list = (await ts.admin.workerTokens()).tokens.find((t) => t.name === 'alices-worker');
    assert.equal(list?.user, 'alice');
  });
});

const bwrapWorks =
  asRoot && spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'bwrap', '--ro-bind', '/', '/', '--unshare-pid', '--proc', '/proc', '--dev', '/dev', 'true']).status === 0;

// CI installs bubblewrap and runs as root: there every level must run, not be skipped.
if (process.env.CPC_REQUIRE_ISOLATION === '1' && !bwrapWorks) {
  throw new Error('CPC_REQUIRE_ISOLATION=1: the isolation tests need root and a working bwrap (Debian: bubblewrap)');
}

describe('isolation sandbox: a worker that is not root, with bubblewrap', { skip: !bwrapWorks && 'needs root to become nobody, and a working bwrap' }, () => {
  let ts: TestServer;
  let worker: ChildProcess | undefined;

  before(async () => {
    ts = await startTestServer();
  });
  after(() => stopWorker(worker));

  it("gives each job its own view: no worker token, no other job's folder or process, nothing left running", async () => {
    const dir = await tempDir('cpc-iso-sandbox-');
    chmodSync(dir, 0o755);
    const nobody = Number(spawnSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).stdout.trim());
    chownSync(dir, nobody, nobody);
    writeFileSync(join(dir, 'ca.pem'), ts.server.caPem, { mode: 0o644 });
    const token = await ts.server.createWorkerToken('boxed');
    // The environment is accepted at this level: the jobs' /proc is their own.
    const args = [
      '--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, workerJsForNobody(),
      '--server', ts.server.url, '--ca', join(dir, 'ca.pem'), '--server-id', ts.server.serverId,
      '--work-dir', join(dir, 'work'), '--name', 'boxed', '--cores', '2', '--claim-wait', '2',
    ];
    worker = spawn('setpriv', args, { cwd: '/', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', CPC_WORKER_TOKEN: token }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    worker.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    await until('the worker to register', () => /registered as/.test(stderr) || worker!.exitCode !== null, { timeoutMs: 60_000 });
    assert.match(stderr, /"isolation":"sandbox"/);
    assert.equal((await ts.admin.workers()).workers.find((w) => w.name === 'boxed')?.isolation, 'sandbox');

    await ts.admin.createProject('box');
    const [victim] = (await ts.admin.submit('box', [{ ...VICTIM, cores: 1, memoryMb: 256 }])).ids;
    await stateOf(ts.admin, victim!, 'running');
    // The victim's process is in a pid namespace of its own: the attacker cannot wait for it to show.
    await until('the victim to start', () => processesWith('sleep 4242').length > 0, { timeoutMs: 30_000 });
    const attack = attackJob(ts.home, victim!, join(dir, 'none-such'));
    attack.argv[2] = attack.argv[2]!.replace('for i in $(seq 1 300)', 'for i in $(seq 1 3)');
    const [attacker] = (await ts.admin.submit('box', [{ ...attack, cores: 1, memoryMb: 256 }])).ids;
    const v = await finalView(ts.admin, attacker!);
    assert.equal(v.state, 'done', v.stderrTail);
    const out = v.stdoutTail ?? '';
    assertDenied(out, ['home-password', 'ca-key', 'users-file', 'home-list', 'own-env-token', 'victim-folder', 'victim-environ'], [token, 'victim-private-bytes', 'victim-secret-env']);
    assert.deepEqual(processesWith('sleep 987654'), [], 'a setsid process outlived its job');
    await ts.admin.cancel([victim!]);
    await finalView(ts.admin, victim!);
    await until('the cancelled job to be killed', () => processesWith('sleep 4242').length === 0, { timeoutMs: 30_000 });
  });
});

describe('a job beside its worker (isolation none) still ends whole', () => {
  it('kills what it left running in a session of its own', async () => {
    const { startAttempt } = await import('../../src/worker/runner.js');
    const workDir = await tempDir('cpc-iso-tree-');
    const marker = `sleep ${600 + Math.floor(Math.random() * 1000)}.5`;
    const a = await startAttempt(
      { jobId: 'tree', attempt: 1, project: 'p', shell: `setsid ${marker} > /dev/null 2>&1 < /dev/null & sleep 0.2`, env: {}, resources: { cores: 1, memoryMb: 1 }, timeoutS: null },
      { workDir },
    );
    const o = await a.done;
    assert.equal(o.exitCode, 0, o.stderr);
    assert.deepEqual(processesWith(marker), [], 'the setsid process outlived its job');
    await fsp.rm(workDir, { recursive: true, force: true });
  });
});
