/**
 * Federation as an admin drives it: connection requests, trust, the order in
 * which peers are asked for work, and disconnecting. Super users only.
 */
import { z } from 'zod';
import type {
  ConnectServerReply,
  PeerCaView,
  RequestClaimView,
  DisconnectReply,
  PeerView,
  PeersView,
  ReceivedRequestView,
  SentRequestView,
  TrustReply,
} from '../../core/wire.js';
import { DEFAULT_UNSECURE_PORT, type TrustOutcome } from '../../federation/handshake.js';
import { serverIdSchema } from '../../federation/handshake-schemas.js';
import type { Peer, ReceivedRequest, RequestClaim, SentRequest } from '../../federation/trust-store.js';
import type { Context } from '../start/context.js';
import { peerView } from './views.js';
import type { Router } from '../http/router.js';

const fingerprintSchema = z.string().min(1).max(200);

const peerAddress = {
  host: z
    .string()
    .min(1)
    .max(253)
    .regex(/^[A-Za-z0-9._:-]+$/, 'must be a host name or an IP address'),
  port: z.int().min(1).max(65535).optional(),
};
const lookupSchema = z.strictObject(peerAddress);
// The CA the admin confirmed: 32 bytes in hex, with or without colons.
const pinnedFingerprint = z
  .string()
  .max(200)
  .refine((fp) => fp.replace(/^sha-?256[:=]?/i, '').replace(/[^0-9a-f]/gi, '').length === 64, 'must be a SHA-256 fingerprint (64 hex digits)');
const connectSchema = z.strictObject({ ...peerAddress, caFingerprint: pinnedFingerprint });
const trustSchema = z.strictObject({ caFingerprint: fingerprintSchema.optional() });
const trustAllSchema = z.strictObject({
  expect: z.array(z.strictObject({ serverId: serverIdSchema, caFingerprint: fingerprintSchema })).max(1000).optional(),
});
const prioritySchema = z.strictObject({ priority: z.int().min(0).max(1_000_000) });
const peerParams = z.strictObject({ id: serverIdSchema });

export function peerRoutes(router: Router, ctx: Context): void {
  const view = (p: Peer): PeerView => peerView(p, ctx.linkState?.(p.serverId) ?? 'down');
  const connected = () => ctx.trust.peers().map(view);
  const trusted = (o: TrustOutcome) => ({ ...view(o.peer), told: o.told });

  router.add('GET', '/peers', { auth: 'superuser', summary: 'connection requests sent and received, and trusted peers in priority order' }, (): PeersView => {
    return {
      sent: ctx.trust.sentRequests().map(sentView),
      received: ctx.trust.receivedRequests().map(receivedView),
      connected: connected(),
    };
  });

  router.add('POST', '/peers/ca', { auth: 'superuser', summary: "the CA a server shows on its unsecure port, as seen from here", body: lookupSchema }, async (req): Promise<PeerCaView> => {
    const port = req.body.port ?? DEFAULT_UNSECURE_PORT;
    return { host: req.body.host, port, ...(await ctx.handshake.lookup(req.body.host, port)) };
  });

  router.add('POST', '/peers/connect', { auth: 'superuser', summary: "send a connection request to a server's unsecure port, pinning its CA", body: connectSchema }, async (req): Promise<ConnectServerReply> => {
    const body = req.body;
    const out = await ctx.handshake.connect(body.host, body.port ?? DEFAULT_UNSECURE_PORT, body.caFingerprint);
    return {
      sent: out.sent ? sentView(out.sent) : null,
      connected: out.peer ? view(out.peer) : null,
      serverId: ctx.identity.serverId,
      caFingerprint: ctx.identity.caFingerprint,
    };
  });

  router.add('POST', '/peers/trust-all', { auth: 'superuser', summary: 'trust every waiting request (or those expected)', body: trustAllSchema.optional() }, async (req): Promise<TrustReply> => {
    const body = req.body ?? {};
    const out = await ctx.handshake.trustAll(body.expect);
    return { trusted: out.trusted.map(trusted), skipped: out.skipped };
  });

  router.add(
    'POST',
    '/peers/:id/trust',
    { auth: 'superuser', summary: 'trust a server that asked to connect', params: peerParams, body: trustSchema.optional() },
    async (req): Promise<TrustReply> => {
    const id = req.params.id;
    const body = req.body ?? {};
    const out = await ctx.handshake.trust(id, body.caFingerprint);
    return { trusted: [trusted(out)], skipped: [] };
    },
  );

  router.add(
    'PUT',
    '/peers/:id/priority',
    { auth: 'superuser', summary: 'move a peer to a place in the order peers are asked for work', params: peerParams, body: prioritySchema },
    async (req): Promise<{ connected: PeerView[] }> => {
    const id = req.params.id;
    const body = req.body;
    return { connected: (await ctx.trust.setPriority(id, body.priority)).map(view) };
    },
  );

  router.add('DELETE', '/peers/:id', { auth: 'superuser', summary: 'end trust in a peer (and tell it), or withdraw requests', params: peerParams }, async (req): Promise<DisconnectReply> => {
    const id = req.params.id;
    const out = await ctx.handshake.disconnect(id);
    return { serverId: id, ...out };
  });
}

function sentView(s: SentRequest): SentRequestView {
  return { host: s.host, port: s.port, peerServerId: s.peerServerId, peerName: s.peerName, caFingerprint: s.caFingerprint ?? null, sentAt: s.sentAt };
}

function claimView(c: RequestClaim): RequestClaimView {
  return {
    name: c.name,
    host: c.host,
    unsecurePort: c.unsecurePort,
    securePort: c.securePort,
    caFingerprint: c.caFingerprint,
    source: c.source,
    receivedAt: c.receivedAt,
  };
}

function receivedView(r: ReceivedRequest): ReceivedRequestView {
  return { serverId: r.serverId, ...claimView(r), conflicts: (r.conflicts ?? []).map(claimView) };
}
