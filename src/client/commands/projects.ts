/**
 * Projects: create one and make it current (start), list them, switch (use),
 * remove (rm), and count their jobs by state (status).
 */
import type { ProjectView } from '../../core/wire.js';
import { JOB_STATES, type StateCounts } from '../../core/types.js';
import { patchServer } from '../config.js';
import { ago, fail, usage, type Output } from '../output.js';
import type { Argument, CommandSpec, Context } from './context.js';
import { confirm } from './prompt.js';

export function total(counts: StateCounts): number {
  return JOB_STATES.reduce((sum, s) => sum + (counts[s] ?? 0), 0);
}

/** "3 queued, 1 running, 12 done": only the states that have jobs. */
export function countsLine(out: Output, counts: StateCounts): string {
  const parts = JOB_STATES.filter((s) => (counts[s] ?? 0) > 0).map((s) => `${counts[s]} ${out.state(s)}`);
  return parts.length > 0 ? parts.join(', ') : 'no jobs';
}

async function setCurrentProject(ctx: Context, project: string | undefined): Promise<void> {
  const { name } = await ctx.server();
  await ctx.update((config) => {
    patchServer(config, name, { project });
  });
}

async function start(ctx: Context, args: Argument[]): Promise<void> {
  const name = String(args[0]);
  const { api } = await ctx.client();
  const project = await api.createProject(name);
  await setCurrentProject(ctx, project.name);
  ctx.out.show(project, () => ctx.out.line(`created project '${project.name}', now current`));
}

async function use(ctx: Context, args: Argument[]): Promise<void> {
  const { api } = await ctx.client();
  const project = await api.project(String(args[0]));
  await setCurrentProject(ctx, project.name);
  ctx.out.show(project, () => ctx.out.line(`using project '${project.name}' (${countsLine(ctx.out, project.counts)})`));
}

async function pwd(ctx: Context): Promise<void> {
  const { name, entry } = await ctx.server();
  const project = ctx.global.project ?? entry.project ?? null;
  ctx.out.show({ server: name, url: entry.url, serverId: entry.serverId, project }, () =>
    ctx.out.fields([
      ['server', `${name} (${entry.url})`],
      ['project', project ?? ctx.out.c.dim("(none; run 'cpcc cd PROJECT' or 'cpcc start PROJECT')")],
    ]),
  );
}

async function list(ctx: Context): Promise<void> {
  const { api, server } = await ctx.client();
  const { projects } = await api.projects();
  const current = ctx.global.project ?? server.entry.project;
  const now = Date.now();
  ctx.out.list({ projects }, projects, [
    { header: '', value: (p: ProjectView) => (p.name === current ? '*' : '') },
    { header: 'name', value: (p) => p.name },
    { header: 'owner', value: (p) => p.owner },
    { header: 'jobs', value: (p) => total(p.counts), align: 'right' },
    { header: 'queued', value: (p) => p.counts.queued, align: 'right' },
    { header: 'running', value: (p) => p.counts.running, align: 'right' },
    { header: 'done', value: (p) => p.counts.done, align: 'right' },
    { header: 'failed', value: (p) => (p.counts.failed ? ctx.out.c.red(p.counts.failed) : 0), align: 'right' },
    { header: 'created', value: (p) => ago(p.createdAt, now) },
  ], "no projects; run 'cpcc start PROJECT'");
}

async function remove(ctx: Context, args: Argument[], opts: Record<string, unknown>): Promise<void> {
  const name = String(args[0]);
  const { api, server } = await ctx.client();
  if (opts.yes !== true) {
    if (!ctx.interactive) usage(`not removing '${name}' without confirmation; pass --yes`);
    const project = await api.project(name);
    const question = `Remove project '${name}' and its ${total(project.counts)} jobs?`;
    if (!(await confirm(ctx.io, question))) fail('not removed');
  }
  const reply = await api.removeProject(name);
  if (server.entry.project === name) await setCurrentProject(ctx, undefined);
  ctx.out.show(reply, () => ctx.out.line(`removed project '${name}'`));
}

async function status(ctx: Context, args: Argument[]): Promise<void> {
  const { api } = await ctx.client();
  const name = await ctx.project(args[0] as string | undefined);
  const project = await api.project(name);
  const n = total(project.counts);
  ctx.out.show({ ...project, total: n }, () => {
    ctx.out.line(`project ${ctx.out.c.bold(project.name)} (owner ${project.owner}): ${n} jobs`);
    ctx.out.table(
      JOB_STATES.map((s) => ({ state: s, count: project.counts[s] ?? 0 })),
      [
        { header: 'state', value: (r) => ctx.out.state(r.state) },
        { header: 'jobs', value: (r) => r.count, align: 'right' },
      ],
    );
  });
}

export const projectCommands: CommandSpec[] = [
  { name: 'start', args: ['<project>'], summary: 'create a project and make it current', run: start },
  { name: 'projects', aliases: ['p'], summary: 'list the projects you can see', run: list },
  { name: 'use', aliases: ['cd'], args: ['<project>'], summary: 'make an existing project current', run: use },
  { name: 'pwd', summary: 'the current server and project', run: pwd },
  {
    name: 'rm',
    args: ['<project>'],
    summary: 'remove a project and all its jobs',
    options: [{ flags: '-y, --yes', description: 'do not ask' }],
    run: remove,
  },
  {
    name: 'status',
    aliases: ['s'],
    args: ['[project]'],
    summary: 'count the jobs of a project (default: the current one) by state',
    run: status,
  },
];
