/**
 * Crash recovery of a real `cpc-server` process: killed with SIGKILL at awkward
 * moments and started again on the same home, it must come back with every
 * change it acknowledged, keep the leases of workers that are still alive,
 * re-queue the work of workers that are not, survive a torn journal tail, and
 * after a graceful stop start from its snapshot.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiError, type ApiClient } from '../../src/client/api/client.js';
import type { JobView } from '../../src/core/wire.js';
import { startServer } from '../../src/server/start/server.js';
import {
  adminPasswordOf,
  cleanup,
  freePort,
  journalFiles,
  loginAdmin,
  makeClient,
  readJournalRecords,
  resultOf,
  simulatedWorker,
  spawnServer,
  tempDir,
  until,
  type ServerProcess,
  type SimWorker,
} from '../helpers/server.js';

after(cleanup);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function adminOf(srv: ServerProcess): Promise<ApiClient> {
  return loginAdmin(srv.info.url, srv.caPem, adminPasswordOf(srv.home));
}

/** The same token against a server that came back (it may listen on another port). */
function reconnect(srv: ServerProcess, token: string): ApiClient {
  return makeClient(srv.info.url, srv.caPem, token, srv.info.serverId);
}

async function killHard(srv: ServerProcess): Promise<void> {
  const how = await srv.stop('SIGKILL');
  assert.equal(how.signal, 'SIGKILL');
}

/** All jobs of a project, id → state (live ones; nothing is archived within these tests). */
async function statesOf(client: ApiClient, project: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let next: string | undefined;
  do {
    const page = await client.jobs(project, { limit: 1000, after: next });
    for (const j of page.jobs) out.set(j.id, j.state);
    next = page.next;
  } while (next);
  return out;
}

function stateLoaded(srv: ServerProcess) {
  const line = srv.logLines().find((l) => l.msg === 'state loaded');
  assert.ok(line, `a 'state loaded' log line; stderr: ${srv.stderr()}`);
  return line as unknown as { jobs: number; leases: number; replayed: number; snapshotSegment: number | null; truncated: boolean };
}

