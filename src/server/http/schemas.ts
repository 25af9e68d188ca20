import { z } from 'zod';
import { fail, isErrorCode, type ErrorCode } from '../../core/errors.js';
import { hasControlCharacters } from '../../core/names.js';
import { PRIORITY_MAX, PRIORITY_MIN, type JobSpec } from '../../core/types.js';
import { ISOLATION_LEVELS, MAX_LOG_PART, type JobInput } from '../../core/wire.js';
import { USER_NAME } from '../accounts/accounts.js';

/**
 * Every request body, query and path is checked here, at the edge, before
 * anything else sees it; the HTTP wrapper applies the schemas each route
 * declares (http.ts). zod gives one description per shape that both checks
 * and types the input, with messages that name the field, and the same
 * description becomes the API's OpenAPI document (openapi.ts).
 */

/** Results one claim may carry (a worker has at most one per core). */
export const MAX_RESULTS_PER_CLAIM = 4096;

export interface Limits {
  maxJobsPerSubmit: number;
  maxLogBytes: number;
}

const name = (max: number) => z.string().min(1).max(max);
/** A name shown to other people: no characters that act on a terminal (CONTROL_CHARACTERS). */
export const shownName = (max: number) =>
  name(max).superRefine((v, ctx) => {
    if (hasControlCharacters(v)) ctx.addIssue({ code: 'custom', message: 'must not hold control characters', params: { code: 'CONTROL_CHARACTERS' } });
  });
const id = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'must be a job id');
const shortText = z.string().max(4096);
const envName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'must be an environment variable name')
  // Object keys that JavaScript treats specially would be dropped silently.
  .refine((k) => k !== '__proto__' && k !== 'constructor' && k !== 'prototype', 'is a reserved name');

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

const arrayLength = (v: unknown) => (Array.isArray(v) ? v.length : null);

/** A job priority; a whole number outside the range is refused with its own code. */
export const prioritySchema = z.preprocess((v, ctx) => {
  if (typeof v === 'number' && Number.isInteger(v) && (v < PRIORITY_MIN || v > PRIORITY_MAX)) {
    ctx.issues.push({ code: 'custom', message: `must be from ${PRIORITY_MIN} to ${PRIORITY_MAX}`, input: v, params: { code: 'PRIORITY_OUT_OF_RANGE' } });
  }
  return v;
}, z.int().min(PRIORITY_MIN).max(PRIORITY_MAX));
const stringLength = (v: unknown) => (typeof v === 'string' ? v.length : null);

export const userNameSchema = z.string().regex(USER_NAME, 'must be 1-64 letters, digits, . _ @ - (starting with a letter or digit)');
/** New passwords: long enough to resist guessing; scrypt takes any length, the limit only bounds the work. */
export const newPasswordSchema = z.string().min(8, 'must be at least 8 characters').max(1024);
export const loginSchema = z.strictObject({ user: name(64), password: z.string().min(1).max(1024) });
export const addUserSchema = z.strictObject({ name: userNameSchema, password: newPasswordSchema, superuser: z.boolean().optional() });
export const setPasswordSchema = z.strictObject({ password: newPasswordSchema });
export const changeOwnPasswordSchema = z.strictObject({ current: z.string().min(1).max(1024), password: newPasswordSchema });
export const grantSchema = z.strictObject({ user: userNameSchema });
export const projectParams = z.strictObject({ project: name(64) });
export const userParams = z.strictObject({ name: name(64) });
export const memberParams = z.strictObject({ project: name(64), user: name(64) });
export const createProjectSchema = z.strictObject({ name: shownName(64) });
export const idsSchema = z.strictObject({ ids: z.array(id).min(1).max(10_000) });
export const tokenNameSchema = z.strictObject({
  name: name(64).regex(/^[\w.@-]+$/, 'must be letters, digits, _ . @ -'),
  /** How many workers may be registered with the token at once. */
  maxWorkers: z.int().min(1).max(1_000_000).optional(),
  /** Workers of the token are handed only this user's jobs. */
  user: name(64).optional(),
});

/** Names are checked as paths by the core (INVALID_PATH); here only their size. */
const path = z.string().min(1).max(1024);
export const sha256Schema = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits');
export const fileRefSchema = z.strictObject({ name: path, sha256: sha256Schema, size: z.int().min(0).max(Number.MAX_SAFE_INTEGER) });
const inputSourceSchema = z.union([
  fileRefSchema,
  z.strictObject({ name: path, job: name(128), output: path }),
  z.strictObject({ name: path, value: z.string().min(1).max(256) }),
]);
const outputSpecSchema = z.strictObject({ glob: path, to: z.string().min(1).max(256).optional() });

export const jobInputSchema = z
  .strictObject({
    key: name(128).optional(),
    name: shownName(256).optional(),
    argv: z.array(z.string().max(65_536)).min(1).max(4096).optional(),
    shell: z.string().min(1).max(65_536).optional(),
    env: z.record(envName, z.string().max(65_536)).optional(),
    cores: z.int().min(1).max(4096).optional(),
    memoryMb: z.int().min(0).max(64 * 1024 * 1024).optional(),
    priority: prioritySchema.optional(),
    maxRetries: z.int().min(0).max(1000).optional(),
    timeoutS: z.int().min(1).max(365 * 24 * 3600).nullable().optional(),
    after: z.array(name(128)).max(10_000).optional(),
    inputs: z.array(inputSourceSchema).max(1000).optional(),
    outputs: z.array(outputSpecSchema).max(100).optional(),
  })
  .refine((j) => (j.argv === undefined) !== (j.shell === undefined), { message: 'give exactly one of argv or shell' })
  .refine((j) => j.env === undefined || Object.keys(j.env).length <= 1024, { message: 'at most 1024 env entries' });

