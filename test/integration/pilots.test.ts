/**
 * Pilots on a real Slurm: a one-node cluster (test/helpers/slurm.ts), a server
 * with no workers of its own and a launcher for that cluster. Jobs submitted
 * there are run by pilots the server puts into Slurm; pilots exit when idle;
 * a pilot cancelled with scancel mid-job has its job re-run by another; a
 * wrong partition is a clear error with back-off.
 *
 * Skipped, with the reason, where Slurm cannot be started (no root); under
 * CPC_REQUIRE_SLURM=1 (as in .ci/run) that is a failure instead.
 */
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ApiClient } from '../../src/client/api/client.js';
import type { JobView, PilotsView, WorkerTokenView } from '../../src/core/wire.js';
import { startSlurm, type SlurmCluster } from '../helpers/slurm.js';
import { cleanup, cpccInProcess, startTestServer, tempDir, until, type TestServer } from '../helpers/server.js';

const started = await startSlurm();
if (started.skip !== undefined && process.env.CPC_REQUIRE_SLURM === '1') {
  throw new Error(`CPC_REQUIRE_SLURM=1, but Slurm cannot be started: ${started.skip}`);
}
const cluster = started.cluster as SlurmCluster;
const skip = started.skip !== undefined ? `Slurm cannot be started here: ${started.skip}` : false;

after(async () => {
  await cleanup();
  await cluster?.stop();
});

interface Launcher {
  name?: string;
  partition?: string;
  maxPilots?: number;
  idleExitS?: number;
}

async function pilotServer(l: Launcher = {}): Promise<{ ts: TestServer; logs: string[] }> {
  const logs: string[] = [];
  const ts = await startTestServer({
    heartbeatIntervalS: 1,
    log: (line) => logs.push(line),
    launchers: [
      {
        name: l.name ?? 'local',
        kind: 'slurm',
        partition: l.partition ?? cluster.partition,
        maxPilots: l.maxPilots ?? 2,
        cores: 1,
        memoryMb: 256,
        wallTimeS: 900,
        idleExitS: l.idleExitS ?? 2,
        pollS: 0.5,
        startTimeoutS: 120,
        queueTimeoutS: 600,
        directives: ['--comment=cpc-{launcher}-{pilotId}'],
        env: cluster.env,
      },
    ],
  });
  return { ts, logs };
}

const pilotsOf = (api: ApiClient) => api.call<PilotsView>('GET', '/pilots');

async function submit(api: ApiClient, project: string, jobs: object[]): Promise<string[]> {
  await api.createProject(project);
  const reply = await api.call<{ ids: string[] }>('POST', `/projects/${project}/jobs`, { jobs });
  return reply.ids;
}

const cpcc = cpccInProcess;

async function cpccLoggedIn(ts: TestServer): Promise<string> {
  const home = await tempDir('cpcc-pilots-');
  const fp = ts.server.caFingerprint.replace(/[^0-9a-f]/gi, '').toLowerCase();
  const added = await cpcc(home, ['add-server', '127.0.0.1', String(ts.server.unsecurePort), '--fingerprint', fp]);
  assert.equal(added.code, 0, added.stderr);
  const login = await cpcc(home, ['login', 'cpc-admin', '--password-stdin'], `${ts.adminPassword}\n`);
  assert.equal(login.code, 0, login.stderr);
  return home;
}

