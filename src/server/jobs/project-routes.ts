import { planCreateProject, planSetProjectRetry, planSubmit, uploadedInputs, type SubmitItem } from '../../core/commands.js';
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
import { createProjectSchema, projectRetrySchema, jobListQuery, progressQuery, submitSchema, toJobSpec } from './schemas.js';
import { listJobs } from './job-listing.js';
import { progressOf } from './job-progress.js';
import type { ProgressView } from '../../core/job-reports.js';
import { projectView } from './views.js';

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
    'PUT',
    '/projects/:project/retry',
    {
      auth: 'owner',
      summary: "set (or with null clear) the retry with more of the project's jobs submitted without their own; jobs already submitted keep theirs",
      params: projectParams,
      body: projectRetrySchema,
    },
    async (req): Promise<ProjectView> => {
      const name = req.project.name;
      await ctx.store.commit(planSetProjectRetry(model(), name, req.body.retry ?? null, Date.now()));
      return projectView(model().project(name), model().countsOf(name));
    },
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
    (req): Promise<JobList> => listJobs(ctx.store, req.project, req.query),
  );

  router.add(
    'GET',
    '/projects/:project/progress',
    {
      auth: 'member',
      summary: "how far a project's jobs from one on (by id, which grows with submission) have come: counts by state and the failed or cancelled ones; without from, from the oldest unfinished job",
      params: projectParams,
      query: progressQuery,
    },
    (req): ProgressView => progressOf(model(), req.project.name, req.query.from),
  );
}
