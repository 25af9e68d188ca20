/**
 * Pilots: cpc-workers the server started through a batch system (Slurm),
 * with their state, batch job id, worker and what went wrong last.
 */
import type { PilotView, PilotsView } from '../../core/wire.js';
import { ago } from '../output.js';
import type { CommandSpec, Context } from './context.js';

const LIVE = new Set(['queued', 'starting', 'running']);
/** Ended pilots shown without --all. */
const RECENT = 10;

async function pilots(ctx: Context, _args: unknown[], opts: Record<string, unknown>): Promise<void> {
  const { api } = await ctx.client();
  const reply = await api.call<PilotsView>('GET', '/pilots');
  const now = Date.now();
  const ended = reply.pilots.filter((p) => !LIVE.has(p.state));
  const rows = opts.all ? reply.pilots : [...reply.pilots.filter((p) => LIVE.has(p.state)), ...ended.slice(0, RECENT)];
  const c = ctx.out.c;
  const stateOf = (p: PilotView): string => {
    const s = p.batchState && p.batchState !== 'submitted' ? `${p.state} (${p.batchState})` : p.state;
    return p.state === 'failed' || p.state === 'lost' ? c.red(s) : p.state === 'running' ? c.green(s) : s;
  };
  ctx.out.list(reply, rows, [
    { header: 'launcher', value: (p: PilotView) => p.launcher },
    { header: 'pilot', value: (p) => p.id },
    { header: 'state', value: stateOf },
    { header: 'batch id', value: (p) => p.batchId ?? '' },
    { header: 'worker', value: (p) => p.workerId ?? '' },
    { header: 'age', value: (p) => ago(p.submittedAt, now) },
    { header: 'last error', value: (p) => (p.lastError ? (p.failures > 1 ? `${p.lastError} (${p.failures} times)` : p.lastError) : ''), max: 80 },
  ], reply.launchers.length === 0 ? 'no pilots; no launchers are configured (see docs/PILOTS.md)' : 'no pilots');
  if (ctx.global.json) return;
  if (!opts.all && ended.length > RECENT) ctx.out.hint(`${ended.length - RECENT} older ended pilots not shown; --all shows them`);
  for (const l of reply.launchers) {
    let line = `${l.name} (${l.kind}${l.partition ? `, ${l.kind === 'sge' ? 'queue' : 'partition'} ${l.partition}` : ''}): ${l.live} of at most ${l.maxPilots} pilots live, ${l.waiting} jobs waiting for room`;
    if (l.lastError) line += `; ${c.red(`last error: ${l.lastError}`)}`;
    if (l.retryAt) line += `; next try ${ago(l.retryAt, now)}`;
    ctx.out.line(line);
  }
}

export const pilotCommands: CommandSpec[] = [
  {
    name: 'pilots',
    summary: 'pilots started through batch systems: state, batch id, worker, age, last error (super user)',
    options: [{ flags: '--all', description: 'show every recorded pilot, not only live ones and the latest ended' }],
    run: pilots,
  },
];
