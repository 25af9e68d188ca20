/**
 * Workers: who is connected, which attempts hold leases (heartbeats), and
 * the tokens workers register with.
 */
import type { LeaseView, WorkerTokenView, WorkerView } from '../../core/wire.js';
import { ago } from '../output.js';
import type { Argument, CommandSpec, Context } from './context.js';
import { positive } from './parsers.js';
import { shortId } from '../../core/short-ids.js';

async function workers(ctx: Context): Promise<void> {
  const { api } = await ctx.client();
  const reply = await api.workers();
  const now = Date.now();
  ctx.out.list(reply, reply.workers, [
    { header: 'name', value: (w: WorkerView) => w.name },
    { header: 'id', value: (w) => shortId(w.id) },
    { header: 'host', value: (w) => w.host },
    // Gone workers stay listed until the server's retention (workerRetentionS) ends.
    { header: 'state', value: (w) => (w.state === 'live' || w.state === undefined ? 'live' : ctx.out.c.yellow(`gone (${w.state})`)) },
    { header: 'cores', value: (w) => `${w.used.cores}/${w.resources.cores}`, align: 'right' },
    { header: 'MB', value: (w) => `${w.used.memoryMb}/${w.resources.memoryMb}`, align: 'right' },
    { header: 'jobs', value: (w) => w.running, align: 'right' },
    // Peers' jobs among them, by home server; a column only when some worker runs any.
    ...(reply.workers.some((w) => w.borrowed) ? [{ header: 'borrowed', value: (w: WorkerView) => (w.borrowed ?? []).map((b) => `${b.running} from ${b.name}`).join(', '), max: 32 }] : []),
    { header: 'labels', value: (w) => w.labels.join(','), max: 24 },
    { header: 'isolation', value: (w) => isolationOf(w, ctx) },
    { header: 'seen', value: (w) => ago(w.lastSeen, now) },
  ], 'no workers');
}

/** The level, and whose jobs a worker runs when they share its identity. */
function isolationOf(w: WorkerView, ctx: Context): string {
  const level = w.isolation ?? '?';
  const scope = w.onlyUser !== undefined ? ` (${w.onlyUser} only)` : w.sharedIdentity ? ' (shared)' : '';
  // Jobs of several users that can read each other: worth a colour.
  return w.isolation === 'none' && w.sharedIdentity ? ctx.out.c.red(level + scope) : level + scope;
}

async function heartbeats(ctx: Context): Promise<void> {
  const { api } = await ctx.client();
  const reply = await api.heartbeats();
  const now = Date.now();
  ctx.out.list(reply, reply.leases, [
    { header: 'job', value: (l: LeaseView) => shortId(l.jobId) },
    { header: 'project', value: (l) => l.project },
    { header: 'attempt', value: (l) => l.attempt, align: 'right' },
    { header: 'worker', value: (l) => l.workerName || l.workerId },
    // Lent: the borrowing server; borrowed: the job's home server. Named as the trust records name them.
    { header: 'via', value: (l) => (l.home ? `from ${l.home.name}` : l.via === 'local' ? 'local' : (l.viaName ?? l.via)) },
    { header: 'process', value: (l) => l.live ?? '' },
    // An overdue lease is about to be taken back; that is worth a colour.
    { header: 'deadline', value: (l) => (l.deadline < now ? ctx.out.c.red(`overdue ${ago(l.deadline, now)}`) : ago(l.deadline, now)) },
  ], 'no running attempts');
}

async function createToken(ctx: Context, args: Argument[], opts: Record<string, unknown>): Promise<void> {
  const { api } = await ctx.client();
  const created = await api.createWorkerToken(String(args[0]), opts.maxWorkers as number | undefined, opts.user as string | undefined);
  ctx.out.show(created, () => {
    ctx.out.note(`worker token '${created.name}' (id ${created.id}); it is shown only this once:`);
    ctx.out.raw(`${created.token}\n`);
  });
}

async function listTokens(ctx: Context): Promise<void> {
  const { api } = await ctx.client();
  const reply = await api.workerTokens();
  const now = Date.now();
  ctx.out.list(reply, reply.tokens, [
    { header: 'id', value: (t: WorkerTokenView) => t.id },
    { header: 'name', value: (t) => t.name },
    { header: 'created', value: (t) => ago(t.createdAt, now) },
    { header: 'state', value: (t) => (t.revoked ? ctx.out.c.red('revoked') : 'valid') },
    { header: 'user', value: (t) => t.user ?? '' },
  ], "no worker tokens; run 'cpcc worker-token create NAME'");
}

async function revokeToken(ctx: Context, args: Argument[]): Promise<void> {
  const { api } = await ctx.client();
  const reply = await api.revokeWorkerToken(String(args[0]));
  ctx.out.show(reply, () => ctx.out.line(`revoked worker token ${reply.revoked}`));
}

export const workerCommands: CommandSpec[] = [
  { name: 'workers', summary: 'the workers registered with the server', run: workers },
  { name: 'heartbeats', aliases: ['h'], summary: 'running attempts and their lease deadlines', run: heartbeats },
  {
    name: 'worker-token',
    summary: 'tokens that workers register with (super user)',
    commands: [
      {
        name: 'create',
        args: ['<name>'],
        summary: 'issue a token; it is printed once',
        options: [
          { flags: '--max-workers <n>', description: 'how many workers may be registered with it at once', parse: positive },
          { flags: '--user <name>', description: "its workers get only this user's jobs (for workers that cannot keep jobs apart)" },
        ],
        run: createToken,
      },
      { name: 'list', summary: 'list tokens', run: listTokens },
      { name: 'revoke', args: ['<id>'], summary: 'revoke a token; workers using it are refused', run: revokeToken },
    ],
  },
];
