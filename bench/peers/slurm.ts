/**
 * Slurm as a peer: Debian's slurm-wlm, the one-node cluster the pilot tests
 * start (test/helpers/slurm.ts), declared with 64 CPUs so that 64 jobs run at
 * once as on the other systems' 64 slots, with the limits raised that would
 * otherwise refuse 100 000 jobs. Jobs are `sbatch --wrap true`: Slurm always
 * starts a process (slurmstepd, then the job's shell), so its trivial-job row
 * and its spawn row are the same row.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSlurm, type SlurmCluster } from '../../test/helpers/slurm.js';
import { percentiles, round, sleep } from '../lib.js';
import { procCpuUs, rssBytes } from './servers.js';
import type { Settings } from './queue-driver.js';

export const SLURM_CONF = [
  'MaxJobCount=300000',
  'MaxArraySize=100001',
  'SlurmctldDebug=error',
  'SlurmdDebug=error',
  // Schedule a submitted job at once: the default batch_sched_delay (3 s) made
  // every submit → start about 2.9 s here; with it at 0 it is about 1 s.
  'SchedulerParameters=max_rpc_cnt=150,batch_sched_delay=0,sched_min_interval=0,default_queue_depth=1000',
];

export function slurmSettings(slots: number): Settings {
  return {
    version: 'slurm-wlm 22.05 (Debian)',
    node: `one node, CPUs=${slots} (SlurmdParameters=config_overrides), SelectType=select/cons_tres, CR_Core`,
    'slurm.conf additions': SLURM_CONF.join(', '),
    'state save': 'StateSaveLocation in a temp folder (slurmctld writes job state there)',
    accounting: 'none (AccountingStorageType=accounting_storage/none)',
    'bulk add': 'one sbatch --array=0-(N-1) --hold --wrap true',
    'dispatch': 'the held array released with scontrol release; done when squeue lists none of it',
    'single add': 'sbatch --wrap (the job writes its start time)',
    'memory per queued job': 'held jobs submitted one sbatch each (8 at a time), slurmctld RSS growth; an array is one record until its tasks start',
  };
}

export interface SlurmPeer {
  cluster: SlurmCluster;
  /** slurmctld's PID: its CPU time and memory are the server's. */
  ctldPid: number;
  stop(): Promise<void>;
}

export async function startSlurmPeer(slots: number): Promise<{ peer: SlurmPeer; skip?: undefined } | { peer?: undefined; skip: string }> {
  const started = await startSlurm({ cpus: slots, extraConf: SLURM_CONF.join('\n') });
  if (!started.cluster) return { skip: started.skip };
  const cluster = started.cluster;
  const ctldPid = Number(readFileSync(join(cluster.dir, 'slurmctld.pid'), 'utf8').trim());
  return { peer: { cluster, ctldPid, stop: () => cluster.stop() } };
}

async function sbatch(peer: SlurmPeer, args: string[]): Promise<string> {
  const r = await peer.cluster.run('sbatch', ['--parsable', '-o', '/dev/null', '-e', '/dev/null', ...args]);
  if (r.code !== 0) throw new Error(`sbatch ${args.join(' ')} failed: ${r.stderr.trim()}`);
  return r.stdout.trim().split(';')[0]!;
}

/** Jobs of an array still pending, running or completing. */
async function live(peer: SlurmPeer, id: string): Promise<number> {
  const r = await peer.cluster.run('squeue', ['-h', '-r', '-j', id, '-t', 'PENDING,RUNNING,COMPLETING', '-o', '%i']);
  if (r.code !== 0) {
    // Once every job of the array has been purged, squeue says it knows no such job.
    if (/Invalid job id/i.test(r.stderr)) return 0;
    throw new Error(`squeue failed: ${r.stderr.trim()}`);
  }
  return r.stdout.split('\n').filter(Boolean).length;
}

