/**
 * Notices a server sends to a peer over the plain unsecure port ("I no longer
 * trust you", "I moved"). Plain HTTP proves nothing about the sender, so each
 * notice carries the sender's server certificate and an RSA-SHA256 signature
 * made with its server key over a fixed text naming the sender, the facts
 * and the time. The receiver acts only if that certificate was issued by the
 * CA it trusted for the sender's id, names that id, and signed the text,
 * and the time is within five minutes of its own clock.
 */
import { X509Certificate, sign, verify } from 'node:crypto';
import { fail } from '../core/errors.js';
import { serverIdFromCert } from './certificates.js';
import type { PeerAddress, Peer, TrustStore } from './trust-store.js';

export const NOTICE_MAX_AGE_MS = 5 * 60 * 1000;

export interface NoticeProof {
  /** The sender's server certificate, PEM. */
  certPem: string;
  /** Milliseconds since the epoch, by the sender's clock. */
  at: number;
  /** base64 RSA-SHA256 signature of the notice text. */
  signature: string;
}

export function disconnectText(from: string, to: string, at: number): string {
  return `disconnect:${from}:${to}:${at}`;
}

export function movedText(from: string, address: PeerAddress, at: number): string {
  return `moved:${from}:${address.host}:${address.unsecurePort}:${address.securePort}:${at}`;
}

export function signText(text: string, keyPem: string): string {
  return sign('sha256', Buffer.from(text, 'utf8'), keyPem).toString('base64');
}

/**
 * Remembers signatures already acted on until they are too old to pass the
 * clock check anyway, so a captured notice cannot be played again.
 */
export class ReplayGuard {
  private readonly seen = new Map<string, number>();

  /** False if this signature was used before. */
  use(signature: string, now: number): boolean {
    for (const [sig, expires] of this.seen) if (expires <= now) this.seen.delete(sig);
    if (this.seen.has(signature)) return false;
    this.seen.set(signature, now + 2 * NOTICE_MAX_AGE_MS);
    return true;
  }
}

/** The trusted peer `from`, if `proof` shows that it signed `text`; else a coded error. */
export function verifyNotice(store: TrustStore, from: string, text: string, proof: NoticeProof, now = Date.now()): Peer {
  const peer = store.peer(from);
  const ca = store.caCertificate(from);
  if (!peer || !ca) throw fail('PEER_NOT_FOUND', `server ${from} is not trusted here`);
  if (Math.abs(now - proof.at) > NOTICE_MAX_AGE_MS) {
    throw fail('BAD_SIGNATURE', 'the notice is more than five minutes away from this server\'s clock');
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(proof.certPem);
  } catch {
    throw fail('BAD_SIGNATURE', 'the notice\'s certificate cannot be parsed');
  }
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) {
    throw fail('BAD_SIGNATURE', `the notice's certificate was not issued by the CA trusted for ${from}`);
  }
  if (serverIdFromCert(cert) !== from) throw fail('BAD_SIGNATURE', `the notice's certificate is not for server ${from}`);
  if (Date.parse(cert.validTo) <= now || Date.parse(cert.validFrom) > now) {
    throw fail('BAD_SIGNATURE', 'the notice\'s certificate is not valid now');
  }
  let good = false;
  try {
    good = verify('sha256', Buffer.from(text, 'utf8'), cert.publicKey, Buffer.from(proof.signature, 'base64'));
  } catch {
    good = false;
  }
  if (!good) throw fail('BAD_SIGNATURE', 'the notice\'s signature does not match');
  return peer;
}
