/**
 * Finding and controlling jobs with cpcc, spawned as users run it against a
 * real server: listings newest first with filters, order and an explicit
 * cursor (and archived jobs included on request), cancel and retry of many
 * jobs with an outcome each, waits for named jobs or for what was submitted
 * since the last wait, and why a job does not run.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ApiClient } from '../../src/client/api/client.js';
import { updateConfig } from '../../src/client/config.js';
import { cleanup, cpcc, cpccHome, freePort, resultOf, startTestServer, tempDir, until, type CpccRun, type SimWorker, type TestServer } from '../helpers/server.js';

after(cleanup);

function ok<T = any>(run: CpccRun): T {
  assert.equal(run.code, 0, `expected exit 0, got ${run.code}; stderr: ${run.stderr}`);
  return JSON.parse(run.stdout) as T;
}

const idOf = async (run: Promise<CpccRun>): Promise<string> => ok<{ ids: string[] }>(await run).ids[0]!;

/** Runs every queued job the worker can claim: `false` exits 1, anything else 0. */
async function runQueued(w: SimWorker): Promise<string[]> {
  const ran: string[] = [];
  for (;;) {
    const { jobs } = await w.client.claim(w.workerId, { waitS: 0, max: 100 });
    if (jobs.length === 0) return ran;
    for (const job of jobs) {
      await w.client.result(w.workerId, resultOf(job.id, job.attempt, { exitCode: job.argv?.[0] === 'false' ? 1 : 0 }));
      ran.push(job.id);
    }
  }
}

