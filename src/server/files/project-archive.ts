/**
 * A project saved as one tar (`cpcc save`) and loaded from one (`cpcc load`),
 * on this server or any other:
 *
 *   cpc-project.json   ProjectManifest (wire.ts): the project, its values, the files it lists
 *   jobs.ndjson        every job, live and archived, one a line
 *   files/<sha256>     every file the project refers to, once
 *
 * Writing uses the few lines of ustar below rather than a library: the reply
 * must announce its length before the first byte (Content-Length, as every
 * download here does), and with our own headers that length is exactly
 * 512 per entry + each size padded to 512 + 1024 at the end, whatever a
 * library's version does with padding or extra headers. Reading uses
 * tar-stream, because a saved project may have been unpacked and packed
 * again with any tar tool (GNU, pax, bsdtar headers), and a maintained
 * parser takes all of them.
 */
import { randomBytes } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { z } from 'zod';
import { loadedFiles, planLoadProject, withNewJobIds, type ProjectToLoad } from '../../core/commands.js';
import { CpcError, fail } from '../../core/errors.js';
import type { LoadedJob } from '../../core/events.js';
import { FINAL_STATES, MAX_KILL_GRACE_S, type FileRef, type Job, type Project, type ProjectValue } from '../../core/types.js';
import type { ProjectLoadReply, ProjectManifest } from '../../core/wire.js';
import { uuidV7Millis, type ArchivedJob } from '../../persistence/archive-store.js';
import type { Context } from '../start/context.js';
import { newId } from '../jobs/ids.js';
import { fileRefSchema, sha256Schema } from './schemas.js';
import { check, MAX_MEMORY_MB, MAX_WALL_TIME_S, retrySchema, shownName, usageSchema } from '../http/schemas.js';
import { prioritySchema } from '../jobs/schemas.js';
import { projectView } from '../jobs/views.js';

const BLOCK = 512;
export const MANIFEST = 'cpc-project.json';
export const JOBS = 'jobs.ndjson';
const FILES = 'files/';
/** The journal takes records of at most 64 MiB (journal.ts); the one event of a load must fit, with room to spare. */
const MAX_EVENT_BYTES = 60 * 1024 * 1024;

// ---- writing ----------------------------------------------------------------

