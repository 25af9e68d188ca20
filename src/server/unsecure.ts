import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Context } from './context.js';

/**
 * The plain-HTTP listener. It serves only what must be public before any
 * trust exists: the CA certificate and its fingerprint, so that clients can
 * pin it (trust on first use, after comparing the fingerprint).
 */
export function unsecureListener(ctx: Context) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return send(405, 'application/json', JSON.stringify({ error: { code: 'METHOD_NOT_ALLOWED', message: `${req.method} is not allowed here` } }));
    }
    if (path === '/ca') {
      return send(
        200,
        'application/json',
        JSON.stringify({
          serverId: ctx.identity.serverId,
          name: ctx.config.name,
          caPem: ctx.identity.caCertPem,
          caFingerprint: ctx.identity.caFingerprint,
          securePort: ctx.securePort(),
        }),
      );
    }
    if (path === '/ca.pem') return send(200, 'application/x-pem-file', ctx.identity.caCertPem);
    send(404, 'application/json', JSON.stringify({ error: { code: 'ROUTE_NOT_FOUND', message: `no route ${req.method} ${path} on the unsecure port` } }));
  };
}
