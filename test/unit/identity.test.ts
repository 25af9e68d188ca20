import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import type { TLSSocket } from 'node:tls';
import { join } from 'node:path';
import forge from 'node-forge';
import { v4 as uuidv4 } from 'uuid';
import {
  SERVER_ID_URI_PREFIX,
  createCertificateAuthority,
  fingerprint,
  issueServerCertificate,
  parseSubjectAltName,
  serverIdFromCert,
  serverIdFromSubjectAltName,
  serverIdentityChecker,
} from '../../src/federation/certificates.js';
import { IDENTITY_FILES, loadOrCreateIdentity, type ServerIdentity } from '../../src/federation/identity.js';

const DAY = 24 * 60 * 60 * 1000;
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

const tempDirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await fsp.mkdtemp(join(tmpdir(), 'cpc-identity-'));
  tempDirs.push(d);
  return d;
}
after(async () => {
  await Promise.all(tempDirs.map((d) => fsp.rm(d, { recursive: true, force: true })));
});

async function mode(path: string): Promise<number> {
  return (await fsp.stat(path)).mode & 0o777;
}

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('loadOrCreateIdentity', () => {
  let dir: string;
  let first: { identity: ServerIdentity; created: boolean };

  before(async () => {
    dir = join(await tempDir(), 'identity');
    first = await loadOrCreateIdentity(dir);
  });

  it('creates the files with private modes', async () => {
    assert.equal(first.created, true);
    assert.match(first.identity.serverId, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.equal(first.identity.dir, dir);
    assert.equal(await mode(dir), 0o700);
    assert.equal(await mode(join(dir, IDENTITY_FILES.caKey)), 0o600);
    assert.equal(await mode(join(dir, IDENTITY_FILES.key)), 0o600);
    assert.equal((await fsp.readFile(join(dir, 'server-id'), 'utf8')).trim(), first.identity.serverId);
    assert.equal(await fsp.readFile(join(dir, 'ca.pem'), 'utf8'), first.identity.caCertPem);
    assert.equal(await fsp.readFile(join(dir, 'ca-key.pem'), 'utf8'), first.identity.caKeyPem);
    assert.equal(await fsp.readFile(join(dir, 'server.pem'), 'utf8'), first.identity.certPem);
    assert.equal(await fsp.readFile(join(dir, 'server-key.pem'), 'utf8'), first.identity.keyPem);
    // no temp files left behind by the atomic writes
    assert.deepEqual((await fsp.readdir(dir)).sort(), Object.values(IDENTITY_FILES).sort());
  });

  it('loads the same identity the second time', async () => {
    const logs: string[] = [];
    const again = await loadOrCreateIdentity(dir, { log: (m) => logs.push(m) });
    assert.equal(again.created, false);
    assert.equal(again.identity.serverId, first.identity.serverId);
    assert.equal(again.identity.caFingerprint, first.identity.caFingerprint);
    assert.equal(again.identity.caFingerprint, fingerprint(first.identity.caCertPem));
    assert.equal(again.identity.certPem, first.identity.certPem, 'a valid server certificate is kept');
    assert.equal(again.identity.keyPem, first.identity.keyPem);
    assert.deepEqual(logs, []);
  });

  it('issues a server certificate that chains to the CA and names the server id', () => {
    const { serverId, caCertPem, certPem, keyPem } = first.identity;
    const ca = new X509Certificate(caCertPem);
    const cert = new X509Certificate(certPem);
    assert.equal(cert.verify(ca.publicKey), true);
    assert.equal(cert.checkIssued(ca), true);
    assert.equal(cert.checkPrivateKey(createPrivateKey(keyPem)), true);
    assert.equal(serverIdFromCert(certPem), serverId);
    assert.equal(serverIdFromCert(cert), serverId);
    assert.ok(cert.subjectAltName?.includes(`URI:${SERVER_ID_URI_PREFIX}${serverId}`));
    assert.ok(cert.subjectAltName?.includes('DNS:localhost'));
    assert.ok(cert.subjectAltName?.includes('IP Address:127.0.0.1'));
    assert.ok(cert.subjectAltName?.includes('IP Address:0:0:0:0:0:0:0:1'));
    assert.ok(cert.checkHost('localhost'));
    assert.ok(cert.checkIP('127.0.0.1'));
    assert.ok(cert.checkIP('::1'));
    assert.deepEqual([...(cert.keyUsage ?? [])].sort(), [SERVER_AUTH, CLIENT_AUTH].sort());
    assert.equal(cert.ca, false);
    assert.match(cert.subject, new RegExp(`CN=cpc-server ${serverId}`));
    assert.equal(cert.issuer, ca.subject);

    for (const pem of [certPem, caCertPem]) {
      const parsed = forge.pki.certificateFromPem(pem);
      assert.equal(parsed.signatureOid, forge.pki.oids['sha256WithRSAEncryption']);
      assert.equal((parsed.publicKey as forge.pki.rsa.PublicKey).n.bitLength(), 2048);
      const serial = parsed.serialNumber;
      assert.equal(serial.length, 32);
      assert.ok(parseInt(serial[0]!, 16) < 8, 'serial is positive');
    }

    const now = Date.now();
    const serverEnd = new Date(cert.validTo).getTime();
    assert.ok(serverEnd > now + 4.9 * 365 * DAY && serverEnd < now + 5 * 366 * DAY);
    assert.ok(new Date(cert.validFrom).getTime() < now - 23 * 60 * 60 * 1000);
  });

  it('makes a CA that is a CA and valid ten years at most', () => {
    const ca = new X509Certificate(first.identity.caCertPem);
    assert.equal(ca.ca, true);
    assert.equal(ca.checkIssued(ca), true);
    assert.equal(ca.verify(ca.publicKey), true);
    assert.match(ca.subject, new RegExp(`CN=cpc CA ${first.identity.serverId}`));
    assert.match(ca.subject, /O=cpc/);
    assert.equal(serverIdFromCert(ca), null, 'the CA is not a server certificate');
    const now = Date.now();
    const end = new Date(ca.validTo).getTime();
    assert.ok(end <= now + (10 * 365 + 3) * DAY, 'not valid past 10 years');
    assert.ok(end > now + (10 * 365 - 1) * DAY);
    assert.ok(new Date(ca.validFrom).getTime() < now - 23 * 60 * 60 * 1000);

    const parsed = forge.pki.certificateFromPem(first.identity.caCertPem);
    const bc = parsed.getExtension('basicConstraints') as { cA?: boolean; critical?: boolean };
    assert.equal(bc.cA, true);
    assert.equal(bc.critical, true);
    const ku = parsed.getExtension('keyUsage') as Record<string, boolean>;
    assert.equal(ku['keyCertSign'], true);
    assert.equal(ku['cRLSign'], true);
    assert.equal(ku['critical'], true);
    assert.ok(parsed.getExtension('subjectKeyIdentifier'));
  });

  it('matches the openssl fingerprint', (t) => {
    const fp = first.identity.caFingerprint;
    assert.match(fp, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    if (!hasOpenssl()) {
      t.diagnostic('openssl not on the PATH; comparison skipped');
      return;
    }
    for (const name of ['ca.pem', 'server.pem']) {
      const out = execFileSync('openssl', ['x509', '-noout', '-fingerprint', '-sha256', '-in', join(dir, name)], {
        encoding: 'utf8',
      });
      const fromOpenssl = out.trim().split('=')[1];
      const pem = name === 'ca.pem' ? first.identity.caCertPem : first.identity.certPem;
      assert.equal(fingerprint(pem), fromOpenssl);
    }
  });

  it('re-issues a server certificate that expires within 30 days, keeping id and CA', async () => {
    const d = join(await tempDir(), 'expiring');
    const { identity } = await loadOrCreateIdentity(d);
    const soon = await issueServerCertificate(identity.caCertPem, identity.caKeyPem, identity.serverId, [], {
      now: new Date(Date.now() - (5 * 365 - 10) * DAY),
    });
    assert.ok(new Date(new X509Certificate(soon.certPem).validTo).getTime() < Date.now() + 30 * DAY);
    await fsp.writeFile(join(d, 'server.pem'), soon.certPem);
    await fsp.writeFile(join(d, 'server-key.pem'), soon.keyPem, { mode: 0o600 });

    const logs: string[] = [];
    const again = await loadOrCreateIdentity(d, { log: (m) => logs.push(m) });
    assert.equal(again.created, false);
    assert.equal(again.identity.serverId, identity.serverId);
    assert.equal(again.identity.caCertPem, identity.caCertPem);
    assert.equal(again.identity.caFingerprint, identity.caFingerprint);
    assert.notEqual(again.identity.certPem, soon.certPem);
    assert.equal(await fsp.readFile(join(d, 'server.pem'), 'utf8'), again.identity.certPem);
    const cert = new X509Certificate(again.identity.certPem);
    assert.ok(new Date(cert.validTo).getTime() > Date.now() + 4 * 365 * DAY);
    assert.ok(cert.checkIssued(new X509Certificate(identity.caCertPem)));
    assert.equal(serverIdFromCert(cert), identity.serverId);
    assert.ok(logs.some((m) => /re-issued/.test(m) && /30 days/.test(m)), logs.join('\n'));
  });

  it('re-issues when a requested host name is missing, and when the server certificate is gone', async () => {
    const d = join(await tempDir(), 'hosts');
    const { identity } = await loadOrCreateIdentity(d);
    const withNames = await loadOrCreateIdentity(d, { hostNames: ['cpc.example.org', '10.1.2.3', 'fe80::1'] });
    assert.equal(withNames.created, false);
    assert.equal(withNames.identity.serverId, identity.serverId);
    assert.notEqual(withNames.identity.certPem, identity.certPem);
    const cert = new X509Certificate(withNames.identity.certPem);
    assert.ok(cert.checkHost('cpc.example.org'));
    assert.ok(cert.checkIP('10.1.2.3'));
    assert.ok(cert.checkIP('fe80::1'));

    // asking again for the same names (in another spelling) keeps the certificate
    const same = await loadOrCreateIdentity(d, { hostNames: ['CPC.example.org.', '10.1.2.3', 'FE80:0:0::1'] });
    assert.equal(same.identity.certPem, withNames.identity.certPem);

    await fsp.rm(join(d, 'server.pem'));
    const reissued = await loadOrCreateIdentity(d);
    assert.equal(reissued.created, false);
    assert.equal(reissued.identity.caFingerprint, identity.caFingerprint);
    assert.ok(new X509Certificate(reissued.identity.certPem).checkIssued(new X509Certificate(identity.caCertPem)));

    await assert.rejects(loadOrCreateIdentity(d, { hostNames: ['bad host'] }), /invalid host name/);
  });

  it('tightens loose key file modes and warns', async () => {
    const d = join(await tempDir(), 'modes');
    await loadOrCreateIdentity(d);
    await fsp.chmod(join(d, 'ca-key.pem'), 0o644);
    await fsp.chmod(join(d, 'server-key.pem'), 0o640);
    const logs: string[] = [];
    const again = await loadOrCreateIdentity(d, { log: (m) => logs.push(m) });
    assert.equal(again.created, false);
    assert.equal(await mode(join(d, 'ca-key.pem')), 0o600);
    assert.equal(await mode(join(d, 'server-key.pem')), 0o600);
    assert.equal(logs.filter((m) => /warning/.test(m) && /0600/.test(m)).length, 2, logs.join('\n'));
  });

  it('refuses to replace a CA whose key is missing', async () => {
    const d = join(await tempDir(), 'nokey');
    const { identity } = await loadOrCreateIdentity(d);
    await fsp.rm(join(d, 'ca-key.pem'));
    await assert.rejects(loadOrCreateIdentity(d), /ca-key\.pem/);
    assert.equal(await fsp.readFile(join(d, 'ca.pem'), 'utf8'), identity.caCertPem, 'the CA is left alone');
  });

  it('recovers the server id from the CA when the id file is lost', async () => {
    const d = join(await tempDir(), 'noid');
    const { identity } = await loadOrCreateIdentity(d);
    await fsp.rm(join(d, 'server-id'));
    const again = await loadOrCreateIdentity(d);
    assert.equal(again.created, false);
    assert.equal(again.identity.serverId, identity.serverId);
    assert.equal((await fsp.readFile(join(d, 'server-id'), 'utf8')).trim(), identity.serverId);
  });
});

describe('serverIdFromCert and the subject-alt-name string form', () => {
  const id = uuidv4();

  it('reads the id from the tls peer certificate string form', () => {
    assert.equal(serverIdFromSubjectAltName(`DNS:localhost, IP Address:127.0.0.1, URI:urn:cpc:server:${id}`), id);
    assert.equal(serverIdFromSubjectAltName(`URI:URN:CPC:SERVER:${id.toUpperCase()}`), id);
    assert.equal(serverIdFromCert({ subjectaltname: `URI:urn:cpc:server:${id}` }), id);
    assert.equal(serverIdFromCert({}), null, 'getPeerCertificate() without a client certificate');
    assert.equal(serverIdFromCert(null), null);
    assert.equal(serverIdFromCert('not a certificate'), null);
  });

  it('rejects missing, malformed, ambiguous and smuggled ids', () => {
    assert.equal(serverIdFromSubjectAltName('DNS:localhost'), null);
    assert.equal(serverIdFromSubjectAltName(''), null);
    assert.equal(serverIdFromSubjectAltName(undefined), null);
    assert.equal(serverIdFromSubjectAltName('URI:urn:cpc:server:not-a-uuid'), null);
    assert.equal(serverIdFromSubjectAltName(`URI:urn:cpc:server:${id}, URI:urn:cpc:server:${uuidv4()}`), null);
    assert.equal(serverIdFromSubjectAltName(`DNS:urn:cpc:server:${id}`), null);
    // Node quotes values holding ", " so one crafted name cannot pose as a second entry
    const smuggled = `URI:"http://x\\u002c URI:urn:cpc:server:${id}"`;
    assert.deepEqual(parseSubjectAltName(smuggled), [{ type: 'URI', value: `http://x, URI:urn:cpc:server:${id}` }]);
    assert.equal(serverIdFromSubjectAltName(smuggled), null);
  });

  it('issues from any CA, and refuses a CA key that does not belong to the CA', async () => {
    const a = await createCertificateAuthority(id);
    const b = await createCertificateAuthority(uuidv4());
    const issued = await issueServerCertificate(a.certPem, a.keyPem, id, ['peer.example']);
    assert.equal(serverIdFromCert(issued.certPem), id);
    assert.ok(new X509Certificate(issued.certPem).checkIssued(new X509Certificate(a.certPem)));
    assert.equal(new X509Certificate(issued.certPem).checkIssued(new X509Certificate(b.certPem)), false);
    await assert.rejects(issueServerCertificate(a.certPem, b.keyPem, id), /CA key/);
    await assert.rejects(issueServerCertificate(a.certPem, a.keyPem, 'nope'), /invalid server id/);
  });
});

describe('mutual TLS with the identity', () => {
  let a: ServerIdentity;
  let stranger: { certPem: string; keyPem: string; serverId: string };
  let server: https.Server;
  let port: number;
  const seen: Array<string | null> = [];
  let tlsClientErrors = 0;

  before(async () => {
    a = (await loadOrCreateIdentity(join(await tempDir(), 'a'))).identity;
    const strangerId = uuidv4();
    const ca = await createCertificateAuthority(strangerId);
    stranger = { ...(await issueServerCertificate(ca.certPem, ca.keyPem, strangerId)), serverId: strangerId };

    server = https.createServer(
      { key: a.keyPem, cert: a.certPem, ca: [a.caCertPem], requestCert: true, rejectUnauthorized: true },
      (req, res) => {
        const id = serverIdFromCert((req.socket as TLSSocket).getPeerCertificate());
        seen.push(id);
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ peerId: id }));
      },
    );
    server.on('tlsClientError', () => {
      tlsClientErrors += 1;
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  function get(opts: https.RequestOptions): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port, path: '/', agent: false, ...opts }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('accepts a client certificate from the trusted CA and reads its server id', async () => {
    const before = seen.length;
    const res = await get({
      ca: a.caCertPem,
      cert: a.certPem,
      key: a.keyPem,
      checkServerIdentity: serverIdentityChecker(a.serverId),
    });
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.body), { peerId: a.serverId });
    assert.equal(seen.length, before + 1);
  });

  it('refuses a client certificate from an untrusted CA at the TLS layer', async () => {
    const before = seen.length;
    const errorsBefore = tlsClientErrors;
    await assert.rejects(
      get({ ca: a.caCertPem, cert: stranger.certPem, key: stranger.keyPem, checkServerIdentity: serverIdentityChecker(a.serverId) }),
      (err: NodeJS.ErrnoException) => {
        assert.ok(err.code, `unexpected error ${String(err)}`);
        return true;
      },
    );
    assert.equal(seen.length, before, 'the request handler never ran');
    // give the server side a moment to record the failed handshake
    for (let i = 0; i < 50 && tlsClientErrors === errorsBefore; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(tlsClientErrors > errorsBefore);
  });

  it('refuses a client without a certificate', async () => {
    const before = seen.length;
    await assert.rejects(get({ ca: a.caCertPem, checkServerIdentity: serverIdentityChecker(a.serverId) }));
    assert.equal(seen.length, before);
  });

  it('lets a client pin the CA and check the server by id rather than host name', async () => {
    const ok = await get({
      ca: a.caCertPem,
      cert: a.certPem,
      key: a.keyPem,
      servername: 'no-such-name.invalid',
      checkServerIdentity: serverIdentityChecker(a.serverId),
    });
    assert.equal(ok.status, 200);

    await assert.rejects(
      get({ ca: a.caCertPem, cert: a.certPem, key: a.keyPem, checkServerIdentity: serverIdentityChecker(uuidv4()) }),
      /expected/,
    );
    // a client that pinned another CA does not accept this server at all
    const otherCa = await createCertificateAuthority(stranger.serverId);
    await assert.rejects(
      get({ ca: otherCa.certPem, cert: a.certPem, key: a.keyPem, checkServerIdentity: serverIdentityChecker(a.serverId) }),
      (err: NodeJS.ErrnoException) => {
        assert.match(String(err.code), /UNABLE_TO_VERIFY|SELF_SIGNED|CERT/);
        return true;
      },
    );
  });
});
