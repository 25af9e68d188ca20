/**
 * The handshake against someone on the path or on the network: a forwarder
 * between two servers' unsecure ports that reads the nonce and answers in the
 * other server's name with its own CA, a stranger who re-sends a pending
 * request with another CA or host, and a flood of forged requests. Real
 * servers on port 0; the attacker is plain HTTP in this process.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { createCertificateAuthority, issueServerCertificate, type CertAndKey } from '../../src/federation/certificates.js';
import { newNonce } from '../../src/federation/handshake.js';
import { MAX_RECEIVED_PER_SOURCE } from '../../src/federation/trust-store.js';
import {
  assertRefused,
  cleanup,
  identityFiles,
  ok,
  postUnsecure,
  startPeer,
  tlsGet,
  until,
  type PeerServer,
  type RawReply,
} from '../helpers/peers.js';

const servers: Server[] = [];
after(async () => {
  for (const s of servers) s.closeAllConnections();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  await cleanup();
});

interface Sniffed {
  /** The requester's own unsecure port and the nonce, read off its connect request. */
  requesterPort: number;
  nonce: string;
  /** The answer the attacker makes in the target's name, with a CA of its own for the target's id. */
  forged: Record<string, unknown>;
  forgedCa: CertAndKey;
}

interface Forwarder {
  port: number;
  sniffed: Sniffed[];
  /** Status polls the forwarder answered itself with its forged answer. */
  forgedPolls: number;
  /** `status`: answer the requester's status polls with the forged answer; `ca`: show the attacker's CA on GET /ca. */
  mode: { status: boolean; ca: boolean };
}

