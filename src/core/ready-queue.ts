import { Heap } from './heap.js';
import { IndexedHeap } from './indexed-heap.js';
import { TurnRing } from './turn-ring.js';
import type { Job, Resources } from './types.js';

/**
 * The queue of runnable jobs, shaped for the scheduler's question: "which job
 * should a worker with this much free room run next?"
 *
 * Order: users (the owners of the projects) take turns, each as many jobs in
 * a row as their weight. Within a user: the highest priority first; at one
 * priority, the user's projects take turns, each as many in a row as its
 * weight; within a project, the oldest job that fits. A priority orders only
 * its own user's jobs, so no user gets ahead of another by choosing a higher
 * one.
 *
 * Jobs are grouped by user → project → resource shape: a stream, whose heap
 * orders its jobs by priority, then age. Each user keeps its streams in a
 * heap ordered by their first job's priority, then their project's turn, then
 * that job's age. Priorities are only keys in these heaps, so a submit, a
 * take and a removal cost O(log n) however many distinct priorities there
 * are: 40 000 jobs at 40 000 priorities are one stream, as at one priority.
 * A take looks at streams in order until one fits; one that does not fit is
 * set aside and put back after.
 *
 * A stream's place in its user's heap is kept from its first job and its
 * project's turn as they were last seen. Both only ever move later by
 * themselves (its first job is handed out or removed; its project has had
 * its turns), so a stream is never found too late, and one found too early is
 * put in its place when it reaches the top. A job added ahead of the first
 * moves its stream forward at once.
 *
 * Removing a job is lazy within its stream: `remove` forgets the job and
 * counts it out, and a heap entry whose job was forgotten (or queued again
 * since) is dropped when it reaches the top. Streams, projects and users left
 * with nothing queued are dropped at once.
 */

interface Entry {
  job: Job;
  priority: number;
  stream: Stream;
}

/** One project's queued jobs of one resource shape. */
interface Stream {
  key: string;
  resources: Resources;
  jobs: Heap<Entry>;
  /** Live entries in `jobs` (the rest are stale). */
  live: number;
  project: Lane;
  /** The first job and the project's turn, as the stream's place in its user's heap was last set from. */
  head: Entry;
  stamp: number;
  heapAt: number;
}

/** One project's part of its owner's share. */
interface Lane {
  name: string;
  share: Share;
  /** Projects take turns in `stamp` order: one that has had its turns goes behind the others. */
  stamp: number;
  /** Turns in a row, up to the project's weight. */
  used: number;
  live: number;
  /** Most projects queue one shape: its stream sits here, and a Map is made only for more. */
  stream: Stream | undefined;
  more: Map<string, Stream> | undefined;
}

/** One user's part of the queue. */
interface Share {
  user: string;
  projects: Map<string, Lane>;
  streams: IndexedHeap<Stream>;
  clock: number;
  live: number;
}

const ahead = (a: Entry, b: Entry): boolean => a.priority > b.priority || (a.priority === b.priority && a.job.seq < b.job.seq);
const inTurn = (a: Stream, b: Stream): boolean => {
  const x = a.head;
  const y = b.head;
  return x.priority > y.priority || (x.priority === y.priority && (a.stamp < b.stamp || (a.stamp === b.stamp && x.job.seq < y.job.seq)));
};

/** Whose turn it is, for snapshots: only users and projects with queued jobs, in turn order. */
export interface Turns {
  /** Users in turn order, and the turns the first has had in a row. */
  users: string[];
  used: number;
  /** Each user's projects in turn order, with the turns each has had in a row. */
  projects: { user: string; order: { name: string; used: number }[] }[];
}

/** Who a project's jobs count for, and the weights of users and projects (1 unless set). */
export interface Shares {
  ownerOf(project: string): string;
  userWeight(user: string): number;
  projectWeight(project: string): number;
}

const EVEN: Shares = { ownerOf: () => '', userWeight: () => 1, projectWeight: () => 1 };

export function fits(need: Resources, free: Resources): boolean {
  return need.cores <= free.cores && need.memoryMb <= free.memoryMb;
}

export class ReadyQueue {
  private readonly users = new TurnRing<Share>();
  /** Live entries by job id. */
  private readonly present = new Map<string, Entry>();
  /** Queued jobs per resource shape, across users (for peers and metrics). */
  private readonly byShape = new Map<string, { resources: Resources; count: number }>();

  constructor(private readonly shares: Shares = EVEN) {}

  get size(): number {
    return this.present.size;
  }

  has(jobId: string): boolean {
    return this.present.has(jobId);
  }

  add(job: Job): void {
    this.remove(job);
    const user = this.shares.ownerOf(job.project);
    let share = this.users.get(user);
    if (!share) {
      share = { user, projects: new Map(), streams: new IndexedHeap(inTurn), clock: 0, live: 0 };
      this.users.put(user, share);
    }
    let lane = share.projects.get(job.project);
    if (!lane) {
      lane = { name: job.project, share, stamp: ++share.clock, used: 0, live: 0, stream: undefined, more: undefined };
      share.projects.set(job.project, lane);
    }
    const resources = job.spec.resources;
    const key = `${resources.cores}:${resources.memoryMb}`;
    let stream = lane.stream?.key === key ? lane.stream : lane.more?.get(key);
    let entry: Entry;
    if (stream) {
      entry = { job, priority: job.spec.priority, stream };
      stream.jobs.push(entry);
      if (ahead(entry, stream.head)) {
        stream.head = entry;
        share.streams.update(stream);
      }
    } else {
      // The spec is immutable once submitted, so its resources can be shared.
      stream = { key, resources, jobs: undefined!, live: 0, project: lane, head: undefined!, stamp: lane.stamp, heapAt: -1 };
      entry = { job, priority: job.spec.priority, stream };
      stream.jobs = new Heap(ahead, [entry]);
      stream.head = entry;
      if (!lane.stream) lane.stream = stream;
      else (lane.more ??= new Map()).set(key, stream);
      share.streams.push(stream);
    }
    this.present.set(job.id, entry);
    this.count(entry, +1);
  }

