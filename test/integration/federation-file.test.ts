/**
 * Joining a federation from a membership file: three real servers each run
 * `cpcc connect-server --file` and `cpcc trust --all --from` on the same file
 * and end up trusting each other, while a stranger not in the file, and a
 * request that carries a listed CA from another address (anyone can copy a
 * public CA), are left waiting.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { newNonce } from '../../src/federation/handshake.js';
import { cleanup, ok, postUnsecure, startPeer, tempDir, until, type PeerServer } from '../helpers/peers.js';

after(cleanup);

interface ConnectRow {
  host: string;
  port: number;
  state: string;
  serverId: string | null;
  error: string | null;
}

describe('membership file', () => {
  let a: PeerServer;
  let b: PeerServer;
  let c: PeerServer;
  let stranger: PeerServer;
  let file: string;

  before(async () => {
    [a, b, c, stranger] = await Promise.all([startPeer('fa'), startPeer('fb'), startPeer('fc'), startPeer('fs')]);
    const dir = await tempDir('cpc-members-');
    file = join(dir, 'members.txt');
    const line = (p: PeerServer, name: string) => `127.0.0.1 ${p.server.unsecurePort} ${p.server.caFingerprint} ${name}`;
    await fsp.writeFile(file, ['# the federation', line(a, 'site a'), line(b, 'site b'), `${line(c, 'site c')}  # hub`, ''].join('\n'));
  });

  it('refuses a file with a bad line, naming the line, and sends nothing', async () => {
    const bad = join(await tempDir('cpc-members-bad-'), 'bad.txt');
    await fsp.writeFile(bad, `127.0.0.1 ${b.server.unsecurePort} ${b.server.caFingerprint}\n127.0.0.1 14807 not-a-fingerprint\n`);
    const run = await a.cpcc(['connect-server', '--file', bad, '--json']);
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, /bad\.txt line 2: 'not-a-fingerprint' is not a SHA-256 fingerprint/);
    assert.equal((await a.admin.peers()).sent.length, 0);
    const dup = join(await tempDir('cpc-members-dup-'), 'dup.txt');
    await fsp.writeFile(dup, `127.0.0.1 ${b.server.unsecurePort} ${b.server.caFingerprint}\nother.example ${b.server.caFingerprint}\n`);
    const twice = await a.cpcc(['connect-server', '--file', dup]);
    assert.equal(twice.code, 2);
    assert.match(twice.stderr, /line 2: the fingerprint is listed already on line 1/);
  });

  it('connects every pair with one connect and one trust per server', async () => {
    // Someone copies A's public CA and asks C in A's name, from another address, before A does.
    const impostor = {
      serverId: a.id,
      name: 'site a',
      host: 'evil.example',
      unsecurePort: 9998,
      securePort: 9999,
      caPem: a.server.caPem,
      nonce: newNonce(),
    };
    assert.equal((await postUnsecure(c.server.unsecurePort, '/connect-request', impostor)).status, 200);
    // A stranger with a perfectly valid request of its own, but not in the file.
    await stranger.admin.connectServer('127.0.0.1', a.server.unsecurePort, a.server.caFingerprint);

    for (const p of [a, b, c]) {
      const out = ok<{ digest: string; members: ConnectRow[] }>(await p.cpcc(['connect-server', '--file', file, '--json']));
      assert.equal(out.members.length, 3);
      assert.equal(out.members.filter((m) => m.state === 'self').length, 1, JSON.stringify(out.members));
      for (const m of out.members) assert.ok(['self', 'sent', 'connected'].includes(m.state), JSON.stringify(m));
    }

    // C first: B is vouched for; the request in A's name is not, since the first one came with another address.
    const atC = ok<{ trusted: { serverId: string }[]; left: { serverId: string; reason: string }[] }>(
      await c.cpcc(['trust', '--all', '--from', file, '--json']),
    );
    assert.deepEqual(atC.trusted.map((t) => t.serverId), [b.id]);
    assert.deepEqual(atC.left.map((l) => [l.serverId, l.reason]), [[a.id, 'address differs from the file']]);

    const atA = ok<{ trusted: { serverId: string }[]; left: { serverId: string; reason: string }[] }>(
      await a.cpcc(['trust', '--all', '--from', file, '--json']),
    );
    assert.deepEqual(atA.left.map((l) => [l.serverId, l.reason]), [[stranger.id, 'not listed']]);
    ok(await b.cpcc(['trust', '--all', '--from', file, '--json']));

    const everyone = [a, b, c];
    await until('every listed pair to trust each other', () =>
      everyone.every((p) => everyone.every((q) => p === q || p.server.ctx.trust.isTrusted(q.id))),
    );
    // C holds A at A's own address, told by A's answer, not the impostor's.
    const aAtC = c.peersFile().peers.find((p) => p.serverId === a.id)!;
    assert.equal(aAtC.host, '127.0.0.1');
    assert.equal(aAtC.unsecurePort, a.server.unsecurePort);
    assert.equal(a.server.ctx.trust.isTrusted(stranger.id), false);
    assert.ok(a.peersFile().received.some((r) => r.serverId === stranger.id), 'the stranger still waits for an admin');
    await until('the listed links to come up', async () => {
      const { connected } = await a.admin.peers();
      return connected.length === 2 && connected.every((p) => p.link === 'up');
    }, 30_000);
  });

  it('is safe to run again: nothing new is sent', async () => {
    const out = ok<{ members: ConnectRow[] }>(await b.cpcc(['connect-server', '--file', file, '--json']));
    assert.deepEqual(out.members.map((m) => m.state).sort(), ['connected', 'connected', 'self']);
    assert.equal(b.peersFile().sent.length, 0);
    const again = ok<{ trusted: unknown[] }>(await b.cpcc(['trust', '--all', '--from', file, '--json']));
    assert.equal(again.trusted.length, 0);
  });

  it('says which servers it could not reach and exits 1', async () => {
    const dir = await tempDir('cpc-members-down-');
    const down = join(dir, 'down.txt');
    // A listed server that is not running: its port is closed.
    await stranger.stop();
    const text = `127.0.0.1 ${stranger.server.unsecurePort} ${stranger.server.caFingerprint} gone\n`;
    await fsp.writeFile(down, text);
    const run = await b.cpcc(['connect-server', '--file', down, '--json']);
    assert.equal(run.code, 1);
    const out = JSON.parse(run.stdout) as { members: ConnectRow[] };
    assert.equal(out.members[0]!.state, 'failed');
    assert.match(out.members[0]!.error ?? '', /UNREACHABLE|PEER_UNREACHABLE|refused|ECONNREFUSED/i);
  });
});
