import { Heap } from './heap.js';
import type { Job, Resources } from './types.js';

/**
 * The queue of runnable jobs, shaped for the scheduler's question: "which job
 * should a worker with this much free room run next?"
 *
 * Order: highest priority first; within a priority, projects take turns
 * (round-robin); within a project, the oldest job that fits.
 *
 * Jobs are grouped by priority → project → resource shape, and each shape
 * holds a heap ordered by submission. A take looks at the head of each shape
 * that fits, so its cost grows with the number of distinct shapes and
 * projects, not with the number of queued jobs.
 *
 * Removal is lazy: `remove` forgets the job, and a heap entry whose job was
 * forgotten (or queued again since) is dropped when it reaches the top.
 */

interface Entry {
  job: Job;
  mark: number;
}

interface Shape {
  resources: Resources;
  heap: Heap<Entry>;
  /** Live entries in the heap (the rest are stale). */
  live: number;
}

interface Lane {
  shapes: Map<string, Shape>;
}

interface Level {
  lanes: Map<string, Lane>;
  /** Projects in turn order; `cursor` is whose turn it is. */
  order: string[];
  cursor: number;
}

const byAge = (a: Entry, b: Entry): boolean => a.job.seq < b.job.seq;

/** Whose turn it is at one priority, for snapshots. */
export interface Turn {
  priority: number;
  order: string[];
  cursor: number;
}

export function fits(need: Resources, free: Resources): boolean {
  return need.cores <= free.cores && need.memoryMb <= free.memoryMb;
}

export class ReadyQueue {
  private readonly levels = new Map<number, Level>();
  /** Priorities with queued jobs, highest first. */
  private priorities: number[] = [];
  /** Live entries: job id → the mark of its current entry. */
  private readonly present = new Map<string, number>();
  private nextMark = 1;

  get size(): number {
    return this.present.size;
  }

  has(jobId: string): boolean {
    return this.present.has(jobId);
  }

  add(job: Job): void {
    this.remove(job);
    const mark = this.nextMark++;
    this.present.set(job.id, mark);
    const priority = job.spec.priority;
    let level = this.levels.get(priority);
    if (!level) {
      level = { lanes: new Map(), order: [], cursor: 0 };
      this.levels.set(priority, level);
      this.priorities.push(priority);
      this.priorities.sort((a, b) => b - a);
    }
    let lane = level.lanes.get(job.project);
    if (!lane) {
      lane = { shapes: new Map() };
      level.lanes.set(job.project, lane);
      level.order.push(job.project);
    }
    const { cores, memoryMb } = job.spec.resources;
    const key = `${cores}:${memoryMb}`;
    let shape = lane.shapes.get(key);
    if (!shape) {
      shape = { resources: { cores, memoryMb }, heap: new Heap(byAge), live: 0 };
      lane.shapes.set(key, shape);
    }
    shape.heap.push({ job, mark });
    shape.live++;
  }

  remove(job: Job): void {
    if (!this.present.delete(job.id)) return;
    const { cores, memoryMb } = job.spec.resources;
    const shape = this.levels.get(job.spec.priority)?.lanes.get(job.project)?.shapes.get(`${cores}:${memoryMb}`);
    if (shape) shape.live--;
  }

  /** Takes the next job that fits `free` (of a project `accept` allows, when given), or undefined. */
  take(free: Resources, accept?: (project: string) => boolean): Job | undefined {
    for (let p = 0; p < this.priorities.length; p++) {
      const priority = this.priorities[p]!;
      const level = this.levels.get(priority)!;
      const n = level.order.length;
      for (let i = 0; i < n; i++) {
        const idx = (level.cursor + i) % n;
        const project = level.order[idx]!;
        if (accept && !accept(project)) continue;
        const lane = level.lanes.get(project)!;
        let best: Shape | undefined;
        let bestSeq = Infinity;
        for (const [key, shape] of lane.shapes) {
          const top = this.liveTop(shape);
          if (!top) {
            lane.shapes.delete(key);
            continue;
          }
          if (top.job.seq < bestSeq && fits(shape.resources, free)) {
            best = shape;
            bestSeq = top.job.seq;
          }
        }
        if (best) {
          const entry = best.heap.pop()!;
          this.present.delete(entry.job.id);
          best.live--;
          level.cursor = idx + 1;
          this.prune(priority, level, project, lane);
          return entry.job;
        }
      }
      // Drop lanes that turned out to be empty while we looked.
      for (const project of [...level.order]) this.prune(priority, level, project, level.lanes.get(project)!);
      if (!this.levels.has(priority)) p--;
    }
    return undefined;
  }

