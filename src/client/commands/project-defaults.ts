/**
 * `cpcc project-set`: a project's defaults for the jobs later submitted to
 * it, today the retry with more of jobs that give none of their own. Apart
 * from projects.ts, whose commands start without the flag parsers.
 */
import { usage } from '../output.js';
import type { Argument, CommandSpec, Context } from './context.js';
import { integer } from './parsers.js';
import { retryFromFlags, retryLine, retryOom, retryTimeout } from './limits.js';

async function projectSet(ctx: Context, args: Argument[], opts: Record<string, unknown>): Promise<void> {
  const name = await ctx.project(args[0] as string | undefined);
  let retry;
  try {
    retry = retryFromFlags(opts);
  } catch (err) {
    return usage((err as Error).message);
  }
  if (opts.clearRetry === true && retry) usage('--clear-retry goes without --retry-oom, --retry-timeout and --retry-more');
  if (opts.clearRetry !== true && !retry) usage('give --retry-oom, --retry-timeout (and --retry-more), or --clear-retry');
  const { api } = await ctx.client();
  const project = await api.setProjectRetry(name, retry ?? null);
  ctx.out.show(project, () =>
    ctx.out.line(
      project.retry
        ? `project '${project.name}': jobs submitted without their own retry with more get ${retryLine(project.retry)}`
        : `project '${project.name}': jobs submitted without their own retry with more get none`,
    ),
  );
}

export const projectDefaultCommands: CommandSpec[] = [
  {
    name: 'project-set',
    args: ['[project]'],
    summary: "set a project's defaults (default: the current one): the retry with more of jobs submitted without their own",
    help:
      'A job that gives its own retry (cpcc submit --retry-oom, a job file\'s "retry") keeps it; jobs\n' +
      'already submitted keep what they had. Owner or super user.',
    options: [
      { flags: '--retry-oom <factor:max>', description: 'after running out of memory, ask for FACTOR × more, up to MAX (1.5:16G)', parse: retryOom },
      { flags: '--retry-timeout <factor:max>', description: 'after running out of time, ask for FACTOR × more, up to MAX (2:8h)', parse: retryTimeout },
      { flags: '--retry-more <n>', description: 'how many times to ask for more (default 3)', parse: integer(1, 100) },
      { flags: '--clear-retry', description: 'jobs without their own retry get none' },
    ],
    run: projectSet,
  },
];
