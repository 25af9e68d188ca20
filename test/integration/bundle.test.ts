/**
 * `cpc-server bundle` writes one connection file for a worker, and
 * `cpc-worker --bundle FILE` needs nothing else: with the server stopped
 * (the token goes into the accounts document) and running (the running
 * server issues it, so that it knows the token), both as real processes.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ROOT,
  adminPasswordOf,
  cleanup,
  freePort,
  loginAdmin,
  spawnServer,
  tempDir,
  until,
} from '../helpers/server.js';

const SERVER_BIN = join(ROOT, 'bin', 'cpc-server.ts');
const WORKER_BIN = join(ROOT, 'bin', 'cpc-worker.ts');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();

function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('CPC_') && k !== 'CPC_SCRYPT_LOG_N') delete env[k];
  return env;
}

function run(bin: string, args: string[], cwd = ROOT): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', bin, ...args], { cwd, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const server = (home: string, args: string[]) => run(SERVER_BIN, ['--home', home, ...args]);

/** A worker given only --bundle (and a work folder of its own for the test's cleanup). */
function worker(args: string[]): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', WORKER_BIN, ...args], { cwd: ROOT, env: cleanEnv(), stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.resume();
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
    child.kill('SIGTERM');
  });
}

function oneLineFailure(r: Run, code: number, prog: string, pattern: RegExp): void {
  assert.equal(r.code, code, `exit ${r.code}; stdout: ${r.stdout} stderr: ${r.stderr}`);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `one line on stderr, got: ${r.stderr}`);
  assert.match(lines[0]!, new RegExp(`^${prog}: `));
  assert.match(lines[0]!, pattern);
}

