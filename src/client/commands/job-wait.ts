/**
 * `cpcc wait`: until the jobs named, or the project's jobs submitted from
 * this cpcc home since the last wait (wait-marks.ts), have finished. Exit 0
 * when all are done, 1 when any failed or was cancelled (they are listed),
 * or on --timeout. A server that cannot be reached is said at once and asked
 * again until the timeout.
 */
import type { JobStateView, ProgressView } from '../../core/job-reports.js';
import { FINAL_STATES, emptyCounts, type JobState, type StateCounts } from '../../core/types.js';
import { idMatcher, shortId } from '../../core/short-ids.js';
import { ApiError } from '../api/client.js';
import { CliError, EXIT_FAILURE, eta, fail, plural, usage, type Progress } from '../output.js';
import { markOf, noteWaited } from '../wait-marks.js';
import type { Argument, Context } from './context.js';
import { jobArg } from './parsers.js';
import { countsLine, total } from './projects.js';

const POLL_MS = 500;
const OUTAGE_POLL_MS = 2000;
const TRANSIENT = new Set(['UNREACHABLE', 'TIMEOUT', 'SHUTTING_DOWN', 'JOURNAL_FAILED', 'TOO_MANY_REQUESTS', 'BAD_RESPONSE']);

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

interface Failure {
  id: string;
  name?: string;
  state: JobState;
  reason: string;
}

/** One look: what is finished, what is not, and the failures among the finished. */
interface Look {
  label: string;
  project?: string;
  from?: string;
  counts: StateCounts;
  failures: Failure[];
}

export async function wait(ctx: Context, args: Argument[], opts: Record<string, unknown>): Promise<void> {
  const given = ((args[0] as string[] | undefined) ?? []).map((g) => {
    // A project's jobs are chosen with -p; a name here is most likely meant as one.
    if (idMatcher(g) === null) usage(`'${g}' is not a job id (a whole id, or at least 8 hex digits of one); for a project's jobs: cpcc wait -p ${g}`);
    return jobArg(g);
  });
  const { api, server } = await ctx.client();
  const timeoutS = opts.timeout as number | undefined;
  const deadline = timeoutS === undefined ? Infinity : Date.now() + timeoutS * 1000;
  const progress = ctx.out.progress();

  let look: () => Promise<Look>;
  let done: (l: Look) => Promise<void>;
  if (given.length > 0) {
    // Named jobs: those seen finished are not asked about again.
    const finished = new Map<string, JobStateView>();
    let open = [...new Set(given)];
    const label = plural(open.length, 'job');
    let first = true;
    look = async () => {
      if (open.length > 0) {
        const reply = await api.jobStates(open);
        if (first && reply.missing.length > 0) {
          progress.end();
          fail(`no job with id ${reply.missing.map((m) => `'${m}'`).join(', ')}`, EXIT_FAILURE, 'JOB_NOT_FOUND');
        }
        first = false;
        for (const j of reply.jobs) if (FINAL_STATES.has(j.state)) finished.set(j.given, j);
        open = reply.jobs.filter((j) => !FINAL_STATES.has(j.state)).map((j) => j.given);
        const counts = emptyCounts();
        for (const j of [...finished.values(), ...reply.jobs.filter((x) => !FINAL_STATES.has(x.state))]) counts[j.state]++;
        const failures = [...finished.values()].filter((j) => j.state !== 'done').map(({ id, name, state, reason }) => ({ id, ...(name !== undefined ? { name } : {}), state, reason }));
        return { label, counts, failures };
      }
      const counts = emptyCounts();
      for (const j of finished.values()) counts[j.state]++;
      return { label, counts, failures: [...finished.values()].filter((j) => j.state !== 'done') };
    };
    done = async () => undefined;
  } else {
    const project = await ctx.project();
    const mark = await markOf(ctx.home, server.entry.serverId, project);
    let from = mark?.from;
    let most = 0;
    look = async () => {
      const p: ProgressView = await api.progress(project, from);
      // Without a mark the server starts at the oldest unfinished job; later looks keep that start.
      from ??= p.from;
      // Finished jobs archived during a long wait leave the live counts; they were done or are among the failures seen.
      const all = total(p.counts);
      most = Math.max(most, all);
      const counts = { ...p.counts, done: p.counts.done + (most - all) };
      return { label: `'${project}'`, project, ...(from !== undefined ? { from } : {}), counts, failures: p.failures };
    };
    done = async () => {
      if (mark !== undefined && from === mark.from) await noteWaited(ctx.home, server.entry.serverId, project, from);
    };
  }

  let outage: number | undefined;
  let first: { at: number; finished: number } | undefined;
  for (;;) {
    let l: Look;
    try {
      l = await look();
      if (outage !== undefined) ctx.out.note('the server answers again; waiting on');
      outage = undefined;
    } catch (err) {
      if (!(err instanceof ApiError && TRANSIENT.has(err.code))) {
        progress.end();
        throw err;
      }
      const now = Date.now();
      if (outage === undefined) {
        progress.end();
        ctx.out.note(`cannot reach the server: ${err.message}; trying again${timeoutS === undefined ? ' (until interrupted)' : ` until the ${timeoutS}s timeout`}`);
      }
      outage ??= now;
      if (now >= deadline) {
        progress.end();
        throw new CliError(`gave up after ${timeoutS}s: the server could not be reached for ${Math.round((now - outage) / 1000)}s`, EXIT_FAILURE, 'TIMEOUT');
      }
      await sleep(Math.min(OUTAGE_POLL_MS, Math.max(0, deadline - now)));
      continue;
    }
    const all = total(l.counts);
    const c = l.counts;
    const finished = c.done + c.failed + c.cancelled;
    const pending = all - finished;
    first ??= { at: Date.now(), finished };
    show(progress, l, all, finished, pending, eta(finished - first.finished, Date.now() - first.at, pending));
    if (pending === 0) {
      progress.end();
      await done(l);
      return report(ctx, l, all);
    }
    const now = Date.now();
    if (now >= deadline) {
      progress.end();
      throw new CliError(`gave up after ${timeoutS}s: ${pending} of ${plural(all, 'job')} of ${l.label} not finished`, EXIT_FAILURE, 'TIMEOUT');
    }
    await sleep(Math.min(POLL_MS, deadline - now));
  }
}

