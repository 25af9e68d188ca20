/**
 * Short ids: cpcc and the API take a job or worker id whole, or any part of
 * its start or end of at least 8 hex digits, including the short form tables
 * show (the id's last group). A part that fits several ids is refused with
 * the candidates; a part that fits only jobs the user may not see is
 * answered as an id that does not exist. cpcc is spawned as users run it.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import { ApiError, type ApiClient } from '../../src/client/api/client.js';
import { WatchState } from '../../src/client/commands/watch.js';
import { updateConfig } from '../../src/client/config.js';
import { Output } from '../../src/client/output.js';
import { API_PREFIX, type StreamEvent } from '../../src/core/wire.js';
import { cleanup, cpcc, cpccHome, makeClient, resultOf, startTestServer, tempDir, type CpccRun, type SimWorker, type TestServer } from '../helpers/server.js';

after(cleanup);

const short = (id: string) => id.slice(-12);

function commonPrefix(a: string, b: string): string {
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  return a.slice(0, i);
}

/** The longest start two neighbours in `ids` share (ids made together straddle at most one change of their first digits). */
function sharedStart(ids: string[]): string {
  let best = '';
  for (let i = 1; i < ids.length; i++) {
    const p = commonPrefix(ids[i - 1]!, ids[i]!);
    if (p.length > best.length) best = p;
  }
  return best;
}

function ok<T = any>(run: CpccRun): T {
  assert.equal(run.code, 0, `expected exit 0, got ${run.code}; stderr: ${run.stderr}`);
  return JSON.parse(run.stdout) as T;
}

async function apiError(p: Promise<unknown>): Promise<ApiError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
  assert.fail('expected the request to be refused');
}