  /**
   * Records that `job` was handed out: its project's turn is over. `take`
   * already does this as it picks; replay, which only removes jobs, calls this
   * so that the turn order after a restart is the one the live server had.
   * Idempotent: it sets the turn from the job's project, it does not step it.
   */
  turnPast(job: Job): void {
    const level = this.levels.get(job.spec.priority);
    if (!level) return;
    const idx = level.order.indexOf(job.project);
    if (idx >= 0) level.cursor = (idx + 1) % level.order.length;
  }

  /**
   * The turn order at each priority, in a canonical form: only projects with
   * queued jobs, and the cursor on the next of them to be served. Replay
   * leaves emptied lanes in place until a take tidies them, so the raw state
   * of a replayed queue and a live one may differ while serving the same.
   */
  turns(): Turn[] {
    const out: Turn[] = [];
    for (const priority of this.priorities) {
      const level = this.levels.get(priority)!;
      const live = (p: string) => [...level.lanes.get(p)!.shapes.values()].some((s) => s.live > 0);
      const order = level.order.filter(live);
      if (order.length === 0) continue;
      let cursor = 0;
      for (let i = 0; i < level.order.length; i++) {
        const p = level.order[(level.cursor + i) % level.order.length]!;
        if (live(p)) {
          cursor = order.indexOf(p);
          break;
        }
      }
      out.push({ priority, order, cursor });
    }
    return out;
  }

  /** After the queued jobs were added again, puts each priority's turn order back as saved. */
  restoreTurns(turns: Turn[]): void {
    for (const t of turns) {
      const level = this.levels.get(t.priority);
      if (!level) continue;
      const saved = t.order.filter((p) => level.lanes.has(p));
      const rest = level.order.filter((p) => !saved.includes(p));
      level.order = [...saved, ...rest];
      const current = t.order[t.cursor];
      // The project whose turn it was may have no queued job left; then the next saved one that has.
      let cursor = 0;
      for (let i = 0; i < t.order.length; i++) {
        const p = t.order[(t.cursor + i) % t.order.length]!;
        const at = level.order.indexOf(p);
        if (at >= 0) {
          cursor = at;
          break;
        }
      }
      level.cursor = current !== undefined && level.order.includes(current) ? level.order.indexOf(current) : cursor;
    }
  }

  /** Distinct resource shapes that are queued, with counts (for peers and metrics). */
  shapes(): { resources: Resources; count: number }[] {
    const out = new Map<string, { resources: Resources; count: number }>();
    for (const level of this.levels.values()) {
      for (const lane of level.lanes.values()) {
        for (const [key, shape] of lane.shapes) {
          const live = shape.live;
          if (live === 0) continue;
          const seen = out.get(key);
          if (seen) seen.count += live;
          else out.set(key, { resources: shape.resources, count: live });
        }
      }
    }
    return [...out.values()];
  }

  private liveTop(shape: Shape): Entry | undefined {
    for (;;) {
      const top = shape.heap.peek();
      if (!top) return undefined;
      if (this.present.get(top.job.id) === top.mark) return top;
      shape.heap.pop();
    }
  }

  private prune(priority: number, level: Level, project: string, lane: Lane): void {
    for (const [key, shape] of lane.shapes) if (!this.liveTop(shape)) lane.shapes.delete(key);
    if (lane.shapes.size > 0) return;
    level.lanes.delete(project);
    const idx = level.order.indexOf(project);
    level.order.splice(idx, 1);
    if (level.cursor > idx) level.cursor--;
    if (level.order.length === 0) {
      this.levels.delete(priority);
      this.priorities = this.priorities.filter((p) => p !== priority);
    } else {
      level.cursor %= level.order.length;
    }
  }
}
