import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  acceptAnswerSchema,
  connectRequestSchema,
  disconnectNoticeSchema,
  peerMovedNoticeSchema,
  statusRequestSchema,
} from '../federation/handshake-schemas.js';
import type { Context } from './context.js';
import { Reply, Router, makeRequestListener } from './http.js';
import { check } from './schemas.js';

/**
 * The plain-HTTP listener. It serves only what must happen before trust
 * exists, or after it ended: the CA certificate and its fingerprint (so that
 * clients can pin it after comparing the fingerprint), the connection
 * handshake between servers, and the signed notices peers send each other.
 * Bodies are JSON, small, and checked like every other input.
 */

/** Every body here is a few kilobytes at most. */
export const UNSECURE_MAX_BODY_BYTES = 64 * 1024;

export function unsecureRoutes(ctx: Context): Router {
  const router = new Router();
  const caInfo = () => ({
    serverId: ctx.identity.serverId,
    name: ctx.config.name,
    caPem: ctx.identity.caCertPem,
    caFingerprint: ctx.identity.caFingerprint,
    securePort: ctx.securePort(),
  });
  const caPem = () => new Reply(200, ctx.identity.caCertPem, 'application/x-pem-file');
  for (const method of ['GET', 'HEAD']) {
    router.add(method, '/ca', caInfo);
    router.add(method, '/ca.pem', caPem);
  }

  router.add('POST', '/connect-request', (req) => ctx.handshake.onConnectRequest(check(connectRequestSchema, req.body)));
  router.add('POST', '/connect-accept', async (req) => {
    await ctx.handshake.onAccept(check(acceptAnswerSchema, req.body));
    return { ok: true };
  });
  router.add('POST', '/connect-status', (req) => ctx.handshake.onStatus(check(statusRequestSchema, req.body)));
  router.add('POST', '/disconnect', async (req) => {
    await ctx.handshake.onDisconnect(check(disconnectNoticeSchema, req.body));
    return { ok: true };
  });
  router.add('POST', '/peer-moved', async (req) => ({
    ok: true,
    changed: await ctx.handshake.onPeerMoved(check(peerMovedNoticeSchema, req.body)),
  }));
  return router;
}

export function unsecureListener(ctx: Context, closing: () => boolean): (req: IncomingMessage, res: ServerResponse) => void {
  return makeRequestListener({ router: unsecureRoutes(ctx), prefix: '', maxBodyBytes: UNSECURE_MAX_BODY_BYTES, log: ctx.log, closing });
}
