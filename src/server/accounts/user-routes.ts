/**
 * Users and who may use which project. Super users add, list and remove
 * users and reset their passwords; every user changes their own password;
 * a project's owner (or a super user) grants and revokes access to it.
 */
import { fail } from '../../core/errors.js';
import type { Project } from '../../core/types.js';
import type { PasswordChanged, ProjectView, UserRemoved, UserView } from '../../core/wire.js';
import type { UserRecord } from './accounts.js';
import type { Context } from '../start/context.js';
import type { Router } from '../http/router.js';
import { addUserSchema, changeOwnPasswordSchema, grantSchema, memberParams, setPasswordSchema } from './schemas.js';
import { projectParams, userParams } from '../http/schemas.js';
import { projectView } from '../jobs/views.js';

const userView = (u: UserRecord): UserView => ({ name: u.name, superuser: u.superuser, createdAt: u.createdAt });

export function userRoutes(router: Router, ctx: Context): void {
  const model = () => ctx.store.model;
  const viewOf = (p: Project): ProjectView => projectView(p, model().countsOf(p.name));

  /** Sets a project's members; one journaled event, nothing when they are already so. */
  const setMembers = async (project: Project, members: string[]): Promise<void> => {
    if (members.length === project.members.length && members.every((m, i) => project.members[i] === m)) return;
    await ctx.store.commit({ t: 'members-changed', at: Date.now(), project: project.name, members });
  };

  router.add('GET', '/users', { auth: 'superuser', summary: 'every user' }, (): { users: UserView[] } => ({
    users: ctx.accounts.users().map(userView),
  }));

  router.add('POST', '/users', { auth: 'superuser', summary: 'add a user (super users only)', body: addUserSchema }, async (req): Promise<UserView> => {
    const { name, password, superuser } = req.body;
    const user = await ctx.accounts.addUser(name, password, superuser ?? false);
    ctx.log.info('user added', { user: name, superuser: user.superuser, by: req.who.user });
    return userView(user);
  });

  router.add(
    'DELETE',
    '/users/:name',
    { auth: 'superuser', summary: "remove a user and revoke their tokens; refused while they own projects", params: userParams },
    async (req): Promise<UserRemoved> => {
      const name = req.params.name;
      ctx.accounts.checkRemovable(name);
      // A later user of the same name must not inherit anything of theirs.
      const owned = [...model().projects.values()].filter((p) => p.owner === name).map((p) => p.name);
      if (owned.length > 0) {
        throw fail('INVALID_STATE', `'${name}' owns ${owned.length === 1 ? 'project' : 'projects'} ${owned.slice(0, 5).join(', ')}${owned.length > 5 ? '…' : ''}; remove them first`);
      }
      // The memberships (journal) go before the user (accounts): a crash in
      // between leaves a user who is a member of nothing, and removing them
      // again finishes the job; never memberships that a later user of the
      // same name would inherit.
      const memberOf = [...model().projects.values()].filter((p) => p.members.includes(name));
      for (const p of memberOf) {
        const now = model().projects.get(p.name);
        if (now) await setMembers(now, now.members.filter((m) => m !== name));
      }
      if (model().weightOf('user', name) !== 1) await ctx.store.commit({ t: 'weight-set', at: Date.now(), of: 'user', name, weight: 1 });
      const revoked = await ctx.accounts.removeUser(name);
      ctx.log.info('user removed', { user: name, by: req.who.user, tokensRevoked: revoked });
      return { removed: name, tokensRevoked: revoked, projectsLeft: memberOf.map((p) => p.name) };
    },
  );

  router.add(
    'PUT',
    '/users/:name/password',
    { auth: 'superuser', summary: "set a user's password; revokes all their tokens (but the caller's own)", params: userParams, body: setPasswordSchema },
    async (req): Promise<PasswordChanged> => {
      const name = req.params.name;
      const keep = name === req.who.user ? req.who.tokenId : undefined;
      const revoked = await ctx.accounts.setPassword(name, req.body.password, keep);
      ctx.passwordUsed(name);
      ctx.log.info('password set', { user: name, by: req.who.user, tokensRevoked: revoked });
      return { user: name, tokensRevoked: revoked };
    },
  );

  router.add(
    'PUT',
    '/me/password',
    { auth: 'user', summary: 'change your password; revokes your other tokens', body: changeOwnPasswordSchema },
    async (req): Promise<PasswordChanged> => {
      const name = req.who.user;
      // The current password is asked for so that a stolen token alone cannot lock the user out.
      if (!(await ctx.accounts.checkPassword(name, req.body.current))) throw fail('BAD_CREDENTIALS', 'the current password is wrong');
      const revoked = await ctx.accounts.setPassword(name, req.body.password, req.who.tokenId);
      ctx.passwordUsed(name);
      ctx.log.info('password changed', { user: name, tokensRevoked: revoked });
      return { user: name, tokensRevoked: revoked };
    },
  );

  router.add(
    'POST',
    '/projects/:project/members',
    { auth: 'owner', summary: 'give a user full access to a project (owner or super user)', params: projectParams, body: grantSchema },
    async (req): Promise<ProjectView> => {
      const { project } = req;
      const user = req.body.user;
      if (!ctx.accounts.user(user)) throw fail('USER_NOT_FOUND', `no user named '${user}'`);
      if (user !== project.owner && !project.members.includes(user)) await setMembers(project, [...project.members, user]);
      return viewOf(model().project(project.name));
    },
  );

  router.add(
    'DELETE',
    '/projects/:project/members/:user',
    { auth: 'owner', summary: "take a user's access to a project away (owner or super user)", params: memberParams },
    async (req): Promise<ProjectView> => {
      const { project } = req;
      const user = req.params.user;
      if (user === project.owner) throw fail('INVALID_STATE', `'${user}' owns '${project.name}'; an owner's access cannot be revoked`);
      await setMembers(project, project.members.filter((m) => m !== user));
      return viewOf(model().project(project.name));
    },
  );
}
