import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dispatch, type DispatchRun } from './dispatch.js';
import { COMPILED, round, sleep, type Bench } from './lib.js';

/** What the chatty job did beside the dispatch run. */
export interface ChattyOutcome {
  /** What the job wrote to its stdout, per second of its run. */
  writtenMBps: number;
  /** Bytes of its stdout the server holds at the end (a bounded window). */
  keptBytes: number;
}

export interface ChattyRun {
  alone: DispatchRun;
  beside: DispatchRun;
  /** Beside the same job with its worker's live logs off. */
  quiet: DispatchRun;
  /** Dispatch beside the chatty job over dispatch alone. */
  ratio: number;
  /** Dispatch beside the chatty job, live logs on over off: what streaming its output costs the others. */
  liveRatio: number;
  /** Server CPU per dispatched job beside the chatty job over alone (steadier than throughput on a shared machine). */
  cpuRatio: number;
  chatty: ChattyOutcome;
}

const ROOT = COMPILED ? join(import.meta.dirname, '..', '..') : join(import.meta.dirname, '..');

/**
 * A job that writes `bytesPerS` of lines to its stdout until a file appears:
 * a simulation that logs far too much.
 */
const WRITER = `
const fs = require('fs');
const [stop, rate] = process.argv.slice(1);
const chunk = ('x'.repeat(99) + '\\n').repeat(1000);
const t0 = Date.now();
let n = 0;
const tick = () => {
  if (fs.existsSync(stop)) process.exit(0);
  const due = ((Date.now() - t0) / 1000) * Number(rate);
  while (n < due) { fs.writeSync(1, chunk); n += chunk.length; }
  setTimeout(tick, 5);
};
tick();
`;

/**
 * Starts a real cpc-worker (a process of its own, one core) on the server and
 * has it run the chatty job, whose output streams to the server while it
 * runs; resolves once the server is receiving it. The stop function ends the
 * job, waits for its result and the worker's exit, and says what it did.
 */
export async function chattyJob(home: Bench, bytesPerS: number, out: { outcome?: ChattyOutcome }, liveLogs = true): Promise<() => Promise<void>> {
  const dir = mkdtempSync(join(tmpdir(), 'cpc-bench-chatty-'));
  const token = await home.server.createWorkerToken('chatty');
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, token, { mode: 0o600 });
  const stopFile = join(dir, 'stop');
  // A project of its own: the dispatch run counts the jobs of its project.
  await home.admin.createProject('chatty');
  const { ids } = await home.admin.submit('chatty', [{ argv: [process.execPath, '-e', WRITER, stopFile, String(bytesPerS)], cores: 1, memoryMb: 64 }]);
  const id = ids[0]!;
  const bin = COMPILED ? [join(ROOT, 'dist', 'bin', 'cpc-worker.js')] : ['--import', 'tsx', join(ROOT, 'bin', 'cpc-worker.ts')];
  const worker = spawn(
    process.execPath,
    [
      ...bin,
      '--server', home.server.url,
      '--ca', join(home.server.identity.dir, 'ca.pem'),
      '--server-id', home.server.serverId,
      '--cores', '1',
      '--memory', '1024',
      '--work-dir', join(dir, 'work'),
      '--name', 'chatty',
      '--isolation', 'none',
      '--shared-identity',
      '--token-file', tokenFile,
      ...(liveLogs ? [] : ['--no-live-logs']),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], cwd: ROOT },
  );
  let stderr = '';
  worker.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  const logs = home.server.ctx.logs;
  const deadline = Date.now() + 60_000;
  if (liveLogs) {
    // Streaming, and more than a window behind the job already: the worker skips ahead.
    while (((await logs.kept(id, 1, 'stdout'))?.end ?? 0) < 2 * bytesPerS) {
      if (Date.now() > deadline || worker.exitCode !== null) throw new Error(`the chatty job's output did not reach the server: ${stderr}`);
      await sleep(50);
    }
  } else {
    // Running, and two seconds of output written.
    while (home.server.model.job(id)?.state !== 'running') {
      if (Date.now() > deadline || worker.exitCode !== null) throw new Error(`the chatty job did not start: ${stderr}`);
      await sleep(50);
    }
    await sleep(2000);
  }
  return async () => {
    writeFileSync(stopFile, '');
    const until = Date.now() + 60_000;
    while (home.server.model.job(id)?.state !== 'done') {
      if (Date.now() > until) throw new Error(`the chatty job did not end: ${stderr}`);
      await sleep(50);
    }
    const a = home.server.model.job(id)!.attempts[0]!;
    const kept = await logs.kept(id, 1, 'stdout');
    out.outcome = {
      writtenMBps: round((a.stdoutBytes ?? 0) / 1e6 / (((a.endedAt ?? 0) - a.startedAt) / 1000), 1),
      keptBytes: kept ? kept.end - kept.start : 0,
    };
    worker.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
}

/**
 * Dispatch of short jobs alone, then again on a server where one real job
 * writes `bytesPerS` to its stdout through a real worker: live logs must not
 * slow the others down.
 */
export async function chattyDispatch(jobs: number, workers: number, cores: number, bytesPerS: number, besideFirst = false): Promise<ChattyRun> {
  const out: { outcome?: ChattyOutcome } = {};
  const withChatty = (live: boolean) => dispatch(jobs, workers, { cores, beside: (home) => chattyJob(home, bytesPerS, live ? out : {}, live) });
  // The servers run in this process: whichever run goes second finds the code warmer, so the order alternates.
  const beside = besideFirst ? await withChatty(true) : undefined;
  const alone = await dispatch(jobs, workers, { cores });
  // The same job with live logs off: what the job's own writing costs a 2-core machine, apart from streaming it.
  const quiet = await withChatty(false);
  const besideRun = beside ?? (await withChatty(true));
  if (!out.outcome) throw new Error('the chatty job said nothing of itself');
  return {
    alone,
    beside: besideRun,
    quiet,
    ratio: round(besideRun.jobsPerS / alone.jobsPerS),
    liveRatio: round(besideRun.jobsPerS / quiet.jobsPerS),
    cpuRatio: round(besideRun.serverCpuUs / alone.serverCpuUs),
    chatty: out.outcome,
  };
}
