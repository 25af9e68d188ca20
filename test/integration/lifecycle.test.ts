/**
 * Jobs from submission to their end, run by real `cpc-worker` processes
 * against a server: dependencies, retries, a worker killed mid-job, full logs,
 * timeouts, and finished jobs moving to the archive.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiError } from '../../src/client/api/client.js';
import type { JobInput, JobView } from '../../src/core/wire.js';
import {
  cleanup,
  cpccHome,
  cpccInProcess,
  killAtCleanup,
  spawnWorker,
  startTestServer,
  tempDir,
  until,
  type TestServer,
  type WorkerProcess,
} from '../helpers/server.js';

after(cleanup);

/** A folder jobs leave marks in; they run under uids of their own when the tests run as root. */
async function marksDir(): Promise<string> {
  const dir = await tempDir('cpc-marks-');
  chmodSync(dir, 0o777);
  return dir;
}

/** Short heartbeats and leases, so that a lost worker is noticed within seconds. */
const FAST = { heartbeatIntervalS: 0.5, leaseS: 1.5, archiveAfterS: 3600 };

async function startWorker(ts: TestServer, name: string, cores = 2): Promise<WorkerProcess> {
  const token = await ts.server.createWorkerToken(name);
  return spawnWorker({
    url: ts.server.url,
    caFile: ts.caFile(),
    serverId: ts.server.serverId,
    token,
    name,
    cores,
    memoryMb: 1024,
    workDir: await tempDir(`cpc-work-${name}-`),
  });
}

/** Waits until every job of a project is in a final state, and returns them by id. */
async function allFinished(ts: TestServer, project: string, count: number, timeoutMs = 20_000): Promise<Map<string, JobView>> {
  return until(
    `the ${count} jobs of ${project} to finish`,
    async () => {
      const { jobs } = await ts.admin.jobs(project, { limit: 1000 });
      if (jobs.length !== count || jobs.some((j) => !['done', 'failed', 'cancelled'].includes(j.state))) return null;
      return new Map(jobs.map((j) => [j.id, j]));
    },
    { timeoutMs, intervalMs: 100 },
  );
}

async function jobIn(ts: TestServer, id: string, state: string, timeoutMs = 15_000): Promise<JobView> {
  return until(
    `job ${id} to be ${state}`,
    async () => {
      const j = await ts.admin.job(id);
      return j.state === state ? j : null;
    },
    { timeoutMs, intervalMs: 100 },
  );
}

