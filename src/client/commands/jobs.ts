/**
 * Jobs: submit (one, or thousands from a file), list, show, read logs,
 * cancel, retry, wait, ask why a job waits, and look at the queue (the
 * listing, bulk control, waits and why are in job-*.ts).
 */
import { promises as fsp } from 'node:fs';
import { JOB_STATES, MAX_KILL_GRACE_S, PRIORITY_MAX, PRIORITY_MIN, type Attempt, type RetrySpec } from '../../core/types.js';
import { retryFromFlags, retryLine, retryOom, retryTimeout, usageText } from './limits.js';
import { MAX_LOG_PART, type AttemptView, type JobInput, type JobView } from '../../core/wire.js';
import { ApiError, type ApiClient } from '../api/client.js';
import { ago, describeError, duration, fail, plural, usage } from '../output.js';
import type { Argument, CommandSpec, Context } from './context.js';
import { fileFlags, fileOptions } from './files.js';
import { PartialSubmitError, applyDefaults, parseJobFile, submitInChunks } from './job-file.js';
import { collect, durationS, integer, jobArg, keyValue, nonNegative, positive, sizeMb } from './parsers.js';
import { idMatcher, isFullId, shortId } from '../../core/short-ids.js';
import { readAll } from './prompt.js';
import { commandText, listHelp, listJobs, listOptions, DEFAULT_LIST_LIMIT } from './job-list.js';
import { bulk, bulkHelp, bulkOptions } from './job-bulk.js';
import { wait } from './job-wait.js';
import { why } from './job-why.js';
import { noteSubmitted } from '../wait-marks.js';

export { commandText };

const TRANSIENT = new Set(['UNREACHABLE', 'TIMEOUT', 'SHUTTING_DOWN', 'JOURNAL_FAILED', 'TOO_MANY_REQUESTS']);

function jobDefaults(opts: Record<string, unknown>): JobInput {
  const d: JobInput = {};
  if (opts.name !== undefined) d.name = opts.name as string;
  if (opts.cores !== undefined) d.cores = opts.cores as number;
  if (opts.memory !== undefined) d.memoryMb = opts.memory as number;
  if (opts.priority !== undefined) d.priority = opts.priority as number;
  if (opts.retries !== undefined) d.maxRetries = opts.retries as number;
  if (opts.timeout !== undefined && opts.time !== undefined && opts.timeout !== opts.time) usage('--time and --timeout name the same limit: give one');
  if ((opts.time ?? opts.timeout) !== undefined) d.timeoutS = (opts.time ?? opts.timeout) as number;
  const retry = retryOrUsage(opts);
  if (retry) d.retry = retry;
  if (opts.killGrace !== undefined) d.killGraceS = opts.killGrace as number;
  if (opts.after !== undefined) d.after = opts.after as string[];
  if (opts.env !== undefined) d.env = opts.env as Record<string, string>;
  return d;
}

function retryOrUsage(opts: Record<string, unknown>): RetrySpec | undefined {
  try {
    return retryFromFlags(opts);
  } catch (err) {
    return usage((err as Error).message);
  }
}

/**
 * The whole id of the job `given` names when it is part of an id the server
 * knows; otherwise `given` as it is (a key of a job in the same file, or an
 * id the server will refuse in its own words).
 */
async function wholeId(api: ApiClient, given: string): Promise<string> {
  if (isFullId(given) || idMatcher(given) === null) return given;
  try {
    return (await api.job(given)).id;
  } catch (err) {
    if (err instanceof ApiError && err.code === 'JOB_NOT_FOUND') return given;
    throw err;
  }
}

