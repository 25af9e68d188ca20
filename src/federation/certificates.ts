/**
 * Certificate helpers for a server's own CA and its server certificate.
 *
 * Peers and clients identify a server by the id written into its certificate
 * as a `urn:cpc:server:<id>` URI subject-alt-name, checked against the CA they
 * trusted for that id, so host names only matter to stock TLS clients.
 */
import {
  X509Certificate,
  createPrivateKey,
  createPublicKey,
  sign as signWithNode,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import type { PeerCertificate } from 'node:tls';
import forge from 'node-forge';
import { takeRsaKey } from './key-pool.js';

export const SERVER_ID_URI_PREFIX = 'urn:cpc:server:';

const CA_YEARS = 10;
const SERVER_YEARS = 5;
// Clocks on peers and clients may lag ours; a certificate that is "not yet
// valid" for them fails in ways that are hard to diagnose.
const CLOCK_SKEW_MS = 24 * 60 * 60 * 1000;

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// Stricter than RFC 1123 on purpose: anything else would be rejected by TLS
// host name checks anyway, and IA5String cannot carry non-ASCII.
const DNS_NAME_RE = /^(?=.{1,253}$)(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

export interface CertAndKey {
  certPem: string;
  keyPem: string;
}

export interface IssueOptions {
  /** Reference time for the validity window; tests use it to mint expired or expiring certificates. */
  now?: Date;
}

/** The subject-alt-names a server certificate carries besides its id. */
export interface ServerNames {
  dns: string[];
  ips: string[];
}

/** A certificate in any form Node hands out: PEM/DER, `X509Certificate`, or a tls peer certificate object. */
export type CertificateInput =
  | string
  | Buffer
  | X509Certificate
  | { subjectaltname?: string };

export function isServerId(value: unknown): value is string {
  return typeof value === 'string' && UUID_RE.test(value);
}

function assertServerId(serverId: string): void {
  if (!isServerId(serverId)) throw new Error(`invalid server id: ${JSON.stringify(serverId)}`);
}

/**
 * Node's native generator (key-pool.ts) takes a fraction of a second where
 * forge's pure-JS one takes seconds and blocks the event loop meanwhile.
 * forge needs only the public half, to write it into the certificate.
 */
async function generateRsaKey(): Promise<{ keyPem: string; forgePub: forge.pki.PublicKey }> {
  const keyPem = await takeRsaKey();
  const publicPem = createPublicKey(keyPem).export({ type: 'spki', format: 'pem' }).toString();
  return { keyPem, forgePub: forge.pki.publicKeyFromPem(publicPem) };
}

/**
 * 16 random bytes, positive, and without a leading zero byte: a zero first
 * byte would make forge emit a non-minimal DER INTEGER, which OpenSSL rejects.
 */
export function randomSerialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f || 0x01;
  return bytes.toString('hex');
}

function addYears(d: Date, years: number): Date {
  const out = new Date(d.getTime());
  out.setUTCFullYear(out.getUTCFullYear() + years);
  return out;
}

function wholeSeconds(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}

function canonicalIp(ip: string): string {
  if (isIP(ip) === 6) {
    // The WHATWG URL parser yields the RFC 5952 form, and turns IPv4-mapped
    // addresses into pure hex, which forge's IPv6 encoder needs.
    return new URL(`http://[${ip}]`).hostname.slice(1, -1);
  }
  return ip;
}

/** Splits host names into DNS names and IP addresses, normalised; throws on a name no TLS client could match. */
export function classifyHostNames(hostNames: readonly string[]): ServerNames {
  const dns: string[] = [];
  const ips: string[] = [];
  for (const raw of hostNames) {
    const name = raw.trim().replace(/^\[(.*)\]$/, '$1');
    if (isIP(name)) {
      const ip = canonicalIp(name);
      if (!ips.includes(ip)) ips.push(ip);
      continue;
    }
    const lower = name.toLowerCase().replace(/\.$/, '');
    if (!DNS_NAME_RE.test(lower)) throw new Error(`invalid host name: ${JSON.stringify(raw)}`);
    if (!dns.includes(lower)) dns.push(lower);
  }
  return { dns, ips };
}

/**
 * Every name a server certificate should carry: loopback, this machine's host
 * name, and the extra names asked for. A machine host name that is not a valid
 * DNS name is left out rather than failing start-up.
 */
export function serverCertificateNames(extraHostNames: readonly string[] = []): ServerNames {
  const base = classifyHostNames(['localhost', '127.0.0.1', '::1']);
  let machine: ServerNames = { dns: [], ips: [] };
  try {
    machine = classifyHostNames([hostname()]);
  } catch {
    // an odd machine name must not keep the server from starting
  }
  const extra = classifyHostNames(extraHostNames);
  const uniq = (xs: string[]) => [...new Set(xs)];
  return {
    dns: uniq([...base.dns, ...machine.dns, ...extra.dns]),
    ips: uniq([...base.ips, ...machine.ips, ...extra.ips]),
  };
}

function subjectKeyIdBytes(cert: forge.pki.Certificate): string {
  // Reuse the identifier the CA actually carries so the chain links even for a
  // CA whose identifier was computed differently.
  const ext = cert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | undefined;
  if (ext?.subjectKeyIdentifier) return forge.util.hexToBytes(ext.subjectKeyIdentifier);
  return cert.generateSubjectKeyIdentifier().getBytes();
}

/**
 * What forge's `cert.sign(key, sha256)` does, with the RSA signature made by
 * Node's crypto (OpenSSL): forge's JavaScript big-number arithmetic took
 * about 50 ms of the event loop per certificate, twice on a first start.
 */
function signSha256(cert: forge.pki.Certificate, keyPem: string): void {
  const oid = forge.pki.oids.sha256WithRSAEncryption!;
  cert.signatureOid = oid;
  cert.siginfo.algorithmOid = oid;
  // Untyped in @types/node-forge, but part of forge's pki (what cert.sign calls).
  const tbs = (forge.pki as unknown as { getTBSCertificate(c: forge.pki.Certificate): forge.asn1.Asn1 }).getTBSCertificate(cert);
  // certificateToAsn1 (and so certificateToPem) takes the cached TBSCertificate, as after cert.sign.
  (cert as forge.pki.Certificate & { tbsCertificate: forge.asn1.Asn1 }).tbsCertificate = tbs;
  const der = Buffer.from(forge.asn1.toDer(tbs).getBytes(), 'binary');
  cert.signature = signWithNode('sha256', der, keyPem).toString('binary');
}

/** Makes a self-signed CA for `serverId`, valid ten years. */
export async function createCertificateAuthority(serverId: string, opts: IssueOptions = {}): Promise<CertAndKey> {
  assertServerId(serverId);
  const now = wholeSeconds(opts.now ?? new Date());
  const { keyPem, forgePub } = await generateRsaKey();

  const cert = forge.pki.createCertificate();
  cert.publicKey = forgePub;
  cert.serialNumber = randomSerialNumber();
  cert.validity.notBefore = new Date(now.getTime() - CLOCK_SKEW_MS);
  cert.validity.notAfter = addYears(now, CA_YEARS);
  const subject = [
    { name: 'commonName', value: `cpc CA ${serverId}` },
    { name: 'organizationName', value: 'cpc' },
  ];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  signSha256(cert, keyPem);
  return { certPem: forge.pki.certificateToPem(cert), keyPem };
}

/**
 * Issues a server certificate for `serverId` from the given CA. The same
 * certificate serves as the client certificate towards peers, hence both
 * serverAuth and clientAuth. Never outlives its CA.
 */
export async function issueServerCertificate(
  caCertPem: string,
  caKeyPem: string,
  serverId: string,
  hostNames: readonly string[] = [],
  opts: IssueOptions = {},
): Promise<CertAndKey> {
  assertServerId(serverId);
  const caX509 = new X509Certificate(caCertPem);
  if (!caX509.ca) throw new Error('the CA certificate is not a CA');
  if (!caX509.checkPrivateKey(createPrivateKey(caKeyPem))) {
    throw new Error('the CA key does not belong to the CA certificate');
  }
  const names = serverCertificateNames(hostNames);
  const caCert = forge.pki.certificateFromPem(caCertPem);
  const now = wholeSeconds(opts.now ?? new Date());
  const { keyPem, forgePub } = await generateRsaKey();

  const cert = forge.pki.createCertificate();
  cert.publicKey = forgePub;
  cert.serialNumber = randomSerialNumber();
  cert.validity.notBefore = new Date(now.getTime() - CLOCK_SKEW_MS);
  const wanted = addYears(now, SERVER_YEARS);
  const caEnd = caCert.validity.notAfter;
  cert.validity.notAfter = wanted.getTime() > caEnd.getTime() ? caEnd : wanted;
  cert.setSubject([
    { name: 'commonName', value: `cpc-server ${serverId}` },
    { name: 'organizationName', value: 'cpc' },
  ]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    {
      name: 'subjectAltName',
      altNames: [
        ...names.dns.map((value) => ({ type: 2, value })),
        ...names.ips.map((ip) => ({ type: 7, ip })),
        { type: 6, value: `${SERVER_ID_URI_PREFIX}${serverId.toLowerCase()}` },
      ],
    },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: subjectKeyIdBytes(caCert) },
  ]);
  signSha256(cert, caKeyPem);
  return { certPem: forge.pki.certificateToPem(cert), keyPem };
}

