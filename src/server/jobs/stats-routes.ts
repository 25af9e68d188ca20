import { projectStats, type ProjectStats, type StatsJob } from '../../core/stats.js';
import type { Context } from '../start/context.js';
import type { Router } from '../http/router.js';
import { projectParams } from '../http/schemas.js';
import { statsQuery } from './schemas.js';

/** Archived jobs are read in pages of this many. */
const PAGE = 5000;

/**
 * `GET /projects/:project/stats`: counts and usage figures over a project's
 * jobs, live and archived (core/stats.ts), for `cpcc stats`.
 */
export function statsRoutes(router: Router, ctx: Context): void {
  router.add(
    'GET',
    '/projects/:project/stats',
    { auth: 'member', summary: "a project's jobs by state and end, and their usage (min, median, p90, max), by name prefix when asked; with charts=true also the dashboard's histograms and running-over-time series", params: projectParams, query: statsQuery },
    async (req): Promise<ProjectStats> => {
      const name = req.project.name;
      const model = ctx.store.model;
      const jobs: StatsJob[] = [];
      for (const id of model.jobIdsOf(name)) jobs.push(model.job(id)!);
      let afterId: string | undefined;
      for (;;) {
        const page = (await ctx.store.archive.list(name, { limit: PAGE, ...(afterId ? { afterId } : {}) })) as unknown as (StatsJob & { id: string })[];
        jobs.push(...page);
        if (page.length < PAGE) break;
        afterId = page[page.length - 1]!.id;
      }
      return projectStats(name, jobs, req.query.by === 'name', req.query.charts === 'true' ? Date.now() : undefined);
    },
  );
}
