/**
 * `cpcc watch [PROJECT]`: a live view of a project (or of every project one
 * may see), driven by the server's event stream. On a terminal it redraws in
 * place: counts by state, the running jobs with their worker and how long they
 * have run, and the latest failures. Otherwise (or with --lines) it prints one
 * line per change, and with --json one JSON line per stream message.
 *
 * The view is loaded through the API when the stream opens (and again when
 * the server answers `reset`); events that arrive while it loads are held and
 * applied after, so that an older answer never hides a newer event.
 */
import { JOB_STATES, emptyCounts, type StateCounts } from '../../core/types.js';
import type { JobView, ProjectView, StreamEvent, StreamJob, StreamMessage } from '../../core/wire.js';
import type { ApiClient } from '../api/client.js';
import { EventStream } from '../api/events.js';
import { ago, duration, type Output } from '../output.js';
import type { Argument, CommandSpec, Context } from './context.js';
import { shortId } from '../../core/short-ids.js';

const MAX_FAILURES = 10;
/** Running and failed jobs loaded per project when the view (re)loads. */
const LOAD_LIMIT = 1000;
const LOAD_PAGES = 5;

export interface RunningJob {
  id: string;
  project: string;
  name?: string;
  workerName: string;
  via: string;
  startedAt: number;
  attempt: number;
}

export interface Failure {
  id: string;
  project: string;
  name?: string;
  reason: string;
  at: number;
}

/** What the view shows, kept current by `load` and `apply`. */
export class WatchState {
  readonly counts = new Map<string, StateCounts>();
  readonly running = new Map<string, RunningJob>();
  failures: Failure[] = [];

  /** `project` null: every project the user may see. */
  constructor(readonly project: string | null) {}

  load(projects: ProjectView[], running: JobView[], failed: JobView[]): void {
    this.counts.clear();
    for (const p of projects) if (this.watches(p.name)) this.counts.set(p.name, { ...p.counts });
    this.running.clear();
    for (const j of running) {
      const a = j.attempts[j.attempts.length - 1];
      if (j.state !== 'running' || !a) continue;
      this.running.set(j.id, { id: j.id, project: j.project, name: j.name, workerName: a.workerName, via: a.via, startedAt: a.startedAt, attempt: a.n });
    }
    this.failures = failed
      .filter((j) => j.state === 'failed')
      .sort((a, b) => b.updatedAt - a.updatedAt)
      .slice(0, MAX_FAILURES)
      .map((j) => ({ id: j.id, project: j.project, name: j.name, reason: j.reason, at: j.updatedAt }));
  }

  watches(project: string): boolean {
    return this.project === null || this.project === project;
  }

  /** Applies one event; returns whether some part of it needs a reload (too many changes to list). */
  apply(ev: StreamEvent): boolean {
    for (const p of ev.projects ?? []) {
      if (!this.watches(p.name)) continue;
      if (p.removed) {
        this.counts.delete(p.name);
        for (const [id, r] of this.running) if (r.project === p.name) this.running.delete(id);
        this.failures = this.failures.filter((f) => f.project !== p.name);
      } else {
        this.counts.set(p.name, { ...p.counts });
      }
    }
    for (const j of ev.jobs ?? []) {
      if (!this.watches(j.project)) continue;
      if (j.state === 'running' && j.attempt) {
        this.running.set(j.id, {
          id: j.id,
          project: j.project,
          name: j.name,
          workerName: j.attempt.workerName,
          via: j.attempt.via,
          startedAt: j.attempt.startedAt,
          attempt: j.attempt.n,
        });
      } else {
        this.running.delete(j.id);
      }
      if (j.state === 'failed' && j.from !== 'failed') {
        this.failures = [{ id: j.id, project: j.project, name: j.name, reason: j.reason, at: j.updatedAt }, ...this.failures.filter((f) => f.id !== j.id)].slice(0, MAX_FAILURES);
      }
    }
    return (ev.omitted ?? []).some((o) => this.watches(o.project));
  }

  totals(): StateCounts {
    const all = emptyCounts();
    for (const c of this.counts.values()) for (const s of JOB_STATES) all[s] += c[s];
    return all;
  }

