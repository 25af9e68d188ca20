/**
 * The names of the access rules and what each hands a route's handler: the
 * data the router needs to type its routes. Deciding who passes a rule is
 * auth.ts's, handed to the router as a function (Authorize), so the router
 * does not depend on accounts, jobs or peers.
 */
import type { Job, Project } from '../../core/types.js';
import type { Peer } from '../../federation/trust-store.js';
import type { Identity } from '../accounts/accounts.js';

export type UserIdentity = Extract<Identity, { kind: 'user' }>;
export type WorkerIdentity = Extract<Identity, { kind: 'worker' }>;

/** What each rule hands the handler once it lets the caller in. */
export interface Granted {
  anonymous: { who: null };
  user: { who: UserIdentity };
  superuser: { who: UserIdentity };
  worker: { who: WorkerIdentity };
  member: { who: UserIdentity; project: Project };
  owner: { who: UserIdentity; project: Project };
  job: { who: UserIdentity; project: Project; job: Job; archived: boolean };
  peer: { who: null; peer: Peer };
}

export type AuthRule = keyof Granted;

export const AUTH_RULES: readonly AuthRule[] = ['anonymous', 'user', 'member', 'owner', 'job', 'superuser', 'worker', 'peer'];

