/**
 * Client certificates on a real server's secure port: a certificate that does
 * not chain to a trusted CA, or that a trusted CA issued for another peer's
 * id, is refused before any HTTP is read; clients without a certificate
 * (users, workers) are served as before. Checked with Node's TLS client and,
 * where it is installed, with `openssl s_client`.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { createCertificateAuthority, fingerprint, issueServerCertificate, type CertAndKey } from '../../src/federation/certificates.js';
import { peerOf } from '../../src/federation/peer-auth.js';
import type { Peer } from '../../src/federation/trust-store.js';
import { cleanup, startPeer, tempDir, tlsGet, type ClientCert, type PeerServer } from '../helpers/peers.js';

after(cleanup);

interface FakePeer {
  id: string;
  ca: CertAndKey;
  cert: CertAndKey;
}

async function fakePeer(): Promise<FakePeer> {
  const id = randomUUID();
  const ca = await createCertificateAuthority(id);
  return { id, ca, cert: await issueServerCertificate(ca.certPem, ca.keyPem, id) };
}

const asClient = (c: CertAndKey): ClientCert => ({ certPem: c.certPem, keyPem: c.keyPem });

const HAVE_OPENSSL = spawnSync('openssl', ['version']).status === 0;

/** `openssl s_client` presenting `client`, sending one request; resolves with what it printed. */
function sClient(port: number, caFile: string, certFile: string, keyFile: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'openssl',
      ['s_client', '-connect', `127.0.0.1:${port}`, '-CAfile', caFile, '-cert', certFile, '-key', keyFile, '-ign_eof'],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    child.stdin.end('GET /api/v1/info HTTP/1.1\r\nHost: peer\r\nConnection: close\r\n\r\n');
  });
}

describe('client certificates on the secure listener', () => {
  let s: PeerServer;
  let x: FakePeer;
  let y: FakePeer;
  let stranger: FakePeer;
  /** A certificate from x's CA (trusted) that carries y's id. */
  let forged: CertAndKey;

  const trustFake = (p: FakePeer) =>
    s.server.ctx.trust.trust({
      serverId: p.id,
      name: `fake ${p.id.slice(0, 8)}`,
      host: '127.0.0.1',
      unsecurePort: 1,
      securePort: 2,
      caPem: p.ca.certPem,
      caFingerprint: fingerprint(p.ca.certPem),
    });

  before(async () => {
    s = await startPeer('tls');
    [x, y, stranger] = await Promise.all([fakePeer(), fakePeer(), fakePeer()]);
    await trustFake(x);
    await trustFake(y);
    forged = await issueServerCertificate(x.ca.certPem, x.ca.keyPem, y.id);
  });

  it('serves clients without a certificate, and trusted peers with theirs', async () => {
    assert.equal((await tlsGet(s.server.securePort, s.server.caPem)).status, 200);
    assert.equal((await tlsGet(s.server.securePort, s.server.caPem, asClient(x.cert))).status, 200);
    assert.equal((await tlsGet(s.server.securePort, s.server.caPem, asClient(y.cert))).status, 200);
  });

  it('refuses a certificate from an untrusted CA before any HTTP', async () => {
    const out = await tlsGet(s.server.securePort, s.server.caPem, asClient(stranger.cert));
    assert.equal(out.status, null, `answered: ${JSON.stringify(out)}`);
  });

  it('refuses a certificate that a trusted CA issued with another peer\'s id', async () => {
    const out = await tlsGet(s.server.securePort, s.server.caPem, asClient(forged));
    assert.equal(out.status, null, `answered: ${JSON.stringify(out)}`);
  });

  it('trusts a CA trusted after start without a restart, and forgets it the same way', async () => {
    const late = await fakePeer();
    assert.equal((await tlsGet(s.server.securePort, s.server.caPem, asClient(late.cert))).status, null);
    await trustFake(late);
    assert.equal((await tlsGet(s.server.securePort, s.server.caPem, asClient(late.cert))).status, 200);
    await s.server.ctx.trust.removePeer(late.id);
    assert.equal((await tlsGet(s.server.securePort, s.server.caPem, asClient(late.cert))).status, null);
  });

  it('peerOf names the peer only if its own CA issued the certificate', async () => {
    // A TLS server that lets every certificate through, so that peerOf alone decides.
    const seen: (Peer | null)[] = [];
    const server = createServer(
      { key: s.server.identity.keyPem, cert: s.server.identity.certPem, requestCert: true, rejectUnauthorized: false, ca: [x.ca.certPem, y.ca.certPem] },
      (socket: TLSSocket) => {
        seen.push(peerOf(socket, s.server.ctx.trust));
        socket.end();
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    const hello = (c: CertAndKey) =>
      new Promise<void>((resolve) => {
        const socket = connect({ host: '127.0.0.1', port, ca: s.server.caPem, cert: c.certPem, key: c.keyPem, checkServerIdentity: () => undefined });
        socket.on('error', () => resolve());
        socket.on('close', () => resolve());
        socket.resume();
      });
    try {
      await hello(x.cert);
      await hello(forged);
      await hello(stranger.cert);
      await hello(y.cert);
    } finally {
      server.close();
    }
    assert.deepEqual(
      seen.map((p) => p?.serverId ?? null),
      [x.id, null, null, y.id],
    );
  });

  it('refuses the same certificates with openssl s_client', { skip: HAVE_OPENSSL ? false : 'openssl is not installed' }, async () => {
    const dir = await tempDir('cpc-openssl-');
    const file = (name: string, text: string) => {
      const p = join(dir, name);
      writeFileSync(p, text, { mode: 0o600 });
      return p;
    };
    const caFile = file('server-ca.pem', s.server.caPem);
    const trusted = await sClient(s.server.securePort, caFile, file('x.pem', x.cert.certPem), file('x-key.pem', x.cert.keyPem));
    assert.match(trusted, /HTTP\/1\.1 200/, trusted);
    const untrusted = await sClient(
      s.server.securePort,
      caFile,
      file('untrusted.pem', stranger.cert.certPem),
      file('untrusted-key.pem', stranger.cert.keyPem),
    );
    assert.doesNotMatch(untrusted, /HTTP\/1\.1/, untrusted);
    const impostor = await sClient(s.server.securePort, caFile, file('forged.pem', forged.certPem), file('forged-key.pem', forged.keyPem));
    assert.doesNotMatch(impostor, /HTTP\/1\.1/, impostor);
  });
});