/** Octal in a NUL-terminated field; past what the digits hold, GNU's base-256 (tar-stream and GNU tar read it). */
function numberField(h: Buffer, offset: number, length: number, value: number): void {
  const octal = value.toString(8);
  if (octal.length < length) {
    h.write(octal.padStart(length - 1, '0') + '\0', offset, length, 'ascii');
    return;
  }
  h[offset] = 0x80;
  let v = BigInt(value);
  for (let i = offset + length - 1; i > offset; i--) {
    h[i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

/** One ustar header for a regular file; names here are at most 70 ASCII characters. */
export function tarHeader(name: string, size: number, mtimeS: number): Buffer {
  if (Buffer.byteLength(name) > 100) throw new RangeError(`tar entry name '${name}' is too long`);
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, 'utf8');
  numberField(h, 100, 8, 0o600);
  numberField(h, 108, 8, 0);
  numberField(h, 116, 8, 0);
  numberField(h, 124, 12, size);
  numberField(h, 136, 12, mtimeS);
  h.fill(0x20, 148, 156); // the checksum counts its own field as spaces
  h.write('0', 156, 'ascii');
  h.write('ustar\u000000', 257, 'ascii');
  h.write('cpc', 265, 'ascii');
  h.write('cpc', 297, 'ascii');
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return h;
}

const padding = (size: number) => (BLOCK - (size % BLOCK)) % BLOCK;

interface TarEntry {
  name: string;
  size: number;
  bytes: () => Promise<AsyncIterable<Buffer>> | AsyncIterable<Buffer> | Iterable<Buffer>;
}

/** The exact length of the tar `tarStream` writes for these entries. */
export function tarSize(entries: readonly Pick<TarEntry, 'size'>[]): number {
  return entries.reduce((n, e) => n + BLOCK + e.size + padding(e.size), 0) + 2 * BLOCK;
}

/**
 * The tar, entry by entry, each read only when its turn comes. An entry that
 * does not have the size announced is an error: past the headers that can
 * only cut the reply short, which the receiver notices.
 */
async function* tarStream(entries: readonly TarEntry[], mtimeS: number): AsyncGenerator<Buffer> {
  for (const e of entries) {
    yield tarHeader(e.name, e.size, mtimeS);
    let n = 0;
    for await (const chunk of await e.bytes()) {
      n += chunk.length;
      if (n > e.size) throw new Error(`${e.name} grew while it was being saved`);
      yield chunk;
    }
    if (n !== e.size) throw new Error(`${e.name} has ${n} bytes, not ${e.size}`);
    const pad = padding(e.size);
    if (pad > 0) yield Buffer.alloc(pad);
  }
  yield Buffer.alloc(2 * BLOCK);
}

async function* noBytes(): AsyncGenerator<Buffer> {}

/** A job as the saved project carries it: everything but the project's name, which the load gives anew. */
function jobLine(job: Job | ArchivedJob): string {
  return JSON.stringify({ ...job, project: undefined }) + '\n';
}

/**
 * The project as a tar stream of known size. Live jobs are taken in one
 * synchronous step; archived ones are read after, skipping those taken live
 * (a job archived meanwhile was live at the first step). Jobs go to an
 * unlinked temporary file so the length is known without holding them;
 * files are streamed from the store when their turn comes.
 */
export async function exportProject(ctx: Context, project: Project): Promise<{ stream: Readable; size: number; filename: string }> {
  const model = ctx.store.model;
  const values = { ...(project.values ?? {}) };
  const live = [...model.jobIdsOf(project.name)].map((id) => model.job(id)!);
  const liveIds = new Set(live.map((j) => j.id));
  const files = new Map<string, number>();
  const refer = (refs: FileRef[]) => {
    for (const f of refs) files.set(f.sha256, f.size);
  };
  refer(loadedFiles({ values, jobs: live }));
  const liveLines = live.map(jobLine);
  const savedAt = Date.now();

  const tmp = join(ctx.files.store.dir, 'tmp', `export-${savedAt}-${randomBytes(8).toString('hex')}`);
  const fh = await open(tmp, 'wx+', 0o600);
  // Unlinked at once: the open handle keeps it readable, and nothing is left behind whatever happens.
  await rm(tmp, { force: true });
  let handed = false;
  try {
    let jobsBytes = 0;
    let count = 0;
    let buffered: string[] = [];
    let bufferedChars = 0;
    const write = async (line: string, force = false) => {
      if (line) {
        buffered.push(line);
        bufferedChars += line.length;
        count++;
      }
      if (bufferedChars < 1024 * 1024 && !force) return;
      const chunk = Buffer.from(buffered.join(''));
      buffered = [];
      bufferedChars = 0;
      await fh.write(chunk);
      jobsBytes += chunk.length;
    };
    for (const line of liveLines) await write(line);
    for (let after: string | undefined; ; ) {
      const page = (await ctx.store.archive.list(project.name, { limit: 10_000, afterId: after })) as unknown as Job[];
      for (const job of page) {
        if (liveIds.has(job.id)) continue;
        refer(loadedFiles({ values: {}, jobs: [job] }));
        await write(jobLine(job));
      }
      if (page.length < 10_000) break;
      after = page[page.length - 1]!.id;
    }
    await write('', true);

    const listed: { sha256: string; size: number }[] = [];
    for (const [sha256, size] of [...files].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const stored = await ctx.files.store.sizeOf(sha256);
      if (stored === null) throw fail('FILE_NOT_FOUND', `file ${sha256} of project '${project.name}' is missing from this server's store`);
      if (stored !== size) throw fail('CHECKSUM_MISMATCH', `file ${sha256} is ${stored} bytes in the store, not ${size}`);
      listed.push({ sha256, size });
    }
    const manifest: ProjectManifest = {
      format: 'cpc-project',
      version: 1,
      project: project.name,
      owner: project.owner,
      members: [...project.members],
      createdAt: project.createdAt,
      values,
      ...(project.retry ? { retry: project.retry } : {}),
      serverId: ctx.identity.serverId,
      savedAt,
      jobs: count,
      files: listed,
    };
    const head = Buffer.from(JSON.stringify(manifest, null, 1) + '\n');
    const entries: TarEntry[] = [
      { name: MANIFEST, size: head.length, bytes: () => [head] },
      { name: JOBS, size: jobsBytes, bytes: () => (jobsBytes === 0 ? noBytes() : fh.createReadStream({ start: 0, end: jobsBytes - 1, autoClose: false })) },
      ...listed.map((f) => ({ name: FILES + f.sha256, size: f.size, bytes: async () => (await ctx.files.store.read(f.sha256)).stream })),
    ];
    const size = tarSize(entries);
    const stream = Readable.from(tarStream(entries, Math.floor(savedAt / 1000)), { objectMode: false });
    stream.once('close', () => void fh.close().catch(() => undefined));
    handed = true;
    return { stream, size, filename: `${project.name}.tar` };
  } finally {
    if (!handed) await fh.close().catch(() => undefined);
  }
}

// ---- reading ----------------------------------------------------------------

const count = z.int().min(0).max(Number.MAX_SAFE_INTEGER);
const jobId = z.string().refine((s) => uuidV7Millis(s) !== null, 'must be a job id (a UUID v7)');
const path = z.string().min(1).max(1024);
// Object keys that JavaScript treats specially would not survive as value names.
const valueName = z
  .string()
  .min(1)
  .max(256)
  .refine((k) => k !== '__proto__' && k !== 'constructor' && k !== 'prototype', 'is a reserved name');
const longText = z.string().max(64 * 1024 * 1024);
const reason = z.string().max(64 * 1024);
const envName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'must be an environment variable name')
  .refine((k) => k !== '__proto__' && k !== 'constructor' && k !== 'prototype', 'is a reserved name');

const valueSchema = z.union([
  z.strictObject({ text: z.string().max(1024 * 1024), at: count }),
  z.strictObject({ sha256: sha256Schema, size: count, at: count, job: jobId.optional() }),
]);
const valuesSchema = z.record(valueName, valueSchema).refine((v) => Object.keys(v).length <= 100_000, 'at most 100000 values');

const specSchema = z.strictObject({
  name: shownName(256).optional(),
  argv: z.array(z.string().max(65_536)).min(1).max(4096).optional(),
  shell: z.string().min(1).max(65_536).optional(),
  env: z.record(envName, z.string().max(65_536)),
  resources: z.strictObject({ cores: z.int().min(1).max(4096), memoryMb: z.int().min(0).max(64 * 1024 * 1024) }),
  priority: prioritySchema,
  maxRetries: z.int().min(0).max(1000),
  timeoutS: z.int().min(1).max(365 * 24 * 3600).nullable(),
  killGraceS: z.number().min(0).max(MAX_KILL_GRACE_S).optional(),
  after: z.array(jobId).max(10_000),
  inputs: z
    .array(z.union([fileRefSchema, z.strictObject({ name: path, job: jobId, output: path }), z.strictObject({ name: path, value: valueName })]))
    .max(1000)
    .optional(),
  outputs: z.array(z.strictObject({ glob: path, to: valueName.optional() })).max(100).optional(),
  retry: retrySchema.optional(),
});

const attemptSchema = z.strictObject({
  n: z.int().min(1).max(1_000_000),
  workerId: z.string().max(256),
  workerName: z.string().max(256),
  via: z.string().max(256),
  viaName: z.string().max(256).optional(),
  startedAt: count,
  endedAt: count.optional(),
  how: z.enum(['exited', 'timeout', 'oom', 'lease-expired', 'cancelled', 'worker-lost', 'start-failed', 'output-failed']).optional(),
  exitCode: z.int().min(-255).max(255).nullable().optional(),
  signal: z.string().max(32).nullable().optional(),
  reason: reason.optional(),
  stdoutTail: longText.optional(),
  stderrTail: longText.optional(),
  stdoutBytes: count.optional(),
  stderrBytes: count.optional(),
  outputs: z.array(fileRefSchema).max(1000).optional(),
  usage: usageSchema.optional(),
  limits: z.strictObject({ memoryMb: z.int().min(0).max(MAX_MEMORY_MB), timeoutS: z.int().min(1).max(MAX_WALL_TIME_S).nullable() }).optional(),
});

const jobSchema = z.strictObject({
  id: jobId,
  /** Where the job was saved: its project and submission number there; neither is kept. */
  project: z.string().max(64).optional(),
  seq: count.optional(),
  spec: specSchema,
  state: z.enum(['waiting', 'queued', 'running', 'done', 'failed', 'cancelled']),
  reason,
  createdAt: count,
  updatedAt: count,
  attempts: z.array(attemptSchema).max(100_000),
  failures: count,
  lost: count,
  grown: count.optional(),
  result: z
    .strictObject({
      attempt: z.int().min(1),
      exitCode: z.int().min(-255).max(255).nullable(),
      signal: z.string().max(32).nullable(),
      durationMs: z.number().min(0).max(1e12),
      stdoutTail: longText,
      stderrTail: longText,
      stdoutBytes: count,
      stderrBytes: count,
    })
    .optional(),
  inputs: z.array(z.union([fileRefSchema, z.strictObject({ name: path, text: z.string().max(1024 * 1024) })])).max(1000).optional(),
  outputs: z.array(fileRefSchema).max(1000).optional(),
});

const manifestSchema = z.strictObject({
  format: z.literal('cpc-project'),
  version: z.literal(1),
  project: z.string().min(1).max(64),
  owner: z.string().min(1).max(64),
  members: z.array(z.string().max(64)).max(100_000),
  createdAt: count,
  values: valuesSchema,
  retry: retrySchema.optional(),
  serverId: z.string().max(64),
  savedAt: count,
  jobs: count,
  files: z.array(z.strictObject({ sha256: sha256Schema, size: count })).max(10_000_000),
});

/** How many bytes a saved project may have: its files (the quota, or one file's limit without one) and its jobs and values. */
export function importLimit(config: Context['config']): number {
  const files = config.projectQuotaBytes > 0 ? config.projectQuotaBytes : config.maxFileBytes;
  return files + 2 * config.maxBodyBytes;
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw fail('INVALID_JSON', `${what} is not valid JSON`);
  }
}

