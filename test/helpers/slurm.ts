/**
 * A real one-node Slurm cluster for the pilot tests, private to one test run:
 * Debian's slurm-wlm and munge (installed when missing), a munge key, a
 * slurm.conf naming this machine as controller and only node, and munged,
 * slurmctld and slurmd started as child processes on free ports, all under
 * one temporary folder. `stop()` cancels what is left in the queue, stops the
 * daemons by PID, then ends any process of a batch job of this cluster (they
 * carry its SLURM_CONF in their environment) and removes the folder.
 *
 * Slurm's daemons need root. Where they cannot be had, `startSlurm` says why
 * instead of starting anything, and the tests skip with that message (or
 * fail, under CPC_REQUIRE_SLURM=1, as in CI).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fsp, readdirSync, readFileSync } from 'node:fs';
import { cpus, hostname, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import type { BatchDriver } from './batch-driver.js';
import { freePort, until } from './server.js';

export const PARTITION = 'cpc';

export interface SlurmCluster {
  /** The slurm.conf; commands find it through SLURM_CONF. */
  conf: string;
  /** The environment Slurm's commands need for this cluster. */
  env: Record<string, string>;
  dir: string;
  partition: string;
  /** Runs a Slurm command (squeue, scancel, sinfo, …) against this cluster. */
  run(command: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** The batch jobs Slurm knows: id, name, state. */
  jobs(): Promise<{ id: string; name: string; state: string }[]>;
  stop(): Promise<void>;
}

export type SlurmStart = { cluster: SlurmCluster; skip?: undefined } | { cluster?: undefined; skip: string };

const COMMANDS = ['sbatch', 'squeue', 'scancel', 'sinfo', 'slurmctld', 'slurmd', 'munged'];

function which(cmd: string): boolean {
  const path = (process.env.PATH ?? '') + ':/usr/sbin:/sbin:/usr/bin';
  return path.split(':').some((d) => d && existsSync(join(d, cmd)));
}

function run(file: string, args: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { env, timeout: timeoutMs, maxBuffer: 32 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr: stderr || (err && code !== 0 && !stderr ? err.message : '') });
    });
  });
}

/** Installs slurm-wlm and munge from Debian's packages; null when done, otherwise why not. */
async function install(): Promise<string | null> {
  if (!which('apt-get')) return 'slurm-wlm and munge are not installed, and there is no apt-get to install them';
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let r = await run('apt-get', ['install', '-y', '-q', 'slurm-wlm', 'munge'], env, 600_000);
  if (r.code !== 0) {
    // The package lists may be missing or stale.
    await run('apt-get', ['update', '-q'], env, 600_000);
    r = await run('apt-get', ['install', '-y', '-q', 'slurm-wlm', 'munge'], env, 600_000);
  }
  if (r.code !== 0) return `apt-get install slurm-wlm munge failed: ${r.stderr.trim().split('\n').slice(-3).join(' ')}`;
  const missing = COMMANDS.filter((c) => !which(c));
  return missing.length > 0 ? `after installing slurm-wlm and munge, still missing: ${missing.join(', ')}` : null;
}

/** What a cluster may differ in from the pilot tests' default. */
export interface SlurmOptions {
  /** CPUs the node declares (more than the machine has is allowed: slurmd takes the configured figure). */
  cpus?: number;
  /** Lines added to slurm.conf before the node and partition lines. */
  extraConf?: string;
}

function slurmConf(dir: string, host: string, ctlPort: number, dPort: number, opts: SlurmOptions): string {
  const cpuCount = opts.cpus ?? cpus().length;
  const memoryMb = Math.floor(totalmem() / (1024 * 1024));
  return `# A one-node cluster for cpc's pilot tests; everything lives in ${dir}.
ClusterName=cpctest
SlurmctldHost=${host}
SlurmctldPort=${ctlPort}
SlurmdPort=${dPort}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${join(dir, 'munge.socket')}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
SlurmdUser=root
StateSaveLocation=${join(dir, 'state')}
SlurmdSpoolDir=${join(dir, 'spool')}
SlurmctldPidFile=${join(dir, 'slurmctld.pid')}
SlurmdPidFile=${join(dir, 'slurmd.pid')}
SlurmctldLogFile=${join(dir, 'slurmctld.log')}
SlurmdLogFile=${join(dir, 'slurmd.log')}
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
MinJobAge=300
KillWait=5
${opts.cpus ? 'SlurmdParameters=config_overrides\n' : ''}${opts.extraConf ? opts.extraConf.trimEnd() + '\n' : ''}NodeName=${host} CPUs=${cpuCount} RealMemory=${memoryMb} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${host} Default=YES MaxTime=INFINITE State=UP
`;
}