describe('cpc-server bundle and cpc-worker --bundle', () => {
  after(async () => {
    await Promise.all([...children].map(stop));
    await cleanup();
  });

  it('issues a token with the server stopped; a worker with only --bundle runs jobs once it starts', async () => {
    const home = await tempDir('cpc-bundle-home-');
    const out = await tempDir('cpc-bundle-out-');
    const port = await freePort();
    assert.equal((await server(home, ['setup'])).code, 0);
    assert.equal((await server(home, ['config', 'set', 'host', '127.0.0.1'])).code, 0);
    assert.equal((await server(home, ['config', 'set', 'securePort', String(port)])).code, 0);

    const file = join(out, 'node.json');
    const made = await server(home, ['bundle', '-o', file, '--name', 'node1']);
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.stdout, /worker token 'node1'/);
    assert.match(made.stdout, /cpc-worker --bundle /);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const b = JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
    assert.deepEqual(Object.keys(b).sort(), ['caPem', 'name', 'serverId', 'token', 'url']);
    assert.equal(b.url, `https://127.0.0.1:${port}`);
    assert.equal(b.name, 'node1');
    assert.equal(b.serverId, readFileSync(join(home, 'identity', 'server-id'), 'utf8').trim());
    assert.equal(b.caPem, readFileSync(join(home, 'identity', 'ca.pem'), 'utf8'));
    assert.match(b.token!, /^cpc_[0-9a-f]{16}_/);

    // Never overwritten: a second bundle to the same file is refused and issues nothing.
    const again = await server(home, ['bundle', '-o', file]);
    oneLineFailure(again, 1, 'cpc-server', /exists/);
    assert.equal(readFileSync(file, 'utf8').includes(b.token!), true);

    const proc = await spawnServer(home, { port });
    const admin = await loginAdmin(proc.info.url, proc.caPem, adminPasswordOf(home));
    const tokens = (await admin.workerTokens()).tokens;
    assert.deepEqual(tokens.map((t) => t.name), ['node1'], 'the running server knows the token written while it was stopped');

    const w = worker(['--bundle', file, '--work-dir', join(out, 'work'), '--cores', '1', '--memory', '64']);
    await admin.createProject('bundled');
    const [id] = (await admin.submit('bundled', [{ argv: ['sh', '-c', 'echo from-bundle'] }])).ids;
    const job = await until('the job to be done by the bundled worker', async () => {
      const j = await admin.job(id!);
      return j.state === 'done' ? j : null;
    }, { timeoutMs: 30_000 });
    assert.match(job.attempts[0]!.workerName, /^node1@/);
    await stop(w);
  });

  it('asks the running server for the token; flags still override the bundle', async () => {
    const home = await tempDir('cpc-bundle-live-');
    const out = await tempDir('cpc-bundle-out-');
    const proc = await spawnServer(home);
    const admin = await loginAdmin(proc.info.url, proc.caPem, adminPasswordOf(home));
    const file = join(out, 'live.json');
    const made = await server(home, ['bundle', '-o', file, '--name', 'live']);
    assert.equal(made.code, 0, made.stderr);
    const b = JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
    assert.equal(b.url, proc.info.url, 'the address the running server listens on');
    assert.deepEqual((await admin.workerTokens()).tokens.map((t) => t.name), ['live']);

    const w = worker(['--bundle', file, '--name', 'chosen-name', '--work-dir', join(out, 'work'), '--cores', '1', '--memory', '64']);
    const seen = await until('the bundled worker to register', async () => {
      const ws = (await admin.workers()).workers;
      return ws.length > 0 ? ws : null;
    }, { timeoutMs: 30_000 });
    assert.deepEqual(seen.map((x) => x.name), ['chosen-name']);
    await stop(w);
    // The token survives the server's next write of its accounts (it issued it itself).
    await admin.createWorkerToken('another');
    const users = JSON.parse(readFileSync(join(home, 'users.json'), 'utf8')) as { tokens: { name: string }[] };
    assert.ok(users.tokens.some((t) => t.name === 'live'));
    await proc.stop('SIGTERM');
    assert.equal(existsSync(join(home, 'run', 'control.sock')), false, 'the control socket is removed at stop');
  });

  it('bundles made while the server starts are all known to it, and kept', async () => {
    const home = await tempDir('cpc-bundle-race-');
    const out = await tempDir('cpc-bundle-out-');
    assert.equal((await server(home, ['setup'])).code, 0);
    const names = ['b0', 'b1', 'b2', 'b3', 'b4', 'b5', 'b6', 'b7'];
    // Started together: each bundle runs before, during or after the server's start.
    const bundles = names.map((name, i) =>
      new Promise((r) => setTimeout(r, i * 150)).then(() => server(home, ['bundle', '-o', join(out, `${name}.json`), '--name', name])),
    );
    const proc = await spawnServer(home);
    for (const made of await Promise.all(bundles)) assert.equal(made.code, 0, made.stderr);
    const admin = await loginAdmin(proc.info.url, proc.caPem, adminPasswordOf(home));
    assert.deepEqual((await admin.workerTokens()).tokens.map((t) => t.name).sort(), [...names].sort());
    // And none is lost at the server's next write of its accounts.
    await admin.createWorkerToken('another');
    const users = JSON.parse(readFileSync(join(home, 'users.json'), 'utf8')) as { tokens: { name: string }[] };
    for (const name of [...names, 'another']) assert.ok(users.tokens.some((t) => t.name === name), `token ${name} kept`);
    assert.equal(existsSync(join(home, 'run', 'home.lock')), false, 'no lock is left behind');
    await proc.stop('SIGTERM');
  });

  it('refuses bad names and homes that are not set up, in one line', async () => {
    const home = await tempDir('cpc-bundle-empty-');
    const out = await tempDir('cpc-bundle-out-');
    oneLineFailure(await server(home, ['bundle', '-o', join(out, 'x.json')]), 1, 'cpc-server', /no server identity.*setup/);
    oneLineFailure(await server(home, ['bundle', '--name', 'bad name', '-o', join(out, 'y.json')]), 2, 'cpc-server', /--name/);
    assert.equal(existsSync(join(out, 'x.json')), false);
  });

  it('cpc-worker refuses a missing, garbled or incomplete bundle in one line, exit 2', async () => {
    const dir = await tempDir('cpc-bundle-bad-');
    const cases: [string, string | null, RegExp][] = [
      ['missing.json', null, /cannot read/],
      ['garbled.json', '{"url": "https://x', /not JSON/],
      ['array.json', '[1, 2]', /does not hold a bundle/],
      ['partial.json', JSON.stringify({ url: 'https://127.0.0.1:1', serverId: 'x' }), /lacks caPem, token/],
      ['nopem.json', JSON.stringify({ url: 'https://127.0.0.1:1', serverId: 'x', caPem: 'hello', token: 't' }), /no PEM certificate/],
    ];
    for (const [name, content, pattern] of cases) {
      const file = join(dir, name);
      if (content !== null) writeFileSync(file, content, { mode: 0o600 });
      oneLineFailure(await run(WORKER_BIN, ['--bundle', file]), 2, 'cpc-worker', new RegExp(`--bundle: .*${pattern.source}`));
    }
    // A bundle holds a token: one that others may read is refused before it is read.
    const open = join(dir, 'open.json');
    writeFileSync(open, '{}', { mode: 0o644 });
    chmodSync(open, 0o644);
    oneLineFailure(await run(WORKER_BIN, ['--bundle', open]), 2, 'cpc-worker', /--bundle: .*readable by others \(mode 644\); chmod 600 it/);
    oneLineFailure(await run(WORKER_BIN, []), 2, 'cpc-worker', /--server URL, or --bundle FILE/);
  });
});
