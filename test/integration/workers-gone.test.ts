/**
 * Workers as the admin sees them over time, with real cpc-worker processes:
 * one that stops is listed as gone (stopped) and one killed as gone (lost),
 * each until the retention ends, then dropped from `cpcc workers` and the
 * cpc_workers gauge; a worker started again under its name keeps one entry.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'undici';
import type { WorkerView } from '../../src/core/wire.js';
import {
  adminPasswordOf,
  cleanup,
  cpcc,
  cpccHome,
  cpccOk,
  loginAdmin,
  spawnServer,
  spawnWorker,
  startTestServer,
  tempDir,
  until,
  type TestServer,
  type WorkerProcess,
} from '../helpers/server.js';

after(cleanup);

/** Long enough that nothing is removed by the retention unless a test shortens it. */
const HOUR_S = 3600;
const WAIT = { timeoutMs: 30_000 };

async function server(): Promise<TestServer> {
  return startTestServer({ heartbeatIntervalS: 0.5, leaseS: 2, workerRetentionS: HOUR_S });
}

async function worker(ts: TestServer, name: string, token?: string): Promise<WorkerProcess & { token: string }> {
  token ??= await ts.server.createWorkerToken(`${name}-token`);
  const w = spawnWorker({ url: ts.server.url, caFile: ts.caFile(), serverId: ts.server.serverId, token, name, workDir: await tempDir('cpc-wd-'), claimWaitS: 2 });
  return Object.assign(w, { token });
}

async function listed(ts: TestServer, name: string): Promise<WorkerView[]> {
  return (await ts.admin.workers()).workers.filter((w) => w.name === name);
}

/** Waits for a listed worker named `name` that `pick` accepts. */
function entry(ts: TestServer, name: string, what: string, pick: (w: WorkerView) => boolean): Promise<WorkerView> {
  return until(what, async () => (await listed(ts, name)).find(pick), WAIT);
}

/** The cpc_workers gauge, read as a super user scrapes it. */
async function gauge(ts: TestServer): Promise<number> {
  const dispatcher = new Agent({ connect: { ca: ts.server.caPem, rejectUnauthorized: false } });
  try {
    const res = await request(ts.server.url + '/metrics', { dispatcher, headers: { authorization: `Bearer ${ts.admin.token}` } });
    const text = await res.body.text();
    const line = text.split('\n').find((l) => l.startsWith('cpc_workers '));
    assert.ok(line, `no cpc_workers sample in:\n${text}`);
    return Number(line.split(' ')[1]);
  } finally {
    await dispatcher.close();
  }
}

/** A setting changed while the server runs, as the sweeper reads it at each tick. */
function setRetention(ts: TestServer, seconds: number): void {
  ts.server.ctx.config.workerRetentionS = seconds;
}

