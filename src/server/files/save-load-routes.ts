import { z } from 'zod';
import type { ProjectLoadReply } from '../../core/wire.js';
import type { Context } from '../start/context.js';
import { Reply, type Router } from '../http/router.js';
import { exportProject, importProject } from './project-archive.js';
import { importQuery } from './schemas.js';
import { projectParams } from '../http/schemas.js';

/**
 * A whole project as one tar, to keep or to move to another server
 * (`cpcc save`, `cpcc load`; the format is in project-archive.ts).
 */
export function saveLoadRoutes(router: Router, ctx: Context): void {
  router.add(
    'GET',
    '/projects/:project/export',
    { auth: 'member', summary: 'the project as a tar: cpc-project.json, jobs.ndjson (live and archived jobs) and files/<sha256>', params: projectParams, download: true },
    async (req) => {
      const { stream, size, filename } = await exportProject(ctx, req.project);
      return Reply.stream(stream, size, {
        'content-type': 'application/x-tar',
        'content-disposition': `attachment; filename="${filename.replace(/[^\w.-]/g, '_')}"`,
      });
    },
  );

  router.add(
    'POST',
    '/projects/:project/import',
    {
      auth: 'user',
      summary: 'load a saved project (a tar, Content-Length required) as a new project owned by the caller; newIds=1 gives its jobs new ids (a copy)',
      params: z.strictObject({ project: projectParams.shape.project }),
      query: importQuery,
      upload: true,
    },
    (req): Promise<ProjectLoadReply> => importProject(ctx, req.raw, req.params.project, req.who.user, { newIds: req.query.newIds }),
  );
}
