/**
 * Who is on the other end of an mTLS connection. TLS itself only says that
 * the certificate chains to one of the trusted CAs; that is not enough, as
 * each peer's CA could issue a certificate carrying another peer's id. So a
 * peer is recognised only if the CA trusted for the id in the certificate is
 * the one that issued it.
 */
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { serverIdFromCert } from './certificates.js';
import type { Peer, TrustStore } from './trust-store.js';

/** The certificate the other end presented, or null if it sent none. */
export function presentedCertificate(socket: TLSSocket): X509Certificate | null {
  const raw = socket.getPeerCertificate()?.raw;
  if (!raw || raw.length === 0) return null;
  try {
    return new X509Certificate(raw);
  } catch {
    return null;
  }
}

/** Whether `ca` issued and signed `cert`. */
export function issuedBy(cert: X509Certificate, ca: X509Certificate): boolean {
  try {
    return cert.checkIssued(ca) && cert.verify(ca.publicKey);
  } catch {
    return false;
  }
}

/**
 * The trusted peer on the other end of `socket`: the one whose id is in the
 * certificate's `urn:cpc:server:` URI, and whose stored CA issued that
 * certificate. Null for anyone else, including a connection TLS did not authorise.
 */
export function peerOf(socket: TLSSocket, store: TrustStore): Peer | null {
  if (!socket.authorized) return null;
  const cert = presentedCertificate(socket);
  if (!cert) return null;
  return peerOfCertificate(cert, store);
}

/** As `peerOf`, for a certificate already in hand. */
export function peerOfCertificate(cert: X509Certificate, store: TrustStore, now = Date.now()): Peer | null {
  const id = serverIdFromCert(cert);
  if (id === null) return null;
  const peer = store.peer(id);
  const ca = store.caCertificate(id);
  if (!peer || !ca || !issuedBy(cert, ca)) return null;
  if (Date.parse(cert.validTo) <= now || Date.parse(cert.validFrom) > now) return null;
  return peer;
}