  /** The screen, as lines no wider than `width` (colour codes aside). */
  render(out: Output, o: { now: number; width: number; height: number; server: string; live: boolean }): string[] {
    const c = out.c;
    const lines: string[] = [];
    const clipLine = (s: string) => (s.length > o.width ? s.slice(0, Math.max(0, o.width - 1)) + '…' : s);
    const status = o.live ? c.green('live') : c.yellow('reconnecting…');
    const time = new Date(o.now).toLocaleTimeString();
    lines.push(`${c.bold('cpc watch')} · ${this.project === null ? 'all projects' : `project ${this.project}`} · ${o.server} · ${status} · ${time}`);
    const countsText = (counts: StateCounts) => JOB_STATES.map((s) => `${out.state(s)} ${counts[s]}`).join('  ');
    const totals = this.totals();
    lines.push(`${countsText(totals)}  · ${JOB_STATES.reduce((n, s) => n + totals[s], 0)} jobs`);
    if (this.project === null && this.counts.size > 0) {
      lines.push('');
      const width = Math.min(30, Math.max(7, ...[...this.counts.keys()].map((n) => n.length)));
      for (const [name, counts] of [...this.counts].sort(([a], [b]) => a.localeCompare(b))) {
        lines.push(`${pad(clip(name, width), width)}  ${countsText(counts)}`);
      }
    }

    const failuresRoom = Math.min(this.failures.length, MAX_FAILURES);
    const fixed = lines.length + 3 + (failuresRoom > 0 ? failuresRoom + 2 : 0);
    const room = Math.max(1, o.height - fixed - 1);
    const running = [...this.running.values()].sort((a, b) => a.startedAt - b.startedAt);
    lines.push('', c.bold(`RUNNING (${running.length})`));
    if (running.length === 0) lines.push(c.dim('  nothing is running'));
    else {
      const rows = running.slice(0, running.length > room ? room - 1 : room).map((r) => [
        shortId(r.id),
        ...(this.project === null ? [r.project] : []),
        r.name ?? '',
        r.workerName,
        r.via,
        duration(o.now - r.startedAt),
      ]);
      const head = ['job', ...(this.project === null ? ['project'] : []), 'name', 'worker', 'via', 'running for'];
      columns([head, ...rows], o.width).forEach((line, i) => lines.push(i === 0 ? c.dim(line) : line));
      if (running.length > rows.length) lines.push(c.dim(`  … and ${running.length - rows.length} more`));
    }
    if (this.failures.length > 0) {
      lines.push('', c.bold(`RECENT FAILURES (${this.failures.length})`));
      for (const f of this.failures) {
        lines.push(clipLine(`${shortId(f.id)}  ${this.project === null ? `${f.project}  ` : ''}${f.name ? `${f.name}  ` : ''}${f.reason}  ${ago(f.at, o.now)}`));
      }
    }
    return lines.map((l) => (stripAnsi(l).length > o.width ? clipLine(stripAnsi(l)) : l));
  }
}

/** One line for a job's change, for plain output. */
export function jobLine(ev: StreamEvent, j: StreamJob): string {
  const time = new Date(ev.at).toISOString().slice(11, 19);
  const from = j.from === null ? 'submitted' : j.from;
  const change = from === j.state ? j.state : `${from} → ${j.state}`;
  return `${time}  ${j.project}  ${j.id}${j.name ? `  ${j.name}` : ''}  ${change}  (${j.reason})`;
}

function linesOf(ev: StreamEvent): string[] {
  const out: string[] = [];
  const time = new Date(ev.at).toISOString().slice(11, 19);
  for (const j of ev.jobs ?? []) out.push(jobLine(ev, j));
  for (const o of ev.omitted ?? []) out.push(`${time}  ${o.project}  … and ${o.jobs} more jobs changed`);
  if (ev.kind === 'worker-registered' || ev.kind === 'worker-stopped' || ev.kind === 'worker-removed') {
    for (const w of ev.workers ?? []) {
      out.push(
        w.removed !== undefined
          ? `${time}  worker ${w.name ?? w.id} removed (${w.removed})`
          : ev.kind === 'worker-stopped'
            ? `${time}  worker ${w.name} stopped`
            : `${time}  worker ${w.name} registered on ${w.host} (${w.resources?.cores} cores, ${w.resources?.memoryMb} MB)`,
      );
    }
  }
  for (const p of ev.projects ?? []) {
    if (p.removed) out.push(`${time}  project ${p.name} removed`);
    else if (ev.kind === 'project-created') out.push(`${time}  project ${p.name} created by ${p.owner}`);
    else if (ev.kind === 'project-loaded') out.push(`${time}  project ${p.name} loaded by ${p.owner}`);
    else if (ev.kind === 'value-set') out.push(`${time}  project ${p.name}: a value changed`);
  }
  return out;
}

function countsLine(name: string, counts: StateCounts): string {
  return `${name}: ${JOB_STATES.map((s) => `${s} ${counts[s]}`).join(', ')}`;
}

async function loadView(api: ApiClient, state: WatchState): Promise<void> {
  const projects = state.project === null ? (await api.projects()).projects : [await api.project(state.project)];
  const running: JobView[] = [];
  const failed: JobView[] = [];
  for (const p of projects) {
    for (const [s, into] of [['running', running], ['failed', failed]] as const) {
      let after: string | undefined;
      for (let page = 0; page < LOAD_PAGES; page++) {
        const list = await api.jobs(p.name, { state: s, limit: LOAD_LIMIT, after });
        into.push(...list.jobs);
        if (list.next === undefined || list.next === after) break;
        after = list.next;
      }
    }
  }
  state.load(projects, running, failed);
}

