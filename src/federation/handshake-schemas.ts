/**
 * The bodies servers exchange on each other's unsecure port, before trust
 * exists (and for the signed notices after it ends). Requests are checked
 * strictly; answers from peers tolerate fields a newer version may add.
 *
 *   GET  /ca                                → CaReply
 *   POST /connect-request  ConnectRequest   → ConnectRequestReply
 *   POST /connect-accept   AcceptAnswer     → { ok }
 *   POST /connect-status   StatusRequest    → StatusReply
 *   POST /disconnect       DisconnectNotice → { ok }
 *   POST /peer-moved       PeerMovedNotice  → { ok, changed }
 */
import { z } from 'zod';
import { MAX_CA_PEM_CHARS } from './peer-ca.js';

export const serverIdSchema = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'must be a server id (lower-case uuid)');
// 32 random bytes in base64url without padding.
export const nonceSchema = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'must be 32 bytes in base64url');
const serverName = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[^\p{Cc}]+$/u, 'must not hold control characters');
// Host names, IPv4 and IPv6 literals; nothing that could bend a URL.
const host = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[A-Za-z0-9._:-]+$/, 'must be a host name or an IP address');
const port = z.int().min(1).max(65535);
const caPem = z.string().min(1).max(MAX_CA_PEM_CHARS);
const at = z.int().min(0).max(8.64e15);
const certPem = z.string().min(1).max(MAX_CA_PEM_CHARS);
const signature = z.string().min(1).max(2048).regex(/^[A-Za-z0-9+/]+={0,2}$/, 'must be base64');

const connectFields = {
  serverId: serverIdSchema,
  name: serverName,
  host,
  unsecurePort: port,
  securePort: port,
  caPem,
  nonce: nonceSchema,
};

export const connectRequestSchema = z.strictObject(connectFields);
export type ConnectRequest = z.infer<typeof connectRequestSchema>;

/** The trusting side's answer: its own details and the requester's nonce. */
export const acceptAnswerSchema = z.strictObject(connectFields);
export type AcceptAnswer = z.infer<typeof acceptAnswerSchema>;
const acceptAnswerLoose = z.object(connectFields);

/** What a server says about itself on GET /ca; its CA is checked, and its fingerprint computed, by the asker. */
export const caReplySchema = z.object({ serverId: serverIdSchema, name: z.string().max(128), caPem });
export type CaReply = z.infer<typeof caReplySchema>;

export const connectRequestReplySchema = z.object({
  serverId: serverIdSchema,
  name: serverName,
  /** Present when the requester is trusted already: the handshake completes at once. */
  accept: acceptAnswerLoose.optional(),
});
export type ConnectRequestReply = z.infer<typeof connectRequestReplySchema>;

export const statusRequestSchema = z.strictObject({ serverId: serverIdSchema, nonce: nonceSchema });
export type StatusRequest = z.infer<typeof statusRequestSchema>;

export const statusReplySchema = z.discriminatedUnion('state', [
  z.object({ state: z.literal('pending') }),
  z.object({ state: z.literal('accepted'), accept: acceptAnswerLoose }),
]);
export type StatusReply = z.infer<typeof statusReplySchema>;

const proofFields = { at, certPem, signature };

export const disconnectNoticeSchema = z.strictObject({ from: serverIdSchema, to: serverIdSchema, ...proofFields });
export type DisconnectNotice = z.infer<typeof disconnectNoticeSchema>;

export const peerMovedNoticeSchema = z.strictObject({
  from: serverIdSchema,
  host,
  unsecurePort: port,
  securePort: port,
  ...proofFields,
});
export type PeerMovedNotice = z.infer<typeof peerMovedNoticeSchema>;

export const okReplySchema = z.object({ ok: z.literal(true) });