async function submit(ctx: Context, args: Argument[], opts: Record<string, unknown>): Promise<void> {
  const command = (args[0] as string[] | undefined) ?? [];
  const file = opts.file as string | undefined;
  const defaults = jobDefaults(opts);
  let jobs: JobInput[];
  if (file !== undefined) {
    if (command.length > 0) usage('give either a command or --file, not both');
    if (opts.shell === true) usage('--shell goes with a command, not with --file');
    let text: string;
    try {
      text = file === '-' ? await readAll(ctx.io.stdin) : await fsp.readFile(file, 'utf8');
    } catch (err) {
      return fail(`cannot read ${file}: ${(err as Error).message}`);
    }
    jobs = applyDefaults(parseJobFile(text, file === '-' ? 'stdin' : file), defaults);
  } else {
    if (command.length === 0) usage('nothing to run; cpcc submit [options] -- COMMAND ARGS..., or --file FILE');
    jobs = [{ ...defaults, ...(opts.shell === true ? { shell: command.join(' ') } : { argv: command }) }];
  }

  const { api } = await ctx.client();
  const project = await ctx.project();
  // `--after` takes ids as the tables show them; the job file's "after" names whole ids or keys.
  if (defaults.after !== undefined) {
    const whole = new Map<string, string>();
    for (const a of defaults.after) whole.set(a, await wholeId(api, a));
    jobs = jobs.map((j) => (j.after ? { ...j, after: j.after.map((a) => whole.get(a) ?? a) } : j));
  }
  const files = await fileFlags(ctx, api, project, opts);
  if (files.inputs) {
    for (const input of files.inputs) if ('job' in input) input.job = await wholeId(api, input.job);
  }
  if (files.inputs || files.outputs) {
    jobs = jobs.map((j) => ({
      ...j,
      ...(files.inputs ? { inputs: [...(j.inputs ?? []), ...files.inputs] } : {}),
      ...(files.outputs ? { outputs: [...(j.outputs ?? []), ...files.outputs] } : {}),
    }));
  }
  const progress = jobs.length > 1 ? ctx.out.progress() : undefined;
  let ids: string[];
  try {
    ids = await submitInChunks(jobs, async (chunk) => (await api.submit(project, chunk)).ids, {
      progress: (sent, all) => progress?.update(`submitted ${sent} of ${all} jobs`),
    });
  } catch (err) {
    progress?.end();
    if (!(err instanceof PartialSubmitError)) throw err;
    // Those jobs exist now; say which, so that a second try does not submit them twice.
    const done = err.submitted.map((s) => s.id);
    if (done.length > 0) await noteSubmitted(ctx.home, (await ctx.server()).entry.serverId, project, done.reduce((a, b) => (a < b ? a : b)));
    ctx.out.show({ ids: done, partial: true }, () => done.forEach((id) => ctx.out.line(id)));
    const { line } = describeError(err.reason);
    return fail(`only ${done.length} of ${jobs.length} jobs were submitted (their ids are above): ${line}`);
  }
  progress?.end();
  if (ids.length > 0) await noteSubmitted(ctx.home, (await ctx.server()).entry.serverId, project, ids.reduce((a, b) => (a < b ? a : b)));
  ctx.out.show({ ids }, () => {
    if (file === undefined) ctx.out.line(ids[0]);
    else {
      ctx.out.note(`submitted ${plural(ids.length, 'job')} to '${project}'`);
      for (const id of ids) ctx.out.line(id);
    }
  });
}

/** Why a queued job is not handed out yet: an earlier attempt of it may still run. */
function heldLine({ attempt, worker, via }: NonNullable<JobView['heldBy']>): string {
  return `attempt ${attempt} is still stopping on worker ${worker}${via === 'local' ? '' : ` via ${via}`}; the job runs again once that process is gone or its lease runs out`;
}

/** Where an attempt's process is; a server that does not say is read from how the attempt ended. */
function liveOf(a: AttemptView): string {
  return a.live ?? (a.how === undefined ? 'running' : 'ended');
}

