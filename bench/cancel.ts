import { join } from 'node:path';
import { benchServer, connectPeers, round, runChild, type Bench } from './lib.js';

/**
 * Cancel latency: a real worker runs `sleep 300`; the user cancels the job;
 * how long from the cancel request until the job's process is gone. The
 * heartbeat interval is two minutes, so only the control poll can make it
 * quick. Delegated: the job is submitted on a peer (its home), and the worker
 * belongs to the other server, which borrowed the job. The worker and the
 * user are in their own process (cancel-client.ts), as cpc-worker and cpcc are.
 */
export async function cancelLatency(samples: number, opts: { delegated?: boolean } = {}): Promise<{ p50: number; p99: number; max: number }> {
  const config = { heartbeatIntervalS: 120 };
  const a = await benchServer(config);
  const b = opts.delegated ? await benchServer(config) : a;
  try {
    if (b !== a) await connectPeers(a, b);
    const endpoint = (s: Bench, token: string) =>
      JSON.stringify({ url: s.server.url, caFile: join(s.server.identity.dir, 'ca.pem'), serverId: s.server.serverId, token });
    const r = await runChild<{ p50: number; p99: number; max: number }>('cancel-client.ts', [
      String(samples),
      endpoint(a, a.workerToken),
      endpoint(b, b.admin.token!),
      b.project,
    ]);
    return { p50: round(r.p50), p99: round(r.p99), max: round(r.max) };
  } finally {
    if (b !== a) await b.close();
    await a.close();
  }
}
