import { createHash, timingSafeEqual } from 'node:crypto';
import type { Event } from '../../core/events.js';
import { JOB_STATES, type JobState } from '../../core/types.js';

/**
 * `/metrics` in the Prometheus text exposition format (version 0.0.4),
 * written by hand: counters, gauges and histograms with a few labels each.
 *
 * Counters are fed by the store's events (dispatches, lease expiries…), the
 * journal's fsyncs and the HTTP wrapper's timings; gauges are read from the
 * live state when scraped, so a scrape costs O(projects), not O(jobs).
 */

type Labels = Record<string, string>;

const HTTP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const FSYNC_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
const RECORD_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, 10000];

class Counter {
  readonly values = new Map<string, { labels: Labels; value: number }>();

  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  inc(labels: Labels = {}, by = 1): void {
    const key = labelKey(labels);
    const v = this.values.get(key);
    if (v) v.value += by;
    else this.values.set(key, { labels, value: by });
  }

  /** Makes a series show (as 0) before anything happened to it. */
  touch(labels: Labels = {}): this {
    this.inc(labels, 0);
    return this;
  }

  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`);
    for (const { labels, value } of this.values.values()) out.push(`${this.name}${labelText(labels)} ${num(value)}`);
  }
}

class Histogram {
  private readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: number[],
  ) {}

  observe(value: number, labels: Labels = {}): void {
    const key = labelKey(labels);
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 }));
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }

  touch(labels: Labels = {}): this {
    const key = labelKey(labels);
    if (!this.series.has(key)) this.series.set(key, { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 });
    return this;
  }

  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`);
    for (const { labels, counts, sum, count } of this.series.values()) {
      // Bucket counts are kept cumulative as observed (each value counts in every bucket it fits).
      this.buckets.forEach((le, i) => out.push(`${this.name}_bucket${labelText({ ...labels, le: num(le) })} ${counts[i]}`));
      out.push(`${this.name}_bucket${labelText({ ...labels, le: '+Inf' })} ${count}`);
      out.push(`${this.name}_sum${labelText(labels)} ${num(sum)}`);
      out.push(`${this.name}_count${labelText(labels)} ${count}`);
    }
  }
}

/** What the gauges read at scrape time. */
export interface MetricsSources {
  /** Job counts by state, archived jobs included, summed over projects. */
  jobs(): Record<JobState, number>;
  projects(): number;
  workers(): number;
  leases(): number;
  claimsWaiting(): number;
  peers(): { trusted: number; up: number };
  streamClients(): number;
  journalPosition(): number;
  /** Why changes are refused now (DISK_FULL, JOURNAL_FAILED), or null while they are taken. */
  refusing(): string | null;
  /** JSON frames sent and received over peer links since start. */
  peerFrames(): { sent: number; received: number };
}

