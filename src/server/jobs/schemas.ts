import { isFullId } from '../../core/short-ids.js';
import { z } from 'zod';
import { JOB_SORTS } from '../../core/job-query.js';
import { MAX_KILL_GRACE_S, PRIORITY_MAX, PRIORITY_MIN, type JobSpec } from '../../core/types.js';
import { ISOLATION_LEVELS, MAX_LOG_CHUNK_BYTES, MAX_LOG_PART, type JobInput } from '../../core/wire.js';
import { fileRefSchema, filePath } from '../files/schemas.js';
import { arrayLength, boundedName, jobIdParam, jobRefParam, limited, limitQuery, MAX_MEMORY_MB, MAX_WALL_TIME_S, perLimits, retrySchema, shownName, stringLength, usageSchema } from '../http/schemas.js';

/** The request shapes of jobs, projects and workers: submit, claim, heartbeat, result and the job queries. */

/** Results one claim may carry (a worker has at most one per core). */
export const MAX_RESULTS_PER_CLAIM = 4096;

/** A job priority; a whole number outside the range is refused with its own code. */
export const prioritySchema = z.preprocess((v, ctx) => {
  if (typeof v === 'number' && Number.isInteger(v) && (v < PRIORITY_MIN || v > PRIORITY_MAX)) {
    ctx.issues.push({ code: 'custom', message: `must be from ${PRIORITY_MIN} to ${PRIORITY_MAX}`, input: v, params: { code: 'PRIORITY_OUT_OF_RANGE' } });
  }
  return v;
}, z.int().min(PRIORITY_MIN).max(PRIORITY_MAX));
export const createProjectSchema = z.strictObject({ name: shownName(64) });
/** A project's retry with more for jobs without their own; null clears it. */
export const projectRetrySchema = z.strictObject({ retry: retrySchema.nullable() });
/** Each id given in part costs a look through every job, hence the smaller bound on those. */
export const MAX_PARTIAL_IDS = 32;
export const idsSchema = z.strictObject({
  ids: z
    .array(jobRefParam)
    .min(1)
    .max(10_000)
    .refine((ids) => ids.filter((id) => !isFullId(id)).length <= MAX_PARTIAL_IDS, `at most ${MAX_PARTIAL_IDS} may be given in part; give whole ids`),
});
export const tokenNameSchema = z.strictObject({
  name: boundedName(64).regex(/^[\w.@-]+$/, 'must be letters, digits, _ . @ -'),
  /** How many workers may be registered with the token at once. */
  maxWorkers: z.int().min(1).max(1_000_000).optional(),
  /** Workers of the token are handed only this user's jobs. */
  user: boundedName(64).optional(),
});

const envName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'must be an environment variable name')
  // Object keys that JavaScript treats specially would be dropped silently.
  .refine((k) => k !== '__proto__' && k !== 'constructor' && k !== 'prototype', 'is a reserved name');

const inputSourceSchema = z.union([
  fileRefSchema,
  z.strictObject({ name: filePath, job: boundedName(128), output: filePath }),
  z.strictObject({ name: filePath, value: z.string().min(1).max(256) }),
]);
const outputSpecSchema = z.strictObject({ glob: filePath, to: z.string().min(1).max(256).optional() });

const liveUsageSchema = z.array(z.strictObject({ jobId: jobIdParam, attempt: z.int().min(1), usage: usageSchema })).max(100_000).optional();

export const jobInputSchema = z
  .strictObject({
    key: boundedName(128).optional(),
    name: shownName(256).optional(),
    argv: z.array(z.string().max(65_536)).min(1).max(4096).optional(),
    shell: z.string().min(1).max(65_536).optional(),
    env: z.record(envName, z.string().max(65_536)).optional(),
    cores: z.int().min(1).max(4096).optional(),
    memoryMb: z.int().min(0).max(MAX_MEMORY_MB).optional(),
    priority: prioritySchema.optional(),
    maxRetries: z.int().min(0).max(1000).optional(),
    timeoutS: z.int().min(1).max(MAX_WALL_TIME_S).nullable().optional(),
    retry: retrySchema.optional(),
    killGraceS: z.number().min(0).max(MAX_KILL_GRACE_S).optional(),
    after: z.array(boundedName(128)).max(10_000).optional(),
    inputs: z.array(inputSourceSchema).max(1000).optional(),
    outputs: z.array(outputSpecSchema).max(100).optional(),
  })
  .refine((j) => (j.argv === undefined) !== (j.shell === undefined), { message: 'give exactly one of argv or shell' })
  .refine((j) => j.env === undefined || Object.keys(j.env).length <= 1024, { message: 'at most 1024 env entries' });

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
  // `started`: the attempt's process has started (its live state becomes running).
  z.strictObject({ attempts: z.array(z.strictObject({ jobId: jobIdParam, attempt: z.int().min(1), started: z.literal(true).optional() })).max(100_000), usage: liveUsageSchema }),
  z.strictObject({ same: z.int().min(1).max(100_000), usage: liveUsageSchema }),
]);

