import { Heap } from './heap.js';
import { TurnRing } from './turn-ring.js';
import type { Job, Resources } from './types.js';

/**
 * The queue of runnable jobs, shaped for the scheduler's question: "which job
 * should a worker with this much free room run next?"
 *
 * Order: users (the owners of the projects) take turns, each as many in a row
 * as their weight; within a user, the highest priority first; within a
 * priority, the user's projects take turns by their weight; within a project,
 * the oldest job that fits. A priority orders only its own user's jobs, so no
 * user can push ahead of another by choosing a higher one.
 *
 * Jobs are grouped by user → priority → project → resource shape. Each user
 * keeps its priorities in a heap, so a new priority, a take and dropping an
 * emptied priority cost O(log P) in the number of distinct priorities; each
 * shape holds a heap ordered by submission. A take looks at the head of each
 * shape that fits, so its cost grows with the number of distinct shapes, not
 * with the number of queued jobs.
 *
 * Removal is lazy: `remove` forgets the job and counts it out, and a heap entry
 * whose job was forgotten (or queued again since) is dropped when it reaches
 * the top. Users, priorities and projects left with nothing queued are dropped
 * when a take walks past them; until then they count as absent (see TurnRing).
 */

interface Entry {
  job: Job;
  shape: Shape;
}

interface Shape {
  key: string;
  resources: Resources;
  heap: Heap<Entry>;
  /** Live entries in the heap (the rest are stale). */
  live: number;
  lane: Lane;
}

interface Lane {
  project: string;
  shapes: Map<string, Shape>;
  live: number;
  level: Level;
}

interface Level {
  priority: number;
  lanes: TurnRing<Lane>;
  live: number;
  share: Share;
}

/** One user's part of the queue. */
interface Share {
  user: string;
  levels: Map<number, Level>;
  /** The levels in `levels`, highest priority on top. */
  order: Heap<Level>;
  live: number;
}

const byAge = (a: Entry, b: Entry): boolean => a.job.seq < b.job.seq;
const byPriority = (a: Level, b: Level): boolean => a.priority > b.priority;

