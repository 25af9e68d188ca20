import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { LauncherError, type BatchPhase, type BatchStatus, type Launcher, type PilotRequest } from './launcher.js';

/**
 * Pilots as Grid Engine batch jobs (Son of Grid Engine and its kin), through
 * its own commands: `qsub` to submit, `qstat -xml` to ask about jobs in the
 * queue and `qacct` about jobs that have left it, `qdel` to take back. A
 * site's commands and its SGE_ROOT/SGE_CELL are used as they are.
 *
 * Cores are slots of a parallel environment the site names (Grid Engine
 * gives a job more than one slot only through one); memory is the resource
 * the site chooses (h_vmem, mem_free, …), asked per slot, as Grid Engine
 * counts it; wall time is h_rt.
 */

export interface SgeOptions {
  /** Folder of the Grid Engine commands; by default they are looked up on PATH. */
  binDir?: string;
  /** Environment for the commands, on top of the server's (SGE_ROOT, SGE_CELL, …). */
  env?: Record<string, string>;
  /** The parallel environment a pilot's cores are slots of; needed for more than one core. */
  parallelEnvironment?: string;
  /** The resource memory is asked as, per slot; none when left out. */
  memoryResource?: string;
  /** How long one command may take. */
  commandTimeoutMs?: number;
  /**
   * How long a job qstat no longer lists may be missing from qacct too, before
   * it counts as gone: qmaster writes the accounting file every
   * accounting_flush_time (by default flush_time, 15 s).
   */
  accountingWaitMs?: number;
}

const UNREACHABLE = /unable to contact qmaster|commlib error|unable to send message to qmaster|got send error|can't connect|cannot connect|connection refused|qmaster is not alive/i;
const UNKNOWN_JOB = /does not exist|not found/i;

interface RunResult {
  stdout: string;
  stderr: string;
}

export class SgeLauncher implements Launcher {
  readonly kind = 'sge' as const;
  private readonly timeoutMs: number;
  private readonly accountingWaitMs: number;
  /** What qstat said last of each job, and since when qstat and qacct both do not know it. */
  private readonly lastSeen = new Map<string, { status: BatchStatus; missingSince: number | null }>();

  constructor(private readonly opts: SgeOptions = {}) {
    this.timeoutMs = opts.commandTimeoutMs ?? 30_000;
    this.accountingWaitMs = opts.accountingWaitMs ?? 60_000;
  }

  outputName(batchId: string): string {
    return `sge-${batchId}.out`;
  }

  async submit(req: PilotRequest): Promise<string> {
    const script = join(req.dir, 'pilot.sge');
    const lines = ['#!/bin/sh', ...req.directives.map((d) => `#$ ${d}`), ...req.commands, ''];
    await fsp.writeFile(script, lines.join('\n'), { mode: 0o700 });
    // cpc's own settings go on the command line, where they win over the script's.
    const args = [
      '-terse',
      '-N', req.jobName,
      '-wd', req.dir,
      // Grid Engine fills in $JOB_ID itself.
      '-o', join(req.dir, 'sge-$JOB_ID.out'),
      '-j', 'y',
      '-S', '/bin/sh',
      // A pilot that dies is replaced by the manager, not restarted by Grid Engine.
      '-r', 'n',
      '-l', `h_rt=${Math.max(1, Math.ceil(req.wallTimeS))}`,
    ];
    if (req.cores > 1) {
      if (!this.opts.parallelEnvironment) throw new LauncherError('refused', `a pilot of ${req.cores} cores needs a parallel environment (setting parallelEnvironment)`);
      args.push('-pe', this.opts.parallelEnvironment, String(req.cores));
    }
    if (this.opts.memoryResource) args.push('-l', `${this.opts.memoryResource}=${Math.ceil(req.memoryMb / req.cores)}M`);
    if (req.partition) args.push('-q', req.partition);
    if (req.account) args.push('-P', req.account);
    args.push(script);
    const { stdout } = await this.run('qsub', args);
    // -terse prints the job id alone.
    const id = stdout.trim().split('\n').pop()?.trim() ?? '';
    if (!/^\d+$/.test(id)) throw new LauncherError('refused', `qsub answered without a job id: ${clip(stdout)}`);
    return id;
  }

  async status(batchIds: readonly string[]): Promise<Map<string, BatchStatus>> {
    const out = new Map<string, BatchStatus>();
    if (batchIds.length === 0) return out;
    const listed = parseQstat((await this.run('qstat', ['-xml'])).stdout);
    const now = Date.now();
    for (const id of batchIds) {
      const state = listed.get(id);
      if (state !== undefined) {
        const status = statusOf(state);
        if (state.includes('E')) status.reason = (await this.errorReason(id)) ?? status.reason;
        this.lastSeen.set(id, { status, missingSince: null });
        out.set(id, status);
        continue;
      }
      const ended = await this.accounting(id);
      if (ended) {
        this.lastSeen.delete(id);
        out.set(id, ended);
        continue;
      }
      // Left the queue, not yet in the accounting file: as it was, for a while.
      const seen = this.lastSeen.get(id);
      if (!seen) continue;
      seen.missingSince ??= now;
      if (now - seen.missingSince <= this.accountingWaitMs) out.set(id, seen.status);
      else this.lastSeen.delete(id);
    }
    for (const id of this.lastSeen.keys()) if (!batchIds.includes(id)) this.lastSeen.delete(id);
    return out;
  }

