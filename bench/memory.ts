import { runChild } from './lib.js';

export interface MemoryRun {
  /** RSS growth per queued job, bytes. */
  rssPerQueued: number;
  heapPerQueued: number;
  /** RSS growth per running job (queued, then claimed: an attempt and a lease more), bytes. */
  rssPerRunning: number;
  heapPerRunning: number;
}

/**
 * Memory per live job, measured in a fresh child process run with
 * --expose-gc so every reading is taken after full collections.
 */
export function memory(jobs: number): Promise<MemoryRun> {
  return runChild<MemoryRun>('memory-child.ts', [String(jobs)], { nodeFlags: ['--expose-gc'] });
}
