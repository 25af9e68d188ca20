/**
 * server/pilots: workers started on batch systems (Slurm, Grid Engine) when work waits.
 * Owns the pilot manager, its store, the launchers and their routes; index.ts (this file) connects
 * the manager to a running server through the narrow PilotHost.
 * May call: src/core, src/persistence, server/http, server/start (Context, here only). Writes
 * worker-removed.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Context } from '../start/context.js';
import { PilotManager, type PilotHost } from './pilot-manager.js';

/**
 * Connects the pilot manager to a running server: the queue and the workers
 * it reads, the tokens it issues and revokes, the workers it removes. The
 * manager itself sees only this narrow host.
 */
export async function openPilots(ctx: Context, home: string, serverUrl: () => string, overrides: Partial<PilotHost> = {}): Promise<PilotManager> {
  const model = ctx.store.model;
  const host: PilotHost = {
    home,
    launchers: ctx.config.launchers,
    serverUrl,
    serverId: ctx.identity.serverId,
    caPem: ctx.identity.caCertPem,
    leaseMs: ctx.leaseMs,
    log: ctx.log,
    queuedShapes: () => model.ready.shapes(),
    workers: () =>
      [...model.workers.values()].map((w) => ({
        id: w.id,
        tokenId: w.tokenId,
        free: model.freeOf(w.id),
        registeredAt: w.registeredAt,
        lastSeen: w.lastSeen,
      })),
    issueToken: async (name, expiresAt) => {
      // One pilot, one worker: the token cannot start a second one.
      const { token, record } = await ctx.accounts.issue('worker', name, expiresAt, { maxWorkers: 1 });
      return { token, tokenId: record.id };
    },
    revokeToken: async (tokenId) => {
      try {
        await ctx.accounts.revoke(tokenId, 'worker');
      } catch (err) {
        if ((err as { code?: string }).code !== 'TOKEN_NOT_FOUND') throw err;
      }
    },
    forgetTokens: (tokenIds) => ctx.accounts.forgetRevoked(tokenIds),
    removeWorker: async (workerId, reason) => {
      if (!model.workers.has(workerId)) return;
      await ctx.store.commit({ t: 'worker-removed', at: Date.now(), id: workerId, reason });
      ctx.journaledDeadline.delete(workerId);
      ctx.dispatcher.kick();
    },
    workerCommand: defaultWorkerCommand(),
    ...overrides,
  };
  return PilotManager.open(host);
}

/**
 * This Node.js and the cpc-worker installed next to this server: the built
 * one, or the TypeScript source through tsx when running from a checkout.
 */
export function defaultWorkerCommand(): string[] {
  const built = fileURLToPath(new URL('../../../bin/cpc-worker.js', import.meta.url));
  if (existsSync(built)) return [process.execPath, built];
  const source = fileURLToPath(new URL('../../../bin/cpc-worker.ts', import.meta.url));
  return [process.execPath, '--import', import.meta.resolve('tsx'), source];
}
