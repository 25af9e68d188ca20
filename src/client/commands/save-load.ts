/**
 * A whole project to one tar and back, as in Copernicus: `cpcc save PROJECT
 * [FILE.tar]` keeps it (jobs, values, files, history), `cpcc load FILE.tar
 * PROJECT` makes it again on any server, owned by whoever loads it.
 */
import { closeSync, createReadStream, openSync, readSync } from 'node:fs';
import type { ProjectLoadReply } from '../../core/wire.js';
import { fail, jsonText, usage } from '../output.js';
import type { Argument, CommandSpec, Context } from './context.js';
import { fetchTo, forceOption, localFileSize } from './files.js';

const enc = encodeURIComponent;

async function save(ctx: Context, args: Argument[], opts: Record<string, unknown>): Promise<void> {
  const [project, file] = args as [string, string | undefined];
  const output = opts.output as string | undefined;
  if (file !== undefined && output !== undefined && file !== output) usage(`give the file once: as an argument or with -o, not both`);
  const dest = output ?? file ?? `${project}.tar`;
  const { api } = await ctx.client();
  const sum = await fetchTo(ctx, api, `/projects/${enc(project)}/export`, dest, { force: opts.force === true });
  const summary = { project, file: dest, bytes: sum.size, sha256: sum.sha256 };
  // With the tar on stdout, what is said of it goes to stderr.
  if (dest === '-') ctx.out.note(ctx.out.json ? jsonText(summary, false) : `saved project ${project} to stdout (${sum.size} bytes)`);
  else ctx.out.show(summary, () => ctx.out.note(`saved project ${project} to ${dest} (${sum.size} bytes)`));
}

async function load(ctx: Context, args: Argument[], opts: Record<string, unknown>): Promise<void> {
  const { api } = await ctx.client();
  const [file, project] = args as [string, string];
  const size = localFileSize(file);
  if (!looksLikeTar(file)) fail(`${file}: not a cpc project archive (not a tar file; 'cpcc save' makes them)`, undefined, 'BAD_REQUEST');
  const query = opts.newIds ? { newIds: 1 } : undefined;
  const r = await api.sendBytes<ProjectLoadReply>(`/projects/${enc(project)}/import`, createReadStream(file, { highWaterMark: 1024 * 1024 }), size, query, 'POST');
  ctx.out.show(r, () => ctx.out.note(`loaded project ${r.project.name}: ${r.jobs} jobs, ${r.files} files (${r.bytes} bytes)`));
}

/** A POSIX tar's first header says `ustar` at byte 257; checked before anything is sent. */
function looksLikeTar(file: string): boolean {
  const head = Buffer.alloc(512);
  const fd = openSync(file, 'r');
  try {
    if (readSync(fd, head, 0, 512, 0) < 512) return false;
  } finally {
    closeSync(fd);
  }
  return head.toString('latin1', 257, 262) === 'ustar';
}

export const saveLoadCommands: CommandSpec[] = [
  {
    name: 'save',
    args: ['<project>', '[file]'],
    summary: 'save a project (jobs, values, files, history) to a tar (default: PROJECT.tar)',
    options: [{ flags: '-o, --output <file>', description: 'where to write it (- for stdout); the same as the FILE argument' }, forceOption],
    run: save,
  },
  {
    name: 'load',
    args: ['<file>', '<project>'],
    summary: 'load a saved project from a tar as a new project of yours, on this server or any other',
    options: [{ flags: '--new-ids', description: 'give the jobs new ids: a copy that can sit beside the project it was saved from' }],
    run: load,
  },
];
