import { join } from 'node:path';
import { benchServer, connectPeers, round, runChild, type Bench } from './lib.js';

/**
 * Wake-up: an idle worker is long-polling; a job is submitted; how long until
 * the worker holds it (submit durable, hand-out durable). The worker and the
 * submitting user are clients in their own process (wakeup-client.ts), as
 * cpc-worker and cpcc are, so the server's event loop is its own.
 */
export async function wakeup(samples: number, opts: { delegated?: boolean } = {}): Promise<{ p50: number; p99: number; max: number }> {
  const a = await benchServer();
  // Delegated: the job is submitted on a peer; the idle worker belongs to `a`.
  const b = opts.delegated ? await benchServer() : a;
  try {
    if (b !== a) await connectPeers(a, b);
    const endpoint = (s: Bench, token: string) =>
      JSON.stringify({ url: s.server.url, caFile: join(s.server.identity.dir, 'ca.pem'), serverId: s.server.serverId, token });
    const r = await runChild<{ p50: number; p99: number; max: number }>('wakeup-client.ts', [
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
