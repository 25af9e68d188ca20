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
}

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

export function projectStats(project: string, jobs: readonly StatsJob[], byName = false): ProjectStats {
  const out: ProjectStats = { project, ...figuresOf(jobs) };
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