export class Metrics {
  readonly started = Date.now();
  private readonly dispatches = new Counter('cpc_dispatches_total', 'Job attempts handed out to workers, by where the worker is (local or a peer).')
    .touch({ via: 'local' })
    .touch({ via: 'peer' });
  private readonly borrowed = new Counter('cpc_foreign_claims_total', "Peers' jobs obtained for this server's workers.").touch();
  private readonly submitted = new Counter('cpc_jobs_submitted_total', 'Jobs submitted.').touch();
  private readonly expiries = new Counter('cpc_lease_expiries_total', 'Attempts taken back because their heartbeat lease ran out.').touch();
  private readonly lost = new Counter('cpc_attempts_lost_total', 'Attempts taken back, by why.')
    .touch({ how: 'lease-expired' })
    .touch({ how: 'worker-lost' });
  private readonly finished = new Counter('cpc_attempts_finished_total', 'Attempts that ended with a result, by how and whether they succeeded.')
    .touch({ how: 'exited', success: 'true' })
    .touch({ how: 'exited', success: 'false' })
    .touch({ how: 'oom', success: 'false' })
    .touch({ how: 'timeout', success: 'false' });
  private readonly jobCpu = new Counter('cpc_attempt_cpu_seconds_total', "CPU seconds jobs' attempts used, as their workers measured them, by mode.")
    .touch({ mode: 'user' })
    .touch({ mode: 'system' });
  private readonly jobWall = new Counter('cpc_attempt_wall_seconds_total', "Wall time of jobs' measured attempts.").touch();
  private readonly heartbeats = new Counter('cpc_heartbeats_total', 'Worker heartbeats answered.').touch();
  private readonly events = new Counter('cpc_journal_events_total', 'State changes journaled, by event type.');
  private readonly fsyncSeconds = new Histogram('cpc_journal_fsync_duration_seconds', 'Time one durable journal write took (an O_DSYNC write, or a write and its fdatasync).', FSYNC_BUCKETS).touch();
  private readonly perFsync = new Histogram('cpc_journal_changes_per_fsync', 'Journal records made durable by one fsync (group commit).', RECORD_BUCKETS).touch();
  private readonly http = new Histogram('cpc_http_request_duration_seconds', 'HTTP request durations on the secure port, by method, route pattern and status.', HTTP_BUCKETS);

  constructor(private readonly sources: MetricsSources) {}

  /** The label set of each event type, made once: this runs for every change. */
  private readonly eventLabels = new Map<string, Labels>();

  /** Counts a journaled state change. */
  event(e: Event): void {
    let labels = this.eventLabels.get(e.t);
    if (!labels) this.eventLabels.set(e.t, (labels = { type: e.t }));
    this.events.inc(labels);
    switch (e.t) {
      case 'jobs-claimed':
        this.dispatches.inc({ via: e.via === 'local' ? 'local' : 'peer' }, e.claims.length);
        return;
      case 'foreign-claimed':
        this.borrowed.inc({}, e.claims.length);
        return;
      case 'jobs-submitted':
        this.submitted.inc({}, e.jobs.length);
        return;
      case 'attempts-lost':
        this.lost.inc({ how: e.how }, e.attempts.length);
        if (e.how === 'lease-expired') this.expiries.inc({}, e.attempts.length);
        return;
      case 'attempt-finished':
        this.finished.inc({ how: e.how, success: String(e.how === 'exited' && e.exitCode === 0) });
        if (e.usage) {
          this.jobCpu.inc({ mode: 'user' }, e.usage.userS);
          this.jobCpu.inc({ mode: 'system' }, e.usage.systemS);
          this.jobWall.inc({}, e.usage.wallS);
        }
        return;
      default:
        return;
    }
  }

  fsync(ms: number, records: number): void {
    this.fsyncSeconds.observe(ms / 1000);
    this.perFsync.observe(records);
  }

  /** One answered request; `route` is the matched pattern (never the raw path, whose ids would explode the series). */
  request(method: string, route: string | null, status: number, ms: number): void {
    this.http.observe(ms / 1000, { method, route: route ?? 'unmatched', status: String(status) });
    if (route === '/workers/:id/heartbeat' && status === 200) this.heartbeats.inc();
  }

