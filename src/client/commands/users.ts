/**
 * Users and access: add, list and remove users (super users), change a
 * password, and give or take away access to a project (its owner or a
 * super user). Passwords are asked for without echo, or read from stdin.
 */
import type { UserView } from '../../core/wire.js';
import { ago, fail, usage } from '../output.js';
import type { Argument, CommandSpec, Context } from './context.js';
import { askHidden, confirm, readAll } from './prompt.js';

const MIN_PASSWORD = 8;

/** Lines of stdin without their line ends; `count` of them must be there and not be empty. */
async function stdinLines(ctx: Context, count: number, what: string): Promise<string[]> {
  const lines = (await readAll(ctx.io.stdin)).split(/\r?\n/);
  const got = lines.slice(0, count);
  if (got.length < count || got.some((l) => l === '')) usage(`--password-stdin needs ${what} on stdin`);
  return got;
}

/** A new password: asked twice on a terminal, so that a typo does not lock anyone out. */
async function newPassword(ctx: Context, whose: string): Promise<string> {
  if (!ctx.interactive) usage('no terminal to ask for the password; pipe it in with --password-stdin');
  const first = await askHidden(ctx.io, `New password for ${whose}: `);
  if (first.length < MIN_PASSWORD) usage(`password: at least ${MIN_PASSWORD} characters`);
  const again = await askHidden(ctx.io, 'Again: ');
  if (again !== first) fail('the passwords differ; nothing changed');
  return first;
}

async function addUser(ctx: Context, args: Argument[], opts: Record<string, unknown>): Promise<void> {
  const name = String(args[0]);
  const { api } = await ctx.client();
  const password = opts.passwordStdin === true ? (await stdinLines(ctx, 1, 'the password'))[0]! : await newPassword(ctx, name);
  const user = await api.addUser(name, password, opts.superuser === true);
  ctx.out.show(user, () => ctx.out.line(`added ${user.superuser ? 'super user' : 'user'} '${user.name}'`));
}

async function passwd(ctx: Context, args: Argument[], opts: Record<string, unknown>): Promise<void> {
  const { api, server } = await ctx.client();
  const me = server.entry.user;
  const target = (args[0] as string | undefined) ?? me;
  if (!target) usage("who? give a user name, or log in with 'cpcc login USER' first");
  if (target === me) {
    // Your own: the current password proves it is you, not just someone holding your token.
    let current: string;
    let password: string;
    if (opts.passwordStdin === true) {
      [current, password] = (await stdinLines(ctx, 2, 'the current password, then the new one, a line each')) as [string, string];
    } else {
      if (!ctx.interactive) usage('no terminal to ask for the passwords; pipe them in with --password-stdin');
      current = await askHidden(ctx.io, `Current password for ${target}: `);
      password = await newPassword(ctx, target);
    }
    const reply = await api.changePassword(current, password);
    ctx.out.show(reply, () =>
      ctx.out.line(`changed the password of '${target}'; ${reply.tokensRevoked} other session${reply.tokensRevoked === 1 ? '' : 's'} logged out`),
    );
    return;
  }
  const password = opts.passwordStdin === true ? (await stdinLines(ctx, 1, 'the new password'))[0]! : await newPassword(ctx, target);
  const reply = await api.setPassword(target, password);
  ctx.out.show(reply, () => ctx.out.line(`set the password of '${target}'; ${reply.tokensRevoked} session${reply.tokensRevoked === 1 ? '' : 's'} logged out`));
}

async function users(ctx: Context): Promise<void> {
  const { api } = await ctx.client();
  const reply = await api.users();
  const now = Date.now();
  ctx.out.list(reply, reply.users, [
    { header: 'name', value: (u: UserView) => u.name },
    { header: 'super user', value: (u) => (u.superuser ? 'yes' : '') },
    { header: 'created', value: (u) => ago(u.createdAt, now) },
  ], 'no users');
}

async function rmUser(ctx: Context, args: Argument[], opts: Record<string, unknown>): Promise<void> {
  const name = String(args[0]);
  const { api } = await ctx.client();
  if (opts.yes !== true) {
    if (!ctx.interactive) usage(`not removing user '${name}' without confirmation; pass --yes`);
    if (!(await confirm(ctx.io, `Remove user '${name}' and log out all their sessions?`))) fail('not removed');
  }
  const reply = await api.removeUser(name);
  ctx.out.show(reply, () => ctx.out.line(`removed user '${name}'${reply.projectsLeft.length > 0 ? `; no longer a member of ${reply.projectsLeft.join(', ')}` : ''}`));
}

async function grant(ctx: Context, args: Argument[]): Promise<void> {
  const user = String(args[0]);
  const { api } = await ctx.client();
  const project = await ctx.project(args[1] as string | undefined);
  const view = await api.grantAccess(project, user);
  ctx.out.show(view, () => ctx.out.line(`'${user}' has access to '${project}' (members: ${view.members.join(', ') || 'none'})`));
}

async function revoke(ctx: Context, args: Argument[]): Promise<void> {
  const user = String(args[0]);
  const { api } = await ctx.client();
  const project = await ctx.project(args[1] as string | undefined);
  const view = await api.revokeAccess(project, user);
  ctx.out.show(view, () => ctx.out.line(`'${user}' has no access to '${project}' (members: ${view.members.join(', ') || 'none'})`));
}

const passwordStdin = { flags: '--password-stdin', description: 'read the password from stdin instead of asking' };

export const userCommands: CommandSpec[] = [
  {
    name: 'add-user',
    args: ['<user>'],
    summary: 'add a user (super users only); the password is asked for',
    options: [{ flags: '--superuser', description: 'make a super user, who sees and manages everything' }, passwordStdin],
    run: addUser,
  },
  {
    name: 'passwd',
    args: ['[user]'],
    summary: "change your password, or (super users) set another user's",
    help: 'Changing your own asks for the current password first; with --password-stdin, give the current and the new one on two lines.\nYour other sessions are logged out; so are all sessions of a user whose password a super user sets.',
    options: [passwordStdin],
    run: passwd,
  },
  { name: 'users', summary: 'list the users (super users only)', run: users },
  {
    name: 'rm-user',
    args: ['<user>'],
    summary: 'remove a user and log out their sessions (super users only; not while they own projects)',
    options: [{ flags: '-y, --yes', description: 'do not ask' }],
    run: rmUser,
  },
  {
    name: 'grant-access',
    args: ['<user>', '[project]'],
    summary: 'give a user full access to a project (default: the current one); owner or super user',
    run: grant,
  },
  {
    name: 'revoke-access',
    args: ['<user>', '[project]'],
    summary: "take a user's access to a project away (default: the current one); owner or super user",
    run: revoke,
  },
];
