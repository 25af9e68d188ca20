/**
 * A slow disk and a failing one, under a real server process: a shim loaded
 * with LD_PRELOAD (disk-shim.c, built here with cc) holds every durable write
 * and fsync under the server's home for seconds, or fails it with EIO, as a
 * control file says while the server runs.
 *
 * Slow: reads and heartbeats are answered while a change waits for the disk,
 * including while a snapshot rotates the journal, and every change is
 * acknowledged once it is on disk. Failing: the change whose write failed is
 * refused with 503 JOURNAL_FAILED and so is every later one, reads and
 * heartbeats go on, and `cpc-server status`, /metrics and the log say why;
 * after a restart on a healthy disk every acknowledged job is there.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { ApiError, type ApiClient } from '../../src/client/api/client.js';
import {
  adminPasswordOf,
  cleanup,
  loginAdmin,
  ROOT,
  simulatedWorker,
  spawnServer,
  tempDir,
  until,
  type ServerProcess,
  type SimWorker,
} from '../helpers/server.js';

function compilerMissing(): string | null {
  const cc = spawnSync('cc', ['--version'], { stdio: 'ignore' });
  return cc.status === 0 ? null : 'no C compiler (cc) to build the disk shim (apt-get install gcc)';
}

const skip = compilerMissing();
if (skip && process.env.CPC_REQUIRE_FAULTS === '1') throw new Error(`CPC_REQUIRE_FAULTS is set, but ${skip}`);

/** How long each durable write takes while the disk is slow; reads and heartbeats must not wait for it. */
const SLOW_MS = 5000;

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return err instanceof ApiError ? err.code : String(err);
  }
}

async function scrape(server: ServerProcess, token: string): Promise<string> {
  const dispatcher = new Agent({ connect: { ca: server.caPem, rejectUnauthorized: false } });
  try {
    const res = await request(server.info.url + '/metrics', { dispatcher, headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.statusCode, 200);
    return await res.body.text();
  } finally {
    await dispatcher.close();
  }
}

function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  assert.ok(line, `no sample ${series} in /metrics`);
  return Number(line.split(' ')[1]);
}

/** Resolves with how long `p` took, in ms. */
async function timed<T>(p: () => Promise<T>): Promise<number> {
  const start = performance.now();
  await p();
  return performance.now() - start;
}

