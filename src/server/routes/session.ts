import type { LoginReply, ServerInfo, WhoAmI } from '../../core/wire.js';
import { requireUser } from '../auth.js';
import type { Context } from '../context.js';
import type { Router } from '../http.js';
import { check, loginSchema } from '../schemas.js';

export function sessionRoutes(router: Router, ctx: Context): void {
  router.add('GET', '/info', (): ServerInfo => ({
    serverId: ctx.identity.serverId,
    name: ctx.config.name,
    version: ctx.version,
    caFingerprint: ctx.identity.caFingerprint,
    heartbeatIntervalS: ctx.config.heartbeatIntervalS,
    time: Date.now(),
  }));

  router.add('POST', '/login', async (req): Promise<LoginReply> => {
    const body = check(loginSchema, req.body);
    const { token, record, user } = await ctx.accounts.login(body.user, body.password);
    ctx.log.info('user logged in', { user: user.name });
    return { token, user: user.name, superuser: user.superuser, expiresAt: record.expiresAt ?? 0 };
  });

  router.add('POST', '/logout', async (req) => {
    const who = requireUser(ctx, req);
    await ctx.accounts.revoke(who.tokenId);
    return { ok: true };
  });

  router.add('GET', '/whoami', (req): WhoAmI => {
    const who = requireUser(ctx, req);
    return { user: who.user, superuser: who.superuser };
  });
}
