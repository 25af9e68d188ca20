import type { LoginReply, ServerInfo, WhoAmI } from '../../core/wire.js';
import type { Context } from '../start/context.js';
import type { Router } from '../http/router.js';
import { loginSchema } from './schemas.js';

export function sessionRoutes(router: Router, ctx: Context): void {
  const throttle = ctx.loginThrottle;

  router.add('GET', '/info', { auth: 'anonymous', summary: 'who this server is' }, (): ServerInfo => ({
    serverId: ctx.identity.serverId,
    name: ctx.config.name,
    version: ctx.version,
    caFingerprint: ctx.identity.caFingerprint,
    heartbeatIntervalS: ctx.config.heartbeatIntervalS,
    time: Date.now(),
  }));

  router.add(
    'POST',
    '/login',
    { auth: 'anonymous', summary: 'exchange a password for a token (failed tries slow further ones down)', body: loginSchema },
    async (req): Promise<LoginReply> => {
      const attempt = throttle.begin(req.body.user, req.raw.socket.remoteAddress ?? 'unknown');
      const { token, record, user } = await ctx.accounts.login(req.body.user, req.body.password);
      attempt.succeeded();
      ctx.passwordUsed(user.name);
      ctx.log.info('user logged in', { user: user.name });
      return { token, user: user.name, superuser: user.superuser, expiresAt: record.expiresAt ?? 0 };
    },
  );

  router.add('POST', '/logout', { auth: 'user', summary: 'revoke the token of this request' }, async (req) => {
    await ctx.accounts.revoke(req.who.tokenId);
    return { ok: true };
  });

  router.add('GET', '/whoami', { auth: 'user', summary: 'the user this token belongs to' }, (req): WhoAmI => ({
    user: req.who.user,
    superuser: req.who.superuser,
  }));
}