/** Starts a private one-node cluster, or says why it cannot. */
export async function startSlurm(opts: SlurmOptions = {}): Promise<SlurmStart> {
  if (process.platform !== 'linux') return { skip: `Slurm tests need Linux, not ${process.platform}` };
  if (process.getuid?.() !== 0) return { skip: `Slurm's daemons need root to start; these tests run as uid ${process.getuid?.()}` };
  if (COMMANDS.some((c) => !which(c))) {
    const why = await install();
    if (why) return { skip: why };
  }

  const dir = await fsp.mkdtemp(join(tmpdir(), 'cpc-slurm-'));
  await fsp.chmod(dir, 0o755);
  for (const d of ['state', 'spool']) await fsp.mkdir(join(dir, d));
  const conf = join(dir, 'slurm.conf');
  const env = { SLURM_CONF: conf };
  const fullEnv = { ...process.env, ...env };
  const daemons: ChildProcess[] = [];

  const daemon = async (file: string, args: string[], name: string): Promise<ChildProcess> => {
    const log = await fsp.open(join(dir, `${name}.out`), 'a');
    const child = spawn(file, args, { env: fullEnv, stdio: ['ignore', log.fd, log.fd] });
    await log.close();
    daemons.push(child);
    return child;
  };

  const cluster: SlurmCluster = {
    conf,
    env,
    dir,
    partition: PARTITION,
    run: (command, args) => run(command, args, fullEnv),
    jobs: async () => {
      const r = await run('squeue', ['-h', '-t', 'all', '-o', '%i|%j|%T'], fullEnv);
      if (r.code !== 0) throw new Error(`squeue failed: ${r.stderr}`);
      return r.stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => {
          const [id, name, state] = l.split('|');
          return { id: id!, name: name!, state: state! };
        });
    },
    stop: async () => {
      // Jobs first, while slurmd can still end them properly.
      const left = await cluster.jobs().catch(() => []);
      const live = left.filter((j) => !['COMPLETED', 'CANCELLED', 'FAILED', 'TIMEOUT', 'NODE_FAIL', 'OUT_OF_MEMORY', 'BOOT_FAIL'].includes(j.state));
      if (live.length > 0) {
        await run('scancel', live.map((j) => j.id), fullEnv);
        await until('the batch jobs to end', async () => (await cluster.jobs()).every((j) => !['PENDING', 'RUNNING', 'COMPLETING'].includes(j.state)), {
          timeoutMs: 20_000,
          intervalMs: 250,
        }).catch(() => {});
      }
      // slurmd, then slurmctld, then munged, each by its PID.
      for (const child of [...daemons].reverse()) await stopChild(child);
      for (const pid of processesOf(conf)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone already
        }
      }
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };

  try {
    const key = join(dir, 'munge.key');
    await fsp.writeFile(key, randomBytes(1024), { mode: 0o400 });
    await daemon(
      'munged',
      [
        '--foreground',
        '--force',
        `--key-file=${key}`,
        `--socket=${join(dir, 'munge.socket')}`,
        `--pid-file=${join(dir, 'munged.pid')}`,
        `--log-file=${join(dir, 'munged.log')}`,
        `--seed-file=${join(dir, 'munge.seed')}`,
      ],
      'munged',
    );
    await until('munged to open its socket', () => existsSync(join(dir, 'munge.socket')), { timeoutMs: 15_000 });
    const [ctlPort, dPort] = [await freePort(), await freePort()];
    await fsp.writeFile(conf, slurmConf(dir, hostname(), ctlPort, dPort, opts));
    await daemon('slurmctld', ['-D', '-f', conf], 'slurmctld');
    await daemon('slurmd', ['-D', '-f', conf], 'slurmd');
    await until(
      'sinfo to show the node idle',
      async () => {
        for (const d of daemons) if (d.exitCode !== null) throw new Error(`${d.spawnfile} exited with ${d.exitCode}`);
        const r = await run('sinfo', ['-h', '-N', '-o', '%T'], fullEnv);
        return r.code === 0 && r.stdout.trim() === 'idle';
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    return { cluster };
  } catch (err) {
    const logs = ['slurmctld.log', 'slurmd.log', 'munged.log', 'slurmctld.out', 'slurmd.out', 'munged.out']
      .map((f) => join(dir, f))
      .filter(existsSync)
      .map((f) => `${f}:\n${readFileSync(f, 'utf8').split('\n').slice(-8).join('\n')}`)
      .join('\n');
    await cluster.stop();
    return { skip: `Slurm did not start: ${(err as Error).message}\n${logs}` };
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Processes whose environment names this cluster's slurm.conf: slurmstepd and the batch jobs it ran. */
function processesOf(conf: string): number[] {
  const mark = `SLURM_CONF=${conf}\0`;
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${name}/environ`, 'latin1').includes(mark)) pids.push(Number(name));
    } catch {
      // gone, or not ours to read
    }
  }
  return pids;
}

/** Slurm for the pilot conformance suite. */
export const slurmDriver: BatchDriver = {
  kind: 'slurm',
  title: 'Slurm',
  requireVar: 'CPC_REQUIRE_SLURM',
  start: async () => {
    const started = await startSlurm();
    if (!started.cluster) return { skip: started.skip };
    const c = started.cluster;
    const ENDED = ['COMPLETED', 'CANCELLED', 'FAILED', 'TIMEOUT', 'NODE_FAIL', 'OUT_OF_MEMORY', 'BOOT_FAIL', 'PREEMPTED', 'DEADLINE'];
    return {
      cluster: {
        launcher: { kind: 'slurm', partition: c.partition, env: c.env, directives: ['--comment=cpc-{launcher}-{pilotId}'] },
        liveJobs: async () => (await c.jobs()).filter((j) => !ENDED.includes(j.state)),
        kill: async (id) => {
          const r = await c.run('scancel', [id]);
          if (r.code !== 0) throw new Error(`scancel ${id} failed: ${r.stderr}`);
        },
        stop: () => c.stop(),
      },
    };
  },
  completedState: 'COMPLETED',
  killedState: /^CANCELLED$/,
  holdDirective: '--hold',
  unknownQueueError: /invalid partition/i,
  outputName: (id) => `slurm-${id}.out`,
};