describe('finding and controlling jobs', () => {
  let ts: TestServer;
  let home: string;
  let worker: SimWorker;

  before(async () => {
    ts = await startTestServer({ archiveAfterS: 3600 });
    await ts.admin.createProject('find');
    home = await cpccHome(ts, 'find');
    worker = await ts.worker({ name: 'eight', cores: 8, memoryMb: 8192 });
  });

  it('lists newest first, filters, orders, and pages with an explicit cursor', async () => {
    const ids: string[] = [];
    for (const name of ['fit-a', 'fit-b', 'plot-1', 'fit-c', 'plot-2']) ids.push(await idOf(cpcc(home, ['--json', 'submit', '--name', name, '--', 'true', name])));
    const { jobs } = ok(await cpcc(home, ['--json', 'jobs']));
    assert.deepEqual(jobs.map((j: { id: string }) => j.id), [...ids].reverse(), 'newest first');
    assert.deepEqual(ok(await cpcc(home, ['--json', 'jobs', '--reverse'])).jobs.map((j: { id: string }) => j.id), ids);
    const fits = ok(await cpcc(home, ['--json', 'jobs', '--name', 'fit-*']));
    assert.deepEqual(fits.jobs.map((j: { name: string }) => j.name), ['fit-c', 'fit-b', 'fit-a']);
    assert.deepEqual(ok(await cpcc(home, ['--json', 'jobs', '--name', 'plot-?', '--sort', 'name'])).jobs.map((j: { name: string }) => j.name), ['plot-1', 'plot-2']);
    assert.deepEqual(ok(await cpcc(home, ['--json', 'jobs', '--sort', 'name', '--reverse', '--limit', '1'])).jobs[0].name, 'plot-2');
    assert.equal(ok(await cpcc(home, ['--json', 'jobs', '--since', '1h'])).jobs.length, 5);
    assert.equal(ok(await cpcc(home, ['--json', 'jobs', '--state', 'done'])).jobs.length, 0);

    // A page ends with the cursor of the next; the pages together are the whole list, once each.
    const first = ok(await cpcc(home, ['--json', 'jobs', '--limit', '2']));
    assert.equal(first.next, ids[3]);
    const second = ok(await cpcc(home, ['--json', 'jobs', '--limit', '2', '--after-id', first.next]));
    const third = ok(await cpcc(home, ['--json', 'jobs', '--limit', '2', '--after-id', second.next]));
    assert.equal(third.next, undefined, 'the last page has no cursor');
    assert.deepEqual([...first.jobs, ...second.jobs, ...third.jobs].map((j: { id: string }) => j.id), [...ids].reverse());
    // Without --json the cursor is a hint on stderr, and the rows stay on stdout.
    const plain = await cpcc(home, ['jobs', '--limit', '2']);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stderr, new RegExp(`--after-id ${ids[3]}`));
    const all = ok(await cpcc(home, ['--json', 'jobs', '--all']));
    assert.equal(all.jobs.length, 5);
    assert.equal(all.next, undefined);

    // A job submitted now is the first row, without paging.
    const newest = await idOf(cpcc(home, ['--json', 'submit', '--name', 'late', '--', 'true']));
    assert.equal(ok(await cpcc(home, ['--json', 'jobs', '--limit', '1'])).jobs[0].id, newest);

    // Bad input is a usage error in the user's words.
    const bad = await cpcc(home, ['jobs', '--sort', 'size']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--sort/);
    const tooMany = await cpcc(home, ['jobs', '--limit', '20000']);
    assert.equal(tooMany.code, 2);
    assert.match(tooMany.stderr, /--limit/);
  });

  it('fits narrow terminals: every line of the listing within COLUMNS, ids as they can be pasted back', async () => {
    for (const width of [60, 80]) {
      const run = await cpcc(home, ['jobs'], { env: { COLUMNS: String(width) } });
      assert.equal(run.code, 0, run.stderr);
      const lines = run.stdout.trimEnd().split('\n');
      assert.ok(lines.length >= 7, run.stdout);
      for (const line of lines) assert.ok([...line].length <= width, `wider than ${width}: '${line}'`);
      const shown = lines[1]!.trim().split(/\s+/)[0]!;
      assert.match(shown, /^[0-9a-f]{12}$/, `a short id first: ${lines[1]}`);
      assert.equal(ok(await cpcc(home, ['--json', 'job', shown])).name, 'late');
      const why = await cpcc(home, ['why', shown], { env: { COLUMNS: String(width) } });
      assert.equal(why.code, 0, why.stderr);
    }
  });

  it('cancels many jobs, each with its outcome, from arguments and stdin, and does what it can', async () => {
    await ts.admin.createProject('bulk');
    const h = await cpccHome(ts, 'bulk');
    // The first one is done before the cancel; the others wait for a worker too small for them.
    const ids = [await idOf(cpcc(h, ['--json', 'submit', '--', 'true', '0']))];
    await runQueued(worker);
    assert.equal((await ts.admin.job(ids[0]!)).state, 'done');
    for (let i = 1; i < 4; i++) ids.push(await idOf(cpcc(h, ['--json', 'submit', '--cores', '1000', '--', 'true', String(i)])));
    const unknown = '01900000-0000-7000-8000-000000000000';
    const run = await cpcc(h, ['--json', 'cancel', ids[0]!, ids[1]!, unknown, '-'], { input: `${ids[2]!.slice(-12)}\n# a comment\n${ids[3]} \n` });
    assert.equal(run.code, 1, run.stderr);
    const reply = JSON.parse(run.stdout);
    const byGiven = new Map(reply.outcomes.map((o: { given: string; outcome: string }) => [o.given, o.outcome]));
    assert.equal(byGiven.get(ids[0]), 'ended');
    assert.equal(byGiven.get(ids[1]), 'done');
    assert.equal(byGiven.get(unknown), 'not-found');
    assert.equal(byGiven.get(ids[2]!.slice(-12)), 'done');
    assert.equal(byGiven.get(ids[3]), 'done');
    assert.deepEqual([...reply.cancelled].sort(), [ids[1], ids[2], ids[3]].sort());
    for (const id of ids.slice(1)) assert.equal((await ts.admin.job(id)).state, 'cancelled');
    assert.match(JSON.parse(run.stderr.trim().split('\n').at(-1)!).error.message, /2 of 5 jobs not cancelled/);

    // In text: what was done on stdout, each miss on stderr in words.
    const text = await cpcc(h, ['cancel', ids[0]!, unknown]);
    assert.equal(text.code, 1);
    assert.equal(text.stdout, '');
    assert.match(text.stderr, new RegExp(`not cancelled: ${ids[0]}: already ended \\(done\\)`));
    assert.match(text.stderr, new RegExp(`not cancelled: ${unknown}: not found`));

    // Retry by selector: the cancelled ones go again; a done job named by id is skipped.
    const retry = await cpcc(h, ['--json', 'retry', '--failed', ids[0]!]);
    assert.equal(retry.code, 1, retry.stderr);
    const r = JSON.parse(retry.stdout);
    assert.deepEqual([...r.retried].sort(), [ids[1], ids[2], ids[3]].sort());
    assert.equal(r.outcomes.find((o: { given: string }) => o.given === ids[0]).outcome, 'skipped');
    for (const id of ids.slice(1)) assert.equal((await ts.admin.job(id)).state, 'queued');

    // A cursor from another project is a usage error in the flag's words.
    const elsewhere = ok(await cpcc(home, ['--json', 'jobs', '--limit', '1'])).jobs[0].id;
    const cursor = await cpcc(h, ['jobs', '--after-id', elsewhere]);
    assert.equal(cursor.code, 2, cursor.stderr);
    assert.match(cursor.stderr, new RegExp(`^cpcc: --after-id: no job ${elsewhere} in project 'bulk'`));

    // Malformed ids on stdin are a usage error, and nothing is done.
    const junk = await cpcc(h, ['cancel', '-'], { input: `${ids[1]}\nnot-an-id\n` });
    assert.equal(junk.code, 2);
    assert.match(junk.stderr, /stdin line 2: 'not-an-id'/);
    assert.equal((await ts.admin.job(ids[1]!)).state, 'queued');
  });

  it('asks before acting on more than 20 jobs: without a terminal it refuses unless --yes', async () => {
    await ts.admin.createProject('many');
    const h = await cpccHome(ts, 'many');
    const jobs = Array.from({ length: 25 }, (_, i) => ({ name: i % 2 === 0 ? `even-${i}` : `odd-${i}`, argv: ['sleep', '100'], cores: 1000 }));
    const { ids } = await ts.admin.submit('many', jobs);
    const refused = await cpcc(h, ['cancel', '--state', 'queued']);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /not going to cancel 25 jobs without confirmation.*--yes/);
    assert.equal((await ts.admin.project('many')).counts.cancelled, 0);
    // A selection of 20 or fewer goes ahead without asking.
    const odd = ok(await cpcc(h, ['--json', 'cancel', '--name', 'odd-*']));
    assert.equal(odd.cancelled.length, 12);
    const rest = ok(await cpcc(h, ['--json', 'cancel', '--state', 'queued', '--yes']));
    assert.equal(rest.cancelled.length, 13);
    assert.equal((await ts.admin.project('many')).counts.cancelled, ids.length);
  });

  it('waits for what was submitted since the last wait: an old failure does not fail it', async () => {
    await ts.admin.createProject('waits');
    const h = await cpccHome(ts, 'waits');
    const bad = await idOf(cpcc(h, ['--json', 'submit', '--name', 'broken', '--', 'false']));
    await runQueued(worker);
    const first = await cpcc(h, ['wait']);
    assert.equal(first.code, 1, first.stderr);
    assert.match(first.stdout, new RegExp(`${bad.slice(-12)}\\s+broken\\s+failed`), 'the failed job is listed');
    assert.match(first.stderr.trimEnd().split('\n').at(-1)!, /^cpcc: 1 failed of 1 job of 'waits' \(JOBS_FAILED\)$/);
    // The same wait again answers the same: its batch has not changed. Its list fits a narrow terminal.
    const narrow = await cpcc(h, ['wait'], { env: { COLUMNS: '60' } });
    assert.equal(narrow.code, 1);
    for (const line of narrow.stdout.trimEnd().split('\n')) assert.ok([...line].length <= 60, `wider than 60: '${line}'`);
    assert.match(narrow.stdout, new RegExp(bad.slice(-12)));

    // A new batch: only it counts.
    const good = [await idOf(cpcc(h, ['--json', 'submit', '--', 'true', '1'])), await idOf(cpcc(h, ['--json', 'submit', '--', 'true', '2']))];
    const waiting = cpcc(h, ['--json', 'wait', '--timeout', '60']);
    await runQueued(worker);
    const result = ok(await waiting);
    assert.equal(result.ok, true);
    assert.equal(result.total, 2);
    assert.equal(result.counts.done, 2);
    assert.equal(result.from, good[0]);

    // Named jobs: exit 1 when one of them failed, with it listed; 0 for good ones.
    const named = await cpcc(h, ['--json', 'wait', bad, good[1]!.slice(-12)]);
    assert.equal(named.code, 1);
    assert.deepEqual(JSON.parse(named.stdout).failures.map((f: { id: string }) => f.id), [bad]);
    assert.equal(ok(await cpcc(h, ['--json', 'wait', ...good])).ok, true);
    const missing = await cpcc(h, ['wait', '01900000-0000-7000-8000-000000000000']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no job with id .*JOB_NOT_FOUND/);
  });

  it('says at once that the server cannot be reached, and keeps trying until --timeout', async () => {
    const h = await tempDir('cpcc-away-');
    const port = await freePort();
    await updateConfig(h, (c) => {
      c.servers.away = { url: `https://127.0.0.1:${port}`, serverId: ts.server.serverId, caPem: ts.server.caPem, caFingerprint: ts.server.caFingerprint, user: 'cpc-admin', token: ts.admin.token!, project: 'waits' };
      c.current = 'away';
    });
    const run = cpcc(h, ['wait', '--timeout', '120']);
    let stderr = '';
    run.child.stderr!.on('data', (d: Buffer | string) => (stderr += String(d)));
    await until('the wait says the server cannot be reached', () => /cannot reach the server.*trying again until the 120s timeout/.test(stderr), { timeoutMs: 60_000 });
    assert.equal(run.child.exitCode, null, 'still trying');
    run.child.kill('SIGTERM');
    await run;
    const short = await cpcc(h, ['wait', '--timeout', '2']);
    assert.equal(short.code, 1);
    assert.match(short.stderr, /cannot reach the server/);
    assert.match(short.stderr.trimEnd().split('\n').at(-1)!, /gave up after 2s.*\(TIMEOUT\)$/);
  });

  it('says why a job is not running: dependencies, no worker big enough, or room and turns', async () => {
    await ts.admin.createProject('why');
    const h = await cpccHome(ts, 'why');
    const huge = await idOf(cpcc(h, ['--json', 'submit', '--cores', '64', '--memory', '1G', '--', 'true']));
    const v = ok(await cpcc(h, ['--json', 'why', huge]));
    const fit = v.reasons.find((r: { kind: string }) => r.kind === 'no-worker-fits');
    assert.ok(fit, JSON.stringify(v));
    assert.deepEqual(fit.asked, { cores: 64, memoryMb: 1024 });
    assert.ok(fit.largest.cores >= 8 && fit.largest.cores < 64, JSON.stringify(fit));
    const text = await cpcc(h, ['why', huge]);
    assert.match(text.stdout, /no worker fits/);
    assert.match(text.stdout, /cores: asks 64, at most \d+ offered/);
    assert.match((await cpcc(h, ['job', huge])).stdout, /why:\s+no worker fits: it asks 64 cores/);

    const dep = await idOf(cpcc(h, ['--json', 'submit', '--name', 'first', '--', 'true']));
    const next = await idOf(cpcc(h, ['--json', 'submit', '--after', dep, '--', 'true']));
    const w = ok(await cpcc(h, ['--json', 'why', next]));
    assert.deepEqual(w.reasons[0], { kind: 'dependencies', count: 1, jobs: [{ id: dep, name: 'first', state: 'queued' }] });
    assert.match((await cpcc(h, ['why', next])).stdout, new RegExp(`waiting for 1 job to be done:[\\s\\S]*${dep.slice(-12)}\\s+first\\s+queued`));
    const room = ok(await cpcc(h, ['--json', 'why', dep]));
    assert.equal(room.reasons[0].kind, 'waiting-for-room');
    await runQueued(worker);
    assert.match(ok(await cpcc(h, ['--json', 'why', next])).summary, /ended \(done/);
  });
});