describe('short ids', () => {
  let ts: TestServer;
  let home: string;
  let eveHome: string;
  let eve: ApiClient;
  let worker: SimWorker;
  /** Every job of both projects, as the super user sees them. */
  const all: string[] = [];
  let eveJobs: string[] = [];
  let batch: string[] = [];

  before(async () => {
    ts = await startTestServer();
    await ts.admin.createProject('alpha');
    await ts.admin.addUser('eve', 'eve-password-1');
    eve = makeClient(ts.server.url, ts.server.caPem);
    eve.token = (await eve.login('eve', 'eve-password-1')).token;
    await eve.createProject('eves');
    home = await cpccHome(ts, 'alpha');
    eveHome = await cpccHome(ts, 'eves', 'cpcc-eve-');
    await updateConfig(eveHome, (c) => {
      c.servers.here!.user = 'eve';
      c.servers.here!.token = eve.token!;
    });
    // One request: ids made in the same few milliseconds share a long start.
    batch = (await ts.admin.submit('alpha', Array.from({ length: 24 }, (_, i) => ({ argv: ['echo', `job ${i}`], name: `b${i}` })))).ids;
    eveJobs = (await eve.submit('eves', [{ argv: ['true'] }, { argv: ['true'] }, { argv: ['true'] }])).ids;
    all.push(...batch, ...eveJobs);
    worker = await ts.worker({ name: 'w-short' });
  });

  it('tables show the short form, and it pastes back into job, logs and outputs', async () => {
    // Run the first job of the batch so that it has output.
    const [claimed] = (await worker.client.claim(worker.workerId, { waitS: 0, max: 1 })).jobs;
    assert.equal(claimed!.id, batch[0]);
    await worker.client.result(worker.workerId, resultOf(claimed!.id, claimed!.attempt, { stdout: 'hello from the first\n' }));

    const table = await cpcc(home, ['jobs', '--limit', '100']);
    assert.equal(table.code, 0, table.stderr);
    const row = table.stdout.split('\n').find((l) => /\bb0\b/.test(l));
    assert.ok(row, `no row for b0 in:\n${table.stdout}`);
    const shown = row.trim().split(/\s+/)[0]!;
    assert.equal(shown, short(batch[0]!), 'the id column shows the last group of the id');
    assert.doesNotMatch(table.stdout, new RegExp(batch[0]!), 'tables do not show whole ids');

    const job = ok(await cpcc(home, ['--json', 'job', shown]));
    assert.equal(job.id, batch[0], '--json keeps the whole id');
    const logs = await cpcc(home, ['logs', shown]);
    assert.equal(logs.code, 0, logs.stderr);
    assert.equal(logs.stdout, 'hello from the first\n');
    const outputs = ok(await cpcc(home, ['--json', 'outputs', shown]));
    assert.deepEqual(outputs.outputs, []);
    // `--json jobs` names whole ids.
    const listed = ok(await cpcc(home, ['--json', 'jobs', '--limit', '100']));
    assert.ok(listed.jobs.some((j: { id: string }) => j.id === batch[0]));
  });

  it('finds archived jobs by their short form too', async () => {
    // batch[0] ran in the first test.
    await ts.server.ctx.store.archiveJobs([batch[0]!], Date.now());
    const job = ok(await cpcc(home, ['--json', 'job', short(batch[0]!)]));
    assert.equal(job.id, batch[0]);
    assert.equal(job.archived, true);
    assert.equal((await ts.admin.job(batch[0]!.slice(0, 26))).id, batch[0]);
    assert.equal((await apiError(eve.job(short(batch[0]!)))).code, 'JOB_NOT_FOUND');
  });

  it('takes a unique part of the start or the end, with or without dashes, in any case', async () => {
    const id = eveJobs[2]!;
    // The time and the whole counter: no other id made here has them.
    const start = id.slice(0, 26);
    for (const given of [start, start.replaceAll('-', ''), id.slice(-8), id.slice(-8).toUpperCase(), id]) {
      const job = ok(await cpcc(home, ['--json', 'job', given]));
      assert.equal(job.id, id, `'${given}' names ${id}`);
    }
    // The API takes them too, for every client.
    assert.equal((await ts.admin.job(short(id))).id, id);
    // A job to follow, by its short form: the server is given the whole id.
    const submitted = ok(await cpcc(home, ['--json', 'submit', '--after', short(batch[7]!), '--', 'true']));
    const follower = ok(await cpcc(home, ['--json', 'job', short(submitted.ids[0])]));
    assert.deepEqual(follower.after, [batch[7]]);
    all.push(submitted.ids[0]);
  });

  it('refuses a part that fits several jobs and lists them', async () => {
    const part = sharedStart(batch);
    assert.ok(part.length >= 8, `ids of one request share a start: ${batch.join(' ')}`);
    const fits = all.filter((id) => id.startsWith(part));
    assert.ok(fits.length >= 2);
    const run = await cpcc(home, ['job', part]);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /AMBIGUOUS_ID/);
    assert.match(run.stderr, new RegExp(`fits ${fits.length} jobs`));
    const named = run.stderr.match(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g) ?? [];
    assert.deepEqual(new Set(named), new Set(fits.sort().slice(0, 10)));
    if (fits.length > 10) assert.match(run.stderr, new RegExp(`and ${fits.length - 10} more`));

    // Many fits: at most ten are named, and how many more there are.
    const wide = batch[0]!.slice(0, 8);
    const many = all.filter((id) => id.startsWith(wide));
    assert.ok(many.length > 10);
    const err = await apiError(ts.admin.job(wide));
    assert.equal(err.code, 'AMBIGUOUS_ID');
    assert.equal(err.status, 409);
    assert.equal(err.message.match(/[0-9a-f]{8}-[0-9a-f-]{27}/g)?.length, 10);
    assert.match(err.message, new RegExp(`and ${many.length - 10} more`));
    // The error object names them for programs too.
    const agent = new Agent({ connect: { ca: ts.server.caPem, checkServerIdentity: () => undefined } });
    const res = await request(`${ts.server.url}${API_PREFIX}/jobs/${part}`, { headers: { authorization: `Bearer ${ts.admin.token}` }, dispatcher: agent });
    const body = (await res.body.json()) as { error: { code: string; candidates: string[]; count: number } };
    await agent.close();
    assert.equal(res.statusCode, 409);
    assert.equal(body.error.code, 'AMBIGUOUS_ID');
    assert.deepEqual(new Set(body.error.candidates), new Set(fits.sort().slice(0, 10)));
    assert.equal(body.error.count, fits.length);

    // An ambiguous part is its own outcome in a cancel: none of the jobs it fits is cancelled.
    const cancel = await cpcc(home, ['--json', 'cancel', part]);
    assert.equal(cancel.code, 1);
    assert.match(cancel.stderr, /AMBIGUOUS_ID/);
    const [outcome] = JSON.parse(cancel.stdout).outcomes;
    assert.deepEqual([outcome.given, outcome.outcome, outcome.code], [part, 'refused', 'AMBIGUOUS_ID']);
    for (const id of fits) assert.notEqual((await ts.admin.job(id)).state, 'cancelled');
  });

  it("answers a part of another user's job as a job that does not exist, and never names it", async () => {
    const hidden = batch[3]!;
    const run = await cpcc(eveHome, ['job', short(hidden)]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, new RegExp(`no job with id '${short(hidden)}' \\(JOB_NOT_FOUND\\)`));
    const unknown = await cpcc(eveHome, ['job', 'abcdef012345']);
    assert.equal(run.stderr.replace(short(hidden), 'X'), unknown.stderr.replace('abcdef012345', 'X'), 'the same answer as an unknown id');
    assert.equal((await apiError(eve.job(hidden.slice(0, 26)))).code, 'JOB_NOT_FOUND');
    assert.equal((await apiError(eve.cancel([short(hidden)]))).code, 'JOB_NOT_FOUND');

    // A start shared with jobs she may not see: only her own are candidates, or found.
    const part = sharedStart(eveJobs);
    const err = await apiError(eve.job(part));
    assert.equal(err.code, 'AMBIGUOUS_ID');
    const named = new Set(err.message.match(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g));
    assert.deepEqual(named, new Set(eveJobs.filter((id) => id.startsWith(part))));
    const eight = eveJobs[0]!.slice(0, 8);
    if (batch.some((id) => id.startsWith(eight)) && eveJobs.filter((id) => id.startsWith(eight)).length > 1) {
      const e8 = await apiError(eve.job(eight));
      assert.equal(e8.code, 'AMBIGUOUS_ID');
      for (const id of batch) assert.ok(!e8.message.includes(id), 'another project’s job is named');
    }
    // Her own job by its short form, through cpcc, and cancelled by it.
    const cancelled = ok(await cpcc(eveHome, ['--json', 'cancel', short(eveJobs[0]!)]));
    assert.deepEqual(cancelled.cancelled, [eveJobs[0]]);
    const plain = await cpcc(eveHome, ['cancel', short(eveJobs[1]!)]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(plain.stdout, `cancelled ${eveJobs[1]}\n`);
    assert.doesNotMatch(plain.stderr, /not cancelled/);
  });

  it('refuses a part too short or not hex as a usage error, before asking the server', async () => {
    for (const given of ['abc1234', 'zzzzzzzz', '--------']) {
      const run = await cpcc(home, ['job', '--', given]);
      assert.equal(run.code, 2, `'${given}': ${run.stderr}`);
      assert.match(run.stderr, /at least 8 hex digits/);
    }
    const run = await cpcc(home, ['cancel', batch[6]!, 'abc']);
    assert.equal(run.code, 2, run.stderr);
    assert.equal((await ts.admin.job(batch[6]!)).state, 'queued');
    for (const given of ['abc1234', 'zzzzzzzz']) {
      const err = await apiError(ts.admin.job(given));
      assert.equal(err.code, 'INVALID_FIELD', given);
      assert.equal(err.status, 400);
    }
  });

  it('finds a worker by the short form the workers table shows, and lists candidates for a shared start', async () => {
    const extra = [await ts.worker({ name: 'w-a' }), await ts.worker({ name: 'w-b' }), await ts.worker({ name: 'w-c' })];
    const target = extra[1]!;
    const [claimed] = (await target.client.claim(target.workerId, { waitS: 0, max: 1 })).jobs;
    assert.ok(claimed);

    const table = await cpcc(home, ['workers']);
    assert.equal(table.code, 0, table.stderr);
    const row = table.stdout.split('\n').find((l) => /^w-b\s/.test(l));
    assert.ok(row, table.stdout);
    const shown = row.trim().split(/\s+/)[1]!;
    assert.equal(shown, short(target.workerId));

    const lost = ok(await cpcc(home, ['--json', 'worker-failed', shown]));
    assert.deepEqual(lost.lost.map((l: { jobId: string }) => l.jobId), [claimed.id]);

    // Workers registered one after another share a start of 8 digits.
    const ids = extra.map((w) => w.workerId);
    const part = sharedStart(ids).slice(0, 8);
    assert.equal(part.length, 8);
    const run = await cpcc(home, ['worker-failed', part]);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /AMBIGUOUS_ID/);
    for (const id of ids.filter((x) => x.startsWith(part))) assert.ok(run.stderr.includes(id), `names ${id}`);
  });

  it('takes the short form in command-failed and getf', async () => {
    // Alone in the queue.
    const open: string[] = [];
    for (const x of all) if (['waiting', 'queued', 'running'].includes((await ts.admin.job(x)).state)) open.push(x);
    await ts.admin.cancel(open);
    const w = await ts.worker({ name: 'w-files' });
    const { ids } = await ts.admin.submit('alpha', [{ argv: ['true'], name: 'to-lose' }]);
    const id = ids[0]!;
    const [first] = (await w.client.claim(w.workerId, { waitS: 0, max: 1 })).jobs;
    assert.equal(first?.id, id);
    const lost = ok(await cpcc(home, ['--json', 'command-failed', short(id)]));
    assert.deepEqual(lost.lost.map((l: { jobId: string }) => l.jobId), [id]);

    // Its old attempt is still to be confirmed gone; a job of its own is quicker to run.
    ok(await cpcc(home, ['--json', 'cancel', short(id)]));
    const made = (await ts.admin.submit('alpha', [{ argv: ['true'], name: 'with-output', outputs: [{ glob: 'out/*.txt' }] }])).ids[0]!;
    const [second] = (await w.client.claim(w.workerId, { waitS: 0, max: 1 })).jobs;
    assert.equal(second?.id, made);
    const kept = Buffer.from('what the job made\n');
    const sum = createHash('sha256').update(kept).digest('hex');
    await w.client.sendBytes(`/workers/${w.workerId}/files/${sum}`, Readable.from([kept]), kept.length, { job: made, attempt: second!.attempt });
    await w.client.result(w.workerId, resultOf(made, second!.attempt, { outputs: [{ name: 'out/result.txt', sha256: sum, size: kept.length }] }));

    const dest = join(await tempDir('short-getf-'), 'result.txt');
    const got = await cpcc(home, ['getf', short(made), 'out/result.txt', '-o', dest]);
    assert.equal(got.code, 0, got.stderr);
    assert.equal(readFileSync(dest, 'utf8'), 'what the job made\n');
  });
});

