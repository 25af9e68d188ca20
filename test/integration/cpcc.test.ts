/**
 * cpcc as its users meet it: the built binary, spawned against a real server
 * on port 0, with its config in a temp folder, read through `--json`.
 * Jobs are run by a stand-in worker that speaks the worker protocol through
 * the API client, so `wait`, `job` and `logs` see real finished jobs.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../../src/client/api/client.js';
import { dependencyOrder, submitInChunks } from '../../src/client/commands/job-file.js';
import type { JobInput } from '../../src/core/wire.js';
import { startServer } from '../../src/server/start/server.js';
import { CPCC, cpcc, type CpccRun as Run } from '../helpers/server.js';

const WRONG_FINGERPRINT = 'AB:'.repeat(31) + 'AB';

type Server = Awaited<ReturnType<typeof startServer>>;

const tempDirs: string[] = [];
async function tempDir(prefix: string): Promise<string> {
  const d = await fsp.mkdtemp(join(tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}


/** The parsed --json output of a run that must have succeeded. */
function ok<T = any>(run: Run): T {
  assert.equal(run.code, 0, `expected exit 0, got ${run.code}; stderr: ${run.stderr}`);
  try {
    return JSON.parse(run.stdout) as T;
  } catch {
    assert.fail(`stdout is not JSON: ${run.stdout}`);
  }
}

/** A failure is exactly one line on stderr, `cpcc: …`, and nothing on stdout. */
function failsWith(run: Run, code: number, pattern: RegExp): void {
  assert.equal(run.code, code, `expected exit ${code}, got ${run.code}; stdout: ${run.stdout} stderr: ${run.stderr}`);
  const lines = run.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `expected one line on stderr, got: ${run.stderr}`);
  assert.match(lines[0]!, /^cpcc: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
}

const hex = (fp: string) => fp.replace(/[^0-9a-f]/gi, '').toLowerCase();

/**
 * A worker in name only: it claims jobs and reports `argv[0] === 'false'` as
 * exit 1 and everything else as exit 0, with argv joined as its output.
 */
async function runQueuedJobs(api: ApiClient, workerId: string): Promise<string[]> {
  const ran: string[] = [];
  for (;;) {
    const { jobs } = await api.claim(workerId, { waitS: 0, max: 100 });
    if (jobs.length === 0) return ran;
    for (const job of jobs) {
      const stdout = `${(job.argv ?? [job.shell]).join(' ')}\n`;
      await api.result(workerId, {
        jobId: job.id,
        attempt: job.attempt,
        how: 'exited',
        exitCode: job.argv?.[0] === 'false' ? 1 : 0,
        signal: null,
        durationMs: 5,
        stdout,
        stderr: 'warning: stand-in worker\n',
        stdoutBytes: Buffer.byteLength(stdout),
        stderrBytes: 25,
      });
      ran.push(job.id);
    }
  }
}

