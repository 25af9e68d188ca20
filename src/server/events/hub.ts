/**
 * server/events: the live event stream (WebSocket) that cpcc watch and the dashboard read.
 * Owns the hub (journal events turned into stream events, this file) and the socket.
 * May call: src/core, server/jobs (store), server/accounts (who may see what), server/http (logger).
 * Writes no events: it only reads the journal's.
 */
import type { Event } from '../../core/events.js';
import type { JobChange } from '../../core/model.js';
import type { Job } from '../../core/types.js';
import type {
  PeerView,
  StreamEvent,
  StreamJob,
  StreamLease,
  StreamMessage,
  StreamProject,
  StreamWorker,
} from '../../core/wire.js';
import type { Store } from '../jobs/store.js';

/**
 * The event stream's core: turns each journal event into a stream event,
 * holds it until the journal has made it durable, keeps a bounded window of
 * recent ones for clients that resume, and fans them out to subscribers,
 * each seeing only the projects it may see.
 *
 * Events are numbered by their journal position (Store.seq), and only
 * durable events are sent. So a number a client has seen always stands for
 * the same event, also after a crash and restart: a cursor is either served
 * exactly or answered with `reset`, never with a different history.
 */

/** Who may see a project, as it was when the event happened. */
interface Audience {
  owner: string;
  members: string[];
}

/** The API's rule: super users see every project, others those they own or are members of. */
export function mayView(user: string, superuser: boolean, project: Audience): boolean {
  return superuser || project.owner === user || project.members.includes(user);
}

interface Entry {
  seq: number;
  event: StreamEvent;
  /** Audience of every project the event names. */
  audiences: Map<string, Audience>;
  /** Number of listed items, for the window's size limit. */
  weight: number;
  /** The whole event as JSON, shared by every subscriber that sees all of it. */
  json?: string;
}

export interface Subscriber {
  user: string;
  superuser: boolean;
  /** Only this project's items. */
  project?: string;
  /** Sends one message; returns false when the subscriber is gone or too slow. */
  send(json: string): boolean;
}

export interface HubOptions {
  /** Most events kept for resuming clients. */
  windowEvents?: number;
  /** Most listed items (jobs, leases, workers, projects) kept in that window. */
  windowItems?: number;
  /** Most job changes listed in one event; the rest are counted in `omitted`. */
  jobsPerEvent?: number;
  /** The trusted peers as the API shows them, for super users; absent without federation. */
  peers?: () => PeerView[];
  /**
   * How long after its last subscriber left the hub goes on recording events
   * for clients that come back with a cursor. Past that, and until someone
   * subscribes again, nothing is recorded: a stream nobody listens to costs
   * nothing on the hot paths, and a cursor from before is answered `reset`.
   */
  keepS?: number;
}

interface Sub extends Subscriber {
  /** The last position this subscriber was told about. */
  told: number;
}

