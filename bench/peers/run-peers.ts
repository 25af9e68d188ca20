/**
 * `npm run bench -- --peers`: cpc beside the job systems a site would install
 * instead, in one run, on one workload, each as durable as cpc (a submit is
 * answered once the job is on disk):
 *
 *   cpc                 its dispatch, spawn, wake-up, bulk and memory figures
 *   BullMQ on Redis     appendonly yes, appendfsync always; and everysec
 *   graphile-worker     PostgreSQL, synchronous_commit=on
 *   pg-boss             the same PostgreSQL
 *   Slurm               a one-node cluster of 64 CPUs
 *
 * Every system gets 64 slots; producers and workers are processes of their
 * own (peer-client.ts; for cpc sim-workers.ts and wakeup-client.ts; for Slurm
 * sbatch and slurmd). Each system's server is started here in a temp folder
 * on a free port and stopped, even on failure; a system that cannot be
 * installed is skipped with the reason. The whole comparison runs `runs`
 * times, the systems taking turns, so a shared machine's load falls on all.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { bulk } from '../bulk.js';
import { dispatch } from '../dispatch.js';
import { BENCH_DIR, round, runChild, stat, type Stat } from '../lib.js';
import { memory } from '../memory.js';
import { wakeup } from '../wakeup.js';
import { bullmqSettings } from './bullmq.js';
import { graphileSettings } from './graphile.js';
import { pgbossSettings } from './pgboss.js';
import type { Settings } from './queue-driver.js';
import { rssBytes, serverCpuUs, startPostgres, startRedis, type PeerServer, type PostgresServer } from './servers.js';
import { slurmBulk, slurmDispatch, slurmSettings, slurmSingles, slurmWakeup, startSlurmPeer } from './slurm.js';

export const SLOTS = 64;

export interface PeerSizes {
  /** Trivial jobs per dispatch figure. */
  jobs: number;
  /** Jobs per spawn figure (each runs `true`). */
  spawnJobs: number;
  wakeSamples: number;
  bulkJobs: number;
  /** Slurm runs far fewer jobs a second; its dispatch figure is on fewer jobs. */
  slurmJobs: number;
  slurmWakeSamples: number;
  /** Held jobs submitted one sbatch each, for Slurm's memory per queued job. */
  slurmSingles: number;
  runs: number;
}

export const FULL: PeerSizes = { jobs: 20_000, spawnJobs: 2000, wakeSamples: 100, bulkJobs: 100_000, slurmJobs: 1000, slurmWakeSamples: 20, slurmSingles: 500, runs: 3 };
export const SMOKE: PeerSizes = { jobs: 1000, spawnJobs: 300, wakeSamples: 10, bulkJobs: 10_000, slurmJobs: 100, slurmWakeSamples: 3, slurmSingles: 50, runs: 1 };

/** One system's figures in one run. `null`: not measurable for that system. */
interface SystemRun {
  jobsPerS: number;
  spawnJobsPerS: number;
  /** Server CPU time per job over the trivial dispatch. */
  serverCpuUs: number | null;
  /** CPU time of the workers' process per job over the same dispatch (the queues' workers do more than cpc's). */
  clientCpuUs: number | null;
  wakeP50Ms: number;
  wakeP99Ms: number;
  bulkMs: number;
  /** Server memory growth per queued job (RSS). */
  rssPerQueuedBytes: number | null;
  /** Database growth per queued job, where jobs live in PostgreSQL tables. */
  diskPerQueuedBytes: number | null;
}

const SYSTEMS = ['cpc', 'bullmq-always', 'bullmq-everysec', 'graphile-worker', 'pg-boss', 'slurm'] as const;
type System = (typeof SYSTEMS)[number];

const LABEL: Record<System, string> = {
  cpc: 'cpc',
  'bullmq-always': 'BullMQ, Redis appendfsync always',
  'bullmq-everysec': 'BullMQ, Redis appendfsync everysec',
  'graphile-worker': 'graphile-worker, PostgreSQL',
  'pg-boss': 'pg-boss, PostgreSQL',
  slurm: 'Slurm (sbatch --wrap true)',
};

/** cpc's dispatch over each peer's, at least: the targets. */
const DISPATCH_TARGET: Partial<Record<System, number>> = { 'bullmq-always': 2, 'graphile-worker': 5, 'pg-boss': 5, slurm: 20 };

// ---- one system, one run ------------------------------------------------------------

