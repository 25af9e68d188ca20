import { join } from 'node:path';
import { benchServer, delegatingPair, round, runChild, type Bench, type Wan } from './lib.js';

/**
 * Wake-up: an idle worker is long-polling; a job is submitted; how long until
 * the worker holds it (submit durable, hand-out durable). The worker and the
 * submitting user are clients in their own process (wakeup-client.ts), as
 * cpc-worker and cpcc are, so the server's event loop is its own.
 */
export async function wakeup(samples: number, opts: { delegated?: boolean; wan?: Wan } = {}): Promise<{ p50: number; p99: number; max: number }> {
  // Delegated: the job is submitted on a peer; the idle worker belongs to `a` (with `wan`, across a delaying relay).
  const pair = opts.delegated ? await delegatingPair(opts.wan) : null;
  const a = pair?.asking ?? (await benchServer());
  const b = pair?.home ?? a;
  try {
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
    await (pair ? pair.close() : a.close());
  }
}