function attemptRows(ctx: Context, attempts: AttemptView[], now: number) {
  return {
    rows: attempts,
    columns: [
      { header: 'n', value: (a: Attempt) => a.n, align: 'right' as const },
      { header: 'worker', value: (a: Attempt) => a.workerName || a.workerId },
      { header: 'via', value: (a: Attempt) => a.viaName ?? a.via },
      { header: 'process', value: (a: AttemptView) => liveOf(a) },
      { header: 'start', value: (a: Attempt) => ago(a.startedAt, now) },
      { header: 'duration', value: (a: Attempt) => duration((a.endedAt ?? now) - a.startedAt), align: 'right' as const },
      { header: 'how', value: (a: Attempt) => a.how ?? ctx.out.state('running') },
      {
        header: 'exit',
        value: (a: Attempt) => (a.signal ? a.signal : a.exitCode ?? ''),
        align: 'right' as const,
      },
      { header: 'usage', value: (a: Attempt) => usageText(a.usage) },
      { header: 'asked', value: (a: Attempt) => (a.limits ? `${a.limits.memoryMb} MB${a.limits.timeoutS === null ? '' : `, ${a.limits.timeoutS}s`}` : '') },
    ],
  };
}

/** Why a job that waits is not running, in a line; nothing from a server that cannot say. */
async function whyOf(api: ApiClient, id: string): Promise<string | undefined> {
  try {
    return (await api.why(id)).summary;
  } catch (err) {
    // The job itself was found; a reason that cannot be had leaves out its line, not the job.
    if (err instanceof ApiError) return undefined;
    throw err;
  }
}

async function showJob(ctx: Context, args: Argument[]): Promise<void> {
  const { api } = await ctx.client();
  const job = await api.job(jobArg(String(args[0])));
  const whyLine = job.state === 'waiting' || job.state === 'queued' ? await whyOf(api, job.id) : undefined;
  const now = Date.now();
  ctx.out.show(job, () => {
    const env = Object.entries(job.env ?? {}).map(([k, v]) => `${k}=${v}`).join(' ');
    ctx.out.fields([
      ['id', job.id],
      ['project', job.project],
      ['name', job.name],
      ['state', `${ctx.out.state(job.state)}${job.reason ? ` (${job.reason})` : ''}${job.archived ? ctx.out.c.dim(' archived') : ''}`],
      ['waits', job.heldBy ? heldLine(job.heldBy) : undefined],
      ['why', whyLine],
      ['command', `${job.shell !== undefined ? ctx.out.c.dim('sh -c ') : ''}${commandText(job)}`],
      ['env', env],
      ['resources', `${plural(job.resources.cores, 'core')}, ${job.resources.memoryMb} MB`],
      ['priority', job.priority],
      ['retries', job.maxRetries],
      ['time limit', job.timeoutS === null ? 'none' : `${job.timeoutS}s`],
      ['retry more', job.retry ? retryLine(job.retry) : undefined],
      ['kill grace', job.killGraceS === undefined ? undefined : `${job.killGraceS}s`],
      ['after', job.after.join(' ')],
      ['created', ago(job.createdAt, now)],
      ['updated', ago(job.updatedAt, now)],
      ['exit', job.exitCode],
      ['took', duration(job.durationMs)],
    ]);
    if (job.attempts.length > 0) {
      ctx.out.line();
      const { rows, columns } = attemptRows(ctx, job.attempts, now);
      ctx.out.table(rows, columns);
    }
    for (const [label, tail] of [['stdout', job.stdoutTail], ['stderr', job.stderrTail]] as const) {
      if (!tail) continue;
      ctx.out.line();
      ctx.out.line(ctx.out.c.dim(`--- ${label} (end) ---`));
      ctx.out.raw(tail.endsWith('\n') ? tail : `${tail}\n`);
    }
  });
}

async function logs(ctx: Context, args: Argument[], opts: Record<string, unknown>): Promise<void> {
  const given = jobArg(String(args[0]));
  const stream = opts.stderr === true ? 'stderr' : 'stdout';
  const attempt = opts.attempt as number | undefined;
  const tail = opts.tail as number | undefined;
  const { api } = await ctx.client();
  // Found once: following asks again and again, and --json names the whole id.
  const id = isFullId(given) ? given : (await api.job(given)).id;
  if (opts.follow === true) return follow(ctx, api, id, stream, attempt, tail);
  const text = tail === undefined ? await api.logs(id, { stream, attempt }) : (await lastLines(api, id, { stream, attempt }, tail)).text;
  ctx.out.show({ id, stream, attempt: attempt ?? null, text }, () => ctx.out.raw(text));
}

