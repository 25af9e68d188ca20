import { planCreateProject, planSubmit, uploadedInputs, type SubmitItem } from '../../core/commands.js';
import type { JobInput, JobList, ProjectView, SubmitReply } from '../../core/wire.js';
import { fail } from '../../core/errors.js';
import { checkJobSize } from '../../core/job-size.js';
import { archivedStates } from './archived.js';
import { canSee } from '../http/auth.js';
import type { Context } from '../start/context.js';
import type { Router } from '../http/router.js';
import { newId } from './ids.js';
import { NameProbes } from './name-probes.js';
import { projectParams } from '../http/schemas.js';
import { createProjectSchema, jobListQuery, submitSchema, toJobSpec } from './schemas.js';
import { jobView, projectView } from './views.js';

export function projectRoutes(router: Router, ctx: Context): void {
  const model = () => ctx.store.model;

  router.add('GET', '/projects', { auth: 'user', summary: 'the projects this user may see' }, (req): { projects: ProjectView[] } => {
    const m = model();
    const projects = [...m.projects.values()].filter((p) => canSee(req.who, p)).map((p) => projectView(p, m.countsOf(p.name)));
    return { projects };
  });

  const probes = new NameProbes();
  router.add('POST', '/projects', { auth: 'user', summary: 'create a project owned by this user', body: createProjectSchema }, async (req): Promise<ProjectView> => {
    const m = model();
    const { name } = req.body;
    if (!req.who.superuser) probes.check(req.who.user);
    const taken = m.projects.get(name);
    if (taken && !canSee(req.who, taken)) probes.hit(req.who.user);
    await ctx.store.commit(planCreateProject(m, name, req.who.user, Date.now()));
    return projectView(m.project(name), m.countsOf(name));
  });

  router.add('GET', '/projects/:project', { auth: 'member', summary: 'one project and its job counts', params: projectParams }, (req): ProjectView =>
    projectView(req.project, model().countsOf(req.project.name)),
  );

  router.add(
    'DELETE',
    '/projects/:project',
    { auth: 'owner', summary: 'remove a project with its jobs (owner or super user)', params: projectParams },
    async (req) => {
      const name = req.project.name;
      await ctx.store.commit({ t: 'project-removed', at: Date.now(), name });
      await ctx.store.archive.removeProject(name);
      ctx.dispatcher.kick();
      return { removed: name };
    },
  );

  router.add(
    'POST',
    '/projects/:project/jobs',
    { auth: 'member', summary: 'submit jobs, with dependencies among them', params: projectParams, body: submitSchema(ctx.config), bulk: true },
    async (req): Promise<SubmitReply> => {
      const m = model();
      const project = req.project;
      const items: SubmitItem[] = req.body.jobs.map((input: JobInput) =>
        input.key === undefined ? { spec: toJobSpec(input) } : { key: input.key, spec: toJobSpec(input) },
      );
      items.forEach((item, i) => checkJobSize(item.spec, ctx.config, `job ${i + 1}${item.spec.name !== undefined ? ` ('${item.spec.name}')` : ''}`));
      ctx.usage.checkRoom(project.owner, items.map((i) => i.spec));
      const ids = items.map(() => newId());
      const keys = new Set(items.map((i) => i.key));
      const refs = items.flatMap((i) => [...i.spec.after, ...(i.spec.inputs ?? []).flatMap((x) => ('job' in x ? [x.job] : []))]);
      const archived = await archivedStates(ctx, project.name, refs.filter((ref) => !keys.has(ref)));
      const uploaded = uploadedInputs(items);
      await ctx.files.requireHeld(project.name, uploaded, 'input');
      // Checked again after the wait: the project may have been removed meanwhile.
      if (m.projects.get(project.name) !== project) throw fail('PROJECT_NOT_FOUND', `no project named '${project.name}'`);
      const event = planSubmit(m, project.name, items, ids, Date.now(), archived);
      ctx.files.checkQuota(project.name, uploaded);
      // Again: other submissions may have come in during the waits above.
      ctx.usage.checkRoom(project.owner, items.map((i) => i.spec));
      await ctx.dispatcher.commitWork(event);
      return { ids };
    },
  );

  router.add(
    'GET',
    '/projects/:project/jobs',
    { auth: 'member', summary: "a page of a project's jobs, live or archived", params: projectParams, query: jobListQuery },
    async (req): Promise<JobList> => {
      const m = model();
      const project = req.project;
      const q = req.query;
      if (q.archived === '1' || q.archived === 'true') {
        const jobs = await ctx.store.archive.list(project.name, { state: q.state, limit: q.limit + 1, afterId: q.after });
        return page(jobs.map((j) => jobView(j as never, true)), q.limit);
      }
      // Pages follow submission order; `after` is the last id of the previous
      // page. That job may have been archived since, so the cursor is its
      // submission number, read from the archive when it is no longer live.
      let afterSeq = 0;
      if (q.after !== undefined) {
        const archivedHere = m.archivedProjectOf(q.after) === project.name;
        const cursor = m.job(q.after) ?? (archivedHere ? ((await ctx.store.archive.get(q.after, project.name)) as { seq?: number } | null) : null);
        if (cursor?.seq === undefined) throw fail('INVALID_FIELD', `query.after: no job '${q.after}' in project '${project.name}'`);
        afterSeq = cursor.seq;
      }
      const out = [];
      for (const id of m.jobIdsOf(project.name)) {
        const job = m.job(id)!;
        if (job.seq <= afterSeq) continue;
        if (q.state && job.state !== q.state) continue;
        out.push(jobView(job));
        if (out.length > q.limit) break;
      }
      return page(out, q.limit);
    },
  );
}

function page<T extends { id: string }>(items: T[], limit: number): { jobs: T[]; next?: string } {
  if (items.length <= limit) return { jobs: items };
  const jobs = items.slice(0, limit);
  return { jobs, next: jobs[jobs.length - 1]!.id };
}
