import type { Context } from './context.js';
import { Router } from '../http/router.js';
import { adminRoutes } from '../jobs/admin-routes.js';
import { fileRoutes } from '../files/file-routes.js';
import { jobRoutes } from '../jobs/job-routes.js';
import { peerRoutes } from '../federation/peer-routes.js';
import { pilotRoutes } from '../pilots/pilot-routes.js';
import { projectRoutes } from '../jobs/project-routes.js';
import { statsRoutes } from '../jobs/stats-routes.js';
import { saveLoadRoutes } from '../files/save-load-routes.js';
import { sessionRoutes } from '../accounts/session-routes.js';
import { userRoutes } from '../accounts/user-routes.js';
import { weightRoutes } from '../jobs/weight-routes.js';
import { workerRoutes } from '../jobs/worker-routes.js';

/** Every route of the secure API (under /api/v1), each with its access rule and schemas. */
export function apiRouter(ctx: Context): Router {
  const router = new Router();
  sessionRoutes(router, ctx);
  projectRoutes(router, ctx);
  statsRoutes(router, ctx);
  userRoutes(router, ctx);
  jobRoutes(router, ctx);
  workerRoutes(router, ctx);
  fileRoutes(router, ctx);
  saveLoadRoutes(router, ctx);
  peerRoutes(router, ctx);
  pilotRoutes(router, ctx);
  adminRoutes(router, ctx);
  weightRoutes(router, ctx);
  return router;
}