async function cpcRun(s: PeerSizes): Promise<SystemRun> {
  const d = await dispatch(s.jobs, 8, { cores: 8 });
  const sp = await dispatch(s.spawnJobs, 8, { cores: 8, spawn: true });
  const w = await wakeup(s.wakeSamples);
  const b = await bulk(s.bulkJobs);
  const m = await memory(s.bulkJobs);
  return {
    jobsPerS: d.jobsPerS,
    spawnJobsPerS: sp.jobsPerS,
    serverCpuUs: d.serverCpuUs,
    clientCpuUs: d.clientCpuUs,
    wakeP50Ms: w.p50,
    wakeP99Ms: w.p99,
    bulkMs: b.ms,
    rssPerQueuedBytes: m.rssPerQueued,
    diskPerQueuedBytes: null,
  };
}

/**
 * A queue peer: its server started fresh, then (clients in their own
 * processes) wake-up on the empty queue, N trivial jobs added and drained,
 * N spawning jobs added and drained, and the bulk add, whose jobs stay queued
 * for the memory figure.
 */
async function queueRun(
  peer: 'bullmq' | 'graphile' | 'pgboss',
  server: PeerServer,
  target: string,
  s: PeerSizes,
  opts: { withChildren: boolean; diskBytes?: () => Promise<number> },
): Promise<SystemRun> {
  const client = <T>(args: string[], onLine?: (line: string) => void) => runChild<T>('peers/peer-client.ts', [peer, target, ...args], { onLine });
  await client(['setup']);
  const wake = await client<{ p50: number; p99: number }>(['wakeup', String(s.wakeSamples)]);

  const drain = async (jobs: number, spawn: boolean) => {
    await client(['add', String(jobs)]);
    let cpu0 = 0;
    const r = await client<{ ms: number; ran: number; clientCpuUs: number }>(['drain', String(jobs), String(SLOTS), ...(spawn ? ['spawn'] : [])], (line) => {
      if (line.includes('"started"')) cpu0 = serverCpuUs(server.pid, opts.withChildren);
    });
    const cpu = serverCpuUs(server.pid, opts.withChildren) - cpu0;
    if (r.ran < jobs) throw new Error(`${peer}: ${r.ran} of ${jobs} jobs ran`);
    return { jobsPerS: round((jobs / r.ms) * 1000, 0), serverCpuUs: round(cpu / jobs, 1), clientCpuUs: round(r.clientCpuUs, 1) };
  };
  const trivial = await drain(s.jobs, false);
  const spawned = await drain(s.spawnJobs, true);

  const rss0 = rssBytes(server.pid);
  const disk0 = await opts.diskBytes?.();
  const b = await client<{ ms: number }>(['add', String(s.bulkJobs)]);
  const rss = rssBytes(server.pid) - rss0;
  const disk = opts.diskBytes ? (await opts.diskBytes()) - disk0! : null;
  return {
    jobsPerS: trivial.jobsPerS,
    spawnJobsPerS: spawned.jobsPerS,
    serverCpuUs: trivial.serverCpuUs,
    clientCpuUs: trivial.clientCpuUs,
    wakeP50Ms: wake.p50,
    wakeP99Ms: wake.p99,
    bulkMs: round(b.ms, 0),
    // PostgreSQL keeps queued jobs in table pages in shared buffers, which every backend maps: its RSS says nothing per job.
    rssPerQueuedBytes: opts.withChildren ? null : round(rss / s.bulkJobs, 0),
    diskPerQueuedBytes: disk === null ? null : round(disk / s.bulkJobs, 0),
  };
}

type Outcome = { run: SystemRun; settings: Settings; skip?: undefined } | { run?: undefined; settings?: undefined; skip: string };

/**
 * The stop of the server now running, so that an interrupted bench (Ctrl-C,
 * SIGTERM) stops it and removes its folder as a failed one does.
 */
let stopping: (() => Promise<void>) | null = null;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.log(`peers: ${signal}, stopping the peer's server`);
    void (stopping ?? (async () => {}))().finally(() => process.exit(130));
  });
}

async function withServer<S extends { stop(): Promise<void> }, T>(server: S, run: (s: S) => Promise<T>): Promise<T> {
  stopping = () => server.stop();
  try {
    return await run(server);
  } finally {
    stopping = null;
    await server.stop();
  }
}

