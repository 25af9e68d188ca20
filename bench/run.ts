/**
 * npm run bench — measures this machine; writes bench/results/latest.json
 * and prints a summary with the targets each figure is held to.
 *
 *   --quick          small sizes: a smoke run; targets are not judged
 *   --only a,b       only these figures (names as in the summary); results go
 *                    to bench/results/partial.json
 *   --peers          only the comparison with other job systems (bench/peers/):
 *                    cpc beside BullMQ, graphile-worker, pg-boss and Slurm, each
 *                    installed when missing and started here; results go under
 *                    `peers` in bench/results/latest.json. With --quick, small
 *                    sizes; with --only, only the systems named (cpc always)
 *   --profile        CPU profiles of every measured phase, of this process and
 *                    of the child processes, into bench/results/profiles/
 *                    (read them with bench/profile-top.ts); results go to
 *                    bench/results/partial.json
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { bulk, type BulkRun } from './bulk.js';
import { cancelLatency } from './cancel.js';
import { usageCost } from './usage.js';
import { detectUsageMethod } from '../src/worker/usage.js';
import { ceiling, type CeilingRun } from './ceiling.js';
import { coldStart, OFFLINE, ONLINE, type ColdStartRun } from './cold-start.js';
import { dispatch, type DispatchRun } from './dispatch.js';
import { chattyDispatch, type ChattyRun } from './chatty.js';
import { heartbeats, type HeartbeatRun } from './heartbeats.js';
import { BENCH_DIR, PROFILE_ENV, round, stat, type Stat } from './lib.js';
import { memory, type MemoryRun } from './memory.js';
import { priorities, type PrioritiesRun } from './priorities.js';
import { buildRestartState, removeRestartState, restart, restartProcess } from './restart.js';
import { transfer, type TransferRun } from './transfer.js';
import { wakeup } from './wakeup.js';
import { lossUnavailable } from './wan-loss.js';
import { wan, WAN_LOSS_PERCENT, WAN_RTTS, type WanRun } from './wan.js';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const profile = argv.includes('--profile');
const onlyArg = argv.includes('--only') ? argv[argv.indexOf('--only') + 1] : undefined;
const only = onlyArg ? new Set(onlyArg.split(',')) : null;
const repeats = quick ? 1 : 3;
const resultsDir = join(BENCH_DIR, 'results');
if (profile) process.env[PROFILE_ENV] = join(resultsDir, 'profiles');

if (argv.includes('--peers')) {
  // Loaded only here: the peers' client libraries are no part of the other figures.
  const { FULL, runPeers, SMOKE } = await import('./peers/run-peers.js');
  await runPeers(quick ? SMOKE : FULL, only ?? undefined);
  process.exit(0);
}

const FIGURES = ['cold-start', 'ceiling', 'dispatch', 'dispatch-shapes', 'dispatch-growth', 'delegated-dispatch', 'chatty-dispatch', 'wakeup', 'delegated-wakeup', 'wan', 'cancel', 'delegated-cancel', 'usage', 'bulk', 'priorities', 'heartbeats', 'restart', 'memory', 'transfer'];
for (const name of only ?? []) if (!FIGURES.includes(name)) throw new Error(`--only: no figure '${name}' (figures: ${FIGURES.join(', ')})`);

const size = quick
  ? {
      ceilingS: 1,
      dispatchJobs: 2000,
      growthJobs: 500,
      growthQueued: [1000, 10_000],
      wakeSamples: 50,
      wanSamples: 10,
      wanJobs: 500,
      cancelSamples: 10,
      usageJobs: 300,
      bulkJobs: 10_000,
      priorityJobs: 5000,
      hbWorkers: [10, 100],
      hbSeconds: 1,
      restart: { jobs: 20_000, live: 2000, running: 200 },
      restarts: 1,
      memoryJobs: 10_000,
      transferMb: 16,
      coldRounds: 3,
      serverStarts: 1,
    }
  : {
      ceilingS: 5,
      dispatchJobs: 20_000,
      growthJobs: 5000,
      growthQueued: [1000, 10_000, 100_000],
      wakeSamples: 300,
      wanSamples: 50,
      wanJobs: 2000,
      cancelSamples: 30,
      usageJobs: 500,
      bulkJobs: 100_000,
      priorityJobs: 40_000,
      hbWorkers: [100, 1000],
      hbSeconds: 10,
      restart: { jobs: 1_000_000, live: 100_000, running: 10_000 },
      restarts: 3,
      memoryJobs: 100_000,
      transferMb: 256,
      coldRounds: 15,
      serverStarts: 5,
    };
/**
 * The dispatch figures' fleet: 64 slots as 8 workers of 8 cores, as
 * cpc-worker registers a node with all its cores and claims as many jobs as
 * it has free (results riding on that claim). The same 64 slots as 64
 * one-core workers, one request per job, are measured beside it.
 */
