import type { Context } from './context.js';
import { Router } from './http.js';
import { adminRoutes } from './routes/admin.js';
import { fileRoutes } from './routes/files.js';
import { jobRoutes } from './routes/jobs.js';
import { peerRoutes } from './routes/peers.js';
import { pilotRoutes } from './routes/pilots.js';
import { projectRoutes } from './routes/projects.js';
import { saveLoadRoutes } from './routes/save-load.js';
import { sessionRoutes } from './routes/session.js';
import { userRoutes } from './routes/users.js';
import { weightRoutes } from './routes/weights.js';
import { workerRoutes } from './routes/workers.js';

/** Every route of the secure API (under /api/v1), each with its access rule and schemas. */
export function apiRouter(ctx: Context): Router {
  const router = new Router();
  sessionRoutes(router, ctx);
  projectRoutes(router, ctx);
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