async function systemRun(system: System, s: PeerSizes): Promise<Outcome> {
  if (system === 'cpc') {
    return {
      run: await cpcRun(s),
      settings: {
        journal: 'fsync before every answer (group commit)',
        workers: '8 simulated workers × 8 cores (sim-workers.ts), results riding on the next claim',
        'bulk add': `one POST of ${s.bulkJobs} jobs`,
        'single add': 'POST /projects/:p/jobs, one job',
        'wake-up': 'a worker long-polling claim (wakeup-client.ts)',
      },
    };
  }
  if (system === 'bullmq-always' || system === 'bullmq-everysec') {
    const fsync = system === 'bullmq-always' ? 'always' : 'everysec';
    const started = await startRedis(fsync);
    if (!started.server) return { skip: started.skip };
    return withServer(started.server, async (redis) => {
      const run = await queueRun('bullmq', redis, String(redis.port), s, { withChildren: false });
      return { run, settings: { ...bullmqSettings(SLOTS), redis: Object.entries(redis.settings).map(([k, v]) => `${k} ${v}`).join(', ') } };
    });
  }
  if (system === 'graphile-worker' || system === 'pg-boss') {
    const started = await startPostgres();
    if (!started.server) return { skip: started.skip };
    return withServer(started.server, async (pg: PostgresServer) => {
      const diskBytes = async () => Number(await pg.query('select pg_database_size(current_database())'));
      const run = await queueRun(system === 'pg-boss' ? 'pgboss' : 'graphile', pg, pg.url, s, { withChildren: true, diskBytes });
      const base = system === 'pg-boss' ? pgbossSettings(SLOTS) : graphileSettings(SLOTS);
      return { run, settings: { ...base, postgresql: `${pg.version}, ` + Object.entries(pg.settings).map(([k, v]) => `${k}=${v}`).join(', ') } };
    });
  }
  const started = await startSlurmPeer(SLOTS);
  if (!started.peer) return { skip: started.skip };
  return withServer(started.peer, async (peer) => {
    const d = await slurmDispatch(peer, s.slurmJobs);
    const w = await slurmWakeup(peer, s.slurmWakeSamples);
    const b = await slurmBulk(peer, s.bulkJobs);
    const one = await slurmSingles(peer, s.slurmSingles);
    return {
      run: {
        jobsPerS: d.jobsPerS,
        spawnJobsPerS: d.jobsPerS,
        serverCpuUs: d.serverCpuUs,
        clientCpuUs: null,
        wakeP50Ms: w.p50,
        wakeP99Ms: w.p99,
        bulkMs: b.ms,
        rssPerQueuedBytes: one.rssPerQueued,
        diskPerQueuedBytes: null,
      },
      settings: { ...slurmSettings(SLOTS), 'single sbatch rate (8 at a time), jobs/s': one.jobsPerS, [`array of ${s.bulkJobs}: slurmctld RSS per job, B`]: b.rssPerQueued },
    };
  });
}

// ---- the comparison -------------------------------------------------------------------

const FIELDS: [keyof SystemRun, string, string][] = [
  ['jobsPerS', 'dispatch, trivial jobs', 'jobs/s'],
  ['spawnJobsPerS', 'dispatch, each job spawns true', 'jobs/s'],
  ['serverCpuUs', 'server CPU per job', 'µs'],
  ['clientCpuUs', 'workers\' process CPU per job', 'µs'],
  ['wakeP50Ms', 'submit → start p50, idle worker', 'ms'],
  ['wakeP99Ms', 'submit → start p99', 'ms'],
  ['bulkMs', 'bulk submit', 'ms'],
  ['rssPerQueuedBytes', 'server RSS per queued job', 'B'],
  ['diskPerQueuedBytes', 'database growth per queued job', 'B'],
];