describe('the watch screen', () => {
  it('shows short ids whole on a narrow terminal', () => {
    const runningId = '0192f3a4-7b1c-7def-8123-456789abcdef';
    const failedId = '0192f3a4-7b1c-7def-8123-fedcba987654';
    const state = new WatchState(null);
    const counts = { waiting: 0, queued: 0, running: 1, done: 0, failed: 1, cancelled: 0 };
    state.load([{ name: 'a-project-with-a-long-name', owner: 'u', members: [], createdAt: 0, counts }], [], []);
    const at = Date.now() - 5_000;
    const attempt = { n: 1, workerId: 'w', workerName: 'a-worker-with-a-very-long-host-name', via: 'local', startedAt: at };
    const ev = (seq: number, extra: Partial<StreamEvent>): StreamEvent => ({ type: 'event', seq, at, kind: 'x', ...extra });
    state.apply(ev(1, { jobs: [{ id: runningId, project: 'a-project-with-a-long-name', name: 'a long job name here', state: 'running', from: 'queued', reason: 'running', updatedAt: at, attempts: 1, attempt }] }));
    state.apply(ev(2, { jobs: [{ id: failedId, project: 'a-project-with-a-long-name', state: 'failed', from: 'running', reason: 'exit code 3', updatedAt: at, attempts: 1 }] }));
    const out = new Output({ write: () => true }, { write: () => true }, { color: false });
    for (const width of [60, 80]) {
      const screen = state.render(out, { now: Date.now(), width, height: 30, server: 's', live: true });
      for (const line of screen) assert.ok(line.length <= width, `fits ${width}: ${line}`);
      const text = screen.join('\n');
      assert.match(text, new RegExp(`\\n\\s+${short(runningId)}\\s`), `the running job's short id whole at ${width}:\n${text}`);
      assert.match(text, new RegExp(`\\n${short(failedId)}\\s`), `the failed job's short id whole at ${width}:\n${text}`);
    }
  });
});
