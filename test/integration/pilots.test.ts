/**
 * The pilot conformance suite: what every launcher must do, run against each
 * real batch system in DRIVERS (a one-node cluster each, started for the run:
 * test/helpers/slurm.ts, test/helpers/sge.ts). A server with no workers of
 * its own and a launcher for that cluster:
 *
 *  - jobs submitted there are run by pilots it puts into the batch system,
 *    and the pilots exit when idle (cpcc pilots shows them);
 *  - a pilot the batch system kills mid-job has its job re-run by another;
 *  - a pilot whose worker never registers is given up after startTimeoutS,
 *    and one that waits in the queue past queueTimeoutS is taken back;
 *  - a submission the batch system refuses, or whose commands are missing, is
 *    a clear error, with back-off.
 *
 * A launcher kind without a launcher is refused when the server starts.
 *
 * A batch system that cannot be started here (no root, no packages) is
 * skipped with the reason; under its CPC_REQUIRE_* variable (as in .ci/run)
 * that is a failure instead.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { ApiClient } from '../../src/client/api/client.js';
import type { JobView, PilotsView, WorkerTokenView } from '../../src/core/wire.js';
import type { BatchCluster, BatchDriver } from '../helpers/batch-driver.js';
import { sgeDriver } from '../helpers/sge.js';
import { slurmDriver } from '../helpers/slurm.js';
import { ROOT, cleanup, cpccInProcess, startTestServer, tempDir, until, type TestServer } from '../helpers/server.js';

const DRIVERS: BatchDriver[] = [slurmDriver, sgeDriver];

after(cleanup);

const pilotsOf = (api: ApiClient) => api.call<PilotsView>('GET', '/pilots');
const cpcc = cpccInProcess;

async function submit(api: ApiClient, project: string, jobs: object[]): Promise<string[]> {
  await api.createProject(project);
  const reply = await api.call<{ ids: string[] }>('POST', `/projects/${project}/jobs`, { jobs });
  return reply.ids;
}

async function cpccLoggedIn(ts: TestServer): Promise<string> {
  const home = await tempDir('cpcc-pilots-');
  const fp = ts.server.caFingerprint.replace(/[^0-9a-f]/gi, '').toLowerCase();
  const added = await cpcc(home, ['add-server', '127.0.0.1', String(ts.server.unsecurePort), '--fingerprint', fp]);
  assert.equal(added.code, 0, added.stderr);
  const login = await cpcc(home, ['login', 'cpc-admin', '--password-stdin'], `${ts.adminPassword}\n`);
  assert.equal(login.code, 0, login.stderr);
  return home;
}

describe('launcher kinds', () => {
  it('refuses, when the server starts, a kind that has no launcher, naming those that do', async () => {
    for (const kind of ['htcondor', 'pbs']) {
      const home = await tempDir('cpc-kind-');
      await fsp.writeFile(join(home, 'config.json'), JSON.stringify({ launchers: [{ name: 'other', kind, maxPilots: 1 }] }));
      const run = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        execFile(process.execPath, [join(ROOT, 'dist', 'bin', 'cpc-server.js'), 'start', '--home', home], { timeout: 60_000 }, (err, _stdout, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr }),
        );
      });
      assert.equal(run.code, 2, run.stderr);
      assert.ok(run.stderr.includes(`setting 'launchers.0.kind': "${kind}" is not supported; supported: slurm, sge`), run.stderr);
    }
  });
});

for (const driver of DRIVERS) {
  describe(`pilots on ${driver.title}`, { timeout: 600_000 }, () => {
    let cluster: BatchCluster | undefined;
    let skip = '';

    before(async () => {
      const started = await driver.start();
      if (started.skip !== undefined && process.env[driver.requireVar] === '1') {
        throw new Error(`${driver.requireVar}=1, but ${driver.title} cannot be started: ${started.skip}`);
      }
      cluster = started.cluster;
      skip = started.skip ?? '';
    });

    after(async () => {
      await cleanup();
      await cluster?.stop();
    });

    /** The batch system for this test, or undefined (and the test skipped, with why). */
    const batch = (t: TestContext): BatchCluster | undefined => {
      if (!cluster) t.skip(`${driver.title} cannot be started here: ${skip}`);
      return cluster;
    };

    async function pilotServer(c: BatchCluster, launcher: Record<string, unknown>): Promise<{ ts: TestServer; logs: string[] }> {
      const logs: string[] = [];
      const ts = await startTestServer({
        heartbeatIntervalS: 1,
        log: (line) => logs.push(line),
        launchers: [
          {
            name: 'local',
            maxPilots: 2,
            cores: 1,
            memoryMb: 256,
            wallTimeS: 900,
            idleExitS: 2,
            pollS: 0.5,
            startTimeoutS: 120,
            queueTimeoutS: 600,
            ...c.launcher,
            ...launcher,
          } as never,
        ],
      });
      return { ts, logs };
    }

    /** Batch jobs of one launcher still queued or running. */
    const liveOf = async (c: BatchCluster, launcher: string) => (await c.liveJobs()).filter((j) => j.name.startsWith(`cpc-pilot-${launcher}-`));

    /** Stops a server's launcher and takes back what it left in the batch system, so that the next test has the slots. */
    async function retire(c: BatchCluster, ts: TestServer, launcher: string): Promise<void> {
      await ts.server.close();
      for (const j of await liveOf(c, launcher)) await c.kill(j.id).catch(() => {});
      await until('the launcher’s batch jobs to end', async () => (await liveOf(c, launcher)).length === 0, { timeoutMs: 60_000, intervalMs: 250 });
    }

    let shared: { ts: TestServer; logs: string[] } | undefined;

    it('runs jobs on a server without workers through pilots that appear in the batch system and exit when idle', async (t) => {
      const c = batch(t);
      if (!c) return;
      shared = await pilotServer(c, {});
      const { ts, logs } = shared;
      const api = ts.admin;
      assert.equal((await api.workers()).workers.length, 0);
      const ids = await submit(api, 'twenty', Array.from({ length: 20 }, (_, i) => ({ argv: ['sh', '-c', `echo job ${i}`] })));

      // Pilots appear as batch jobs, named for cpc.
      const seen = await until(
        'pilots to appear in the batch system',
        async () => {
          const pilots = await liveOf(c, 'local');
          return pilots.length > 0 ? pilots : null;
        },
        { timeoutMs: 30_000 },
      );
      assert.ok(seen.length >= 1 && seen.length <= 2, `at most maxPilots (2) pilots: ${JSON.stringify(seen)}`);

      const done = await until(
        'all 20 jobs to be done',
        async () => {
          const jobs = (await api.call<{ jobs: JobView[] }>('GET', '/projects/twenty/jobs', undefined, { query: { limit: 100 } })).jobs;
          return jobs.length === 20 && jobs.every((j) => j.state === 'done') ? jobs : null;
        },
        { timeoutMs: 120_000, intervalMs: 250 },
      );
      assert.deepEqual(done.map((j) => j.id).sort(), [...ids].sort());
      // Every job ran on a pilot: a worker named for its pilot.
      for (const name of new Set(done.map((j) => j.attempts.at(-1)!.workerName))) assert.match(name, /^pilot-local-[0-9a-f]{12}$/);

      // With the queue empty, the pilots' workers go idle, exit, and their batch jobs end by themselves.
      const view = await until(
        'every pilot to have ended',
        async () => {
          const v = await pilotsOf(api);
          return v.pilots.length > 0 && v.pilots.every((p) => p.state === 'ended') ? v : null;
        },
        { timeoutMs: 60_000, intervalMs: 250 },
      );
      assert.ok(view.pilots.length <= 4, `pilots were not submitted beyond need: ${view.pilots.length}`);
      for (const p of view.pilots) {
        assert.match(p.batchId!, /^\d+$/);
        assert.equal(p.kind, driver.kind);
        assert.equal(p.batchState, driver.completedState);
        assert.ok(p.workerId, 'each pilot registered a worker');
      }
      assert.deepEqual(await liveOf(c, 'local'), []);
      // Their one-time tokens are revoked and their workers gone.
      const tokens = (await api.call<{ tokens: WorkerTokenView[] }>('GET', '/worker-tokens')).tokens.filter((tk) => tk.name.startsWith('pilot-local-'));
      assert.equal(tokens.length, view.pilots.length);
      assert.ok(tokens.every((tk) => tk.revoked));
      assert.equal((await api.workers()).workers.length, 0);
      // Nothing is submitted while the queue is empty: a few rounds (pollS 0.5) later, the same pilots.
      const roundsBefore = logs.length;
      await until('a few more rounds', () => Date.now() > view.pilots[0]!.endedAt! + 1500, { timeoutMs: 10_000 });
      assert.equal((await pilotsOf(api)).pilots.length, view.pilots.length);
      assert.ok(logs.slice(roundsBefore).every((l) => !l.includes('pilot submitted')));
      assert.ok(logs.some((l) => l.includes('pilot submitted')));

      // cpcc pilots lists them: launcher, state, batch id, worker id, age.
      const home = await cpccLoggedIn(ts);
      const table = await cpcc(home, ['pilots']);
      assert.equal(table.code, 0, table.stderr);
      for (const h of ['launcher', 'state', 'batch id', 'worker', 'age', 'last error']) assert.ok(table.stdout.includes(h), table.stdout);
      for (const p of view.pilots) {
        assert.ok(table.stdout.includes(p.batchId!), table.stdout);
        assert.ok(table.stdout.includes(p.workerId!), table.stdout);
      }
      assert.ok(table.stdout.includes(`ended (${driver.completedState})`), table.stdout);
      assert.ok(table.stdout.includes(`local (${driver.kind}, `), table.stdout);
      const json = JSON.parse((await cpcc(home, ['pilots', '--json'])).stdout) as PilotsView;
      assert.equal(json.pilots.length, view.pilots.length);
    });

    it('re-runs a job elsewhere when the batch system kills its pilot mid-job', async (t) => {
      const c = batch(t);
      if (!c) return;
      const { ts } = shared ?? (await pilotServer(c, {}));
      const api = ts.admin;
      const before = new Set((await pilotsOf(api)).pilots.map((p) => p.id));
      // The job itself is killed with the pilot. (A shell around it could outlive the signal and exit 0:
      // that would be reported as done, racing the worker's own SIGTERM.)
      const [jobId] = await submit(api, 'killed', [{ argv: ['sleep', '4'], maxRetries: 0 }]);
      const running = await until(
        'the job to run on a pilot',
        async () => {
          const job = await api.call<JobView>('GET', `/jobs/${jobId}`);
          return job.state === 'running' ? job : null;
        },
        { timeoutMs: 60_000, intervalMs: 100 },
      );
      const firstWorker = running.attempts.at(-1)!.workerId;
      // The manager links a pilot to its worker at its next look.
      const pilot = await until('the pilot running the job', async () => (await pilotsOf(api)).pilots.find((p) => p.workerId === firstWorker && !before.has(p.id)), {
        timeoutMs: 10_000,
      });
      await c.kill(pilot.batchId!);

      // The server notices through the batch system, removes the pilot's worker (the attempt is lost,
      // not failed), revokes its token, and a new pilot runs the job to the end.
      const done = await until(
        'the job to be done on another worker',
        async () => {
          const job = await api.call<JobView>('GET', `/jobs/${jobId}`);
          return job.state === 'done' ? job : null;
        },
        { timeoutMs: 90_000, intervalMs: 250 },
      );
      assert.equal(done.attempts.length, 2, JSON.stringify(done.attempts));
      assert.equal(done.attempts[0]!.workerId, firstWorker);
      assert.notEqual(done.attempts[1]!.workerId, firstWorker);
      // Lost, not failed: by the manager's look at the batch system (worker-lost) or, on a loaded machine
      // where the pilot's last heartbeat is older than its lease by then, by the lease (lease-expired).
      assert.ok(['worker-lost', 'lease-expired'].includes(done.attempts[0]!.how ?? ''), JSON.stringify(done.attempts[0]));
      const view = await pilotsOf(api);
      const killed = view.pilots.find((p) => p.id === pilot.id)!;
      assert.equal(killed.state, 'cancelled');
      assert.match(killed.batchState!, driver.killedState);
      assert.match(killed.lastError!, /the batch system ended it/);
      const token = (await api.call<{ tokens: WorkerTokenView[] }>('GET', '/worker-tokens')).tokens.find((tk) => tk.name === `pilot-local-${pilot.id}`);
      assert.equal(token?.revoked, true);
      assert.ok(!(await api.workers()).workers.some((w) => w.id === firstWorker), 'the killed pilot’s worker is removed');
      await retire(c, ts, 'local');
    });

    it('gives up a pilot whose worker never registers, and takes its batch job back', async (t) => {
      const c = batch(t);
      if (!c) return;
      // A "worker" that starts and never calls the server; the worker's arguments become $1….
      const { ts } = await pilotServer(c, { name: 'mute', maxPilots: 1, startTimeoutS: 5, workerCommand: ['sh', '-c', 'sleep 300', 'mute'] });
      await submit(ts.admin, 'mute', [{ argv: ['true'] }]);
      const pilot = await until(
        'the pilot to be given up',
        async () => (await pilotsOf(ts.admin)).pilots.find((p) => p.state === 'failed'),
        { timeoutMs: 90_000, intervalMs: 250 },
      );
      assert.ok(pilot.startedAt, 'it had started in the batch system');
      assert.match(pilot.lastError!, /its worker did not register within 5 s of starting/);
      assert.ok(pilot.lastError!.includes(driver.outputName(pilot.batchId!)), pilot.lastError!);
      // Its batch job is deleted, not left to sleep out its wall time.
      await until('its batch job to end', async () => !(await c.liveJobs()).some((j) => j.id === pilot.batchId), { timeoutMs: 30_000, intervalMs: 250 });
      const token = (await ts.admin.call<{ tokens: WorkerTokenView[] }>('GET', '/worker-tokens')).tokens.find((tk) => tk.name === `pilot-mute-${pilot.id}`);
      assert.equal(token?.revoked, true);
      await retire(c, ts, 'mute');
    });

    it('takes back a pilot that waits in the batch queue longer than queueTimeoutS', async (t) => {
      const c = batch(t);
      if (!c) return;
      const { ts, logs } = await pilotServer(c, { name: 'held', maxPilots: 1, queueTimeoutS: 10, directives: [driver.holdDirective] });
      await submit(ts.admin, 'held', [{ argv: ['true'] }]);
      const queued = await until('the pilot to wait in the queue', async () => (await liveOf(c, 'held'))[0], { timeoutMs: 30_000, intervalMs: 250 });
      const pilot = await until(
        'the pilot to be taken back',
        async () => (await pilotsOf(ts.admin)).pilots.find((p) => p.batchId === queued.id && p.state === 'failed'),
        { timeoutMs: 60_000, intervalMs: 250 },
      );
      assert.equal(pilot.startedAt, null, 'it never started');
      assert.match(pilot.lastError!, /it waited in the batch queue longer than 10 s/);
      await until('its batch job to leave the queue', async () => !(await c.liveJobs()).some((j) => j.id === queued.id), { timeoutMs: 30_000, intervalMs: 250 });
      assert.ok(logs.some((l) => l.startsWith('warn ') && l.includes('pilot failed') && l.includes(queued.id)), logs.join('\n'));
      await retire(c, ts, 'held');
    });

    it('shows a submission the batch system refuses as a clear error, retried with back-off', async (t) => {
      const c = batch(t);
      if (!c) return;
      const { ts, logs } = await pilotServer(c, { name: 'wrong', partition: 'nosuchqueue' });
      await submit(ts.admin, 'stuck', [{ argv: ['true'] }]);
      const view = await until(
        'the refusal to show',
        async () => {
          const v = await pilotsOf(ts.admin);
          return v.launchers[0]!.failures >= 1 ? v : null;
        },
        { timeoutMs: 30_000 },
      );
      const [l] = view.launchers;
      assert.match(l!.lastError!, driver.unknownQueueError);
      assert.ok(l!.retryAt! > Date.now(), 'a retry is scheduled, not run at once');
      assert.equal(view.pilots.length, 1);
      assert.equal(view.pilots[0]!.state, 'failed');
      assert.equal(view.pilots[0]!.batchId, null);
      const line = logs.find((x) => x.includes('pilot submission failed'));
      assert.ok(line, logs.join('\n'));
      assert.match(line, /^error /);
      assert.match(line, driver.unknownQueueError);
      assert.match(line, /"launcher":"wrong"/);
      // Nothing reached the batch system, the refused token was revoked, and the server serves on.
      assert.deepEqual(await liveOf(c, 'wrong'), []);
      const tokens = (await ts.admin.call<{ tokens: WorkerTokenView[] }>('GET', '/worker-tokens')).tokens;
      assert.ok(tokens.every((tk) => tk.revoked));
      const home = await cpccLoggedIn(ts);
      const table = await cpcc(home, ['pilots']);
      assert.equal(table.code, 0, table.stderr);
      assert.match(table.stdout, /failed/);
      assert.match(table.stdout, driver.unknownQueueError);
      assert.match(table.stdout, new RegExp(`wrong \\(${driver.kind}, (partition|queue) nosuchqueue\\).*last error:.*next try in`));
      await fsp.access(join(ts.home, 'pilots.json'));
      await ts.server.close();
    });

    it('names the batch system’s commands when they are missing, and backs off', async (t) => {
      const c = batch(t);
      if (!c) return;
      const empty = await tempDir('cpc-no-batch-commands-');
      const { ts } = await pilotServer(c, { name: 'nobin', binDir: empty });
      await submit(ts.admin, 'nobin', [{ argv: ['true'] }]);
      const view = await until(
        'the failure to show',
        async () => {
          const v = await pilotsOf(ts.admin);
          return v.launchers[0]!.failures >= 1 ? v : null;
        },
        { timeoutMs: 30_000 },
      );
      assert.ok(view.launchers[0]!.lastError!.includes(`was not found in ${empty}; is ${driver.title} installed here?`), view.launchers[0]!.lastError!);
      assert.ok(view.launchers[0]!.retryAt! > Date.now());
      assert.equal(view.pilots[0]!.batchId, null);
      assert.deepEqual(await liveOf(c, 'nobin'), []);
      await ts.server.close();
    });
  });
}
