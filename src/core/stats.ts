import { JOB_STATES, type AttemptEnd, type Job, type StateCounts } from './types.js';

/**
 * A project's accounting, like Slurm's `seff` for many jobs: how many jobs
 * are in each state, how their attempts ended, and for wall time, CPU time,
 * peak memory and efficiency the min, median, 90th percentile and max over
 * the attempts that were measured.
 *
 * - CPU efficiency: CPU seconds ÷ (cores asked × wall seconds).
 * - Memory efficiency: peak memory ÷ memory asked (attempts that asked for some).
 *
 * Grouped by name prefix on request: a job's name without its trailing
 * number and the separators before it (`sim-water-042` → `sim-water`).
 */

export interface Spread {
  /** How many attempts the figures are over. */
  n: number;
  min: number;
  median: number;
  p90: number;
  max: number;
}

export interface StatsFigures {
  jobs: number;
  states: StateCounts;
  /** Ended attempts by how they ended. */
  ends: Partial<Record<AttemptEnd, number>>;
  /** Attempts that carry usage. */
  measured: number;
  wallS: Spread | null;
  cpuS: Spread | null;
  maxRssMb: Spread | null;
  cpuEfficiency: Spread | null;
  memoryEfficiency: Spread | null;
  /** Sums over the measured attempts. */
  totalCpuS: number;
  totalWallS: number;
}

export interface ProjectStats extends StatsFigures {
  project: string;
  /** Per name prefix, when asked (`by=name`), largest group first. */
  groups?: ({ name: string } & StatsFigures)[];
  /** What the dashboard draws, when asked (`charts=true`). */
  charts?: StatsCharts;
}

/**
 * Equal-width bins from the least value to the greatest: bin i holds the
 * values in [edges[i], edges[i+1]), the last bin its upper edge too.
 */
export interface Histogram {
  edges: number[];
  counts: number[];
}

/**
 * How many attempts ran over time, as steps: `running[i]` attempts ran from
 * `t[i]` (ms since the epoch) until `t[i + 1]`; the last step lasts until now.
 */
export interface RunningSeries {
  t: number[];
  running: number[];
}

export interface StatsCharts {
  /** Measured attempts' wall seconds. */
  wallS: Histogram | null;
  /** Measured attempts' peak memory in MB. */
  maxRssMb: Histogram | null;
  running: RunningSeries;
}

/** Bins a histogram has at most, and steps a running series (more are merged, keeping each span's highest count). */
export const HISTOGRAM_BINS = 20;
export const RUNNING_POINTS = 400;

/** The nearest-rank percentile of sorted values. */
function rank(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

export function spread(values: number[]): Spread | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  return { n: s.length, min: round(s[0]!), median: round(rank(s, 0.5)), p90: round(rank(s, 0.9)), max: round(s[s.length - 1]!) };
}

