import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../src/client/api/client.js';
import { startServer, type RunningServer, type ServerOptions } from '../src/server/server.js';

/** A server in a temp home with an admin client and a project, for one benchmark. */
export interface Bench {
  server: RunningServer;
  admin: ApiClient;
  project: string;
  workerToken: string;
  close(): Promise<void>;
}

export async function benchServer(opts: Partial<ServerOptions> = {}): Promise<Bench> {
  const home = mkdtempSync(join(tmpdir(), 'cpc-bench-'));
  const server = await startServer({ home, securePort: 0, unsecurePort: 0, host: '127.0.0.1', publicHost: '127.0.0.1', logLevel: 'warn', ...opts });
  const admin = new ApiClient({ url: server.url, caPem: server.caPem, serverId: server.serverId });
  admin.token = (await admin.login('cpc-admin', server.adminPassword!)).token;
  await admin.createProject('bench');
  const workerToken = await server.createWorkerToken('bench');
  return {
    server,
    admin,
    project: 'bench',
    workerToken,
    close: async () => {
      await admin.close();
      await server.close();
      rmSync(home, { recursive: true, force: true });
    },
  };
}

/** Makes `a` and `b` trusted peers and waits for their link. */
export async function connectPeers(a: Bench, b: Bench): Promise<void> {
  await a.admin.call('POST', '/peers/connect', { host: '127.0.0.1', port: b.server.unsecurePort });
  await b.admin.call('POST', `/peers/${a.server.serverId}/trust`, {});
  const deadline = Date.now() + 15_000;
  while (a.server.ctx.linkState?.(b.server.serverId) !== 'up' || b.server.ctx.linkState?.(a.server.serverId) !== 'up') {
    if (Date.now() > deadline) throw new Error('the peer link did not come up');
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export interface Stat {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

export function stat(runs: number[]): Stat {
  const s = [...runs].sort((a, b) => a - b);
  return { median: percentile(s, 50), min: s[0]!, max: s[s.length - 1]!, runs };
}

export const round = (n: number, digits = 2): number => Number(n.toFixed(digits));