  render(): string {
    const s = this.sources;
    const out: string[] = [];
    const gauge = (name: string, help: string, series: [Labels, number][]) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
      for (const [labels, v] of series) out.push(`${name}${labelText(labels)} ${num(v)}`);
    };
    const jobs = s.jobs();
    gauge('cpc_jobs', 'Jobs by state, archived ones included.', JOB_STATES.map((state) => [{ state }, jobs[state]]));
    gauge('cpc_projects', 'Projects.', [[{}, s.projects()]]);
    gauge('cpc_workers', 'Registered workers: live ones, and gone ones (stopped, lost) until the retention (workerRetentionS) ends.', [[{}, s.workers()]]);
    gauge('cpc_leases', 'Attempts running under a heartbeat lease held here.', [[{}, s.leases()]]);
    gauge('cpc_claims_waiting', 'Worker claims waiting (long-poll) for a job.', [[{}, s.claimsWaiting()]]);
    const peers = s.peers();
    gauge('cpc_peers', 'Trusted peer servers.', [[{}, peers.trusted]]);
    gauge('cpc_peers_up', 'Trusted peer servers with a live link.', [[{}, peers.up]]);
    gauge('cpc_event_stream_clients', 'Clients connected to the event stream.', [[{}, s.streamClients()]]);
    gauge('cpc_journal_position', 'State changes applied since the state began.', [[{}, s.journalPosition()]]);
    const refusing = s.refusing();
    gauge('cpc_changes_refused', 'Whether changes are refused now, by why (1 refused, 0 taken); the log and `cpc-server status` say more.', [
      [{ reason: 'disk_full' }, refusing === 'DISK_FULL' ? 1 : 0],
      [{ reason: 'journal_failed' }, refusing === 'JOURNAL_FAILED' ? 1 : 0],
    ]);
    for (const c of [this.dispatches, this.borrowed, this.submitted, this.expiries, this.lost, this.finished, this.jobCpu, this.jobWall, this.heartbeats, this.events]) c.render(out);
    for (const h of [this.fsyncSeconds, this.perFsync, this.http]) h.render(out);
    const mem = process.memoryUsage();
    const cpu = process.cpuUsage();
    gauge('process_start_time_seconds', 'Start time of the process since the Unix epoch in seconds.', [[{}, Math.floor(this.started / 1000)]]);
    gauge('process_resident_memory_bytes', 'Resident memory size in bytes.', [[{}, mem.rss]]);
    gauge('nodejs_heap_used_bytes', 'V8 heap in use, in bytes.', [[{}, mem.heapUsed]]);
    const frames = s.peerFrames();
    out.push('# HELP cpc_peer_frames_total Messages (JSON frames) over peer links, by direction.', '# TYPE cpc_peer_frames_total counter');
    out.push(`cpc_peer_frames_total{direction="sent"} ${num(frames.sent)}`, `cpc_peer_frames_total{direction="received"} ${num(frames.received)}`);
    out.push('# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.', '# TYPE process_cpu_seconds_total counter');
    out.push(`process_cpu_seconds_total ${num((cpu.user + cpu.system) / 1e6)}`);
    return out.join('\n') + '\n';
  }
}

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/**
 * Who may scrape: `open` anyone, `off` nobody (the path does not exist),
 * `token` a bearer token equal to the configured metrics token, or a super
 * user's login token (checked by `superuser`).
 */
export function metricsAllowed(
  mode: 'token' | 'off' | 'open',
  configured: string | undefined,
  authorization: string | undefined,
  superuser: (token: string) => boolean,
): boolean {
  if (mode === 'open') return true;
  if (mode === 'off') return false;
  const m = /^Bearer ([\x21-\x7e]{1,512})$/.exec(authorization ?? '');
  if (!m) return false;
  if (configured !== undefined && sameSecret(m[1]!, configured)) return true;
  return superuser(m[1]!);
}

function sameSecret(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

/** The series' key: its labels in name order. Runs for every request and event, so it builds one string and sorts only when needed. */
function labelKey(labels: Labels): string {
  const keys = Object.keys(labels);
  for (let i = 1; i < keys.length; i++) {
    if (keys[i - 1]! > keys[i]!) {
      keys.sort();
      break;
    }
  }
  let key = '';
  for (const k of keys) key += key === '' ? `${k}=${labels[k]}` : `,${k}=${labels[k]}`;
  return key;
}

function labelText(labels: Labels): string {
  const keys = Object.keys(labels);
  if (keys.length === 0) return '';
  return `{${keys.map((k) => `${k}="${escapeLabel(labels[k]!)}"`).join(',')}}`;
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function num(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}