async function body(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * A plain HTTP forwarder to `targetPort` that reads every connect request going
 * through and prepares an answer in the target's name with its own CA.
 */
async function sniffingForwarder(targetPort: number): Promise<Forwarder> {
  const fwd: Forwarder = { port: 0, sniffed: [], forgedPolls: 0, mode: { status: false, ca: false } };
  const server = createServer((req, res) => {
    void (async () => {
      const text = await body(req);
      const path = req.url ?? '/';
      const reply = (status: number, value: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      if (fwd.mode.status && path === '/connect-status') {
        const asked = JSON.parse(text) as { nonce: string };
        const mine = fwd.sniffed.find((s) => s.nonce === asked.nonce);
        if (mine) {
          fwd.forgedPolls++;
          reply(200, { state: 'accepted', accept: mine.forged });
          return;
        }
      }
      const upstream = await request(`http://127.0.0.1:${targetPort}${path}`, {
        method: req.method as 'GET' | 'POST',
        headers: { 'content-type': 'application/json' },
        body: req.method === 'POST' ? text : undefined,
      });
      const answer = await upstream.body.text();
      if (fwd.mode.ca && path === '/ca') {
        const info = JSON.parse(answer) as { serverId: string };
        const ca = await createCertificateAuthority(info.serverId);
        reply(200, { ...info, caPem: ca.certPem, caFingerprint: undefined });
        return;
      }
      if (path === '/connect-request' && upstream.statusCode === 200) {
        const asked = JSON.parse(text) as { nonce: string; unsecurePort: number };
        const target = JSON.parse(answer) as { serverId: string; name: string };
        const forgedCa = await createCertificateAuthority(target.serverId);
        fwd.sniffed.push({
          requesterPort: asked.unsecurePort,
          nonce: asked.nonce,
          forgedCa,
          forged: {
            serverId: target.serverId,
            name: target.name,
            host: '127.0.0.1',
            unsecurePort: fwd.port,
            securePort: fwd.port,
            caPem: forgedCa.certPem,
            nonce: asked.nonce,
          },
        });
      }
      res.writeHead(upstream.statusCode, { 'content-type': 'application/json' });
      res.end(answer);
    })().catch((err: Error) => {
      res.writeHead(502);
      res.end(err.message);
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  fwd.port = (server.address() as AddressInfo).port;
  return fwd;
}

/** `a` asks the server behind `port` to connect, pinning `fingerprint`. */
function connectVia(a: PeerServer, port: number, fingerprint: string): Promise<unknown> {
  return a.admin.call('POST', '/peers/connect', { host: '127.0.0.1', port, caFingerprint: fingerprint });
}

/** A server certificate for `serverId` from a CA the attacker holds: what it would open the peer link with. */
async function attackerCert(ca: CertAndKey, serverId: string): Promise<{ certPem: string; keyPem: string }> {
  return issueServerCertificate(ca.certPem, ca.keyPem, serverId);
}

describe('a man in the middle on the handshake', () => {
  it('cannot get its own CA trusted with a sniffed nonce; the genuine answer still completes', async () => {
    const alpha = await startPeer('mitm-a');
    const beta = await startPeer('mitm-b');
    const fwd = await sniffingForwarder(beta.server.unsecurePort);

    await connectVia(alpha, fwd.port, beta.server.caFingerprint);
    await until('the forwarder to read the nonce', () => fwd.sniffed.length === 1);
    const [sniffed] = fwd.sniffed;
    assert.equal(sniffed!.requesterPort, alpha.server.unsecurePort);
    assert.equal(alpha.peersFile().sent.length, 1);

    const forged = await postUnsecure(alpha.server.unsecurePort, '/connect-accept', sniffed!.forged);
    assertRefused(forged, 409, 'FINGERPRINT_MISMATCH');
    assert.equal(alpha.server.ctx.trust.isTrusted(beta.id), false, 'the forged CA is not trusted');
    assert.equal(alpha.peersFile().sent.length, 1, 'the request still waits for the genuine answer');
    // The attacker cannot open the peer link in beta's name.
    const fake = await attackerCert(sniffed!.forgedCa, beta.id);
    assert.equal((await tlsGet(alpha.server.securePort, alpha.server.caPem, fake)).status, null);

    // beta's admin trusts alpha; beta's answer carries the pinned CA and is taken.
    await beta.admin.trustPeer(alpha.id);
    await until('alpha to trust beta', () => alpha.server.ctx.trust.isTrusted(beta.id));
    assert.equal(alpha.server.ctx.trust.peer(beta.id)?.caFingerprint, beta.server.caFingerprint);
    assert.equal((await tlsGet(alpha.server.securePort, alpha.server.caPem, identityFiles(beta.home))).status, 200);
    assert.equal((await tlsGet(alpha.server.securePort, alpha.server.caPem, fake)).status, null);
  });

  it('refuses a status answer whose CA is not the pinned one, and keeps asking', async () => {
    const alpha = await startPeer('poll-a', { publicHost: '127.0.0.2' });
    const beta = await startPeer('poll-b');
    const fwd = await sniffingForwarder(beta.server.unsecurePort);
    fwd.mode.status = true;

    await connectVia(alpha, fwd.port, beta.server.caFingerprint);
    // Polls are one at a time: a second forged answer served means the first was read and refused.
    await until('alpha to ask twice (or to take the forged answer)', () => fwd.forgedPolls >= 2 || alpha.server.ctx.trust.isTrusted(beta.id), 30_000);
    assert.equal(alpha.server.ctx.trust.isTrusted(beta.id), false);
    const fake = await attackerCert(fwd.sniffed[0]!.forgedCa, beta.id);
    assert.equal((await tlsGet(alpha.server.securePort, alpha.server.caPem, fake)).status, null);

    // The forwarder lets the polls through now; beta trusts alpha and alpha learns it by asking.
    fwd.mode.status = false;
    const trusted = await beta.admin.trustPeer(alpha.id);
    assert.equal(trusted.trusted[0]!.told, false, 'alpha said it is at 127.0.0.2, where nobody listens');
    await until('alpha to learn the answer by polling', () => alpha.server.ctx.trust.isTrusted(beta.id), 40_000);
    assert.equal(alpha.server.ctx.trust.peer(beta.id)?.caFingerprint, beta.server.caFingerprint);
  });

  it('sends no request when the server on the path shows another CA than the pinned one', async () => {
    const alpha = await startPeer('ca-a');
    const beta = await startPeer('ca-b');
    const fwd = await sniffingForwarder(beta.server.unsecurePort);
    fwd.mode.ca = true;
    await assert.rejects(connectVia(alpha, fwd.port, beta.server.caFingerprint), (err: { code?: string }) => err.code === 'FINGERPRINT_MISMATCH');
    assert.equal(fwd.sniffed.length, 0, 'the nonce never left');
    assert.deepEqual(beta.server.ctx.trust.receivedRequests(), []);
    assert.equal(alpha.server.ctx.trust.sentRequests().length, 0);
  });
});

describe('pinning from cpcc', () => {
  it('connect-server shows the fingerprint and needs it confirmed, or takes --fingerprint', async () => {
    const alpha = await startPeer('cli-a');
    const beta = await startPeer('cli-b');
    const port = String(beta.server.unsecurePort);

    const unasked = await alpha.cpcc(['connect-server', '127.0.0.1', port]);
    assert.equal(unasked.code, 2, unasked.stderr);
    assert.equal(unasked.stderr.trim().split('\n').length, 1, unasked.stderr);
    assert.match(unasked.stderr, /--fingerprint/);
    assert.ok(unasked.stderr.includes(beta.server.caFingerprint), 'the fingerprint is shown, formatted as add-server does');
    assert.deepEqual(beta.server.ctx.trust.receivedRequests(), [], 'nothing was sent');

    const wrong = await alpha.cpcc(['connect-server', '127.0.0.1', port, '--fingerprint', 'AB:'.repeat(31) + 'AB']);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /FINGERPRINT_MISMATCH/);
    assert.deepEqual(beta.server.ctx.trust.receivedRequests(), []);
    const malformed = await alpha.cpcc(['connect-server', '127.0.0.1', port, '--fingerprint', 'abc']);
    assert.equal(malformed.code, 2);

    const bare = beta.server.caFingerprint.replace(/:/g, '').toLowerCase();
    const sent = ok(await alpha.cpcc(['connect-server', '127.0.0.1', port, '--fingerprint', bare, '--json']));
    assert.equal(sent.sent.peerServerId, beta.id);
    assert.equal(sent.sent.caFingerprint, beta.server.caFingerprint, 'the pinned CA is listed with the sent request');
    assert.equal(beta.server.ctx.trust.received(alpha.id)?.caFingerprint, alpha.server.caFingerprint);
  });
});

// ---- a stranger's requests ---------------------------------------------------------------

/** A connect request in `serverId`'s name with a fresh CA made for it. */
async function forgedRequest(serverId: string, over: Record<string, unknown> = {}) {
  const ca = await createCertificateAuthority(serverId);
  return { serverId, name: 'forged', host: '127.0.0.1', unsecurePort: 1, securePort: 2, caPem: ca.certPem, nonce: newNonce(), ...over };
}

/** POSTs to a server's unsecure port from another loopback address, as another machine would. */
function postFrom(source: string, port: number, path: string, value: unknown): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, path, method: 'POST', localAddress: source, headers: { 'content-type': 'application/json' } },
      (res) => {
        void body(res).then((text) => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }), reject);
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(value));
  });
}

