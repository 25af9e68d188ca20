import type { QuickCheck } from '../http/router.js';
import type { Limits } from '../http/schemas.js';
import { MAX_RESULTS_PER_CLAIM } from './schemas.js';

/**
 * Workers send thousands of claims, heartbeats and results a second, and the
 * zod schemas that check them cost more than the rest of the request. These
 * predicates recognise the ordinary, valid request in a few comparisons. They
 * only ever say yes to what the schema accepts unchanged (no unknown keys, no
 * defaults to fill in); for anything else the route's schema decides, so
 * errors read the same and nothing the schema refuses gets through. A test
 * holds each predicate against its schema.
 */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Exactly these own keys: all of `required`, any of `optional`, nothing else. */
function hasKeys(v: Record<string, unknown>, required: readonly string[], optional: readonly string[] = []): boolean {
  for (const k of Object.keys(v)) if (!required.includes(k) && !optional.includes(k)) return false;
  for (const k of required) if (!Object.hasOwn(v, k)) return false;
  return true;
}

const isInt = (v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): boolean => Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max;

/** `{ id }`: the worker id in the path of the worker routes. */
export const isWorkerPath: QuickCheck = (v) => isRecord(v) && hasKeys(v, ['id']) && typeof v.id === 'string' && UUID.test(v.id);

export function isClaim(limits: Limits): QuickCheck {
  const isResult = isPlainResult(limits);
  return (v) =>
    isRecord(v) &&
    hasKeys(v, ['waitS'], ['max', 'results']) &&
    typeof v.waitS === 'number' &&
    Number.isFinite(v.waitS) &&
    v.waitS >= 0 &&
    v.waitS <= 300 &&
    (v.max === undefined || isInt(v.max, 1, 4096)) &&
    (v.results === undefined || (Array.isArray(v.results) && v.results.length <= MAX_RESULTS_PER_CLAIM && v.results.every(isResult)));
}

export const isHeartbeat: QuickCheck = (v) => {
  if (isRecord(v) && hasKeys(v, ['same'])) return isInt(v.same, 1, 100_000);
  if (!isRecord(v) || !hasKeys(v, ['attempts'])) return false;
  const attempts = v.attempts;
  if (!Array.isArray(attempts) || attempts.length > 100_000) return false;
  for (const a of attempts) {
    if (!isRecord(a) || !hasKeys(a, ['jobId', 'attempt'], ['started'])) return false;
    if (typeof a.jobId !== 'string' || !UUID.test(a.jobId) || !isInt(a.attempt, 1)) return false;
    if (Object.hasOwn(a, 'started') && a.started !== true) return false;
  }
  return true;
};

const RESULT_KEYS = ['jobId', 'attempt', 'how', 'exitCode', 'signal', 'durationMs', 'stdout', 'stderr', 'stdoutBytes', 'stderrBytes'] as const;

const isSize = (v: unknown, max: number): boolean => typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= max;

/** Usage as a measuring worker sends it: the four figures, and bytes where the host counts them. */
function isPlainUsage(v: unknown): boolean {
  return (
    isRecord(v) &&
    hasKeys(v, ['wallS', 'userS', 'systemS', 'maxRssMb'], ['readBytes', 'writeBytes']) &&
    (v.readBytes === undefined || isInt(v.readBytes, 0)) &&
    (v.writeBytes === undefined || isInt(v.writeBytes, 0)) &&
    isSize(v.wallS, 365 * 24 * 3600 * 2) &&
    isSize(v.userS, 1e10) &&
    isSize(v.systemS, 1e10) &&
    isSize(v.maxRssMb, 64 * 1024 * 1024)
  );
}

/** A result without files or a reason: what nearly every finished job reports. */
export function isPlainResult(limits: Limits): QuickCheck {
  return (v) =>
    isRecord(v) &&
    hasKeys(v, RESULT_KEYS, ['usage']) &&
    (v.usage === undefined || isPlainUsage(v.usage)) &&
    typeof v.jobId === 'string' &&
    UUID.test(v.jobId) &&
    isInt(v.attempt, 1) &&
    (v.how === 'exited' || v.how === 'timeout' || v.how === 'oom' || v.how === 'start-failed') &&
    (v.exitCode === null || isInt(v.exitCode, -255, 255)) &&
    (v.signal === null || (typeof v.signal === 'string' && v.signal.length <= 32)) &&
    typeof v.durationMs === 'number' &&
    Number.isFinite(v.durationMs) &&
    v.durationMs >= 0 &&
    v.durationMs <= 1e12 &&
    typeof v.stdout === 'string' &&
    v.stdout.length <= limits.maxLogBytes &&
    typeof v.stderr === 'string' &&
    v.stderr.length <= limits.maxLogBytes &&
    isInt(v.stdoutBytes, 0) &&
    isInt(v.stderrBytes, 0);
}
