/**
 * Files and project values, as in Copernicus: the inputs and outputs of a
 * submitted job (`--input`, `--input-from`, `--output`, `--output-to`), the
 * files a job kept (`outputs`, `getf`), and a project's named values
 * (`set`, `setf`, `get`, `ls`, `unset`).
 */
import { existsSync, statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { InvalidArgumentError } from 'commander';
import type { InputSource, OutputSpec } from '../../core/types.js';
import type { StoredFile, ValueView } from '../../core/wire.js';
import type { ApiClient } from '../api/client.js';
import { downloadFile, hashFile, uploadFile, type FileSum } from '../api/files.js';
import { Meter } from '../../common/stream-meter.js';
import { EXIT_FAILURE, ago, fail, usage } from '../output.js';
import type { Argument, CommandSpec, Context } from './context.js';
import { collect, jobArg } from './parsers.js';

const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const enc = encodeURIComponent;

/** The options `submit` takes for files, to add to its table. */
export const fileOptions = [
  { flags: '--input <file[:name]>', description: 'upload FILE; the job finds it as NAME (default: its base name) in its folder (repeatable)', parse: collect },
  { flags: '--input-from <job:file[:name]|@value[:name]>', description: "a file another job kept (it becomes a dependency), or a project value's file (repeatable)", parse: collect },
  { flags: '--output <glob>', description: 'keep the files matching GLOB after the job (`*`, `?`, `**`; repeatable)', parse: collect },
  { flags: '--output-to <glob:@value>', description: 'keep the file matching GLOB and store it as the project value (repeatable)', parse: collect },
];

/** A local file and the name it gets in the job's folder: `path` or `path:name`. */
function splitLocal(spec: string): { path: string; name: string } {
  const colon = spec.lastIndexOf(':');
  if (colon > 0 && !existsSync(spec)) return { path: spec.slice(0, colon), name: spec.slice(colon + 1) };
  return { path: spec, name: basename(spec) };
}

export function parseInputFrom(spec: string): InputSource {
  if (spec.startsWith('@')) {
    const [value, name] = spec.slice(1).split(':') as [string, string | undefined];
    if (!value) throw new InvalidArgumentError(`'${spec}': give @VALUE[:NAME]`);
    return { name: name || basename(value), value };
  }
  const [job, output, name, ...rest] = spec.split(':');
  if (!job || !output || rest.length > 0) throw new InvalidArgumentError(`'${spec}': give JOB_ID:FILE[:NAME] or @VALUE[:NAME]`);
  return { name: name || basename(output), job, output };
}

export function parseOutputs(globs: string[], to: string[]): OutputSpec[] {
  const out: OutputSpec[] = globs.map((glob) => ({ glob }));
  for (const spec of to) {
    const at = spec.lastIndexOf(':@');
    let glob: string;
    let value: string;
    if (at > 0) {
      glob = spec.slice(0, at);
      value = spec.slice(at + 2);
    } else if (spec.startsWith('@') && globs.length === 1) {
      glob = globs[0]!;
      value = spec.slice(1);
    } else {
      usage(`--output-to '${spec}': give GLOB:@VALUE (or @VALUE with exactly one --output)`);
    }
    const same = out.find((o) => o.glob === glob && o.to === undefined);
    if (same) same.to = value;
    else out.push({ glob, to: value });
  }
  return out;
}

/** The size of a local file to send, or a one-line failure saying why it cannot be sent. */
export function localFileSize(path: string): number {
  try {
    const st = statSync(path);
    if (!st.isFile()) return fail(`${path} is not a file`);
    return st.size;
  } catch (err) {
    return fail(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Uploads a local file for a project and returns what the server stored. */
export async function uploadForProject(api: ApiClient, project: string, path: string): Promise<StoredFile> {
  const size = localFileSize(path);
  const sum = await hashFile(path);
  if (sum.size !== size) return fail(`${path} changed while it was being read`);
  return uploadFile<StoredFile>(api, `/projects/${enc(project)}/files/${sum.sha256}`, path, sum);
}

/** The submit options for files as inputs and outputs of a job, uploading local inputs first. */
export async function fileFlags(ctx: Context, api: ApiClient, project: string, opts: Record<string, unknown>): Promise<{ inputs?: InputSource[]; outputs?: OutputSpec[] }> {
  const inputs: InputSource[] = [];
  for (const spec of (opts.input as string[] | undefined) ?? []) {
    const { path, name } = splitLocal(spec);
    const stored = await uploadForProject(api, project, path);
    ctx.out.note(`uploaded ${path} (${stored.size} bytes${stored.created ? '' : ', already there'})`);
    inputs.push({ name, sha256: stored.sha256, size: stored.size });
  }
  for (const spec of (opts.inputFrom as string[] | undefined) ?? []) inputs.push(parseInputFrom(spec));
  const outputs = parseOutputs((opts.output as string[] | undefined) ?? [], (opts.outputTo as string[] | undefined) ?? []);
  return { ...(inputs.length > 0 ? { inputs } : {}), ...(outputs.length > 0 ? { outputs } : {}) };
}

/** The option every command that writes a file takes. */
export const forceOption = { flags: '--force', description: 'overwrite the file if it exists' };

function refuseOverwrite(dest: string): never {
  return fail(`${dest} exists; nothing was written (--force overwrites it)`, EXIT_FAILURE, 'FILE_EXISTS');
}

/**
 * Writes a download to FILE, or to stdout with `-`. FILE is written under a
 * temporary name beside it and renamed once whole and checked, so it is
 * never seen half-written; a FILE that exists is kept unless `force`.
 */
export async function fetchTo(
  ctx: Context,
  api: ApiClient,
  path: string,
  dest: string,
  opts: { expect?: { sha256: string; size: number }; force?: boolean } = {},
): Promise<FileSum> {
  if (dest === '-') {
    const { body } = await api.fetchBytes(path);
    const meter = new Meter(Infinity, undefined, opts.expect);
    await pipeline(body, meter, ctx.io.stdout as NodeJS.WritableStream, { end: false });
    return { sha256: meter.digest(), size: meter.bytes };
  }
  const force = opts.force === true;
  // Looked at first so that nothing is fetched for a refusal; the rename refuses too, should one appear meanwhile.
  if (!force && existsSync(dest)) refuseOverwrite(dest);
  try {
    return await downloadFile(api, path, resolve(dest), { expect: opts.expect, overwrite: force });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') refuseOverwrite(dest);
    throw err;
  }
}

async function outputs(ctx: Context, args: Argument[]): Promise<void> {
  const { api } = await ctx.client();
  const id = jobArg(args[0] as string);
  const { outputs: files } = await api.outputs(id);
  ctx.out.list({ outputs: files }, files, [
    { header: 'name', value: (f) => f.name },
    { header: 'bytes', value: (f) => f.size, align: 'right' },
    { header: 'sha256', value: (f) => f.sha256.slice(0, 16) },
  ], `job ${id} kept no files`);
}

async function getf(ctx: Context, args: Argument[], opts: Record<string, unknown>): Promise<void> {
  const { api } = await ctx.client();
  const [what, name] = args as [string, string | undefined];
  // Two words are a job's file (its id whole or in part); one is a value, unless it is a whole job id.
  if (what.startsWith('@') || (name === undefined && !JOB_ID.test(what))) {
    // A project value's file: `getf @NAME` or `getf NAME`.
    if (name !== undefined) usage('give JOB_ID NAME, or one value name');
    const project = await ctx.project();
    const value = what.replace(/^@/, '');
    const v = await api.value(project, value);
    if (v.sha256 === undefined) return fail(`value '${value}' is text, not a file; use 'cpcc get ${value}'`);
    const dest = (opts.output as string | undefined) ?? basename(value);
    return fetched(ctx, dest, await fetchTo(ctx, api, `/projects/${enc(project)}/values/${enc(value)}/file`, dest, { expect: { sha256: v.sha256, size: v.size! }, force: opts.force === true }));
  }
  if (name === undefined) usage('give the name of the file: cpcc getf JOB_ID NAME');
  jobArg(what);
  const file = (await api.outputs(what)).outputs.find((f) => f.name === name);
  if (!file) return fail(`job ${what} kept no file named '${name}'; see 'cpcc outputs ${what}'`);
  const dest = (opts.output as string | undefined) ?? basename(name);
  return fetched(ctx, dest, await fetchTo(ctx, api, `/jobs/${enc(what)}/outputs/${enc(name)}`, dest, { expect: file, force: opts.force === true }));
}

function fetched(ctx: Context, dest: string, sum: FileSum): void {
  if (dest !== '-') ctx.out.note(`${dest}: ${sum.size} bytes, sha256 ${sum.sha256}`);
}

function valueLine(v: ValueView): string {
  return v.text !== undefined ? v.text : `<file ${v.size} bytes, sha256 ${v.sha256!.slice(0, 16)}${v.job ? `, from job ${v.job}` : ''}>`;
}

async function set(ctx: Context, args: Argument[]): Promise<void> {
  const { api } = await ctx.client();
  const project = await ctx.project();
  const [name, text] = args as [string, string];
  const v = await api.setValue(project, name, { text });
  ctx.out.show(v, () => ctx.out.note(`${name} = ${valueLine(v)}`));
}

async function setf(ctx: Context, args: Argument[]): Promise<void> {
  const { api } = await ctx.client();
  const project = await ctx.project();
  const [name, path] = args as [string, string];
  const stored = await uploadForProject(api, project, path);
  const v = await api.setValue(project, name, { sha256: stored.sha256, size: stored.size });
  ctx.out.show(v, () => ctx.out.note(`${name} = ${valueLine(v)}`));
}

async function get(ctx: Context, args: Argument[]): Promise<void> {
  const { api } = await ctx.client();
  const v = await api.value(await ctx.project(), args[0] as string);
  ctx.out.show(v, () => ctx.out.line(valueLine(v)));
}

async function ls(ctx: Context, args: Argument[]): Promise<void> {
  const { api } = await ctx.client();
  const project = await ctx.project();
  const { values } = await api.values(project, args[0] as string | undefined);
  const now = Date.now();
  ctx.out.list({ values }, values, [
    { header: 'name', value: (v) => v.name },
    { header: 'value', value: (v) => valueLine(v), max: 60 },
    { header: 'set', value: (v) => ago(v.at, now) },
  ], args[0] ? `no values starting with '${args[0] as string}'` : `project '${project}' has no values`);
}

async function unset(ctx: Context, args: Argument[]): Promise<void> {
  const { api } = await ctx.client();
  const r = await api.removeValue(await ctx.project(), args[0] as string);
  ctx.out.show(r, () => ctx.out.note(`removed ${r.removed}`));
}

export const fileCommands: CommandSpec[] = [
  { name: 'outputs', args: ['<job-id>'], summary: 'the files a job kept', run: outputs },
  {
    name: 'getf',
    args: ['<job-id-or-@value>', '[name]'],
    summary: "download a file a job kept (JOB_ID NAME), or a project value's file (@NAME)",
    options: [{ flags: '-o, --output <file>', description: 'where to write it (- for stdout; default: its base name here)' }, forceOption],
    run: getf,
  },
  { name: 'set', args: ['<name>', '<value>'], summary: 'set a project value to a text', run: set },
  { name: 'setf', args: ['<name>', '<file>'], summary: 'set a project value to a file (uploaded)', run: setf },
  { name: 'get', args: ['<name>'], summary: 'show a project value', run: get },
  { name: 'ls', args: ['[prefix]'], summary: "list the project's values", run: ls },
  { name: 'unset', args: ['<name>'], summary: 'remove a project value', run: unset },
];
