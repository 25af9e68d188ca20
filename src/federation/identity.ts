/**
 * A server's identity on disk: its id, its CA, and its server certificate.
 *
 * The id and the CA are what peers trusted; they are never replaced behind the
 * operator's back. The server certificate is cheap to re-issue from the CA, so
 * it is re-issued whenever it is missing, expiring, or lacks a host name asked for.
 */
import { X509Certificate, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { v4 as uuidv4 } from 'uuid';
import { warmRsaKeys } from './key-pool.js';
import {
  classifyHostNames,
  createCertificateAuthority,
  fingerprint,
  isServerId,
  issueServerCertificate,
  keyMatchesCertificate,
  parseSubjectAltName,
  serverCertificateNames,
  serverIdFromCert,
} from './certificates.js';

export interface ServerIdentity {
  serverId: string;
  caCertPem: string;
  caKeyPem: string;
  certPem: string;
  keyPem: string;
  caFingerprint: string;
  dir: string;
}

export interface LoadIdentityOptions {
  /** Extra DNS names or IP addresses the server certificate must carry. */
  hostNames?: string[];
  log?: (message: string) => void;
}

export const IDENTITY_FILES = {
  serverId: 'server-id',
  caCert: 'ca.pem',
  caKey: 'ca-key.pem',
  cert: 'server.pem',
  key: 'server-key.pem',
} as const;

const DIR_MODE = 0o700;
const KEY_MODE = 0o600;
const CERT_MODE = 0o644;
const RENEW_BEFORE_MS = 30 * 24 * 60 * 60 * 1000;

async function readIfExists(path: string): Promise<string | null> {
  try {
    return await fsp.readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(dir, 'r');
    await handle.sync();
  } catch (err) {
    // Some platforms and file systems cannot fsync a directory; the rename is
    // still atomic there, only its durability across power loss is weaker.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'EBADF') throw err;
  } finally {
    await handle?.close();
  }
}

/** A crash mid-write leaves either the old file or the new one, never a torn one. */
async function writeFileAtomic(dir: string, name: string, data: string, mode: number): Promise<void> {
  const target = join(dir, name);
  const tmp = join(dir, `.${name}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let handle: fsp.FileHandle | undefined;
  try {
    // Created with its final mode so a key is never readable by others, even briefly.
    handle = await fsp.open(tmp, 'wx', mode);
    await handle.writeFile(data, 'utf8');
    await handle.chmod(mode);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fsp.rename(tmp, target);
  } catch (err) {
    await handle?.close().catch(() => {});
    await fsp.rm(tmp, { force: true }).catch(() => {});
    throw err;
  }
  await fsyncDir(dir);
}

async function tightenKeyMode(path: string, log: (m: string) => void): Promise<void> {
  let st;
  try {
    st = await fsp.stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const mode = st.mode & 0o777;
  if ((mode & ~KEY_MODE) !== 0) {
    await fsp.chmod(path, KEY_MODE);
    log(`warning: ${path} had mode ${mode.toString(8).padStart(4, '0')}; changed to 0600`);
  }
}

function canonicalIpOrSelf(value: string): string {
  try {
    return classifyHostNames([value]).ips[0] ?? value;
  } catch {
    return value;
  }
}

function serverIdFromCaSubject(caCertPem: string): string | null {
  const match = /(?:^|\n)CN=cpc CA (\S+)(?:\n|$)/.exec(new X509Certificate(caCertPem).subject);
  const id = match?.[1]?.toLowerCase();
  return id !== undefined && isServerId(id) ? id : null;
}

/** Why the server certificate must be re-issued, or null if it is fine as it is. */
function serverCertProblem(
  serverId: string,
  caCertPem: string,
  certPem: string | null,
  keyPem: string | null,
  hostNames: readonly string[],
  now: Date,
): string | null {
  if (certPem === null || keyPem === null) return 'missing';
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    return 'unreadable';
  }
  if (!keyMatchesCertificate(certPem, keyPem)) return 'key does not match';
  const ca = new X509Certificate(caCertPem);
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return 'not issued by this CA';
  if (serverIdFromCert(cert) !== serverId) return 'issued for another server id';
  if (new Date(cert.validFrom).getTime() > now.getTime()) return 'not yet valid';
  if (new Date(cert.validTo).getTime() - now.getTime() < RENEW_BEFORE_MS) return 'expires within 30 days';

  const have = new Set<string>();
  for (const { type, value } of parseSubjectAltName(cert.subjectAltName ?? '')) {
    if (type === 'DNS') have.add(`dns:${value.toLowerCase()}`);
    else if (type === 'IP Address') have.add(`ip:${canonicalIpOrSelf(value)}`);
  }
  const wanted = serverCertificateNames(hostNames);
  const missing = [
    ...wanted.dns.filter((n) => !have.has(`dns:${n}`)),
    ...wanted.ips.filter((n) => !have.has(`ip:${n}`)),
  ];
  if (missing.length > 0) return `lacks host name${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`;
  return null;
}

/**
 * Loads the identity kept in `dir`, creating what is missing. `created` is
 * true when a new id and CA were made, i.e. peers cannot know this server yet.
 */
export async function loadOrCreateIdentity(
  dir: string,
  opts: LoadIdentityOptions = {},
): Promise<{ identity: ServerIdentity; created: boolean }> {
  const log = opts.log ?? (() => {});
  const hostNames = opts.hostNames ?? [];
  // Fail on a bad name before touching the disk.
  serverCertificateNames(hostNames);

  await fsp.mkdir(dir, { recursive: true, mode: DIR_MODE });
  const path = (name: string) => join(dir, name);
  await tightenKeyMode(path(IDENTITY_FILES.caKey), log);
  await tightenKeyMode(path(IDENTITY_FILES.key), log);

  const idText = await readIfExists(path(IDENTITY_FILES.serverId));
  let caCertPem = await readIfExists(path(IDENTITY_FILES.caCert));
  let caKeyPem = await readIfExists(path(IDENTITY_FILES.caKey));
  let certPem = await readIfExists(path(IDENTITY_FILES.cert));
  let keyPem = await readIfExists(path(IDENTITY_FILES.key));

  let serverId: string | null = null;
  if (idText !== null) {
    serverId = idText.trim().toLowerCase();
    if (!isServerId(serverId)) throw new Error(`${path(IDENTITY_FILES.serverId)} does not hold a valid server id`);
  }

  if (caCertPem !== null) {
    if (caKeyPem === null) {
      // Peers may trust this CA; making a new one silently would cut them off.
      throw new Error(`${path(IDENTITY_FILES.caCert)} exists but its key ${path(IDENTITY_FILES.caKey)} is missing`);
    }
    if (!keyMatchesCertificate(caCertPem, caKeyPem)) {
      throw new Error(`${path(IDENTITY_FILES.caKey)} is not the key of ${path(IDENTITY_FILES.caCert)}`);
    }
    const caId = serverIdFromCaSubject(caCertPem);
    if (serverId === null) {
      if (caId === null) throw new Error(`${path(IDENTITY_FILES.serverId)} is missing and ${path(IDENTITY_FILES.caCert)} names no server id`);
      serverId = caId;
      log(`recovered server id ${serverId} from the CA certificate`);
      await writeFileAtomic(dir, IDENTITY_FILES.serverId, `${serverId}\n`, CERT_MODE);
    } else if (caId !== null && caId !== serverId) {
      throw new Error(`the CA in ${dir} belongs to server ${caId}, not to ${serverId}`);
    }
    const caEnd = new Date(new X509Certificate(caCertPem).validTo).getTime();
    if (caEnd - Date.now() < RENEW_BEFORE_MS) {
      log(`warning: the CA certificate in ${dir} expires on ${new Date(caEnd).toISOString()}`);
    }
  }

  let created = false;
  if (serverId === null) {
    serverId = uuidv4();
    // The id goes to disk first: if we stop before the CA is written, the
    // next start makes the CA for this same id.
    await writeFileAtomic(dir, IDENTITY_FILES.serverId, `${serverId}\n`, CERT_MODE);
  }
  if (caCertPem === null || caKeyPem === null) {
    // A new CA means a new server certificate too: both keys at once.
    warmRsaKeys(2);
    const ca = await createCertificateAuthority(serverId);
    // Key before certificate, so a certificate on disk always has its key.
    await writeFileAtomic(dir, IDENTITY_FILES.caKey, ca.keyPem, KEY_MODE);
    await writeFileAtomic(dir, IDENTITY_FILES.caCert, ca.certPem, CERT_MODE);
    caCertPem = ca.certPem;
    caKeyPem = ca.keyPem;
    created = true;
    log(`created server id ${serverId} and its CA (fingerprint ${fingerprint(caCertPem)})`);
  }

  const problem = serverCertProblem(serverId, caCertPem, certPem, keyPem, hostNames, new Date());
  if (problem !== null) {
    const issued = await issueServerCertificate(caCertPem, caKeyPem, serverId, hostNames);
    await writeFileAtomic(dir, IDENTITY_FILES.key, issued.keyPem, KEY_MODE);
    await writeFileAtomic(dir, IDENTITY_FILES.cert, issued.certPem, CERT_MODE);
    certPem = issued.certPem;
    keyPem = issued.keyPem;
    if (!created) log(`re-issued the server certificate (${problem})`);
  }

  return {
    identity: {
      serverId,
      caCertPem,
      caKeyPem,
      certPem: certPem!,
      keyPem: keyPem!,
      caFingerprint: fingerprint(caCertPem),
      dir,
    },
    created,
  };
}
