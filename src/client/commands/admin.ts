/**
 * Admin commands under their Copernicus names: take back what a dead worker
 * (worker-failed) or one job's attempt (command-failed) holds now instead of
 * when its lease runs out, and stop the server (stop-server). Also the
 * weights users and projects share the queue by (set-weight, weights).
 */
import { MAX_WEIGHT } from '../../core/types.js';
import type { LostReply, WeightView } from '../../core/wire.js';
import { plural, usage } from '../output.js';
import type { Argument, CommandSpec, Context } from './context.js';
import { jobArg } from './parsers.js';
import { shortId } from '../../core/short-ids.js';

function showLost(ctx: Context, reply: LostReply, what: string): void {
  ctx.out.show(reply, () => {
    if (reply.lost.length === 0 && reply.foreign.length === 0) {
      ctx.out.line(`${what}: it held no running attempts; nothing changed`);
      return;
    }
    if (reply.lost.length > 0) {
      ctx.out.line(`${what}: ${plural(reply.lost.length, 'attempt')} marked lost`);
      ctx.out.table(reply.lost, [
        { header: 'job', value: (l) => shortId(l.jobId) },
        { header: 'attempt', value: (l) => l.attempt, align: 'right' },
        // Re-queued like a lost lease, or failed when it was lost too often.
        { header: 'now', value: (l) => ctx.out.state(l.state) },
      ]);
    }
    for (const f of reply.foreign) ctx.out.note(`given back to server ${f.home}: attempt ${f.attempt} of its job ${f.jobId}`);
  });
}

async function workerFailed(ctx: Context, args: Argument[]): Promise<void> {
  // A peer's worker may carry an id of another form: only the server can tell.
  const id = String(args[0]);
  const { api } = await ctx.client();
  showLost(ctx, await api.markWorkerLost(id), `worker ${id}`);
}

async function commandFailed(ctx: Context, args: Argument[]): Promise<void> {
  const id = jobArg(String(args[0]));
  const { api } = await ctx.client();
  showLost(ctx, await api.markJobLost(id), `job ${id}`);
}

async function stopServer(ctx: Context): Promise<void> {
  const { api, server } = await ctx.client();
  const reply = await api.stopServer();
  ctx.out.show({ server: server.name, ...reply }, () => ctx.out.line(`server '${server.name}' (${reply.serverId}) is stopping`));
}

async function setWeight(ctx: Context, args: Argument[]): Promise<void> {
  const [of, name, text] = args.map(String) as [string, string, string];
  if (of !== 'user' && of !== 'project') usage(`the first argument must be 'user' or 'project', got '${of}'`);
  const weight = Number(text);
  if (text.trim() === '' || !Number.isInteger(weight) || weight < 1 || weight > MAX_WEIGHT) usage(`the weight must be a whole number from 1 to ${MAX_WEIGHT}, got '${text}'`);
  const { api } = await ctx.client();
  const reply = await api.setWeight(of, name, weight);
  ctx.out.show(reply, () => ctx.out.line(`${of} '${name}' now has weight ${reply.weight}`));
}

async function weights(ctx: Context): Promise<void> {
  const { api } = await ctx.client();
  const reply = await api.weights();
  ctx.out.list(reply, reply.weights, [
    { header: 'of', value: (w: WeightView) => w.of },
    { header: 'name', value: (w) => w.name },
    { header: 'weight', value: (w) => w.weight, align: 'right' },
  ], 'every user and project has weight 1');
}

export const adminCommands: CommandSpec[] = [
  {
    name: 'worker-failed',
    args: ['<worker_id>'],
    summary: 'mark a worker lost now: its running jobs are re-queued instead of waiting for their leases (super user)',
    help: "Worker ids are listed by 'cpcc workers'. If the worker comes back, it is told to drop those attempts.",
    run: workerFailed,
  },
  {
    name: 'command-failed',
    args: ['<job_id>'],
    summary: "mark a job's running attempt lost now; the job is re-queued as after a lost lease",
    help: 'A job lost too often (see the architecture notes) fails instead, like one whose lease ran out.',
    run: commandFailed,
  },
  { name: 'stop-server', summary: 'stop the current server cleanly (super user)', run: stopServer },
  {
    name: 'set-weight',
    args: ['<user|project>', '<name>', '<n>'],
    summary: "set a user's or a project's share of the queue (1 to 1000, default 1; super user)",
    help:
      "Users take turns for the next job, each as many jobs in a row as their weight; a project's weight\n" +
      "does the same among its owner's projects at one priority. A job's priority orders only its own\nuser's jobs.",
    run: setWeight,
  },
  { name: 'weights', summary: 'the users and projects whose weight is not 1 (super user)', run: weights },
];