describe('a wait through a server restart', () => {
  it('says the server is gone at once, keeps asking, and goes on when it is back', async () => {
    const [securePort, unsecurePort] = [await freePort(), await freePort()];
    const first = await startTestServer({ securePort, unsecurePort });
    await first.admin.createProject('restart');
    const h = await cpccHome(first, 'restart');
    const id = await idOf(cpcc(h, ['--json', 'submit', '--', 'true']));
    const waiting = cpcc(h, ['--json', 'wait', '--timeout', '300']);
    let stderr = '';
    waiting.child.stderr!.on('data', (d: Buffer | string) => (stderr += String(d)));
    await until('the wait to show its progress', () => /0\/1 finished/.test(stderr), { timeoutMs: 60_000 });
    await first.server.close();
    await until('the wait to say the server cannot be reached', () => /cannot reach the server/.test(stderr), { timeoutMs: 60_000 });
    const second = await startTestServer({ home: first.home, securePort, unsecurePort });
    await until('the wait to find the server again', () => /the server answers again/.test(stderr), { timeoutMs: 60_000 });
    const w = await second.worker({ name: 'after-restart' });
    await until('the job to run', async () => (await runQueued(w)).includes(id), { timeoutMs: 30_000 });
    const result = ok(await waiting);
    assert.equal(result.ok, true);
    assert.equal(result.counts.done, 1);
  });
});