describe('a slow and a failing disk', { skip: skip ?? false, timeout: 300_000 }, () => {
  let home: string;
  let ctl: string;
  let shim: string;
  let server: ServerProcess;
  let admin: ApiClient;
  let worker: SimWorker;
  const acknowledged: string[] = [];

  const disk = (state: string) => writeFileSync(ctl, `${state}\n`);

  async function start(): Promise<void> {
    server = await spawnServer(home, {
      heartbeatIntervalS: 2,
      env: { LD_PRELOAD: shim, CPC_DISK_SHIM_PREFIX: home + '/', CPC_DISK_SHIM_CTL: ctl },
    });
    admin = await loginAdmin(server.info.url, server.caPem, adminPasswordOf(home));
  }

  before(async () => {
    const build = await tempDir('cpc-fault-shim-');
    shim = join(build, 'disk-shim.so');
    execFileSync('cc', ['-shared', '-fPIC', '-O2', '-o', shim, join(ROOT, 'test', 'faults', 'disk-shim.c'), '-ldl']);
    home = await tempDir('cpc-fault-slowdisk-');
    ctl = join(build, 'disk');
    disk('0 ok');
    // Snapshots (and so journal rotations) every few changes, so that one happens while the disk is slow.
    writeFileSync(join(home, 'config.json'), JSON.stringify({ snapshotAfterBytes: 1024 }) + '\n');
    await start();
    await admin.createProject('p');
    const { token } = await admin.createWorkerToken('sim');
    worker = await simulatedWorker(server.info.url, server.caPem, token);
  });

  after(async () => {
    await cleanup();
  });

  it('answers reads and heartbeats while changes wait seconds for the disk', async () => {
    disk(`${SLOW_MS} ok`);
    const slowest = { read: 0, heartbeat: 0 };
    const rounds = 3;
    for (let round = 0; round < rounds; round++) {
      let done = false;
      // Enough bytes that the journal passes snapshotAfterBytes and rotates while the disk is slow.
      const shell = `echo ${'x'.repeat(600)} ${round}`;
      const submit = admin.submit('p', [{ shell }, { shell }]).finally(() => (done = true));
      // A worker's heartbeats and a reader's list, every 200 ms for as long as the change waits for the disk.
      const watch = async (what: keyof typeof slowest, call: () => Promise<unknown>) => {
        for (let i = 0; i < 1000 && !done; i++) {
          slowest[what] = Math.max(slowest[what], await timed(call));
          await new Promise((r) => setTimeout(r, 200));
        }
      };
      const watching = Promise.all([
        watch('heartbeat', () => worker.client.heartbeat(worker.workerId, { attempts: [] })),
        watch('read', () => admin.jobs('p', { limit: 1000 })),
      ]);
      // The change is applied (and seen by readers) before it is durable; its write is now with the disk.
      await until('the submitted jobs to be seen', async () => (await admin.jobs('p', { limit: 1000 })).jobs.length >= acknowledged.length + 2, { timeoutMs: 30_000 });
      assert.equal(done, false, 'a submit was acknowledged before its write could have finished');
      acknowledged.push(...(await submit).ids);
      await watching;
    }
    // A hang would last a whole write; the bound is half of one, with room for a loaded machine.
    for (const [what, ms] of Object.entries(slowest)) {
      assert.ok(ms < SLOW_MS / 2, `the slowest ${what} took ${Math.round(ms)} ms while the disk took ${SLOW_MS} ms per write`);
    }
    const metrics = await scrape(server, admin.token!);
    // The shim was in the way: journal writes as slow as the disk were measured, and a snapshot rotated the journal.
    assert.ok(sample(metrics, 'cpc_journal_fsync_duration_seconds_bucket{le="+Inf"}') - sample(metrics, 'cpc_journal_fsync_duration_seconds_bucket{le="1"}') >= 1);
    assert.ok(readdirSync(join(home, 'state', 'journal')).some((f) => f !== 'journal-000001.log'), 'the journal rotated');
    disk('0 ok');
  });

  it('refuses changes after a write fails with EIO, and says why in status, metrics and the log', async () => {
    disk('0 eio');
    assert.equal(await codeOf(admin.submit('p', [{ shell: 'echo lost' }])), 'JOURNAL_FAILED');
    disk('0 ok');
    // Refused as designed even with the disk healthy again: what is on disk after the failed write is unknown.
    assert.equal(await codeOf(admin.submit('p', [{ shell: 'echo refused' }])), 'JOURNAL_FAILED');
    assert.equal(await codeOf(admin.createProject('q')), 'JOURNAL_FAILED');
    // Readers and workers go on.
    const list = await admin.jobs('p', { limit: 1000 });
    for (const id of acknowledged) assert.ok(list.jobs.some((j) => j.id === id), `acknowledged job ${id} is listed`);
    await worker.client.heartbeat(worker.workerId, { attempts: [] });

    const metrics = await scrape(server, admin.token!);
    assert.equal(sample(metrics, 'cpc_changes_refused{reason="journal_failed"}'), 1);
    assert.equal(sample(metrics, 'cpc_changes_refused{reason="disk_full"}'), 0);

    const status = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'bin', 'cpc-server.ts'), '--home', home, 'status'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(status.status, 0, status.stderr);
    assert.match(status.stdout, /^running \(pid \d+\)/);
    assert.match(status.stdout, /changes refused: JOURNAL_FAILED: .*i\/o error/i);
    const statusJson = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'bin', 'cpc-server.ts'), '--home', home, 'status', '--json'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 60_000,
    });
    const parsed = JSON.parse(statusJson.stdout) as { running: boolean; refusing: { code: string; message: string } | null };
    assert.equal(parsed.running, true);
    assert.equal(parsed.refusing?.code, 'JOURNAL_FAILED');

    const logged = server.logLines().find((l) => /journal write failed/.test(String(l.msg)));
    assert.ok(logged, 'the log says the journal failed');
    assert.match(JSON.stringify(logged), /EIO|i\/o error/i);
  });

  it('has every acknowledged job after a restart on a healthy disk', async () => {
    const stopped = await server.stop('SIGTERM');
    assert.ok(stopped.code !== null || stopped.signal !== null);
    await start();
    const list = await admin.jobs('p', { limit: 1000 });
    const ids = new Set(list.jobs.map((j) => j.id));
    for (const id of acknowledged) assert.ok(ids.has(id), `acknowledged job ${id} survived`);
    assert.equal(list.jobs.length, acknowledged.length, 'no refused job came back');
    assert.equal(await codeOf(admin.submit('p', [{ shell: 'echo again' }])), 'ok');
  });
});
