/**
 * The rules by which a stream of an attempt's output is kept as its chunks
 * arrive: by offset, so that a chunk sent twice is stored once; a chunk that
 * begins past the stored end leaves a gap (the worker skipped those bytes);
 * and only a bounded window of the stream is kept, the oldest bytes dropped
 * like a rotated log. Pure: log-store.ts applies what these rules decide.
 */

/** What is kept of one stream: bytes `start` to `end` of it (`end` is the next byte wanted). */
export interface KeptRange {
  start: number;
  end: number;
}

export interface AppendPlan {
  /** Bytes at the front of the chunk that are stored already. */
  drop: number;
  /** Bytes to append after those (0: the chunk changes nothing). */
  take: number;
  /** Bytes between the stored end and the chunk that never arrived (they are counted as skipped). */
  gap: number;
  /**
   * Start the kept part anew at this offset: after a gap (what was kept
   * cannot be joined to the chunk), or when the kept part has grown past
   * twice the window (then it keeps the last `window` bytes).
   */
  restartAt?: number;
}

/**
 * How a chunk of `length` bytes at `offset` joins a stream of which `kept`
 * is stored, keeping at most about `window` bytes (between one and two
 * windows, so that the kept part is rewritten only once per window).
 */
export function planAppend(kept: KeptRange, offset: number, length: number, window: number): AppendPlan {
  const chunkEnd = offset + length;
  if (chunkEnd <= kept.end) return { drop: length, take: 0, gap: 0 };
  if (offset > kept.end) {
    // Of a chunk longer than the window, only its last window is worth keeping.
    const drop = Math.max(0, length - window);
    return { drop, take: length - drop, gap: offset - kept.end, restartAt: offset + drop };
  }
  const drop = kept.end - offset;
  const take = length - drop;
  const plan: AppendPlan = { drop, take, gap: 0 };
  const size = chunkEnd - kept.start;
  if (size > 2 * window) plan.restartAt = chunkEnd - window;
  return plan;
}