/** SHA-256 of the DER, as `AB:CD:…` — the form `openssl x509 -fingerprint -sha256` prints. */
export function fingerprint(pem: string | Buffer): string {
  return new X509Certificate(pem).fingerprint256;
}

export interface SubjectAltNameEntry {
  type: string;
  value: string;
}

/**
 * Parses Node's subject-alt-name string (`DNS:a, IP Address:1.2.3.4, URI:…`).
 * Node JSON-quotes values holding separators, so a crafted name such as
 * `URI:"x, URI:urn:cpc:server:…"` stays one entry instead of smuggling a second.
 */
export function parseSubjectAltName(san: string): SubjectAltNameEntry[] {
  const out: SubjectAltNameEntry[] = [];
  let i = 0;
  while (i < san.length) {
    const colon = san.indexOf(':', i);
    if (colon < 0) throw new Error('malformed subject alt name');
    const type = san.slice(i, colon);
    i = colon + 1;
    let value: string;
    if (san[i] === '"') {
      let j = i + 1;
      while (j < san.length && san[j] !== '"') j += san[j] === '\\' ? 2 : 1;
      if (j >= san.length) throw new Error('malformed subject alt name');
      value = JSON.parse(san.slice(i, j + 1)) as string;
      i = j + 1;
    } else {
      const end = san.indexOf(', ', i);
      value = end < 0 ? san.slice(i) : san.slice(i, end);
      i = end < 0 ? san.length : end;
    }
    out.push({ type, value });
    if (i < san.length) {
      if (!san.startsWith(', ', i)) throw new Error('malformed subject alt name');
      i += 2;
    }
  }
  return out;
}