describe('cpcc against a real server', () => {
  let server: Server;
  let home: string;
  let worker: ApiClient;
  let workerId: string;

  before(async () => {
    assert.ok(existsSync(CPCC), `${CPCC} is missing; run 'npm run build' first`);
    server = await startServer({ home: await tempDir('cpcc-server-'), securePort: 0, unsecurePort: 0, host: '127.0.0.1', log: () => {} });
    home = await tempDir('cpcc-home-');
    worker = new ApiClient({ url: server.url, caPem: server.caPem, serverId: server.serverId, token: await server.createWorkerToken('stand-in') });
    workerId = (await worker.register({ name: 'stand-in', host: 'test', cores: 64, memoryMb: 65536 })).workerId;
  });

  after(async () => {
    await worker?.destroy();
    await server?.close();
    await Promise.all(tempDirs.map((d) => fsp.rm(d, { recursive: true, force: true })));
  });

  it('says to add a server when none is configured', async () => {
    failsWith(await cpcc(await tempDir('cpcc-empty-'), ['jobs']), 1, /cpcc add-server HOST/);
  });

  it('refuses a server whose fingerprint does not match, and saves nothing', async () => {
    const h = await tempDir('cpcc-mismatch-');
    const run = await cpcc(h, ['add-server', '127.0.0.1', String(server.unsecurePort), '--fingerprint', WRONG_FINGERPRINT]);
    failsWith(run, 1, /fingerprint mismatch.*\(FINGERPRINT_MISMATCH\)/);
    assert.equal(existsSync(join(h, 'config.json')), false);
  });

  it('will not trust on first use without a terminal unless told to', async () => {
    const h = await tempDir('cpcc-notty-');
    failsWith(await cpcc(h, ['add-server', '127.0.0.1', String(server.unsecurePort)]), 2, /--yes/);
    assert.equal(existsSync(join(h, 'config.json')), false);
  });

  it('accepts the right fingerprint without asking', async () => {
    const h = await tempDir('cpcc-fp-');
    const added = ok(await cpcc(h, ['add-server', '127.0.0.1', String(server.unsecurePort), '--fingerprint', hex(server.caFingerprint), '--json']));
    assert.equal(added.serverId, server.serverId);
  });

  it('add-server pins the CA, verifies the server id and makes it current', async () => {
    const added = ok(await cpcc(home, ['add-server', '127.0.0.1', String(server.unsecurePort), '--yes', '--json']));
    assert.equal(added.name, '127.0.0.1');
    assert.equal(added.serverId, server.serverId);
    assert.equal(hex(added.caFingerprint), hex(server.caFingerprint));
    assert.equal(added.url, `https://127.0.0.1:${server.securePort}`);
    const config = JSON.parse(await fsp.readFile(join(home, 'config.json'), 'utf8'));
    assert.equal(config.current, '127.0.0.1');
    assert.equal(config.servers['127.0.0.1'].caPem.trim(), server.caPem.trim());
  });

  it('asks you to log in before anything that needs a user', async () => {
    failsWith(await cpcc(home, ['projects']), 1, /not logged in.*cpcc login/);
  });

  it('rejects a wrong password with the server code', async () => {
    failsWith(await cpcc(home, ['login', '--password-stdin'], { input: 'wrong\n' }), 1, /\(BAD_CREDENTIALS\)/);
  });

  it('logs in with --password-stdin and keeps the token in a 0600 file in a 0700 folder', async () => {
    const who = ok(await cpcc(home, ['login', '--password-stdin', '--json'], { input: `${server.adminPassword}\n` }));
    assert.deepEqual({ user: who.user, superuser: who.superuser }, { user: 'cpc-admin', superuser: true });
    const config = JSON.parse(await fsp.readFile(join(home, 'config.json'), 'utf8'));
    assert.equal(typeof config.servers['127.0.0.1'].token, 'string');
    assert.equal((await fsp.stat(join(home, 'config.json'))).mode & 0o777, 0o600);
    assert.equal((await fsp.stat(home)).mode & 0o777, 0o700);
    const info = ok(await cpcc(home, ['server-info', '--json']));
    assert.equal(info.serverId, server.serverId);
    assert.equal(info.whoami.user, 'cpc-admin');
  });

  it('start creates a project and makes it current', async () => {
    const p = ok(await cpcc(home, ['start', 'alpha', '--json']));
    assert.equal(p.name, 'alpha');
    const { projects } = ok(await cpcc(home, ['projects', '--json']));
    assert.ok(projects.some((x: { name: string }) => x.name === 'alpha'));
    const status = ok(await cpcc(home, ['status', '--json']));
    assert.equal(status.name, 'alpha');
    assert.equal(status.total, 0);
  });

  it('submit sends one job, with its options, and prints its id', async () => {
    const { ids } = ok(await cpcc(home, ['submit', '--json', '--cores', '2', '--memory', '256', '--priority', '5', '--env', 'A=1', '--name', 'one', '--', 'echo', '-n', 'hi']));
    assert.equal(ids.length, 1);
    const job = ok(await cpcc(home, ['job', ids[0], '--json']));
    assert.deepEqual(job.argv, ['echo', '-n', 'hi']);
    assert.deepEqual(job.env, { A: '1' });
    assert.deepEqual(job.resources, { cores: 2, memoryMb: 256 });
    assert.equal(job.priority, 5);
    assert.equal(job.name, 'one');
    assert.equal(job.project, 'alpha');
    assert.equal(job.state, 'queued');
    // Without --json the id alone, so that `id=$(cpcc submit …)` works.
    const plain = await cpcc(home, ['submit', '--shell', '--', 'echo', 'a', '&&', 'echo', 'b']);
    assert.equal(plain.code, 0, plain.stderr);
    const id = plain.stdout.trim();
    assert.match(id, /^[0-9a-f-]{36}$/);
    assert.equal(ok(await cpcc(home, ['job', id, '--json'])).shell, 'echo a && echo b');
  });

  it('submit --file resolves keyed dependencies', async () => {
    const file = join(await tempDir('cpcc-file-'), 'jobs.ndjson');
    const lines: JobInput[] = [
      { key: 'prep', argv: ['true', 'prep'] },
      { key: 'run', argv: ['true', 'run'], after: ['prep'] },
      { key: 'sum', argv: ['true', 'sum'], after: ['prep', 'run'] },
    ];
    await fsp.writeFile(file, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    const { ids } = ok(await cpcc(home, ['submit', '--file', file, '--json']));
    assert.equal(ids.length, 3);
    const sum = ok(await cpcc(home, ['job', ids[2], '--json']));
    assert.deepEqual([...sum.after].sort(), [ids[0], ids[1]].sort());
    assert.equal(sum.state, 'waiting');
    const array = join(await tempDir('cpcc-file-'), 'jobs.json');
    await fsp.writeFile(array, JSON.stringify({ jobs: [{ key: 'x', argv: ['true'] }, { argv: ['true'], after: ['x'] }] }));
    assert.equal(ok(await cpcc(home, ['submit', '--file', array, '--json'])).ids.length, 2);
  });

  it('submit --file carries keys across requests of at most 10 000 jobs', async () => {
    ok(await cpcc(home, ['start', 'big', '--json']));
    const file = join(await tempDir('cpcc-big-'), 'jobs.ndjson');
    const lines = [JSON.stringify({ key: 'first', argv: ['true'] })];
    for (let i = 1; i < 10_000; i++) lines.push(JSON.stringify({ argv: ['true', String(i)] }));
    lines.push(JSON.stringify({ key: 'last', argv: ['true'], after: ['first'] }));
    await fsp.writeFile(file, lines.join('\n') + '\n');
    const { ids } = ok(await cpcc(home, ['submit', '--file', file, '--json']));
    assert.equal(ids.length, 10_001);
    assert.equal(new Set(ids).size, 10_001);
    const last = ok(await cpcc(home, ['job', ids[10_000], '--json']));
    assert.deepEqual(last.after, [ids[0]]);
    const status = ok(await cpcc(home, ['status', '--json']));
    assert.equal(status.total, 10_001);
    const all = ok(await cpcc(home, ['jobs', '--all', '--json']));
    assert.equal(all.jobs.length, 10_001);
    ok(await cpcc(home, ['rm', 'big', '--yes', '--json']));
    ok(await cpcc(home, ['use', 'alpha', '--json']));
  });

  it('jobs and status agree, and listings page', async () => {
    const { jobs } = ok(await cpcc(home, ['jobs', '--json']));
    const status = ok(await cpcc(home, ['status', '--json']));
    assert.equal(jobs.length, status.total);
    for (const state of ['waiting', 'queued'] as const) {
      const some = ok(await cpcc(home, ['jobs', '--state', state, '--json']));
      assert.equal(some.jobs.length, status.counts[state]);
      assert.ok(some.jobs.every((j: { state: string }) => j.state === state));
    }
    const page = ok(await cpcc(home, ['jobs', '--limit', '2', '--json']));
    assert.equal(page.jobs.length, 2);
    assert.equal(typeof page.next, 'string');
    const queue = ok(await cpcc(home, ['queue', '--json']));
    assert.equal(queue.jobs.length, status.counts.queued);
  });

  it('usage errors are one line and exit 2', async () => {
    const runs = await Promise.all([
      cpcc(home, ['submit', '--cores', 'many', '--', 'true']),
      cpcc(home, ['jobs', '--state', 'sleeping']),
      cpcc(home, ['no-such-command']),
      cpcc(home, ['submit']),
      cpcc(home, ['submit', 'ls', '-l']),
      cpcc(home, ['rm', 'alpha']),
    ]);
    for (const run of runs) {
      failsWith(run, 2, /./);
      assert.equal(run.stdout, '');
    }
  });

  it('an unknown project is exit 1 with the server code', async () => {
    failsWith(await cpcc(home, ['use', 'nope']), 1, /'nope'.*\(PROJECT_NOT_FOUND\)$/);
    failsWith(await cpcc(home, ['-p', 'nope', 'jobs']), 1, /\(PROJECT_NOT_FOUND\)$/);
    failsWith(await cpcc(home, ['job', '01900000-0000-7000-8000-000000000000']), 1, /\(JOB_NOT_FOUND\)$/);
  });

  it('wait polls until every job is done and exits 0', async () => {
    ok(await cpcc(home, ['start', 'good', '--json']));
    const { ids } = ok(await cpcc(home, ['submit', '--json', '--', 'true', 'a']));
    const second = ok(await cpcc(home, ['submit', '--json', '--after', ids[0], '--', 'true', 'b'])).ids[0];
    const waiting = cpcc(home, ['wait', '--timeout', '30', '--json']);
    await new Promise((r) => setTimeout(r, 1200));
    // The second job becomes runnable only once the first is done; other projects' queued jobs run too.
    const ran = new Set<string>();
    for (let i = 0; i < 20 && !(ran.has(ids[0]) && ran.has(second)); i++) {
      for (const id of await runQueuedJobs(worker, workerId)) ran.add(id);
    }
    assert.ok(ran.has(ids[0]) && ran.has(second), 'both jobs ran');
    const result = ok(await waiting);
    assert.equal(result.ok, true);
    assert.equal(result.counts.done, 2);
    const job = ok(await cpcc(home, ['job', ids[0], '--json']));
    assert.equal(job.state, 'done');
    assert.equal(job.attempts.length, 1);
    const logs = await cpcc(home, ['logs', ids[0]]);
    assert.equal(logs.code, 0, logs.stderr);
    assert.equal(logs.stdout, 'true a\n');
    const err = await cpcc(home, ['logs', ids[0], '--stderr']);
    assert.equal(err.stdout, 'warning: stand-in worker\n');
  });

  it('wait exits 1 when a job failed, and retry queues it again', async () => {
    ok(await cpcc(home, ['start', 'bad', '--json']));
    const { ids } = ok(await cpcc(home, ['submit', '--json', '--', 'false']));
    await runQueuedJobs(worker, workerId);
    const run = await cpcc(home, ['wait', '--json']);
    assert.equal(run.code, 1);
    const result = JSON.parse(run.stdout);
    assert.equal(result.ok, false);
    assert.equal(result.counts.failed, 1);
    assert.match(run.stderr, /1 failed/);
    assert.deepEqual(ok(await cpcc(home, ['retry', ids[0], '--json'])).retried, [ids[0]]);
    assert.equal(ok(await cpcc(home, ['job', ids[0], '--json'])).state, 'queued');
    // Progress lines come first on stderr; the failure is the last line.
    const timedOut = await cpcc(home, ['wait', '--timeout', '1']);
    assert.equal(timedOut.code, 1);
    assert.match(timedOut.stderr.trimEnd().split('\n').at(-1)!, /^cpcc: .*\(TIMEOUT\)$/);
  });

  it('wait exits 1 when jobs were cancelled', async () => {
    ok(await cpcc(home, ['start', 'gone', '--json']));
    const empty = ok(await cpcc(home, ['wait', '--json']));
    assert.equal(empty.total, 0);
    const a = ok(await cpcc(home, ['submit', '--json', '--', 'sleep', '100'])).ids[0];
    const b = ok(await cpcc(home, ['submit', '--json', '--after', a, '--', 'true'])).ids[0];
    assert.deepEqual(ok(await cpcc(home, ['cancel', a, '--json'])).cancelled, [a]);
    const run = await cpcc(home, ['wait', '--json']);
    assert.equal(run.code, 1);
    assert.equal(JSON.parse(run.stdout).counts.cancelled, 2);
    assert.equal(ok(await cpcc(home, ['job', b, '--json'])).state, 'cancelled');
  });

  it('workers, heartbeats and worker tokens', async () => {
    const { workers } = ok(await cpcc(home, ['workers', '--json']));
    assert.ok(workers.some((w: { id: string }) => w.id === workerId));
    assert.ok(Array.isArray(ok(await cpcc(home, ['h', '--json'])).leases));
    const created = ok(await cpcc(home, ['worker-token', 'create', 'cluster', '--json']));
    assert.equal(typeof created.token, 'string');
    const listed = ok(await cpcc(home, ['worker-token', 'list', '--json']));
    assert.ok(listed.tokens.some((t: { id: string; revoked: boolean }) => t.id === created.id && !t.revoked));
    ok(await cpcc(home, ['worker-token', 'revoke', created.id, '--json']));
    const after = ok(await cpcc(home, ['worker-token', 'list', '--json']));
    assert.ok(after.tokens.some((t: { id: string; revoked: boolean }) => t.id === created.id && t.revoked));
  });

  it('-s picks a configured server by name', async () => {
    ok(await cpcc(home, ['add-server', '127.0.0.1', String(server.unsecurePort), '--yes', '--name', 'other', '--json']));
    ok(await cpcc(home, ['use-server', '127.0.0.1', '--json']));
    failsWith(await cpcc(home, ['-s', 'other', 'projects']), 1, /not logged in to 'other'/);
    assert.equal(ok(await cpcc(home, ['-s', '127.0.0.1', 'projects', '--json'])).projects.length > 0, true);
    failsWith(await cpcc(home, ['-s', 'missing', 'projects']), 1, /no server named 'missing'/);
  });

  it('colour follows --no-color and NO_COLOR', async () => {
    const ESC = '\x1b[';
    const coloured = await cpcc(home, ['status'], { env: { FORCE_COLOR: '1' } });
    assert.ok(coloured.stdout.includes(ESC), 'FORCE_COLOR gives colour');
    assert.ok(!(await cpcc(home, ['status', '--no-color'], { env: { FORCE_COLOR: '1' } })).stdout.includes(ESC));
    assert.ok(!(await cpcc(home, ['status'], { env: { FORCE_COLOR: '1', NO_COLOR: '1' } })).stdout.includes(ESC));
  });

  it('logout forgets the token', async () => {
    ok(await cpcc(home, ['logout', '--json']));
    const config = JSON.parse(await fsp.readFile(join(home, 'config.json'), 'utf8'));
    assert.equal(config.servers['127.0.0.1'].token, undefined);
    failsWith(await cpcc(home, ['jobs']), 1, /cpcc login/);
  });
});

describe('job files in chunks', () => {
  const keyed = (key: string, ...after: string[]): JobInput => ({ key, argv: ['true'], ...(after.length ? { after } : {}) });

  it('orders jobs after the keys they name, keeping the file order otherwise', () => {
    const jobs = [keyed('c', 'b'), keyed('a'), keyed('b', 'a'), keyed('d')];
    assert.deepEqual(dependencyOrder(jobs), [1, 2, 0, 3]);
    assert.deepEqual(dependencyOrder([keyed('a'), keyed('b', 'a')]), [0, 1]);
  });

  it('finds cycles and duplicate keys', () => {
    assert.throws(() => dependencyOrder([keyed('a', 'b'), keyed('b', 'a')]), /cycle/);
    assert.throws(() => dependencyOrder([keyed('a'), keyed('a')]), /more than one/);
  });

  it('replaces keys of earlier chunks by ids and returns ids in file order', async () => {
    const sent: JobInput[][] = [];
    let next = 0;
    const send = async (chunk: JobInput[]) => {
      sent.push(chunk);
      return chunk.map(() => `id${next++}`);
    };
    const jobs = [keyed('late', 'early'), keyed('x'), keyed('early'), keyed('y', 'x', 'late')];
    const ids = await submitInChunks(jobs, send, { chunk: 2 });
    assert.deepEqual(sent.map((c) => c.map((j) => j.key)), [['early', 'late'], ['x', 'y']]);
    // 'early' was in the same request as 'late', so it stays a key; 'late' was sent earlier, so it becomes an id.
    assert.deepEqual(sent[0]![1]!.after, ['early']);
    assert.deepEqual(sent[1]![1]!.after, ['x', 'id1']);
    assert.deepEqual(ids, ['id1', 'id2', 'id0', 'id3']);
  });
});
