/**
 * `cpcc why JOB`: what keeps a job from running, as the server sees it
 * (GET /jobs/:id/why): dependencies, no worker big enough, an old attempt
 * still stopping, or room and turns.
 */
import type { WhyReason, WhyView } from '../../core/job-reports.js';
import type { Resources } from '../../core/types.js';
import { shortId } from '../../core/short-ids.js';
import type { Argument, Context } from './context.js';
import { jobArg } from './parsers.js';

const size = (r: Resources) => `${r.cores} core${r.cores === 1 ? '' : 's'}, ${r.memoryMb} MB`;

/** The lines that say more than the summary about one reason. */
function details(ctx: Context, r: WhyReason): void {
  const { out } = ctx;
  switch (r.kind) {
    case 'dependencies':
      if (r.jobs.length === 0) return;
      out.line(`waiting for ${r.count} job${r.count === 1 ? '' : 's'} to be done:`);
      out.table(r.jobs, [
        { header: 'id', value: (d: (typeof r.jobs)[number]) => shortId(d.id) },
        { header: 'name', value: (d) => d.name, max: 24 },
        { header: 'state', value: (d) => out.state(d.state) },
      ]);
      if (r.count > r.jobs.length) out.hint(`and ${r.count - r.jobs.length} more`);
      return;
    case 'no-worker-fits': {
      const short = [
        r.largest && r.largest.cores < r.asked.cores ? `cores: asks ${r.asked.cores}, at most ${r.largest.cores} offered` : undefined,
        r.largest && r.largest.memoryMb < r.asked.memoryMb ? `memory: asks ${r.asked.memoryMb} MB, at most ${r.largest.memoryMb} MB offered` : undefined,
      ].filter((x): x is string => x !== undefined);
      out.line(`no worker fits: it asks ${size(r.asked)}; no one worker (of ${r.workers}) or peer offer (of ${r.peers}) has both`);
      for (const s of short) out.line(`  ${s}`);
      out.line('  lower --cores or --memory, or start a bigger worker');
      return;
    }
    case 'no-workers':
      out.line('no worker that may run it is connected, and no peer offers room; start one with cpc-worker');
      return;
    case 'old-attempt':
      out.line(`attempt ${r.attempt} is still stopping on worker ${r.worker}${r.via === 'local' ? '' : ` via ${r.via}`}; the job runs again once that process is gone or its lease runs out`);
      return;
    case 'waiting-for-room':
      out.line(`it fits ${r.fitting} worker${r.fitting === 1 ? '' : 's'}; the most free on one now: ${r.freeNow ? size(r.freeNow) : 'none'}`);
      out.line(`${r.ahead} queued job${r.ahead === 1 ? '' : 's'} of its project go first; ${r.others} queued in other projects take turns with it`);
      return;
  }
}

export async function why(ctx: Context, args: Argument[]): Promise<void> {
  const { api } = await ctx.client();
  const view: WhyView = await api.why(jobArg(String(args[0])));
  ctx.out.show(view, () => {
    ctx.out.line(`${shortId(view.id)} ${ctx.out.state(view.state)}: ${view.summary}`);
    for (const r of view.reasons) details(ctx, r);
  });
}