/** The server id in a subject-alt-name string, or null if there is none or more than one. */
export function serverIdFromSubjectAltName(san: string | null | undefined): string | null {
  if (!san) return null;
  let entries: SubjectAltNameEntry[];
  try {
    entries = parseSubjectAltName(san);
  } catch {
    return null;
  }
  const ids = new Set<string>();
  for (const { type, value } of entries) {
    if (type !== 'URI' || !value.toLowerCase().startsWith(SERVER_ID_URI_PREFIX)) continue;
    const id = value.slice(SERVER_ID_URI_PREFIX.length).toLowerCase();
    if (!isServerId(id)) return null;
    ids.add(id);
  }
  // Two different ids in one certificate is not an identity we can act on.
  return ids.size === 1 ? [...ids][0]! : null;
}

function subjectAltNameOf(cert: CertificateInput | null | undefined): string | undefined {
  if (cert == null) return undefined;
  if (typeof cert === 'string' || Buffer.isBuffer(cert)) {
    try {
      return new X509Certificate(cert).subjectAltName;
    } catch {
      return undefined;
    }
  }
  if (cert instanceof X509Certificate) return cert.subjectAltName;
  const san = (cert as { subjectaltname?: unknown }).subjectaltname;
  return typeof san === 'string' ? san : undefined;
}

/**
 * The server id a certificate was issued for, from its `urn:cpc:server:` URI
 * SAN. Accepts a PEM/DER certificate, an `X509Certificate`, or what
 * `socket.getPeerCertificate()` returns (an empty object when the peer sent none).
 */
export function serverIdFromCert(cert: CertificateInput | null | undefined): string | null {
  return serverIdFromSubjectAltName(subjectAltNameOf(cert));
}

/**
 * A `checkServerIdentity` for clients that pin a server's CA: the host name is
 * irrelevant, the id in the certificate must match (or merely be present when
 * the caller does not know the id yet, e.g. on first contact).
 */
export function serverIdentityChecker(
  expectedServerId?: string | null,
): (host: string, cert: PeerCertificate) => Error | undefined {
  const expected = expectedServerId?.toLowerCase() ?? null;
  return (_host, cert) => {
    const id = serverIdFromCert(cert);
    if (id === null) return new Error('server certificate carries no cpc server id');
    if (expected !== null && id !== expected) {
      return new Error(`server certificate is for server ${id}, expected ${expected}`);
    }
    return undefined;
  };
}

/** Whether `keyPem` is the private key of `certPem`. */
export function keyMatchesCertificate(certPem: string, keyPem: string | KeyObject): boolean {
  try {
    const key = typeof keyPem === 'string' ? createPrivateKey(keyPem) : keyPem;
    return new X509Certificate(certPem).checkPrivateKey(key);
  } catch {
    return false;
  }
}
