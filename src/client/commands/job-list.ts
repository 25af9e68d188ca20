/**
 * `cpcc jobs`: a project's jobs, newest first unless told otherwise,
 * filtered and ordered by the server, a page at a time or all of them.
 */
import { JOB_SORTS, type JobSort } from '../../core/job-query.js';
import { JOB_STATES } from '../../core/types.js';
import { formatDurationS } from '../../core/units.js';
import type { AttemptView, JobView } from '../../core/wire.js';
import { ApiError, type ApiClient } from '../api/client.js';
import { EXIT_USAGE, ago, duration, fail, type Column } from '../output.js';
import type { Argument, Context, OptionSpec } from './context.js';
import { durationS, integer, jobArg, listOf, oneOf } from './parsers.js';
import { isFullId, shortId } from '../../core/short-ids.js';

export const DEFAULT_LIST_LIMIT = 100;
/** The most one request returns (the server's bound too). */
export const PAGE = 10_000;

/** Orders that read newest first by default; the others read a to z. */
const NEWEST_FIRST: ReadonlySet<JobSort> = new Set(['submitted', 'updated']);

export interface Selection {
  state?: string;
  name?: string;
  since?: number;
  archived?: boolean | 'include';
  sort?: JobSort;
  order?: 'asc' | 'desc';
}

/** Every job of `project` the selection names (after the job `from`, if given), page by page. */
export async function allJobs(api: ApiClient, project: string, sel: Selection, from?: string): Promise<JobView[]> {
  const jobs: JobView[] = [];
  let after = from;
  do {
    const page = await api.jobs(project, { ...sel, limit: PAGE, after });
    jobs.push(...page.jobs);
    // A server that repeats the cursor would otherwise keep us here forever.
    after = page.next !== undefined && page.next !== after && page.jobs.length > 0 ? page.next : undefined;
  } while (after !== undefined);
  return jobs;
}

/**
 * Usage columns `--columns` shows, from each job's latest measured attempt
 * (its figures so far while it runs), in place of the command and times.
 */
export const USAGE_COLUMNS = ['wall', 'cpu', 'mem', 'eff'] as const;
export type UsageColumn = (typeof USAGE_COLUMNS)[number];

function lastMeasured(j: JobView): AttemptView | undefined {
  for (let i = j.attempts.length - 1; i >= 0; i--) if (j.attempts[i]!.usage) return j.attempts[i];
  return undefined;
}

const usageColumn: Record<UsageColumn, { header: string; value: (j: JobView) => string | undefined }> = {
  wall: { header: 'wall', value: (j) => { const u = lastMeasured(j)?.usage; return u && formatDurationS(Math.round(u.wallS)); } },
  cpu: { header: 'cpu', value: (j) => { const u = lastMeasured(j)?.usage; return u && formatDurationS(Math.round(u.userS + u.systemS)); } },
  mem: { header: 'mem', value: (j) => { const u = lastMeasured(j)?.usage; return u && `${Math.round(u.maxRssMb)}M`; } },
  // As cpcc stats counts it: CPU ÷ (cores × wall).
  eff: {
    header: 'eff',
    value: (j) => {
      const u = lastMeasured(j)?.usage;
      return u && u.wallS > 0 ? `${Math.round((100 * (u.userS + u.systemS)) / (j.resources.cores * u.wallS))}%` : undefined;
    },
  },
};

