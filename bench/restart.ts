import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { ApiClient } from '../src/client/api/client.js';
import { v7 as uuidv7 } from 'uuid';
import { planClaim, planSubmit } from '../src/core/commands.js';
import type { JobSpec } from '../src/core/types.js';
import { startServer } from '../src/server/start/server.js';
import { COMPILED, round, runChild, tempHome } from './lib.js';

export interface RestartRun {
  /** startServer: identity, accounts, snapshot and journal read, listeners up. */
  startMs: number;
  /** From the start of startServer until a newly registered worker's first claim is answered. */
  firstClaimMs: number;
}

export interface RestartState {
  home: string;
  workerToken: string;
  jobs: number;
  live: number;
  running: number;
  buildS: number;
  snapshotMb: number;
  journalMb: number;
  archiveMb: number;
}

const BATCH = 10_000;
const spec = (): JobSpec => ({ env: {}, resources: { cores: 1, memoryMb: 0 }, priority: 0, maxRetries: 0, timeoutS: null, after: [], argv: ['true'] });

/**
 * Builds a home holding `jobs` jobs: all but `live` of them ran, finished and
 * were archived; of the live ones, `running` hold leases and the rest are
 * queued. Events go straight to the store (the HTTP API would take far
 * longer and is measured elsewhere); the server is then closed, which
 * snapshots, as a normal shutdown does.
 */
export async function buildRestartState(jobs: number, live: number, running: number): Promise<RestartState> {
  const home = tempHome();
  try {
    return await build(home, jobs, live, running);
  } catch (err) {
    rmSync(home, { recursive: true, force: true });
    throw err;
  }
}

async function build(home: string, jobs: number, live: number, running: number): Promise<RestartState> {
  const t0 = performance.now();
  const server = await startServer({ home, securePort: 0, unsecurePort: 0, host: '127.0.0.1', publicHost: '127.0.0.1', logLevel: 'warn' });
  const store = server.ctx.store;
  const model = server.model;
  const project = 'bench';
  await store.commit({ t: 'project-created', at: Date.now(), name: project, owner: 'cpc-admin' });
  const builder = uuidv7();
  await store.commit({
    t: 'worker-registered',
    at: Date.now(),
    id: builder,
    name: 'builder',
    host: 'bench',
    resources: { cores: BATCH, memoryMb: 1024 * 1024 },
    labels: [],
    tokenId: 'bench-builder',
  });
  const submit = async (n: number): Promise<string[]> => {
    const ids = Array.from({ length: n }, () => uuidv7());
    await store.commit(planSubmit(model, project, ids.map(() => ({ spec: spec() })), ids, Date.now()));
    return ids;
  };
  const claim = async (n: number): Promise<[string, number][]> => {
    const event = planClaim(model, builder, 'local', Date.now(), server.ctx.leaseMs, n);
    if (!event || event.claims.length !== n) throw new Error(`restart: claimed ${event?.claims.length ?? 0} of ${n}`);
    await store.commit(event);
    return event.claims;
  };

  for (let done = 0; done < jobs - live; ) {
    const n = Math.min(BATCH, jobs - live - done);
    const ids = await submit(n);
    const claims = await claim(n);
    const at = Date.now();
    await Promise.all(
      claims.map(([jobId, attempt]) =>
        store.commit({ t: 'attempt-finished', at, jobId, attempt, how: 'exited', exitCode: 0, signal: null, durationMs: 5, stdoutTail: '', stderrTail: '', stdoutBytes: 0, stderrBytes: 0 }),
      ),
    );
    await store.archiveJobs(ids, Date.now());
    done += n;
  }
  for (let i = 0; i < live; i += BATCH) await submit(Math.min(BATCH, live - i));
  for (let i = 0; i < running; i += BATCH) await claim(Math.min(BATCH, running - i));
  const counts = model.countsOf(project);
  if (counts.done !== jobs - live || counts.queued !== live - running || counts.running !== running || model.jobs.size !== live) {
    throw new Error(`restart: built ${JSON.stringify(counts)} with ${model.jobs.size} live`);
  }
  const workerToken = await server.createWorkerToken('bench');
  await server.close();
  return {
    home,
    workerToken,
    jobs,
    live,
    running,
    buildS: round((performance.now() - t0) / 1000, 1),
    snapshotMb: mb(join(home, 'state'), /^snapshot-/),
    journalMb: mb(join(home, 'state', 'journal'), /^journal-/),
    archiveMb: mb(join(home, 'archive', project), /\.ndjson$/),
  };
}

/** One restart of a built home, in a fresh process, as a server restart is. */
export async function restart(state: RestartState): Promise<RestartRun & { live: number }> {
  const r = await runChild<RestartRun & { live: number }>('restart-child.ts', [state.home, state.workerToken]);
  if (r.live !== state.live) throw new Error(`restart: ${r.live} live jobs after restart, expected ${state.live}`);
  return r;
}

/**
 * One restart of a built home as admins restart a server: `cpc-server start`
 * spawned as a process, until a newly registered worker's first claim is
 * answered. Module loading, the process's own start and the HTTPS listener
 * are all in the figure, which `restart` above leaves out.
 */
export async function restartProcess(state: RestartState): Promise<number> {
  const root = COMPILED ? join(import.meta.dirname, '..', '..') : join(import.meta.dirname, '..');
  const [port, unsecure] = [await freePort(), await freePort()];
  const t0 = performance.now();
  const child = spawn(
    process.execPath,
    [join(root, 'dist', 'bin', 'cpc-server.js'), '--home', state.home, 'start', '--host', '127.0.0.1', '--port', String(port), '--unsecure-port', String(unsecure)],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const caPem = readFileSync(join(state.home, 'identity', 'ca.pem'), 'utf8');
  const worker = new ApiClient({ url: `https://127.0.0.1:${port}`, caPem, token: state.workerToken, timeoutMs: 60_000 });
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`cpc-server start exited with ${child.exitCode}: ${err.slice(0, 300)}`);
      if (performance.now() - t0 > 120_000) throw new Error('cpc-server start did not answer within 120 s');
      try {
        const { workerId } = await worker.register({ name: 'after-restart', host: 'bench', cores: 1, memoryMb: 1024 });
        const { jobs } = await worker.claim(workerId, { waitS: 0, max: 1 });
        if (jobs.length !== 1) throw new Error('restart: the first claim got no job');
        return round(performance.now() - t0, 0);
      } catch (e) {
        if ((e as { code?: string }).code !== 'UNREACHABLE') throw e;
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  } finally {
    await worker.destroy();
    child.kill('SIGTERM');
    await exited;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export function removeRestartState(state: RestartState): void {
  rmSync(state.home, { recursive: true, force: true });
}

function mb(dir: string, name: RegExp): number {
  let bytes = 0;
  for (const f of readdirSync(dir)) if (name.test(f)) bytes += statSync(join(dir, f)).size;
  return round(bytes / 2 ** 20, 1);
}
