import type { TLSSocket } from 'node:tls';
import { fail } from '../../core/errors.js';
import type { Job, Project } from '../../core/types.js';
import { peerOf } from '../../federation/peer-auth.js';
import type { TrustStore } from '../../federation/trust-store.js';
import type { Accounts, Identity } from '../accounts/accounts.js';
import type { Store } from '../jobs/store.js';
import type { AuthRule, Granted, UserIdentity } from './auth-rules.js';
import type { Authorize, Credentials } from './router.js';
import { IdSearch, isFullId } from '../../core/short-ids.js';
import { check, jobRefParam } from './schemas.js';

/**
 * Who is asking, and whether they may, decided here and nowhere else. Every
 * route names one rule; the HTTP wrapper calls `authorize` with it before the
 * body is read and hands the handler what the rule granted.
 *
 * Kinds of caller: anonymous (no token), a user, a super user, a worker
 * token, and a peer server's certificate. A peer certificate opens only the
 * peer link (federation/links.ts) and the `peer` routes (file transfers for
 * delegated attempts); on every other route it counts for nothing.
 *
 *   anonymous  anyone
 *   user       any user (what they see inside is limited to their projects)
 *   member     a user who may see the project in `:project` (owner, member, super user)
 *   owner      the owner of the project in `:project`, or a super user
 *   job        a user who may see the project of the job in `:id`
 *   superuser  super users only
 *   worker     worker tokens only
 *   peer       a trusted peer server's client certificate only
 *
 * A project or job one may not see is reported as not found, so that names
 * of other people's projects do not leak.
 */

export { AUTH_RULES } from './auth-rules.js';
export type { AuthRule, Granted, UserIdentity, WorkerIdentity } from './auth-rules.js';

/** What the rules look at: the accounts, the jobs and projects, and the trusted peers. */
export interface AuthServices {
  accounts: Pick<Accounts, 'authenticate'>;
  store: Pick<Store, 'model' | 'archive'>;
  trust: TrustStore;
}

const BEARER = /^Bearer ([\x21-\x7e]{1,512})$/;

/** The identity behind the request's token. */
export function identify(ctx: AuthServices, creds: Pick<Credentials, 'authorization' | 'socket'>): Identity {
  const header = creds.authorization;
  if (!header) {
    if (hasPeerCertificate(creds.socket)) {
      throw fail('UNAUTHENTICATED', "a peer server's certificate opens only the peer link; this route needs a user or worker token");
    }
    throw fail('UNAUTHENTICATED', 'this needs a token; log in first');
  }
  const m = BEARER.exec(header);
  if (!m) throw fail('UNAUTHENTICATED', "the Authorization header must be 'Bearer <token>'");
  return ctx.accounts.authenticate(m[1]!);
}

function hasPeerCertificate(socket: Credentials['socket']): boolean {
  const tls = socket as Partial<TLSSocket>;
  if (typeof tls.getPeerCertificate !== 'function') return false;
  const cert = tls.getPeerCertificate();
  return cert !== null && typeof cert === 'object' && Object.keys(cert).length > 0;
}

export function authorizer(ctx: AuthServices): Authorize {
  return ((rule: AuthRule, creds: Credentials) => authorize(ctx, rule, creds)) as Authorize;
}

/** Synchronous but for the `job` rule, which may read the archive: most requests pass without a promise. */
export function authorize<A extends AuthRule>(ctx: AuthServices, rule: A, creds: Credentials): Granted[A] | Promise<Granted[A]> {
  return grant(ctx, rule, creds) as Granted[A] | Promise<Granted[A]>;
}