/** Whose turn it is, for snapshots: only users, priorities and projects with queued jobs. */
export interface Turns {
  /** Users in turn order, and the turns the first has had in a row. */
  users: string[];
  used: number;
  /** Each user's priorities (highest first): its projects in turn order. */
  levels: { user: string; priority: number; projects: string[]; used: number }[];
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
    if (!share) share = { user, levels: new Map(), order: new Heap(byPriority), live: 0 };
    if (share.live === 0) this.users.put(user, share);
    const priority = job.spec.priority;
    let level = share.levels.get(priority);
    if (!level) {
      level = { priority, lanes: new TurnRing(), live: 0, share };
      share.levels.set(priority, level);
      share.order.push(level);
    }
    let lane = level.lanes.get(job.project);
    if (!lane) lane = { project: job.project, shapes: new Map(), live: 0, level };
    if (lane.live === 0) level.lanes.put(job.project, lane);
    const { cores, memoryMb } = job.spec.resources;
    const key = `${cores}:${memoryMb}`;
    let shape = lane.shapes.get(key);
    if (!shape) {
      shape = { key, resources: { cores, memoryMb }, heap: new Heap(byAge), live: 0, lane };
      lane.shapes.set(key, shape);
    }
    const entry: Entry = { job, shape };
    shape.heap.push(entry);
    this.present.set(job.id, entry);
    this.count(entry, +1);
  }

  remove(job: Job): void {
    const entry = this.present.get(job.id);
    if (!entry) return;
    this.present.delete(job.id);
    this.count(entry, -1);
  }

  /** Takes the next job that fits `free`, or undefined. */
  take(free: Resources): Job | undefined {
    for (const share of this.users.values()) {
      if (share.live === 0) {
        this.users.delete(share.user);
        continue;
      }
      const entry = this.pickIn(share, free);
      if (!entry) continue;
      entry.shape.heap.pop();
      this.present.delete(entry.job.id);
      this.count(entry, -1);
      this.advance(entry);
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
    this.count(entry, -1);
    this.advance(entry);
  }

  /** The turn order in a canonical form: what the queue will serve, whatever it has yet to tidy. */
  turns(): Turns {
    const { keys, used } = this.users.order();
    const levels: Turns['levels'] = [];
    for (const user of keys) {
      const share = this.users.get(user)!;
      const live = [...share.levels.values()].filter((l) => l.live > 0).sort((a, b) => b.priority - a.priority);
      for (const level of live) {
        const order = level.lanes.order();
        levels.push({ user, priority: level.priority, projects: order.keys, used: order.used });
      }
    }
    return { users: keys, used, levels };
  }

  /** After the queued jobs were added again, puts the turns back as saved. */
  restoreTurns(turns: Turns | unknown): void {
    // Snapshots of older versions kept turns per priority only; their jobs simply start a fresh round.
    if (!turns || typeof turns !== 'object' || Array.isArray(turns)) return;
    const t = turns as Turns;
    this.users.restore(t.users, t.used);
    for (const l of t.levels) this.users.get(l.user)?.levels.get(l.priority)?.lanes.restore(l.projects, l.used);
  }

  /** Distinct resource shapes that are queued, with counts (for peers and metrics). */
  shapes(): { resources: Resources; count: number }[] {
    return [...this.byShape.values()].map((s) => ({ resources: s.resources, count: s.count }));
  }

  private count(entry: Entry, delta: 1 | -1): void {
    const shape = entry.shape;
    shape.live += delta;
    shape.lane.live += delta;
    shape.lane.level.live += delta;
    shape.lane.level.share.live += delta;
    const counted = this.byShape.get(shape.key);
    if (counted) {
      counted.count += delta;
      if (counted.count === 0) this.byShape.delete(shape.key);
    } else {
      this.byShape.set(shape.key, { resources: shape.resources, count: 1 });
    }
  }

  /** Moves the turns on past the entry just handed out. */
  private advance(entry: Entry): void {
    const lane = entry.shape.lane;
    const level = lane.level;
    const share = level.share;
    this.users.served(share.user, this.shares.userWeight(share.user));
    level.lanes.served(lane.project, this.shares.projectWeight(lane.project));
  }

  /**
   * The user's best job that fits: from the highest priority that has one.
   * Priorities with nothing that fits are set aside and put back after, so a
   * take that finds its job at the top costs O(log P) at most.
   */
  private pickIn(share: Share, free: Resources): Entry | undefined {
    let skipped: Level[] | undefined;
    let found: Entry | undefined;
    for (;;) {
      const level = share.order.peek();
      if (!level) break;
      if (level.live === 0) {
        share.order.pop();
        share.levels.delete(level.priority);
        continue;
      }
      found = this.pickAt(level, free);
      if (found) break;
      (skipped ??= []).push(share.order.pop()!);
    }
    if (skipped) for (const level of skipped) share.order.push(level);
    return found;
  }

  /** The oldest fitting job of the first project in turn at this priority that has one. */
  private pickAt(level: Level, free: Resources): Entry | undefined {
    for (const lane of level.lanes.values()) {
      if (lane.live === 0) {
        level.lanes.delete(lane.project);
        continue;
      }
      let best: Entry | undefined;
      for (const shape of lane.shapes.values()) {
        if (shape.live === 0) {
          lane.shapes.delete(shape.key);
          continue;
        }
        if (!fits(shape.resources, free)) continue;
        const top = this.liveTop(shape);
        if (top && (!best || top.job.seq < best.job.seq)) best = top;
      }
      if (best) return best;
    }
    return undefined;
  }

  private liveTop(shape: Shape): Entry | undefined {
    for (;;) {
      const top = shape.heap.peek();
      if (!top) return undefined;
      if (this.present.get(top.job.id) === top) return top;
      shape.heap.pop();
    }
  }
}