describe('received requests', () => {
  it('keeps a pending request when another one names the same server with another CA or host, and shows both', async () => {
    const alpha = await startPeer('keep-a');
    const beta = await startPeer('keep-b');
    await connectVia(alpha, beta.server.unsecurePort, beta.server.caFingerprint);
    const genuine = beta.server.ctx.trust.received(alpha.id)!;

    // Another CA for alpha's id, and alpha's own (public) CA with the stranger's address.
    const otherCa = await forgedRequest(alpha.id, { host: '127.0.0.9', unsecurePort: 9999 });
    assert.equal((await postFrom('127.0.0.3', beta.server.unsecurePort, '/connect-request', otherCa)).status, 200);
    const otherHost = { ...(await forgedRequest(alpha.id)), caPem: alpha.server.caPem, host: 'evil.example', unsecurePort: 9998 };
    assert.equal((await postFrom('127.0.0.3', beta.server.unsecurePort, '/connect-request', otherHost)).status, 200);

    const kept = beta.server.ctx.trust.received(alpha.id)!;
    assert.equal(kept.caFingerprint, alpha.server.caFingerprint, 'the first request is kept');
    assert.equal(kept.host, '127.0.0.1');
    assert.equal(kept.nonce, genuine.nonce);

    const listed = ok(await beta.cpcc(['connected-servers', '--json']));
    assert.equal(listed.received.length, 1);
    const conflicts = listed.received[0].conflicts as { caFingerprint: string; host: string; source: string }[];
    assert.equal(conflicts.length, 2);
    assert.notEqual(conflicts[0]!.caFingerprint, alpha.server.caFingerprint);
    assert.equal(conflicts[0]!.host, '127.0.0.9');
    assert.equal(conflicts[0]!.source, '127.0.0.3');
    assert.equal(conflicts[1]!.caFingerprint, alpha.server.caFingerprint);
    assert.equal(conflicts[1]!.host, 'evil.example');
    const table = await beta.cpcc(['cs']);
    assert.match(table.stdout, /2 other requests claim to be/);
    assert.ok(table.stdout.includes(conflicts[0]!.caFingerprint));
    assert.match(table.stdout, /evil\.example/);

    // --yes alone, or --all, does not trust a request in conflict; the fingerprint does.
    const yes = await beta.cpcc(['trust', alpha.id, '--yes']);
    assert.equal(yes.code, 1, yes.stderr);
    assert.match(yes.stderr, /CONFLICTING_REQUESTS/);
    assert.equal((await beta.admin.call('POST', `/peers/${alpha.id}/trust`, {}).catch((e: { code: string }) => e.code)), 'CONFLICTING_REQUESTS');
    const all = ok(await beta.cpcc(['trust', '--all', '--yes', '--json']));
    assert.deepEqual(all.trusted, []);
    assert.deepEqual(all.skipped, [alpha.id]);
    const other = await beta.cpcc(['trust', alpha.id, '--fingerprint', conflicts[0]!.caFingerprint]);
    assert.equal(other.code, 1);
    assert.match(other.stderr, /FINGERPRINT_MISMATCH/);
    assert.equal(beta.server.ctx.trust.isTrusted(alpha.id), false);

    ok(await beta.cpcc(['trust', alpha.id, '--fingerprint', alpha.server.caFingerprint, '--json']));
    await until('alpha to trust beta', () => alpha.server.ctx.trust.isTrusted(beta.id));
    assert.equal(beta.server.ctx.trust.peer(alpha.id)?.caFingerprint, alpha.server.caFingerprint);
    assert.equal(beta.server.ctx.trust.peer(alpha.id)?.host, '127.0.0.1');
  });

  it('caps requests per source, so a genuine server still gets through a flood; trust --all lists and asks', async () => {
    const alpha = await startPeer('flood-a');
    const beta = await startPeer('flood-b');
    const flood = MAX_RECEIVED_PER_SOURCE + 4;
    const refused: RawReply[] = [];
    for (let i = 0; i < flood; i++) {
      const reply = await postFrom('127.0.0.4', beta.server.unsecurePort, '/connect-request', await forgedRequest(randomUUID()));
      if (reply.status !== 200) refused.push(reply);
    }
    assert.equal(refused.length, flood - MAX_RECEIVED_PER_SOURCE);
    for (const r of refused) assertRefused(r, 429, 'TOO_MANY_REQUESTS', /from 127\.0\.0\.4/);
    assert.equal(beta.server.ctx.trust.receivedRequests().length, MAX_RECEIVED_PER_SOURCE);

    // The genuine server, from another address, is heard.
    await connectVia(alpha, beta.server.unsecurePort, beta.server.caFingerprint);
    assert.equal(beta.server.ctx.trust.received(alpha.id)?.caFingerprint, alpha.server.caFingerprint);

    // trust --all shows everything it would trust, and without a terminal needs --yes.
    const unasked = await beta.cpcc(['trust', '--all']);
    assert.equal(unasked.code, 2, unasked.stderr);
    assert.ok(unasked.stderr.includes(alpha.server.caFingerprint));
    assert.equal((unasked.stderr.match(/asks to connect/g) ?? []).length, MAX_RECEIVED_PER_SOURCE + 1);
    assert.match(unasked.stderr, /--yes/);
    assert.equal(beta.server.ctx.trust.peers().length, 0, 'nothing was trusted');
  });
});
