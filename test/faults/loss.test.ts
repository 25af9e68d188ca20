/**
 * The lossy link the WAN scenario stands on (Network.lossBetween): packets
 * between two hosts are dropped in transit, so TCP must retransmit, and a
 * stream still arrives whole; a third host's link to the same host is
 * untouched; the rules go with the network.
 */
import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { until } from '../helpers/server.js';
import { faultsUnavailable, Network } from './netns.js';

const skip = faultsUnavailable();
const PORT = 13900;
const BYTES = 4 * 1024 * 1024;

/** Listens on PORT, hashes what one connection sends and prints the digest once it ends. */
const SINK = `const s=require('net').createServer((c)=>{const h=require('crypto').createHash('sha256');c.on('data',(d)=>h.update(d));c.on('end',()=>{console.log(h.digest('hex'));c.end();s.close();});});s.listen(${PORT},process.argv[1],()=>console.log('ready'));`;
/** Sends BYTES deterministic bytes to the address given, then half-closes. */
const SOURCE = `const b=Buffer.alloc(${BYTES});for(let i=0;i<b.length;i++)b[i]=(i*7+(i>>9))&255;const c=require('net').connect(${PORT},process.argv[1],()=>c.end(b));c.on('close',()=>process.exit(0));`;

function expected(): string {
  const b = Buffer.alloc(BYTES);
  for (let i = 0; i < b.length; i++) b[i] = (i * 7 + (i >> 9)) & 255;
  return createHash('sha256').update(b).digest('hex');
}

function lines(child: ChildProcess): () => string[] {
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  return () => out.split('\n').filter(Boolean);
}

describe('a lossy link between two hosts', { skip: skip ?? false, timeout: 180_000 }, () => {
  let net: Network;

  before(() => {
    net = new Network();
    for (const h of ['a', 'b', 'c']) net.addHost(h);
    net.lossBetween('a', 'b', 10);
  });

  after(async () => {
    await net?.destroy();
  });

  async function send(from: string, to: string): Promise<string> {
    const sink = net.spawn(to, process.execPath, ['-e', SINK, net.host(to).address], { stdio: ['ignore', 'pipe', 'inherit'] });
    const out = lines(sink);
    await until(`the sink on ${to}`, () => out().includes('ready'), { timeoutMs: 30_000 });
    net.spawn(from, process.execPath, ['-e', SOURCE, net.host(to).address], { stdio: ['ignore', 'ignore', 'inherit'] });
    return until(`the digest from ${to}`, () => out().find((l) => /^[0-9a-f]{64}$/.test(l)), { timeoutMs: 120_000 });
  }

  it('drops packets each way, and TCP still delivers the stream whole', async () => {
    assert.equal(net.lostPackets(), 0);
    assert.equal(await send('a', 'b'), expected());
    const dropped = net.lostPackets();
    assert.ok(dropped > 0, 'packets were dropped');
    // Both directions: data from a to b, acknowledgements back; 10 % of a few hundred packets each way.
    const listing = execFileSync('nft', ['list', 'table', 'bridge', `cf${net.id}loss`], { encoding: 'utf8' });
    const perRule = [...listing.matchAll(/counter packets (\d+)/g)].map((m) => Number(m[1]));
    assert.equal(perRule.length, 2, 'one rule each way');
    assert.ok(perRule.every((n) => n > 0), `each direction lost packets: ${perRule.join(', ')}`);
  });

  it('leaves other links alone', async () => {
    const before = net.lostPackets();
    assert.equal(await send('c', 'b'), expected());
    assert.equal(net.lostPackets(), before, 'nothing dropped between c and b');
  });

  it('goes with the network', async () => {
    const table = `cf${net.id}loss`;
    await net.destroy();
    assert.doesNotMatch(execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' }), new RegExp(table));
  });
});