/** Reads a small entry whole, refusing it past `max` bytes. */
async function readSmall(entry: AsyncIterable<Buffer>, max: number, what: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of entry) {
    size += chunk.length;
    if (size > max) throw fail('BODY_TOO_LARGE', `${what} is over the limit of ${max} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size).toString('utf8');
}

interface Received {
  manifest: string | null;
  jobs: string | null;
  /** Files stored from the tar, by checksum. */
  files: Map<string, number>;
}

/**
 * Streams the tar of the request into the file store, keeping the two JSON
 * entries. Each file is stored only once its bytes match its name's
 * checksum; a file stored here refers to nothing until the load commits, so
 * a refused load leaves only content the collector removes.
 */
async function receive(ctx: Context, req: IncomingMessage, size: number): Promise<Received> {
  const { config } = ctx;
  const out: Received = { manifest: null, jobs: null, files: new Map() };
  // Read at the first load, not at every start: few servers ever load a project.
  const { extract } = await import('tar-stream');
  const ex = extract();
  let distinct = 0;
  // The request is piped, not pipelined: on a refusal it must stay open for
  // the answer (the wrapper closes the connection after it).
  const cut = () => {
    if (!req.complete) ex.destroy(fail('TRANSFER_INCOMPLETE', 'the upload was cut off'));
  };
  req.once('close', cut);
  req.once('aborted', cut);
  req.pipe(ex);
  let received = 0;
  req.on('data', (chunk: Buffer) => {
    received += chunk.length;
  });
  try {
    for await (const entry of ex) {
      const h = entry.header;
      const name = h.name.replace(/^(\.\/)+/, '');
      if (h.type === 'directory') {
        entry.resume();
        continue;
      }
      if (h.type !== 'file' && h.type !== 'contiguous-file') throw fail('BAD_REQUEST', `entry '${name}' of the archive is not a regular file`);
      if (name === MANIFEST || name === JOBS) {
        const text = await readSmall(entry as unknown as AsyncIterable<Buffer>, config.maxBodyBytes, name);
        if (name === MANIFEST) out.manifest = text;
        else out.jobs = text;
        continue;
      }
      const sha = name.startsWith(FILES) ? name.slice(FILES.length) : '';
      if (!/^[0-9a-f]{64}$/.test(sha)) throw fail('BAD_REQUEST', `the archive holds '${name}', which is neither ${MANIFEST}, ${JOBS} nor ${FILES}<sha256>`);
      const fileSize = h.size ?? 0;
      if (fileSize > config.maxFileBytes) throw fail('FILE_TOO_LARGE', `file ${sha} of ${fileSize} bytes is over the ${config.maxFileBytes}-byte limit`);
      if (!out.files.has(sha)) {
        distinct += fileSize;
        if (config.projectQuotaBytes > 0 && distinct > config.projectQuotaBytes) {
          throw fail('QUOTA_EXCEEDED', `the project's files come to more than its quota of ${config.projectQuotaBytes} bytes`);
        }
      }
      await ctx.files.store.put(Readable.from(entry, { objectMode: false }), { sha256: sha, size: fileSize, maxBytes: fileSize });
      out.files.set(sha, fileSize);
    }
  } catch (err) {
    req.unpipe(ex);
    req.pause();
    ex.destroy();
    if (err instanceof CpcError) throw err;
    const message = (err as Error).message ?? String(err);
    if (/unexpected end/i.test(message) || received < size) throw fail('TRANSFER_INCOMPLETE', `the archive ended early (${message})`);
    throw fail('BAD_REQUEST', `not a cpc project archive: the upload is not a tar (${message})`);
  } finally {
    req.off('close', cut);
    req.off('aborted', cut);
  }
  return out;
}

