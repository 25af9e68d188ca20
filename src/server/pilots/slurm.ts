import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { LauncherError, type BatchPhase, type BatchStatus, type Launcher, type PilotRequest } from './launcher.js';

/**
 * Pilots as Slurm batch jobs, through Slurm's own commands: `sbatch` to
 * submit, `squeue` (and `sacct` where accounting is on) to ask, `scancel` to
 * take back. Nothing is linked against Slurm; a site's commands, its
 * SLURM_CONF and its munge are used as they are.
 */

export interface SlurmOptions {
  /** Folder of the Slurm commands; by default they are looked up on PATH. */
  binDir?: string;
  /** Environment for the commands, on top of the server's. */
  env?: Record<string, string>;
  /** How long one command may take. sbatch waits ~10 s for an unreachable controller before it gives up. */
  commandTimeoutMs?: number;
}

/** Slurm's job states (squeue %T, sacct State) as the manager's phases. */
const PHASES: Record<string, BatchPhase> = {
  PENDING: 'queued',
  CONFIGURING: 'queued',
  REQUEUED: 'queued',
  REQUEUE_HOLD: 'queued',
  REQUEUE_FED: 'queued',
  RESV_DEL_HOLD: 'queued',
  RUNNING: 'running',
  COMPLETING: 'running',
  SIGNALING: 'running',
  STAGE_OUT: 'running',
  STOPPED: 'running',
  SUSPENDED: 'running',
  RESIZING: 'running',
  COMPLETED: 'done',
  CANCELLED: 'killed',
  PREEMPTED: 'killed',
  TIMEOUT: 'killed',
  DEADLINE: 'killed',
  REVOKED: 'killed',
  FAILED: 'failed',
  NODE_FAIL: 'failed',
  BOOT_FAIL: 'failed',
  OUT_OF_MEMORY: 'failed',
  SPECIAL_EXIT: 'failed',
};

const UNREACHABLE = /unable to contact slurm controller|socket timed out|zero bytes were transmitted|connection refused|communication connection failure/i;
const UNKNOWN_JOB = /invalid job id specified/i;

interface RunResult {
  stdout: string;
  stderr: string;
}

export class SlurmLauncher implements Launcher {
  readonly kind = 'slurm' as const;
  private readonly timeoutMs: number;

  constructor(private readonly opts: SlurmOptions = {}) {
    this.timeoutMs = opts.commandTimeoutMs ?? 30_000;
  }

  outputName(batchId: string): string {
    return `slurm-${batchId}.out`;
  }

  async submit(req: PilotRequest): Promise<string> {
    const script = join(req.dir, 'pilot.sbatch');
    const lines = ['#!/bin/sh', ...req.directives.map((d) => `#SBATCH ${d}`), ...req.commands, ''];
    await fsp.writeFile(script, lines.join('\n'), { mode: 0o700 });
    // cpc's own settings go on the command line, where no quoting is needed and they win over the script's.
    const args = [
      '--parsable',
      `--job-name=${req.jobName}`,
      `--chdir=${req.dir}`,
      `--output=${join(req.dir, 'slurm-%j.out')}`,
      '--nodes=1',
      '--ntasks=1',
      `--cpus-per-task=${req.cores}`,
      `--mem=${req.memoryMb}M`,
      `--time=${Math.max(1, Math.ceil(req.wallTimeS / 60))}`,
    ];
    if (req.partition) args.push(`--partition=${req.partition}`);
    if (req.account) args.push(`--account=${req.account}`);
    args.push(script);
    const { stdout } = await this.run('sbatch', args);
    // --parsable prints "jobid" or "jobid;cluster".
    const id = stdout.trim().split('\n').pop()?.split(';')[0]?.trim() ?? '';
    if (!/^\d+(_\d+)?$/.test(id)) throw new LauncherError('refused', `sbatch answered without a job id: ${clip(stdout)}`);
    return id;
  }