describe('workers that are gone', () => {
  it('a worker that stops is listed as gone (stopped) until the retention ends, then dropped from cpcc workers and the gauge', async () => {
    const ts = await server();
    const home = await cpccHome(ts, 'none');
    const w = await worker(ts, 'node-stop');
    const live = await entry(ts, 'node-stop', 'the worker to be listed live', (x) => x.state === 'live');
    assert.equal(live.stoppedAt, undefined);
    assert.equal(await gauge(ts), 1);
    assert.match(await cpccOk(cpcc(home, ['workers'])), /node-stop.*\blive\b/);

    const exit = await w.stop('SIGTERM');
    assert.equal(exit.code, 0, w.stderr());
    // It said so on its way out: gone at once, not a lease later.
    const [gone] = await listed(ts, 'node-stop');
    assert.equal(gone?.state, 'stopped', JSON.stringify(gone));
    assert.equal(gone.id, live.id);
    assert.ok(gone.stoppedAt !== undefined && gone.stoppedAt >= live.registeredAt);

    // Kept for the record, shown as gone with when it was last seen.
    const table = await cpccOk(cpcc(home, ['workers']));
    assert.match(table, /node-stop.*gone \(stopped\)/, table);
    const json = JSON.parse(await cpccOk(cpcc(home, ['workers', '--json']))) as { workers: WorkerView[] };
    assert.deepEqual(json.workers.map((x) => [x.name, x.state]), [['node-stop', 'stopped']]);
    assert.equal(await gauge(ts), 1, 'a gone worker is counted until the retention ends');

    setRetention(ts, 1);
    await until('the stopped worker to be removed', async () => (await listed(ts, 'node-stop')).length === 0, WAIT);
    assert.equal(await gauge(ts), 0);
    const after = await cpcc(home, ['workers']);
    assert.equal(after.code, 0, after.stderr);
    assert.doesNotMatch(after.stdout, /node-stop/);
  });

  it('a worker killed without a word is listed as gone (lost) once a lease passes, then removed after the retention', async () => {
    const ts = await server();
    const w = await worker(ts, 'node-kill');
    const live = await entry(ts, 'node-kill', 'the worker to be listed live', (x) => x.state === 'live');
    await w.stop('SIGKILL');
    const lost = await entry(ts, 'node-kill', 'the killed worker to be seen as lost', (x) => x.state === 'lost');
    assert.equal(lost.id, live.id);
    assert.equal(lost.stoppedAt, undefined);
    // Not heard from for a lease's length (2 s here) since it was last seen.
    assert.ok(Date.now() - lost.lastSeen > 2000);
    // Still listed while the retention runs.
    assert.equal((await listed(ts, 'node-kill')).length, 1);

    setRetention(ts, 1);
    await until('the lost worker to be removed', async () => (await listed(ts, 'node-kill')).length === 0, WAIT);
    assert.equal(await gauge(ts), 0);
  });

  it('a worker started again under its name keeps one entry: at once after a clean stop, once the old one is lost after a crash', async () => {
    const ts = await server();
    const first = await worker(ts, 'node-r');
    const one = await entry(ts, 'node-r', 'the first to be live', (x) => x.state === 'live');
    assert.equal((await first.stop('SIGTERM')).code, 0);
    assert.equal((await listed(ts, 'node-r'))[0]?.state, 'stopped');

    // Started again with its token: its registration takes the stopped entry's place.
    const second = await worker(ts, 'node-r', first.token);
    const two = await entry(ts, 'node-r', 'the second to be registered', (x) => x.id !== one.id);
    const now = await listed(ts, 'node-r');
    assert.deepEqual(now.map((x) => [x.id, x.state]), [[two.id, 'live']], 'one entry, the new one');

    // A crash: the old entry looks live until a lease passes, then the new one replaces it (the retention is an hour).
    await second.stop('SIGKILL');
    await worker(ts, 'node-r', first.token);
    const three = await entry(ts, 'node-r', 'the third to be registered', (x) => x.id !== two.id);
    await until('one entry named node-r again', async () => (await listed(ts, 'node-r')).length === 1, WAIT);
    const last = await listed(ts, 'node-r');
    assert.deepEqual(last.map((x) => [x.id, x.state]), [[three.id, 'live']]);
    assert.equal(await gauge(ts), 1);
  });

  it('cpc-server start --local-worker, stopped and started again, lists one local worker, the new one', async () => {
    const home = await tempDir('cpc-home-');
    const first = await spawnServer(home, { localWorker: true });
    const admin = await loginAdmin(first.info.url, first.caPem, adminPasswordOf(home));
    const live = (list: WorkerView[]) => list.filter((w) => w.name === 'local-worker' && w.state === 'live');
    const old = await until('the local worker to be live', async () => live((await admin.workers()).workers)[0], WAIT);
    assert.equal((await first.stop('SIGTERM')).code, 0, first.stderr());
    await admin.destroy();

    const second = await spawnServer(home, { localWorker: true });
    const again = await loginAdmin(second.info.url, second.caPem, adminPasswordOf(home));
    try {
      // Its token is new (one per start), its name and host are not: the old entry makes way.
      const only = await until(
        'one local worker, the new one',
        async () => {
          const all = (await again.workers()).workers.filter((w) => w.name === 'local-worker');
          return all.length === 1 && all[0]!.id !== old.id && all[0]!.state === 'live' ? all : null;
        },
        WAIT,
      );
      assert.equal(only.length, 1);
    } finally {
      await again.destroy();
      await second.stop('SIGTERM');
    }
  });
});
