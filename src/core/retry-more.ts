import type { JobSpec, Usage } from './types.js';

/** How many times a job may ask for more when its `retry` does not say. */
export const DEFAULT_GROW_ATTEMPTS = 3;

/**
 * Retry with more: after an attempt ended `oom` (or `timeout`), the next asks
 * for max(request × factor, measured × factor) of memory (or wall time),
 * within the job's maximum. Returns the raised limit, or why the job can grow
 * no more; undefined when the job's `retry` says nothing of this end (the
 * attempt then counts against maxRetries as any failure).
 */
export function growAfter(
  spec: Pick<JobSpec, 'retry' | 'resources' | 'timeoutS'>,
  grown: number,
  how: string,
  usage: Usage | undefined,
  durationMs: number,
): { memoryMb: number } | { timeoutS: number } | { cannot: string } | undefined {
  const retry = spec.retry;
  const attempts = retry?.attempts ?? DEFAULT_GROW_ATTEMPTS;
  if (how === 'oom' && retry?.oom) {
    const { factor, maxMemoryMb } = retry.oom;
    const asked = spec.resources.memoryMb;
    if (grown >= attempts) return { cannot: `out of memory at ${asked} MB after asking for more ${attempts} times (retry.attempts)` };
    const want = Math.ceil(Math.max(asked * factor, (usage?.maxRssMb ?? 0) * factor));
    const next = Math.min(maxMemoryMb, want);
    if (next <= asked) return { cannot: `out of memory at ${asked} MB, and retry.oom.maxMemoryMb (${maxMemoryMb} MB) allows no more` };
    return { memoryMb: next };
  }
  if (how === 'timeout' && retry?.timeout && spec.timeoutS !== null) {
    const { factor, maxWallTimeS } = retry.timeout;
    const asked = spec.timeoutS;
    if (grown >= attempts) return { cannot: `timed out after ${asked}s after asking for more ${attempts} times (retry.attempts)` };
    const wall = usage?.wallS ?? durationMs / 1000;
    const next = Math.min(maxWallTimeS, Math.ceil(Math.max(asked * factor, wall * factor)));
    if (next <= asked) return { cannot: `timed out after ${asked}s, and retry.timeout.maxWallTimeS (${maxWallTimeS}s) allows no more` };
    return { timeoutS: next };
  }
  return undefined;
}
