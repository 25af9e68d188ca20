/**
 * The connect/trust handshake between real servers on port 0: driven through
 * the built cpcc with --json where an admin would use it, and through raw
 * calls to the unsecure port where a stranger or a broken peer would.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ApiError } from '../../src/client/api/client.js';
import { createCertificateAuthority, issueServerCertificate } from '../../src/federation/certificates.js';
import { newNonce } from '../../src/federation/handshake.js';
import {
  assertRefused,
  cleanup,
  connectPair,
  freePort,
  identityFiles,
  ok,
  postUnsecure,
  startPeer,
  tlsGet,
  tlsHold,
  until,
  type PeerServer,
} from '../helpers/peers.js';

after(cleanup);

/** What a server says about itself in a request or an answer, with the nonce given. */
function detailsOf(p: PeerServer, nonce: string) {
  return {
    serverId: p.id,
    name: p.server.config.name,
    host: '127.0.0.1',
    unsecurePort: p.server.unsecurePort,
    securePort: p.server.securePort,
    caPem: p.server.caPem,
    nonce,
  };
}

async function apiCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ApiError, String(err));
    return err.code;
  }
  return assert.fail('expected the call to fail');
}

describe('connect and trust', () => {
  it('completes a handshake through cpcc, both sides listing it on the way', async () => {
    const alpha = await startPeer('alpha');
    const beta = await startPeer('beta');

    const sent = ok(await alpha.cpcc(['connect-server', '127.0.0.1', String(beta.server.unsecurePort), '--fingerprint', beta.server.caFingerprint, '--json']));
    assert.equal(sent.sent.peerServerId, beta.id);
    assert.equal(sent.sent.peerName, 'beta');
    assert.equal(sent.connected, null);
    assert.equal(sent.serverId, alpha.id);
    assert.equal(sent.caFingerprint, alpha.server.caFingerprint);

    const text = await alpha.cpcc(['cs']);
    assert.match(text.stdout, /^Sent connection requests\nHostname\s+Port\s+Server Id/m);
    assert.match(text.stdout, new RegExp(`127\\.0\\.0\\.1\\s+${beta.server.unsecurePort}\\s+${beta.id}`));

    const onBeta = ok(await beta.cpcc(['connected-servers', '--json']));
    assert.deepEqual(onBeta.sent, []);
    assert.equal(onBeta.received.length, 1);
    assert.equal(onBeta.received[0].serverId, alpha.id);
    assert.equal(onBeta.received[0].caFingerprint, alpha.server.caFingerprint);
    assert.equal(onBeta.received[0].securePort, alpha.server.securePort);
    assert.equal('caPem' in onBeta.received[0] || 'nonce' in onBeta.received[0], false);

    // Without a terminal, trusting needs --yes or the fingerprint.
    const unasked = await beta.cpcc(['trust', alpha.id]);
    assert.equal(unasked.code, 2, unasked.stderr);
    assert.match(unasked.stderr, new RegExp(alpha.server.caFingerprint), 'the fingerprint is shown first');
    assert.match(unasked.stderr, /--yes/);
    const wrongFp = await beta.cpcc(['trust', alpha.id, '--fingerprint', 'AB:'.repeat(31) + 'AB']);
    assert.equal(wrongFp.code, 1);
    assert.match(wrongFp.stderr, /FINGERPRINT_MISMATCH/);

    const trusted = ok(await beta.cpcc(['trust', alpha.id, '--fingerprint', alpha.server.caFingerprint, '--json']));
    assert.equal(trusted.trusted.length, 1);
    assert.equal(trusted.trusted[0].serverId, alpha.id);
    assert.equal(trusted.trusted[0].told, true, 'alpha was reachable, so it heard the answer at once');
    assert.equal(trusted.trusted[0].priority, 0);

    const onAlpha = ok(await alpha.cpcc(['connected-servers', '--json']));
    assert.deepEqual(onAlpha.sent, [], 'the nonce is used up');
    assert.equal(onAlpha.connected.length, 1);
    const node = onAlpha.connected[0];
    assert.equal(node.serverId, beta.id);
    assert.equal(node.caFingerprint, beta.server.caFingerprint);
    assert.equal(node.securePort, beta.server.securePort);
    assert.equal(node.unsecurePort, beta.server.unsecurePort);
    assert.equal(node.priority, 0);
    assert.ok(['up', 'down', 'connecting'].includes(node.link));

    const nodes = ok(await beta.cpcc(['list-nodes', '--json']));
    assert.deepEqual(nodes.nodes.map((n: { serverId: string }) => n.serverId), [alpha.id]);
    const table = await beta.cpcc(['cs']);
    assert.match(table.stdout, /^Connected nodes:\nPriority\s+Hostname\s+Port\s+Secure port\s+Server Id/m);
    assert.doesNotMatch(table.stdout, /Received connection requests/);

    // Each side now accepts the other's server certificate on its secure port.
    const a = identityFiles(alpha.home);
    const b = identityFiles(beta.home);
    assert.equal((await tlsGet(beta.server.securePort, beta.server.caPem, a)).status, 200);
    assert.equal((await tlsGet(alpha.server.securePort, alpha.server.caPem, b)).status, 200);
  });

  it('refuses to trust a server that sent no request', async () => {
    const gamma = await startPeer('gamma');
    const unknown = randomUUID();
    const run = await gamma.cpcc(['trust', unknown, '--yes']);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /REQUEST_NOT_FOUND/);
    assert.equal(await apiCode(gamma.admin.trustPeer(unknown)), 'REQUEST_NOT_FOUND');
    const all = ok(await gamma.cpcc(['trust', '--all', '--yes', '--json']));
    assert.deepEqual(all.trusted, []);
    assert.equal(gamma.server.ctx.trust.peers().length, 0);
  });

  it('ignores an answer with a nonce it never sent, and one from another server than asked', async () => {
    const asker = await startPeer('asker');
    const target = await startPeer('target');
    const other = await startPeer('other');
    await asker.admin.connectServer('127.0.0.1', target.server.unsecurePort, target.server.caFingerprint);
    const [sent] = asker.peersFile().sent;
    assert.ok(sent);

    assertRefused(await postUnsecure(asker.server.unsecurePort, '/connect-accept', detailsOf(target, newNonce())), 403, 'BAD_NONCE');
    // The right nonce, but the answer comes from a server the request did not go to.
    assertRefused(await postUnsecure(asker.server.unsecurePort, '/connect-accept', detailsOf(other, sent.nonce)), 403, 'BAD_NONCE');

    const file = asker.peersFile();
    assert.deepEqual(file.peers, [], 'nothing was trusted');
    assert.equal(file.sent.length, 1, 'the request still waits for its real answer');
    assert.equal(asker.server.ctx.trust.isTrusted(other.id), false);
  });

  it('refuses an answer with the right nonce but a CA that is not the answering server\'s, without using the nonce up', async () => {
    const asker = await startPeer('asker2');
    const target = await startPeer('target2');
    await asker.admin.connectServer('127.0.0.1', target.server.unsecurePort, target.server.caFingerprint);
    const [sent] = asker.peersFile().sent;
    const foreign = await createCertificateAuthority(randomUUID());
    assertRefused(
      await postUnsecure(asker.server.unsecurePort, '/connect-accept', { ...detailsOf(target, sent!.nonce), caPem: foreign.certPem }),
      400,
      'INVALID_CERTIFICATE',
      /made for server/,
    );
    assert.equal(asker.peersFile().sent.length, 1);
    assert.deepEqual(asker.peersFile().peers, []);
    // The genuine answer is still accepted.
    assert.equal((await postUnsecure(asker.server.unsecurePort, '/connect-accept', detailsOf(target, sent!.nonce))).status, 200);
    assert.equal(asker.server.ctx.trust.peer(target.id)?.caFingerprint, target.server.caFingerprint);
  });

  it('refuses a nonce used once already, even with another CA for the same id', async () => {
    const asker = await startPeer('asker3');
    const target = await startPeer('target3');
    await asker.admin.connectServer('127.0.0.1', target.server.unsecurePort, target.server.caFingerprint);
    const [sent] = asker.peersFile().sent;
    await target.admin.trustPeer(asker.id);
    await until('the handshake to complete', () => asker.server.ctx.trust.isTrusted(target.id));

    assertRefused(await postUnsecure(asker.server.unsecurePort, '/connect-accept', detailsOf(target, sent!.nonce)), 403, 'BAD_NONCE');
    // Someone who saw the nonce go by tries to slip in a CA of its own for the same server id.
    const impostor = await createCertificateAuthority(target.id);
    assertRefused(
      await postUnsecure(asker.server.unsecurePort, '/connect-accept', { ...detailsOf(target, sent!.nonce), caPem: impostor.certPem }),
      403,
      'BAD_NONCE',
    );
    assert.equal(asker.server.ctx.trust.peer(target.id)?.caFingerprint, target.server.caFingerprint);
    assert.equal(asker.peersFile().peers.length, 1);
  });

  it('refuses bad connection requests with clear codes and stores none of them', async () => {
    const host = await startPeer('host');
    const id = randomUUID();
    const ca = await createCertificateAuthority(id);
    const good = { serverId: id, name: 'stranger', host: '127.0.0.1', unsecurePort: 1, securePort: 2, caPem: ca.certPem, nonce: newNonce() };
    const post = (body: unknown) => postUnsecure(host.server.unsecurePort, '/connect-request', body);

    assertRefused(await post({ ...good, caPem: 'not a certificate' }), 400, 'INVALID_CERTIFICATE', /one PEM certificate/);
    assertRefused(
      await post({ ...good, caPem: '-----BEGIN CERTIFICATE-----\nAAAAAAAAAAAAAAAAAAAA\n-----END CERTIFICATE-----\n' }),
      400,
      'INVALID_CERTIFICATE',
      /cannot be parsed/,
    );
    assertRefused(await post({ ...good, caPem: ca.certPem + ca.certPem }), 400, 'INVALID_CERTIFICATE', /one PEM certificate/);
    assertRefused(await post({ ...good, serverId: randomUUID() }), 400, 'INVALID_CERTIFICATE', /made for server/);
    const leaf = await issueServerCertificate(ca.certPem, ca.keyPem, id);
    assertRefused(await post({ ...good, caPem: leaf.certPem }), 400, 'INVALID_CERTIFICATE', /not a CA/);
    const expired = await createCertificateAuthority(id, { now: new Date(Date.now() - 11 * 365 * 24 * 3600 * 1000) });
    assertRefused(await post({ ...good, caPem: expired.certPem }), 400, 'INVALID_CERTIFICATE', /expired/);
    assertRefused(await post({ ...good, serverId: host.id, caPem: identityFiles(host.home).caPem }), 409, 'INVALID_STATE', /itself/);

    assertRefused(await post({ ...good, name: 'x'.repeat(10_000) }), 400, 'INVALID_FIELD', /body\.name/);
    assertRefused(await post({ ...good, host: 'evil.example/path?' }), 400, 'INVALID_FIELD', /body\.host/);
    assertRefused(await post({ ...good, serverId: 'not-a-uuid' }), 400, 'INVALID_FIELD', /body\.serverId/);
    assertRefused(await post({ ...good, nonce: 'short' }), 400, 'INVALID_FIELD', /body\.nonce/);
    assertRefused(await post({ ...good, unsecurePort: 70_000 }), 400, 'INVALID_FIELD', /body\.unsecurePort/);
    assertRefused(await post({ ...good, extra: 1 }), 400, 'INVALID_FIELD');
    assertRefused(await post({ ...good, caPem: 'A'.repeat(20_000) }), 400, 'INVALID_FIELD', /body\.caPem/);
    assertRefused(await post({ ...good, padding: 'x'.repeat(70 * 1024) }), 413, 'BODY_TOO_LARGE');
    assertRefused(await post('{"serverId":'), 400, 'INVALID_JSON');

    assert.equal(existsSync(join(host.home, 'peers.json')), false, 'nothing was ever written');
    // A good one is stored, then listed.
    const reply = await post(good);
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    assert.deepEqual(reply.body, { serverId: host.id, name: 'host' });
    assert.deepEqual(host.peersFile().received.map((r) => r.serverId), [id]);
  });

  it('completes through status polling when the trusting side cannot reach the requester', async () => {
    // The requester tells an address nobody listens on, as a server behind a firewall would.
    const hidden = await startPeer('hidden', { publicHost: '127.0.0.2' });
    const open = await startPeer('open');
    ok(await hidden.cpcc(['connect-server', '127.0.0.1', String(open.server.unsecurePort), '--fingerprint', open.server.caFingerprint, '--json']));
    const [sent] = hidden.peersFile().sent;

    // Until trusted, the status is pending.
    const pending = await postUnsecure(open.server.unsecurePort, '/connect-status', { serverId: hidden.id, nonce: sent!.nonce });
    assert.deepEqual(pending.body, { state: 'pending' });
    assertRefused(await postUnsecure(open.server.unsecurePort, '/connect-status', { serverId: hidden.id, nonce: newNonce() }), 404, 'REQUEST_NOT_FOUND');

    const trusted = ok(await open.cpcc(['trust', hidden.id, '--yes', '--json']));
    assert.equal(trusted.trusted[0].told, false, 'the answer could not be delivered');
    assert.equal(trusted.trusted[0].host, '127.0.0.2');

    await until('the requester to learn the answer by polling', () => hidden.server.ctx.trust.isTrusted(open.id), 20_000);
    assert.equal(hidden.server.ctx.trust.peer(open.id)?.caFingerprint, open.server.caFingerprint);
    // The trust is in memory a moment before the write that also drops the sent request is on disk.
    await until('the sent request to leave peers.json', () => hidden.peersFile().sent.length === 0, 5_000);
    // Asking again after it is done gets the same answer, which the requester would refuse as used.
    const again = await postUnsecure(open.server.unsecurePort, '/connect-status', { serverId: hidden.id, nonce: sent!.nonce });
    assert.equal(again.body.state, 'accepted');
    assertRefused(await postUnsecure(hidden.server.unsecurePort, '/connect-accept', { ...again.body.accept }), 403, 'BAD_NONCE');
  });

  it('connects at once when the peer trusts the requester already', async () => {
    const a = await startPeer('again-a');
    const b = await startPeer('again-b');
    await connectPair(a, b);
    // a forgets b while b is unreachable for the notice.
    await b.stop();
    await a.admin.disconnectPeer(b.id);
    await b.restart();
    assert.equal(b.server.ctx.trust.isTrusted(a.id), true, 'b never heard of it');
    const reply = ok(await a.cpcc(['connect-server', '127.0.0.1', String(b.server.unsecurePort), '--yes', '--json']));
    assert.equal(reply.sent, null);
    assert.equal(reply.connected.serverId, b.id);
    assert.equal(a.server.ctx.trust.isTrusted(b.id), true);
  });

  it('reorders priorities, keeping a strict order', async () => {
    const hub = await startPeer('hub');
    const p1 = await startPeer('p1');
    const p2 = await startPeer('p2');
    const p3 = await startPeer('p3');
    for (const p of [p1, p2, p3]) await connectPair(p, hub);
    const order = (nodes: { serverId: string; priority: number }[]) => nodes.map((n) => [n.serverId, n.priority]);
    assert.deepEqual(order(ok(await hub.cpcc(['list-nodes', '--json'])).nodes), [[p1.id, 0], [p2.id, 1], [p3.id, 2]]);

    assert.deepEqual(order(ok(await hub.cpcc(['node-pri', p3.id, '0', '--json'])).nodes), [[p3.id, 0], [p1.id, 1], [p2.id, 2]]);
    assert.deepEqual(order(ok(await hub.cpcc(['set-pri', p3.id, '1', '--json'])).nodes), [[p1.id, 0], [p3.id, 1], [p2.id, 2]]);
    assert.deepEqual(order(ok(await hub.cpcc(['change-node-priority', p1.id, '99', '--json'])).nodes), [[p3.id, 0], [p2.id, 1], [p1.id, 2]]);
    assert.deepEqual(hub.server.ctx.trust.peers().map((p) => p.serverId), [p3.id, p2.id, p1.id]);

    const unknown = await hub.cpcc(['node-pri', randomUUID(), '0']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /PEER_NOT_FOUND/);
    assert.equal((await hub.cpcc(['node-pri', p1.id, '-1'])).code, 2);

    // Removing one closes the gap.
    await hub.admin.disconnectPeer(p2.id);
    assert.deepEqual(order(ok(await hub.cpcc(['list-nodes', '--json'])).nodes), [[p3.id, 0], [p1.id, 1]]);
  });

  it('disconnect removes the CA from the TLS context at once, and the peer drops it on the signed notice', async () => {
    const a = await startPeer('cut-a');
    const b = await startPeer('cut-b');
    await connectPair(a, b);
    const bCert = identityFiles(b.home);
    const aCert = identityFiles(a.home);
    assert.equal((await tlsGet(a.server.securePort, a.server.caPem, bCert)).status, 200);
    const held = await tlsHold(a.server.securePort, a.server.caPem, bCert);
    assert.equal(held.status, 200);

    const reply = ok(await a.cpcc(['disconnect', b.id, '--json']));
    assert.deepEqual(reply, { serverId: b.id, removed: 'peer', told: true });
    // Right after: new connections with b's certificate are refused, the open one is cut.
    assert.equal((await tlsGet(a.server.securePort, a.server.caPem, bCert)).status, null);
    await held.closed;
    // Clients without a certificate are unaffected.
    assert.equal((await tlsGet(a.server.securePort, a.server.caPem)).status, 200);

    await until('b to drop a', () => !b.server.ctx.trust.isTrusted(a.id));
    assert.equal((await tlsGet(b.server.securePort, b.server.caPem, aCert)).status, null);
    assert.deepEqual(ok(await b.cpcc(['list-nodes', '--json'])).nodes, []);
    const again = await a.cpcc(['disconnect', b.id]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /PEER_NOT_FOUND/);
  });

  it('acts on a disconnect notice only with a valid signature from the trusted peer', async () => {
    const a = await startPeer('sig-a');
    const b = await startPeer('sig-b');
    const c = await startPeer('sig-c');
    await connectPair(a, b);
    await connectPair(c, b);
    const { signText, disconnectText } = await import('../../src/federation/signed-notice.js');
    const at = Date.now();
    const aId = identityFiles(a.home);
    const cId = identityFiles(c.home);
    const notice = (over: Record<string, unknown> = {}) => ({
      from: a.id,
      to: b.id,
      at,
      certPem: aId.certPem,
      signature: signText(disconnectText(a.id, b.id, at), aId.keyPem),
      ...over,
    });
    const post = (body: unknown) => postUnsecure(b.server.unsecurePort, '/disconnect', body);

    // Signed by c (trusted, but not a), claiming to be a.
    assertRefused(await post(notice({ certPem: cId.certPem, signature: signText(disconnectText(a.id, b.id, at), cId.keyPem) })), 403, 'BAD_SIGNATURE');
    // a's certificate, but a signature over other words.
    assertRefused(await post(notice({ signature: signText(disconnectText(a.id, b.id, at + 1), aId.keyPem) })), 403, 'BAD_SIGNATURE');
    // Too old.
    const old = at - 10 * 60 * 1000;
    assertRefused(await post(notice({ at: old, signature: signText(disconnectText(a.id, b.id, old), aId.keyPem) })), 403, 'BAD_SIGNATURE', /five minutes/);
    // A certificate from c's CA carrying a's id.
    const cIdentity = c.server.identity;
    const forged = await issueServerCertificate(cIdentity.caCertPem, cIdentity.caKeyPem, a.id);
    assertRefused(await post(notice({ certPem: forged.certPem, signature: signText(disconnectText(a.id, b.id, at), forged.keyPem) })), 403, 'BAD_SIGNATURE', /not issued by the CA/);
    assert.equal(b.server.ctx.trust.isTrusted(a.id), true);

    assert.equal((await post(notice())).status, 200);
    assert.equal(b.server.ctx.trust.isTrusted(a.id), false);
    assert.equal(b.server.ctx.trust.isTrusted(c.id), true);
  });

  it('updates a peer\'s address on a signed peer-moved notice, and on nothing less', async () => {
    const a = await startPeer('moved-a');
    const b = await startPeer('moved-b');
    const stranger = await startPeer('moved-x');
    await connectPair(a, b);
    const { signText, movedText } = await import('../../src/federation/signed-notice.js');
    const key = identityFiles(a.home);
    const notice = (address: { host: string; unsecurePort: number; securePort: number }, at: number, signer = key) => ({
      from: a.id,
      ...address,
      at,
      certPem: signer.certPem,
      signature: signText(movedText(a.id, address, at), signer.keyPem),
    });
    const post = (body: unknown) => postUnsecure(b.server.unsecurePort, '/peer-moved', body);
    const moved = { host: 'a.example.org', unsecurePort: 1111, securePort: 2222 };
    const now = Date.now();

    // Signed over another address than the one it carries.
    assertRefused(await post({ ...notice(moved, now), host: 'evil.example.org' }), 403, 'BAD_SIGNATURE');
    // Signed by another server's key.
    assertRefused(await post(notice(moved, now, identityFiles(stranger.home))), 403, 'BAD_SIGNATURE');
    // From a server b does not trust.
    assertRefused(await post({ ...notice(moved, now), from: stranger.id }), 404, 'PEER_NOT_FOUND');
    assert.equal(b.server.ctx.trust.peer(a.id)?.host, '127.0.0.1');

    const good = notice(moved, now);
    const reply = await post(good);
    assert.deepEqual(reply.body, { ok: true, changed: true });
    assert.deepEqual(
      (({ host, unsecurePort, securePort }) => ({ host, unsecurePort, securePort }))(b.server.ctx.trust.peer(a.id)!),
      moved,
    );
    assertRefused(await post(good), 403, 'BAD_SIGNATURE', /used already/);
    // An older notice, captured on the way, cannot undo a newer one.
    const older = await post(notice({ host: '127.0.0.1', unsecurePort: 3333, securePort: 4444 }, now - 1000));
    assert.deepEqual(older.body, { ok: true, changed: false });
    assert.equal(b.server.ctx.trust.peer(a.id)?.host, 'a.example.org');

    // What a server sends on start puts the real address back.
    assert.deepEqual(await a.server.ctx.handshake.announceAddress(), { [b.id]: true });
    assert.equal(b.server.ctx.trust.peer(a.id)?.securePort, a.server.securePort);
    assert.equal(b.server.ctx.trust.peer(a.id)?.host, '127.0.0.1');
  });

  it('tells peers a new address on restart, and keeps everything in peers.json (0600) across it', async () => {
    const a = await startPeer('mover');
    const b = await startPeer('stay');
    const c = await startPeer('third');
    const d = await startPeer('asks');
    const e = await startPeer('asked');
    await connectPair(b, a);
    await connectPair(c, a);
    await a.admin.setPeerPriority(c.id, 0);
    await d.admin.connectServer('127.0.0.1', a.server.unsecurePort, a.server.caFingerprint);
    await a.admin.connectServer('127.0.0.1', e.server.unsecurePort, e.server.caFingerprint);
    const before = a.peersFile();
    assert.equal(statSync(join(a.home, 'peers.json')).mode & 0o777, 0o600);

    await a.stop();
    const [securePort, unsecurePort] = [await freePort(), await freePort()];
    await a.restart({ securePort, unsecurePort });
    assert.equal(a.server.securePort, securePort);

    for (const peer of [b, c]) {
      await until(`${peer.server.config.name} to learn a's new ports`, () => {
        const rec = peer.server.ctx.trust.peer(a.id);
        return rec?.securePort === securePort && rec.unsecurePort === unsecurePort;
      });
    }
    // The notices sent on start are accepted (the peer links' hello may have told them first).
    const heard = await a.server.ctx.handshake.announceAddress();
    assert.deepEqual(heard, { [b.id]: true, [c.id]: true });
    const after = a.peersFile();
    assert.deepEqual(after.peers, before.peers);
    assert.deepEqual(after.received, before.received);
    assert.deepEqual(after.sent, before.sent);
    assert.deepEqual(a.server.ctx.trust.peers().map((p) => [p.serverId, p.priority]), [[c.id, 0], [b.id, 1]]);
    assert.equal(statSync(join(a.home, 'peers.json')).mode & 0o777, 0o600);

    // The request sent before the restart still completes (polling resumed).
    await e.admin.trustPeer(a.id);
    await until('the old request to complete', () => a.server.ctx.trust.isTrusted(e.id));
    // And the received one can still be trusted.
    await a.admin.trustPeer(d.id);
    await until('d to hear it', () => d.server.ctx.trust.isTrusted(a.id));
  });
});
