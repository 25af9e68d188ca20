/**
 * What the peer clients (peer-client.ts) need of a job queue: set it up, add
 * jobs in bulk or one at a time (each add answered once the server has the
 * job durably), run workers with a number of slots, and say how many jobs are
 * not yet completed as the server sees it.
 */
export interface QueueDriver {
  setup(): Promise<void>;
  /** Adds `n` jobs as the peer's documentation recommends for many jobs at once. */
  addMany(n: number): Promise<void>;
  addOne(): Promise<void>;
  /** Starts workers with `slots` jobs at a time in this process; `handler` is each job's work. */
  work(slots: number, handler: () => Promise<void>): Promise<void>;
  /** Jobs queued or running: the drain is over when this reaches 0. */
  remaining(): Promise<number>;
  close(): Promise<void>;
}

/** The settings a driver runs with, written into the results beside its figures. */
export type Settings = Record<string, string | number | boolean>;
