import { fail } from '../core/errors.js';
import type { Project } from '../core/types.js';
import type { Identity } from './accounts.js';
import type { Context } from './context.js';
import type { Request } from './http.js';

/**
 * Who is asking, decided in one place. Routes call one of the `require*`
 * functions first; a route that calls none is open to anyone.
 */

export function identify(ctx: Context, req: Request): Identity {
  const header = req.headers.authorization;
  if (!header) throw fail('UNAUTHENTICATED', 'this needs a token; log in first');
  const m = /^Bearer ([\x21-\x7e]{1,512})$/.exec(header);
  if (!m) throw fail('UNAUTHENTICATED', "the Authorization header must be 'Bearer <token>'");
  return ctx.accounts.authenticate(m[1]!);
}

export type UserIdentity = Extract<Identity, { kind: 'user' }>;
export type WorkerIdentity = Extract<Identity, { kind: 'worker' }>;

export function requireUser(ctx: Context, req: Request): UserIdentity {
  const who = identify(ctx, req);
  if (who.kind !== 'user') throw fail('FORBIDDEN', 'worker tokens cannot use this route');
  return who;
}

export function requireSuperuser(ctx: Context, req: Request): UserIdentity {
  const who = requireUser(ctx, req);
  if (!who.superuser) throw fail('FORBIDDEN', 'only super users may do this');
  return who;
}

export function requireWorker(ctx: Context, req: Request): WorkerIdentity {
  const who = identify(ctx, req);
  if (who.kind !== 'worker') throw fail('FORBIDDEN', 'only workers may use this route');
  return who;
}

export function canSee(who: UserIdentity, project: Project): boolean {
  return who.superuser || project.owner === who.user || project.members.includes(who.user);
}

/**
 * The project, if the user may see it. A project the user may not see is
 * reported as missing, so names of other people's projects do not leak.
 */
export function visibleProject(ctx: Context, who: UserIdentity, name: string): Project {
  const project = ctx.store.model.projects.get(name);
  if (!project || !canSee(who, project)) throw fail('PROJECT_NOT_FOUND', `no project named '${name}'`);
  return project;
}