/** Heartbeats a simulated worker's attempts every `everyMs`, through outages, until stopped. */
function keepHeartbeating(w: SimWorker, attempts: { jobId: string; attempt: number }[], everyMs: number) {
  let stopped = false;
  const ok: number[] = [];
  const abandoned: string[] = [];
  const loop = (async () => {
    while (!stopped) {
      try {
        const reply = await w.client.heartbeat(w.workerId, { attempts });
        ok.push(Date.now());
        abandoned.push(...reply.abandon.map((a) => `${a.jobId}#${a.attempt}: ${a.reason}`));
      } catch {
        // the server is down: try again soon
      }
      await sleep(everyMs);
    }
  })();
  return {
    ok,
    abandoned,
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}

describe('recovery after the server is killed', () => {
  it('loses nothing it acknowledged: submissions and cancels, even with requests in flight at the kill', async () => {
    const home = await tempDir('cpc-recovery-');
    const srv = await spawnServer(home, { heartbeatIntervalS: 1 });
    const admin = await adminOf(srv);
    await admin.createProject('p');

    // Acknowledged, one request each, many at once (they share fsyncs).
    const expected = new Map<string, string>();
    const singles = await Promise.all(Array.from({ length: 24 }, (_, i) => admin.submit('p', [{ argv: ['echo', String(i)] }])));
    for (const r of singles) expected.set(r.ids[0]!, 'queued');
    const batch = await admin.submit('p', [
      { key: 'root', argv: ['true'] },
      { key: 'mid', argv: ['true'], after: ['root'] },
      { argv: ['true'], after: ['mid'] },
    ]);
    expected.set(batch.ids[0]!, 'cancelled').set(batch.ids[1]!, 'cancelled').set(batch.ids[2]!, 'cancelled');
    const toCancel = [...expected.keys()].slice(0, 6);
    await admin.cancel([...toCancel, batch.ids[0]!]);
    for (const id of toCancel) expected.set(id, 'cancelled');

    // Then keep submitting and cancelling, and kill the server in the middle of it.
    const acknowledged = new Map<string, string>();
    const cancelSent = new Set<string>();
    let stop = false;
    const writers = Array.from({ length: 6 }, async (_, w) => {
      for (let i = 0; !stop; i++) {
        try {
          const { ids } = await admin.submit('p', [{ argv: ['echo', `${w}-${i}`] }]);
          acknowledged.set(ids[0]!, 'queued');
          if (i % 3 === 0) {
            cancelSent.add(ids[0]!);
            await admin.cancel([ids[0]!]);
            acknowledged.set(ids[0]!, 'cancelled');
          }
        } catch (err) {
          assert.ok(err instanceof ApiError && err.code === 'UNREACHABLE', `only the kill may stop a write: ${String(err)}`);
          return;
        }
      }
    });
    await until('60 more acknowledged changes', () => acknowledged.size >= 60, { timeoutMs: 15_000 });
    await killHard(srv);
    stop = true;
    await Promise.all(writers);

    const again = await spawnServer(home, { heartbeatIntervalS: 1 });
    const client = reconnect(again, admin.token!);
    const states = await statesOf(client, 'p');
    for (const [id, state] of [...expected, ...acknowledged]) {
      const got = states.get(id);
      // A cancel that was sent but not answered may or may not have landed.
      if (state === 'queued' && got === 'cancelled' && cancelSent.has(id)) continue;
      assert.equal(got, state, `job ${id} after the restart`);
    }
    const loaded = stateLoaded(again);
    assert.equal(loaded.snapshotSegment, null, 'no snapshot: everything came from the journal');
    assert.ok(loaded.replayed >= 24 + 1 + 1 + 60, `replayed ${loaded.replayed} records`);
    assert.equal(loaded.truncated, false);
    const counts = (await client.project('p')).counts;
    assert.equal(counts.queued + counts.cancelled, states.size);
    await again.stop('SIGKILL');
  });

  it('loses nothing when killed while snapshots are written and the journal is cut under load', async () => {
    const home = await tempDir('cpc-recovery-');
    // The smallest threshold: a snapshot after every kilobyte of journal.
    writeFileSync(join(home, 'config.json'), JSON.stringify({ snapshotAfterBytes: 1024 }));
    const srv = await spawnServer(home, { heartbeatIntervalS: 1 });
    const admin = await adminOf(srv);
    await admin.createProject('p');
    const acknowledged = new Set<string>();
    let stop = false;
    const writers = Array.from({ length: 8 }, async (_, w) => {
      for (let i = 0; !stop; i++) {
        try {
          const { ids } = await admin.submit('p', [{ argv: ['echo', `${w}-${i}`] }, { argv: ['echo', 'x'.repeat(200)] }]);
          for (const id of ids) acknowledged.add(id);
        } catch (err) {
          assert.ok(err instanceof ApiError && err.code === 'UNREACHABLE', `only the kill may stop a write: ${String(err)}`);
          return;
        }
      }
    });
    await until('snapshots to be written while jobs keep coming', () =>
      readdirSync(join(home, 'state')).some((n) => /^snapshot-\d+\.json$/.test(n)) && acknowledged.size >= 400,
      { timeoutMs: 20_000 },
    );
    await killHard(srv);
    stop = true;
    await Promise.all(writers);

    const again = await spawnServer(home, { heartbeatIntervalS: 1 });
    const states = await statesOf(reconnect(again, admin.token!), 'p');
    const missing = [...acknowledged].filter((id) => !states.has(id));
    assert.deepEqual(missing, [], `${missing.length} of ${acknowledged.size} acknowledged jobs are missing`);
    assert.notEqual(stateLoaded(again).snapshotSegment, null);
    assert.equal(again.logLines().filter((l) => l.level === 'error').length, 0, again.stderr());
    await again.stop('SIGKILL');
  });

  it('keeps the leases of a worker that heartbeats across the restart and re-queues those of one that stopped', async () => {
    const home = await tempDir('cpc-recovery-');
    const port = await freePort();
    const unsecurePort = await freePort();
    const srv = await spawnServer(home, { port, unsecurePort, heartbeatIntervalS: 1 });
    const admin = await adminOf(srv);
    await admin.createProject('p');
    const { ids } = await admin.submit('p', [{ argv: ['sleep', '60'] }, { argv: ['sleep', '60'] }]);
    const a = await simulatedWorker(srv.info.url, srv.caPem, (await admin.createWorkerToken('a')).token, { name: 'a', cores: 1 });
    const b = await simulatedWorker(srv.info.url, srv.caPem, (await admin.createWorkerToken('b')).token, { name: 'b', cores: 1 });
    const [jobA] = (await a.client.claim(a.workerId, { waitS: 0 })).jobs;
    const [jobB] = (await b.client.claim(b.workerId, { waitS: 0 })).jobs;
    assert.ok(jobA && jobB);
    assert.deepEqual([jobA.id, jobB.id].sort(), [...ids].sort());
    assert.equal(jobA.attempt, 1);
    assert.equal(jobB.attempt, 1);

    const beatsA = keepHeartbeating(a, [{ jobId: jobA.id, attempt: 1 }], 300);
    await b.client.heartbeat(b.workerId, { attempts: [{ jobId: jobB.id, attempt: 1 }] });
    await until('a first heartbeat of worker a', () => beatsA.ok.length > 0);

    await killHard(srv);
    const killedAt = Date.now();
    const again = await spawnServer(home, { port, unsecurePort, heartbeatIntervalS: 1 });
    assert.equal(again.info.url, srv.info.url, 'back on the same port');
    const client = reconnect(again, admin.token!);
    // A short outage re-runs nothing: right after the start both jobs still run.
    assert.deepEqual(
      [(await client.job(jobA.id)).state, (await client.job(jobB.id)).state],
      ['running', 'running'],
    );

    await until('worker a to reach the restarted server', () => beatsA.ok.some((t) => t > killedAt));
    // Worker b is silent: within a lease period or two its job is back on the queue.
    const requeued = await until(
      "worker b's job to be re-queued",
      async () => {
        const j = await client.job(jobB.id);
        return j.state === 'queued' ? j : null;
      },
      { timeoutMs: 10_000 },
    );
    assert.match(requeued.reason, /lease/);
    assert.equal(requeued.attempts.length, 1);
    assert.equal(requeued.attempts[0]!.how, 'lease-expired');
    assert.match(requeued.attempts[0]!.reason ?? '', /lease/);

    // Worker a kept its lease all along: same attempt, still running, never abandoned.
    const stillA = await client.job(jobA.id);
    assert.equal(stillA.state, 'running');
    assert.equal(stillA.attempts.length, 1);
    assert.equal(stillA.attempts[0]!.endedAt, undefined);
    assert.deepEqual(beatsA.abandoned, []);
    const leases = (await client.heartbeats()).leases;
    assert.deepEqual(
      leases.map((l) => [l.jobId, l.attempt, l.workerId]),
      [[jobA.id, 1, a.workerId]],
    );
    await beatsA.stop();

    const report = resultOf(jobA.id, 1, { stdout: 'finished\n' });
    assert.deepEqual(await a.client.result(a.workerId, report), { accepted: true, duplicate: false, state: 'done' });
    assert.deepEqual(await a.client.result(a.workerId, report), { accepted: true, duplicate: true, state: 'done' });
    const doneA = await client.job(jobA.id);
    assert.equal(doneA.attempts.length, 1, 'the repeated report made no second attempt');

    // The re-queued job is handed out again as attempt 2; b's late report of attempt 1 is refused.
    const [second] = (await a.client.claim(a.workerId, { waitS: 2 })).jobs;
    assert.ok(second);
    assert.equal(second.id, jobB.id);
    assert.equal(second.attempt, 2);
    await assert.rejects(b.client.result(b.workerId, resultOf(jobB.id, 1)), (err: unknown) => {
      assert.ok(err instanceof ApiError);
      assert.equal(err.code, 'STALE_ATTEMPT');
      assert.equal(err.status, 409);
      return true;
    });
    const afterStale = await client.job(jobB.id);
    assert.equal(afterStale.state, 'running');
    assert.equal(afterStale.attempts[1]!.workerId, a.workerId);
    await again.stop('SIGKILL');
  });

  it('journals a lease the sweeper expired while up, so after a kill the job is still queued, not running', async () => {
    const home = await tempDir('cpc-recovery-');
    const srv = await spawnServer(home, { heartbeatIntervalS: 0.5 });
    const admin = await adminOf(srv);
    await admin.createProject('p');
    const [id] = (await admin.submit('p', [{ argv: ['sleep', '60'] }])).ids;
    const w = await simulatedWorker(srv.info.url, srv.caPem, (await admin.createWorkerToken('w')).token);
    const [claimed] = (await w.client.claim(w.workerId, { waitS: 0 })).jobs;
    assert.equal(claimed?.id, id);

    // No heartbeat: the server takes the job back on its own.
    const requeued = await until(
      'the sweeper to re-queue the job',
      async () => {
        const j = await admin.job(id!);
        return j.state === 'queued' ? j : null;
      },
      { timeoutMs: 5000 },
    );
    assert.match(requeued.reason, /lease/);
    const lost = await until('the expiry to be in the journal on disk', () =>
      readJournalRecords(home).find(
        (r) => r.t === 'attempts-lost' && JSON.stringify(r.attempts) === JSON.stringify([[id, 1]]),
      ),
    );
    assert.equal(lost.how, 'lease-expired');

    await killHard(srv);
    const again = await spawnServer(home, { heartbeatIntervalS: 0.5 });
    const client = reconnect(again, admin.token!);
    const j = await client.job(id!);
    assert.equal(j.state, 'queued');
    assert.equal(j.attempts.length, 1);
    assert.equal(j.attempts[0]!.how, 'lease-expired');
    assert.deepEqual((await client.heartbeats()).leases, []);
    assert.equal(stateLoaded(again).leases, 0);
    // And it runs again, as attempt 2.
    const w2 = await simulatedWorker(again.info.url, again.caPem, w.token);
    const [next] = (await w2.client.claim(w2.workerId, { waitS: 0 })).jobs;
    assert.equal(next?.id, id);
    assert.equal(next?.attempt, 2);
    await again.stop('SIGKILL');
  });

  it('starts after a torn journal tail, with everything acknowledged, a warning, and a clean journal after', async () => {
    const home = await tempDir('cpc-recovery-');
    const srv = await spawnServer(home, { heartbeatIntervalS: 1 });
    const admin = await adminOf(srv);
    await admin.createProject('p');
    const expected = new Map<string, string>();
    for (let i = 0; i < 5; i++) {
      const { ids } = await admin.submit('p', [{ argv: ['echo', String(i)] }, { argv: ['echo', `${i}b`] }]);
      expected.set(ids[0]!, 'queued').set(ids[1]!, 'queued');
    }
    const cancelled = [...expected.keys()].filter((_, i) => i % 4 === 0);
    await admin.cancel(cancelled);
    for (const id of cancelled) expected.set(id, 'cancelled');
    await killHard(srv);

    // What a crash in the middle of a write leaves: a frame header promising more than is there.
    const files = journalFiles(home);
    const last = files[files.length - 1]!;
    const header = Buffer.alloc(8);
    header.writeUInt32LE(400, 0);
    header.writeUInt32LE(0xdeadbeef, 4);
    appendFileSync(last, Buffer.concat([header, Buffer.from('{"t":"jobs-submitted","at":1,"proj')]));

    const again = await spawnServer(home, { heartbeatIntervalS: 1 });
    const client = reconnect(again, admin.token!);
    assert.deepEqual(await statesOf(client, 'p'), expected);
    const warning = again.logLines().find((l) => l.level === 'warn' && /journal/.test(l.msg));
    assert.ok(warning, `a warning about the journal; stderr: ${again.stderr()}`);
    assert.match(warning.msg, /truncated/);
    assert.equal(stateLoaded(again).truncated, true);

    // New records start on a clean boundary: they survive the next crash, with no warning.
    const [late] = (await client.submit('p', [{ argv: ['echo', 'late'] }])).ids;
    expected.set(late!, 'queued');
    await killHard(again);
    const third = await spawnServer(home, { heartbeatIntervalS: 1 });
    assert.deepEqual(await statesOf(reconnect(third, admin.token!), 'p'), expected);
    assert.equal(stateLoaded(third).truncated, false);
    assert.equal(third.logLines().filter((l) => l.level === 'warn').length, 0, third.stderr());
    await third.stop('SIGKILL');
  });

  it('writes a snapshot on SIGTERM, so the next start replays nothing and has every job', async () => {
    const home = await tempDir('cpc-recovery-');
    const srv = await spawnServer(home, { heartbeatIntervalS: 1 });
    const admin = await adminOf(srv);
    await admin.createProject('p');
    const expected = new Map<string, string>();
    for (let i = 0; i < 10; i++) {
      const { ids } = await admin.submit('p', [{ key: 'a', argv: ['true'] }, { argv: ['true'], after: ['a'] }]);
      expected.set(ids[0]!, 'queued').set(ids[1]!, 'waiting');
    }
    const first = [...expected.keys()][0]!;
    await admin.cancel([first]);
    expected.set(first, 'cancelled').set([...expected.keys()][1]!, 'cancelled');
    const recordsBefore = readJournalRecords(home).length;
    assert.ok(recordsBefore >= 12, `${recordsBefore} records in the journal before the stop`);

    const how = await srv.stop('SIGTERM');
    assert.equal(how.code, 0, srv.stderr());
    assert.ok(
      readdirSync(join(home, 'state')).some((n) => /^snapshot-\d+\.json$/.test(n)),
      'a snapshot file was written',
    );
    assert.ok(srv.logLines().some((l) => l.msg === 'stopped'));

    const server = await startServer({ home, host: '127.0.0.1', securePort: 0, unsecurePort: 0, heartbeatIntervalS: 1, log: () => {} });
    try {
      const { replayed, snapshotSegment, truncated } = server.ctx.store.recovered;
      assert.notEqual(snapshotSegment, null, 'started from a snapshot');
      assert.equal(replayed, 0, 'nothing left in the journal to replay');
      assert.equal(truncated, false);
      const got = new Map([...server.model.jobs.values()].map((j) => [j.id, j.state] as const));
      assert.deepEqual(got, expected);
      const queued: JobView[] = (await makeClient(server.url, server.caPem, admin.token!).queue()).jobs;
      assert.equal(queued.length, 9, 'the ready queue was rebuilt from the snapshot');
    } finally {
      await server.close();
    }
  });
});