/** Loads are checked against the archive and committed one at a time, so two cannot both take the same job ids. */
const loading = new WeakMap<Context, Promise<unknown>>();

function serially<T>(ctx: Context, fn: () => Promise<T>): Promise<T> {
  const run = (loading.get(ctx) ?? Promise.resolve()).then(fn);
  loading.set(ctx, run.catch(() => undefined));
  return run;
}

/**
 * Loads a saved project from the request body as project `name`, owned by
 * `owner`: stores its files (checksums checked), checks the manifest and
 * every job, then commits one `project-loaded` event. Anything refused
 * creates nothing.
 */
export async function importProject(ctx: Context, req: IncomingMessage, name: string, owner: string, opts: { newIds?: boolean } = {}): Promise<ProjectLoadReply> {
  const model = ctx.store.model;
  const header = req.headers['content-length'];
  if (header === undefined) throw fail('LENGTH_REQUIRED', 'a saved project must be sent with its size in Content-Length');
  const size = Number(header);
  if (!Number.isSafeInteger(size) || size < 0) throw fail('BAD_REQUEST', 'Content-Length is not a size');
  const limit = importLimit(ctx.config);
  if (size > limit) throw fail('FILE_TOO_LARGE', `the archive of ${size} bytes is over the ${limit}-byte limit`);
  // The name is checked before a byte is read; planLoadProject checks it again at the commit.
  planLoadProject(model, { name, owner, createdAt: 0, values: {}, jobs: [] }, 0);

  const got = await receive(ctx, req, size);
  if (got.manifest === null) throw fail('BAD_REQUEST', `not a cpc project archive: it has no ${MANIFEST}`);
  if (got.jobs === null) throw fail('BAD_REQUEST', `the archive has no ${JOBS}`);
  const raw = parseJson(got.manifest, MANIFEST);
  const version = (raw as { version?: unknown } | null)?.version;
  if (typeof version === 'number' && version !== 1) throw fail('BAD_REQUEST', `${MANIFEST} is format version ${version}; this server reads version 1`);
  const manifest = check(manifestSchema, raw, MANIFEST) as ProjectManifest;
  // A name like __proto__ is dropped by the parse rather than refused; a value must not vanish silently.
  if (Object.keys(manifest.values).length !== Object.keys((raw as { values: object }).values).length) {
    throw fail('INVALID_FIELD', `${MANIFEST}.values: a value name is reserved`);
  }
  const jobs: LoadedJob[] = [];
  got.jobs.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const record = check(jobSchema, parseJson(line, `${JOBS} line ${i + 1}`), `${JOBS} line ${i + 1}`);
    const { project: _project, seq: _seq, ...job } = record;
    jobs.push(job as LoadedJob);
  });
  if (jobs.length !== manifest.jobs) throw fail('TRANSFER_INCOMPLETE', `${JOBS} holds ${jobs.length} jobs; ${MANIFEST} says ${manifest.jobs}`);
  // Every file comes in the archive itself: a checksum alone names nothing,
  // even content this server holds for another project.
  for (const f of manifest.files) {
    if (got.files.get(f.sha256) === f.size) continue;
    throw fail('TRANSFER_INCOMPLETE', `the archive lists file ${f.sha256} (${f.size} bytes), which it does not hold`);
  }
  const toLoad: ProjectToLoad = {
    name,
    owner,
    createdAt: manifest.createdAt,
    values: manifest.values as Record<string, ProjectValue>,
    ...(manifest.retry ? { retry: manifest.retry } : {}),
    jobs: opts.newIds ? withNewJobIds(jobs, newId) : jobs,
  };
  const files = loadedFiles(toLoad);
  for (const f of files) {
    const size = got.files.get(f.sha256) === f.size ? await ctx.files.store.sizeOf(f.sha256) : null;
    if (size !== f.size) throw fail('FILE_NOT_FOUND', `file '${f.name}' (${f.sha256}) is not in the archive`);
  }

  return serially(ctx, async () => {
    const taken = toLoad.jobs.find((j) => model.archivedProjectOf(j.id) !== undefined)?.id;
    if (taken) throw fail('JOB_EXISTS', `this server already has a job ${taken} (archived); was the project loaded here before? (new ids make a copy: cpcc load --new-ids)`);
    const at = Date.now();
    const event = planLoadProject(model, toLoad, at);
    ctx.files.checkQuota(name, files);
    // Unfinished jobs that come back count against the new owner like submitted ones.
    ctx.usage.checkRoom(owner, toLoad.jobs.filter((j) => !FINAL_STATES.has(j.state)).map((j) => j.spec));
    const bytes = Buffer.byteLength(JSON.stringify(event));
    if (bytes > MAX_EVENT_BYTES) throw fail('BODY_TOO_LARGE', `the project's jobs and values come to ${bytes} bytes; at most ${MAX_EVENT_BYTES} load in one piece`);
    await ctx.dispatcher.commitWork(event);
    const distinct = new Map(files.map((f) => [f.sha256, f.size]));
    return {
      project: projectView(model.project(name), model.countsOf(name)),
      jobs: jobs.length,
      files: distinct.size,
      bytes: [...distinct.values()].reduce((a, b) => a + b, 0),
    };
  });
}

