import { rmSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { loadOrCreateIdentity } from '../src/federation/identity.js';
import { cpuUs, profiled, round, runChild, tempHome } from './lib.js';

/** What the bare server answers: 25 bytes of JSON, about a small API reply. */
export const CEILING_BODY = Buffer.from('{"jobs":[],"ok":1,"n":42}');
if (CEILING_BODY.length !== 25) throw new Error('the ceiling reply must be 25 bytes');

export interface CeilingRun {
  reqPerS: number;
  /** CPU time of the server's process per request. */
  serverCpuUs: number;
  p50: number;
  p99: number;
}

/**
 * Ceiling: what this machine's Node does for HTTPS round trips with nothing
 * behind them, so that dispatch can be read against it. The server is set up
 * like cpc's secure listener (a certificate of the server's own CA, client
 * certificates asked for but not required), reads the request body and
 * answers 25 bytes of JSON. As in dispatch, the server runs in this process
 * and the load comes from a child process (an undici Pool of 10 connections
 * sending small JSON POSTs with a bearer token).
 */
export async function ceiling(seconds: number, concurrency = 64): Promise<CeilingRun> {
  const home = tempHome();
  const { identity } = await loadOrCreateIdentity(join(home, 'identity'));
  let answered = 0;
  const server = createServer(
    {
      key: identity.keyPem,
      cert: identity.certPem,
      ca: [identity.caCertPem],
      requestCert: true,
      rejectUnauthorized: false,
      keepAliveTimeout: 65_000,
    },
    (req, res) => {
      req.on('data', () => undefined);
      req.on('end', () => {
        answered++;
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': CEILING_BODY.length });
        res.end(CEILING_BODY);
      });
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const cpu0 = cpuUs();
    const r = await profiled('ceiling', () =>
      runChild<{ requests: number; ms: number; p50: number; p99: number }>('ceiling-load.ts', [
        `https://127.0.0.1:${port}`,
        join(identity.dir, 'ca.pem'),
        identity.serverId,
        String(seconds),
        String(concurrency),
      ]),
    );
    const serverCpuUs = round((cpuUs() - cpu0) / answered, 1);
    return { reqPerS: round((r.requests / r.ms) * 1000, 0), serverCpuUs, p50: r.p50, p99: r.p99 };
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    rmSync(home, { recursive: true, force: true });
  }
}