describe('pilots on Slurm', { skip, timeout: 240_000 }, () => {
  let ts: TestServer;
  let logs: string[];

  before(async () => {
    ({ ts, logs } = await pilotServer());
  });

  it('runs 50 jobs on a server without workers through pilots that appear in Slurm and exit when idle', async () => {
    const api = ts.admin;
    assert.equal((await api.workers()).workers.length, 0);
    const ids = await submit(api, 'fifty', Array.from({ length: 50 }, (_, i) => ({ argv: ['sh', '-c', `echo job ${i}`] })));

    // Pilots appear as batch jobs in Slurm, named for cpc.
    const inSlurm = await until(
      'pilots to appear in squeue',
      async () => {
        const pilots = (await cluster.jobs()).filter((j) => j.name.startsWith('cpc-pilot-local-'));
        return pilots.length > 0 ? pilots : null;
      },
      { timeoutMs: 30_000 },
    );
    assert.ok(inSlurm.length >= 1 && inSlurm.length <= 2, `at most maxPilots (2) pilots: ${JSON.stringify(inSlurm)}`);

    const done = await until(
      'all 50 jobs to be done',
      async () => {
        const jobs = (await api.call<{ jobs: JobView[] }>('GET', '/projects/fifty/jobs', undefined, { query: { limit: 100 } })).jobs;
        return jobs.length === 50 && jobs.every((j) => j.state === 'done') ? jobs : null;
      },
      { timeoutMs: 120_000, intervalMs: 250 },
    );
    assert.deepEqual(done.map((j) => j.id).sort(), [...ids].sort());
    // Every job ran on a pilot: a worker named for its pilot.
    const ranOn = new Set(done.map((j) => j.attempts.at(-1)!.workerName));
    for (const name of ranOn) assert.match(name, /^pilot-local-[0-9a-f]{12}$/);

    // With the queue empty, the pilots' workers go idle, exit, and their batch jobs complete.
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
      assert.equal(p.batchState, 'COMPLETED');
      assert.ok(p.workerId, 'each pilot registered a worker');
    }
    const slurmStates = new Map((await cluster.jobs()).map((j) => [j.id, j.state]));
    for (const p of view.pilots) assert.equal(slurmStates.get(p.batchId!), 'COMPLETED');
    // Their one-time tokens are revoked and their workers gone.
    const tokens = (await api.call<{ tokens: WorkerTokenView[] }>('GET', '/worker-tokens')).tokens.filter((t) => t.name.startsWith('pilot-local-'));
    assert.equal(tokens.length, view.pilots.length);
    assert.ok(tokens.every((t) => t.revoked));
    assert.equal((await api.workers()).workers.length, 0);
    // Nothing is submitted while the queue is empty.
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal((await pilotsOf(api)).pilots.length, view.pilots.length);
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
    assert.match(table.stdout, /ended \(COMPLETED\)/);
    const json = JSON.parse((await cpcc(home, ['pilots', '--json'])).stdout) as PilotsView;
    assert.equal(json.pilots.length, view.pilots.length);
  });

  it('re-runs a job elsewhere when its pilot is cancelled with scancel mid-job', async () => {
    const api = ts.admin;
    const before = new Set((await pilotsOf(api)).pilots.map((p) => p.id));
    // The job itself is killed with the pilot. (A shell around it could outlive the signal and exit 0:
    // that would be reported as done, racing the worker's own SIGTERM.)
    const [jobId] = await submit(api, 'cancelled', [{ argv: ['sleep', '4'], maxRetries: 0 }]);
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
    const cancel = await cluster.run('scancel', [pilot.batchId!]);
    assert.equal(cancel.code, 0, cancel.stderr);

    // The server notices through Slurm, removes the pilot's worker (the attempt is lost, not failed),
    // revokes its token, and a new pilot runs the job to the end.
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
    // Lost, not failed: by the manager's look at Slurm (worker-lost) or, on a loaded machine where the
    // pilot's last heartbeat is older than its lease by then, by the lease (lease-expired).
    assert.ok(['worker-lost', 'lease-expired'].includes(done.attempts[0]!.how ?? ''), JSON.stringify(done.attempts[0]));
    const view = await pilotsOf(api);
    const cancelled = view.pilots.find((p) => p.id === pilot.id)!;
    assert.equal(cancelled.state, 'cancelled');
    assert.equal(cancelled.batchState, 'CANCELLED');
    const token = (await api.call<{ tokens: WorkerTokenView[] }>('GET', '/worker-tokens')).tokens.find((t) => t.name === `pilot-local-${pilot.id}`);
    assert.equal(token?.revoked, true);
    assert.ok(!(await api.workers()).workers.some((w) => w.id === firstWorker), 'the cancelled pilot’s worker is removed');
  });
});

describe('pilots on Slurm: a wrong partition', { skip, timeout: 120_000 }, () => {
  it('is a clear error in the log and in cpcc pilots, retried with back-off', async () => {
    const { ts, logs } = await pilotServer({ name: 'wrong', partition: 'nosuchpartition' });
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
    assert.match(l!.lastError!, /invalid partition/i);
    assert.ok(l!.retryAt! > Date.now(), 'a retry is scheduled, not run at once');
    assert.equal(view.pilots.length, 1);
    assert.equal(view.pilots[0]!.state, 'failed');
    assert.equal(view.pilots[0]!.batchId, null);
    const line = logs.find((x) => x.includes('pilot submission failed'));
    assert.ok(line, logs.join('\n'));
    assert.match(line, /^error /);
    assert.match(line, /Invalid partition/i);
    assert.match(line, /"launcher":"wrong"/);
    // Nothing reached Slurm, the refused token was revoked, and the server serves on.
    assert.equal((await cluster.jobs()).filter((j) => j.name.startsWith('cpc-pilot-wrong-')).length, 0);
    const tokens = (await ts.admin.call<{ tokens: WorkerTokenView[] }>('GET', '/worker-tokens')).tokens;
    assert.ok(tokens.every((t) => t.revoked));
    const home = await cpccLoggedIn(ts);
    const table = await cpcc(home, ['pilots']);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /failed/);
    assert.match(table.stdout, /Invalid partition/i);
    assert.match(table.stdout, /wrong \(slurm, partition nosuchpartition\).*last error:.*next try in/);
    await fsp.access(join(ts.home, 'pilots.json'));
  });
});
