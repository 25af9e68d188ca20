import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  acceptAnswerSchema,
  connectRequestSchema,
  disconnectNoticeSchema,
  peerMovedNoticeSchema,
  statusRequestSchema,
} from '../../federation/handshake-schemas.js';
import { requestSource } from '../../federation/handshake.js';
import type { Context } from '../start/context.js';
import { Reply, Router, anonymousOnly, makeRequestListener } from '../http/router.js';

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
  // Everyone may ask: these come before any trust exists, and each is checked on its own merits.
  const open = { auth: 'anonymous' } as const;
  for (const method of ['GET', 'HEAD'] as const) {
    router.add(method, '/ca', { ...open, summary: "this server's id, CA certificate and its fingerprint, and secure port" }, caInfo);
    router.add(method, '/ca.pem', { ...open, summary: "this server's CA certificate (PEM)", text: true }, caPem);
  }

  router.add('POST', '/connect-request', { ...open, summary: 'a server asks to connect', body: connectRequestSchema }, (req) =>
    ctx.handshake.onConnectRequest(req.body, requestSource(req.raw.socket.remoteAddress)),
  );
  router.add('POST', '/connect-accept', { ...open, summary: 'a server this one asked answers that it trusts it', body: acceptAnswerSchema }, async (req) => {
    await ctx.handshake.onAccept(req.body);
    return { ok: true };
  });
  router.add('POST', '/connect-status', { ...open, summary: 'has the request been trusted yet?', body: statusRequestSchema }, (req) =>
    ctx.handshake.onStatus(req.body),
  );
  router.add('POST', '/disconnect', { ...open, summary: 'a signed notice that a peer ended trust', body: disconnectNoticeSchema }, async (req) => {
    await ctx.handshake.onDisconnect(req.body);
    return { ok: true };
  });
  router.add('POST', '/peer-moved', { ...open, summary: "a signed notice of a peer's new address", body: peerMovedNoticeSchema }, async (req) => ({
    ok: true,
    changed: await ctx.handshake.onPeerMoved(req.body),
  }));
  return router;
}

export function unsecureListener(ctx: Context, closing: () => boolean): (req: IncomingMessage, res: ServerResponse) => void {
  return makeRequestListener({
    router: unsecureRoutes(ctx),
    prefix: '',
    maxBodyBytes: UNSECURE_MAX_BODY_BYTES,
    log: ctx.log,
    authorize: anonymousOnly,
    closing,
  });
}
