import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { promises as fsp, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { JobView } from '../../src/core/wire.js';
import { Worker } from '../../src/worker/worker.js';
import { connect, linkUp, startSite, stopSite, type Site } from '../helpers/federation.js';
import { cleanup, cpcc, cpccHome, cpccOk, makeClient, startTestServer, tempDir, until, type TestServer } from '../helpers/server.js';

/**
 * `cpcc cancel` stops the job's processes at once, through the worker's
 * control poll, although the heartbeat interval is two minutes: locally, and
 * for a job that home delegated to a peer's worker. The job's grace between
 * SIGTERM and SIGKILL comes from its spec (--kill-grace).
 *
 * Processes are found by a mark in their environment, which every process of
 * the job inherits. The bound on "at once" is generous for a loaded machine
 * and still far below the heartbeat interval.
 */

const HEARTBEAT_S = 120;
const GONE_WITHIN_MS = 10_000;

/** Live processes (not zombies) whose environment carries CPC_TEST_MARK=mark (and, if given, are of that attempt). */
function marked(mark: string, attempt?: number): number[] {
  const needle = `CPC_TEST_MARK=${mark}`;
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const env = readFileSync(`/proc/${name}/environ`, 'latin1').split('\0');
      if (!env.includes(needle)) continue;
      if (attempt !== undefined && !env.includes(`CPC_ATTEMPT=${attempt}`)) continue;
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z') continue;
      out.push(Number(name));
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

const marks: string[] = [];
function newMark(): string {
  const m = randomUUID();
  marks.push(m);
  return m;
}

function killMarked(): void {
  for (const m of marks) {
    for (const pid of marked(m)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
}

const workers: Worker[] = [];

async function startWorker(url: string, caPem: string, serverId: string, token: string): Promise<Worker> {
  const workDir = await tempDir('cpc-cancel-work-');
  const w = new Worker({ client: makeClient(url, caPem, token, serverId), name: `cancel-${workers.length}`, cores: 4, memoryMb: 1024, workDir, claimWaitS: 5 });
  workers.push(w);
  await w.start();
  return w;
}

async function submit(home: string, args: string[]): Promise<string> {
  return cpccOk(cpcc(home, ['submit', ...args]));
}

/** Waits for the job's processes (of one attempt, if given) to be gone; returns how long that took after `since`. */
async function gone(mark: string, what: string, since: number, ms = GONE_WITHIN_MS, attempt?: number): Promise<number> {
  await until(what, () => marked(mark, attempt).length === 0, { timeoutMs: ms, intervalMs: 20 });
  return Date.now() - since;
}

describe('cancel stops the job at once', () => {
  let ts: TestServer;
  let home: string;
  /** A folder every job may write in (jobs run under uids of their own when the tests run as root). */
  let shared: string;
  let worker: Worker;

  before(async () => {
    ts = await startTestServer({ heartbeatIntervalS: HEARTBEAT_S });
    await ts.admin.createProject('c');
    home = await cpccHome(ts, 'c');
    shared = await tempDir('cpc-cancel-shared-');
    await fsp.chmod(shared, 0o777);
    const token = await ts.server.createWorkerToken('cancel');
    worker = await startWorker(ts.server.url, ts.server.caPem, ts.server.serverId, token);
  });

  after(async () => {
    await Promise.all(workers.splice(0).map((w) => w.stop({ drain: false })));
    killMarked();
    await cleanup();
  });

  it('kills a job that traps nothing within moments of cpcc cancel, not at the next heartbeat', async () => {
    const mark = newMark();
    const id = await submit(home, ['--env', `CPC_TEST_MARK=${mark}`, '--', 'sleep', '300']);
    await until('the job to run', () => marked(mark).length > 0, { timeoutMs: 20_000 });
    const t0 = Date.now();
    assert.match(await cpccOk(cpcc(home, ['cancel', id])), new RegExp(`cancelled ${id}`));
    await gone(mark, 'the cancelled job’s processes to be gone', t0);
    const view = await ts.admin.job(id);
    assert.equal(view.state, 'cancelled');
    assert.equal(view.killGraceS, 10, 'the default grace');
  });

  it('gives a job that traps SIGTERM its grace: it cleans up and exits', async () => {
    const mark = newMark();
    const log = join(shared, `${mark}.log`);
    const script = `trap 'echo cleaned-up >> ${log}; exit 0' TERM; echo ready >> ${log}; while :; do sleep 0.2; done`;
    const id = await submit(home, ['--kill-grace', '600', '--env', `CPC_TEST_MARK=${mark}`, '--shell', '--', script]);
    await until('the job to set its trap', async () => (await fsp.readFile(log, 'utf8').catch(() => '')).includes('ready'), { timeoutMs: 20_000 });
    assert.equal((await ts.admin.job(id)).killGraceS, 600);
    const t0 = Date.now();
    await cpccOk(cpcc(home, ['cancel', id]));
    // Gone long before its 600 s grace: it was asked (SIGTERM), and its trap ended it.
    await gone(mark, 'the job to exit from its trap', t0);
    assert.equal(await fsp.readFile(log, 'utf8'), 'ready\ncleaned-up\n');
  });

  it('SIGKILLs a job that ignores SIGTERM once the grace its spec gives has passed', async () => {
    const short = newMark();
    const long = newMark();
    const job = (mark: string) => `trap 'echo term >> ${join(shared, `${mark}.log`)}' TERM; echo ready >> ${join(shared, `${mark}.log`)}; while :; do sleep 0.2; done`;
    const ids = [
      await submit(home, ['--kill-grace', '1', '--env', `CPC_TEST_MARK=${short}`, '--shell', '--', job(short)]),
      await submit(home, ['--kill-grace', '15', '--env', `CPC_TEST_MARK=${long}`, '--shell', '--', job(long)]),
    ];
    const logOf = (mark: string) => fsp.readFile(join(shared, `${mark}.log`), 'utf8').catch(() => '');
    for (const mark of [short, long]) await until('the job to set its trap', async () => (await logOf(mark)).includes('ready'), { timeoutMs: 20_000 });
    const t0 = Date.now();
    await cpccOk(cpcc(home, ['cancel', ...ids]));
    // Both were told (SIGTERM reaches their trap), and both go on running.
    for (const mark of [short, long]) await until('SIGTERM to reach the job', async () => (await logOf(mark)).includes('term'), { timeoutMs: GONE_WITHIN_MS });
    // The one with a grace of 1 s is killed after it; the one with 15 s is still running then.
    await gone(short, 'the job with a short grace to be killed', t0, GONE_WITHIN_MS + 1000);
    assert.ok(marked(long).length > 0, 'a job with a longer grace is not killed before its grace is over');
    await gone(long, 'the job with the longer grace to be killed', t0, GONE_WITHIN_MS + 15_000);
    for (const id of ids) assert.equal((await ts.admin.job(id)).state, 'cancelled');
  });

  it('stops an attempt taken back by command-failed at once; the job runs again', async () => {
    const mark = newMark();
    const id = await submit(home, ['--env', `CPC_TEST_MARK=${mark}`, '--', 'sleep', '300']);
    await until('attempt 1 to run', () => marked(mark, 1).length > 0, { timeoutMs: 20_000 });
    const t0 = Date.now();
    await cpccOk(cpcc(home, ['command-failed', id]));
    await gone(mark, 'attempt 1’s processes to be gone', t0, GONE_WITHIN_MS, 1);
    await until('attempt 2 to run', () => marked(mark, 2).length > 0, { timeoutMs: 20_000 });
    await cpccOk(cpcc(home, ['cancel', id]));
    await gone(mark, 'attempt 2’s processes to be gone', Date.now());
  });

  it('stops every attempt of a worker marked lost by worker-failed at once', async () => {
    const marks = [newMark(), newMark()];
    const ids = [];
    for (const mark of marks) ids.push(await submit(home, ['--env', `CPC_TEST_MARK=${mark}`, '--', 'sleep', '300']));
    for (const mark of marks) await until('the attempt to run', () => marked(mark, 1).length > 0, { timeoutMs: 20_000 });
    const t0 = Date.now();
    await cpccOk(cpcc(home, ['worker-failed', worker.id!]));
    for (const mark of marks) await gone(mark, 'the lost attempts’ processes to be gone', t0, GONE_WITHIN_MS, 1);
    await cpccOk(cpcc(home, ['cancel', ...ids]));
    for (const mark of marks) await gone(mark, 'the re-run attempts to be gone', Date.now());
  });

  it('stops the running jobs of a removed project at once', async () => {
    await ts.admin.createProject('doomed');
    const doomed = await cpccHome(ts, 'doomed');
    const mark = newMark();
    await submit(doomed, ['--env', `CPC_TEST_MARK=${mark}`, '--', 'sleep', '300']);
    await until('the job to run', () => marked(mark).length > 0, { timeoutMs: 20_000 });
    const t0 = Date.now();
    await cpccOk(cpcc(doomed, ['rm', 'doomed', '--yes']));
    await gone(mark, 'the removed project’s job to be gone', t0);
  });

  it('refuses a grace out of range in the user’s words, and submits nothing', async () => {
    const before = (await ts.admin.jobs('c')).jobs.length;
    const r = await cpcc(home, ['submit', '--kill-grace', '3601', '--', 'true']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--kill-grace/);
    const file = join(shared, 'bad-grace.json');
    await fsp.writeFile(file, JSON.stringify([{ argv: ['true'], killGraceS: -1 }]));
    const f = await cpcc(home, ['submit', '--file', file]);
    assert.equal(f.code, 1);
    assert.match(f.stderr, /killGraceS must be a number of seconds from 0 to 3600/);
    const e = await ts.admin.submit('c', [{ argv: ['true'], killGraceS: 4000 }]).then(
      () => null,
      (err: { code?: string }) => err,
    );
    assert.equal(e?.code, 'INVALID_FIELD');
    assert.equal((await ts.admin.jobs('c')).jobs.length, before);
  });
});

describe('cancel at home stops a delegated job at once', () => {
  let home: Site;
  let peer: Site;
  let cpccAtHome: string;

  before(async () => {
    // Peer heartbeats and worker heartbeats both at two minutes: only the control channel can be quick.
    [home, peer] = await Promise.all([
      startSite('home', { heartbeatIntervalS: HEARTBEAT_S, leaseS: 2 * HEARTBEAT_S }),
      startSite('peer', { heartbeatIntervalS: HEARTBEAT_S, leaseS: 2 * HEARTBEAT_S }),
    ]);
    await connect(peer, home);
    await linkUp(peer, home);
    await home.admin.createProject('d');
    cpccAtHome = await cpccHome({ server: home.server!, admin: home.admin } as unknown as TestServer, 'd');
    await startWorker(peer.url, peer.caPem, peer.serverId, peer.workerToken);
  });

  after(async () => {
    await Promise.all(workers.splice(0).map((w) => w.stop({ drain: false })));
    killMarked();
    await Promise.all([home, peer].filter(Boolean).map((s) => stopSite(s)));
    await cleanup();
  });

  it('kills the process on the peer’s worker within moments of cpcc cancel at home', async () => {
    const mark = newMark();
    const id = await submit(cpccAtHome, ['--env', `CPC_TEST_MARK=${mark}`, '--', 'sleep', '300']);
    await until('the job to run on the peer’s worker', () => marked(mark).length > 0, { timeoutMs: 30_000 });
    const view: JobView = await home.admin.job(id);
    assert.equal(view.attempts.at(-1)?.via, peer.serverId, 'it runs through the peer');
    const t0 = Date.now();
    await cpccOk(cpcc(cpccAtHome, ['cancel', id]));
    await gone(mark, 'the delegated job’s processes to be gone', t0);
    assert.equal((await home.admin.job(id)).state, 'cancelled');
    await until('the peer to forget the attempt', () => peer.server!.model.foreign.size === 0);
  });

  // Last: it ends the trust between the two.
  it('kills the process on the peer’s worker at once when home disconnects the peer', async () => {
    const mark = newMark();
    await submit(cpccAtHome, ['--env', `CPC_TEST_MARK=${mark}`, '--', 'sleep', '300']);
    await until('the job to run on the peer’s worker', () => marked(mark).length > 0, { timeoutMs: 30_000 });
    const t0 = Date.now();
    await cpccOk(cpcc(cpccAtHome, ['disconnect', peer.serverId]));
    await gone(mark, 'the job of a disconnected home to be gone', t0);
  });
});
