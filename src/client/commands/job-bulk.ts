/**
 * `cpcc cancel` and `cpcc retry`: many jobs at once, named by id (`-` reads
 * ids from stdin) or chosen by state and name, each with its own outcome.
 * What can be done is done; the exit code is 1 when any id could not be.
 */
import type { BulkOutcome } from '../../core/job-reports.js';
import { JOB_STATES } from '../../core/types.js';
import { EXIT_FAILURE, fail, plural, usage } from '../output.js';
import type { Argument, Context, OptionSpec } from './context.js';
import { allJobs } from './job-list.js';
import { oneOf } from './parsers.js';
import { confirm, readAll } from './prompt.js';
import { idMatcher, isFullId } from '../../core/short-ids.js';

/** Above this many jobs, ask first (or want --yes). */
export const CONFIRM_OVER = 20;
/** Ids per request (the server's bound). */
const CHUNK = 10_000;
/** Ids given in part per request (the server looks each one up among all jobs). */
const PARTIAL_CHUNK = 32;

/** The ids on stdin: separated by white space or lines; `#` starts a comment. */
export function idsFromText(text: string): string[] {
  const ids: string[] = [];
  text.split('\n').forEach((line, i) => {
    for (const token of line.replace(/#.*/, '').trim().split(/\s+/)) {
      if (token === '') continue;
      if (idMatcher(token) === null) usage(`stdin line ${i + 1}: '${token.slice(0, 40)}' is not a job id (a whole id, or at least 8 hex digits of one)`);
      ids.push(token.toLowerCase());
    }
  });
  return ids;
}

const VERB = { cancel: 'cancelled', retry: 'retried' } as const;

export async function bulk(ctx: Context, args: Argument[], opts: Record<string, unknown>, action: 'cancel' | 'retry'): Promise<void> {
  const given = (args[0] as string[] | undefined) ?? [];
  const ids: string[] = [];
  for (const g of given) {
    if (g === '-') ids.push(...idsFromText(await readAll(ctx.io.stdin)));
    else if (idMatcher(g) === null) usage(`'${g}' is not a job id (a whole id, or at least 8 hex digits of one; - reads ids from stdin)`);
    else ids.push(g.toLowerCase());
  }
  const state = opts.failed === true ? undefined : (opts.state as string | undefined);
  const selecting = opts.failed === true || state !== undefined || opts.name !== undefined;
  if (opts.failed === true && opts.state !== undefined) usage('give --failed or --state, not both');
  if (!selecting && given.length === 0) usage(`name the jobs to ${action}: ids, - for ids on stdin, or --state, --name, --failed`);

  const { api } = await ctx.client();
  if (selecting) {
    const project = await ctx.project();
    const states = opts.failed === true ? ['failed', 'cancelled'] : [state];
    for (const s of states) {
      const jobs = await allJobs(api, project, { state: s, name: opts.name as string | undefined });
      ids.push(...jobs.map((j) => j.id));
    }
  }
  const unique = [...new Set(ids)];
  if (unique.length === 0) {
    ctx.out.show({ action, [VERB[action]]: [], outcomes: [], done: 0 }, () => ctx.out.note(`no jobs to ${action}`));
    return;
  }
  if (unique.length > CONFIRM_OVER && opts.yes !== true) {
    if (!ctx.interactive) usage(`not going to ${action} ${unique.length} jobs without confirmation (more than ${CONFIRM_OVER}); pass --yes`);
    if (!(await confirm(ctx.io, `${action === 'cancel' ? 'Cancel' : 'Retry'} ${unique.length} jobs?`))) fail(`nothing ${VERB[action]}`);
  }

  // Whole ids in big requests; those given in part a few at a time (each costs the server a search).
  const whole = unique.filter((id) => isFullId(id));
  const part = unique.filter((id) => !isFullId(id));
  const chunks: string[][] = [];
  for (let i = 0; i < whole.length; i += CHUNK) chunks.push(whole.slice(i, i + CHUNK));
  for (let i = 0; i < part.length; i += PARTIAL_CHUNK) chunks.push(part.slice(i, i + PARTIAL_CHUNK));
  const byGiven = new Map<string, BulkOutcome>();
  for (const chunk of chunks) for (const o of (await api.bulk(action, chunk)).outcomes) byGiven.set(o.given, o);
  const outcomes = unique.map((id) => byGiven.get(id)!);
  const done = outcomes.filter((o) => o.outcome === 'done');
  const verb = VERB[action];
  ctx.out.show({ action, [verb]: done.map((o) => o.id), outcomes, done: done.length }, () => {
    for (const o of done) ctx.out.line(`${verb} ${o.id}`);
    for (const o of outcomes) {
      if (o.outcome === 'done') continue;
      const what = o.outcome === 'not-found' ? 'not found' : o.outcome === 'ended' ? 'already ended' : (o.message ?? o.outcome);
      const detail = o.outcome === 'ended' && o.state ? ` (${o.state})` : o.code && o.outcome === 'refused' ? ` (${o.code})` : '';
      ctx.out.note(`not ${verb}: ${o.given}: ${what}${detail}`);
    }
  });
  const missed = outcomes.length - done.length;
  if (missed > 0) {
    const codes = [...new Set(outcomes.filter((o) => o.outcome !== 'done').map((o) => o.code ?? o.outcome.toUpperCase().replace('-', '_')))];
    fail(`${missed} of ${plural(outcomes.length, 'job')} not ${verb} (${codes.join(', ')}); ${done.length} ${verb}`, EXIT_FAILURE, missed === outcomes.length ? codes[0] : 'PARTIAL');
  }
}

export const bulkOptions: OptionSpec[] = [
  { flags: '--state <state>', description: `every job of the current project in this state (${JOB_STATES.join(', ')})`, parse: oneOf(JOB_STATES) },
  { flags: '--name <glob>', description: "every job of the current project whose name matches (* and ?; with --state, both)" },
  { flags: '--failed', description: 'every failed or cancelled job of the current project' },
  { flags: '-y, --yes', description: `do not ask before acting on more than ${CONFIRM_OVER} jobs` },
];

export const bulkHelp =
  `IDS: whole ids or at least 8 hex digits of one; - reads ids from stdin (white space or lines).\n` +
  `Selectors add the current project's matching jobs. Each job gets its outcome: ${'done'}, already ended,\n` +
  `not found, or why not; the others go ahead, and the exit code is 1 if any could not be done.\n` +
  `Over ${CONFIRM_OVER} jobs: asks on a terminal; without one, refuses (exit 2) unless --yes.`;
