import { z } from 'zod';
import { fail, isErrorCode, type ErrorCode } from '../../core/errors.js';
import { hasControlCharacters } from '../../core/names.js';

/**
 * Every request body, query and path is checked at the edge, before anything
 * else sees it; the router applies the schemas each route declares. zod gives
 * one description per shape that both checks and types the input, with
 * messages that name the field, and the same description becomes the API's
 * OpenAPI document (start/openapi.ts).
 *
 * This file holds the building blocks and the shapes several subsystems
 * share; each subsystem keeps its own request shapes in its schemas.ts.
 */

export interface Limits {
  maxJobsPerSubmit: number;
  maxLogBytes: number;
}

/** A non-empty string of at most `max` characters. */
export const boundedName = (max: number) => z.string().min(1).max(max);
/** A name shown to other people: no characters that act on a terminal (CONTROL_CHARACTERS). */
export const shownName = (max: number) =>
  boundedName(max).superRefine((v, ctx) => {
    if (hasControlCharacters(v)) ctx.addIssue({ code: 'custom', message: 'must not hold control characters', params: { code: 'CONTROL_CHARACTERS' } });
  });
/** A job id (a UUID). */
export const jobIdParam = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'must be a job id');
/**
 * A job id as people give it: the whole id, or at least 8 hex digits of its
 * start or end (core/short-ids.ts); auth.ts finds the job it names.
 */
export const jobRefParam = z
  .string()
  .regex(/^[0-9a-fA-F-]{8,36}$/, 'must be a job id, or at least 8 hex digits of its start or end');
export const shortString = z.string().max(4096);
/** What a route without a body accepts: nothing, or `{}`. */
export const NO_BODY = z.strictObject({}).optional();
/** What a route without query parameters accepts: none. */
export const NO_QUERY = z.strictObject({});
/** Path parameters of a route that declares no schema for them. */
export const PATH_PARAMS = z.record(z.string(), z.string().max(1024));

/**
 * A limit with its own error code: `size` measures the raw value, and past
 * `max` the request is refused with `code` before the rest is looked at.
 * The inner schema states the limit too, for the API description.
 */
export function limited<S extends z.ZodType>(inner: S, size: (v: unknown) => number | null, max: number, code: ErrorCode, what: string) {
  return z.preprocess((v, ctx) => {
    const n = size(v);
    if (n !== null && n > max) ctx.issues.push({ code: 'custom', message: `${what} (${n} > ${max})`, input: v, params: { code } });
    return v;
  }, inner);
}

export const arrayLength = (v: unknown) => (Array.isArray(v) ? v.length : null);

export const stringLength = (v: unknown) => (typeof v === 'string' ? v.length : null);

/**
 * Schemas that depend on configured limits are built once per limits object:
 * zod compiles a schema on first use, which is far too slow to repeat per request.
 */
export function perLimits<S>(build: (limits: Limits) => S): (limits: Limits) => S {
  const cache = new WeakMap<Limits, S>();
  return (limits) => {
    let schema = cache.get(limits);
    if (!schema) cache.set(limits, (schema = build(limits)));
    return schema;
  };
}

/** A yes/no query parameter, as `1`/`0` or `true`/`false`; absent is no. */
export const flagQuery = z
  .enum(['0', '1', 'true', 'false'])
  .optional()
  .transform((v) => v === '1' || v === 'true');

export const limitQuery = z.strictObject({ limit: z.coerce.number().int().min(1).max(10_000).default(100) });
export const projectParams = z.strictObject({ project: boundedName(64) });
export const userParams = z.strictObject({ name: boundedName(64) });
/**
 * Parses `value` with `schema`, or throws: the code of a limit that was hit
 * (see `limited`), BAD_REQUEST for a missing value, otherwise INVALID_FIELD
 * naming the first bad field. Messages name fields, never echo values.
 */
export function check<S extends z.ZodType>(schema: S, value: unknown, what = 'body'): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issues = r.error.issues;
  const limitCode = (i: z.core.$ZodIssue): ErrorCode | undefined => {
    const c = i.code === 'custom' ? (i.params as { code?: unknown } | undefined)?.code : undefined;
    return isErrorCode(c) ? c : undefined;
  };
  const limit = issues.find((i) => limitCode(i) !== undefined);
  const issue = limit ?? issues[0]!;
  const where = issue.path.length > 0 ? `${what}.${issue.path.map(String).join('.')}` : what;
  const code: ErrorCode = limit ? limitCode(limit)! : value === undefined ? 'BAD_REQUEST' : 'INVALID_FIELD';
  throw fail(code, `${where}: ${value === undefined && !limit ? 'missing' : issue.message}`);
}

/** The most memory and wall time a job may ask for. */
export const MAX_MEMORY_MB = 64 * 1024 * 1024;
export const MAX_WALL_TIME_S = 365 * 24 * 3600;

/** Asking again with more memory or time (`retry` in a job). */
export const retrySchema = z
  .strictObject({
    oom: z.strictObject({ factor: z.number().gt(1).max(100), maxMemoryMb: z.int().min(1).max(MAX_MEMORY_MB) }).optional(),
    timeout: z.strictObject({ factor: z.number().gt(1).max(100), maxWallTimeS: z.int().min(1).max(MAX_WALL_TIME_S) }).optional(),
    attempts: z.int().min(1).max(100).optional(),
  })
  .refine((r) => r.oom !== undefined || r.timeout !== undefined, { message: 'give oom, timeout or both' });

/**
 * An attempt's usage as a worker measured it. Bounds that no real attempt
 * reaches (a year of wall time, 64 TB) refuse the report; CPU far past what
 * the attempt's time allows is refused where the worker's cores are known (jobs/results.ts).
 */
export const usageSchema = z.strictObject({
  wallS: z.number().min(0).max(MAX_WALL_TIME_S * 2),
  userS: z.number().min(0).max(1e10),
  systemS: z.number().min(0).max(1e10),
  maxRssMb: z.number().min(0).max(MAX_MEMORY_MB),
  readBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  writeBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
});