/** How a job's command reads in a table: argv quoted as a shell would need it. */
export function commandText(job: { argv?: string[]; shell?: string }): string {
  if (job.shell !== undefined) return job.shell;
  return (job.argv ?? []).map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

export async function listJobs(ctx: Context, _args: Argument[], opts: Record<string, unknown>): Promise<void> {
  const { api } = await ctx.client();
  const project = await ctx.project();
  const sort = (opts.sort as JobSort | undefined) ?? 'submitted';
  const newestFirst = NEWEST_FIRST.has(sort);
  const sel: Selection = {
    state: opts.state as string | undefined,
    name: opts.name as string | undefined,
    since: opts.since as number | undefined,
    archived: opts.archived === true ? 'include' : undefined,
    sort,
    order: newestFirst !== (opts.reverse === true) ? 'desc' : 'asc',
  };
  let after = opts.afterId as string | undefined;
  if (after !== undefined && !isFullId(after)) after = (await api.job(after)).id;
  let list: { jobs: JobView[]; next?: string };
  try {
    if (opts.all === true) list = { jobs: await allJobs(api, project, sel, after) };
    else list = await api.jobs(project, { ...sel, limit: (opts.limit as number | undefined) ?? DEFAULT_LIST_LIMIT, after });
  } catch (err) {
    // The server names its query parameter; the user gave a flag.
    if (err instanceof ApiError && err.code === 'INVALID_FIELD' && err.message.startsWith('query.after')) {
      fail(`--after-id: no job ${after} in project '${project}'`, EXIT_USAGE, 'INVALID_FIELD');
    }
    throw err;
  }
  const now = Date.now();
  const what = [sel.state, sel.name !== undefined ? `named '${sel.name}'` : undefined].filter(Boolean).join(' ');
  const usage = (opts.columns as UsageColumn[] | undefined) ?? [];
  const columns: Column<JobView>[] = [
    { header: 'id', value: (j: JobView) => shortId(j.id) },
    { header: 'name', value: (j) => j.name, max: 24 },
    { header: 'state', value: (j) => ctx.out.state(j.state) + (j.archived ? ctx.out.c.dim('*') : '') },
    // A usage listing leaves the command and times to the plain one, so its figures fit 80 columns uncut.
    ...(usage.length === 0 ? [{ header: 'command', value: (j: JobView) => commandText(j), max: 40 }] : []),
    { header: 'tries', value: (j) => j.attempts.length, align: 'right' },
    { header: 'exit', value: (j) => j.exitCode, align: 'right' },
    ...(usage.length === 0
      ? [
          { header: 'took', value: (j: JobView) => duration(j.durationMs), align: 'right' as const },
          { header: 'updated', value: (j: JobView) => ago(j.updatedAt, now) },
        ]
      : usage.map((c) => ({ ...usageColumn[c], align: 'right' as const }))),
  ];
  ctx.out.list(list, list.jobs, columns, `no ${what ? `${what} ` : ''}jobs in '${project}'${sel.since !== undefined ? ' in that time' : ''}`);
  if (list.jobs.some((j) => j.archived)) ctx.out.hint('* archived');
  if (list.next !== undefined) ctx.out.hint(`more jobs: use --all, or a larger --limit, or --after-id ${list.next} for the next page`);
}

export const listOptions: OptionSpec[] = [
  { flags: '--state <state>', description: `only jobs in this state (${JOB_STATES.join(', ')})`, parse: oneOf(JOB_STATES) },
  { flags: '--name <glob>', description: "only jobs whose name matches (* any characters, ? one; quote it: --name 'fit-*')" },
  { flags: '--since <time>', description: 'only jobs submitted in the last TIME (90m, 2h, 7d)', parse: durationS(1) },
  { flags: '--sort <field>', description: `order by ${JOB_SORTS.join(', ')} (default submitted); submitted and updated list newest first, name and state a to z`, parse: oneOf(JOB_SORTS) },
  { flags: '--reverse', description: 'the other way round (oldest first for submitted and updated)' },
  { flags: '--limit <n>', description: `at most this many (default ${DEFAULT_LIST_LIMIT}, at most ${PAGE})`, parse: integer(1, PAGE) },
  { flags: '--after-id <id>', description: 'the page after this job (the cursor a listing ends with)', parse: jobArg },
  { flags: '--all', description: 'all of them, page by page' },
  { flags: '--archived', description: 'include archived jobs (marked * in the table; reads the archive, which is slower)' },
  {
    flags: '--columns <list>',
    description: `a usage listing: these columns of each job's latest measured attempt in place of command, took and updated, comma-separated: ${USAGE_COLUMNS.join(', ')} (wall and CPU time, peak memory, CPU ÷ (cores × wall))`,
    parse: listOf(USAGE_COLUMNS),
  },
];

export const listHelp =
  'Newest first. With --json the answer is {"jobs": [...], "next": ID}: "next" is there when more\n' +
  'jobs follow the page, and --after-id ID gives the next page (same filters and order);\n' +
  'with --all, every job that matches and no "next". A table ends with the same cursor on stderr.';