function show(progress: Progress, l: Look, all: number, finished: number, pending: number, left: string): void {
  const c = l.counts;
  progress.update(
    `${l.label.replace(/^'(.*)'$/, '$1')}: ${finished}/${all} finished` +
      (pending > 0 ? ` (${c.running} running, ${c.queued} queued, ${c.waiting} waiting)` : '') +
      (c.failed + c.cancelled > 0 ? `, ${c.failed} failed, ${c.cancelled} cancelled` : ''),
    all === 0 ? 1 : finished / all,
    left ? `, ETA ${left}` : '',
  );
}

function report(ctx: Context, l: Look, all: number): void {
  const c = l.counts;
  const ok = c.failed === 0 && c.cancelled === 0;
  ctx.out.show({ ...(l.project !== undefined ? { project: l.project, from: l.from ?? null } : {}), counts: c, total: all, ok, failures: l.failures }, () => {
    ctx.out.line(all === 0 ? `${l.label}: nothing to wait for` : `${l.label}: all ${plural(all, 'job')} finished (${countsLine(ctx.out, c)})`);
    if (!ok) {
      ctx.out.table(l.failures, [
        { header: 'id', value: (f: Failure) => shortId(f.id) },
        { header: 'name', value: (f) => f.name, max: 24 },
        { header: 'state', value: (f) => ctx.out.state(f.state) },
        { header: 'reason', value: (f) => f.reason, max: 60 },
      ]);
    }
  });
  if (!ok) {
    const bad = [`${c.failed} failed`, `${c.cancelled} cancelled`].filter((p) => !p.startsWith('0 '));
    fail(`${bad.join(' and ')} of ${plural(all, 'job')} of ${l.label}`, EXIT_FAILURE, 'JOBS_FAILED');
  }
}
