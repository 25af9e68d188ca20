/**
 * `cpcc stats [PROJECT]`: a project's jobs by state and by how their attempts
 * ended, and wall time, CPU time, peak memory and efficiency (min, median,
 * p90, max) over the measured attempts; per name prefix with `--by name`.
 */
import type { ProjectStats, Spread, StatsFigures } from '../../core/stats.js';
import { JOB_STATES } from '../../core/types.js';
import { formatDurationS } from '../../core/units.js';
import { oneOf } from './parsers.js';
import type { Argument, CommandSpec, Context } from './context.js';

function seconds(s: number): string {
  return s < 60 ? `${s < 10 ? s.toFixed(2) : s.toFixed(1)}s` : formatDurationS(s);
}

const percent = (x: number) => `${Math.round(x * 100)}%`;
const megabytes = (mb: number) => `${Math.round(mb)} MB`;

const ROWS: [label: string, key: 'wallS' | 'cpuS' | 'maxRssMb' | 'cpuEfficiency' | 'memoryEfficiency', fmt: (x: number) => string][] = [
  ['wall time', 'wallS', seconds],
  ['CPU time', 'cpuS', seconds],
  ['peak memory', 'maxRssMb', megabytes],
  ['CPU efficiency', 'cpuEfficiency', percent],
  ['memory efficiency', 'memoryEfficiency', percent],
];

function showFigures(ctx: Context, title: string, f: StatsFigures): void {
  const states = JOB_STATES.filter((s) => f.states[s] > 0).map((s) => `${f.states[s]} ${ctx.out.state(s)}`);
  const ends = Object.entries(f.ends)
    .sort((a, b) => b[1] - a[1])
    .map(([how, n]) => `${n} ${how}`);
  ctx.out.line(`${ctx.out.c.bold(title)}: ${f.jobs} job${f.jobs === 1 ? '' : 's'}${states.length > 0 ? ` (${states.join(', ')})` : ''}`);
  ctx.out.line(`attempts ended: ${ends.length > 0 ? ends.join(', ') : 'none'}; measured: ${f.measured}, ${seconds(f.totalCpuS)} CPU in all`);
  const rows = ROWS.map(([label, key, fmt]) => ({ label, s: f[key], fmt }));
  if (rows.every((r) => r.s === null)) return;
  const cell = (s: Spread | null, fmt: (x: number) => string, k: keyof Spread) => (s === null ? '' : k === 'n' ? s.n : fmt(s[k]));
  ctx.out.table(rows, [
    { header: '', value: (r) => r.label },
    { header: 'min', value: (r) => cell(r.s, r.fmt, 'min'), align: 'right' },
    { header: 'median', value: (r) => cell(r.s, r.fmt, 'median'), align: 'right' },
    { header: 'p90', value: (r) => cell(r.s, r.fmt, 'p90'), align: 'right' },
    { header: 'max', value: (r) => cell(r.s, r.fmt, 'max'), align: 'right' },
    { header: 'n', value: (r) => cell(r.s, r.fmt, 'n'), align: 'right' },
  ]);
}

async function stats(ctx: Context, args: Argument[], opts: Record<string, unknown>): Promise<void> {
  const { api } = await ctx.client();
  const name = await ctx.project(args[0] as string | undefined);
  const by = opts.by as 'name' | undefined;
  const s: ProjectStats = await api.stats(name, by ? { by } : {});
  ctx.out.show(s, () => {
    showFigures(ctx, `project ${s.project}`, s);
    for (const g of s.groups ?? []) {
      ctx.out.line();
      showFigures(ctx, g.name, g);
    }
  });
}

export const statsCommands: CommandSpec[] = [
  {
    name: 'stats',
    args: ['[project]'],
    summary: "a project's jobs by state and end, and their usage: wall, CPU, memory, efficiency (min, median, p90, max)",
    help:
      'Figures are over the attempts their workers measured, archived jobs included.\n' +
      'CPU efficiency is CPU time ÷ (cores asked × wall time); memory efficiency is peak memory ÷ memory asked.\n' +
      "--by name groups jobs by their name without its trailing number ('sim-042' → 'sim').",
    options: [{ flags: '--by <what>', description: "group by: 'name' (the job name's prefix)", parse: oneOf(['name']) }],
    run: stats,
  },
];
