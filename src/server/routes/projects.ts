import { v7 as uuidv7 } from 'uuid';
import { planCreateProject, planSubmit, type SubmitItem } from '../../core/commands.js';
import type { JobInput, JobList, ProjectView, SubmitReply } from '../../core/wire.js';
import { fail } from '../../core/errors.js';
import { archivedStates } from '../archived.js';
import { canSee, requireUser, visibleProject } from '../auth.js';
import type { Context } from '../context.js';
import type { Router } from '../http.js';
import { check, createProjectSchema, jobInputSchema, jobListQuery, queryObject, submitSchema, toJobSpec } from '../schemas.js';
import { jobView, projectView } from '../views.js';

export function projectRoutes(router: Router, ctx: Context): void {
  const model = ctx.store.model;

  router.add('GET', '/projects', (req): { projects: ProjectView[] } => {
    const who = requireUser(ctx, req);
    const projects = [...model.projects.values()]
      .filter((p) => canSee(who, p))
      .map((p) => projectView(p, model.countsOf(p.name)));
    return { projects };
  });

  router.add('POST', '/projects', async (req): Promise<ProjectView> => {
    const who = requireUser(ctx, req);
    const { name } = check(createProjectSchema, req.body);
    const event = planCreateProject(model, name, who.user, Date.now());
    await ctx.store.commit(event);
    return projectView(model.project(name), model.countsOf(name));
  });

  router.add('GET', '/projects/:project', (req): ProjectView => {
    const who = requireUser(ctx, req);
    const project = visibleProject(ctx, who, req.params.project!);
    return projectView(project, model.countsOf(project.name));
  });

  router.add('DELETE', '/projects/:project', async (req) => {
    const who = requireUser(ctx, req);
    const project = visibleProject(ctx, who, req.params.project!);
    await ctx.store.commit({ t: 'project-removed', at: Date.now(), name: project.name });
    await ctx.store.archive.removeProject(project.name);
    ctx.dispatcher.kick();
    return { removed: project.name };
  });

  router.add('POST', '/projects/:project/jobs', async (req): Promise<SubmitReply> => {
    const who = requireUser(ctx, req);
    const project = visibleProject(ctx, who, req.params.project!);
    const { jobs } = check(submitSchema(ctx.config), req.body);
    const items: SubmitItem[] = jobs.map((raw, i) => {
      const input = check(jobInputSchema, raw, `jobs[${i}]`) as JobInput;
      return input.key === undefined ? { spec: toJobSpec(input) } : { key: input.key, spec: toJobSpec(input) };
    });
    const ids = items.map(() => uuidv7());
    const keys = new Set(items.map((i) => i.key));
    const refs = items.flatMap((i) => i.spec.after.filter((ref) => !keys.has(ref)));
    const archived = await archivedStates(ctx, project.name, refs);
    const event = planSubmit(model, project.name, items, ids, Date.now(), archived);
    await ctx.store.commit(event);
    ctx.dispatcher.kick();
    return { ids };
  });

  router.add('GET', '/projects/:project/jobs', async (req): Promise<JobList> => {
    const who = requireUser(ctx, req);
    const project = visibleProject(ctx, who, req.params.project!);
    const q = check(jobListQuery, queryObject(req.query), 'query');
    if (q.archived === '1' || q.archived === 'true') {
      const jobs = await ctx.store.archive.list(project.name, { state: q.state, limit: q.limit + 1, afterId: q.after });
      return page(jobs.map((j) => jobView(j as never, true)), q.limit);
    }
    // Pages follow submission order; `after` is the last id of the previous
    // page. That job may have been archived since, so the cursor is its
    // submission number, read from the archive when it is no longer live.
    let afterSeq = 0;
    if (q.after !== undefined) {
      const cursor = model.job(q.after) ?? ((await ctx.store.archive.get(q.after, project.name)) as { seq?: number } | null);
      if (cursor?.seq === undefined) throw fail('INVALID_FIELD', `query.after: no job '${q.after}' in project '${project.name}'`);
      afterSeq = cursor.seq;
    }
    const out = [];
    for (const id of model.jobIdsOf(project.name)) {
      const job = model.job(id)!;
      if (job.seq <= afterSeq) continue;
      if (q.state && job.state !== q.state) continue;
      out.push(jobView(job));
      if (out.length > q.limit) break;
    }
    return page(out, q.limit);
  });
}

function page<T extends { id: string }>(items: T[], limit: number): { jobs: T[]; next?: string } {
  if (items.length <= limit) return { jobs: items };
  const jobs = items.slice(0, limit);
  return { jobs, next: jobs[jobs.length - 1]!.id };
}