/**
 * Schemas that depend on configured limits are built once per limits object:
 * zod compiles a schema on first use, which is far too slow to repeat per request.
 */
function perLimits<S>(build: (limits: Limits) => S): (limits: Limits) => S {
  const cache = new WeakMap<Limits, S>();
  return (limits) => {
    let schema = cache.get(limits);
    if (!schema) cache.set(limits, (schema = build(limits)));
    return schema;
  };
}

export const submitSchema = perLimits((limits) =>
  z.strictObject({
    jobs: limited(
      z.array(jobInputSchema).min(1).max(limits.maxJobsPerSubmit),
      arrayLength,
      limits.maxJobsPerSubmit,
      'TOO_MANY_JOBS',
      `at most ${limits.maxJobsPerSubmit} jobs per request`,
    ),
  }),
);

export const registerSchema = z.strictObject({
  name: shownName(128),
  host: shownName(255),
  cores: z.int().min(1).max(4096),
  memoryMb: z.int().min(0).max(64 * 1024 * 1024),
  labels: z.array(shownName(64)).max(64).optional(),
  isolation: z.enum(ISOLATION_LEVELS).optional(),
  sharedIdentity: z.boolean().optional(),
});


export const heartbeatSchema = z.union([
  z.strictObject({ attempts: z.array(z.strictObject({ jobId: id, attempt: z.int().min(1) })).max(100_000) }),
  z.strictObject({ same: z.int().min(1).max(100_000) }),
]);

export const resultSchema = perLimits((limits) =>
  z.strictObject({
    jobId: id,
    attempt: z.int().min(1),
    how: z.enum(['exited', 'timeout', 'start-failed', 'output-failed']),
    reason: z.string().max(4096).optional(),
    outputs: z.array(fileRefSchema).max(1000).optional(),
    exitCode: z.int().min(-255).max(255).nullable(),
    signal: z.string().max(32).nullable(),
    durationMs: z.number().min(0).max(1e12),
    stdout: limited(z.string().max(limits.maxLogBytes), stringLength, limits.maxLogBytes, 'LOG_TOO_LARGE', 'stdout is over the log limit'),
    stderr: limited(z.string().max(limits.maxLogBytes), stringLength, limits.maxLogBytes, 'LOG_TOO_LARGE', 'stderr is over the log limit'),
    stdoutBytes: z.int().min(0),
    stderrBytes: z.int().min(0),
  }),
);

export const claimSchema = perLimits((limits) =>
  z.strictObject({
    waitS: z.number().min(0).max(300),
    max: z.int().min(1).max(4096).optional(),
    results: z.array(resultSchema(limits)).max(MAX_RESULTS_PER_CLAIM).optional(),
  }),
);

export const jobListQuery = z.strictObject({
  state: z.enum(['waiting', 'queued', 'running', 'done', 'failed', 'cancelled']).optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(100),
  after: id.optional(),
  archived: z.enum(['0', '1', 'true', 'false']).optional(),
});

/** A yes/no query parameter, as `1`/`0` or `true`/`false`; absent is no. */
export const flagQuery = z
  .enum(['0', '1', 'true', 'false'])
  .optional()
  .transform((v) => v === '1' || v === 'true');

export const importQuery = z.strictObject({ newIds: flagQuery });

export const logsQuery = z
  .strictObject({
    stream: z.enum(['stdout', 'stderr']).default('stdout'),
    attempt: z.coerce.number().int().min(1).optional(),
    /** From this byte on (to the end, or `limit` bytes). */
    offset: z.coerce.number().int().min(0).optional(),
    limit: z.coerce.number().int().min(1).max(MAX_LOG_PART).optional(),
    /** The last this many bytes. */
    tail: z.coerce.number().int().min(1).max(MAX_LOG_PART).optional(),
  })
  .refine((q) => q.tail === undefined || (q.offset === undefined && q.limit === undefined), 'give tail, or offset and limit, not both');

export const limitQuery = z.strictObject({ limit: z.coerce.number().int().min(1).max(10_000).default(100) });
export const runningQuery = limitQuery.extend({ project: name(64).optional() });

export const jobIdParam = id;
export const shortString = shortText;

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

/** Fills in defaults; the shape was checked by jobInputSchema. */
export function toJobSpec(input: JobInput): JobSpec {
  const spec: JobSpec = {
    env: input.env ?? {},
    resources: { cores: input.cores ?? 1, memoryMb: input.memoryMb ?? 0 },
    priority: input.priority ?? 0,
    maxRetries: input.maxRetries ?? 0,
    timeoutS: input.timeoutS ?? null,
    after: input.after ?? [],
  };
  if (input.name !== undefined) spec.name = input.name;
  if (input.argv !== undefined) spec.argv = input.argv;
  if (input.shell !== undefined) spec.shell = input.shell;
  if (input.inputs !== undefined) spec.inputs = input.inputs;
  if (input.outputs !== undefined) spec.outputs = input.outputs;
  return spec;
}