/** N jobs queued (held), released at once; jobs/s from release until squeue shows none left. */
export async function slurmDispatch(peer: SlurmPeer, jobs: number): Promise<{ jobsPerS: number; serverCpuUs: number }> {
  const id = await sbatch(peer, ['--hold', `--array=0-${jobs - 1}`, '--wrap', 'true']);
  const cpu0 = procCpuUs(peer.ctldPid).own;
  const t0 = performance.now();
  const rel = await peer.cluster.run('scontrol', ['release', id]);
  if (rel.code !== 0) throw new Error(`scontrol release failed: ${rel.stderr.trim()}`);
  const deadline = Date.now() + 30 * 60_000;
  while ((await live(peer, id)) > 0) {
    if (Date.now() > deadline) throw new Error('Slurm did not finish the array in 30 minutes');
    await sleep(100);
  }
  const ms = performance.now() - t0;
  const cpu = procCpuUs(peer.ctldPid).own - cpu0;
  return { jobsPerS: round((jobs / ms) * 1000, 0), serverCpuUs: round(cpu / jobs, 1) };
}

/** Idle node: time from calling sbatch until the job's shell runs (it writes the time). */
export async function slurmWakeup(peer: SlurmPeer, samples: number): Promise<{ p50: number; p99: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'cpc-bench-slurm-wake-'));
  try {
    const times: number[] = [];
    const WARM_UP = 3;
    for (let i = 0; i < WARM_UP + samples; i++) {
      const file = join(dir, `t${i}`);
      const t0 = performance.timeOrigin + performance.now();
      await sbatch(peer, ['--wrap', `date +%s.%N > ${file}.tmp && mv ${file}.tmp ${file}`]);
      const deadline = Date.now() + 120_000;
      while (!existsSync(file)) {
        if (Date.now() > deadline) throw new Error('a Slurm job did not start in 2 minutes');
        await sleep(2);
      }
      const startedMs = Number(readFileSync(file, 'utf8').trim()) * 1000;
      if (i >= WARM_UP) times.push(startedMs - t0);
      // The node is idle again once the job has left the queue.
      while ((await peer.cluster.run('squeue', ['-h', '-t', 'PENDING,RUNNING,COMPLETING', '-o', '%i'])).stdout.trim()) await sleep(20);
    }
    const p = percentiles(times);
    return { p50: p.p50, p99: p.p99 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One held array of N jobs: the time sbatch takes, and slurmctld's memory growth per job. */
export async function slurmBulk(peer: SlurmPeer, jobs: number): Promise<{ ms: number; rssPerQueued: number }> {
  const rss0 = rssBytes(peer.ctldPid);
  const t0 = performance.now();
  const id = await sbatch(peer, ['--hold', `--array=0-${jobs - 1}`, '--wrap', 'true']);
  const ms = performance.now() - t0;
  await sleep(500);
  const rss = rssBytes(peer.ctldPid) - rss0;
  await peer.cluster.run('scancel', [id]);
  return { ms: round(ms, 0), rssPerQueued: round(rss / jobs, 0) };
}

/**
 * Single held jobs, one sbatch each, 8 submitting at a time: slurmctld's
 * memory growth per queued job (an array would be one record), and the rate.
 */
export async function slurmSingles(peer: SlurmPeer, jobs: number): Promise<{ jobsPerS: number; rssPerQueued: number }> {
  const rss0 = rssBytes(peer.ctldPid);
  const t0 = performance.now();
  let next = 0;
  const ids: string[] = [];
  const loop = async () => {
    while (next < jobs) {
      next++;
      ids.push(await sbatch(peer, ['--hold', '--wrap', 'true']));
    }
  };
  await Promise.all(Array.from({ length: 8 }, loop));
  const ms = performance.now() - t0;
  await sleep(500);
  const rss = rssBytes(peer.ctldPid) - rss0;
  for (let i = 0; i < ids.length; i += 500) await peer.cluster.run('scancel', ids.slice(i, i + 500));
  return { jobsPerS: round((jobs / ms) * 1000, 0), rssPerQueued: round(rss / jobs, 0) };
}