  remove(job: Job): void {
    const entry = this.present.get(job.id);
    if (!entry) return;
    this.present.delete(job.id);
    this.count(entry, -1);
  }

  /** Takes the next job that fits `free` (of a project `accept` allows, when given), or undefined. */
  take(free: Resources, accept?: (project: string) => boolean): Job | undefined {
    for (const share of this.users.values()) {
      const entry = this.pickIn(share, free, accept);
      if (!entry) continue;
      entry.stream.jobs.pop();
      this.present.delete(entry.job.id);
      this.advance(entry);
      this.count(entry, -1);
      return entry.job;
    }
    return undefined;
  }

  /**
   * Records that `job` was handed out. A job `take` picked is already gone
   * and its turn counted; replay, which does not take, comes here with the
   * job still queued and does what the take did, so the turns after a
   * restart are the ones the live server had.
   */
  handedOut(job: Job): void {
    const entry = this.present.get(job.id);
    if (!entry) return;
    this.present.delete(job.id);
    this.advance(entry);
    this.count(entry, -1);
  }

  /** The turn order in a canonical form (what the queue will serve), for snapshots. */
  turns(): Turns {
    const { keys, used } = this.users.order();
    const projects = keys.map((user) => ({
      user,
      order: [...this.users.get(user)!.projects.values()].sort((a, b) => a.stamp - b.stamp).map((l) => ({ name: l.name, used: l.used })),
    }));
    return { users: keys, used, projects };
  }

  /** After the queued jobs were added again, puts the turns back as saved. */
  restoreTurns(turns: Turns | unknown): void {
    // Snapshots of older versions kept other turns; their jobs simply start a fresh round.
    if (!turns || typeof turns !== 'object' || !Array.isArray((turns as Turns).projects)) return;
    const t = turns as Turns;
    this.users.restore(t.users, t.used);
    for (const { user, order } of t.projects) {
      const share = this.users.get(user);
      if (!share) continue;
      for (const { name, used } of order) {
        const lane = share.projects.get(name);
        if (!lane) continue;
        lane.stamp = ++share.clock;
        lane.used = used;
        for (const stream of this.streamsOf(lane)) {
          stream.stamp = lane.stamp;
          share.streams.update(stream);
        }
      }
    }
  }

  /** Distinct resource shapes that are queued, with counts (for peers and metrics). */
  shapes(): { resources: Resources; count: number }[] {
    return [...this.byShape.values()].map((s) => ({ resources: { ...s.resources }, count: s.count }));
  }

  private streamsOf(lane: Lane): Stream[] {
    const out = lane.stream ? [lane.stream] : [];
    if (lane.more) out.push(...lane.more.values());
    return out;
  }

  /** Counts an entry in or out; what is left empty is dropped at once. */
  private count(entry: Entry, delta: 1 | -1): void {
    const stream = entry.stream;
    const lane = stream.project;
    const share = lane.share;
    stream.live += delta;
    lane.live += delta;
    share.live += delta;
    const counted = this.byShape.get(stream.key);
    if (counted) {
      counted.count += delta;
      if (counted.count === 0) this.byShape.delete(stream.key);
    } else {
      this.byShape.set(stream.key, { resources: stream.resources, count: 1 });
    }
    if (delta > 0) return;
    if (stream.live === 0) {
      share.streams.remove(stream);
      if (lane.stream === stream) lane.stream = undefined;
      else lane.more?.delete(stream.key);
    }
    if (lane.live === 0) share.projects.delete(lane.name);
    if (share.live === 0) this.users.delete(share.user);
  }

  /** Moves the turns on past the entry being handed out (before it is counted out). */
  private advance(entry: Entry): void {
    const lane = entry.stream.project;
    this.users.served(lane.share.user, this.shares.userWeight(lane.share.user));
    if (++lane.used >= this.shares.projectWeight(lane.name)) {
      lane.used = 0;
      lane.stamp = ++lane.share.clock;
    }
  }

  /**
   * The user's best job that fits: the first of the first stream in order
   * that fits. Streams that do not fit are set aside and put back after.
   */
  private pickIn(share: Share, free: Resources, accept?: (project: string) => boolean): Entry | undefined {
    const streams = share.streams;
    let skipped: Stream[] | undefined;
    let found: Entry | undefined;
    for (;;) {
      const stream = streams.peek();
      if (!stream) break;
      const head = this.liveTop(stream);
      if (head !== stream.head || stream.stamp !== stream.project.stamp) {
        // Its place was set from an earlier first job or turn: put it where it belongs and look again.
        stream.head = head!;
        stream.stamp = stream.project.stamp;
        streams.update(stream);
        continue;
      }
      if (fits(stream.resources, free) && (!accept || accept(stream.project.name))) {
        found = head;
        break;
      }
      (skipped ??= []).push(streams.pop()!);
    }
    if (skipped) for (const stream of skipped) streams.push(stream);
    return found;
  }

  private liveTop(stream: Stream): Entry | undefined {
    for (;;) {
      const top = stream.jobs.peek();
      if (!top) return undefined;
      if (this.present.get(top.job.id) === top) return top;
      stream.jobs.pop();
    }
  }
}