function grant(ctx: AuthServices, rule: AuthRule, creds: Credentials): Granted[AuthRule] | Promise<Granted[AuthRule]> {
  if (rule === 'anonymous') return { who: null };
  if (rule === 'peer') {
    const peer = peerOf(creds.socket as TLSSocket, ctx.trust);
    if (peer) return { who: null, peer };
    // Tokens count for nothing here; an unknown one is still refused as such.
    identify(ctx, creds);
    throw fail('FORBIDDEN', 'only trusted peer servers may use this route');
  }
  const who = identify(ctx, creds);
  if (rule === 'worker') {
    if (who.kind !== 'worker') throw fail('FORBIDDEN', 'only worker tokens may use this route');
    return { who };
  }
  if (who.kind !== 'user') throw fail('FORBIDDEN', 'worker tokens reach only the worker routes');
  switch (rule) {
    case 'user':
      return { who };
    case 'superuser':
      if (!who.superuser) throw fail('FORBIDDEN', 'only super users may do this');
      return { who };
    case 'member':
      return { who, project: visibleProject(ctx, who, creds.params.project ?? '') };
    case 'owner': {
      const project = visibleProject(ctx, who, creds.params.project ?? '');
      if (!who.superuser && project.owner !== who.user) {
        throw fail('FORBIDDEN', `only the owner of '${project.name}' or a super user may do this`);
      }
      return { who, project };
    }
    case 'job':
      return visibleJob(ctx, who, creds.params.id ?? '').then((seen) => ({ who, ...seen }));
  }
}

export function canSee(who: UserIdentity, project: Project): boolean {
  return who.superuser || project.owner === who.user || project.members.includes(who.user);
}

/** The project, if the user may see it; otherwise PROJECT_NOT_FOUND, as if it did not exist. */
export function visibleProject(ctx: AuthServices, who: UserIdentity, name: string): Project {
  const project = ctx.store.model.projects.get(name);
  if (!project || !canSee(who, project)) throw fail('PROJECT_NOT_FOUND', `no project named '${name}'`);
  return project;
}

/** A live job the user may see; otherwise JOB_NOT_FOUND. */
export function visibleLiveJob(ctx: AuthServices, who: UserIdentity, given: string): Job {
  check(jobRefParam, given, 'id');
  const id = fullJobId(ctx, who, given);
  const job = ctx.store.model.job(id);
  const project = job && ctx.store.model.projects.get(job.project);
  if (!job || !project || !canSee(who, project)) throw fail('JOB_NOT_FOUND', `no job with id '${id}'`);
  return job;
}

/** A live or archived job the user may see; otherwise JOB_NOT_FOUND. */
export async function visibleJob(ctx: AuthServices, who: UserIdentity, given: string): Promise<{ job: Job; archived: boolean; project: Project }> {
  check(jobRefParam, given, 'path.id');
  const id = fullJobId(ctx, who, given);
  const model = ctx.store.model;
  const live = model.job(id);
  // Archived jobs are found through the model's index: an id it does not know costs no read at all.
  const home = live ? undefined : model.archivedProjectOf(id);
  const job = live ?? (home === undefined ? null : ((await ctx.store.archive.get(id, home)) as Job | null));
  const project = job && ctx.store.model.projects.get(job.project);
  if (!job || !project || !canSee(who, project)) throw fail('JOB_NOT_FOUND', `no job with id '${id}'`);
  return { job, archived: !live, project };
}

/**
 * The whole id of the job `given` names (core/short-ids.ts: the whole id, or
 * a part of its start or end), chosen among the jobs, live and archived, of
 * the projects the user may see: a job they may not see is neither found nor
 * named as a candidate. A whole id is returned as it is; the caller looks it up.
 */
export function fullJobId(ctx: AuthServices, who: UserIdentity, given: string): string {
  if (isFullId(given)) return given;
  const model = ctx.store.model;
  const seen = new Map<string, boolean>();
  const visible = (name: string): boolean => {
    let ok = seen.get(name);
    if (ok === undefined) {
      const project = model.projects.get(name);
      seen.set(name, (ok = project !== undefined && canSee(who, project)));
    }
    return ok;
  };
  const search = new IdSearch(given, 'job', 'JOB_NOT_FOUND');
  const { match } = search;
  // The id first, the project only for a match: a scan of a million jobs takes some tens of milliseconds.
  for (const job of model.jobs.values()) if (match(job.id) && visible(job.project)) search.add(job.id);
  for (const [id, project] of model.archivedJobs()) if (match(id) && visible(project)) search.add(id);
  return search.answer();
}