export class EventHub {
  private readonly window: Entry[] = [];
  private windowWeight = 0;
  /** The window holds every event after this position that has something to show. */
  private floor: number;
  /** Every event up to here is durable and has been sent. */
  private published: number;
  private readonly pending: Entry[] = [];
  private readonly subs = new Set<Sub>();
  private readonly audiences = new Map<string, Audience>();
  private readonly changes = new Map<string, JobChange>();
  private readonly omittedNow = new Map<string, number>();
  private readonly omittedIds = new Set<string>();
  private readonly unsubscribe: (() => void)[] = [];
  private peersJson = '';
  private readonly opts: Required<Omit<HubOptions, 'peers'>> & Pick<HubOptions, 'peers'>;
  /**
   * Whether events are being recorded. A new hub has no listener yet: the
   * window of a previous run is gone anyway, so a client of that run can
   * resume only from where it ended, and does so as long as nothing
   * happened since.
   */
  private recording = false;
  private stopRecording: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: Store,
    opts: HubOptions = {},
  ) {
    this.opts = { windowEvents: 10_000, windowItems: 100_000, jobsPerEvent: 1000, keepS: 60, ...opts };
    this.floor = this.published = store.seq;
    const model = store.model;
    for (const p of model.projects.values()) this.audiences.set(p.name, { owner: p.owner, members: [...p.members] });
    this.unsubscribe.push(
      model.onChange((change) => this.collect(change)),
      store.onEvent((event, seq) => this.capture(event, seq)),
      store.onDurable((seq) => this.publish(seq)),
    );
  }

  /** The position every subscriber is caught up to. */
  get position(): number {
    return this.published;
  }

  get subscribers(): number {
    return this.subs.size;
  }

  /** The oldest cursor that can still be resumed. */
  get oldestCursor(): number {
    return this.floor;
  }

  close(): void {
    for (const off of this.unsubscribe.splice(0)) off();
    this.subs.clear();
    clearTimeout(this.stopRecording);
  }

  /**
   * Adds a subscriber. With a cursor it can resume from, it gets `ready`
   * and then exactly the events after the cursor that it may see; with a
   * cursor too old (or from a history this server does not have), `reset`.
   */
  subscribe(subscriber: Subscriber, cursor?: number): () => void {
    const sub: Sub = Object.assign(subscriber, { told: this.published });
    clearTimeout(this.stopRecording);
    this.recording = true;
    const send = (m: StreamMessage) => sub.send(JSON.stringify(m));
    if (cursor === undefined) {
      send({ type: 'ready', seq: this.published, resumed: false, user: sub.user, superuser: sub.superuser });
    } else if (cursor < this.floor || cursor > this.published) {
      send({
        type: 'reset',
        seq: this.published,
        reason:
          cursor > this.published
            ? `cursor ${cursor} is ahead of this server's journal (${this.published}); reload`
            : `events after ${cursor} are no longer kept (the oldest cursor that can resume is ${this.floor}); reload`,
      });
    } else {
      send({ type: 'ready', seq: cursor, resumed: true, user: sub.user, superuser: sub.superuser });
      sub.told = cursor;
      // The window is in order; find the first event after the cursor.
      let lo = 0;
      let hi = this.window.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (this.window[mid]!.seq <= cursor) lo = mid + 1;
        else hi = mid;
      }
      for (let i = lo; i < this.window.length; i++) this.deliver(sub, this.window[i]!);
      if (sub.told < this.published) {
        sub.told = this.published;
        send({ type: 'position', seq: this.published });
      }
    }
    if (sub.superuser && this.opts.peers) send({ type: 'peers', peers: this.opts.peers() });
    this.subs.add(sub);
    return () => this.drop(sub);
  }

  private drop(sub: Sub): void {
    if (!this.subs.delete(sub) || this.subs.size > 0) return;
    clearTimeout(this.stopRecording);
    this.stopRecording = setTimeout(() => this.idle(), this.opts.keepS * 1000);
    this.stopRecording.unref();
  }

  /** Nobody listens: forget the window; cursors up to here can no longer be resumed. */
  private idle(): void {
    if (this.subs.size > 0) return;
    this.recording = false;
    this.window.length = 0;
    this.windowWeight = 0;
    this.floor = Math.max(this.floor, this.store.seq);
  }

  /**
   * Tells subscribers that saw nothing lately where the journal stands, so
   * their cursors stay inside the window; and super users about changed
   * peer links. Called on a timer.
   */
  tick(): void {
    for (const sub of this.subs) {
      if (sub.told < this.published) {
        sub.told = this.published;
        this.sendTo(sub, JSON.stringify({ type: 'position', seq: this.published }));
      }
    }
    this.peersChanged();
  }

  /** Sends the peer list to super users if it differs from the last one sent. */
  peersChanged(): void {
    if (!this.opts.peers) return;
    const peers = this.opts.peers();
    const json = JSON.stringify({ type: 'peers', peers });
    if (json === this.peersJson) return;
    this.peersJson = json;
    for (const sub of this.subs) if (sub.superuser) this.sendTo(sub, json);
  }

  // ---- capture: while the event is applied ---------------------------------

  private collect(change: JobChange): void {
    if (!this.recording) return;
    const id = change.job.id;
    // The first `from` is the state before the event; the job itself is read when the event is done.
    if (this.changes.has(id) || this.omittedIds.has(id)) return;
    if (this.changes.size >= this.opts.jobsPerEvent) {
      this.omittedIds.add(id);
      this.omittedNow.set(change.job.project, (this.omittedNow.get(change.job.project) ?? 0) + 1);
      return;
    }
    this.changes.set(change.job.id, { job: change.job, from: change.from });
  }

  private capture(e: Event, seq: number): void {
    // Who could see the project before the event changed that.
    const before = e.t === 'members-changed' ? this.audiences.get(e.project) : e.t === 'project-removed' ? this.audiences.get(e.name) : undefined;
    this.follow(e);
    if (!this.recording) {
      // This event will never be served: no cursor before it can resume.
      this.floor = seq;
      return;
    }
    const model = this.store.model;
    const changes = [...this.changes.values()];
    const omittedNow = [...this.omittedNow];
    this.changes.clear();
    this.omittedNow.clear();
    this.omittedIds.clear();

    const projects = new Set<string>();
    const removed: [string, Audience][] = [];
    const workers = new Set<string>();
    const leases: StreamLease[] = [];
    const jobs: StreamJob[] = [];
    const audiences = new Map<string, Audience>();
    const gone: StreamWorker[] = [];

    switch (e.t) {
      case 'project-created':
      case 'project-loaded':
        projects.add(e.name);
        break;
      case 'members-changed':
        // Whoever could see the project before or after learns of the change.
        if (before) audiences.set(e.project, { owner: before.owner, members: [...new Set([...before.members, ...e.members])] });
        projects.add(e.project);
        break;
      case 'project-removed':
        if (before) removed.push([e.name, before]);
        break;
      case 'value-set':
        projects.add(e.project);
        break;
      case 'worker-registered':
      case 'worker-stopped':
        workers.add(e.id);
        break;
      case 'worker-removed':
        gone.push({ id: e.id, removed: e.reason });
        break;
      case 'jobs-claimed':
      case 'claims-returned':
      case 'foreign-claimed':
      case 'attempts-stopped':
        // Room on the worker changed (a stopping attempt's room is freed only when it has stopped).
        workers.add(e.workerId);
        break;
      case 'leases-renewed':
      case 'leases-extended':
      case 'clock-stepped': {
        if (e.t === 'leases-renewed') workers.add(e.workerId);
        for (const [jobId, n] of e.attempts.slice(0, this.opts.jobsPerEvent)) {
          const lease = model.leases.get(jobId);
          const job = model.job(jobId);
          if (lease && job && lease.attempt === n) leases.push(this.leaseView(job, lease.attempt, lease.workerId, lease.via, lease.deadline));
        }
        break;
      }
      case 'foreign-finished':
      case 'foreign-closed':
        // Room on the worker changed; the foreign job itself is its home's business.
        for (const id of e.t === 'foreign-finished' ? [e.jobId] : e.attempts.map(([id]) => id)) {
          const f = model.foreign.get(id);
          if (f) workers.add(f.workerId);
        }
        break;
      default:
        break;
    }

    for (const { job, from } of changes) {
      if (!model.jobs.has(job.id)) continue; // removed with its project in this very event
      const view = jobView(job, from);
      jobs.push(view);
      projects.add(job.project);
      const last = job.attempts[job.attempts.length - 1];
      if (job.state === 'running') {
        const lease = model.leases.get(job.id);
        if (lease) {
          leases.push(this.leaseView(job, lease.attempt, lease.workerId, lease.via, lease.deadline));
          workers.add(lease.workerId);
        }
      } else if (from === 'running' && last) {
        leases.push(this.leaseView(job, last.n, last.workerId, last.via, null));
        workers.add(last.workerId);
      }
    }
    for (const [project] of omittedNow) projects.add(project);

    const event: StreamEvent = { type: 'event', seq, at: e.at, kind: e.t };
    const projectViews: StreamProject[] = [];
    for (const name of projects) {
      const p = model.projects.get(name);
      if (!p) continue;
      projectViews.push({ name, owner: p.owner, members: [...p.members], counts: model.countsOf(name) });
      if (!audiences.has(name)) audiences.set(name, this.audiences.get(name) ?? { owner: p.owner, members: [...p.members] });
    }
    for (const [name, a] of removed) {
      projectViews.push({ name, owner: a.owner, members: [...a.members], counts: emptyish(), removed: true });
      audiences.set(name, a);
    }
    for (const l of leases) if (!audiences.has(l.project)) audiences.set(l.project, this.audiences.get(l.project) ?? { owner: '', members: [] });

    const workerViews: StreamWorker[] = [...gone];
    for (const id of workers) {
      const w = model.workers.get(id);
      if (!w) continue;
      workerViews.push({
        id,
        name: w.name,
        host: w.host,
        resources: { ...w.resources },
        used: model.usedBy(id),
        labels: [...w.labels],
        running: model.leases.countOfWorker(id),
        registeredAt: w.registeredAt,
        lastSeen: w.lastSeen,
        ...(w.stoppedAt !== undefined ? { stoppedAt: w.stoppedAt } : {}),
      });
    }

    if (projectViews.length > 0) event.projects = projectViews;
    if (jobs.length > 0) event.jobs = jobs;
    if (leases.length > 0) event.leases = leases;
    if (workerViews.length > 0) event.workers = workerViews;
    if (omittedNow.length > 0) event.omitted = omittedNow.map(([project, n]) => ({ project, jobs: n }));
    const weight = projectViews.length + jobs.length + leases.length + workerViews.length;
    // Nothing to show (a journaled heartbeat of foreign work, an archive run): only the position moves.
    if (weight === 0 && !event.omitted) return;
    this.pending.push({ seq, event, audiences, weight: Math.max(1, weight) });
  }

  /** Keeps who may see each project up to date, whether or not events are recorded. */
  private follow(e: Event): void {
    switch (e.t) {
      case 'project-created':
      case 'project-loaded':
        this.audiences.set(e.name, { owner: e.owner, members: [] });
        break;
      case 'members-changed':
        this.audiences.set(e.project, { owner: this.audiences.get(e.project)?.owner ?? '', members: [...e.members] });
        break;
      case 'project-removed':
        this.audiences.delete(e.name);
        break;
      default:
        break;
    }
  }

  private leaseView(job: Job, attempt: number, workerId: string, via: string, deadline: number | null): StreamLease {
    const a = job.attempts.find((x) => x.n === attempt);
    return {
      jobId: job.id,
      project: job.project,
      attempt,
      workerId,
      workerName: a?.workerName ?? this.store.model.workers.get(workerId)?.name ?? workerId,
      via,
      deadline,
    };
  }

  // ---- publish: once durable ----------------------------------------------

  private publish(durable: number): void {
    let n = 0;
    while (n < this.pending.length && this.pending[n]!.seq <= durable) n++;
    const ready = this.pending.splice(0, n);
    for (const entry of ready) {
      this.keep(entry);
      for (const sub of this.subs) this.deliver(sub, entry);
    }
    if (durable > this.published) this.published = durable;
  }

  private keep(entry: Entry): void {
    this.window.push(entry);
    this.windowWeight += entry.weight;
    while (this.window.length > this.opts.windowEvents || (this.windowWeight > this.opts.windowItems && this.window.length > 1)) {
      const old = this.window.shift()!;
      this.windowWeight -= old.weight;
      this.floor = old.seq;
    }
  }

  private deliver(sub: Sub, entry: Entry): void {
    const json = this.filtered(sub, entry);
    if (json === null) return;
    sub.told = entry.seq;
    this.sendTo(sub, json);
  }

  private sendTo(sub: Sub, json: string): void {
    if (!sub.send(json)) this.drop(sub);
  }

  /** The event as this subscriber may see it, or null when nothing of it is theirs. */
  private filtered(sub: Sub, entry: Entry): string | null {
    const { event, audiences } = entry;
    if (sub.superuser && sub.project === undefined) return (entry.json ??= JSON.stringify(event));
    const may = (project: string): boolean => {
      if (sub.project !== undefined && project !== sub.project) return false;
      const a = audiences.get(project);
      return sub.superuser || (a !== undefined && mayView(sub.user, false, a));
    };
    const out: StreamEvent = { type: 'event', seq: event.seq, at: event.at, kind: event.kind };
    let shown = false;
    const keep = <T>(items: T[] | undefined, project: (item: T) => string): T[] | undefined => {
      if (!items) return undefined;
      const mine = items.filter((i) => may(project(i)));
      if (mine.length === 0) return undefined;
      shown = true;
      return mine;
    };
    const projects = keep(event.projects, (p) => p.name);
    const jobs = keep(event.jobs, (j) => j.project);
    const leases = keep(event.leases, (l) => l.project);
    const omitted = keep(event.omitted, (o) => o.project);
    if (projects) out.projects = projects;
    if (jobs) out.jobs = jobs;
    if (leases) out.leases = leases;
    if (omitted) out.omitted = omitted;
    // Workers are listed for every user (as GET /workers does), but only
    // alongside something the user may see, so that the timing of other
    // people's work does not show.
    if (!shown && !(event.kind === 'worker-registered' || event.kind === 'worker-stopped' || event.kind === 'worker-removed')) return null;
    if (event.workers) out.workers = event.workers;
    if (!shown && !out.workers) return null;
    return JSON.stringify(out);
  }
}

function jobView(job: Job, from: JobChange['from']): StreamJob {
  const last = job.attempts[job.attempts.length - 1];
  const view: StreamJob = {
    id: job.id,
    project: job.project,
    state: job.state,
    from,
    reason: job.reason,
    updatedAt: job.updatedAt,
    attempts: job.attempts.length,
  };
  if (job.spec.name !== undefined) view.name = job.spec.name;
  if (last) {
    // The log tails stay out: they can be large, and the job's page reads them.
    const { stdoutTail: _o, stderrTail: _e, ...attempt } = last;
    view.attempt = attempt;
  }
  return view;
}

function emptyish() {
  return { waiting: 0, queued: 0, running: 0, done: 0, failed: 0, cancelled: 0 };
}