const WORKERS = 8;
const CORES = 8;
const SHAPES: [workers: number, cores: number][] = [
  [64, 1],
  [16, 4],
];
const HB_PER_WORKER = 100;

const results: Record<string, unknown> = {
  date: new Date().toISOString(),
  node: process.version,
  cpus: `${cpus().length} × ${cpus()[0]?.model ?? '?'}`,
  memoryGb: Math.round(totalmem() / 2 ** 30),
  quick,
  ...(only ? { only: [...only] } : {}),
};

/** One line of the summary. `target` is judged on the median. */
interface Row {
  figure: string;
  unit: string;
  s: Stat;
  target?: { op: '≥' | '≤'; value: number; text: string };
}
const rows: Row[] = [];
const notes: string[] = [];

async function figure(name: string, run: () => Promise<void>): Promise<void> {
  if (only && !only.has(name)) return;
  const t0 = performance.now();
  console.log(`${name} …`);
  await run();
  console.log(`${name}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

async function repeat<T>(n: number, run: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < n; i++) out.push(await run(i));
  return out;
}

const of = <T>(runs: T[], pick: (r: T) => number): Stat => stat(runs.map(pick));

// ---- cold start --------------------------------------------------------------

await figure('cold-start', async () => {
  const runs: ColdStartRun[] = await repeat(repeats, () => coldStart(size.coldRounds, size.serverStarts));
  const by = (pick: (r: ColdStartRun) => Record<string, number>, c: string) => of(runs, (r) => pick(r)[c]!);
  results.coldStart = {
    rounds: size.coldRounds,
    serverStarts: size.serverStarts,
    nodeMs: of(runs, (r) => r.nodeMs),
    ms: Object.fromEntries([...OFFLINE, ...ONLINE].map((c) => [c, by((r) => r.ms, c)])),
    ratioToNode: Object.fromEntries(OFFLINE.map((c) => [c, by((r) => r.ratio, c)])),
    overNodeMs: Object.fromEntries(ONLINE.map((c) => [c, by((r) => r.overMs, c)])),
    serverStartMs: of(runs, (r) => r.serverStartMs),
  };
  rows.push({ figure: 'cold start: node -e 0', unit: 'ms', s: of(runs, (r) => r.nodeMs) });
  for (const c of OFFLINE) rows.push({ figure: `  ${c}, over node -e 0`, unit: '×', s: by((r) => r.ratio, c), target: { op: '≤', value: 1.5, text: '≤ 1.5 ×' } });
  for (const c of ONLINE) rows.push({ figure: `  ${c} (local server), beyond node -e 0`, unit: 'ms', s: by((r) => r.overMs, c), target: { op: '≤', value: 100, text: '≤ 100 ms' } });
  rows.push({ figure: '  cpc-server start, empty home, to its first answer', unit: 'ms', s: of(runs, (r) => r.serverStartMs), target: { op: '≤', value: 400, text: '≤ 400 ms' } });
});

// ---- ceiling -----------------------------------------------------------------

let ceilingMedian: number | undefined;
await figure('ceiling', async () => {
  const runs: CeilingRun[] = await repeat(repeats, () => ceiling(size.ceilingS));
  const reqPerS = of(runs, (r) => r.reqPerS);
  ceilingMedian = reqPerS.median;
  const serverCpuUs = of(runs, (r) => r.serverCpuUs);
  results.ceiling = { seconds: size.ceilingS, connections: 10, inFlight: 64, reqPerS, serverCpuUs, p50Ms: of(runs, (r) => r.p50), p99Ms: of(runs, (r) => r.p99) };
  rows.push({ figure: 'ceiling (bare HTTPS, Pool of 10)', unit: 'req/s', s: reqPerS });
  rows.push({ figure: 'ceiling: server CPU per request', unit: 'µs', s: serverCpuUs });
});

// ---- dispatch and the journal under it ---------------------------------------

let dispatchMedian: number | undefined;
await figure('dispatch', async () => {
  const runs: DispatchRun[] = await repeat(repeats, () => dispatch(size.dispatchJobs, WORKERS, { cores: CORES }));
  const jobsPerS = of(runs, (r) => r.jobsPerS);
  dispatchMedian = jobsPerS.median;
  const changesPerFsync = of(runs, (r) => r.changesPerFsync);
  const fsyncsPerS = of(runs, (r) => r.fsyncsPerS);
  const serverCpuUs = of(runs, (r) => r.serverCpuUs);
  results.dispatch = {
    jobs: size.dispatchJobs,
    workers: WORKERS,
    cores: CORES,
    jobsPerS,
    serverCpuUs,
    clientCpuUs: of(runs, (r) => r.clientCpuUs),
    fsyncs: runs.map((r) => r.fsyncs),
    changesPerFsync,
    ...(ceilingMedian ? { ofCeiling: round(jobsPerS.median / ceilingMedian) } : {}),
  };
  results.journal = { under: 'dispatch', fsyncsPerS, changesPerFsync };
  const target = ceilingMedian ? round(0.35 * ceilingMedian, 0) : undefined;
  rows.push({
    figure: `dispatch (${size.dispatchJobs} jobs, ${WORKERS} workers × ${CORES} cores)`,
    unit: 'jobs/s',
    s: jobsPerS,
    ...(target ? { target: { op: '≥', value: target, text: `≥ 0.35 × ceiling = ${target.toLocaleString('en-US')}` } } : {}),
  });
  if (!target) notes.push('dispatch: its target is 0.35 × ceiling; run the ceiling figure with it to judge it');
  rows.push({ figure: 'dispatch: server CPU per job', unit: 'µs', s: serverCpuUs });
  rows.push({ figure: 'journal: fsyncs/s under dispatch', unit: '/s', s: fsyncsPerS });
  rows.push({ figure: 'journal: changes per fsync under dispatch', unit: '', s: changesPerFsync });
});

await figure('dispatch-shapes', async () => {
  const byShape: Record<string, { jobsPerS: Stat; serverCpuUs: Stat; clientCpuUs: Stat }> = {};
  for (const [workers, cores] of SHAPES) {
    const runs = await repeat(repeats, () => dispatch(size.dispatchJobs, workers, { cores }));
    const shape = `${workers}x${cores}`;
    const s = (byShape[shape] = { jobsPerS: of(runs, (r) => r.jobsPerS), serverCpuUs: of(runs, (r) => r.serverCpuUs), clientCpuUs: of(runs, (r) => r.clientCpuUs) });
    rows.push({ figure: `dispatch, ${workers} workers × ${cores} cores`, unit: 'jobs/s', s: s.jobsPerS });
    rows.push({ figure: `  server CPU per job`, unit: 'µs', s: s.serverCpuUs });
  }
  results.dispatchShapes = { jobs: size.dispatchJobs, byShape };
});

await figure('dispatch-growth', async () => {
  const bySize: Record<string, { jobsPerS: Stat; serverCpuUs: Stat }> = {};
  for (const queued of size.growthQueued) {
    const runs = await repeat(repeats, () => dispatch(size.growthJobs, WORKERS, { queuedBeyond: queued, cores: CORES }));
    const s = (bySize[queued] = { jobsPerS: of(runs, (r) => r.jobsPerS), serverCpuUs: of(runs, (r) => r.serverCpuUs) });
    rows.push({ figure: `dispatch with ${queued} more queued (${size.growthJobs} jobs)`, unit: 'jobs/s', s: s.jobsPerS });
    rows.push({ figure: `  server CPU per job`, unit: 'µs', s: s.serverCpuUs });
  }
  results.dispatchGrowth = { jobs: size.growthJobs, workers: WORKERS, cores: CORES, byQueued: bySize, ...growth(size.growthQueued, (q) => bySize[q]!.serverCpuUs.median) };
});

await figure('delegated-dispatch', async () => {
  const runs = await repeat(repeats, () => dispatch(size.dispatchJobs, WORKERS, { delegated: true, cores: CORES }));
  const jobsPerS = of(runs, (r) => r.jobsPerS);
  results.delegatedDispatch = {
    jobs: size.dispatchJobs,
    workers: WORKERS,
    cores: CORES,
    jobsPerS,
    ...(dispatchMedian ? { ofLocal: round(jobsPerS.median / dispatchMedian) } : {}),
  };
  rows.push({ figure: 'delegated dispatch', unit: 'jobs/s', s: jobsPerS });
});

// ---- dispatch beside a chatty job --------------------------------------------

/** What the chatty job writes to its stdout: a simulation that logs far too much. */
const CHATTY_BYTES_PER_S = 50 * 1024 * 1024;

await figure('chatty-dispatch', async () => {
  // A run to warm the code up first, as the dispatch figure before it would (when it ran).
  await dispatch(Math.ceil(size.dispatchJobs / 4), WORKERS, { cores: CORES });
  const runs: ChattyRun[] = await repeat(repeats, (i) => chattyDispatch(size.dispatchJobs, WORKERS, CORES, CHATTY_BYTES_PER_S, i % 2 === 1));
  const ratio = of(runs, (r) => r.ratio);
  results.chattyDispatch = {
    jobs: size.dispatchJobs,
    workers: WORKERS,
    cores: CORES,
    chattyBytesPerS: CHATTY_BYTES_PER_S,
    alone: of(runs, (r) => r.alone.jobsPerS),
    beside: of(runs, (r) => r.beside.jobsPerS),
    besideLiveLogsOff: of(runs, (r) => r.quiet.jobsPerS),
    ratio,
    liveRatio: of(runs, (r) => r.liveRatio),
    serverCpuUsAlone: of(runs, (r) => r.alone.serverCpuUs),
    serverCpuUsBeside: of(runs, (r) => r.beside.serverCpuUs),
    cpuRatio: of(runs, (r) => r.cpuRatio),
    chattyWrittenMBps: of(runs, (r) => r.chatty.writtenMBps),
    chattyKeptBytes: of(runs, (r) => r.chatty.keptBytes),
  };
  rows.push({ figure: 'dispatch alone (same run as below)', unit: 'jobs/s', s: of(runs, (r) => r.alone.jobsPerS) });
  rows.push({ figure: 'dispatch beside the same job, its live logs off', unit: 'jobs/s', s: of(runs, (r) => r.quiet.jobsPerS) });
  rows.push({ figure: 'dispatch with a chatty job beside it (50 MB/s to stdout, live logs on)', unit: 'jobs/s', s: of(runs, (r) => r.beside.jobsPerS) });
  // The job's own writing takes CPU from a 2-core machine whatever is done with its output; streaming it is what cpc adds.
  rows.push({ figure: '  live logs on / off', unit: '', s: of(runs, (r) => r.liveRatio), target: { op: '≥', value: 0.95, text: '≥ 0.95' } });
  rows.push({ figure: '  beside / alone', unit: '', s: ratio });
  rows.push({ figure: '  server CPU per job, beside / alone', unit: '', s: of(runs, (r) => r.cpuRatio) });
  rows.push({ figure: '  the chatty job wrote', unit: 'MB/s', s: of(runs, (r) => r.chatty.writtenMBps) });
});

// ---- wake-up -----------------------------------------------------------------

for (const delegated of [false, true]) {
  await figure(delegated ? 'delegated-wakeup' : 'wakeup', async () => {
    const runs = await repeat(repeats, () => wakeup(size.wakeSamples, { delegated }));
    const p50Ms = of(runs, (r) => r.p50);
    const p99Ms = of(runs, (r) => r.p99);
    results[delegated ? 'delegatedWakeup' : 'wakeup'] = { samples: size.wakeSamples, p50Ms, p99Ms };
    const [p50, p99] = delegated ? [10, 50] : [2, 10];
    const label = delegated ? 'delegated wake-up' : 'wake-up';
    rows.push({ figure: `${label} p50`, unit: 'ms', s: p50Ms, target: { op: '≤', value: p50, text: `≤ ${p50} ms` } });
    rows.push({ figure: `${label} p99`, unit: 'ms', s: p99Ms, target: { op: '≤', value: p99, text: `≤ ${p99} ms` } });
  });
}

// ---- delegation across a wide-area path ----------------------------------------

await figure('wan', async () => {
  type ByRtt = Record<string, { wakeP50Ms: Stat; wakeP99Ms: Stat; dispatchJobsPerS: Stat }>;
  const byRtt: ByRtt = {};
  const withLoss: ByRtt = {};
  const noLoss = lossUnavailable();
  if (noLoss) notes.push(`wan: figures without loss only: ${noLoss}`);
  for (const loss of noLoss ? [0] : [0, WAN_LOSS_PERCENT]) {
    for (const rtt of WAN_RTTS) {
      const runs: WanRun[] = await repeat(repeats, () => wan(rtt, size.wanSamples, size.wanJobs, WORKERS, CORES, loss));
      const r = { wakeP50Ms: of(runs, (x) => x.wakeP50), wakeP99Ms: of(runs, (x) => x.wakeP99), dispatchJobsPerS: of(runs, (x) => x.dispatchJobsPerS) };
      (loss ? withLoss : byRtt)[rtt] = r;
      rows.push({ figure: `WAN, ${rtt} ms round trip${loss ? `, ${loss} % loss` : ''}: delegated wake-up p50`, unit: 'ms', s: r.wakeP50Ms });
      rows.push({ figure: `  delegated wake-up p99`, unit: 'ms', s: r.wakeP99Ms });
      rows.push({ figure: `  delegated dispatch (${size.wanJobs} jobs, ${WORKERS} workers × ${CORES} cores)`, unit: 'jobs/s', s: r.dispatchJobsPerS });
      if (loss) rows.push({ figure: `  packets dropped (wake-up and dispatch)`, unit: 'packets', s: of(runs, (x) => x.dropped) });
    }
  }
  results.wan = {
    samples: size.wanSamples,
    jobs: size.wanJobs,
    jitter: '± a quarter of the round trip',
    byRtt,
    ...(noLoss ? { lossSkipped: noLoss } : { lossPercent: WAN_LOSS_PERCENT, withLossByRtt: withLoss }),
  };
});

// ---- cancel ------------------------------------------------------------------

for (const delegated of [false, true]) {
  await figure(delegated ? 'delegated-cancel' : 'cancel', async () => {
    const runs = await repeat(repeats, () => cancelLatency(size.cancelSamples, { delegated }));
    const p50Ms = of(runs, (r) => r.p50);
    const p99Ms = of(runs, (r) => r.p99);
    results[delegated ? 'delegatedCancel' : 'cancel'] = { samples: size.cancelSamples, heartbeatIntervalS: 120, p50Ms, p99Ms };
    const label = delegated ? 'delegated cancel → process gone' : 'cancel → process gone';
    rows.push({ figure: `${label} p50`, unit: 'ms', s: p50Ms, target: { op: '≤', value: 200, text: '≤ 200 ms' } });
    rows.push({ figure: `${label} p99`, unit: 'ms', s: p99Ms, target: { op: '≤', value: 1000, text: '≤ 1 000 ms' } });
  });
}

// ---- the cost of measuring usage ----------------------------------------------

await figure('usage', async () => {
  const methods = ['off', 'proc', ...(typeof detectUsageMethod('cgroup-v1') === 'string' ? [] : ['cgroup-v1'])];
  const runs = await repeat(repeats, () => usageCost(size.usageJobs, 2, methods));
  const off = of(runs, (r) => r.off!);
  results.usage = { jobs: size.usageJobs, cores: 2, jobsPerS: Object.fromEntries(methods.map((m) => [m, of(runs, (r) => r[m]!).median])) };
  rows.push({ figure: `trivial jobs, real worker (${size.usageJobs}, 2 cores), usage not measured`, unit: 'jobs/s', s: off });
  for (const m of methods.filter((x) => x !== 'off')) {
    rows.push({ figure: `  measured by ${m}`, unit: 'jobs/s', s: of(runs, (r) => r[m]!) });
    rows.push({ figure: `  measured by ${m}, over not measured`, unit: '×', s: of(runs, (r) => round(r[m]! / r.off!)), target: { op: '≥', value: 0.95, text: '≥ 0.95 ×' } });
  }
});

// ---- bulk submit -------------------------------------------------------------

await figure('bulk', async () => {
  const runs: BulkRun[] = await repeat(repeats, () => bulk(size.bulkJobs));
  const ms = of(runs, (r) => r.ms);
  results.bulk = { jobs: size.bulkJobs, requestBytes: runs[0]!.requestBytes, ms, jobsPerS: of(runs, (r) => r.jobsPerS) };
  rows.push({ figure: `bulk submit (${size.bulkJobs} jobs, one request)`, unit: 'ms', s: ms, target: { op: '≤', value: 2000, text: '≤ 2 000 ms' } });
});

// ---- distinct priorities -----------------------------------------------------

await figure('priorities', async () => {
  // In this process and in CPU time.
  const runs: PrioritiesRun[] = await repeat(repeats, async (i) => priorities(size.priorityJobs, i + 1));
  const pick = (k: keyof PrioritiesRun) => of(runs, (r) => r[k]);
  results.priorities = { jobs: size.priorityJobs, ...Object.fromEntries((Object.keys(runs[0]!) as (keyof PrioritiesRun)[]).map((k) => [k, pick(k)])) };
  const n = size.priorityJobs;
  rows.push({ figure: `priorities: ready queue, ${n} jobs in and out, one priority`, unit: 'ms CPU', s: pick('queueSingleMs') });
  rows.push({ figure: `  the same, each job at its own priority`, unit: 'ms CPU', s: pick('queueDistinctMs') });
  rows.push({ figure: `  distinct / one`, unit: '×', s: pick('queueRatio'), target: { op: '≤', value: 1.2, text: '≤ 1.2 (within 20 %)' } });
  rows.push({ figure: `priorities: through the model (submits, claims), one priority`, unit: 'ms CPU', s: pick('modelSingleMs') });
  rows.push({ figure: `  the same, each job at its own priority`, unit: 'ms CPU', s: pick('modelDistinctMs') });
  rows.push({ figure: `  distinct / one`, unit: '×', s: pick('modelRatio') });
});

// ---- file transfer -------------------------------------------------------------

await figure('transfer', async () => {
  const runs: TransferRun[] = await repeat(repeats, () => transfer(size.transferMb));
  const cat = of(runs, (r) => r.catMBs);
  const half = round(cat.median / 2, 0);
  results.transfer = {
    mb: size.transferMb,
    cold: runs.every((r) => r.cold),
    catMBs: cat,
    tlsMBs: of(runs, (r) => r.tlsMBs),
    uploadMBs: of(runs, (r) => r.uploadMBs),
    downloadMBs: of(runs, (r) => r.downloadMBs),
    delegatedUploadMBs: of(runs, (r) => r.delegatedUploadMBs),
    delegatedDownloadMBs: of(runs, (r) => r.delegatedDownloadMBs),
  };
  const target = { op: '≥' as const, value: half, text: `≥ ${half} MB/s (half of cat)` };
  const cache = runs.every((r) => r.cold) ? 'page cache emptied first' : 'file cached';
  rows.push({ figure: `transfer ceiling: cat of ${size.transferMb} MiB to /dev/null (${cache})`, unit: 'MB/s', s: cat });
  rows.push({ figure: '  TLS ceiling: the same upload to a bare HTTPS server that discards it', unit: 'MB/s', s: of(runs, (r) => r.tlsMBs) });
  rows.push({ figure: '  upload through one server (fsynced)', unit: 'MB/s', s: of(runs, (r) => r.uploadMBs), target });
  rows.push({ figure: '  download through one server', unit: 'MB/s', s: of(runs, (r) => r.downloadMBs), target });
  rows.push({ figure: '  upload through a delegating server', unit: 'MB/s', s: of(runs, (r) => r.delegatedUploadMBs) });
  rows.push({ figure: '  download through a delegating server', unit: 'MB/s', s: of(runs, (r) => r.delegatedDownloadMBs) });
});

// ---- heartbeats --------------------------------------------------------------

await figure('heartbeats', async () => {
  const byLeases: Record<string, { perS: Stat; serverCpuUs: Stat; p50Ms: Stat; p90Ms: Stat; p99Ms: Stat }> = {};
  const leaseSizes = size.hbWorkers.map((w) => w * HB_PER_WORKER);
  for (const workers of size.hbWorkers) {
    const leases = workers * HB_PER_WORKER;
    const runs: HeartbeatRun[] = await heartbeats({ workers, perWorker: HB_PER_WORKER, seconds: size.hbSeconds, runs: repeats });
    byLeases[leases] = { perS: of(runs, (r) => r.perS), serverCpuUs: of(runs, (r) => r.serverCpuUs), p50Ms: of(runs, (r) => r.p50), p90Ms: of(runs, (r) => r.p90), p99Ms: of(runs, (r) => r.p99) };
    const main = workers === size.hbWorkers[size.hbWorkers.length - 1];
    const label = `heartbeats, ${leases} leases over ${workers} workers`;
    rows.push({ figure: label, unit: '/s', s: byLeases[leases]!.perS, ...(main ? { target: { op: '≥', value: 10_000, text: '≥ 10 000 /s' } } : {}) });
    rows.push({ figure: `  server CPU per heartbeat`, unit: 'µs', s: byLeases[leases]!.serverCpuUs });
    rows.push({ figure: `  p50`, unit: 'ms', s: byLeases[leases]!.p50Ms });
    rows.push({ figure: `  p99`, unit: 'ms', s: byLeases[leases]!.p99Ms, ...(main ? { target: { op: '≤', value: 20, text: '≤ 20 ms' } } : {}) });
  }
  results.heartbeats = {
    attemptsPerHeartbeat: HB_PER_WORKER,
    inFlight: 64,
    seconds: size.hbSeconds,
    byLeases,
    ...growth(leaseSizes, (n) => byLeases[n]!.serverCpuUs.median),
  };
});

// ---- restart -----------------------------------------------------------------

await figure('restart', async () => {
  const { jobs, live, running } = size.restart;
  const state = await buildRestartState(jobs, live, running);
  try {
    const runs = await repeat(size.restarts, () => restart(state));
    const startMs = of(runs, (r) => r.startMs);
    const firstClaimMs = of(runs, (r) => r.firstClaimMs);
    const processMs = of(await repeat(size.restarts, () => restartProcess(state)), (ms) => ms);
    const { home: _home, workerToken: _token, ...disk } = state;
    results.restart = { ...disk, startMs, firstClaimMs, processMs };
    rows.push({ figure: `restart (${jobs} jobs, ${live} live): server started`, unit: 'ms', s: startMs });
    rows.push({ figure: `restart: first claim answered`, unit: 'ms', s: firstClaimMs, target: { op: '≤', value: 3000, text: '≤ 3 000 ms' } });
    rows.push({ figure: `restart as a process: spawn → first claim answered`, unit: 'ms', s: processMs, target: { op: '≤', value: 1000, text: '≤ 1 000 ms (at 1M jobs)' } });
  } finally {
    removeRestartState(state);
  }
});

// ---- memory ------------------------------------------------------------------

await figure('memory', async () => {
  const runs: MemoryRun[] = await repeat(repeats, () => memory(size.memoryJobs));
  results.memory = {
    jobs: size.memoryJobs,
    rssPerQueuedBytes: of(runs, (r) => r.rssPerQueued),
    heapPerQueuedBytes: of(runs, (r) => r.heapPerQueued),
    rssPerRunningBytes: of(runs, (r) => r.rssPerRunning),
    heapPerRunningBytes: of(runs, (r) => r.heapPerRunning),
  };
  const target = { op: '≤' as const, value: 2048, text: '≤ 2 048 B' };
  rows.push({ figure: `memory: RSS per queued job (${size.memoryJobs} jobs)`, unit: 'B', s: of(runs, (r) => r.rssPerQueued), target });
  rows.push({ figure: 'memory: RSS per running job', unit: 'B', s: of(runs, (r) => r.rssPerRunning), target });
});

// ---- output ------------------------------------------------------------------

/**
 * How a per-item cost grows from the smallest size to the largest: `ratio`
 * is cost(largest) / cost(smallest), the cost being the server's CPU time per
 * item (steadier than a rate on a shared machine); `logBound` is what a
 * logarithmic cost would give (log n_max / log n_min). Flat is ≈ 1.
 */
function growth(sizes: number[], cost: (n: number) => number): { growth: { sizes: number[]; ratio: number; logBound: number } } {
  const lo = sizes[0]!;
  const hi = sizes[sizes.length - 1]!;
  return { growth: { sizes, ratio: round(cost(hi) / cost(lo)), logBound: round(Math.log(hi) / Math.log(lo)) } };
}

const judged = rows.map((r) => {
  const met = r.target && !quick ? (r.target.op === '≥' ? r.s.median >= r.target.value : r.s.median <= r.target.value) : undefined;
  return { ...r, met };
});
results.targets = judged
  .filter((r) => r.target)
  .map((r) => ({ figure: r.figure, median: r.s.median, target: r.target!.text, met: r.met ?? null }));

const outFile = join(resultsDir, only || profile ? 'partial.json' : 'latest.json');
mkdirSync(resultsDir, { recursive: true });
writeFileSync(outFile, JSON.stringify(results, null, 2) + '\n');

const fmt = (n: number) => (Number.isInteger(n) ? n.toLocaleString('en-US') : String(n));
const table = judged.map((r) => [
  r.figure,
  `${fmt(r.s.median)} ${r.unit}`.trim(),
  r.s.runs.length > 1 ? `${fmt(r.s.min)} – ${fmt(r.s.max)}` : '',
  r.target?.text ?? '',
  r.met === undefined ? '' : r.met ? 'met' : 'MISSED',
]);
const head = ['figure', 'median', 'min – max', 'target', ''];
const widths = head.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
const line = (cells: string[]) => cells.map((c, i) => (i === 1 || i === 2 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
console.log();
console.log(line(head));
for (const row of table) console.log(line(row));
for (const key of ['dispatchGrowth', 'heartbeats'] as const) {
  const g = (results[key] as { growth?: { sizes: number[]; ratio: number; logBound: number } } | undefined)?.growth;
  if (g) {
    const shape = g.ratio <= 1.2 ? 'flat' : g.ratio <= g.logBound ? 'within logarithmic' : 'faster than logarithmic';
    console.log(`${key}: server CPU per item at ${fmt(g.sizes[g.sizes.length - 1]!)} vs ${fmt(g.sizes[0]!)}: × ${g.ratio} (${shape}; a logarithmic cost would be × ${g.logBound})`);
  }
}
if (quick) console.log('quick sizes: targets are not judged');
for (const note of notes) console.log(note);
console.log(`results: ${outFile}`);
