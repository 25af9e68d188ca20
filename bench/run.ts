/**
 * npm run bench — measures this machine; writes bench/results/latest.json.
 * `--quick` runs small sizes (a smoke run of a few seconds).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { dispatch } from './dispatch.js';
import { stat } from './lib.js';
import { wakeup } from './wakeup.js';

const quick = process.argv.includes('--quick');
const repeats = quick ? 1 : 3;
const results: Record<string, unknown> = {
  date: new Date().toISOString(),
  node: process.version,
  cpus: `${cpus().length} × ${cpus()[0]?.model ?? '?'}`,
  memoryGb: Math.round(totalmem() / 2 ** 30),
  quick,
};

const jobs = quick ? 2000 : 20_000;
const dispatchRuns = [];
for (let i = 0; i < repeats; i++) dispatchRuns.push(await dispatch(jobs, 64));
results.dispatch = {
  jobs,
  workers: 64,
  jobsPerS: stat(dispatchRuns.map((r) => r.jobsPerS)),
  fsyncs: dispatchRuns.map((r) => r.fsyncs),
  changesPerFsync: stat(dispatchRuns.map((r) => r.changesPerFsync)),
};
console.log('dispatch', JSON.stringify(results.dispatch));

const delegatedRuns = [];
for (let i = 0; i < repeats; i++) delegatedRuns.push(await dispatch(jobs, 64, { delegated: true }));
const localMedian = stat(dispatchRuns.map((r) => r.jobsPerS)).median;
const delegatedMedian = stat(delegatedRuns.map((r) => r.jobsPerS)).median;
results.delegatedDispatch = {
  jobs,
  workers: 64,
  jobsPerS: stat(delegatedRuns.map((r) => r.jobsPerS)),
  ofLocal: Math.round((delegatedMedian / localMedian) * 100) / 100,
};
console.log('delegated dispatch', JSON.stringify(results.delegatedDispatch));

const wakeRuns = [];
for (let i = 0; i < repeats; i++) wakeRuns.push(await wakeup(quick ? 50 : 300));
results.wakeup = {
  p50Ms: stat(wakeRuns.map((r) => r.p50)),
  p99Ms: stat(wakeRuns.map((r) => r.p99)),
};
console.log('wakeup', JSON.stringify(results.wakeup));

const delegatedWakeRuns = [];
for (let i = 0; i < repeats; i++) delegatedWakeRuns.push(await wakeup(quick ? 50 : 300, { delegated: true }));
results.delegatedWakeup = {
  p50Ms: stat(delegatedWakeRuns.map((r) => r.p50)),
  p99Ms: stat(delegatedWakeRuns.map((r) => r.p99)),
};
console.log('delegated wakeup', JSON.stringify(results.delegatedWakeup));

mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
writeFileSync(join(import.meta.dirname, 'results', 'latest.json'), JSON.stringify(results, null, 2) + '\n');