describe('job lifecycle with real workers', () => {
  it('runs 20 jobs with a diamond, a chain and a fan-out in dependency order', async () => {
    const ts = await startTestServer(FAST);
    await ts.admin.createProject('deps');
    const jobs: JobInput[] = [
      { key: 'top', shell: 'echo top' },
      { key: 'left', shell: 'echo left', after: ['top'] },
      { key: 'right', shell: 'echo right', after: ['top'] },
      { key: 'bottom', shell: 'echo bottom', after: ['left', 'right'] },
    ];
    for (let i = 1; i <= 8; i++) jobs.push({ key: `c${i}`, shell: `echo c${i}`, ...(i > 1 ? { after: [`c${i - 1}`] } : {}) });
    for (let i = 1; i <= 8; i++) jobs.push({ key: `f${i}`, argv: ['echo', `f${i}`], after: ['c4', 'bottom'] });
    // Submitted in reverse, so the order of the request does not give the answer away.
    const reversed = [...jobs].reverse();
    const { ids } = await ts.admin.submit('deps', reversed);
    const idOf = new Map(reversed.map((j, i) => [j.key!, ids[i]!]));

    const initial = await ts.admin.jobs('deps', { limit: 100 });
    assert.deepEqual(
      initial.jobs.filter((j) => j.state === 'queued').map((j) => j.id).sort(),
      [idOf.get('top'), idOf.get('c1')].sort(),
      'only the jobs with no dependencies are queued at first',
    );

    await Promise.all([startWorker(ts, 'w1'), startWorker(ts, 'w2')]);
    const done = await allFinished(ts, 'deps', 20);

    for (const spec of jobs) {
      const job = done.get(idOf.get(spec.key!)!)!;
      assert.equal(job.state, 'done', `${spec.key}: ${job.reason}`);
      assert.equal(job.attempts.length, 1, spec.key);
      assert.equal(job.exitCode, 0);
      assert.equal(job.stdoutTail, `${spec.key}\n`);
      const started = job.attempts[0]!.startedAt;
      for (const depKey of spec.after ?? []) {
        const dep = done.get(idOf.get(depKey)!)!;
        assert.ok(
          dep.attempts[0]!.endedAt! <= started,
          `${spec.key} started at ${started}, before ${depKey} ended at ${dep.attempts[0]!.endedAt}`,
        );
      }
    }
    // Both workers took part.
    assert.equal(new Set([...done.values()].map((j) => j.attempts[0]!.workerName)).size, 2);
    assert.deepEqual((await ts.admin.project('deps')).counts, { waiting: 0, queued: 0, running: 0, done: 20, failed: 0, cancelled: 0 });
  });

  it('runs a job that exits 3 with 2 retries three times, then fails it and cancels its dependants', async () => {
    const ts = await startTestServer(FAST);
    await ts.admin.createProject('retries');
    const { ids } = await ts.admin.submit('retries', [
      { key: 'bad', shell: 'echo attempt; exit 3', maxRetries: 2 },
      { key: 'child', argv: ['true'], after: ['bad'] },
      { argv: ['true'], after: ['child'] },
    ]);
    const [badId, childId, grandchildId] = ids as [string, string, string];
    await startWorker(ts, 'w1');
    const all = await allFinished(ts, 'retries', 3);

    const bad = all.get(badId)!;
    assert.equal(bad.state, 'failed');
    assert.match(bad.reason, /exit code 3/);
    assert.equal(bad.attempts.length, 3, 'the first run and two retries');
    assert.deepEqual(
      bad.attempts.map((a) => [a.n, a.how, a.exitCode]),
      [
        [1, 'exited', 3],
        [2, 'exited', 3],
        [3, 'exited', 3],
      ],
    );
    assert.equal(bad.exitCode, 3);
    for (const id of [childId, grandchildId]) {
      const j = all.get(id)!;
      assert.equal(j.state, 'cancelled');
      assert.match(j.reason, /dependency .* (failed|cancelled)/);
      assert.equal(j.attempts.length, 0, 'a cancelled dependant never ran');
    }
    assert.match(all.get(childId)!.reason, new RegExp(badId));
  });

  it('re-queues the job of a worker killed mid-job after its lease, and a second worker finishes it', async () => {
    const ts = await startTestServer(FAST);
    await ts.admin.createProject('lost');
    const marks = await marksDir();
    const pidFile = join(marks, 'first-run.pid');
    // The first run records its pid and sleeps; a later run sees the mark and finishes at once.
    const shell = `if [ -e '${pidFile}' ]; then echo second run; exit 0; fi; echo $$ > '${pidFile}'; exec sleep 30`;
    const [id] = (await ts.admin.submit('lost', [{ shell }])).ids as [string];

    const first = await startWorker(ts, 'doomed');
    await jobIn(ts, id, 'running');
    const pid = Number(await until('the first run to start', () => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim()));
    killAtCleanup(pid);
    const killed = await first.stop('SIGKILL');
    assert.equal(killed.signal, 'SIGKILL');
    const killedAt = Date.now();
    process.kill(pid, 'SIGKILL');

    const requeued = await jobIn(ts, id, 'queued', 10_000);
    assert.match(requeued.reason, /lease/);
    assert.ok(Date.now() - killedAt >= 800, 'not re-queued before the lease could run out');
    await startWorker(ts, 'rescuer');
    const done = await jobIn(ts, id, 'done');
    assert.deepEqual(
      done.attempts.map((a) => [a.n, a.workerName, a.how]),
      [
        [1, 'doomed', 'lease-expired'],
        [2, 'rescuer', 'exited'],
      ],
    );
    assert.equal(done.stdoutTail, 'second run\n');
  });

  it('stops the process of a job cancelled while it runs, and gives its core to the next job', async () => {
    const ts = await startTestServer(FAST);
    await ts.admin.createProject('stop');
    const marks = await marksDir();
    const pidFile = join(marks, 'run.pid');
    const [id] = (await ts.admin.submit('stop', [{ shell: `echo $$ > '${pidFile}'; exec sleep 30` }])).ids as [string];
    await startWorker(ts, 'single', 1);
    await jobIn(ts, id, 'running');
    const pid = Number(await until('the job to start', () => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim()));
    killAtCleanup(pid);

    await ts.admin.cancel([id]);
    await until(
      'the cancelled job to be killed on the worker',
      () => {
        try {
          process.kill(pid, 0);
          return false;
        } catch {
          return true;
        }
      },
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    const cancelled = await ts.admin.job(id);
    assert.equal(cancelled.state, 'cancelled');
    assert.equal(cancelled.attempts[0]!.how, 'cancelled');

    // The worker has one core: the next job can only run if the cancelled one gave it back.
    const [next] = (await ts.admin.submit('stop', [{ argv: ['echo', 'next'] }])).ids as [string];
    const done = await jobIn(ts, next, 'done');
    assert.equal(done.attempts[0]!.workerName, 'single');
    assert.equal((await ts.admin.job(id)).state, 'cancelled', 'a late report did not revive the cancelled job');
  });

  it('keeps the full stdout and stderr of an attempt, beyond what the job record holds', async () => {
    const ts = await startTestServer(FAST);
    await ts.admin.createProject('logs');
    const { ids } = await ts.admin.submit('logs', [
      { shell: 'seq 1 30000; echo oops >&2' },
      { argv: ['echo', 'hello'] },
    ]);
    const [bigId, smallId] = ids as [string, string];
    await startWorker(ts, 'w1');
    await allFinished(ts, 'logs', 2);

    const expected = Array.from({ length: 30000 }, (_, i) => `${i + 1}\n`).join('');
    const big = await ts.admin.job(bigId);
    assert.ok((big.stdoutTail ?? '').length < expected.length, 'the job record holds only the tail');
    assert.ok(expected.endsWith(big.stdoutTail ?? 'missing'));
    const stdout = await ts.admin.logs(bigId);
    assert.equal(stdout.length, expected.length);
    assert.equal(stdout, expected);
    assert.equal(await ts.admin.logs(bigId, { stream: 'stderr' }), 'oops\n');
    assert.equal(await ts.admin.logs(bigId, { attempt: 1 }), expected);
    assert.equal(await ts.admin.logs(smallId), 'hello\n');
    assert.equal(await ts.admin.logs(smallId, { stream: 'stderr' }), '');

    // A page at a time, as the dashboard reads it: the server reads and sends only that page.
    let joined = '';
    for (let offset = 0; offset < expected.length; offset += 50_000) {
      const part = await ts.admin.logPart(bigId, { offset, limit: 50_000 });
      assert.deepEqual([part.offset, part.end, part.size], [offset, Math.min(offset + 50_000, expected.length), expected.length]);
      joined += part.text;
    }
    assert.equal(joined, expected);
    const tail = await ts.admin.logPart(bigId, { tail: 12 });
    const whole = { start: 0, running: false, attempt: 1 };
    assert.deepEqual(tail, { text: expected.slice(-12), offset: expected.length - 12, end: expected.length, size: expected.length, ...whole });
    // A log kept whole in the job record is served the same way.
    assert.deepEqual(await ts.admin.logPart(smallId, { offset: 2, limit: 3 }), { text: 'llo', offset: 2, end: 5, size: 6, ...whole });

    // cpcc logs --tail: the last lines, from a part that grows until it holds them.
    const home = await cpccHome(ts, 'logs');
    const tailOf = async (args: string[]) => {
      const r = await cpccInProcess(home, ['logs', ...args]);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout;
    };
    assert.equal(await tailOf([bigId, '--tail', '3']), '29998\n29999\n30000\n');
    assert.equal(await tailOf([bigId, '--tail', '5000']), expected.split('\n').slice(-5001).join('\n'));
    assert.equal(await tailOf([bigId, '--tail', '100000']), expected);
    assert.equal(await tailOf([smallId, '--tail', '1']), 'hello\n');
    assert.equal(await tailOf([smallId, '--tail', '2', '--stderr']), '');
  });

  it('fails a job that runs past its timeout, saying so', async () => {
    const ts = await startTestServer(FAST);
    await ts.admin.createProject('slow');
    const [id] = (await ts.admin.submit('slow', [{ argv: ['sleep', '30'], timeoutS: 1 }])).ids as [string];
    await startWorker(ts, 'w1');
    const failed = await jobIn(ts, id, 'failed', 15_000);
    assert.match(failed.reason, /time(d)? ?out/i);
    assert.equal(failed.attempts.length, 1);
    assert.equal(failed.attempts[0]!.how, 'timeout');
    assert.ok(failed.durationMs! >= 1000 && failed.durationMs! < 10_000, `ran ${failed.durationMs} ms`);
  });

  it('moves finished jobs to the archive, where they can still be read, listed, counted and depended on', async () => {
    const ts = await startTestServer({ ...FAST, archiveAfterS: 0 });
    await ts.admin.createProject('old');
    const { ids } = await ts.admin.submit('old', [
      { argv: ['echo', 'one'] },
      { argv: ['echo', 'two'] },
      { shell: 'exit 1' },
    ]);
    const [oneId, twoId, badId] = ids as [string, string, string];
    await startWorker(ts, 'w1');
    await until('the finished jobs to leave memory', () => ids.every((id) => !ts.server.model.jobs.has(id)), {
      timeoutMs: 15_000,
      intervalMs: 100,
    });

    const one = await ts.admin.job(oneId);
    assert.equal(one.archived, true);
    assert.equal(one.state, 'done');
    assert.equal(one.stdoutTail, 'one\n');
    assert.equal(await ts.admin.logs(oneId), 'one\n');
    assert.equal((await ts.admin.job(badId)).state, 'failed');

    const archived = await ts.admin.jobs('old', { archived: true });
    assert.deepEqual(archived.jobs.map((j) => j.id).sort(), [...ids].sort());
    assert.ok(archived.jobs.every((j) => j.archived === true));
    assert.deepEqual(
      archived.jobs.filter((j) => j.state === 'done').map((j) => j.id).sort(),
      [oneId, twoId].sort(),
    );
    assert.deepEqual((await ts.admin.jobs('old')).jobs, [], 'no live jobs left');
    assert.deepEqual((await ts.admin.project('old')).counts, { waiting: 0, queued: 0, running: 0, done: 2, failed: 1, cancelled: 0 });

    // A new job may depend on an archived one that succeeded, not on one that failed.
    const { ids: next } = await ts.admin.submit('old', [{ argv: ['echo', 'three'], after: [oneId, twoId] }]);
    const three = await ts.admin.job(next[0]!);
    assert.ok(three.state === 'queued' || three.state === 'running' || three.state === 'done', three.state);
    await assert.rejects(ts.admin.submit('old', [{ argv: ['true'], after: [badId] }]), (err: unknown) => {
      assert.ok(err instanceof ApiError);
      assert.equal(err.code, 'INVALID_STATE');
      return true;
    });
    await until('the new job to run and be archived as well', async () => (await ts.admin.job(next[0]!)).archived === true, {
      timeoutMs: 10_000,
      intervalMs: 100,
    });
    assert.deepEqual((await ts.admin.project('old')).counts.done, 3);
  });
});