  async status(batchIds: readonly string[]): Promise<Map<string, BatchStatus>> {
    const out = new Map<string, BatchStatus>();
    for (let i = 0; i < batchIds.length; i += 200) {
      const chunk = batchIds.slice(i, i + 200);
      let text = '';
      try {
        // -t all: jobs that ended a moment ago stay listed for a while (MinJobAge), with how they ended.
        text = (await this.run('squeue', ['-h', '-t', 'all', '-j', chunk.join(','), '-o', '%i|%T|%r'])).stdout;
      } catch (err) {
        // squeue refuses a list of jobs it knows none of; that is an answer, not a failure.
        if (!(err instanceof LauncherError && err.failure === 'refused' && UNKNOWN_JOB.test(err.message))) throw err;
      }
      for (const line of text.split('\n')) {
        const [id, state, reason] = line.trim().split('|');
        if (!id || !state || !chunk.includes(id)) continue;
        out.set(id, statusOf(state, reason));
      }
      const missing = chunk.filter((id) => !out.has(id));
      if (missing.length > 0) for (const [id, s] of await this.accounting(missing)) out.set(id, s);
    }
    return out;
  }

  async cancel(batchId: string): Promise<void> {
    try {
      await this.run('scancel', [batchId]);
    } catch (err) {
      // Gone already, or on its way out: that is what was asked for.
      if (err instanceof LauncherError && err.failure === 'refused' && /invalid job id|already completing|completed/i.test(err.message)) return;
      throw err;
    }
  }

  /** Jobs squeue has forgotten, from sacct where the site keeps accounting; nothing where it does not. */
  private async accounting(ids: string[]): Promise<Map<string, BatchStatus>> {
    const out = new Map<string, BatchStatus>();
    let text: string;
    try {
      text = (await this.run('sacct', ['-n', '-P', '-X', '-j', ids.join(','), '-o', 'JobIDRaw,State'])).stdout;
    } catch {
      return out;
    }
    for (const line of text.split('\n')) {
      const [id, state] = line.trim().split('|');
      // sacct writes "CANCELLED by 0".
      if (id && state && ids.includes(id)) out.set(id, statusOf(state.split(' ')[0]!, undefined));
    }
    return out;
  }

  private run(command: string, args: string[]): Promise<RunResult> {
    const file = this.opts.binDir ? join(this.opts.binDir, command) : command;
    return new Promise((resolve, reject) => {
      execFile(
        file,
        args,
        { timeout: this.timeoutMs, killSignal: 'SIGKILL', env: { ...process.env, ...this.opts.env }, maxBuffer: 16 * 1024 * 1024 },
        (err, stdout, stderr) => {
          if (!err) return resolve({ stdout, stderr });
          const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: string | number };
          if (e.code === 'ENOENT') return reject(new LauncherError('missing', `${command} was not found${this.opts.binDir ? ` in ${this.opts.binDir}` : ' on PATH'}; is Slurm installed here?`));
          if (e.killed) return reject(new LauncherError('unreachable', `${command} did not answer within ${this.timeoutMs / 1000} s`));
          const said = clip(stderr || stdout || e.message);
          reject(new LauncherError(UNREACHABLE.test(said) ? 'unreachable' : 'refused', said));
        },
      );
    });
  }
}

function statusOf(state: string, reason: string | undefined): BatchStatus {
  // Slurm may add a flag, as in "CANCELLED+" or "RUNNING*".
  const raw = state.replace(/[^A-Z_]/g, '');
  const phase = PHASES[raw] ?? 'running';
  return { phase, raw, ...(reason && reason !== 'None' ? { reason } : {}) };
}

/** The useful part of a command's error output: its error lines, without Slurm's retry chatter. */
function clip(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const errors = lines.filter((l) => /error|fatal|invalid|unable/i.test(l));
  const picked = (errors.length > 0 ? errors.slice(-2) : lines.slice(-2)).join('; ');
  return picked.length > 400 ? picked.slice(0, 400) + '…' : picked;
}