/** The attempts a worker runs and how long the server may hold its control poll. */
export const controlSchema = z.strictObject({
  attempts: z.array(z.strictObject({ jobId: jobIdParam, attempt: z.int().min(1) })).max(100_000),
  waitS: z.number().min(0).max(300),
});

export const resultSchema = perLimits((limits) =>
  z.strictObject({
    jobId: jobIdParam,
    attempt: z.int().min(1),
    how: z.enum(['exited', 'timeout', 'oom', 'start-failed', 'output-failed']),
    usage: usageSchema.optional(),
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

/** Base64 of at most MAX_LOG_CHUNK_BYTES bytes, over all chunks of a request. */
const MAX_LOG_CHUNK_CHARS = Math.ceil(MAX_LOG_CHUNK_BYTES / 3) * 4;
const base64Total = (v: unknown) =>
  Array.isArray(v) ? v.reduce((n: number, c: unknown) => n + (c && typeof c === 'object' && typeof (c as { data?: unknown }).data === 'string' ? (c as { data: string }).data.length : 0), 0) : null;

/** Live output of running attempts, from their worker. */
export const logChunksSchema = z.strictObject({
  chunks: limited(
    z
      .array(
        z.strictObject({
          jobId: jobIdParam,
          attempt: z.int().min(1),
          stream: z.enum(['stdout', 'stderr']),
          offset: z.int().min(0).max(Number.MAX_SAFE_INTEGER),
          data: z.base64().max(MAX_LOG_CHUNK_CHARS),
        }),
      )
      .min(1)
      .max(1000),
    base64Total,
    MAX_LOG_CHUNK_CHARS + 4 * 1000,
    'LOG_TOO_LARGE',
    `the chunks carry more than ${MAX_LOG_CHUNK_BYTES} bytes`,
  ),
});

export const jobListQuery = z.strictObject({
  state: z.enum(['waiting', 'queued', 'running', 'done', 'failed', 'cancelled']).optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(100),
  /** The last job of the previous page (the `next` of its reply), in the same order. */
  after: jobIdParam.optional(),
  /** 1/true: archived jobs only; include: live and archived; 0/false or absent: live only. */
  archived: z.enum(['0', '1', 'true', 'false', 'include']).optional(),
  /** Ordered by this, then by submission; `order=desc` turns the whole order round (newest first). */
  sort: z.enum(JOB_SORTS).default('submitted'),
  order: z.enum(['asc', 'desc']).default('asc'),
  /** A pattern over job names: `*` any run of characters, `?` one character. */
  name: z.string().min(1).max(256).optional(),
  /** Only jobs created in the last this many seconds. */
  since: z.coerce.number().int().min(1).max(100 * 365 * 24 * 3600).optional(),
});

/** Where a wait for a project's jobs starts: jobs whose id sorts at or after `from` (ids grow with submission). */
export const progressQuery = z.strictObject({ from: jobIdParam.optional() });

/** Cancel or retry many jobs, each with its own outcome. */
export const bulkSchema = z.strictObject({
  action: z.enum(['cancel', 'retry']),
  ids: idsSchema.shape.ids,
});

/** Jobs named one by one: their states, for a wait. */
export const statesSchema = z.strictObject({ ids: idsSchema.shape.ids });

/** The longest a log read waits for more output. */
export const MAX_LOG_WAIT_S = 60;

export const logsQuery = z
  .strictObject({
    stream: z.enum(['stdout', 'stderr']).default('stdout'),
    attempt: z.coerce.number().int().min(1).optional(),
    /** From this byte on (to the end, or `limit` bytes). */
    offset: z.coerce.number().int().min(0).optional(),
    limit: z.coerce.number().int().min(1).max(MAX_LOG_PART).optional(),
    /** The last this many bytes. */
    tail: z.coerce.number().int().min(1).max(MAX_LOG_PART).optional(),
    /** While the attempt runs and has nothing past `offset`: wait up to this many seconds for more (or for its end). */
    wait: z.coerce.number().min(0).max(MAX_LOG_WAIT_S).optional(),
  })
  .refine((q) => q.tail === undefined || (q.offset === undefined && q.limit === undefined), 'give tail, or offset and limit, not both');

export const runningQuery = limitQuery.extend({ project: boundedName(64).optional() });

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
  if (input.killGraceS !== undefined) spec.killGraceS = input.killGraceS;
  if (input.name !== undefined) spec.name = input.name;
  if (input.argv !== undefined) spec.argv = input.argv;
  if (input.shell !== undefined) spec.shell = input.shell;
  if (input.inputs !== undefined) spec.inputs = input.inputs;
  if (input.outputs !== undefined) spec.outputs = input.outputs;
  if (input.retry !== undefined) spec.retry = input.retry;
  return spec;
}

/** `GET /projects/:project/stats`: grouped by name prefix with `by=name`. */
export const statsQuery = z.strictObject({ by: z.enum(['name']).optional(), charts: z.enum(['true', 'false']).optional() });
