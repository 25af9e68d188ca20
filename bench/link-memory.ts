/**
 * Memory per peer link: one real cpc-server process (the hub, compiled bins)
 * takes links from PEERS servers started in this process, one trusted pair
 * each, and its heap and RSS are sampled with no link and with all of them.
 * The hub runs with --expose-gc and a preload that collects garbage before
 * each /metrics scrape is answered, so the heap figures are live memory, not
 * whatever the collector had not yet reclaimed.
 *
 *   npx tsc -p tsconfig.bench.json && node dist/bench/link-memory.js [--peers 24]
 */
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { ApiClient } from '../src/client/api/client.js';
import { startServer, type RunningServer } from '../src/server/start/server.js';

const ROOT = join(import.meta.dirname, '..', '..');
const peersArg = process.argv.indexOf('--peers');
const PEERS = peersArg > 0 ? Number(process.argv[peersArg + 1]) : 24;
const SAMPLES = 5;

async function waitFor<T>(what: string, fn: () => Promise<T | null> | T | null, timeoutMs = 120_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      const v = await fn();
      if (v !== null && v !== undefined && v !== false) return v;
    } catch {
      // not yet
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'cpc-bench-linkmem-'));
  const hubHome = join(dir, 'hub');
  const gcHook = join(dir, 'gc-on-scrape.cjs');
  // Collected before every request: the scrape then reads live memory.
  writeFileSync(gcHook, "const https=require('node:https');const o=https.Server.prototype.emit;https.Server.prototype.emit=function(e,...a){if(e==='request'&&global.gc)global.gc();return o.call(this,e,...a)};\n");
  const hub = spawn(process.execPath, ['--expose-gc', '--require', gcHook, join(ROOT, 'dist', 'bin', 'cpc-server.js'), '--home', hubHome, 'start', '--host', '127.0.0.1', '--port', '0', '--unsecure-port', '0'], {
    stdio: ['ignore', 'ignore', 'ignore'],
    env: { ...process.env, CPC_SCRYPT_LOG_N: '14' },
  });
  const peers: RunningServer[] = [];
  try {
    const info = await waitFor('the hub to start', () => JSON.parse(readFileSync(join(hubHome, 'server.json'), 'utf8')) as { url: string; unsecureUrl: string; serverId: string });
    const caPem = readFileSync(join(hubHome, 'identity', 'ca.pem'), 'utf8');
    const fp = new X509Certificate(caPem).fingerprint256;
    const admin = new ApiClient({ url: info.url, caPem, serverId: info.serverId });
    admin.token = (await admin.login('cpc-admin', readFileSync(join(hubHome, 'initial-admin-password'), 'utf8').trim())).token;
    const unsecurePort = Number(new URL(info.unsecureUrl).port);
    const dispatcher = new Agent({ connect: { ca: caPem, rejectUnauthorized: false } });
    const sample = async () => {
      let heap = Infinity;
      let rss = Infinity;
      for (let i = 0; i < SAMPLES; i++) {
        const res = await request(`${info.url}/metrics`, { dispatcher, headers: { authorization: `Bearer ${admin.token!}` } });
        const text = await res.body.text();
        heap = Math.min(heap, Number(/^nodejs_heap_used_bytes (\S+)/m.exec(text)![1]));
        rss = Math.min(rss, Number(/^process_resident_memory_bytes (\S+)/m.exec(text)![1]));
        await new Promise((r) => setTimeout(r, 500));
      }
      return { heap, rss };
    };
    const before = await sample();
    for (let i = 0; i < PEERS; i++) {
      const peer = await startServer({ home: join(dir, `peer-${i}`), securePort: 0, unsecurePort: 0, host: '127.0.0.1', publicHost: '127.0.0.1', name: `peer-${i}`, log: () => {} });
      peers.push(peer);
      const c = new ApiClient({ url: peer.url, caPem: peer.caPem, serverId: peer.serverId });
      c.token = (await c.login('cpc-admin', peer.adminPassword!)).token;
      await c.connectServer('127.0.0.1', unsecurePort, fp);
      await c.destroy();
      // One at a time: requests from one address are capped while they wait.
      await admin.trustAllPeers();
    }
    await waitFor('every link up', async () => (await admin.peers()).connected.filter((p) => p.link === 'up').length === PEERS);
    const after = await sample();
    const perLinkKb = (x: number, y: number) => Math.round((y - x) / PEERS / 1024);
    console.log(
      JSON.stringify({
        peers: PEERS,
        heapMbBefore: Math.round(before.heap / 1048576),
        heapMbAfter: Math.round(after.heap / 1048576),
        heapKbPerLink: perLinkKb(before.heap, after.heap),
        rssMbBefore: Math.round(before.rss / 1048576),
        rssMbAfter: Math.round(after.rss / 1048576),
        rssKbPerLink: perLinkKb(before.rss, after.rss),
      }),
    );
    await dispatcher.close();
    await admin.destroy();
  } finally {
    await Promise.all(peers.map((p) => p.close().catch(() => {})));
    hub.kill('SIGTERM');
    await new Promise((r) => hub.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
