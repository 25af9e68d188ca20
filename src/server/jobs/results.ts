import { planFinish, type AttemptReport } from '../../core/commands.js';
import type { ResultReply, ResultRequest } from '../../core/wire.js';
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
  logs: Pick<LogStore, 'write'>;
  dispatcher: Pick<Dispatcher, 'kick'>;
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
  let event = planFinish(model, workerId, body.jobId, body.attempt, report, Date.now(), via);
  if (event === 'duplicate') return { accepted: true, duplicate: true, state: model.job(body.jobId)!.state };
  // Logs are durable before the result is, so a finished job always has
  // them. Output that fits in the tails is kept whole in the job record,
  // which saves the files and their fsyncs for the many jobs that say little.
  if (!fitsInTail(body.stdout, body.stdoutBytes) || !fitsInTail(body.stderr, body.stderrBytes)) {
    await ctx.logs.write(body.jobId, body.attempt, body.stdout, body.stderr);
    // Check again: another report of the same attempt may have won while we wrote.
    event = planFinish(model, workerId, body.jobId, body.attempt, report, Date.now(), via);
    if (event === 'duplicate') return { accepted: true, duplicate: true, state: model.job(body.jobId)!.state };
  }
  await ctx.store.commit(event);
  ctx.dispatcher.kick();
  return { accepted: true, duplicate: false, state: model.job(body.jobId)!.state };
}
