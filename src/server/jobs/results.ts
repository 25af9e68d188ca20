import { planFinish, type AttemptReport } from '../../core/commands.js';
import { CpcError, fail } from '../../core/errors.js';
import type { Usage } from '../../core/types.js';
import type { LogChunk, LogChunkOutcome, ResultReply, ResultRequest } from '../../core/wire.js';
import type { Files } from '../files/files.js';
import type { LogStore } from '../files/log-store.js';
import type { Dispatcher } from './dispatcher.js';
import type { Store } from './store.js';

/** How much of each stream the job record keeps; the rest is in the log files. */
export const TAIL_CHARS = 2048;

/** True when `text` is the whole stream and short enough to live in the job record. */
export function fitsInTail(text: string, bytes: number): boolean {
  return text.length <= TAIL_CHARS && Buffer.byteLength(text) === bytes;
}

/** What taking a result uses: the journal, the outputs' files, the log files, and the dispatcher to wake. */
export interface ResultServices {
  store: Pick<Store, 'model' | 'commit'>;
  files: Pick<Files, 'requireHeld'>;
  logs: Pick<LogStore, 'complete' | 'sync' | 'forget' | 'holds'>;
  dispatcher: Pick<Dispatcher, 'kick'>;
  /** Where refused usage figures are told. */
  log?: { warn: (msg: string, fields?: Record<string, unknown>) => void };
}

/**
 * Why a worker's usage figures cannot be true, or undefined. CPU may exceed
 * wall time × cores a little (clock ticks, threads the job did not ask
 * for), so only far more than the machine the worker offers could give is refused.
 */
export function implausibleUsage(usage: Usage, cores: number): string | undefined {
  const cpu = usage.userS + usage.systemS;
  const most = Math.max(1, cores) * usage.wallS * 4 + 2;
  if (cpu > most) return `${cpu.toFixed(1)} CPU seconds in ${usage.wallS.toFixed(1)} s of wall time on ${cores} core(s)`;
  return undefined;
}

/**
 * Takes a worker's report of an attempt of one of this server's jobs, from
 * one of its own workers (`via` = local) or from a peer's worker (`via` = the
 * peer). Idempotent: a repeat of a report already taken is answered as a
 * duplicate.
 */
export async function acceptResult(ctx: ResultServices, workerId: string, body: ResultRequest, via: string): Promise<ResultReply> {
  const model = ctx.store.model;
  // Outputs are uploaded for the attempt before the result names them: what is
  // named must be here, sent for the job's own project (or held by it already).
  const job = model.job(body.jobId);
  if (body.outputs && job) await ctx.files.requireHeld(job.project, body.outputs, 'output');
  const report: AttemptReport = {
    how: body.how,
    exitCode: body.exitCode,
    signal: body.signal,
    durationMs: body.durationMs,
    stdoutTail: body.stdout.length > TAIL_CHARS ? body.stdout.slice(-TAIL_CHARS) : body.stdout,
    stderrTail: body.stderr.length > TAIL_CHARS ? body.stderr.slice(-TAIL_CHARS) : body.stderr,
    stdoutBytes: body.stdoutBytes,
    stderrBytes: body.stderrBytes,
  };
  if (body.reason !== undefined) report.reason = body.reason;
  if (body.outputs && body.outputs.length > 0) report.outputs = body.outputs;
  if (body.usage) {
    const cores = Math.max(model.workers.get(workerId)?.resources.cores ?? 0, job?.spec.resources.cores ?? 1);
    const wrong = implausibleUsage(body.usage, cores);
    // The result stands (the job did end); figures that cannot be true are not kept.
    if (wrong === undefined) report.usage = body.usage;
    else ctx.log?.warn('usage refused: implausible figures', { job: body.jobId, attempt: body.attempt, workerId, via, why: wrong });
  }
  let event = planFinish(model, workerId, body.jobId, body.attempt, report, Date.now(), via);
  if (event === 'duplicate') return { accepted: true, duplicate: true, state: model.job(body.jobId)!.state };
  // Logs are durable before the result is, so a finished job always has
  // them. Output that fits in the tails is kept whole in the job record,
  // which saves the files and their fsyncs for the many jobs that say little.
  // The tails fill in what the live chunks did not bring (all of it, from a
  // worker that does not stream), and repeat nothing they did.
  const inline = fitsInTail(body.stdout, body.stdoutBytes) && fitsInTail(body.stderr, body.stderrBytes);
  // A short job that streamed nothing has no log files to wait for: its result is applied in this turn,
  // so that a claim carrying it fills the room it frees (see the claim route).
  if (!inline || ctx.logs.holds(body.jobId, body.attempt)) {
    if (!inline) {
      await ctx.logs.complete(body.jobId, body.attempt, 'stdout', body.stdout, body.stdoutBytes);
      await ctx.logs.complete(body.jobId, body.attempt, 'stderr', body.stderr, body.stderrBytes);
    }
    await ctx.logs.sync(body.jobId, body.attempt);
    // Check again: another report of the same attempt may have won while we wrote.
    event = planFinish(model, workerId, body.jobId, body.attempt, report, Date.now(), via);
    if (event === 'duplicate') return { accepted: true, duplicate: true, state: model.job(body.jobId)!.state };
  }
  await ctx.store.commit(event);
  ctx.logs.forget(body.jobId, body.attempt);
  ctx.dispatcher.kick();
  return { accepted: true, duplicate: false, state: model.job(body.jobId)!.state };
}

/** What taking live log chunks uses: the model (whose leases say whose an attempt is) and the log files. */
export interface LogChunkServices {
  store: Pick<Store, 'model'>;
  logs: Pick<LogStore, 'append'>;
}

/**
 * Stores chunks of the output of attempts that run, from one of this
 * server's workers (`via` = local) or from a peer's (`via` = the peer). A
 * chunk of an attempt that is not leased to that worker is refused
 * (STALE_ATTEMPT) and nothing of it is written; each chunk has its own answer.
 */
export async function acceptLogChunks(ctx: LogChunkServices, workerId: string, chunks: LogChunk[], via: string): Promise<LogChunkOutcome[]> {
  const model = ctx.store.model;
  return Promise.all(
    chunks.map(async (c): Promise<LogChunkOutcome> => {
      try {
        const lease = model.leases.get(c.jobId);
        if (!lease || lease.attempt !== c.attempt || lease.workerId !== workerId || lease.via !== via) {
          throw fail('STALE_ATTEMPT', `attempt ${c.attempt} of job ${c.jobId} is not running on this worker`);
        }
        const kept = await ctx.logs.append(c.jobId, c.attempt, c.stream, c.offset, Buffer.from(c.data, 'base64'));
        return { end: kept.end };
      } catch (err) {
        if (err instanceof CpcError) return { error: { code: err.code, message: err.message } };
        throw err;
      }
    }),
  );
}
