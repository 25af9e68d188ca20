/**
 * Load for the ceiling figure, in its own process: `concurrency` loops send
 * small JSON POSTs through one undici Pool of 10 connections, after a warm-up
 * second; prints requests, elapsed ms and latency percentiles.
 * argv: url caFile serverId seconds concurrency
 */
import { readFileSync } from 'node:fs';
import type { PeerCertificate } from 'node:tls';
import { Pool } from 'undici';
import { serverIdOfPeer } from '../src/client/api/client.js';
import { closedLoop, reply } from './lib.js';

const [url, caFile, serverId, secondsArg, concurrencyArg] = process.argv.slice(2);
const seconds = Number(secondsArg);
const concurrency = Number(concurrencyArg);
const pool = new Pool(url!, {
  connections: 10,
  keepAliveTimeout: 30_000,
  connect: {
    ca: readFileSync(caFile!, 'utf8'),
    rejectUnauthorized: true,
    // The same check as the API client: the server id, not the host name.
    checkServerIdentity: (_host: string, cert: PeerCertificate) =>
      serverIdOfPeer(cert) === serverId ? undefined : new Error('wrong server'),
  },
});
const body = JSON.stringify({ waitS: 2, max: 1 });
const headers = { 'content-type': 'application/json', accept: 'application/json', authorization: `Bearer cpc_${'0'.repeat(16)}_${'x'.repeat(43)}` };

const result = await closedLoop('ceiling-client', concurrency, seconds, async () => {
  const res = await pool.request({ path: '/api/v1/workers/x/claim', method: 'POST', headers, body });
  const text = await res.body.text();
  if (res.statusCode !== 200 || text.length !== 25) throw new Error(`unexpected reply ${res.statusCode} ${text}`);
});
await pool.close();
reply(result);