/** `sim-water-042` → `sim-water`; a name that is all number stays; no name → `(no name)`. */
export function namePrefix(name: string | undefined): string {
  if (name === undefined || name === '') return '(no name)';
  const cut = name.replace(/[-_.:/ #]*\d+$/, '');
  return cut === '' ? name : cut;
}

/** Jobs with only the fields stats read (live ones, or archived ones as stored). */
export type StatsJob = Pick<Job, 'state' | 'attempts'> & { spec: Pick<Job['spec'], 'name' | 'resources'> };

export function figuresOf(jobs: readonly StatsJob[]): StatsFigures {
  const states: StateCounts = Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as StateCounts;
  const ends: Partial<Record<AttemptEnd, number>> = {};
  const wall: number[] = [];
  const cpu: number[] = [];
  const rss: number[] = [];
  const cpuEff: number[] = [];
  const memEff: number[] = [];
  let totalCpuS = 0;
  let totalWallS = 0;
  for (const job of jobs) {
    states[job.state]++;
    for (const a of job.attempts) {
      if (a.how !== undefined) ends[a.how] = (ends[a.how] ?? 0) + 1;
      const u = a.usage;
      if (!u) continue;
      const c = u.userS + u.systemS;
      wall.push(u.wallS);
      cpu.push(c);
      rss.push(u.maxRssMb);
      totalCpuS += c;
      totalWallS += u.wallS;
      const cores = job.spec.resources.cores;
      if (u.wallS > 0 && cores > 0) cpuEff.push(c / (cores * u.wallS));
      const asked = a.limits?.memoryMb ?? job.spec.resources.memoryMb;
      if (asked > 0) memEff.push(u.maxRssMb / asked);
    }
  }
  return {
    jobs: jobs.length,
    states,
    ends,
    measured: wall.length,
    wallS: spread(wall),
    cpuS: spread(cpu),
    maxRssMb: spread(rss),
    cpuEfficiency: spread(cpuEff),
    memoryEfficiency: spread(memEff),
    totalCpuS: round(totalCpuS),
    totalWallS: round(totalWallS),
  };
}

export function projectStats(project: string, jobs: readonly StatsJob[], byName = false, chartsAt?: number): ProjectStats {
  const out: ProjectStats = { project, ...figuresOf(jobs) };
  if (chartsAt !== undefined) out.charts = chartsOf(jobs, chartsAt);
  if (byName) {
    const groups = new Map<string, StatsJob[]>();
    for (const j of jobs) {
      const key = namePrefix(j.spec.name);
      const list = groups.get(key);
      if (list) list.push(j);
      else groups.set(key, [j]);
    }
    out.groups = [...groups.entries()]
      .map(([name, list]) => ({ name, ...figuresOf(list) }))
      .sort((a, b) => b.jobs - a.jobs || (a.name < b.name ? -1 : 1));
  }
  return out;
}

/** About √n bins (at most `maxBins`), so a few values give a few wide bars and many give detail. */
export function histogram(values: readonly number[], maxBins = HISTOGRAM_BINS): Histogram | null {
  if (values.length === 0) return null;
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const bins = hi === lo ? 1 : Math.max(1, Math.min(maxBins, Math.ceil(Math.sqrt(values.length))));
  const width = (hi - lo) / bins;
  const counts = new Array<number>(bins).fill(0);
  for (const v of values) counts[width === 0 ? 0 : Math.min(bins - 1, Math.floor((v - lo) / width))]!++;
  const edges = Array.from({ length: bins + 1 }, (_, i) => round(i === bins ? hi : lo + i * width));
  return { edges, counts };
}

/**
 * Attempts running over time from their start and end times; attempts still
 * running count until `now`. Above `maxPoints` steps, time is cut into
 * `maxPoints` equal spans, each showing the most attempts that ran in it.
 */
export function runningOverTime(attempts: readonly { startedAt: number; endedAt?: number }[], now: number, maxPoints = RUNNING_POINTS): RunningSeries {
  const changes = new Map<number, number>();
  let open = 0;
  for (const a of attempts) {
    changes.set(a.startedAt, (changes.get(a.startedAt) ?? 0) + 1);
    if (a.endedAt === undefined) open++;
    else {
      const end = Math.max(a.endedAt, a.startedAt);
      changes.set(end, (changes.get(end) ?? 0) - 1);
    }
  }
  const times = [...changes.keys()].sort((a, b) => a - b);
  const t: number[] = [];
  const running: number[] = [];
  let n = 0;
  for (const at of times) {
    n += changes.get(at)!;
    t.push(at);
    running.push(n);
  }
  // Still running: the last step reaches now.
  if (open > 0 && t.length > 0 && now > t[t.length - 1]!) {
    t.push(now);
    running.push(n);
  }
  if (t.length <= maxPoints) return { t, running };
  const t0 = t[0]!;
  const span = (t[t.length - 1]! - t0) / maxPoints;
  const out: RunningSeries = { t: [], running: [] };
  let carried = 0;
  let i = 0;
  for (let b = 0; b < maxPoints; b++) {
    const end = b === maxPoints - 1 ? Infinity : t0 + (b + 1) * span;
    let most = carried;
    while (i < t.length && t[i]! < end) {
      most = Math.max(most, running[i]!);
      carried = running[i]!;
      i++;
    }
    out.t.push(Math.round(t0 + b * span));
    out.running.push(most);
  }
  return out;
}

/** The dashboard's charts over a project's jobs. */
export function chartsOf(jobs: readonly StatsJob[], now: number): StatsCharts {
  const wall: number[] = [];
  const rss: number[] = [];
  const spans: { startedAt: number; endedAt?: number }[] = [];
  for (const job of jobs) {
    for (const a of job.attempts) {
      spans.push(a.endedAt === undefined ? { startedAt: a.startedAt } : { startedAt: a.startedAt, endedAt: a.endedAt });
      if (!a.usage) continue;
      wall.push(a.usage.wallS);
      rss.push(a.usage.maxRssMb);
    }
  }
  return { wallS: histogram(wall), maxRssMb: histogram(rss), running: runningOverTime(spans, now) };
}