async function watch(ctx: Context, args: Argument[], opts: Record<string, unknown>): Promise<void> {
  const { api, server } = await ctx.client();
  let project: string | null = null;
  if (opts.all !== true) {
    try {
      project = await ctx.project(args[0] as string | undefined);
    } catch {
      project = null; // no current project: every project
    }
  }
  if (project !== null) await api.project(project); // a clear error for a project that is not there
  const out = ctx.out;
  const json = out.json;
  const screen = !json && opts.lines !== true && out.tty;
  const state = new WatchState(project);
  const stdout = ctx.io.stdout as NodeJS.WriteStream;

  const stream = new EventStream({
    url: server.entry.url,
    caPem: server.entry.caPem,
    serverId: server.entry.serverId,
    token: server.entry.token!,
    project: project ?? undefined,
  });

  let live = false;
  let loading: Promise<void> | null = null;
  let held: StreamEvent[] = [];
  let drawTimer: NodeJS.Timeout | null = null;

  const draw = () => {
    drawTimer = null;
    const lines = state.render(out, {
      now: Date.now(),
      width: stdout.columns || 100,
      height: stdout.rows || 30,
      server: server.name,
      live,
    });
    // Home, each line cleared to its end, then the rest of the screen cleared: no flicker.
    stdout.write(`\x1b[H${lines.map((l) => `${out.printable(l, false)}\x1b[K`).join('\n')}\n\x1b[J`);
  };
  const redraw = () => {
    if (screen && !drawTimer) drawTimer = setTimeout(draw, 50);
  };

  const reload = () => {
    loading ??= (async () => {
      try {
        await loadView(api, state);
      } finally {
        loading = null;
      }
      const later = held;
      held = [];
      let again = false;
      for (const ev of later) again = state.apply(ev) || again;
      if (!screen && !json) for (const [name, counts] of state.counts) out.line(countsLine(name, counts));
      redraw();
      if (again) reload();
    })().catch((err: unknown) => {
      out.note(`cpcc: could not load the view: ${(err as Error).message}`);
    });
  };

  stream.on('message', (m: StreamMessage) => {
    if (json && m.type !== 'position') out.raw(`${JSON.stringify(m)}\n`);
  });
  stream.on('ready', (m) => {
    live = true;
    // A fresh start loads the view; a resumed one only missed events, which follow.
    if (!m.resumed) reload();
    redraw();
  });
  stream.on('reset', () => {
    live = true;
    if (!screen && !json) out.note('cpcc: the server could not replay what was missed; reloading');
    reload();
  });
  stream.on('down', (why) => {
    live = false;
    if (!screen && !json) out.note(`cpcc: event stream interrupted (${why}); reconnecting`);
    redraw();
  });
  stream.on('event', (ev) => {
    if (!screen && !json) for (const line of linesOf(ev)) out.line(line);
    if (loading) {
      held.push(ev);
      return;
    }
    if (state.apply(ev)) reload();
    redraw();
  });

  if (screen) stdout.write('\x1b[?1049h\x1b[?25l');
  else if (!json) out.note(`cpcc: watching ${project === null ? 'every project' : `'${project}'`} on ${server.name}; Ctrl-C stops`);
  const tick = setInterval(redraw, 1000);
  const onResize = () => redraw();
  stdout.on?.('resize', onResize);
  try {
    await new Promise<void>((resolve, reject) => {
      const stop = () => resolve();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      stream.once('fatal', reject);
      stream.start();
    });
  } finally {
    clearInterval(tick);
    if (drawTimer) clearTimeout(drawTimer);
    stdout.off?.('resize', onResize);
    stream.close();
    if (screen) {
      stdout.write('\x1b[?25h\x1b[?1049l');
      const totals = state.totals();
      out.line(countsLine(project ?? 'all projects', totals));
    }
  }
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

function clip(s: string, n: number): string {
  return s.length <= n ? s : s.slice(0, Math.max(0, n - 1)) + '…';
}

/** Rows as space-separated columns, the widest cells cut so that lines fit `width`. */
/** Rows as columns no wider than `width` together; the first (the short id, to be pasted back) is never cut. */
function columns(rows: string[][], width: number): string[] {
  const n = rows[0]?.length ?? 0;
  const widths = Array.from({ length: n }, (_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const total = () => widths.reduce((a, b) => a + b, 0) + 2 * (n - 1) + 2;
  while (total() > width) {
    const rest = widths.slice(1);
    const i = 1 + rest.indexOf(Math.max(...rest));
    if (n < 2 || widths[i]! <= 4) break;
    widths[i]!--;
  }
  return rows.map((r) => '  ' + r.map((cell, i) => (i === n - 1 ? clip(cell, widths[i]!) : pad(clip(cell, widths[i]!), widths[i]!))).join('  '));
}

function stripAnsi(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\x1b\[[0-9;]*m/g, '');
}

export const watchCommands: CommandSpec[] = [
  {
    name: 'watch',
    args: ['[project]'],
    summary: 'follow a project live: counts by state, running jobs, recent failures',
    help:
      'Without PROJECT: the current project, or every project you may see when there is none (or with --all).\n' +
      'On a terminal the view redraws in place; otherwise, or with --lines, each change is one line.\n' +
      'With --json, each event of the stream is one JSON line. Ctrl-C stops.',
    options: [
      { flags: '--all', description: 'every project you may see' },
      { flags: '--lines', description: 'one line per change, even on a terminal' },
    ],
    run: watch,
  },
];