/** How long one read of a followed log waits on the server for more output. */
const FOLLOW_WAIT_S = 15;
const FOLLOW_POLL_MS = 1000;
const FINAL = new Set(['done', 'failed', 'cancelled']);

/**
 * Prints a log as it grows, until its attempt ends; without --attempt, goes
 * on to the job's next attempt when it is retried, until the job is finished.
 * Reads by byte offset, so a dropped connection (a server restart) resumes
 * where it was, repeating and losing nothing.
 */
async function follow(ctx: Context, api: ApiClient, id: string, stream: 'stdout' | 'stderr', fixed: number | undefined, tail: number | undefined): Promise<void> {
  let attempt = fixed;
  let offset: number | undefined;
  let outage = false;
  const transient = (err: unknown) => err instanceof ApiError && (TRANSIENT.has(err.code) || err.code === 'BAD_RESPONSE' || err.status >= 500);
  for (;;) {
    try {
      if (attempt === undefined) {
        const job = await api.job(id);
        const last = job.attempts[job.attempts.length - 1]?.n;
        if (last === undefined) {
          if (FINAL.has(job.state)) return;
          await sleep(FOLLOW_POLL_MS);
          continue;
        }
        attempt = last;
      }
      if (offset === undefined && tail !== undefined) {
        const last = await lastLines(api, id, { stream, attempt }, tail);
        ctx.out.raw(last.text);
        offset = last.end;
      }
      const part = await api.logPart(id, { stream, attempt, offset: offset ?? 0, wait: FOLLOW_WAIT_S });
      if (outage) ctx.out.note('the server answers again; following on');
      outage = false;
      if (offset !== undefined && part.offset > offset) ctx.out.note(`[${part.offset - offset} bytes of the log were not kept]`);
      ctx.out.raw(part.text);
      offset = part.end;
      if (part.running || part.end < part.size) {
        // Nothing new although more is there: the log ends inside a character still being written.
        if (part.text === '' && part.end < part.size) await sleep(250);
        continue;
      }
      // This attempt is over and printed whole. Another may follow (a retry).
      if (fixed !== undefined) return;
      const job = await api.job(id);
      const next = job.attempts.find((a) => a.n > attempt!)?.n;
      if (next !== undefined) {
        ctx.out.note(`--- attempt ${next} ---`);
        attempt = next;
        offset = undefined;
        tail = undefined;
        continue;
      }
      if (FINAL.has(job.state)) return;
      await sleep(FOLLOW_POLL_MS);
    } catch (err) {
      if (transient(err)) {
        if (!outage) ctx.out.note(`lost the server (${(err as Error).message}); trying again`);
        outage = true;
        await sleep(FOLLOW_POLL_MS);
        continue;
      }
      throw err;
    }
  }
}