export async function runPeers(sizes: PeerSizes, only?: Set<string>): Promise<void> {
  const systems = SYSTEMS.filter((s) => !only || only.has(s) || s === 'cpc');
  const runs: Partial<Record<System, SystemRun[]>> = {};
  const settings: Partial<Record<System, Settings>> = {};
  const skipped: Partial<Record<System, string>> = {};
  const loads: number[] = [];
  for (let r = 0; r < sizes.runs; r++) {
    for (const system of systems) {
      if (skipped[system]) continue;
      loads.push(loadavg()[0]!);
      const t0 = performance.now();
      console.log(`peers, run ${r + 1}/${sizes.runs}: ${system} …`);
      let outcome: Outcome;
      try {
        outcome = await systemRun(system, sizes);
      } catch (err) {
        outcome = { skip: `failed: ${(err as Error).stack ?? err}` };
      }
      if (outcome.skip !== undefined) {
        skipped[system] = outcome.skip;
        console.log(`peers: ${system} skipped: ${outcome.skip}`);
        continue;
      }
      (runs[system] ??= []).push(outcome.run);
      settings[system] = outcome.settings;
      console.log(`peers: ${system}: ${((performance.now() - t0) / 1000).toFixed(1)} s ${JSON.stringify(outcome.run)}`);
    }
  }

  const figures: Partial<Record<System, Record<string, Stat | null>>> = {};
  for (const system of systems) {
    const rs = runs[system];
    if (!rs) continue;
    figures[system] = Object.fromEntries(FIELDS.map(([k]) => [k, rs.some((x) => x[k] === null) ? null : stat(rs.map((x) => x[k] as number))]));
  }

  // Ratios within each run (the systems of one run share its load), then their median.
  const ratio = (system: System, k: keyof SystemRun, invert = false) => {
    const a = runs.cpc ?? [];
    const b = runs[system] ?? [];
    const per = a.slice(0, b.length).map((x, i) => (invert ? (b[i]![k] as number) / (x[k] as number) : (x[k] as number) / (b[i]![k] as number)));
    return per.length ? stat(per.map((v) => round(v))) : null;
  };
  const judged: { figure: string; ratio: Stat | null; target: string; met: boolean | null }[] = [];
  for (const system of systems) {
    if (system === 'cpc' || !runs[system]) continue;
    const d = ratio(system, 'jobsPerS');
    const want = DISPATCH_TARGET[system];
    judged.push({ figure: `dispatch: cpc / ${system}`, ratio: d, target: want ? `≥ ${want} ×` : '', met: want && d ? d.median >= want : null });
    const w = ratio(system, 'wakeP50Ms', true);
    judged.push({ figure: `wake-up p50: ${system} / cpc`, ratio: w, target: '> 1 × (cpc below)', met: w ? w.median > 1 : null });
  }

  const results = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: `${cpus().length} × ${cpus()[0]?.model ?? '?'}`,
    memoryGb: Math.round(totalmem() / 2 ** 30),
    loadAverage1m: { min: round(Math.min(...loads)), max: round(Math.max(...loads)) },
    slots: SLOTS,
    sizes,
    figures,
    settings,
    skipped,
    targets: judged.map((j) => ({ figure: j.figure, median: j.ratio?.median ?? null, min: j.ratio?.min ?? null, max: j.ratio?.max ?? null, target: j.target, met: j.met })),
  };
  const file = join(BENCH_DIR, 'results', 'latest.json');
  const latest = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>) : {};
  latest.peers = results;
  writeFileSync(file, JSON.stringify(latest, null, 2) + '\n');

  // The table: one row per figure, one column per system (median, and min – max over the runs).
  const fmt = (n: number) => (Number.isInteger(n) ? n.toLocaleString('en-US') : String(n));
  const cell = (s: Stat | null | undefined) => (s ? (s.runs.length > 1 ? `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})` : fmt(s.median)) : '–');
  const cols = systems.filter((s) => figures[s]);
  const rowsOut = FIELDS.map(([k, label, unit]) => [`${label} (${unit})`, ...cols.map((c) => cell(figures[c]![k]))]);
  const head = ['figure', ...cols];
  const widths = head.map((h, i) => Math.max(h.length, ...rowsOut.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  console.log();
  console.log(line(head));
  for (const r of rowsOut) console.log(line(r));
  console.log();
  for (const j of judged) {
    const r = j.ratio ? `${j.ratio.median} ×${j.ratio.runs.length > 1 ? ` (${j.ratio.min}–${j.ratio.max})` : ''}` : '–';
    console.log(`${j.figure.padEnd(40)} ${r.padEnd(22)} ${j.target.padEnd(20)} ${j.met === null ? '' : j.met ? 'met' : 'MISSED'}`);
  }
  for (const [system, why] of Object.entries(skipped)) console.log(`skipped ${LABEL[system as System]}: ${why.split('\n')[0]}`);
  console.log(`load average (1 min) over the runs: ${results.loadAverage1m.min}–${results.loadAverage1m.max}; sizes: ${JSON.stringify(sizes)}`);
  console.log(`results: ${file} (peers)`);
}