describe('listings with archived jobs', () => {
  let ts: TestServer;
  let api: ApiClient;

  before(async () => {
    ts = await startTestServer({ archiveAfterS: 0 });
    api = ts.admin;
  });

  it('includes archived jobs only when asked, in the same order', async () => {
    await api.createProject('arch');
    const h = await cpccHome(ts, 'arch');
    const w = await ts.worker({ name: 'arch-worker' });
    const old = await idOf(cpcc(h, ['--json', 'submit', '--name', 'old', '--', 'true']));
    await runQueued(w);
    await until('the finished job is archived', async () => (await api.job(old)).archived === true, { timeoutMs: 60_000 });
    const live = await idOf(cpcc(h, ['--json', 'submit', '--name', 'new', '--', 'true']));
    assert.deepEqual(ok(await cpcc(h, ['--json', 'jobs'])).jobs.map((j: { id: string }) => j.id), [live]);
    const both = ok(await cpcc(h, ['--json', 'jobs', '--archived']));
    assert.deepEqual(both.jobs.map((j: { id: string }) => j.id), [live, old]);
    assert.equal(both.jobs[1].archived, true);
    const page = ok(await cpcc(h, ['--json', 'jobs', '--archived', '--limit', '1']));
    assert.equal(page.next, live);
    assert.deepEqual(ok(await cpcc(h, ['--json', 'jobs', '--archived', '--after-id', page.next])).jobs.map((j: { id: string }) => j.id), [old]);
    const table = await cpcc(h, ['jobs', '--archived']);
    assert.match(table.stdout, /done\*/);
    assert.match(table.stderr, /\* archived/);
  });
});