/** The last `n` lines of a log, asking the server for its end only: 8 KiB, then four times more until there are enough. */
async function lastLines(api: ApiClient, id: string, q: { stream: 'stdout' | 'stderr'; attempt?: number }, n: number): Promise<{ text: string; end: number }> {
  for (let bytes = 8 * 1024; ; bytes = Math.min(bytes * 4, MAX_LOG_PART)) {
    const part = await api.logPart(id, { ...q, tail: bytes });
    const ended = part.text.endsWith('\n');
    const lines = (ended ? part.text.slice(0, -1) : part.text).split('\n');
    // Unless the part starts the log, its first line may be cut: it counts only when more than n are there.
    const whole = part.offset === part.start;
    if (whole || lines.length > n || bytes === MAX_LOG_PART) {
      const last = (whole ? lines : lines.slice(1)).slice(-n);
      const text = last.length === 0 || (last.length === 1 && last[0] === '') ? '' : last.join('\n') + (ended ? '\n' : '');
      return { text, end: part.end };
    }
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function queue(ctx: Context, _args: Argument[], opts: Record<string, unknown>): Promise<void> {
  const { api } = await ctx.client();
  const list = await api.queue({ limit: (opts.limit as number | undefined) ?? DEFAULT_LIST_LIMIT });
  const now = Date.now();
  ctx.out.list(list, list.jobs, [
    { header: 'id', value: (j: JobView) => shortId(j.id) },
    { header: 'project', value: (j) => j.project },
    { header: 'name', value: (j) => j.name, max: 24 },
    { header: 'pri', value: (j) => j.priority, align: 'right' },
    { header: 'cores', value: (j) => j.resources.cores, align: 'right' },
    { header: 'MB', value: (j) => j.resources.memoryMb, align: 'right' },
    { header: 'command', value: (j) => commandText(j), max: 40 },
    { header: 'queued', value: (j) => ago(j.updatedAt, now) },
  ], 'the queue is empty');
  if (list.next !== undefined) ctx.out.hint('more jobs queued: use a larger --limit');
}

async function running(ctx: Context, _args: Argument[], opts: Record<string, unknown>): Promise<void> {
  const { api } = await ctx.client();
  const all = opts.all === true;
  const project = all ? undefined : await ctx.project();
  const limit = (opts.limit as number | undefined) ?? DEFAULT_LIST_LIMIT;
  const list = await api.running({ project, limit });
  const now = Date.now();
  const current = (j: JobView): Attempt | undefined => j.attempts[j.attempts.length - 1];
  ctx.out.list(list, list.jobs, [
    { header: 'id', value: (j: JobView) => shortId(j.id) },
    ...(all ? [{ header: 'project', value: (j: JobView) => j.project }] : []),
    { header: 'name', value: (j) => j.name, max: 24 },
    { header: 'command', value: (j) => commandText(j), max: 40 },
    { header: 'try', value: (j) => current(j)?.n, align: 'right' },
    {
      header: 'worker',
      value: (j) => {
        const a = current(j);
        return a ? `${a.workerName || a.workerId}${a.via !== 'local' ? ctx.out.c.dim(` via ${a.viaName ?? a.via}`) : ''}` : '';
      },
      max: 40,
    },
    { header: 'elapsed', value: (j) => duration(now - (current(j)?.startedAt ?? now)), align: 'right' },
  ], all ? 'no running jobs' : `no running jobs in '${project}'`);
  if (list.jobs.length >= limit) ctx.out.hint(`at most ${limit} shown: use a larger --limit`);
}

export const jobCommands: CommandSpec[] = [
  {
    name: 'submit',
    args: ['[command...]'],
    summary: 'submit a job (cpcc submit [options] -- COMMAND ARGS...) or many (--file)',
    help:
      'Put the command after -- so that its own options are not taken for cpcc\'s.\n' +
      'With --file, the file is a JSON array of jobs, {"jobs": [...]}, or one job per line;\n' +
      'jobs may name a "key" and refer to other jobs\' keys (or ids) in "after".\n' +
      'Options given with --file are defaults for the jobs in it.',
    options: [
      { flags: '--cores <n>', description: 'cores the job needs', parse: positive },
      { flags: '--memory <size>', description: 'memory the job needs (512M, 4G; a bare number is MB)', parse: sizeMb(1) },
      { flags: '--priority <n>', description: `higher runs first among your own jobs (${PRIORITY_MIN} to ${PRIORITY_MAX})`, parse: integer(PRIORITY_MIN, PRIORITY_MAX) },
      { flags: '--retries <n>', description: 'how often to retry a non-zero exit', parse: nonNegative },
      { flags: '--time <time>', description: 'wall-time limit per attempt (90s, 30m, 2h; a bare number is seconds); the attempt ends timeout', parse: durationS(1, 365 * 24 * 3600) },
      { flags: '--timeout <time>', description: 'the same as --time', parse: durationS(1, 365 * 24 * 3600) },
      { flags: '--retry-oom <factor:max>', description: 'after running out of memory, ask for FACTOR × more, up to MAX (1.5:16G)', parse: retryOom },
      { flags: '--retry-timeout <factor:max>', description: 'after running out of time, ask for FACTOR × more, up to MAX (2:8h)', parse: retryTimeout },
      { flags: '--retry-more <n>', description: 'how many times to ask for more (default 3)', parse: integer(1, 100) },
      {
        flags: '--kill-grace <time>',
        description: `time between SIGTERM and SIGKILL when an attempt is stopped (0 to ${MAX_KILL_GRACE_S}s, default 10s)`,
        parse: durationS(0, MAX_KILL_GRACE_S),
      },
      { flags: '--after <id>', description: 'run only after this job is done (repeatable)', parse: collect },
      { flags: '--env <name=value>', description: 'set an environment variable (repeatable)', parse: keyValue },
      { flags: '--name <name>', description: 'a name for the job' },
      { flags: '--shell', description: 'run the arguments as one shell line' },
      { flags: '-f, --file <file>', description: 'submit the jobs in FILE (- for stdin)' },
      ...fileOptions,
    ],
    run: submit,
  },
  {
    name: 'jobs',
    summary: "list the current project's jobs, newest first",
    help: listHelp,
    options: listOptions,
    run: listJobs,
  },
  {
    name: 'job',
    args: ['<id>'],
    summary: 'show one job and its attempts',
    help: "ID: the job's whole id, or at least 8 hex digits of its start or end, such as the short form tables show.",
    run: showJob,
  },
  {
    name: 'logs',
    args: ['<id>'],
    summary: "print a job's output (as far as it has arrived while the job runs)",
    options: [
      { flags: '--stderr', description: 'standard error instead of standard output' },
      { flags: '--attempt <n>', description: 'this attempt instead of the last', parse: positive },
      { flags: '--tail <lines>', description: 'only the last LINES lines (the server sends only the end of the log)', parse: positive },
      { flags: '-f, --follow', description: 'keep printing output as it arrives, until the attempt ends (without --attempt: on to the next attempt of a retried job, until the job is finished)' },
    ],
    run: logs,
  },
  {
    name: 'cancel',
    args: ['[ids...]'],
    summary: 'cancel jobs: by id, - for ids on stdin, or --state/--name/--failed; each gets its outcome',
    help: bulkHelp,
    options: bulkOptions,
    run: (ctx, args, opts) => bulk(ctx, args, opts, 'cancel'),
  },
  {
    name: 'retry',
    args: ['[ids...]'],
    summary: 'queue failed or cancelled jobs again: by id, - for ids on stdin, or --failed/--name; each gets its outcome',
    help: bulkHelp,
    options: bulkOptions,
    run: (ctx, args, opts) => bulk(ctx, args, opts, 'retry'),
  },
  {
    name: 'wait',
    args: ['[ids...]'],
    summary: 'wait until the jobs named, or those you submitted since the last wait, have finished; exit 1 if any failed or was cancelled',
    help:
      "Without ids: the current project's (or -p's) jobs from the first one cpcc submit sent from here\n" +
      'since the last wait of that project ended (a wait ends when all it waits for have finished);\n' +
      'with no such mark, from its oldest unfinished job on. Failures before the mark do not count.\n' +
      'Failed and cancelled jobs are listed. A server that cannot be reached is asked again until --timeout.',
    options: [{ flags: '--timeout <time>', description: 'give up (exit 1) after this long (90s, 10m, 2h)', parse: durationS(1) }],
    run: wait,
  },
  {
    name: 'why',
    args: ['<id>'],
    summary: 'why a job is not running: dependencies, no worker big enough, an old attempt, or room and turns',
    run: why,
  },
  {
    name: 'queue',
    aliases: ['q'],
    summary: 'the queued jobs, by priority then age (users take turns between them)',
    options: [{ flags: '--limit <n>', description: `at most this many (default ${DEFAULT_LIST_LIMIT})`, parse: positive }],
    run: queue,
  },
  {
    name: 'running',
    aliases: ['r'],
    summary: "the current project's running jobs, with their worker and how long they have run",
    options: [
      { flags: '--all', description: 'every running job you can see, of all projects' },
      { flags: '--limit <n>', description: `at most this many (default ${DEFAULT_LIST_LIMIT})`, parse: positive },
    ],
    run: running,
  },
];