  async cancel(batchId: string): Promise<void> {
    try {
      await this.run('qdel', [batchId]);
    } catch (err) {
      // Gone already: that is what was asked for.
      if (err instanceof LauncherError && err.failure === 'refused' && UNKNOWN_JOB.test(err.message)) return;
      throw err;
    }
  }

  /** Why Grid Engine put a job in error state, from `qstat -j`; null when it does not say. */
  private async errorReason(id: string): Promise<string | null> {
    try {
      const text = (await this.run('qstat', ['-j', id])).stdout;
      // "error reason    1:      12/02/2026 17:00:50 [0:27311]: gid of user root (0) less than minimum allowed in conf (1000)"
      const line = /^error reason\s+[^:]*:\s*(.*)$/m.exec(text)?.[1]?.trim();
      return line ? line.replace(/^\S+ \S+ \[[^\]]*\]:\s*/, '') : null;
    } catch {
      return null;
    }
  }

  /** How a job that left the queue ended, from qacct; null when qacct does not know it (yet). */
  private async accounting(id: string): Promise<BatchStatus | null> {
    let text: string;
    try {
      text = (await this.run('qacct', ['-j', id])).stdout;
    } catch (err) {
      if (err instanceof LauncherError && err.failure === 'refused') return null;
      throw err;
    }
    // A job Grid Engine tried more than once has a record per try; the last one tells how it ended.
    const record = text.split(/^=+$/m).filter((r) => /\bjobnumber\b/.test(r)).pop();
    if (!record) return null;
    const field = (name: string) => new RegExp(`^${name}\\s+(.*)$`, 'm').exec(record)?.[1]?.trim() ?? '';
    const [failedCode, ...why] = field('failed').split(':');
    const failed = Number(failedCode?.trim() || 0);
    const exit = Number(field('exit_status') || 0);
    return endedStatus(failed, why.join(':').trim(), exit);
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
          if (e.code === 'ENOENT') return reject(new LauncherError('missing', `${command} was not found${this.opts.binDir ? ` in ${this.opts.binDir}` : ' on PATH'}; is Grid Engine installed here?`));
          if (e.killed) return reject(new LauncherError('unreachable', `${command} did not answer within ${this.timeoutMs / 1000} s`));
          const said = clip(stderr || stdout || e.message);
          reject(new LauncherError(UNREACHABLE.test(said) ? 'unreachable' : 'refused', said));
        },
      );
    });
  }
}

/** Job id → state letters (qw, hqw, r, t, Eqw, dr, …) from `qstat -xml`. */
export function parseQstat(xml: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of xml.matchAll(/<job_list\b[^>]*>([\s\S]*?)<\/job_list>/g)) {
    const id = /<JB_job_number>\s*(\d+)\s*</.exec(m[1]!)?.[1];
    const state = /<state>\s*([A-Za-z]+)\s*</.exec(m[1]!)?.[1];
    if (id && state) out.set(id, state);
  }
  return out;
}

/**
 * Grid Engine's state letters as the manager's phases: E error (it stays in
 * the queue until deleted), d being deleted, h held, q/w waiting, and
 * r t R s S T started (running, being transferred, restarted, suspended).
 */
export function statusOf(state: string): BatchStatus {
  let phase: BatchPhase;
  let reason: string | undefined;
  if (state.includes('E')) {
    phase = 'failed';
    reason = 'Grid Engine put it in error state; `qstat -j <id>` says why';
  } else if (state.includes('d')) phase = 'killed';
  else if (/[rtRsST]/.test(state)) phase = 'running';
  else {
    phase = 'queued';
    if (state.includes('h')) reason = 'held';
  }
  return { phase, raw: state, ...(reason ? { reason } : {}) };
}

/**
 * How a job ended, from qacct's `failed` (0, or Grid Engine's code for what
 * went wrong around the job) and `exit_status` (128 + n for signal n: what
 * qdel and the h_rt limit do).
 */
export function endedStatus(failed: number, why: string, exit: number): BatchStatus {
  if (exit > 128) return { phase: 'killed', raw: `signal ${exit - 128}` };
  if (failed !== 0) return { phase: 'failed', raw: `failed ${failed}`, ...(why ? { reason: why } : {}) };
  return exit === 0 ? { phase: 'done', raw: 'exit 0' } : { phase: 'failed', raw: `exit ${exit}` };
}

/** The useful part of a command's error output: its last lines. */
function clip(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const errors = lines.filter((l) => /error|denied|unable|rejected|invalid|unknown/i.test(l));
  const picked = (errors.length > 0 ? errors.slice(-2) : lines.slice(-2)).join('; ');
  return picked.length > 400 ? picked.slice(0, 400) + '…' : picked;
}
