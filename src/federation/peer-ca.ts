/**
 * The check a CA certificate offered by another server must pass before it is
 * stored anywhere: one PEM block, a self-signed RSA CA signed with SHA-256,
 * in its validity period, and made for the server id that offers it.
 */
import { X509Certificate } from 'node:crypto';
import forge from 'node-forge';
import { fail } from '../core/errors.js';
import { isServerId, serverIdFromCert } from './certificates.js';

/** Longest CA certificate accepted; ours are about 1.3 KB. */
export const MAX_CA_PEM_CHARS = 16 * 1024;
const MIN_RSA_BITS = 2048;
const ONE_PEM_CERT = /^\s*-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\s*$/;
const SHA256_WITH_RSA = forge.pki.oids.sha256WithRSAEncryption!;

export interface CheckedCa {
  cert: X509Certificate;
  fingerprint: string;
}

/**
 * The server id a CA was made for, from its subject `CN=cpc CA <id>`. CAs
 * carry no `urn:cpc:server:` URI, so that a CA is never taken for a server
 * certificate; one that does anyway must name the same id.
 */
export function serverIdOfCa(cert: X509Certificate): string | null {
  const m = /(?:^|\n)CN=cpc CA (\S+)(?:\n|$)/.exec(cert.subject);
  const fromSubject = m?.[1]?.toLowerCase();
  if (fromSubject === undefined || !isServerId(fromSubject)) return null;
  const fromSan = serverIdFromCert(cert);
  if (fromSan !== null && fromSan !== fromSubject) return null;
  return fromSubject;
}

/** The parsed CA and its fingerprint, or INVALID_CERTIFICATE saying what is wrong. */
export function checkPeerCa(caPem: string, serverId: string, now: number = Date.now()): CheckedCa {
  const bad = (why: string): never => {
    throw fail('INVALID_CERTIFICATE', `the CA certificate ${why}`);
  };
  if (caPem.length > MAX_CA_PEM_CHARS) bad(`is over ${MAX_CA_PEM_CHARS} characters`);
  if (!ONE_PEM_CERT.test(caPem)) bad('must be exactly one PEM certificate');
  let cert: X509Certificate;
  let signatureOid: string;
  try {
    cert = new X509Certificate(caPem);
    // Node 20 does not tell the signature algorithm; forge does.
    signatureOid = forge.pki.certificateFromPem(caPem).signatureOid;
  } catch {
    return bad('cannot be parsed');
  }
  if (!cert.ca) bad('is not a CA certificate');
  const key = cert.publicKey;
  if (key.asymmetricKeyType !== 'rsa') bad(`has a ${key.asymmetricKeyType ?? 'unknown'} key, not RSA`);
  if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS) bad(`has an RSA key shorter than ${MIN_RSA_BITS} bits`);
  if (signatureOid !== SHA256_WITH_RSA) bad('is not signed with SHA-256 and RSA');
  if (!cert.checkIssued(cert) || !cert.verify(key)) bad('is not self-signed');
  if (Date.parse(cert.validTo) <= now) bad(`expired on ${new Date(cert.validTo).toISOString()}`);
  if (Date.parse(cert.validFrom) > now) bad(`is not valid before ${new Date(cert.validFrom).toISOString()}`);
  const id = serverIdOfCa(cert);
  if (id === null) bad('carries no cpc server id');
  if (id !== serverId.toLowerCase()) bad(`was made for server ${id}, not for ${serverId}`);
  return { cert, fingerprint: cert.fingerprint256 };
}
